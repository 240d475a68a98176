"""Shared scaffolding: a simulator per test class, drivers configured for it."""

from __future__ import annotations

import hashlib
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
from xensm_driver.sim import Simulator
from xensm_driver.xapi import transfer
from xensm_driver.xapi.session import SessionPool

PASSWORD = "s3cr3t-Pa55"      # distinctive, so a leak is easy to find in logs
MiB = 1 << 20
GiB = 1 << 30


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
    """An ini section for a back end of ``sr_type`` on the simulator's storage."""
    topo = sim.topology
    values: dict[str, Any] = {
        "volume_driver": "xensm_driver.driver.XenAPISMDriver",
        "volume_backend_name": section,
        "xenapi_connection_url": sim.url,
        "xenapi_connection_username": "root",
        "xenapi_connection_password": PASSWORD,
        "xenapi_retry_backoff": 0.01,
        "xensm_sr_type": sr_type,
    }
    if sr_type == "nfs":
        values.update(xensm_nfs_server=topo["nfs"]["server"],
                      xensm_nfs_serverpath=topo["nfs"]["serverpath"])
    elif sr_type == "lvm":
        values.update(xensm_lvm_device=topo["lvm"]["device"])
    elif sr_type == "lvmoiscsi":
        iscsi = topo["iscsi"]
        values.update(xensm_iscsi_target=iscsi["target"],
                      xensm_iscsi_target_iqn=iscsi["targetIQN"],
                      xensm_iscsi_scsi_id=iscsi["luns"][0]["SCSIid"])
        if iscsi.get("chapuser"):
            values.update(xensm_iscsi_chap_user=iscsi["chapuser"],
                          xensm_iscsi_chap_password=iscsi["chappassword"])
    elif sr_type == "lvmohba":
        values.update(xensm_hba_scsi_id=topo["hba"]["luns"][0]["SCSIid"])
    elif sr_type == "netapp":
        na = topo["netapp"]
        values.update(xensm_netapp_target=na["target"], xensm_netapp_username=na["username"],
                      xensm_netapp_password=na["password"],
                      xensm_netapp_aggregate=na["aggregate"])
    elif sr_type == "equal":
        eq = topo["equal"]
        values.update(xensm_eql_target=eq["target"], xensm_eql_username=eq["username"],
                      xensm_eql_password=eq["password"],
                      xensm_eql_storagepool=eq["storagepool"])
    elif sr_type == "solidfire":
        sf = topo["solidfire"]
        values.update(xensm_sf_mvip=sf["mvip"], xensm_sf_login=sf["login"],
                      xensm_sf_password=sf["password"], xensm_sf_retry_count=1,
                      xensm_sf_api_timeout=10)
    values.update(extra)
    lines = ["[%s]" % section] + ["%s = %s" % (k, v) for k, v in values.items()]
    return "\n".join(lines) + "\n"


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


def pattern(seed: str, length: int) -> bytes:
    """Deterministic, incompressible test data."""
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(("%s:%d" % (seed, counter)).encode()).digest()
        counter += 1
    return bytes(out[:length])
