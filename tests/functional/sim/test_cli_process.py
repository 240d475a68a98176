"""The xensm-sim command in its own process, driven from this one."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time

import testtools
import XenAPI

from tests.functional.sim import base
from xensm_driver.sim import SimControl


class CliProcessTest(testtools.TestCase):
    def start(self, *args: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'xensm_driver.cmd.sim', '--port', '0',
             '--auth-failure-delay', '0.05', *args],
            stdout=subprocess.PIPE, text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.dirname(os.path.abspath(__file__))))))
        self.addCleanup(self.stop, proc)
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        self.assertTrue(url.startswith('http://127.0.0.1:'), url)
        return proc, url

    @staticmethod
    def stop(proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()

    def test_counters_and_faults_across_processes(self) -> None:
        proc, url = self.start('--sr', 'nfs', '--pool-hosts', '3')
        ctl = SimControl(url)
        s = XenAPI.Session(url)
        s.xenapi.login_with_password('root', 'password')
        x = s.xenapi
        sr = x.SR.get_by_name_label('sim-nfs')[0]
        self.assertEqual(3, len(x.host.get_all()))
        ctl.reset_calls()
        rec = {'SR': sr, 'virtual_size': str(1 << 20), 'type': 'user',
               'sharable': False, 'read_only': False, 'other_config': {}}
        x.VDI.create(rec)
        x.VDI_create(rec)                       # alias counts the same
        self.assertEqual({'VDI.create': 2}, ctl.calls())
        fault = ctl.inject_fault('VDI.create', ['SR_BACKEND_FAILURE_44', '',
                                                'There is insufficient space',
                                                ''], nth=2)
        self.assertEqual(1, fault['id'])
        x.VDI.create(rec)                       # the 1st after injection
        exc = self.assertRaises(XenAPI.Failure, x.VDI.create, rec)
        self.assertEqual(['SR_BACKEND_FAILURE_44', '',
                          'There is insufficient space', ''], exc.details)
        x.VDI.create(rec)                       # times=1: only once
        self.assertEqual(1, ctl.faults()[0]['fired'])
        self.assertEqual(5, ctl.calls()['VDI.create'])
        # A dropped connection reaches the client as a protocol error.
        ctl.inject_fault('SR.get_record', drop='before', times=2)
        self.assertRaises(Exception, x.SR.get_record, sr)  # noqa: B017
        ctl.clear_faults()
        self.assertEqual([], ctl.faults())
        x.SR.get_record(sr)
        # Expiring sessions makes the SDK log in again.
        self.assertGreaterEqual(ctl.expire_sessions(), 1)
        ctl.reset_calls()
        x.SR.get_record(sr)
        self.assertEqual({'SR.get_record': 2,
                          'session.login_with_password': 1}, ctl.calls())
        self.assertIn(sr, ctl.dump()['SR'])
        s.xenapi.session.logout()

    def test_state_dir_survives_restart(self) -> None:
        state = tempfile.mkdtemp(prefix='xensm-sim-state-')
        self.addCleanup(subprocess.call, ['rm', '-rf', state])
        proc, url = self.start('--sr', 'lvmoiscsi', '--state-dir', state)
        s = XenAPI.Session(url)
        s.xenapi.login_with_password('root', 'password')
        x = s.xenapi
        sr = x.SR.get_by_name_label('sim-lvmoiscsi')[0]
        v = x.VDI.create({'SR': sr, 'virtual_size': str(8 << 20),
                          'type': 'user', 'sharable': False,
                          'read_only': False, 'other_config': {'k': 'v'},
                          'name_label': 'persist'})
        snap = x.VDI.snapshot(v)
        uuid, snap_uuid = x.VDI.get_uuid(v), x.VDI.get_uuid(snap)
        self.stop(proc)
        proc, url = self.start('--sr', 'lvmoiscsi', '--state-dir', state)
        s = XenAPI.Session(url)
        s.xenapi.login_with_password('root', 'password')
        x = s.xenapi
        self.assertEqual(1, len(x.SR.get_by_name_label('sim-lvmoiscsi')))
        v = x.VDI.get_by_uuid(uuid)
        self.assertEqual({'k': 'v'}, x.VDI.get_other_config(v))
        self.assertEqual(v, x.VDI.get_snapshot_of(
            x.VDI.get_by_uuid(snap_uuid)))
        self.assertTrue(all(x.PBD.get_currently_attached(p)
                            for p in x.SR.get_PBDs(sr)))
        x.VDI.snapshot(v)             # storage and database still agree
        x.SR.scan(sr)
        # v was not written since the first snapshot: the second shares
        # its base copy (3 leaves, 1 base).
        self.assertEqual(4, len(x.SR.get_VDIs(sr)))


class FaultKindsTest(base.SimTestCase):
    srs = ('nfs',)

    def test_latency_hang_and_drop_after(self) -> None:
        sr = self.sr('nfs')
        self.ctl.inject_fault('SR.get_record', latency=0.2)
        t0 = time.monotonic()
        self.x.SR.get_record(sr)
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)
        # hang: the call runs, the answer comes late.
        self.ctl.inject_fault('VDI.create', hang=0.3)
        before = len(self.x.VDI.get_all())
        t0 = time.monotonic()
        self.vdi(sr, base.MiB)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertEqual(before + 1, len(self.x.VDI.get_all()))
        # drop='after' twice: the call runs twice (xmlrpc.client resends
        # once on a dropped connection) and the client sees no answer.
        self.ctl.inject_fault('VDI.create', drop='after', times=2)
        self.assertRaises(http.client.RemoteDisconnected, self.vdi, sr,
                          base.MiB)
        self.assertEqual(before + 3, len(self.x.VDI.get_all()))
        # set_latency applies to every call.
        self.ctl.set_latency(0.1)
        t0 = time.monotonic()
        self.x.VDI.get_all()
        self.assertGreaterEqual(time.monotonic() - t0, 0.1)
        self.ctl.set_latency(0)

    def test_fault_reaches_async_tasks(self) -> None:
        sr = self.sr('nfs')
        v = self.vdi(sr, base.MiB)
        self.ctl.inject_fault('VDI.snapshot', ['SR_BACKEND_FAILURE_82', '',
                                               'Failed to snapshot VDI', ''])
        task = self.x.Async.VDI.snapshot(v)
        rec = self.wait_task(task)
        self.assertEqual('failure', rec['status'])
        self.assertEqual('SR_BACKEND_FAILURE_82', rec['error_info'][0])
        self.assertEqual({'Async.VDI.snapshot': 1},
                         {k: n for k, n in self.ctl.calls().items()
                          if 'snapshot' in k})
