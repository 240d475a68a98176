"""Element volumes on the shared fabric: identity, access, snapshots, rollback,
clones, group snapshots, delete/purge and capacity -- checked byte for byte."""

from __future__ import annotations

import datetime
import os
import threading

from tests.functional.solidfire import base
from xensm_driver import exception
from xensm_driver.sim import fabric as fabric_mod


class TestIdentityAndAccess(base.ElementTestCase):

    def test_volume_is_a_target_with_lun_0_on_the_svip(self):
        acct = self.account()
        vol = self.create_volume('UUID-Abc', size=base.GB)
        vid = vol['volumeID']
        self.assertEqual(1000341504, vol['totalSize'])     # rounded up to 954 MiB
        self.assertEqual('iqn.2010-01.com.solidfire:t3st.uuid-abc.%d' % vid, vol['iqn'])
        self.assertEqual('6f47acc100000000' + b't3st'.hex() + '%08x' % vid,
                         vol['scsiNAADeviceID'])
        self.assertEqual(b't3st'.hex() + '%08x' % vid + 'f47acc0100000000',
                         vol['scsiEUIDeviceID'])
        lun = self.lun(vol)
        self.assertEqual('3' + vol['scsiNAADeviceID'], lun.scsi_id)
        self.assertEqual((0, vol['iqn'], vol['totalSize']),
                         (lun.lun_id, lun.iqn, lun.size_bytes))
        target = self.fabric.get_target(vol['iqn'])
        self.assertEqual(('127.0.0.1', 3260), (target.address, target.port))
        self.assertEqual((acct['username'], acct['initiatorSecret']), target.chap)
        self.assertIsNone(lun.initiators)
        info = self.client.call('GetClusterInfo')['clusterInfo']
        self.assertEqual(self.sim.svip, info['svip'])

    def test_chap_login_without_access_group(self):
        acct = self.account()
        vol = self.create_volume('UUID-chap')
        chap = (acct['username'], acct['initiatorSecret'])
        luns = self.fabric.iscsi_login('127.0.0.1', 3260, vol['iqn'], 'iqn.any:host', chap)
        self.assertEqual([self.lun(vol).scsi_id], [x.scsi_id for x in luns])
        err = self.assertRaises(fabric_mod.FabricError, self.fabric.iscsi_login,
                                '127.0.0.1', 3260, vol['iqn'], 'iqn.any:host',
                                (acct['username'], 'wrong-secret'))
        self.assertEqual('chap', err.kind)

    def test_access_group_grants_exactly_its_initiators(self):
        vol = self.create_volume('UUID-vag')
        h1, h2, h3 = ('iqn.2020-01.org.xen:h%d' % i for i in (1, 2, 3))
        vag = self.client.call('CreateVolumeAccessGroup', name='pool', initiators=[h1],
                               volumes=[vol['volumeID']])['volumeAccessGroupID']
        self.assertEqual({h1}, self.lun(vol).initiators)
        self.client.call('AddInitiatorsToVolumeAccessGroup', volumeAccessGroupID=vag,
                         initiators=[h2])
        self.assertEqual({h1, h2}, self.lun(vol).initiators)
        self.fabric.iscsi_login('127.0.0.1', 3260, vol['iqn'], h2, None)
        err = self.assertRaises(fabric_mod.FabricError, self.fabric.iscsi_login,
                                '127.0.0.1', 3260, vol['iqn'], h3, None)
        self.assertEqual('access', err.kind)
        self.assertEqual([vag], self.volume_by_id(vol['volumeID'])['volumeAccessGroups'])
        self.client.call('RemoveVolumesFromVolumeAccessGroup', volumeAccessGroupID=vag,
                         volumes=[vol['volumeID']])
        self.assertIsNone(self.lun(vol).initiators)
        not_in = self.assertRaises(exception.ArrayError, self.client.call,
                                   'RemoveVolumesFromVolumeAccessGroup',
                                   volumeAccessGroupID=vag, volumes=[vol['volumeID']])
        self.assertEqual('xNotInVolumeAccessGroup', not_in.name)
        self.client.call('DeleteVolumeAccessGroup', volumeAccessGroupID=vag)
        self.assertRaises(exception.ArrayNotFound, self.client.call,
                          'AddVolumesToVolumeAccessGroup', volumeAccessGroupID=vag,
                          volumes=[vol['volumeID']])

    def test_volume_in_at_most_four_access_groups(self):
        vol = self.create_volume('UUID-4vag')
        for i in range(4):
            self.client.call('CreateVolumeAccessGroup', name='g%d' % i,
                             volumes=[vol['volumeID']])
        err = self.assertRaises(exception.ArrayLimitExceeded, self.client.call,
                                'CreateVolumeAccessGroup', name='g5',
                                volumes=[vol['volumeID']])
        self.assertEqual('xExceededLimit', err.name)

    def test_locked_volume_is_reachable_by_nobody(self):
        vol = self.create_volume('UUID-lock')
        self.client.call('ModifyVolume', volumeID=vol['volumeID'], access='locked')
        self.assertEqual(set(), self.lun(vol).initiators)
        self.client.call('ModifyVolume', volumeID=vol['volumeID'], access='readWrite')
        self.assertIsNone(self.lun(vol).initiators)

    def test_extend_grows_the_lun_and_never_shrinks(self):
        vol = self.create_volume('UUID-grow')
        grown = self.client.call('ModifyVolume', volumeID=vol['volumeID'],
                                 totalSize=2 * base.GB)['volume']
        self.assertEqual(2000683008, grown['totalSize'])
        self.assertEqual(2000683008, self.lun(vol).size_bytes)
        err = self.assertRaises(exception.ArrayError, self.client.call, 'ModifyVolume',
                                volumeID=vol['volumeID'], totalSize=base.GB)
        self.assertEqual('xVolumeShrinkProhibited', err.name)

    def test_list_volumes_v8_filters(self):
        a1 = self.account('p1')
        a2 = self.account('p2')
        v1 = self.create_volume('UUID-1', account=a1)
        v2 = self.create_volume('UUID-2', account=a2)
        v3 = self.create_volume('UUID-3', account=a1)
        self.client.call('DeleteVolume', volumeID=v3['volumeID'])

        def ids(**kw):
            return [v['volumeID'] for v in self.client.call('ListVolumes', **kw)['volumes']]

        all_ids = [v1['volumeID'], v2['volumeID'], v3['volumeID']]
        self.assertEqual(all_ids, ids())
        self.assertEqual([v1['volumeID'], v3['volumeID']], ids(accounts=[a1['accountID']]))
        self.assertEqual([v2['volumeID']], ids(volumeIDs=[v2['volumeID']]))
        self.assertEqual([v3['volumeID']], ids(volumeStatus='deleted'))
        self.assertEqual([v2['volumeID']], ids(volumeName='UUID-2'))
        self.assertEqual([v2['volumeID']], ids(startVolumeID=v2['volumeID'], limit=1))
        active = self.client.call('ListActiveVolumes')['volumes']
        self.assertEqual([v1['volumeID'], v2['volumeID']], [v['volumeID'] for v in active])
        mine = self.client.call('ListVolumesForAccount', accountID=a1['accountID'])
        self.assertEqual([v1['volumeID'], v3['volumeID']],
                         [v['volumeID'] for v in mine['volumes']])

    def test_concurrent_creates_get_distinct_volumes(self):
        acct = self.account()
        errors: list[BaseException] = []

        def create(i):
            try:
                self.create_volume('UUID-c%d' % i, account=acct)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([], errors)
        vols = self.client.call('ListVolumes')['volumes']
        self.assertEqual(12, len({v['volumeID'] for v in vols}))
        self.assertEqual(12, len({v['iqn'] for v in vols}))
        self.assertEqual(12, len(self.fabric.luns()))


