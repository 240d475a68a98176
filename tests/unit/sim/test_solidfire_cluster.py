"""The Element simulator's rules, called directly (no server, no sockets)."""

from __future__ import annotations

import base64
import os
from typing import Any

import fixtures
import testtools

from xensm_driver.sim import fabric as fabric_mod
from xensm_driver.sim import solidfire as sfsim

GB = 10 ** 9
V8 = (8, 0)


class ClusterTestCase(testtools.TestCase):

    limits: dict[str, int] = {}

    def setUp(self) -> None:
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.fabric = fabric_mod.Fabric(os.path.join(root, 'fabric'))
        # Built, never started: the cluster's methods are called directly.
        self.sim = sfsim.ElementSimulator(self.fabric, unique_id='ab12', limits=self.limits)
        self.cluster = self.sim.cluster

    def call(self, method: str, version: tuple[int, int] = V8, /, **params: Any) -> Any:
        return self.cluster.execute(method, version, params)[0]

    def fails(self, error_name: str, method: str, version: tuple[int, int] = V8, /,
              **params: Any) -> sfsim.ElementFault:
        fault = self.assertRaises(sfsim.ElementFault, self.cluster.execute, method,
                                  version, params)
        self.assertEqual(error_name, fault.name, fault.message)
        return fault

    def account(self, name: str = 'acct', **kw: Any) -> int:
        return int(self.call('AddAccount', username=name, **kw)['accountID'])

    def volume(self, name: str = 'vol', account: int | None = None,
               size: int = GB) -> dict[str, Any]:
        if account is None:
            account = self.account('owner-%s' % name)
        return dict(self.call('CreateVolume', name=name, accountID=account,
                              totalSize=size)['volume'])


class TestVolumeRules(ClusterTestCase):

    def test_identity(self):
        vol = self.volume('My-Vol')
        self.assertEqual('iqn.2010-01.com.solidfire:ab12.my-vol.1', vol['iqn'])
        self.assertEqual('6f47acc1' '00000000' '61623132' '00000001', vol['scsiNAADeviceID'])
        self.assertEqual('61623132' '00000001' 'f47acc01' '00000000', vol['scsiEUIDeviceID'])
        self.assertEqual('36f47acc1000000006162313200000001',
                         sfsim.scsi_id_for_naa(vol['scsiNAADeviceID']))
        self.assertEqual('SolidFir', self.fabric.get_lun(
            sfsim.scsi_id_for_naa(vol['scsiNAADeviceID'])).vendor)

    def test_size_rounded_up_to_mib_and_bounded(self):
        self.assertEqual(1000341504, self.volume('a', size=GB)['totalSize'])
        self.assertEqual(2 * GB + 1048576 - (2 * GB) % 1048576,
                         self.volume('b', size=2 * GB)['totalSize'])
        acct = self.account()
        self.fails('xInvalidParameter', 'CreateVolume', name='c', accountID=acct,
                   totalSize=GB - 1)
        self.fails('xInvalidParameter', 'CreateVolume', name='c', accountID=acct,
                   totalSize=17592186044417)

    def test_name_length(self):
        acct = self.account()
        self.fails('xInvalidParameter', 'CreateVolume', name='', accountID=acct, totalSize=GB)
        self.fails('xInvalidParameter', 'CreateVolume', name='n' * 65, accountID=acct,
                   totalSize=GB)
        self.call('CreateVolume', name='n' * 64, accountID=acct, totalSize=GB)

    def test_duplicate_names_are_allowed(self):
        acct = self.account()
        a = self.volume('same', account=acct)
        b = self.volume('same', account=acct)
        self.assertNotEqual(a['volumeID'], b['volumeID'])

    def test_parameter_types_and_missing_members(self):
        acct = self.account()
        self.fails('xInvalidParameter', 'CreateVolume', name='v', accountID=str(acct),
                   totalSize=GB)
        self.fails('xInvalidParameter', 'CreateVolume', name='v', accountID=True,
                   totalSize=GB)
        fault = self.fails('xMissingParameter', 'CreateVolume', name='v', accountID=acct)
        self.assertIn('totalSize', fault.message)
        self.fails('xAccountIDDoesNotExist', 'CreateVolume', name='v', accountID=99,
                   totalSize=GB)

    def test_unused_parameters_are_reported(self):
        acct = self.account()
        _result, unused = self.cluster.execute(
            'CreateVolume', V8, {'name': 'v', 'accountID': acct, 'totalSize': GB,
                                 'sliceCount': 1, 'totalSzie': 5})
        self.assertEqual({'totalSzie': 5}, unused)

    def test_api_version_gates(self):
        vol = self.volume()
        self.fails('xUnknownAPIMethod', 'CreateSnapshot', (5, 0), volumeID=vol['volumeID'])
        self.call('CreateSnapshot', (6, 0), volumeID=vol['volumeID'])
        self.fails('xUnknownAPIMethod', 'CreateGroupSnapshot', (6, 0),
                   volumes=[vol['volumeID']])
        self.fails('xUnknownAPIMethod', 'ListVolumes', (7, 0))
        self.fails('xUnknownAPIMethod', 'NoSuchMethod', V8)

    def test_access_modes(self):
        vol = self.volume()
        self.fails('xUnrecognizedEnumString', 'ModifyVolume', volumeID=vol['volumeID'],
                   access='bogus')

    def test_account_transfer_moves_chap(self):
        vol = self.volume()
        other = self.account('other', initiatorSecret='OtherSecret12')
        self.call('ModifyVolume', volumeID=vol['volumeID'], accountID=other)
        self.assertEqual(('other', 'OtherSecret12'),
                         self.fabric.get_target(vol['iqn']).chap)

    def test_account_without_chap_and_without_vag_is_unreachable(self):
        acct = self.account('nochap', enableChap=False)
        vol = self.volume('v', account=acct)
        lun = self.fabric.get_lun(sfsim.scsi_id_for_naa(vol['scsiNAADeviceID']))
        self.assertEqual(set(), lun.initiators)


