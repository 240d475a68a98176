"""Shared fixtures for the simulator's own tests.

Every test starts its own Simulator on an ephemeral loopback port and
drives it only through the real ``XenAPI`` SDK (and the control plane for
setup), never through Python objects behind the server.
"""

from __future__ import annotations

import time
from typing import Any

import requests
import testtools
import XenAPI

from xensm_driver.sim import Simulator

GiB = 1024 ** 3
MiB = 1024 ** 2


class SimTestCase(testtools.TestCase):
    srs: tuple[str, ...] = ()
    pool_hosts = 2
    sim_kwargs: dict[str, Any] = {}

    def setUp(self) -> None:
        super().setUp()
        self.sim = Simulator(port=0, pool_hosts=self.pool_hosts, srs=self.srs,
                             auth_failure_delay=0.05, **self.sim_kwargs)
        self.sim.start()
        self.addCleanup(self.sim.stop)
        self.session = self.login()
        self.x = self.session.xenapi
        self.ctl = self.sim.control

    def login(self, url: str | None = None) -> Any:
        session = XenAPI.Session(url or self.sim.url)
        session.xenapi.login_with_password('root', 'password', '1.0',
                                           'xensm-sim-tests')
        self.addCleanup(self._logout, session)
        return session

    @staticmethod
    def _logout(session: Any) -> None:
        try:
            session.xenapi.session.logout()
        except Exception as exc:  # noqa: BLE001 - the simulator may be gone
            del exc

    def assertFailure(self, details: list[str], fn: Any, *args: Any) -> Any:
        """``fn(*args)`` fails with a XAPI error starting with ``details``."""
        exc = self.assertRaises(XenAPI.Failure, fn, *args)
        self.assertEqual(details, exc.details[:len(details)],
                         'full error: %r' % (exc.details,))
        return exc

    def sr(self, sr_type: str) -> str:
        refs = self.x.SR.get_by_name_label('sim-%s' % sr_type)
        self.assertEqual(1, len(refs))
        return refs[0]

    def vdi(self, sr: str, size: int = GiB, name: str = 'v',
            **extra: Any) -> str:
        rec = {'SR': sr, 'virtual_size': str(size), 'type': 'user',
               'sharable': False, 'read_only': False, 'other_config': {},
               'name_label': name}
        rec.update(extra)
        return self.x.VDI.create(rec)

    def write_block(self, vdi: str, data: bytes = b'\1' * 512) -> None:
        """Import ``data`` at offset 0 of ``vdi`` (allocates block 0)."""
        task = self.x.task.create('import', '')
        r = requests.put(self.sim.url + '/import_raw_vdi',
                         params={'session_id': self.session._session,
                                 'vdi': vdi, 'task_id': task},
                         data=data, timeout=30)
        self.assertEqual(200, r.status_code)
        rec = self.wait_task(task)
        self.assertEqual('success', rec['status'], rec['error_info'])

    def wait_task(self, task: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            rec = self.x.task.get_record(task)
            if rec['status'] != 'pending':
                return rec
            if time.monotonic() > deadline:
                self.fail('task %s still pending' % task)
            time.sleep(0.01)

    def dom0(self, host_index: int = 0) -> str:
        host = self.sim.topology['hosts'][host_index]['ref']
        return self.x.host.get_control_domain(host)

    def attach(self, vdi: str, mode: str = 'RW') -> str:
        vbd = self.x.VBD.create({
            'VM': self.dom0(), 'VDI': vdi, 'userdevice': 'autodetect',
            'bootable': False, 'mode': mode, 'type': 'Disk', 'empty': False,
            'other_config': {}, 'qos_algorithm_type': '',
            'qos_algorithm_params': {}})
        self.x.VBD.plug(vbd)
        return vbd