class TestSnapshots(base.ElementTestCase):

    def test_snapshot_overwrite_rollback_gives_old_bytes(self):
        vol = self.create_volume('UUID-rb')
        self.write(vol, b'old bytes')
        self.write(vol, b'{"sr_uuid": "sr-1"}', name='sr-metadata')
        snap = self.client.call('CreateSnapshot', volumeID=vol['volumeID'], name='s1')
        self.write(vol, b'NEW BYTES')
        self.write(vol, b'{"sr_uuid": "sr-2"}', name='sr-metadata')
        self.client.call('RollbackToSnapshot', volumeID=vol['volumeID'],
                         snapshotID=snap['snapshotID'], saveCurrentState=False)
        self.assertEqual(b'old bytes', self.read(vol))
        self.assertEqual(b'{"sr_uuid": "sr-1"}', self.read(vol, 'sr-metadata'))

    def test_rollback_saving_current_state(self):
        vol = self.create_volume('UUID-rb2')
        self.write(vol, b'one')
        s1 = self.client.call('CreateSnapshot', volumeID=vol['volumeID'])['snapshotID']
        self.write(vol, b'two')
        saved = self.client.call('RollbackToSnapshot', volumeID=vol['volumeID'],
                                 snapshotID=s1, saveCurrentState=True, name='before')
        self.assertEqual(b'one', self.read(vol))
        self.client.call('RollbackToSnapshot', volumeID=vol['volumeID'],
                         snapshotID=saved['snapshotID'], saveCurrentState=False)
        self.assertEqual(b'two', self.read(vol))
        names = [s['name'] for s in self.client.list_snapshots(vol['volumeID'])]
        self.assertIn('before', names)

    def test_rollback_needs_save_current_state(self):
        vol = self.create_volume('UUID-rb3')
        s1 = self.client.call('CreateSnapshot', volumeID=vol['volumeID'])['snapshotID']
        err = self.assertRaises(exception.ArrayError, self.client.call,
                                'RollbackToSnapshot', volumeID=vol['volumeID'], snapshotID=s1)
        self.assertEqual('xMissingParameter', err.name)

    def test_33rd_snapshot_is_refused(self):
        vol = self.create_volume('UUID-many')
        for i in range(32):
            self.client.call('CreateSnapshot', volumeID=vol['volumeID'], name='s%d' % i)
        err = self.assertRaises(exception.ArrayLimitExceeded, self.client.call,
                                'CreateSnapshot', volumeID=vol['volumeID'], name='s32')
        self.assertEqual('xMaxSnapshotsPerVolumeExceeded', err.name)
        self.assertEqual(33, self.control.calls()['CreateSnapshot'])
        self.assertEqual(32, len(self.client.list_snapshots(vol['volumeID'])))
        # A group snapshot counts against the same cap.
        self.assertRaises(exception.ArrayLimitExceeded, self.client.call,
                          'CreateGroupSnapshot', volumes=[vol['volumeID']])
        first = self.client.list_snapshots(vol['volumeID'])[0]['snapshotID']
        self.client.call('DeleteSnapshot', snapshotID=first)
        self.client.call('CreateSnapshot', volumeID=vol['volumeID'], name='s32')

    def test_snapshot_name_limit(self):
        vol = self.create_volume('UUID-n')
        err = self.assertRaises(exception.ArrayError, self.client.call, 'CreateSnapshot',
                                volumeID=vol['volumeID'], name='x' * 65)
        self.assertEqual('xInvalidParameter', err.name)
        self.client.call('CreateSnapshot', volumeID=vol['volumeID'], name='x' * 64)

    def test_snapshot_of_another_volume_is_refused(self):
        a = self.create_volume('UUID-a')
        b = self.create_volume('UUID-b')
        sa = self.client.call('CreateSnapshot', volumeID=a['volumeID'])['snapshotID']
        self.assertRaises(exception.ArrayNotFound, self.client.call, 'RollbackToSnapshot',
                          volumeID=b['volumeID'], snapshotID=sa, saveCurrentState=False)

    def test_group_snapshot_and_group_rollback(self):
        a = self.create_volume('UUID-ga')
        b = self.create_volume('UUID-gb')
        self.write(a, b'a1')
        self.write(b, b'b1')
        grp = self.client.call('CreateGroupSnapshot', name='UUID-g',
                               volumes=[a['volumeID'], b['volumeID']])
        members = {m['volumeID']: m['snapshotID'] for m in grp['members']}
        self.assertEqual({a['volumeID'], b['volumeID']}, set(members))
        snaps = self.client.list_snapshots(a['volumeID'])
        self.assertEqual(['UUID-g'], [s['name'] for s in snaps])
        self.assertEqual(grp['groupSnapshotID'], snaps[0]['groupID'])
        self.write(a, b'a2')
        self.write(b, b'b2')
        self.client.call('RollbackToGroupSnapshot', groupSnapshotID=grp['groupSnapshotID'],
                         saveCurrentState=False)
        self.assertEqual((b'a1', b'b1'), (self.read(a), self.read(b)))
        listed = self.client.call('ListGroupSnapshots', volumes=[b['volumeID']])
        self.assertEqual([grp['groupSnapshotID']],
                         [g['groupSnapshotID'] for g in listed['groupSnapshots']])
        self.client.call('DeleteGroupSnapshot', groupSnapshotID=grp['groupSnapshotID'],
                         saveMembers=False)
        self.assertEqual([], self.client.list_snapshots())
        self.assertRaises(exception.ArrayNotFound, self.client.call, 'DeleteGroupSnapshot',
                          groupSnapshotID=grp['groupSnapshotID'], saveMembers=False)


