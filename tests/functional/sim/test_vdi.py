"""VDI semantics: sizes, snapshots, chains, space, in-use (sections 2, 5)."""

from __future__ import annotations

from tests.functional.sim import base

GiB, MiB = base.GiB, base.MiB


def lvhd_leaf(v: int) -> int:
    """calcSizeVHDLV for a virtual size (see xapi-semantics.md section 5)."""
    meta = 4329472                        # calcOverheadEmpty(2 TiB)
    bitmap = -(-v // (2 * MiB)) * 4096
    n = v + meta + bitmap
    return -(-n // (4 * MiB)) * (4 * MiB)


class VdiTest(base.SimTestCase):
    srs = ('nfs', 'lvm', 'lvmoiscsi', 'iscsi', 'netapp', 'equal')

    def test_vhd_rounding_and_limits(self) -> None:
        for sr_type in ('nfs', 'lvm'):
            sr = self.sr(sr_type)
            v = self.vdi(sr, 1)
            self.assertEqual(str(2 * MiB), self.x.VDI.get_virtual_size(v))
            v = self.vdi(sr, 5 * MiB + 7)
            self.assertEqual(str(6 * MiB), self.x.VDI.get_virtual_size(v))
            self.assertFailure(['SR_BACKEND_FAILURE_79'], self.vdi, sr,
                               2040 * GiB + 1)
        sr = self.sr('nfs')
        v = self.vdi(sr, 2040 * GiB)      # thin: overprovisioning is fine
        self.assertEqual(str(2040 * GiB), self.x.VDI.get_virtual_size(v))

    def test_shrink_refused_grow_rounds(self) -> None:
        sr = self.sr('nfs')
        v = self.vdi(sr, 10 * MiB)
        exc = self.assertFailure(['SR_BACKEND_FAILURE_79', ''],
                                 self.x.VDI.resize, v, str(4 * MiB))
        self.assertEqual('VDI Invalid size [opterr=shrinking not allowed]',
                         exc.details[2])
        self.x.VDI.resize(v, str(11 * MiB))
        self.assertEqual(str(12 * MiB), self.x.VDI.get_virtual_size(v))
        self.assertFailure(['SR_OPERATION_NOT_SUPPORTED', sr],
                           self.x.VDI.resize_online, v, str(20 * MiB))

    def test_attached_vdi_cannot_be_destroyed_or_resized(self) -> None:
        sr = self.sr('nfs')
        v = self.vdi(sr)
        vbd = self.attach(v)
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))
        self.assertFailure(['VDI_IN_USE', v, 'destroy'], self.x.VDI.destroy,
                           v)
        self.assertFailure(['VDI_IN_USE', v, 'resize'], self.x.VDI.resize, v,
                           str(2 * GiB))
        self.assertFailure(['OPERATION_NOT_ALLOWED'], self.x.VBD.destroy,
                           vbd)
        # Snapshot and clone are allowed while attached.
        self.x.VDI.snapshot(v)
        pbd = [p for p in self.x.SR.get_PBDs(sr)
               if self.x.PBD.get_host(p) == self.sim.topology['hosts'][0][
                   'ref']][0]
        self.assertFailure(['VDI_IN_USE', v], self.x.PBD.unplug, pbd)
        self.x.VBD.unplug(vbd)
        self.assertFailure(['DEVICE_ALREADY_DETACHED', vbd],
                           self.x.VBD.unplug, vbd)
        self.x.VBD.destroy(vbd)
        self.x.VDI.destroy(v)
        self.assertFailure(['HANDLE_INVALID', 'VDI', v],
                           self.x.VDI.get_record, v)

    def test_snapshot_records_and_base_copies(self) -> None:
        for sr_type in ('nfs', 'lvmoiscsi'):
            sr = self.sr(sr_type)
            v = self.vdi(sr, GiB, 'vol', other_config={'k': 'v'},
                         name_description='d', tags=['t'])
            uuid = self.x.VDI.get_uuid(v)
            s = self.x.VDI.snapshot(v)
            snap = self.x.VDI.get_record(s)
            orig = self.x.VDI.get_record(v)
            self.assertEqual(uuid, orig['uuid'])       # keeps ref and uuid
            self.assertTrue(snap['is_a_snapshot'])
            self.assertEqual(v, snap['snapshot_of'])
            self.assertEqual([s], orig['snapshots'])
            self.assertNotEqual('19700101T00:00:00Z',
                                snap['snapshot_time'].value)
            self.assertFalse(snap['read_only'])
            self.assertEqual(('vol', 'd', {'k': 'v'}, ['t']),
                             (snap['name_label'], snap['name_description'],
                              snap['other_config'], snap['tags']))
            parent = orig['sm_config']['vhd-parent']
            self.assertEqual(parent, snap['sm_config']['vhd-parent'])
            base_ref = self.x.VDI.get_by_uuid(parent)
            b = self.x.VDI.get_record(base_ref)
            self.assertEqual((False, True, 'base copy'),
                             (b['managed'], b['read_only'], b['name_label']))
            self.assertIn(base_ref, self.x.SR.get_VDIs(sr))
            self.assertFailure(['VDI_NOT_MANAGED', base_ref],
                               self.x.VDI.destroy, base_ref)
            c = self.x.VDI.clone(v)
            crec = self.x.VDI.get_record(c)
            self.assertFalse(crec['is_a_snapshot'])
            self.assertEqual('OpaqueRef:NULL', crec['snapshot_of'])

    def test_delete_parent_with_snapshots_then_coalesce(self) -> None:
        sr = self.sr('nfs')
        v = self.vdi(sr)
        s1 = self.x.VDI.snapshot(v)
        self.write_block(v)     # or s2 would share s1's base copy
        s2 = self.x.VDI.snapshot(v)
        self.assertEqual(5, len(self.x.SR.get_VDIs(sr)))   # 3 leaves, 2 bases
        self.x.VDI.destroy(v)
        # Snapshots survive with a dangling snapshot_of.
        self.assertEqual(v, self.x.VDI.get_snapshot_of(s1))
        self.assertEqual(v, self.x.VDI.get_snapshot_of(s2))
        # Coalesce (in the background): no base copy is left with a
        # single child.
        self.assertEqual(0, self.ctl.wait_gc())
        recs = self.x.VDI.get_all_records_where('field "SR"="%s"' % sr)
        bases = [r for r in recs.values() if not r['managed']]
        self.assertEqual(1, len(bases))
        self.assertEqual(3, len(recs))
        self.x.VDI.destroy(s1)
        self.ctl.wait_gc()
        recs = self.x.VDI.get_all_records_where('field "SR"="%s"' % sr)
        self.assertEqual([s2], list(recs))
        self.assertNotIn('vhd-parent', recs[s2]['sm_config'])

    def test_coalesce_runs_after_destroy_not_inside_it(self) -> None:
        # sm VDI.delete ends with _kickGC; cleanup.py coalesces later.
        sr = self.sr('nfs')
        v = self.vdi(sr)
        s = self.x.VDI.snapshot(v)
        self.ctl.pause_gc(True)          # hold the coalescer: no race
        self.x.VDI.destroy(s)
        base = self.x.VDI.get_sm_config(v)['vhd-parent']
        self.assertFalse(self.x.VDI.get_managed(self.x.VDI.get_by_uuid(base)))
        self.assertNotEqual(0, self.ctl.wait_gc(0))    # still to do
        self.ctl.pause_gc(False)
        self.assertEqual(0, self.ctl.wait_gc())
        self.assertEqual([v], self.x.SR.get_VDIs(sr))
        # A scan kicks it too (sm FileSR.scan: _kickGC).
        self.x.SR.add_to_other_config(sr, 'coalesce', 'false')
        s = self.x.VDI.snapshot(v)
        self.x.VDI.destroy(s)
        self.x.SR.remove_from_other_config(sr, 'coalesce')
        self.x.SR.scan(sr)
        self.assertEqual(0, self.ctl.wait_gc())
        self.assertEqual([v], self.x.SR.get_VDIs(sr))

    def test_coalesce_can_be_paused(self) -> None:
        sr = self.sr('nfs')
        v = self.vdi(sr)
        s = self.x.VDI.snapshot(v)
        self.ctl.pause_gc(True)
        self.x.VDI.destroy(s)
        self.assertEqual(2, len(self.x.SR.get_VDIs(sr)))
        self.ctl.pause_gc(False)
        self.assertEqual([v], self.x.SR.get_VDIs(sr))
        self.x.SR.add_to_other_config(sr, 'coalesce', 'false')
        s = self.x.VDI.snapshot(v)
        self.x.VDI.destroy(s)
        self.assertEqual(2, len(self.x.SR.get_VDIs(sr)))

    def test_unwritten_snapshots_share_one_base_copy(self) -> None:
        # blktap vhd-util-snapshot.c vhd_util_find_snapshot_target: an
        # empty differencing parent is skipped, the chain does not deepen.
        for sr_type in ('nfs', 'lvm'):
            sr = self.sr(sr_type)
            v = self.vdi(sr, 4 * MiB)
            snaps = [self.x.VDI.snapshot(v) for _ in range(40)]
            recs = self.x.VDI.get_all_records_where('field "SR"="%s"' % sr)
            bases = [r for r in recs.values() if not r['managed']]
            self.assertEqual(1, len(bases), sr_type)
            parents = {recs[r]['sm_config']['vhd-parent']
                       for r in snaps + [v]}
            self.assertEqual({bases[0]['uuid']}, parents, sr_type)
            self.x.VDI.clone(v)        # still allowed: depth is 2

    def test_chain_limit(self) -> None:
        # Only written chains deepen (a write between snapshots).
        sr = self.sr('nfs')
        v = self.vdi(sr, 4 * MiB)
        for _ in range(29):
            self.write_block(v)
            self.x.VDI.snapshot(v)
        self.write_block(v)
        exc = self.assertFailure(['SR_BACKEND_FAILURE_109', ''],
                                 self.x.VDI.snapshot, v)
        self.assertEqual('The snapshot chain is too long', exc.details[2])
        self.assertFailure(['SR_BACKEND_FAILURE_109'], self.x.VDI.clone, v)

    def test_thick_lvhd_space(self) -> None:
        sr = self.sr('lvm')            # 200 GiB local disk
        size = int(self.x.SR.get_physical_size(sr))
        self.assertEqual(200 * GiB, size)
        mgt = int(self.x.SR.get_physical_utilisation(sr))
        self.assertEqual(4 * MiB, mgt)
        v = self.vdi(sr, 10 * GiB)
        leaf = lvhd_leaf(10 * GiB)
        self.assertEqual(10 * GiB + 28 * MiB, leaf)
        self.assertEqual(str(leaf), self.x.VDI.get_physical_utilisation(v))
        self.assertEqual(str(mgt + leaf),
                         self.x.SR.get_physical_utilisation(sr))
        self.assertEqual(str(10 * GiB), self.x.SR.get_virtual_allocation(sr))
        s = self.x.VDI.snapshot(v)
        self.assertEqual(str(8 * MiB),
                         self.x.VDI.get_physical_utilisation(s))
        big = self.vdi(sr, 120 * GiB)
        # 200 GiB - (10 + 120 + overheads) free: a snapshot of the
        # unwritten 120 GiB VDI costs tens of MiB (sm LVHDVDI._snapshot:
        # a thin snapshot LV and two journals, less what deflating the
        # base copy frees), not a second full leaf.
        before = int(self.x.SR.get_physical_utilisation(sr))
        self.x.VDI.snapshot(big)
        grown = int(self.x.SR.get_physical_utilisation(sr)) - before
        self.assertLess(grown, 64 * MiB)
        # A clone needs a full leaf: 120 GiB more does not fit.
        self.assertFailure(['SR_BACKEND_FAILURE_44', '',
                            'There is insufficient space'],
                           self.x.VDI.clone, big)
        self.vdi(sr, 60 * GiB)
        self.assertFailure(['SR_BACKEND_FAILURE_44'], self.vdi, sr, 10 * GiB)
        self.assertFailure(['SR_BACKEND_FAILURE_44'], self.x.VDI.resize, v,
                           str(40 * GiB))

    def test_lvhd_clone_of_a_snapshot_leaves_it_thin(self) -> None:
        # sm LVHDVDI._snapshot: lvSizeOrig stays thin when the source
        # is a snapshot; only the clone gets a full leaf.
        sr = self.sr('lvm')
        v = self.vdi(sr, 1 * GiB)
        s = self.x.VDI.snapshot(v)
        self.assertEqual(str(8 * MiB), self.x.VDI.get_physical_utilisation(s))
        c = self.x.VDI.clone(s)
        self.assertEqual(str(8 * MiB), self.x.VDI.get_physical_utilisation(s))
        self.assertEqual(str(lvhd_leaf(GiB)),
                         self.x.VDI.get_physical_utilisation(c))
        self.assertEqual(str(lvhd_leaf(GiB)),
                         self.x.VDI.get_physical_utilisation(v))

    def test_thin_nfs_overprovisions(self) -> None:
        sr = self.sr('nfs')
        for _ in range(3):
            self.vdi(sr, 1000 * GiB)
        self.assertEqual(str(3000 * GiB),
                         self.x.SR.get_virtual_allocation(sr))
        self.assertLess(int(self.x.SR.get_physical_utilisation(sr)), GiB)

    def test_lun_per_vdi(self) -> None:
        sr = self.sr('iscsi')
        luns = self.x.VDI.get_all_records_where('field "SR"="%s"' % sr)
        self.assertEqual(5, len(luns))
        self.assertTrue(all(not r['managed'] for r in luns.values()))
        one = list(luns.values())[0]
        self.assertEqual('vbd', one['sm_config']['backend-kind'])
        self.assertIn('SCSIid', one['sm_config'])
        v = self.vdi(sr, 3 * GiB)         # smallest LUN >= 3 GiB is 5 GiB
        self.assertEqual(str(5 * GiB), self.x.VDI.get_virtual_size(v))
        self.assertTrue(self.x.VDI.get_managed(v))
        self.assertFailure(['SR_BACKEND_FAILURE_44'], self.vdi, sr, 50 * GiB)
        self.assertFailure(['SR_OPERATION_NOT_SUPPORTED', sr],
                           self.x.VDI.snapshot, v)
        self.assertFailure(['SR_OPERATION_NOT_SUPPORTED', sr],
                           self.x.VDI.clone, v)
        self.assertFailure(['SR_OPERATION_NOT_SUPPORTED', sr],
                           self.x.VDI.resize, v, str(6 * GiB))
        self.x.VDI.destroy(v)           # only unmanages the LUN
        self.assertFalse(self.x.VDI.get_managed(v))
        self.assertEqual('0', self.x.SR.get_virtual_allocation(sr))

    def test_vdi_introduce(self) -> None:
        sr = self.sr('iscsi')
        v = list(self.x.VDI.get_all_records_where(
            'field "SR"="%s"' % sr))[0]
        loc = self.x.VDI.get_location(v)
        self.assertFailure(['LOCATION_NOT_UNIQUE', sr, loc],
                           self.x.VDI.introduce, '', 'n', '', sr, 'user',
                           False, False, {}, loc, {}, {}, True, '0', '0',
                           'OpaqueRef:NULL', False, '19700101T00:00:00Z',
                           'OpaqueRef:NULL')
        self.x.VDI.forget(v)
        new = self.x.VDI.introduce('', 'n', '', sr, 'user', False, False, {},
                                   loc, {}, {}, True, '0', '0',
                                   'OpaqueRef:NULL', False,
                                   '19700101T00:00:00Z', 'OpaqueRef:NULL')
        self.assertEqual('n', self.x.VDI.get_name_label(new))
        nfs = self.sr('nfs')
        self.assertFailure(['SR_OPERATION_NOT_SUPPORTED', nfs],
                           self.x.VDI.introduce, '', 'n', '', nfs, 'user',
                           False, False, {}, 'x', {}, {}, True, '0', '0',
                           'OpaqueRef:NULL', False, '19700101T00:00:00Z',
                           'OpaqueRef:NULL')

    def test_forget_then_scan_brings_the_vdi_back(self) -> None:
        sr = self.sr('lvmoiscsi')
        v = self.vdi(sr, GiB, 'keep-me')
        uuid = self.x.VDI.get_uuid(v)
        self.x.VDI.forget(v)
        self.assertFailure(['UUID_INVALID', 'VDI', uuid],
                           self.x.VDI.get_by_uuid, uuid)
        self.x.SR.scan(sr)
        again = self.x.VDI.get_by_uuid(uuid)
        self.assertNotEqual(v, again)           # new ref, same uuid
        # lvmoiscsi keeps names in its metadata volume.
        self.assertEqual('keep-me', self.x.VDI.get_name_label(again))

    def test_copy(self) -> None:
        nfs, lvm = self.sr('nfs'), self.sr('lvm')
        v = self.vdi(nfs, 8 * MiB, 'src', other_config={'a': 'b'})
        c = self.x.VDI.copy(v, lvm)
        rec = self.x.VDI.get_record(c)
        self.assertEqual((lvm, 'src', {'a': 'b'}, False, str(8 * MiB)),
                         (rec['SR'], rec['name_label'], rec['other_config'],
                          rec['read_only'], rec['virtual_size']))
        small = self.vdi(nfs, 2 * MiB)
        self.assertFailure(['VDI_TOO_SMALL', small, str(8 * MiB)],
                           self.x.VDI.copy, v, nfs, 'OpaqueRef:NULL', small)
        into = self.vdi(nfs, 8 * MiB)
        self.assertEqual(into, self.x.VDI.copy(v, nfs, 'OpaqueRef:NULL',
                                               into))

    def test_equal_refuses_snapshot_of_snapshot(self) -> None:
        sr = self.sr('equal')
        v = self.vdi(sr, 100 * MiB)
        s = self.x.VDI.snapshot(v)
        exc = self.assertFailure(['SR_BACKEND_FAILURE_168'],
                                 self.x.VDI.snapshot, s)
        self.assertIn('Snapshot of a Snapshot', exc.details[2])
        c = self.x.VDI.clone(s)                 # a clone is fine
        self.assertFalse(self.x.VDI.get_is_a_snapshot(c))
        # Array snapshots have no base copies.
        self.assertEqual(3, len(self.x.SR.get_VDIs(sr)))
        self.assertTrue(all(self.x.VDI.get_managed(r)
                            for r in self.x.SR.get_VDIs(sr)))

    def test_array_vdis_are_luns_on_the_fabric(self) -> None:
        sr = self.sr('netapp')
        before = len(self.ctl.fabric()['luns'])
        v = self.vdi(sr, 10 * MiB + 1)
        self.assertEqual(str(11 * MiB), self.x.VDI.get_virtual_size(v))
        scsi = self.x.VDI.get_sm_config(v)['SCSIid']
        luns = {lun['scsi_id']: lun for lun in self.ctl.fabric()['luns']}
        self.assertEqual(before + 1, len(luns))
        self.assertEqual(11 * MiB, luns[scsi]['size_bytes'])
        # netapp LUNs are thick (space-reserved) by default.
        self.assertEqual(str(11 * MiB),
                         self.x.VDI.get_physical_utilisation(v))
        s = self.x.VDI.snapshot(v)
        self.assertEqual('0', self.x.VDI.get_physical_utilisation(s))
        self.x.VDI.destroy(v)
        self.assertNotIn(scsi, {lun['scsi_id'] for lun in
                                self.ctl.fabric()['luns']})

    def test_snapshot_errors(self) -> None:
        sr = self.sr('nfs')
        v = self.vdi(sr, sharable=True)
        self.assertFailure(['VDI_IS_SHARABLE', v], self.x.VDI.snapshot, v)
        w = self.vdi(sr)
        self.x.VDI.set_on_boot(w, 'reset')
        self.assertFailure(['VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION'],
                           self.x.VDI.snapshot, w)
        self.assertFailure(['VDI_INCOMPATIBLE_TYPE'],
                           lambda: self.vdi(sr, type='cbt_metadata'))

    def test_unplugged_sr(self) -> None:
        sr = self.sr('nfs')
        v = self.vdi(sr)
        for pbd in self.x.SR.get_PBDs(sr):
            self.x.PBD.unplug(pbd)
            self.x.PBD.unplug(pbd)               # idempotent
        self.assertFailure(['SR_NO_PBDS', sr], self.vdi, sr)
        self.assertFailure(['SR_NO_PBDS', sr], self.x.VDI.resize, v,
                           str(2 * GiB))
        self.assertFailure(['SR_NO_PBDS', sr], self.x.SR.scan, sr)
        for pbd in self.x.SR.get_PBDs(sr):
            self.x.PBD.plug(pbd)
        self.x.VDI.resize(v, str(2 * GiB))

    def test_cbt_flag(self) -> None:
        sr = self.sr('nfs')
        v = self.vdi(sr)
        self.x.VDI.enable_cbt(v)
        self.x.VDI.enable_cbt(v)                 # idempotent
        self.assertTrue(self.x.VDI.get_cbt_enabled(v))
        s = self.x.VDI.snapshot(v)
        self.assertFailure(['OPERATION_NOT_ALLOWED'], self.x.VDI.enable_cbt,
                           s)
        self.x.VDI.disable_cbt(v)
        self.assertFalse(self.x.VDI.get_cbt_enabled(v))
        eq = self.vdi(self.sr('equal'), 4 * MiB)
        self.assertFailure(['SR_OPERATION_NOT_SUPPORTED'],
                           self.x.VDI.enable_cbt, eq)


class LookupCostTest(base.SimTestCase):
    """xen-api db_cache_impl.ml: uuid lookups are indexed, filters scan."""

    srs = ('nfs',)

    def test_rows_scanned_per_lookup(self) -> None:
        sr = self.sr('nfs')
        v = self.vdi(sr, 4 * MiB, 'wanted')
        for i in range(9):
            self.vdi(sr, 4 * MiB, 'other-%d' % i)
        n = len(self.x.VDI.get_all())
        uuid = self.x.VDI.get_uuid(v)
        self.ctl.reset_calls()
        self.x.VDI.get_all_records_where('field "uuid"="%s"' % uuid)
        self.x.VDI.get_by_name_label('wanted')
        self.x.VDI.get_record(self.x.VDI.get_by_uuid(uuid))
        self.assertEqual({'VDI.get_all_records_where': n,
                          'VDI.get_by_name_label': n,
                          'VDI.get_by_uuid': 1, 'VDI.get_record': 1},
                         self.ctl.rows())
