"""The HTTP data path: /import_raw_vdi and /export_raw_vdi (section 4)."""

from __future__ import annotations

import http.client
import os
import time
import urllib.parse
from typing import Any

import requests

from tests.functional.sim import base


class DataPathTest(base.SimTestCase):
    srs = ('nfs', 'lvmoiscsi', 'equal')

    def put(self, vdi: str, data: bytes, **params: str) -> requests.Response:
        q = {'session_id': self.session._session, 'vdi': vdi}
        q.update(params)
        return requests.put(self.sim.url + '/import_raw_vdi', params=q,
                            data=data, timeout=30)

    def get(self, vdi: str, **params: str) -> requests.Response:
        q = {'session_id': self.session._session, 'vdi': vdi}
        q.update(params)
        return requests.get(self.sim.url + '/export_raw_vdi', params=q,
                            timeout=30)

    def write(self, vdi: str, data: bytes) -> None:
        task = self.x.task.create('import', '')
        r = self.put(vdi, data, task_id=task)
        self.assertEqual(200, r.status_code)
        self.assertEqual(task, r.headers['task-id'])
        rec = self.wait_task(task)
        self.assertEqual('success', rec['status'], rec['error_info'])
        self.assertEqual('<value>%s</value>' % vdi, rec['result'])

    def read(self, vdi: str) -> bytes:
        r = self.get(vdi)
        self.assertEqual(200, r.status_code)
        self.assertNotIn('Content-Length', r.headers)
        self.assertIn('task-id', r.headers)
        return r.content

    def test_snapshot_survives_overwriting_its_parent(self) -> None:
        for sr_type in ('nfs', 'lvmoiscsi', 'equal'):
            sr = self.sr(sr_type)
            vdi = self.vdi(sr, 8 * base.MiB)
            old = os.urandom(3 * base.MiB)
            self.write(vdi, old)
            snap = self.x.VDI.snapshot(vdi)
            new = os.urandom(8 * base.MiB)
            self.write(vdi, new)
            self.assertEqual(new, self.read(vdi), sr_type)
            got = self.read(snap)
            self.assertEqual(8 * base.MiB, len(got))
            self.assertEqual(old, got[:len(old)], sr_type)
            self.assertEqual(b'\0' * (5 * base.MiB), got[len(old):])
            clone = self.x.VDI.clone(snap)
            self.assertEqual(got, self.read(clone), sr_type)

    def test_export_is_exactly_virtual_size(self) -> None:
        sr = self.sr('nfs')
        vdi = self.vdi(sr, 3 * base.MiB + 1)   # rounds to 4 MiB
        data = self.read(vdi)
        self.assertEqual(4 * base.MiB, len(data))
        self.assertEqual(b'\0' * len(data), data)
        r = self.get(self.x.VDI.get_uuid(vdi))      # uuid works too
        self.assertEqual(4 * base.MiB, len(r.content))
        self.assertIn(self.x.VDI.get_uuid(vdi),
                      r.headers['content-disposition'])

    def test_bad_session_is_401(self) -> None:
        sr = self.sr('nfs')
        vdi = self.vdi(sr, base.MiB)
        r = requests.get(self.sim.url + '/export_raw_vdi',
                         params={'session_id': 'OpaqueRef:bad', 'vdi': vdi},
                         timeout=10)
        self.assertEqual(401, r.status_code)
        self.assertIn('Basic', r.headers['WWW-Authenticate'])
        r = requests.put(self.sim.url + '/import_raw_vdi',
                         params={'vdi': vdi}, data=b'x', timeout=10)
        self.assertEqual(401, r.status_code)
        r = requests.put(self.sim.url + '/import_raw_vdi',
                         params={'vdi': vdi}, data=b'x', timeout=10,
                         auth=('root', 'password'))
        self.assertEqual(200, r.status_code)

    def test_unknown_vdi_and_format(self) -> None:
        self.assertEqual(404, self.get('OpaqueRef:nope').status_code)
        sr = self.sr('nfs')
        vdi = self.vdi(sr, base.MiB)
        task = self.x.task.create('t', '')
        r = self.get(vdi, format='qcow9', task_id=task)
        self.assertEqual(404, r.status_code)
        self.assertEqual('failure', self.x.task.get_status(task))

    def test_import_too_big_fails_the_task_after_200(self) -> None:
        sr = self.sr('nfs')
        vdi = self.vdi(sr, 2 * base.MiB)
        task = self.x.task.create('t', '')
        r = self.put(vdi, b'x' * (3 * base.MiB), task_id=task)
        self.assertEqual(200, r.status_code)
        rec = self.wait_task(task)
        self.assertEqual('failure', rec['status'])
        self.assertEqual(['VDI_IO_ERROR', 'Device I/O errors'],
                         rec['error_info'])

    def test_import_cut_mid_stream(self) -> None:
        sr = self.sr('nfs')
        vdi = self.vdi(sr, 4 * base.MiB)
        self.ctl.inject_fault('http:import_raw_vdi', after_bytes=base.MiB)
        task = self.x.task.create('t', '')
        try:
            self.put(vdi, b'y' * (4 * base.MiB), task_id=task)
        except requests.RequestException:
            pass    # the server may close while the client still sends
        rec = self.wait_task(task)
        self.assertEqual(['VDI_IO_ERROR', 'Device I/O errors'],
                         rec['error_info'])
        self.assertEqual(1, self.ctl.calls()['http:import_raw_vdi'])

    def test_export_cut_mid_stream(self) -> None:
        sr = self.sr('nfs')
        vdi = self.vdi(sr, 4 * base.MiB)
        self.ctl.inject_fault('http:export_raw_vdi', after_bytes=base.MiB)
        task = self.x.task.create('t', '')
        u = urllib.parse.urlparse(self.sim.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        conn.request('GET', '/export_raw_vdi?session_id=%s&vdi=%s&task_id=%s'
                     % (self.session._session, vdi, task))
        resp = conn.getresponse()
        self.assertEqual(200, resp.status)
        self.assertEqual(base.MiB, len(resp.read()))
        self.assertEqual('failure', self.wait_task(task)['status'])

    def test_transfer_holds_the_vdi(self) -> None:
        """During a transfer the VDI has a dom0 VBD: destroy is VDI_IN_USE."""
        sr = self.sr('nfs')
        vdi = self.vdi(sr, 4 * base.MiB)
        u = urllib.parse.urlparse(self.sim.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        conn.putrequest('PUT', '/import_raw_vdi?session_id=%s&vdi=%s'
                        % (self.session._session, vdi))
        conn.putheader('Content-Length', str(2 * base.MiB))
        conn.endheaders()
        conn.send(b'z' * base.MiB)
        sock = conn.sock                   # getresponse() hands it over
        resp = conn.getresponse()          # 200 comes before the body
        self.assertEqual(200, resp.status)
        task = resp.getheader('task-id')
        self.assertEqual(1, len(self.x.VDI.get_VBDs(vdi)))
        self.assertFailure(['VDI_IN_USE', vdi, 'destroy'],
                           self.x.VDI.destroy, vdi)
        sock.sendall(b'z' * base.MiB)
        resp.read()
        rec = self.wait_task(task)
        self.assertEqual('success', rec['status'], rec['error_info'])
        self.assertEqual([], self.x.VDI.get_VBDs(vdi))
        self.x.VDI.destroy(vdi)

    def test_thin_physical_utilisation_follows_writes(self) -> None:
        sr = self.sr('nfs')
        vdi = self.vdi(sr, 64 * base.MiB)
        empty = int(self.x.VDI.get_physical_utilisation(vdi))
        self.assertLess(empty, 64 * 1024)
        self.write(vdi, b'\1' * (6 * base.MiB))
        used = int(self.x.VDI.get_physical_utilisation(vdi))
        # three 2 MiB blocks plus their 512-byte bitmaps
        self.assertEqual(empty + 3 * (2 * base.MiB + 512), used)
        sr_used = int(self.x.SR.get_physical_utilisation(sr))
        self.assertEqual(used, sr_used)

    def test_importing_zeros_allocates_blocks(self) -> None:
        # blktap block-vhd.c has no zero-skip: a raw import of zeros
        # allocates every block it writes (xen-api import_raw_vdi.ml).
        sr = self.sr('nfs')
        vdi = self.vdi(sr, 64 * base.MiB)
        empty = int(self.x.VDI.get_physical_utilisation(vdi))
        self.write(vdi, b'\0' * (6 * base.MiB))
        used = int(self.x.VDI.get_physical_utilisation(vdi))
        self.assertEqual(empty + 3 * (2 * base.MiB + 512), used)
        self.assertEqual(b'\0' * (64 * base.MiB), self.read(vdi))


class LockingTest(base.SimTestCase):
    """xen-api SR and VDI operation locking (xapi_sr_operations.ml,
    message_forwarding.ml with_sr_marked, xapi_vdi.ml copy)."""

    srs = ('nfs',)
    put = DataPathTest.put
    get = DataPathTest.get
    write = DataPathTest.write
    read = DataPathTest.read

    def hold_import(self, vdi: str) -> tuple[Any, Any]:
        """Start an import into ``vdi`` and keep it open (the VDI is held)."""
        u = urllib.parse.urlparse(self.sim.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.putrequest('PUT', '/import_raw_vdi?session_id=%s&vdi=%s'
                        % (self.session._session, vdi))
        conn.putheader('Content-Length', str(2 * base.MiB))
        conn.endheaders()
        conn.send(b'z' * base.MiB)
        sock = conn.sock
        resp = conn.getresponse()
        self.assertEqual(200, resp.status)
        return sock, resp

    def test_destroying_a_snapshot_being_copied_is_in_use_at_once(self) -> None:
        sr = self.sr('nfs')
        v = self.vdi(sr, 4 * base.MiB)
        self.write(v, b'a' * base.MiB)
        snap = self.x.VDI.snapshot(v)
        dst = self.vdi(sr, 4 * base.MiB)
        sock, resp = self.hold_import(dst)       # the copy waits for dst
        task = self.x.Async.VDI.copy(snap, 'OpaqueRef:NULL', 'OpaqueRef:NULL',
                                     dst)
        for _ in range(1000):
            if self.x.VDI.get_VBDs(snap):
                break
            time.sleep(0.01)
        # The copy reads the snapshot without locking it: another reader
        # goes ahead, a destroy is refused at once (not queued).
        self.assertEqual(b'a' * base.MiB, self.read(snap)[:base.MiB])
        self.assertFailure(['VDI_IN_USE', snap, 'destroy'],
                           self.x.VDI.destroy, snap)
        sock.sendall(b'z' * base.MiB)
        resp.read()
        self.assertEqual('success', self.wait_task(task)['status'])
        self.x.VDI.destroy(snap)

    def test_vdi_operations_on_one_sr_queue_behind_each_other(self) -> None:
        sr = self.sr('nfs')
        v = self.vdi(sr, 256 * base.MiB)
        self.write(v, os.urandom(base.MiB) * 128)  # a clone takes a while
        task = self.x.Async.VDI.clone(v)
        seen = []
        for _ in range(2000):
            ops = list(self.x.VDI.get_current_operations(v).values())
            if ops or self.x.task.get_status(task) != 'pending':
                seen = ops
                break
        if seen != ['clone']:
            self.skipTest('the clone ended before it could be observed')
        self.assertEqual(['vdi_clone'], list(
            self.x.SR.get_current_operations(sr).values()))
        # VDI.create on the same SR is not refused: XAPI retries it until
        # the clone's SR operation ends, so it returns after the clone.
        self.vdi(sr, base.MiB)
        self.assertNotEqual('pending', self.x.task.get_status(task))
        self.assertEqual({}, self.x.SR.get_current_operations(sr))
