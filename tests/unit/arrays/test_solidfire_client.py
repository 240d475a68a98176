"""ElementClient logic without sockets: error mapping, masking, the retry and
re-send decisions (driven through a scripted session)."""

from __future__ import annotations

import json
import logging
from http.client import RemoteDisconnected
from typing import Any

import fixtures
import requests
import testtools
from urllib3.exceptions import MaxRetryError
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import ProtocolError

from xensm_driver import exception
from xensm_driver.arrays import solidfire


class TestErrorMapping(testtools.TestCase):

    def test_not_found_names(self):
        for name in ('xVolumeIDDoesNotExist', 'xSnapshotIDDoesNotExist',
                     'xAccountIDDoesNotExist', 'xUnknownAccount',
                     'xVolumeAccessGroupIDDoesNotExist'):
            self.assertIs(exception.ArrayNotFound, solidfire.error_class(name), name)

    def test_limit_names(self):
        for name in ('xExceededLimit', 'xMaxSnapshotsPerVolumeExceeded',
                     'xMaxClonesPerVolumeExceeded', 'xMaxSnapshotsPerNodeExceeded'):
            self.assertIs(exception.ArrayLimitExceeded, solidfire.error_class(name), name)

    def test_other_names(self):
        for name in ('xInvalidParameter', 'xAlreadyInVolumeAccessGroup',
                     'xNotInVolumeAccessGroup', 'xDBVersionMismatch', ''):
            self.assertIs(exception.ArrayError, solidfire.error_class(name), name)

    def test_retryable_is_cinders_list_minus_the_snapshot_cap(self):
        cinder = {'xDBVersionMismatch', 'xMaxSnapshotsPerVolumeExceeded',
                  'xMaxClonesPerVolumeExceeded', 'xMaxSnapshotsPerNodeExceeded',
                  'xMaxClonesPerNodeExceeded', 'xSliceNotRegistered', 'xNotReadyForIO',
                  'xNotPrimary', 'xDBOperationTimeout', 'xDBConnectionLoss', 'xNoHandler',
                  'xSnapshotFailed', 'xRecvTimeout', 'xDBNoSuchPath', 'xPermissionDenied'}
        # Plus xMVIPNotResponding, named in issue 19 (unverified).
        self.assertEqual(cinder - {'xMaxSnapshotsPerVolumeExceeded'} | {'xMVIPNotResponding'},
                         set(solidfire.RETRYABLE_ERRORS))
        self.assertLessEqual(solidfire.MAYBE_DONE_ERRORS, solidfire.RETRYABLE_ERRORS)

    def test_api_versions(self):
        v = solidfire.ElementClient.api_version_for
        self.assertEqual('1.0', v('CreateVolume'))
        self.assertEqual('1.0', v('GetAsyncResult'))
        self.assertEqual('5.0', v('ModifyVolume'))
        self.assertEqual('6.0', v('CloneVolume'))
        self.assertEqual('6.0', v('RollbackToSnapshot'))
        self.assertEqual('7.0', v('CreateGroupSnapshot'))
        self.assertEqual('7.0', v('AddInitiatorsToVolumeAccessGroup'))
        self.assertEqual('8.0', v('ListVolumes'))
        self.assertEqual('8.0', v('GetClusterCapacity'))

    def test_read_only(self):
        self.assertTrue(solidfire.is_read_only('ListVolumes', {}))
        self.assertTrue(solidfire.is_read_only('GetAccountByName', {}))
        self.assertFalse(solidfire.is_read_only('CreateVolume', {}))
        self.assertFalse(solidfire.is_read_only('DeleteVolume', {}))
        self.assertFalse(solidfire.is_read_only('GetAsyncResult', {}))
        self.assertTrue(solidfire.is_read_only('GetAsyncResult', {'keepResult': True}))

    def test_backoff(self):
        self.assertEqual([1.0, 2.0, 4.0, 8.0, 16.0], solidfire.backoff_delays(5, 1.0))
        self.assertEqual([], solidfire.backoff_delays(0, 1.0))


class TestMasking(testtools.TestCase):

    PARAMS = {'username': 'tenant', 'initiatorSecret': 'aaaaaaaaaaaa',
              'targetSecret': 'bbbbbbbbbbbb', 'nested': [{'chapPassword': 'cccc'}],
              'clusterPairingKey': 'dddd', 'totalSize': 5}

    def test_mask_hides_every_secret_and_keeps_the_rest(self):
        masked = solidfire.mask(self.PARAMS)
        text = json.dumps(masked)
        for secret in ('aaaaaaaaaaaa', 'bbbbbbbbbbbb', 'cccc', 'dddd'):
            self.assertNotIn(secret, text)
        self.assertEqual('tenant', masked['username'])
        self.assertEqual(5, masked['totalSize'])
        self.assertEqual('aaaaaaaaaaaa', self.PARAMS['initiatorSecret'])   # a copy

    def test_secret_values_and_scrub(self):
        found = solidfire.secret_values(self.PARAMS)
        self.assertEqual({'aaaaaaaaaaaa', 'bbbbbbbbbbbb', 'cccc', 'dddd'}, found)
        self.assertEqual('x *** y ***', solidfire.scrub('x pw12 y pw1234', ['pw12', 'pw1234']))
        self.assertEqual('nothing', solidfire.scrub('nothing', ['', 'zz']))


