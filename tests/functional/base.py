"""Shared scaffolding: a simulator per test class, drivers configured for it."""

from __future__ import annotations

import io
import os
import tempfile
import uuid
from typing import Any

import fixtures
from oslo_config import cfg
from oslotest import base as oslotest_base

from xensm_driver import config
from xensm_driver import driver as driver_mod
from xensm_driver.cmd import simconfig
from xensm_driver.cmd.demo import pattern  # noqa: F401 - deterministic test data
from xensm_driver.sim import Simulator
from xensm_driver.xapi import transfer
from xensm_driver.xapi.session import SessionPool

PASSWORD = "s3cr3t-Pa55"      # distinctive, so a leak is easy to find in logs
#: Retry backoff for tests: failures are injected, not waited out.
FAST_RETRIES = {"xenapi_retry_backoff": "0.01"}
MiB = 1 << 20
GiB = 1 << 30


def attach_to_dom0(pool: SessionPool, vdi_ref: str) -> str:
    """Plug the VDI into the control domain, as a VM would hold it; the VBD."""
    dom0 = [ref for ref, rec in pool.call("VM.get_all_records").items()
            if rec["is_control_domain"]][0]
    vbd = pool.call("VBD.create", {
        "VM": dom0, "VDI": vdi_ref, "userdevice": "autodetect", "bootable": False,
        "mode": "RW", "type": "Disk", "empty": False, "unpluggable": True,
        "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
    pool.call("VBD.plug", vbd)
    return str(vbd)


class SimulatorFixture(fixtures.Fixture):
    """A running XAPI simulator on a free loopback port."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        kwargs.setdefault("pool_hosts", 2)
        kwargs.setdefault("password", PASSWORD)
        kwargs.setdefault("auth_failure_delay", 0.01)
        self.kwargs = kwargs

    def _setUp(self) -> None:
        self.sim = Simulator(**self.kwargs)
        self.sim.start()
        self.addCleanup(self.sim.stop)


def backend_ini(sim: Simulator, sr_type: str, section: str = "xs", **extra: Any) -> str:
    """An ini section for a back end of ``sr_type`` on the simulator's storage,
    with retries quick enough for tests."""
    values = simconfig.backend_section(section, sr_type, sim.url, "root", PASSWORD,
                                       sim.topology)
    values.update(FAST_RETRIES)
    if sr_type == "solidfire":
        values.update(xensm_sf_retry_count=1, xensm_sf_api_timeout=10)
    values.update({k: str(v) for k, v in extra.items()})
    return simconfig.render_ini({section: values})


def configuration(ini_text: str, section: str = "xs") -> config.Configuration:
    fd, path = tempfile.mkstemp(suffix=".conf")
    with os.fdopen(fd, "w") as f:
        f.write(ini_text)
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[path])
    os.unlink(path)
    return config.Configuration([], section, conf)


class SimTestCase(oslotest_base.BaseTestCase):
    """A test with its own simulator (and OS_TEST_TIMEOUT, so a hang fails)."""

    SIM_KWARGS: dict[str, Any] = {}

    def setUp(self) -> None:
        super().setUp()
        self.sim = self.useFixture(SimulatorFixture(**dict(self.SIM_KWARGS))).sim
        self.control = self.sim.control

    def pool(self, url: str | None = None, **kwargs: Any) -> SessionPool:
        kwargs.setdefault("backoff", 0.01)
        pool = SessionPool(url or self.sim.url, "root", PASSWORD, **kwargs)
        self.addCleanup(pool.close)
        return pool


    def nfs_sr(self, storage: Any) -> str:
        """A fresh shared nfs SR on the simulator's default export."""
        topo = self.sim.topology["nfs"]
        return storage.create_sr(storage.master().ref,
                                 {"server": topo["server"], "serverpath": topo["serverpath"]},
                                 "nfs", "test-%s" % uuid.uuid4().hex[:8], shared=True)


class DriverTestCase(SimTestCase):
    """A test with a simulator and a set-up XenAPISMDriver of ``SR_TYPE``."""

    SR_TYPE = "nfs"
    EXTRA_OPTIONS: dict[str, Any] = {}

    def setUp(self) -> None:
        super().setUp()
        self.driver = self.make_driver()

    def make_driver(self, **extra: Any) -> driver_mod.XenAPISMDriver:
        options = dict(self.EXTRA_OPTIONS, **extra)
        drv = driver_mod.XenAPISMDriver(
            configuration=configuration(backend_ini(self.sim, self.SR_TYPE, **options)))
        drv.do_setup(None)
        drv.check_for_setup_error()
        self.addCleanup(drv.close)
        return drv

    @property
    def sr_uuid(self) -> str:
        return self.driver.backend.sr_uuid

    # -- objects --------------------------------------------------------------

    @staticmethod
    def volume(size: int = 1, **fields: Any) -> dict[str, Any]:
        vol = {"id": str(uuid.uuid4()), "size": size, "display_name": "test"}
        vol.update(fields)
        return vol

    def create_volume(self, size: int = 1) -> dict[str, Any]:
        vol = self.volume(size)
        vol.update(self.driver.create_volume(vol) or {})
        return vol

    def snapshot_of(self, vol: dict[str, Any]) -> dict[str, Any]:
        snap = {"id": str(uuid.uuid4()), "volume_id": vol["id"], "volume": vol,
                "volume_size": vol["size"]}
        snap.update(self.driver.create_snapshot(snap) or {})
        return snap

    # -- content through the real data path -----------------------------------

    def write(self, obj: dict[str, Any], data: bytes) -> None:
        transfer.upload(self.driver.pool, obj["provider_id"], io.BytesIO(data),
                        size=len(data))

    def read(self, obj: dict[str, Any], length: int) -> bytes:
        out = io.BytesIO()
        vdi = self.driver.backend.storage.vdi_by_uuid(obj["provider_id"])
        transfer.download(self.driver.pool, obj["provider_id"], out,
                          size=vdi.virtual_size, length=length)
        return out.getvalue()

    # -- what is on the SR ----------------------------------------------------

    def sr_state(self) -> dict[str, tuple[Any, ...]]:
        """Every VDI record on the SR, by uuid: what a failed verb must not change."""
        storage = self.driver.backend.storage
        return {v.uuid: (v.name_label, tuple(sorted(v.other_config.items())),
                         v.virtual_size, v.managed, v.is_a_snapshot)
                for v in storage.sr_vdis(self.driver.backend.sr_ref)}

    def calls(self) -> dict[str, int]:
        return dict(self.driver.pool.counter.snapshot())
