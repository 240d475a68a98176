"""Shared set-up: a fabric in a temporary directory, an Element simulator on
an ephemeral loopback port, and an ElementClient talking real HTTP to it."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import fixtures
import testtools

from xensm_driver.arrays import solidfire
from xensm_driver.sim import fabric as fabric_mod
from xensm_driver.sim import solidfire as sfsim

GB = 10 ** 9


class ElementTestCase(testtools.TestCase):

    #: Extra ElementSimulator keyword arguments for a test class.
    sim_kwargs: dict[str, Any] = {}

    def setUp(self) -> None:
        super().setUp()
        self.useFixture(fixtures.Timeout(60, gentle=True))
        # Keep log output with the test (shown when it fails).
        self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        root = self.useFixture(fixtures.TempDir()).path
        self.fabric = fabric_mod.Fabric(os.path.join(root, 'fabric'))
        self.sim = sfsim.ElementSimulator(self.fabric, unique_id='t3st',
                                          password='sim-Admin-Pw-91', **self.sim_kwargs)
        self.sim.start()
        self.addCleanup(self.sim.stop)
        self.control = self.sim.control
        self.client = self.make_client()

    def make_client(self, **kwargs: Any) -> solidfire.ElementClient:
        kwargs.setdefault('backoff', 0.001)
        kwargs.setdefault('timeout', 5.0)
        kwargs.setdefault('retries', 5)
        client = solidfire.ElementClient(self.sim.url, 'admin', 'sim-Admin-Pw-91', **kwargs)
        self.addCleanup(client.close)
        return client

    # -- helpers -----------------------------------------------------------------

    def account(self, name: str = 'project-1') -> dict[str, Any]:
        return self.client.ensure_account(name)

    def create_volume(self, name: str, size: int = GB, **kw: Any) -> dict[str, Any]:
        acct = kw.pop('account', None) or self.account()
        return self.client.call('CreateVolume', name=name, accountID=acct['accountID'],
                                totalSize=size, enable512e=True, **kw)['volume']

    def volume_by_id(self, volume_id: int, include_deleted: bool = False) -> dict[str, Any]:
        """The volume, which the test expects to exist."""
        found = self.client.get_volume_by_id(volume_id, include_deleted=include_deleted)
        self.assertIsNotNone(found, 'volume %d not found' % volume_id)
        assert found is not None
        return found

    def lun(self, volume: dict[str, Any]) -> fabric_mod.Lun:
        return self.fabric.get_lun(sfsim.scsi_id_for_naa(volume['scsiNAADeviceID']))

    def write(self, volume: dict[str, Any], data: bytes, name: str = 'disk') -> None:
        """Write ``data`` into the volume's LUN as an SR would (under its lock)."""
        lun = self.lun(volume)
        with lun.lock:
            with open(os.path.join(lun.path, name), 'wb') as f:
                f.write(data)

    def read(self, volume: dict[str, Any], name: str = 'disk') -> bytes:
        lun = self.lun(volume)
        with lun.lock:
            with open(os.path.join(lun.path, name), 'rb') as f:
                return f.read()

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.02)