class TestRequestWasSent(testtools.TestCase):

    def test_connect_failures_were_not_sent(self):
        self.assertFalse(solidfire.request_was_sent(requests.exceptions.ConnectTimeout()))
        refused = MaxRetryError(None, '/json-rpc/1.0',  # type: ignore[arg-type]
                                NewConnectionError(None, 'refused'))  # type: ignore[arg-type]
        self.assertFalse(solidfire.request_was_sent(requests.exceptions.ConnectionError(refused)))

    def test_answer_failures_may_have_been_sent(self):
        self.assertTrue(solidfire.request_was_sent(requests.exceptions.ReadTimeout()))
        aborted = ProtocolError('Connection aborted.', RemoteDisconnected('closed'))
        self.assertTrue(solidfire.request_was_sent(requests.exceptions.ConnectionError(aborted)))


class FakeResponse:

    def __init__(self, status: int = 200, body: Any = None, raw: bytes | None = None):
        self.status_code = status
        self.reason = 'OK' if status == 200 else 'Error'
        self.content = raw if raw is not None else json.dumps(body).encode()

    def json(self) -> Any:
        return json.loads(self.content)


class FakeSession:
    """Answers posts from a script: a FakeResponse, or an exception to raise."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.posts: list[dict[str, Any]] = []

    def post(self, url: str, **kwargs: Any) -> FakeResponse:
        self.posts.append(dict(kwargs, url=url, body=json.loads(kwargs['data'])))
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    def close(self) -> None:
        pass


def ok(result: dict[str, Any] | None = None) -> FakeResponse:
    return FakeResponse(body={'id': 1, 'result': result or {}})


def err(name: str) -> FakeResponse:
    return FakeResponse(body={'id': 1, 'error': {'name': name, 'code': 500, 'message': 'm'}})


class TestCallDecisions(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))

    def client(self, *script: Any, **kw: Any) -> tuple[solidfire.ElementClient, FakeSession,
                                                        list[float]]:
        session = FakeSession(*script)
        kw.setdefault('backoff', 0.5)
        c = solidfire.ElementClient('https://10.0.0.5', 'admin', 'pw-Secret-1',
                                    session=session, **kw)  # type: ignore[arg-type]
        slept: list[float] = []
        c._sleep = slept.append
        return c, session, slept

    def test_request_shape(self):
        c, s, _ = self.client(ok({'volumes': []}), verify='/etc/ca.pem', timeout=(3.0, 20.0))
        self.assertEqual({'volumes': []}, c.call('ListVolumes', limit=2))
        post = s.posts[0]
        self.assertEqual('https://10.0.0.5/json-rpc/8.0', post['url'])
        self.assertEqual({'method': 'ListVolumes', 'params': {'limit': 2}, 'id': 1},
                         post['body'])
        self.assertEqual(('admin', 'pw-Secret-1'), post['auth'])
        self.assertEqual('/etc/ca.pem', post['verify'])
        self.assertEqual((3.0, 20.0), post['timeout'])
        self.assertEqual('application/json-rpc', post['headers']['Content-Type'])

    def test_explicit_version_wins(self):
        c, s, _ = self.client(ok())
        c.call('ListVolumes', api_version='9.0')
        self.assertTrue(s.posts[0]['url'].endswith('/json-rpc/9.0'))

    def test_retryable_error_then_success(self):
        c, s, slept = self.client(err('xDBVersionMismatch'), err('xNotPrimary'), ok({'a': 1}))
        self.assertEqual({'a': 1}, c.call('CreateVolume', name='v'))
        self.assertEqual(3, len(s.posts))
        self.assertEqual([0.5, 1.0], slept)

    def test_retries_exhausted_raise_the_last_error(self):
        c, s, slept = self.client(*[err('xDBConnectionLoss')] * 3, retries=2)
        e = self.assertRaises(exception.ArrayError, c.call, 'ListVolumes')
        self.assertEqual('xDBConnectionLoss', e.name)
        self.assertEqual(3, len(s.posts))

    def test_read_timeout_on_create_is_not_resent(self):
        c, s, _ = self.client(requests.exceptions.ReadTimeout('slow'))
        e = self.assertRaises(exception.ArrayConnectionError, c.call, 'CreateVolume', name='v')
        self.assertTrue(e.kwargs['sent'])
        self.assertEqual(1, len(s.posts))
        self.assertIn('look the object up', str(e))

    def test_connect_timeout_on_create_is_resent(self):
        c, s, _ = self.client(requests.exceptions.ConnectTimeout('no route'), ok({'volumeID': 3}))
        self.assertEqual({'volumeID': 3}, c.call('CreateVolume', name='v'))
        self.assertEqual(2, len(s.posts))

    def test_read_timeout_on_list_is_resent(self):
        c, s, _ = self.client(requests.exceptions.ReadTimeout('slow'), ok())
        c.call('ListSnapshots')
        self.assertEqual(2, len(s.posts))

    def test_unreadable_answer_on_create_counts_as_lost(self):
        c, s, _ = self.client(FakeResponse(raw=b'<html>proxy</html>'))
        e = self.assertRaises(exception.ArrayConnectionError, c.call, 'CloneVolume', name='v')
        self.assertTrue(e.kwargs['sent'])
        self.assertEqual(1, len(s.posts))

    def test_http_5xx_retried_only_for_reads(self):
        c, s, _ = self.client(FakeResponse(503, {}), ok())
        c.call('GetClusterCapacity')
        self.assertEqual(2, len(s.posts))
        c, s, _ = self.client(FakeResponse(503, {}), ok())
        e = self.assertRaises(exception.ArrayError, c.call, 'DeleteVolume', volumeID=1)
        self.assertEqual('HTTP503', e.name)
        self.assertEqual(1, len(s.posts))

    def test_401(self):
        c, s, _ = self.client(FakeResponse(401, {}))
        e = self.assertRaises(exception.ArrayError, c.call, 'GetLimits')
        self.assertEqual(401, e.kwargs['code'])
        self.assertNotIn('pw-Secret-1', str(e))
        self.assertEqual(1, len(s.posts))

    def test_error_message_scrubbed(self):
        c, _s, _ = self.client(FakeResponse(body={'error': {
            'name': 'xInvalidParameter', 'code': 500,
            'message': 'bad secret topSecret123 for pw-Secret-1'}}))
        e = self.assertRaises(exception.ArrayError, c.call, 'AddAccount', username='u',
                              initiatorSecret='topSecret123')
        self.assertNotIn('topSecret123', str(e))
        self.assertNotIn('pw-Secret-1', str(e))

    def test_get_volume_by_id_checks_the_id(self):
        c, _s, _ = self.client(ok({'volumes': [{'volumeID': 8, 'status': 'active'}]}),
                               ok({'volumes': [{'volumeID': 7, 'status': 'deleted'}]}),
                               ok({'volumes': [{'volumeID': 7, 'status': 'deleted'}]}))
        self.assertIsNone(c.get_volume_by_id(7))
        self.assertIsNone(c.get_volume_by_id(7))
        found = c.get_volume_by_id(7, include_deleted=True)
        self.assertIsNotNone(found)
        assert found is not None
        self.assertEqual(7, found['volumeID'])

    def test_wait_async(self):
        running = ok({'status': 'running', 'resultType': 'Clone'})
        done = ok({'status': 'complete', 'result': {'volumeID': 4}})
        c, s, slept = self.client(running, running, done)
        self.assertEqual({'volumeID': 4}, c.wait_async(12, 60, interval=2.0))
        self.assertEqual([{'asyncHandle': 12, 'keepResult': True}] * 3,
                         [p['body']['params'] for p in s.posts])
        self.assertEqual(2, len(slept))
        self.assertTrue(all(0 < d <= 2.0 for d in slept))

    def test_wait_async_job_error(self):
        c, _s, _ = self.client(ok({'status': 'complete', 'resultType': 'Clone',
                                   'error': {'name': 'xSliceNotRegistered', 'message': 'm'}}))
        e = self.assertRaises(exception.ArrayError, c.wait_async, 3, 60)
        self.assertEqual('xSliceNotRegistered', e.name)

    def test_wait_async_deadline(self):
        c, _s, _ = self.client(ok({'status': 'running', 'resultType': 'Clone'}))
        e = self.assertRaises(exception.ArrayError, c.wait_async, 3, 0)
        self.assertEqual('AsyncTimeout', e.name)

    def test_url_validation(self):
        self.assertRaises(exception.InvalidInput, solidfire.ElementClient,
                          'https://admin:pw@10.0.0.5', 'admin', 'pw')
        e = self.assertRaises(exception.InvalidInput, solidfire.ElementClient,
                              'ftp://10.0.0.5/pw-Secret-1', 'admin', 'pw-Secret-1')
        self.assertNotIn('pw-Secret-1', str(e))
        c = solidfire.ElementClient('https://[fd00::5]:8443/', 'a', 'b')
        self.assertEqual('https://[fd00::5]:8443', c.url)
