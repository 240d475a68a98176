"""The XML-RPC wire format, checked against xapi-semantics.md section 1."""

from __future__ import annotations

import http.client
import urllib.parse
import xmlrpc.client

import XenAPI

from tests.functional.sim import base


class WireTest(base.SimTestCase):
    srs = ('nfs',)

    def raw(self, body: bytes, path: str = '/RPC2') -> tuple[int, bytes]:
        u = urllib.parse.urlparse(self.sim.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        conn.request('POST', path, body, {'Content-Type': 'text/xml'})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data

    def call(self, method: str, *params: object, path: str = '/RPC2'
             ) -> dict:
        status, data = self.raw(xmlrpc.client.dumps(params, method).encode(),
                                path)
        self.assertEqual(200, status)
        return xmlrpc.client.loads(data)[0][0]

    def test_envelope_success_and_failure(self) -> None:
        ok = self.call('session.login_with_password', 'root', 'password')
        self.assertEqual('Success', ok['Status'])
        self.assertTrue(ok['Value'].startswith('OpaqueRef:'))
        bad = self.call('VDI.get_all', 'OpaqueRef:nope')
        self.assertEqual({'Status': 'Failure',
                          'ErrorDescription': ['SESSION_INVALID',
                                               'OpaqueRef:nope']}, bad)

    def test_both_paths_and_bare_values(self) -> None:
        status, data = self.raw(xmlrpc.client.dumps(
            ('root', 'password'), 'session.login_with_password').encode(),
            '/')
        self.assertEqual(200, status)
        # Strings are bare <value>s, never <string>, and no <fault> is used.
        self.assertIn(b'<value>Success</value>', data)
        self.assertNotIn(b'<string>', data)
        self.assertNotIn(b'<fault>', data)

    def test_ints_are_strings_and_null_refs(self) -> None:
        sr = self.sr('nfs')
        rec = self.x.SR.get_record(sr)
        self.assertIsInstance(rec['physical_size'], str)
        self.assertEqual(str(1024 ** 4), rec['physical_size'])
        vdi = self.vdi(sr)
        self.assertEqual('OpaqueRef:NULL', self.x.VDI.get_snapshot_of(vdi))
        self.assertIsInstance(self.x.VDI.get_snapshot_time(vdi),
                              xmlrpc.client.DateTime)
        self.assertEqual('19700101T00:00:00Z',
                         self.x.VDI.get_snapshot_time(vdi).value)
        self.assertIs(False, self.x.VDI.get_sharable(vdi))

    def test_ints_accepted_as_int_or_string(self) -> None:
        sr = self.sr('nfs')
        a = self.x.VDI.create({'SR': sr, 'virtual_size': 4 * base.MiB,
                               'type': 'user', 'sharable': False,
                               'read_only': False, 'other_config': {}})
        self.assertEqual(str(4 * base.MiB), self.x.VDI.get_virtual_size(a))

    def test_unknown_method_and_arity(self) -> None:
        self.assertFailure(['MESSAGE_METHOD_UNKNOWN', 'VDI.frobnicate'],
                           self.x.VDI.frobnicate, 'x')
        self.assertFailure(
            ['MESSAGE_PARAMETER_COUNT_MISMATCH', 'VDI.get_record', '1', '2'],
            self.x.VDI.get_record, 'a', 'b')

    def test_handle_and_uuid_invalid(self) -> None:
        self.assertFailure(['HANDLE_INVALID', 'VDI', 'OpaqueRef:gone'],
                           self.x.VDI.get_record, 'OpaqueRef:gone')
        self.assertFailure(['UUID_INVALID', 'VDI', 'no-such-uuid'],
                           self.x.VDI.get_by_uuid, 'no-such-uuid')

    def test_underscore_aliases(self) -> None:
        sr = self.sr('nfs')
        vdi = self.session.xenapi_request('VDI_create', ({
            'SR': sr, 'virtual_size': str(base.MiB), 'type': 'user',
            'sharable': False, 'read_only': False, 'other_config': {}},))
        task = self.session.xenapi_request('Async_VDI_copy',
                                           (vdi, sr))
        self.assertEqual('success', self.wait_task(task)['status'])
        ev = self.x.event_from(['vdi'], '', 0.0)
        self.assertIn('token', ev)
        calls = self.ctl.calls()
        self.assertEqual(1, calls['VDI.create'])
        self.assertEqual(1, calls['Async.VDI.copy'])

    def test_malformed_xml_is_http_500(self) -> None:
        status, data = self.raw(b'<methodCall><oops')
        self.assertEqual(500, status)
        self.assertIn(b'<html>', data)

    def test_async_result_is_value_xml(self) -> None:
        sr = self.sr('nfs')
        vdi = self.vdi(sr)
        task = self.x.Async.VDI.snapshot(vdi)
        self.assertTrue(task.startswith('OpaqueRef:'))
        rec = self.wait_task(task)
        self.assertEqual('success', rec['status'])
        self.assertEqual('1.0', str(float(rec['progress'])))
        result = self.x.task.get_result(task)
        self.assertTrue(result.startswith('<value>OpaqueRef:'), result)
        snap = xmlrpc.client.loads(
            '<params><param>%s</param></params>' % result)[0][0]
        self.assertTrue(self.x.VDI.get_is_a_snapshot(snap))
        self.x.task.destroy(task)
        self.assertFailure(['HANDLE_INVALID', 'task', task],
                           self.x.task.get_status, task)

    def test_async_failure_and_void_result(self) -> None:
        sr = self.sr('nfs')
        vdi = self.vdi(sr, 4 * base.MiB)
        task = self.x.Async.VDI.resize(vdi, str(2 * base.MiB))
        rec = self.wait_task(task)
        self.assertEqual('failure', rec['status'])
        self.assertEqual('SR_BACKEND_FAILURE_79', rec['error_info'][0])
        self.assertIn('shrinking not allowed', rec['error_info'][2])
        task = self.x.Async.VDI.destroy(vdi)
        self.assertEqual('success', self.wait_task(task)['status'])
        self.assertEqual('<value></value>', self.x.task.get_result(task))

    def test_no_async_for_getters(self) -> None:
        exc = self.assertRaises(XenAPI.Failure, self.x.Async.VDI.get_all)
        self.assertEqual('Fault', exc.details[0])
        self.assertIn('No async mode', exc.details[1])

    def test_get_all_records_where_filter_language(self) -> None:
        sr = self.sr('nfs')
        a = self.vdi(sr, name='alpha')
        b = self.vdi(sr, name='beta')
        self.x.VDI.snapshot(a)
        where = self.x.VDI.get_all_records_where
        self.assertEqual({a}, set(where('field "name__label"="alpha" and '
                                        'field "is_a_snapshot"="false"')))
        both = where('(field "name__label"="alpha" or field "name__label"='
                     '"beta") and not (field "is_a_snapshot"="true")')
        self.assertEqual({a, b}, set(both))
        unmanaged = where('field "managed"="false"')
        self.assertEqual(1, len(unmanaged))
        self.assertEqual('base copy',
                         list(unmanaged.values())[0]['name_label'])
        self.assertEqual(set(self.x.VDI.get_all()), set(where('true')))
        self.assertEqual({}, where('false'))
        self.assertFailure(['INTERNAL_ERROR'], where, 'field "x" = ')

    def test_map_setters(self) -> None:
        sr = self.sr('nfs')
        vdi = self.vdi(sr)
        uuid = self.x.VDI.get_uuid(vdi)
        self.x.VDI.add_to_other_config(vdi, 'k', 'v')
        self.assertFailure(['MAP_DUPLICATE_KEY', 'VDI', 'other_config', uuid,
                            'k'], self.x.VDI.add_to_other_config, vdi, 'k',
                           'w')
        self.x.VDI.remove_from_other_config(vdi, 'k')
        self.x.VDI.remove_from_other_config(vdi, 'k')
        self.x.VDI.set_other_config(vdi, {'a': 'b'})
        self.assertEqual({'a': 'b'}, self.x.VDI.get_other_config(vdi))
        self.x.VDI.add_tags(vdi, 't1')
        self.assertEqual(['t1'], self.x.VDI.get_tags(vdi))
        self.x.VDI.set_name_label(vdi, 'renamed')
        self.x.VDI.set_name_description(vdi, 'desc')
        self.assertEqual(['renamed'],
                         [self.x.VDI.get_name_label(v) for v in
                          self.x.VDI.get_by_name_label('renamed')])


class ApiVersionTest(base.SimTestCase):
    def test_sdk_api_version(self) -> None:
        self.assertEqual('2.21', self.session.API_version)

    def test_pool_and_hosts(self) -> None:
        pool = self.x.pool.get_all()[0]
        master = self.x.pool.get_master(pool)
        self.assertEqual('127.0.0.1', self.x.host.get_address(master))
        hosts = self.x.host.get_all_records()
        self.assertEqual(2, len(hosts))
        for ref, h in hosts.items():
            self.assertTrue(h['other_config']['iscsi_iqn'].startswith('iqn.'))
            dom0 = h['control_domain']
            self.assertTrue(self.x.VM.get_is_control_domain(dom0))
            self.assertEqual(ref, self.x.VM.get_resident_on(dom0))
        self.assertEqual(['127.0.0.1', '127.0.0.2'],
                         sorted(h['address'] for h in hosts.values()))
        self.assertIsInstance(XenAPI.Failure, type)
