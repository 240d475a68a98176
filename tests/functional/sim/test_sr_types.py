"""SR types, device_config rules, probe, PBDs and the SR lifecycle (sections
2 and 3)."""

from __future__ import annotations

import xml.dom.minidom

from tests.functional.sim import base

GiB = base.GiB
MiB = base.MiB


class SrTypeTest(base.SimTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.topo = self.sim.topology
        self.master = self.topo['hosts'][0]['ref']

    def create(self, sr_type: str, dc: dict[str, str], shared: bool = True,
               name: str = 'sr', sm_config: dict[str, str] | None = None
               ) -> str:
        args = [self.master, dc, '0', name, '', sr_type, 'user', shared]
        if sm_config is not None:
            args.append(sm_config)
        return self.x.SR.create(*args)

    def iscsi_dc(self, **kw: str) -> dict[str, str]:
        t = self.topo['iscsi']
        dc = {'target': t['target'], 'port': t['port'],
              'targetIQN': t['targetIQN'], 'SCSIid': t['luns'][0]['SCSIid']}
        dc.update(kw)
        return {k: v for k, v in dc.items() if v is not None}

    def test_sm_records_and_capabilities(self) -> None:
        sms = {r['type']: r for r in self.x.SM.get_all_records().values()}
        self.assertEqual({'nfs', 'lvm', 'lvmoiscsi', 'lvmohba', 'iscsi',
                          'netapp', 'equal'}, set(sms))
        self.assertIn('THIN_PROVISIONING', sms['nfs']['capabilities'])
        self.assertNotIn('THIN_PROVISIONING', sms['lvm']['capabilities'])
        self.assertIn('SR_METADATA', sms['lvmoiscsi']['capabilities'])
        self.assertEqual('2', sms['nfs']['features']['VDI_RESET_ON_BOOT'])
        self.assertNotIn('VDI_SNAPSHOT', sms['iscsi']['features'])
        self.assertIn('VDI_INTRODUCE', sms['iscsi']['features'])
        for sm in sms.values():
            self.assertNotIn('VDI_RESIZE_ONLINE', sm['features'])
        self.assertIn('serverpath', sms['nfs']['configuration'])
        self.assertEqual(sorted(sms), sorted(self.x.SR.get_supported_types()))

    def test_unknown_type(self) -> None:
        self.assertFailure(['SR_UNKNOWN_DRIVER', 'zfs'], self.create, 'zfs',
                           {})

    def test_nfs_device_config(self) -> None:
        nfs = self.topo['nfs']
        self.assertFailure(['SR_BACKEND_FAILURE_102'], self.create, 'nfs',
                           {'serverpath': nfs['serverpath']})
        self.assertFailure(['SR_BACKEND_FAILURE_101'], self.create, 'nfs',
                           {'server': nfs['server']})
        self.assertFailure(['SR_BACKEND_FAILURE_108'], self.create, 'nfs',
                           {'server': '192.0.2.1', 'serverpath': '/x'})
        self.assertFailure(['SR_BACKEND_FAILURE_73'], self.create, 'nfs',
                           {'server': nfs['server'], 'serverpath': '/nope'})
        self.assertFailure(['SR_BACKEND_FAILURE_72'], self.create, 'nfs',
                           {'server': nfs['server'],
                            'serverpath': nfs['serverpath'],
                            'nfsversion': '2'})
        sr = self.create('nfs', {'server': nfs['server'],
                                 'serverpath': nfs['serverpath'],
                                 'nfsversion': '4.1'})
        pbds = self.x.SR.get_PBDs(sr)
        self.assertEqual(2, len(pbds))             # shared: one per host
        self.assertTrue(all(self.x.PBD.get_currently_attached(p)
                            for p in pbds))
        # NFS probe without serverpath lists the exports in ErrorDescription[3].
        exc = self.assertFailure(['SR_BACKEND_FAILURE_101'], self.x.SR.probe,
                                 self.master, {'server': nfs['server']},
                                 'nfs')
        doc = xml.dom.minidom.parseString(exc.details[3])
        paths = [p.firstChild.data.strip()
                 for p in doc.getElementsByTagName('Path')]
        self.assertEqual([nfs['serverpath']], paths)
        out = self.x.SR.probe(self.master, {'server': nfs['server'],
                                            'serverpath': nfs['serverpath']},
                              'nfs')
        uuids = [u.firstChild.data.strip() for u in
                 xml.dom.minidom.parseString(out).getElementsByTagName(
                     'UUID')]
        self.assertEqual([self.x.SR.get_uuid(sr)], uuids)

    def test_lvmoiscsi_device_config_and_probe(self) -> None:
        self.assertFailure(['SR_BACKEND_FAILURE_95'], self.create,
                           'lvmoiscsi', self.iscsi_dc(target=None))
        self.assertFailure(['SR_BACKEND_FAILURE_141'], self.create,
                           'lvmoiscsi', self.iscsi_dc(target='192.0.2.9'))
        exc = self.assertFailure(['SR_BACKEND_FAILURE_96'], self.create,
                                 'lvmoiscsi', self.iscsi_dc(targetIQN=None))
        doc = xml.dom.minidom.parseString(exc.details[3])
        iqns = [t.firstChild.data.strip()
                for t in doc.getElementsByTagName('TargetIQN')]
        self.assertIn(self.topo['iscsi']['targetIQN'], iqns)
        self.assertIn('*', iqns)
        exc = self.assertFailure(['SR_BACKEND_FAILURE_107'], self.create,
                                 'lvmoiscsi', self.iscsi_dc(SCSIid=None))
        doc = xml.dom.minidom.parseString(exc.details[3])
        ids = [t.firstChild.data.strip()
               for t in doc.getElementsByTagName('SCSIid')]
        self.assertEqual([lun['SCSIid'] for lun in
                          self.topo['iscsi']['luns']], ids)
        self.assertEqual(['0', '1', '2'], [
            t.firstChild.data.strip()
            for t in doc.getElementsByTagName('LUNid')])
        self.assertFailure(['SR_BACKEND_FAILURE_107'], self.create,
                           'lvmoiscsi', self.iscsi_dc(SCSIid='3600bogus'))
        self.assertFailure(['SR_BACKEND_FAILURE_142'], self.create,
                           'lvmoiscsi', self.iscsi_dc(port='99999'))
        out = self.x.SR.probe(self.master, self.iscsi_dc(), 'lvmoiscsi')
        self.assertEqual([], xml.dom.minidom.parseString(
            out).getElementsByTagName('UUID'))
        sr = self.create('lvmoiscsi', self.iscsi_dc())
        out = self.x.SR.probe(self.master, self.iscsi_dc(), 'lvmoiscsi')
        doc = xml.dom.minidom.parseString(out)
        self.assertEqual([self.x.SR.get_uuid(sr)],
                         [u.firstChild.data.strip()
                          for u in doc.getElementsByTagName('UUID')])
        self.assertEqual(self.topo['iscsi']['targetIQN'], doc.getElementsByTagName(
            'TargetIQN')[0].firstChild.data.strip())
        self.assertEqual(str(100 * GiB), self.x.SR.get_physical_size(sr))

    def test_chap_and_secrets(self) -> None:
        t = self.topo['iscsi_chap']
        dc = {'target': t['target'], 'targetIQN': t['targetIQN'],
              'SCSIid': t['luns'][0]['SCSIid']}
        self.assertFailure(['SR_BACKEND_FAILURE_68'], self.create,
                           'lvmoiscsi', dc)
        self.assertFailure(['SR_BACKEND_FAILURE_68'], self.create,
                           'lvmoiscsi', dict(dc, chapuser=t['chapuser'],
                                             chappassword='wrong'))
        secrets_before = len(self.x.secret.get_all())
        sr = self.create('lvmoiscsi', dict(dc, chapuser=t['chapuser'],
                                           chappassword=t['chappassword']))
        for pbd in self.x.SR.get_PBDs(sr):
            conf = self.x.PBD.get_device_config(pbd)
            self.assertNotIn('chappassword', conf)
            secret = self.x.secret.get_by_uuid(conf['chappassword_secret'])
            self.assertEqual(t['chappassword'],
                             self.x.secret.get_value(secret))
        self.assertEqual(secrets_before + 2, len(self.x.secret.get_all()))
        # A secret made by the client works too.
        ref = self.x.secret.create({'value': t['chappassword'],
                                    'other_config': {}})
        probe_dc = dict(dc, chapuser=t['chapuser'],
                        chappassword_secret=self.x.secret.get_uuid(ref))
        self.x.SR.probe(self.master, probe_dc, 'lvmoiscsi')
        # Destroying the PBDs deletes their secrets.
        for pbd in self.x.SR.get_PBDs(sr):
            self.x.PBD.unplug(pbd)
            self.x.PBD.destroy(pbd)
        self.assertEqual(secrets_before + 1, len(self.x.secret.get_all()))

    def test_every_pbd_has_its_own_copy_of_a_secret(self) -> None:
        # xen-api xapi_pbd.ml create_common -> duplicate_passwds; SR.forget
        # and SR.destroy clean out only the PBDs' copies.
        t = self.topo['iscsi_chap']
        mine = self.x.secret.create({'value': t['chappassword'],
                                     'other_config': {}})
        mine_uuid = self.x.secret.get_uuid(mine)
        dc = {'target': t['target'], 'targetIQN': t['targetIQN'],
              'SCSIid': t['luns'][0]['SCSIid'], 'chapuser': t['chapuser'],
              'chappassword_secret': mine_uuid}
        before = set(self.x.secret.get_all())
        sr = self.create('lvmoiscsi', dc)
        copies = [self.x.PBD.get_device_config(p)['chappassword_secret']
                  for p in self.x.SR.get_PBDs(sr)]
        self.assertEqual(2, len(set(copies)))
        self.assertNotIn(mine_uuid, copies)
        self.assertEqual(2, len(set(self.x.secret.get_all()) - before))
        for pbd in self.x.SR.get_PBDs(sr):
            self.x.PBD.unplug(pbd)
        self.x.SR.forget(sr)
        self.assertEqual(before, set(self.x.secret.get_all()))
        self.assertEqual(t['chappassword'], self.x.secret.get_value(mine))
        sr = self.create('lvmoiscsi', dc)
        for pbd in self.x.SR.get_PBDs(sr):
            self.x.PBD.unplug(pbd)
        self.x.SR.destroy(sr)
        self.assertEqual(before, set(self.x.secret.get_all()))

    def test_lun_access_by_initiator(self) -> None:
        lun = self.topo['iscsi']['luns'][1]['SCSIid']
        slave_iqn = self.topo['hosts'][1]['iscsi_iqn']
        self.ctl.set_lun_access(lun, [slave_iqn])
        dc = self.iscsi_dc(SCSIid=lun)
        # The master may not see the LUN: it is not in the probe list.
        exc = self.assertFailure(['SR_BACKEND_FAILURE_107'], self.create,
                                 'lvmoiscsi', dc)
        self.assertNotIn(lun, exc.details[3])
        master_iqn = self.topo['hosts'][0]['iscsi_iqn']
        self.ctl.set_lun_access(lun, [slave_iqn, master_iqn])
        self.create('lvmoiscsi', dc)
        # A target whose every LUN is masked refuses the login.
        t = self.ctl.add_target('127.0.0.11', 'iqn.2026-01.test:masked')
        new = self.ctl.add_iscsi_lun(t['iqn'], GiB)
        self.ctl.set_lun_access(new['scsi_id'], ['iqn.nobody'])
        self.assertFailure(['SR_BACKEND_FAILURE_68'], self.x.SR.probe,
                           self.master, self.iscsi_dc(
                               targetIQN=t['iqn'], SCSIid=new['scsi_id']),
                           'lvmoiscsi')

    def test_shared_create_leaves_a_host_that_cannot_plug_unplugged(self) -> None:
        # xen-api xapi_sr.ml create: Async.PBD.plug per host, results unread.
        lun = self.topo['iscsi']['luns'][1]['SCSIid']
        master_iqn = self.topo['hosts'][0]['iscsi_iqn']
        slave = self.topo['hosts'][1]
        self.ctl.set_lun_access(lun, [master_iqn])
        sr = self.create('lvmoiscsi', self.iscsi_dc(SCSIid=lun))
        plugged = {self.x.PBD.get_host(p): self.x.PBD.get_currently_attached(p)
                   for p in self.x.SR.get_PBDs(sr)}
        self.assertEqual({self.master: True, slave['ref']: False}, plugged)
        self.vdi(sr)                                   # usable from the master
        (pbd,) = [p for p in self.x.SR.get_PBDs(sr)
                  if self.x.PBD.get_host(p) == slave['ref']]
        self.assertFailure(['SR_BACKEND_FAILURE_107'], self.x.PBD.plug, pbd)
        self.ctl.set_lun_access(lun, [master_iqn, slave['iscsi_iqn']])
        self.x.PBD.plug(pbd)
        self.assertTrue(self.x.PBD.get_currently_attached(pbd))

    def test_lvmohba(self) -> None:
        exc = self.assertFailure(['SR_BACKEND_FAILURE_107'], self.create,
                                 'lvmohba', {})
        self.assertIn('<Devlist>', exc.details[3])
        lun = self.topo['hba']['luns'][0]['SCSIid']
        sr = self.create('lvmohba', {'SCSIid': lun})
        self.assertEqual('lvmohba', self.x.SR.get_type(sr))

    def test_lvm_is_local(self) -> None:
        self.assertFailure(['SR_BACKEND_FAILURE_90'], self.create, 'lvm', {},
                           False)
        self.assertFailure(['SR_BACKEND_FAILURE_91'], self.create, 'lvm',
                           {'device': '/dev/sdz'}, False)
        sr = self.create('lvm', {'device': '/dev/sdb'}, False)
        pbds = self.x.SR.get_PBDs(sr)
        self.assertEqual(1, len(pbds))
        self.assertEqual(self.master, self.x.PBD.get_host(pbds[0]))
        slave = self.topo['hosts'][1]['ref']
        pbd = self.x.PBD.create({'host': slave, 'SR': sr,
                                 'device_config': {'device': '/dev/sdb'}})
        self.assertFailure(['SR_NOT_SHARABLE', sr, slave], self.x.PBD.plug,
                           pbd)
        self.assertFailure(['PBD_EXISTS', sr, slave, pbd], self.x.PBD.create,
                           {'host': slave, 'SR': sr, 'device_config': {}})
        self.assertFailure(['VALUE_NOT_SUPPORTED'], self.x.PBD.create,
                           {'host': slave, 'SR': sr,
                            'device_config': {'SRmaster': 'true'}})
        # Re-formatting the disk while its SR is plugged is refused.
        self.assertFailure(['SR_DEVICE_IN_USE'], self.create, 'lvm',
                           {'device': '/dev/sdb'}, False)

    def test_netapp_and_equal_credentials(self) -> None:
        n = self.topo['netapp']
        good = {k: n[k] for k in ('target', 'username', 'password',
                                  'aggregate')}
        for key, code in (('target', 120), ('username', 121),
                          ('password', 122), ('aggregate', 123)):
            dc = dict(good)
            del dc[key]
            self.assertFailure(['SR_BACKEND_FAILURE_%d' % code], self.create,
                               'netapp', dc)
        self.assertFailure(['SR_BACKEND_FAILURE_124'], self.create, 'netapp',
                           dict(good, target='192.0.2.7'))
        self.assertFailure(['SR_BACKEND_FAILURE_125'], self.create, 'netapp',
                           dict(good, password='wrong'))
        self.assertFailure(['SR_BACKEND_FAILURE_127'], self.create, 'netapp',
                           dict(good, FlexVols='64'))
        sr = self.create('netapp', good)
        self.assertEqual('8', self.x.SR.get_sm_config(sr)['FlexVols'])
        e = self.topo['equal']
        good = {k: e[k] for k in ('target', 'username', 'password',
                                  'storagepool')}
        for key, code in (('target', 160), ('username', 161),
                          ('password', 162), ('storagepool', 163)):
            dc = dict(good)
            del dc[key]
            self.assertFailure(['SR_BACKEND_FAILURE_%d' % code], self.create,
                               'equal', dc)
        self.assertFailure(['SR_BACKEND_FAILURE_169'], self.create, 'equal',
                           dict(good, username='nobody'))
        self.assertFailure(['SR_BACKEND_FAILURE_172'], self.create, 'equal',
                           dict(good, storagepool='nope'))
        self.assertFailure(['SR_BACKEND_FAILURE_173'], self.create, 'equal',
                           dict(good, target='192.0.2.8'))
        self.assertFailure(['SR_BACKEND_FAILURE_166'], self.create, 'equal',
                           dict(good, **{'snap-depletion': 'panic'}))
        sr = self.create('equal', good)
        self.assertEqual(str(2 * 1024 * GiB), self.x.SR.get_physical_size(sr))

    def test_sr_destroy_order_and_forget(self) -> None:
        nfs = self.topo['nfs']
        sr = self.create('nfs', {'server': nfs['server'],
                                 'serverpath': nfs['serverpath']})
        v = self.vdi(sr)
        self.assertFailure(['SR_HAS_PBD', sr], self.x.SR.destroy, sr)
        self.assertFailure(['SR_HAS_PBD', sr], self.x.SR.forget, sr)
        for pbd in self.x.SR.get_PBDs(sr):
            self.x.PBD.unplug(pbd)
        self.assertFailure(['SR_NOT_EMPTY'], self.x.SR.destroy, sr)
        for pbd in self.x.SR.get_PBDs(sr):
            self.x.PBD.plug(pbd)
        self.x.VDI.destroy(v)
        for pbd in self.x.SR.get_PBDs(sr):
            self.assertFailure(['OPERATION_NOT_ALLOWED',
                                'PBD is currently attached'],
                               self.x.PBD.destroy, pbd)
            self.x.PBD.unplug(pbd)
        self.x.SR.add_to_other_config(sr, 'indestructible', 'true')
        self.assertFailure(['SR_INDESTRUCTIBLE', sr], self.x.SR.destroy, sr)
        self.x.SR.remove_from_other_config(sr, 'indestructible')
        uuid = self.x.SR.get_uuid(sr)
        self.x.SR.destroy(sr)
        self.assertFailure(['UUID_INVALID', 'SR', uuid],
                           self.x.SR.get_by_uuid, uuid)
        out = self.x.SR.probe(self.master, {'server': nfs['server'],
                                            'serverpath': nfs['serverpath']},
                              'nfs')
        self.assertNotIn(uuid, out)
        # An SR with no PBDs cannot be destroyed, only forgotten.
        lone = self.x.SR.introduce('', 'lone', '', 'nfs', 'user', True, {})
        self.assertFailure(['SR_NO_PBDS', lone], self.x.SR.destroy, lone)
        self.x.SR.forget(lone)

    def test_introduce_reattach_and_resign_problem(self) -> None:
        sr = self.create('lvmoiscsi', self.iscsi_dc(), name='orig')
        uuid = self.x.SR.get_uuid(sr)
        v = self.vdi(sr, GiB, 'data')
        vdi_uuid = self.x.VDI.get_uuid(v)
        self.assertEqual(-1, int(self.x.SR.get_physical_size(
            self.x.SR.introduce('', 'x', '', 'nfs', 'user', True))))  # no PBD
        self.assertFailure(['SR_UUID_EXISTS', uuid], self.x.SR.introduce,
                           uuid, 'again', '', 'lvmoiscsi', 'user', True, {})
        # Copy the LUN on the array: the copy carries the same SR uuid.
        fabric = self.ctl.fabric()
        src = {lun['scsi_id']: lun for lun in fabric['luns']}[
            self.iscsi_dc()['SCSIid']]
        dst = self.ctl.add_iscsi_lun(self.topo['iscsi']['targetIQN'],
                                     src['size_bytes'], lun_id=9)
        self.ctl.copy_lun(src['scsi_id'], dst['scsi_id'])
        out = self.x.SR.probe(self.master, self.iscsi_dc(
            SCSIid=dst['scsi_id']), 'lvmoiscsi')
        self.assertIn(uuid, out)
        self.assertFailure(['SR_UUID_EXISTS', uuid], self.x.SR.introduce,
                           uuid, 'copy', '', 'lvmoiscsi', 'user', True, {})
        # Forget the original, reattach it: introduce + PBDs + plug + scan.
        for pbd in self.x.SR.get_PBDs(sr):
            self.x.PBD.unplug(pbd)
        self.x.SR.forget(sr)
        new = self.x.SR.introduce(uuid, 'back', '', 'lvmoiscsi', 'user', True,
                                  {})
        for h in self.topo['hosts']:
            pbd = self.x.PBD.create({'host': h['ref'], 'SR': new,
                                     'device_config': self.iscsi_dc()})
            self.x.PBD.plug(pbd)
        self.x.SR.scan(new)
        back = self.x.VDI.get_by_uuid(vdi_uuid)
        self.assertEqual('data', self.x.VDI.get_name_label(back))
        self.assertEqual(str(100 * GiB), self.x.SR.get_physical_size(new))
        # A PBD that points at another LUN does not plug: uuid mismatch.
        other = self.x.SR.introduce('', 'wrong', '', 'lvmoiscsi', 'user',
                                    True, {})
        pbd = self.x.PBD.create({'host': self.master, 'SR': other,
                                 'device_config': self.iscsi_dc(
                                     SCSIid=dst['scsi_id'])})
        self.assertFailure(['SR_BACKEND_FAILURE_47'], self.x.PBD.plug, pbd)

    def test_probe_ext_not_supported(self) -> None:
        self.assertFailure(['SR_OPERATION_NOT_SUPPORTED'],
                           self.x.SR.probe_ext, self.master, {}, 'nfs', {})

    def test_lun_grows_the_sr_on_scan_not_on_update(self) -> None:
        # sm LVHDSR.update only re-reads the VG; LVHDSR.scan grows it.
        sr = self.create('lvmoiscsi', self.iscsi_dc())
        before = self.x.SR.get_physical_size(sr)
        self.ctl.resize_lun(self.iscsi_dc()['SCSIid'], 150 * GiB)
        self.x.SR.update(sr)
        self.assertEqual(before, self.x.SR.get_physical_size(sr))
        vdi = self.vdi(sr)
        self.assertFailure(['SR_BACKEND_FAILURE_44'], self.x.VDI.resize, vdi,
                           str(int(before) + GiB))
        self.x.SR.scan(sr)
        self.assertEqual(str(150 * GiB), self.x.SR.get_physical_size(sr))
        self.x.VDI.resize(vdi, str(int(before) + GiB))

    def test_sr_grows_by_100_mib_or_more_only(self) -> None:
        # sm LVHDSR._expand_size: resizethreshold = 100 MiB.
        sr = self.create('lvmoiscsi', self.iscsi_dc())
        before = int(self.x.SR.get_physical_size(sr))
        scsi_id = self.iscsi_dc()['SCSIid']
        self.ctl.resize_lun(scsi_id, before + 96 * MiB)
        self.x.SR.scan(sr)
        self.assertEqual(str(before), self.x.SR.get_physical_size(sr))
        self.ctl.resize_lun(scsi_id, before + 100 * MiB)
        self.x.SR.scan(sr)
        self.assertEqual(str(before + 100 * MiB), self.x.SR.get_physical_size(sr))

    def test_plug_on_the_master_grows_the_sr(self) -> None:
        # sm LVHDSR.attach (master): _refresh_size, then _expand_size.
        sr = self.create('lvmoiscsi', self.iscsi_dc())
        uuid = self.x.SR.get_uuid(sr)
        self.ctl.resize_lun(self.iscsi_dc()['SCSIid'], 150 * GiB)
        for pbd in self.x.SR.get_PBDs(sr):
            self.x.PBD.unplug(pbd)
        self.x.SR.forget(sr)
        sr = self.x.SR.introduce(uuid, 'back', '', 'lvmoiscsi', 'user', True, {})
        for h in self.topo['hosts']:
            self.x.PBD.plug(self.x.PBD.create({'host': h['ref'], 'SR': sr,
                                               'device_config': self.iscsi_dc()}))
        self.assertEqual(str(150 * GiB), self.x.SR.get_physical_size(sr))


class AbsentSmTypeTest(base.SimTestCase):
    """A current pool: no StorageLink adapters (netapp, equal)."""

    pool_hosts = 1
    sim_kwargs = {'absent_sm_types': ('netapp', 'equal')}

    def test_no_sm_record_and_sr_create_is_unknown_driver(self) -> None:
        self.assertEqual({}, self.x.SM.get_all_records_where(
            'field "type"="netapp"'))
        self.assertNotIn('equal', self.x.SR.get_supported_types())
        host = self.x.host.get_all()[0]
        self.assertFailure(['SR_UNKNOWN_DRIVER', 'netapp'],
                           self.x.SR.create, host,
                           {'target': '127.0.0.1', 'username': 'u',
                            'password': 'p', 'aggregate': 'a'},
                           '0', 'n', '', 'netapp', 'user', True, {})