class TestAccounts(ClusterTestCase):

    def test_duplicate_username(self):
        self.account('a')
        self.fails('xDuplicateUsername', 'AddAccount', username='a')

    def test_secret_length(self):
        self.fails('xInvalidParameter', 'AddAccount', username='a', initiatorSecret='x' * 11)
        self.fails('xInvalidParameter', 'AddAccount', username='a', targetSecret='x' * 17)
        acct = self.call('AddAccount', username='a')['account']
        self.assertEqual(12, len(acct['initiatorSecret']))
        self.assertNotEqual(acct['initiatorSecret'], acct['targetSecret'])

    def test_lookups(self):
        aid = self.account('a')
        self.assertEqual(aid, self.call('GetAccountByName', username='a')['account']['accountID'])
        self.assertEqual('a', self.call('GetAccountByID', accountID=aid)['account']['username'])
        self.fails('xUnknownAccount', 'GetAccountByName', username='b')
        self.fails('xAccountIDDoesNotExist', 'GetAccountByID', accountID=aid + 1)


class TestSmallLimits(ClusterTestCase):

    limits = {'volumesPerAccountCountMax': 2, 'initiatorsPerVolumeAccessGroupCountMax': 2,
              'snapshotsPerVolumeMax': 2, 'volumesPerGroupSnapshotMax': 2}

    def test_volumes_per_account(self):
        acct = self.account()
        self.volume('a', account=acct)
        self.volume('b', account=acct)
        self.fails('xExceededLimit', 'CreateVolume', name='c', accountID=acct, totalSize=GB)

    def test_initiators_per_group(self):
        vag = self.call('CreateVolumeAccessGroup', name='g',
                        initiators=['iqn.a:1', 'iqn.a:2'])['volumeAccessGroupID']
        self.fails('xExceededLimit', 'AddInitiatorsToVolumeAccessGroup',
                   volumeAccessGroupID=vag, initiators=['iqn.a:3'])

    def test_snapshot_cap_applies_to_rollback_saving_state(self):
        vol = self.volume()
        s1 = self.call('CreateSnapshot', volumeID=vol['volumeID'])['snapshotID']
        self.call('CreateSnapshot', volumeID=vol['volumeID'])
        self.fails('xMaxSnapshotsPerVolumeExceeded', 'RollbackToSnapshot',
                   volumeID=vol['volumeID'], snapshotID=s1, saveCurrentState=True)
        self.call('RollbackToSnapshot', volumeID=vol['volumeID'], snapshotID=s1,
                  saveCurrentState=False)

    def test_volumes_per_group_snapshot(self):
        ids = [self.volume('v%d' % i)['volumeID'] for i in range(3)]
        self.fails('xExceededLimit', 'CreateGroupSnapshot', volumes=ids)
        self.fails('xInvalidParameter', 'CreateGroupSnapshot', volumes=[ids[0], ids[0]])
        self.fails('xInvalidParameter', 'CreateGroupSnapshot', volumes=[])


