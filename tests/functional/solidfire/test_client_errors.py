"""ElementClient against the simulator: error mapping, retries, lost answers."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading

import requests

from tests.functional.solidfire import base
from xensm_driver import exception
from xensm_driver.arrays import solidfire


class TestErrorsInBodies(base.ElementTestCase):

    def test_wire_format_error_inside_http_200(self):
        resp = requests.post(self.sim.url + '/json-rpc/1.0',
                             json={'method': 'DeleteVolume', 'params': {'volumeID': 77},
                                   'id': 9},
                             auth=('admin', 'sim-Admin-Pw-91'), timeout=5)
        self.assertEqual(200, resp.status_code)
        body = resp.json()
        self.assertEqual(9, body['id'])
        self.assertNotIn('result', body)
        self.assertEqual('xVolumeIDDoesNotExist', body['error']['name'])
        self.assertEqual(500, body['error']['code'])
        self.assertIn('77', body['error']['message'])

    def test_missing_volume_is_array_not_found(self):
        err = self.assertRaises(exception.ArrayNotFound, self.client.call,
                                'DeleteVolume', volumeID=77)
        self.assertEqual('xVolumeIDDoesNotExist', err.name)
        self.assertEqual('DeleteVolume', err.method)
        self.assertEqual(500, err.kwargs['code'])
        self.assertIn('xVolumeIDDoesNotExist', str(err))

    def test_unknown_account_is_not_found_and_helper_returns_none(self):
        self.assertRaises(exception.ArrayNotFound, self.client.call,
                          'GetAccountByName', username='nobody')
        self.assertIsNone(self.client.get_account_by_name('nobody'))
        acct = self.client.ensure_account('somebody')
        self.assertEqual(acct, self.client.ensure_account('somebody'))
        self.assertEqual(1, self.control.calls()['AddAccount'])

    def test_initiator_in_second_access_group_is_limit_exceeded(self):
        iqn = 'iqn.2020-01.org.xen:host1'
        vag = self.client.call('CreateVolumeAccessGroup', name='pool-a',
                               initiators=[iqn])['volumeAccessGroupID']
        err = self.assertRaises(exception.ArrayLimitExceeded, self.client.call,
                                'CreateVolumeAccessGroup', name='pool-b', initiators=[iqn])
        self.assertEqual('xExceededLimit', err.name)
        again = self.assertRaises(exception.ArrayError, self.client.call,
                                  'AddInitiatorsToVolumeAccessGroup',
                                  volumeAccessGroupID=vag, initiators=[iqn])
        self.assertEqual('xAlreadyInVolumeAccessGroup', again.name)
        self.assertNotIsInstance(again, exception.ArrayLimitExceeded)
        groups = self.client.call('ListVolumeAccessGroups')['volumeAccessGroups']
        self.assertEqual([[iqn]], [g['initiators'] for g in groups])

    def test_missing_parameter(self):
        err = self.assertRaises(exception.ArrayError, self.client.call,
                                'CreateVolume', name='x', totalSize=base.GB)
        self.assertEqual('xMissingParameter', err.name)
        self.assertIn('accountID', str(err))

    def test_method_below_its_api_version_is_unknown(self):
        err = self.assertRaises(exception.ArrayError, self.client.call,
                                'ListVolumes', api_version='7.0')
        self.assertEqual('xUnknownAPIMethod', err.name)
        # The client's table sends it at 8.0.
        self.assertEqual({'volumes': []}, self.client.call('ListVolumes'))

    def test_accepts_the_versions_cinder_uses(self):
        for version in ('1.0', '5.0', '6.0', '7.0', '8.0', '9.6', '12.3'):
            self.assertIn('clusterInfo',
                          self.client.call('GetClusterInfo', api_version=version))
        err = self.assertRaises(exception.ArrayError, self.client.call,
                                'GetClusterInfo', api_version='99.0')
        self.assertEqual('xUnknownAPIVersion', err.name)

    def test_bad_password_is_http_401_not_retried(self):
        bad = solidfire.ElementClient(self.sim.url, 'admin', 'wrong-pw-123',
                                           backoff=0.001)
        self.addCleanup(bad.close)
        raw = requests.post(self.sim.url + '/json-rpc/1.0', json={'method': 'GetLimits'},
                            auth=('admin', 'wrong-pw-123'), timeout=5)
        self.assertEqual(401, raw.status_code)
        err = self.assertRaises(exception.ArrayError, bad.call, 'GetLimits')
        self.assertEqual('HTTP401', err.name)
        self.assertNotIn('wrong-pw-123', str(err))
        self.assertEqual({}, self.control.calls())


class TestRetries(base.ElementTestCase):

    def test_retryable_error_on_read_is_retried(self):
        self.control.inject_fault('ListVolumes', 'xDBVersionMismatch', times=2)
        self.assertEqual({'volumes': []}, self.client.call('ListVolumes'))
        self.assertEqual(3, self.control.calls()['ListVolumes'])

    def test_retryable_error_on_create_is_retried_without_duplicate(self):
        # An error answer means the array did not do it: safe to send again.
        acct = self.account()
        self.control.inject_fault('CreateVolume', 'xNotPrimary', times=2)
        self.create_volume('UUID-r1', account=acct)
        self.assertEqual(3, self.control.calls()['CreateVolume'])
        self.assertEqual(1, len(self.client.find_volumes_by_name('UUID-r1')))

    def test_non_retryable_error_is_raised_at_once(self):
        self.control.inject_fault('ListVolumes', 'xInvalidParameter')
        err = self.assertRaises(exception.ArrayError, self.client.call, 'ListVolumes')
        self.assertEqual('xInvalidParameter', err.name)
        self.assertEqual(1, self.control.calls()['ListVolumes'])

    def test_retries_run_out(self):
        client = self.make_client(retries=2)
        self.control.inject_fault('GetClusterInfo', 'xDBConnectionLoss', times=None)
        err = self.assertRaises(exception.ArrayError, client.call, 'GetClusterInfo')
        self.assertEqual('xDBConnectionLoss', err.name)
        self.assertEqual(3, self.control.calls()['GetClusterInfo'])

    def test_snapshot_cap_is_not_retried(self):
        self.control.inject_fault('CreateSnapshot', 'xMaxSnapshotsPerVolumeExceeded')
        vol = self.create_volume('UUID-cap')
        self.assertRaises(exception.ArrayLimitExceeded, self.client.call,
                          'CreateSnapshot', volumeID=vol['volumeID'])
        self.assertEqual(1, self.control.calls()['CreateSnapshot'])

    def test_backoff_doubles(self):
        client = self.make_client(retries=3, backoff=0.01)
        slept: list[float] = []
        client._sleep = slept.append
        self.control.inject_fault('GetLimits', 'xNotReadyForIO', times=3)
        client.call('GetLimits')
        self.assertEqual([0.01, 0.02, 0.04], slept)


class TestTransientErrors(base.ElementTestCase):
    """Element's transient errors (Cinder's list, LP#1891914, LP#1934435)."""

    def test_every_transient_error_on_a_read_is_retried_and_succeeds(self):
        for name in sorted(solidfire.RETRYABLE_ERRORS):
            self.control.reset_calls()
            self.control.inject_fault('ListVolumes', name, times=2)
            self.assertEqual({'volumes': []}, self.client.call('ListVolumes'), name)
            self.assertEqual(3, self.control.calls()['ListVolumes'], name)
        for name in ('xDBConnectionLoss', 'xMVIPNotResponding', 'xNotPrimary',
                     'xSliceNotRegistered', 'xDBOperationTimeout', 'xNoHandler',
                     'xSnapshotFailed', 'xRecvTimeout', 'xDBNoSuchPath',
                     'xPermissionDenied'):
            self.assertIn(name, solidfire.RETRYABLE_ERRORS)

    def test_a_read_answered_after_it_ran_is_simply_read_again(self):
        self.create_volume('UUID-t1')
        self.control.inject_fault('ListVolumes', 'xDBConnectionLoss', error_after=True)
        self.assertEqual(['UUID-t1'],
                         [v['name'] for v in self.client.call('ListVolumes')['volumes']])
        self.assertEqual(2, self.control.calls()['ListVolumes'])

    def test_create_answered_maybe_done_is_not_resent(self):
        # xDBConnectionLoss after the database applied it: a second
        # CreateVolume would make a second volume.
        acct = self.account()
        for name in sorted(solidfire.MAYBE_DONE_ERRORS):
            self.control.reset_calls()
            self.control.inject_fault('CreateVolume', name, error_after=True)
            vol_name = 'UUID-%s' % name
            err = self.assertRaises(exception.ArrayConnectionError, self.client.call,
                                    'CreateVolume', name=vol_name,
                                    accountID=acct['accountID'], totalSize=base.GB)
            self.assertTrue(err.kwargs['sent'])
            self.assertEqual(name, err.name)
            self.assertIn('look the object up', str(err))
            self.assertEqual(1, self.control.calls()['CreateVolume'], name)
            self.assertEqual(1, len(self.client.find_volumes_by_name(vol_name)), name)

    def test_create_answered_not_done_is_resent_once_done(self):
        acct = self.account()
        self.control.inject_fault('CreateVolume', 'xSliceNotRegistered', times=1)
        self.create_volume('UUID-t3', account=acct)
        self.assertEqual(2, self.control.calls()['CreateVolume'])
        self.assertEqual(1, len(self.client.find_volumes_by_name('UUID-t3')))