class TestClones(base.ElementTestCase):

    def test_clone_carries_source_content_and_sr_identity(self):
        src = self.create_volume('UUID-src')
        self.write(src, b'source data')
        self.write(src, b'{"sr_uuid": "sr-src"}', name='sr-metadata')
        cl = self.client.call('CloneVolume', volumeID=src['volumeID'], name='UUID-cl')
        result = self.client.wait_async(cl['asyncHandle'], 5)
        self.assertEqual(cl['volumeID'], result['volumeID'])
        clone = self.volume_by_id(cl['volumeID'])
        self.assertEqual('active', clone['status'])
        self.assertNotEqual(src['scsiNAADeviceID'], clone['scsiNAADeviceID'])
        self.assertEqual(b'source data', self.read(clone))
        self.assertEqual(b'{"sr_uuid": "sr-src"}', self.read(clone, 'sr-metadata'))
        self.assertNotEqual(self.lun(src).path, self.lun(clone).path)
        # Independent afterwards.
        self.write(clone, b'clone data')
        self.assertEqual(b'source data', self.read(src))

    def test_clone_of_snapshot_holds_snapshot_bytes_while_source_changes(self):
        src = self.create_volume('UUID-src2')
        self.write(src, b'at snapshot')
        snap = self.client.call('CreateSnapshot', volumeID=src['volumeID'])['snapshotID']
        self.write(src, b'after snapshot')
        cl = self.client.call('CloneVolume', volumeID=src['volumeID'], snapshotID=snap,
                              name='UUID-cl2', newSize=2 * base.GB)
        self.client.wait_async(cl['asyncHandle'], 5)
        clone = self.volume_by_id(cl['volumeID'])
        self.assertEqual(b'at snapshot', self.read(clone))
        self.assertEqual(2000683008, clone['totalSize'])
        self.write(src, b'later still')
        self.assertEqual(b'at snapshot', self.read(clone))

    def test_clone_job_runs_for_a_while(self):
        self.control.configure(clone_seconds=0.4)
        src = self.create_volume('UUID-src3')
        cl = self.client.call('CloneVolume', volumeID=src['volumeID'], name='UUID-cl3')
        self.assertEqual('init', self.volume_by_id(cl['volumeID'])['status'])
        running = self.client.call('GetAsyncResult', asyncHandle=cl['asyncHandle'],
                                   keepResult=True)
        self.assertEqual('running', running['status'])
        err = self.assertRaises(exception.ArrayError, self.client.wait_async,
                                cl['asyncHandle'], 0.05)
        self.assertEqual('AsyncTimeout', err.name)
        self.client.wait_async(cl['asyncHandle'], 5, interval=0.05)
        self.assertEqual('active', self.volume_by_id(cl['volumeID'])['status'])

    def test_clone_jobs_per_volume_limit(self):
        self.control.configure(clone_seconds=5)
        src = self.create_volume('UUID-src4')
        client = self.make_client(retries=0)
        for i in range(2):
            client.call('CloneVolume', volumeID=src['volumeID'], name='UUID-c%d' % i)
        err = self.assertRaises(exception.ArrayLimitExceeded, client.call, 'CloneVolume',
                                volumeID=src['volumeID'], name='UUID-c3')
        self.assertEqual('xMaxClonesPerVolumeExceeded', err.name)

    def test_failed_clone_job_raises_and_leaves_no_volume(self):
        src = self.create_volume('UUID-src5')
        self.control.inject_fault('async:CloneVolume', 'xSliceNotRegistered')
        cl = self.client.call('CloneVolume', volumeID=src['volumeID'], name='UUID-bad')
        err = self.assertRaises(exception.ArrayError, self.client.wait_async,
                                cl['asyncHandle'], 5)
        self.assertEqual('xSliceNotRegistered', err.name)
        self.assertIsNone(self.client.get_volume_by_id(cl['volumeID'], include_deleted=True))
        self.assertEqual([src['volumeID']],
                         [v['volumeID'] for v in self.client.call('ListVolumes')['volumes']])
        self.assertRaises(KeyError, self.fabric.get_lun, '3' + cl['volume']['scsiNAADeviceID'])

    def test_async_result_is_forgotten_unless_kept(self):
        src = self.create_volume('UUID-src6')
        cl = self.client.call('CloneVolume', volumeID=src['volumeID'], name='UUID-c6')
        done = self.client.call('GetAsyncResult', asyncHandle=cl['asyncHandle'])
        self.assertEqual('complete', done['status'])
        client = self.make_client(retries=0)
        err = self.assertRaises(exception.ArrayError, client.call, 'GetAsyncResult',
                                asyncHandle=cl['asyncHandle'])
        self.assertEqual('xDBNoSuchPath', err.name)