class TestAccessGroups(ClusterTestCase):

    def test_initiator_names_are_checked(self):
        self.fails('xInvalidParameter', 'CreateVolumeAccessGroup', name='g',
                   initiators=['not an iqn'])
        self.call('CreateVolumeAccessGroup', name='g',
                  initiators=['iqn.1998-01.com.example:h', 'eui.02004567A425678D',
                              '21:00:00:24:ff:3b:8a:7c'])

    def test_missing_group_and_not_in_group(self):
        self.fails('xVolumeAccessGroupIDDoesNotExist', 'DeleteVolumeAccessGroup',
                   volumeAccessGroupID=5)
        vag = self.call('CreateVolumeAccessGroup', name='g')['volumeAccessGroupID']
        self.fails('xNotInVolumeAccessGroup', 'RemoveInitiatorsFromVolumeAccessGroup',
                   volumeAccessGroupID=vag, initiators=['iqn.x:1'])
        listed = self.call('ListVolumeAccessGroups', volumeAccessGroups=[vag, 77])
        self.assertEqual([77], listed['volumeAccessGroupsNotFound'])

    def test_failed_add_changes_nothing(self):
        self.call('CreateVolumeAccessGroup', name='a', initiators=['iqn.x:taken'])
        vag = self.call('CreateVolumeAccessGroup', name='b')['volumeAccessGroupID']
        self.fails('xExceededLimit', 'AddInitiatorsToVolumeAccessGroup',
                   volumeAccessGroupID=vag, initiators=['iqn.x:free', 'iqn.x:taken'])
        group = self.call('ListVolumeAccessGroups', volumeAccessGroups=[vag])
        self.assertEqual([], group['volumeAccessGroups'][0]['initiators'])


class TestFaults(ClusterTestCase):

    def test_nth_and_times_count_from_injection(self):
        self.cluster.begin('GetLimits')
        self.cluster.add_fault({'method': 'GetLimits', 'error_name': 'xNotPrimary',
                                'nth': 2, 'times': 2})
        outcomes = [self.cluster.begin('GetLimits')[1] for _ in range(5)]
        self.assertEqual([None, 'xNotPrimary', 'xNotPrimary', None, None],
                         [o.name if o else None for o in outcomes])
        self.assertEqual(6, self.cluster.calls['GetLimits'])

    def test_forever_wildcard_latency_and_drop(self):
        self.cluster.add_fault({'method': '*', 'latency': 0.25, 'times': None})
        self.cluster.add_fault({'method': 'CreateVolume', 'drop_after': True})
        self.assertEqual((0.25, None, True, False), self.cluster.begin('CreateVolume'))
        self.assertEqual((0.25, None, False, False), self.cluster.begin('CreateVolume'))
        self.assertEqual((0.25, None, False, False), self.cluster.begin('ListVolumes'))

    def test_error_after_executes_then_answers_the_error(self):
        self.cluster.add_fault({'method': 'CreateVolume', 'error_name': 'xDBConnectionLoss',
                                'error_after': True})
        latency, error, drop, after = self.cluster.begin('CreateVolume')
        self.assertEqual(('xDBConnectionLoss', False, True), (error.name, drop, after))

    def test_bad_fault_specs(self):
        self.assertRaises(ValueError, self.cluster.add_fault, {'method': 'X'})
        self.assertRaises(ValueError, self.cluster.add_fault,
                          {'method': 'X', 'error_name': 'x', 'nth': 0})
        self.assertRaises(ValueError, self.cluster.add_fault, {'error_name': 'x'})

    def test_control_routes(self):
        status, answer = self.sim.control_request('POST', '/sim/faults', {
            'method': 'GetLimits', 'error_name': 'xNotPrimary'})
        self.assertEqual(200, status)
        self.assertEqual('GetLimits', answer['fault']['method'])
        self.assertEqual(404, self.sim.control_request('GET', '/sim/nope', {})[0])
        self.assertEqual(0.5, self.sim.control_request(
            'POST', '/sim/config', {'clone_seconds': 0.5})[1]['clone_seconds'])

    def test_auth(self):
        good = 'Basic ' + base64.b64encode(b'admin:admin').decode()
        bad = 'Basic ' + base64.b64encode(b'admin:nope').decode()
        self.assertTrue(self.sim.authorized(good))
        self.assertFalse(self.sim.authorized(bad))
        self.assertFalse(self.sim.authorized(None))
        self.assertFalse(self.sim.authorized('Basic !!!'))

    def test_unique_id_must_be_four_characters(self):
        self.assertRaises(ValueError, sfsim.ElementSimulator, self.fabric, unique_id='abc')
        self.assertEqual(4, len(sfsim.ElementSimulator(self.fabric).unique_id))