class TestLostAnswers(base.ElementTestCase):

    def test_lost_answer_on_create_is_surfaced_not_resent(self):
        acct = self.account()
        self.control.inject_fault('CreateVolume', drop_after=True)
        err = self.assertRaises(exception.ArrayConnectionError, self.client.call,
                                'CreateVolume', name='UUID-lost', accountID=acct['accountID'],
                                totalSize=base.GB)
        self.assertTrue(err.kwargs['sent'])
        self.assertEqual(1, self.control.calls()['CreateVolume'])
        # The caller looks it up by name and finds the one the array made.
        found = self.client.find_volumes_by_name('UUID-lost')
        self.assertEqual(1, len(found))
        self.assertEqual(found[0], self.client.find_volume_by_name('UUID-lost'))

    def test_lost_answer_on_read_is_resent(self):
        self.control.inject_fault('ListActiveVolumes', drop_after=True)
        self.assertEqual({'volumes': []}, self.client.call('ListActiveVolumes'))
        self.assertEqual(2, self.control.calls()['ListActiveVolumes'])

    def test_read_timeout_on_create_is_surfaced_and_array_still_creates(self):
        acct = self.account()
        client = self.make_client(timeout=0.2)
        self.control.inject_fault('CreateVolume', latency=0.5)
        err = self.assertRaises(exception.ArrayConnectionError, client.call,
                                'CreateVolume', name='UUID-slow', accountID=acct['accountID'],
                                totalSize=base.GB)
        self.assertTrue(err.kwargs['sent'])
        self.assertEqual(1, self.control.calls()['CreateVolume'])
        self.assertEqual(1, len(self.wait_for(
            lambda: self.client.find_volumes_by_name('UUID-slow'))))

    def test_array_down_is_retried_then_reported_as_not_sent(self):
        port = self.sim.port
        self.sim.stop()
        client = self.make_client(retries=2)
        err = self.assertRaises(exception.ArrayConnectionError, client.call,
                                'CreateVolume', name='UUID-down', accountID=1,
                                totalSize=base.GB)
        self.assertFalse(err.kwargs['sent'])
        self.assertEqual(3, err.kwargs['tries'])
        self.sim.start()
        self.assertEqual(port, self.sim.port)
        self.assertIn('clusterInfo', client.call('GetClusterInfo'))

    def test_duplicate_names_are_refused_by_find_volume_by_name(self):
        # Element allows duplicate names; the helper refuses to guess.
        self.create_volume('UUID-dup')
        self.create_volume('UUID-dup')
        err = self.assertRaises(exception.ArrayError, self.client.find_volume_by_name,
                                'UUID-dup')
        self.assertEqual('DuplicateVolumeName', err.name)