class TestDeleteAndPurge(base.ElementTestCase):

    def test_stale_id_never_finds_or_deletes_another_volume(self):
        a = self.create_volume('UUID-a')
        b = self.create_volume('UUID-b')
        # Out of band: A is deleted and purged.
        self.client.call('DeleteVolume', volumeID=a['volumeID'])
        self.client.call('PurgeDeletedVolume', volumeID=a['volumeID'])
        # The trap: listing from A's ID answers B.
        raw = self.client.call('ListVolumes', startVolumeID=a['volumeID'], limit=1)
        self.assertEqual([b['volumeID']], [v['volumeID'] for v in raw['volumes']])
        # The helper checks the ID.
        self.assertIsNone(self.client.get_volume_by_id(a['volumeID']))
        self.assertRaises(exception.ArrayNotFound, self.client.call, 'DeleteVolume',
                          volumeID=a['volumeID'])
        self.assertEqual('active', self.volume_by_id(b['volumeID'])['status'])
        self.assertTrue(os.path.isdir(self.lun(b).path))

    def test_deleted_volume_keeps_snapshots_until_purge(self):
        vol = self.create_volume('UUID-del')
        self.write(vol, b'keep me')
        snap = self.client.call('CreateSnapshot', volumeID=vol['volumeID'])
        vag = self.client.call('CreateVolumeAccessGroup', name='pool',
                               initiators=['iqn.2020-01.org.xen:h1'],
                               volumes=[vol['volumeID']])['volumeAccessGroupID']
        self.client.call('DeleteVolume', volumeID=vol['volumeID'])
        self.assertEqual(set(), self.lun(vol).initiators)
        self.assertIsNone(self.client.get_volume_by_id(vol['volumeID']))
        self.assertEqual('deleted', self.volume_by_id(
            vol['volumeID'], include_deleted=True)['status'])
        self.assertEqual([snap['snapshotID']],
                         [s['snapshotID'] for s in self.client.list_snapshots(vol['volumeID'])])
        group = self.client.call('ListVolumeAccessGroups')['volumeAccessGroups'][0]
        self.assertEqual(([], [vol['volumeID']]), (group['volumes'], group['deletedVolumes']))
        self.assertRaises(exception.ArrayNotFound, self.client.call, 'CreateSnapshot',
                          volumeID=vol['volumeID'])
        # Restore brings back access and data.
        self.client.call('RestoreDeletedVolume', volumeID=vol['volumeID'])
        self.assertEqual({'iqn.2020-01.org.xen:h1'}, self.lun(vol).initiators)
        self.assertEqual(b'keep me', self.read(vol))
        # Purge destroys LUN and snapshots.
        self.client.call('DeleteVolume', volumeID=vol['volumeID'])
        path = self.lun(vol).path
        snap_path = [s['path'] for s in self.control.dump()['snapshots']][0]
        self.client.call('PurgeDeletedVolume', volumeID=vol['volumeID'])
        self.assertRaises(KeyError, self.lun, vol)
        self.assertRaises(KeyError, self.fabric.get_target, vol['iqn'])
        self.assertFalse(os.path.exists(path))
        self.assertFalse(os.path.exists(snap_path))
        self.assertEqual([], self.client.list_snapshots())
        group = self.client.call('ListVolumeAccessGroups',
                                 volumeAccessGroups=[vag])['volumeAccessGroups'][0]
        self.assertEqual(([], []), (group['volumes'], group['deletedVolumes']))
        self.assertRaises(exception.ArrayNotFound, self.client.call, 'ListSnapshots',
                          volumeID=vol['volumeID'])

    def test_deleted_volume_is_purged_after_the_cleanup_interval(self):
        # Element purges a deleted volume, snapshots and all, after the
        # cleanup interval: about 8 h by default, as purgeTime says.
        vol = self.create_volume('UUID-auto')
        self.client.call('CreateSnapshot', volumeID=vol['volumeID'])
        deleted = self.client.call('DeleteVolume', volumeID=vol['volumeID'])['volume']
        delay = (datetime.datetime.fromisoformat(deleted['purgeTime'])
                 - datetime.datetime.fromisoformat(deleted['deleteTime']))
        self.assertEqual(8 * 3600, delay.total_seconds())
        self.assertEqual(1, len(self.client.list_snapshots(vol['volumeID'])))
        # With a short interval, the next call finds it purged.
        self.assertEqual(0, self.control.configure(purge_seconds=0)['purge_seconds'])
        other = self.create_volume('UUID-gone')
        self.client.call('CreateSnapshot', volumeID=other['volumeID'])
        self.client.call('DeleteVolume', volumeID=other['volumeID'])
        self.assertIsNone(self.client.get_volume_by_id(other['volumeID'],
                                                       include_deleted=True))
        self.assertRaises(KeyError, self.lun, other)
        self.assertEqual([], [s for s in self.client.list_snapshots()
                              if s['volumeID'] == other['volumeID']])
        # The first one keeps the purge time it was given.
        self.assertEqual('deleted', self.volume_by_id(
            vol['volumeID'], include_deleted=True)['status'])

    def test_purge_needs_delete_first(self):
        vol = self.create_volume('UUID-p')
        err = self.assertRaises(exception.ArrayError, self.client.call,
                                'PurgeDeletedVolume', volumeID=vol['volumeID'])
        self.assertEqual('xInvalidParameter', err.name)
        self.assertEqual('active', self.volume_by_id(vol['volumeID'])['status'])


class TestCapacity(base.ElementTestCase):

    def test_thin_capacity(self):
        empty = self.client.call('GetClusterCapacity')['clusterCapacity']
        self.assertEqual((0, 0), (empty['provisionedSpace'], empty['usedSpace']))
        a = self.create_volume('UUID-ca', size=10 * base.GB)
        self.create_volume('UUID-cb', size=base.GB)
        cap = self.client.call('GetClusterCapacity')['clusterCapacity']
        self.assertEqual(_mib(10 * base.GB) + _mib(base.GB), cap['provisionedSpace'])
        self.assertEqual(0, cap['usedSpace'])
        self.write(a, b'\1' * (1 << 20))
        cap = self.client.call('GetClusterCapacity')['clusterCapacity']
        self.assertGreaterEqual(cap['usedSpace'], 1 << 20)
        self.assertLess(cap['usedSpace'], 2 << 20)
        self.assertGreater(cap['maxProvisionedSpace'], cap['provisionedSpace'])


def _mib(size: int) -> int:
    return -(-size // (1 << 20)) * (1 << 20)