class TestControlPlane(base.ElementTestCase):

    def test_fault_nth_and_times(self):
        self.control.inject_fault('GetLimits', 'xInvalidParameter', nth=2, times=2)
        self.client.call('GetLimits')
        self.assertRaises(exception.ArrayError, self.client.call, 'GetLimits')
        self.assertRaises(exception.ArrayError, self.client.call, 'GetLimits')
        self.client.call('GetLimits')
        faults = self.control.faults()
        self.assertEqual(2, faults[0]['fired'])
        self.control.clear_faults()
        self.assertEqual([], self.control.faults())
        self.control.reset_calls()
        self.assertEqual({}, self.control.calls())

    def test_control_from_another_process(self):
        code = ('from xensm_driver.sim.solidfire import ElementControl; '
                'ElementControl(%r).inject_fault("GetClusterInfo", "xNotPrimary", times=1)'
                % self.sim.url)
        subprocess.run([sys.executable, '-c', code], check=True, timeout=30)
        client = self.make_client(retries=0)
        err = self.assertRaises(exception.ArrayError, client.call, 'GetClusterInfo')
        self.assertEqual('xNotPrimary', err.name)

    def test_dump_shows_volumes_with_their_luns(self):
        vol = self.create_volume('UUID-d')
        dump = self.control.dump()
        self.assertEqual([vol['volumeID']], [v['volumeID'] for v in dump['volumes']])
        self.assertEqual(self.lun(vol).path, dump['volumes'][0]['lun']['path'])
        self.assertEqual('t3st', dump['cluster']['uniqueID'])

    def test_latency_does_not_block_other_calls(self):
        # A call sleeping in the simulator holds no lock: another is answered
        # while it is still pending. Nothing is timed: the slow one cannot end
        # before its latency (far beyond the test), and the simulator's stop
        # cuts its connection.
        self.control.inject_fault('GetLimits', latency=600)
        slow_client = self.make_client(retries=0, timeout=900)
        slow_done = threading.Event()

        def slow():
            with contextlib.suppress(Exception):    # cut by the simulator's stop
                slow_client.call('GetLimits')
            slow_done.set()
        threading.Thread(target=slow, daemon=True).start()
        self.assertTrue(self.wait_for(lambda: self.control.faults()[0]['fired'] == 1,
                                      timeout=30))
        self.client.call('GetClusterInfo')
        self.assertFalse(slow_done.is_set())
        self.assertEqual((1, 1), (self.control.calls()['GetLimits'],
                                  self.control.calls()['GetClusterInfo']))
