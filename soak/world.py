"""The soak's world: a simulator, two drivers per back end, and what storage holds."""

from __future__ import annotations

import dataclasses
import io
import logging
import threading
from collections.abc import Iterable
from typing import Any

from soak import model
from xensm_driver import identity
from xensm_driver.sim.control import SimControl
from xensm_driver.sim.solidfire import ElementControl
from xensm_driver.xapi import transfer
from xensm_driver.xapi.session import SessionPool

#: The soak's back ends: name -> (SR type, extra options). "chap" is an
#: lvmoiscsi SR behind CHAP (its LUN is the topology's iscsi_chap one).
BACKENDS = ("nfs", "chap", "sf")
SR_TYPES = {"nfs": "nfs", "chap": "lvmoiscsi", "sf": model.SOLIDFIRE}

#: Short timeouts, so a hung call fails in seconds (the soak hangs calls
#: past them on purpose), and quick retries.
TIMEOUTS = {"xenapi_call_timeout": 1.5, "xenapi_task_timeout": 20,
            "xenapi_retry_backoff": 0.01, "xensm_sf_api_timeout": 2,
            "xensm_sf_retry_count": 2}
#: How long a "hang" fault holds a call: past both call timeouts.
HANG = 2.5


@dataclasses.dataclass
class Sim:
    """Where the simulator is: enough for another process or this one."""

    url: str
    topology: dict[str, Any]
    control: SimControl
    element: ElementControl
    password: str


class ImageStore:
    """Cinder's image service contract (show, download, update) in memory,
    keeping only the first REGION bytes of what a volume uploads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.images: dict[str, dict[str, Any]] = {}

    def add(self, image_id: str, data: bytes) -> None:
        with self._lock:
            self.images[image_id] = {"id": image_id, "size": len(data),
                                     "disk_format": "raw", "data": data}

    def show(self, context: Any, image_id: str) -> dict[str, Any]:
        with self._lock:
            return {k: v for k, v in self.images[image_id].items() if k != "data"}

    def download(self, context: Any, image_id: str) -> Iterable[bytes]:
        with self._lock:
            data = self.images[image_id]["data"]
        return (data[i:i + transfer.CHUNK] for i in range(0, len(data), transfer.CHUNK))

    def update(self, context: Any, image_id: str, meta: dict[str, Any],
               data: Iterable[bytes]) -> dict[str, Any]:
        head, size = bytearray(), 0
        for chunk in data:
            if len(head) < model.REGION:
                head += chunk[:model.REGION - len(head)]
            size += len(chunk)
        with self._lock:
            self.images[image_id] = dict(meta, id=image_id, size=size, data=bytes(head))
        return self.show(context, image_id)

    def drop(self, image_id: str) -> None:
        with self._lock:
            self.images.pop(image_id, None)


def backend_options(sim: Sim, name: str) -> dict[str, Any]:
    extra: dict[str, Any] = dict(TIMEOUTS)
    if name == "chap":
        chap = sim.topology["iscsi_chap"]
        extra.update(xensm_iscsi_target_iqn=chap["targetIQN"],
                     xensm_iscsi_scsi_id=chap["luns"][0]["SCSIid"],
                     xensm_iscsi_chap_user=chap["chapuser"],
                     xensm_iscsi_chap_password=chap["chappassword"])
    return extra


def secrets(sim: Sim) -> list[str]:
    """Every password the drivers hold: none may reach a log line or an error."""
    out = [sim.password, sim.topology["iscsi_chap"]["chappassword"]]
    if "solidfire" in sim.topology:
        out.append(sim.topology["solidfire"]["password"])
    return out


class Backend:
    """One back end: its two driver instances on one SR (active-active)."""

    def __init__(self, sim: Sim, name: str, drivers: list[Any]) -> None:
        self.sim = sim
        self.name = name
        self.sr_type = SR_TYPES[name]
        self.drivers = drivers

    @property
    def solidfire(self) -> bool:
        return self.sr_type == model.SOLIDFIRE

    @property
    def sr_uuid(self) -> str | None:
        return None if self.solidfire else str(self.drivers[0].backend.sr_uuid)

    def close(self) -> None:
        for drv in self.drivers:
            drv.close()


def make_backends(sim: Sim, names: Iterable[str] = BACKENDS) -> dict[str, Backend]:
    from bench import common

    out = {}
    for name in names:
        # One after the other: the first creates the SR, the second finds it.
        drivers = [common.make_driver(sim, SR_TYPES[name], "soak-%s" % name,
                                      **backend_options(sim, name)) for _ in range(2)]
        out[name] = Backend(sim, name, drivers)
    return out


# -- reading storage -----------------------------------------------------------------

class Observer:
    """Reads what storage holds, through its own XAPI sessions and the array's
    control plane (never through the drivers under test)."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.pool = SessionPool(sim.url, "root", sim.password, size=2, backoff=0.01)
        self.baseline_srs: set[str] = set()

    def close(self) -> None:
        self.pool.close()

    def take_baseline(self) -> None:
        self.baseline_srs = set(self._srs())

    def _srs(self) -> dict[str, str]:
        recs = self.pool.call("SR.get_all_records")
        return {rec["uuid"]: rec["name_label"] for rec in recs.values()}

    def inventory(self, backends: dict[str, Backend]) -> model.Inventory:
        srs = self.pool.call("SR.get_all_records")
        sr_by_ref = {ref: (rec["uuid"], rec["name_label"]) for ref, rec in srs.items()}
        vdis = self.pool.call("VDI.get_all_records")
        inv = model.Inventory(backends={})
        owned_srs: set[str] = set(self.baseline_srs)
        sf_srs: dict[str, list[str]] = {}
        for uuid, name in sr_by_ref.values():
            if name.startswith(model.sf_sr_name("")):
                sf_srs.setdefault(name, []).append(uuid)
        sm_srs = {}
        for b in backends.values():
            bi = model.BackendInventory(b.name, b.sr_type, b.sr_uuid)
            inv.backends[b.name] = bi
            if b.solidfire:
                bi.srs = {k: sorted(v) for k, v in sf_srs.items()}
                owned_srs.update(u for v in sf_srs.values() for u in v)
                self._array(bi)
            elif b.sr_uuid:
                sm_srs[b.sr_uuid] = bi
        sf = next((bi for bi in inv.backends.values() if bi.sr_type == model.SOLIDFIRE), None)
        sf_uuids = {u for v in sf_srs.values() for u in v}
        for rec in vdis.values():
            sr_uuid, sr_name = sr_by_ref.get(rec["SR"], ("?", "?"))
            tags = tuple(sorted((k, v) for k, v in rec["other_config"].items()
                                if k.startswith("xensm-")))
            vdi = model.VdiRec(rec["uuid"], rec["name_label"], tags, int(rec["virtual_size"]),
                               sr_uuid, sr_name, bool(rec["is_a_snapshot"]))
            if sr_uuid in sm_srs:
                if rec["managed"]:
                    sm_srs[sr_uuid].vdis.append(vdi)
            elif sr_uuid in sf_uuids and sf is not None:
                if rec["managed"]:
                    sf.vdis.append(vdi)
            elif tags and any(k in (identity.VOLUME_TAG, identity.SNAPSHOT_TAG)
                              for k, _ in tags):
                inv.stray_vdis.append(vdi)
        inv.stray_srs = sorted((u, n) for u, n in
                               ((u, n) for u, n in sr_by_ref.values())
                               if u not in owned_srs)
        return inv

    def _array(self, bi: model.BackendInventory) -> None:
        dump = self.sim.element.dump()
        for v in dump["volumes"]:
            if not v["name"].startswith("xensm-"):
                continue
            bi.luns.append(model.ArrayVolume(
                int(v["volumeID"]), v["name"], v["status"], int(v["totalSize"]),
                tuple(sorted((str(k), str(x)) for k, x in (v.get("attributes") or {}).items()))))
        for s in dump["snapshots"]:
            bi.array_snapshots.append(model.ArraySnapshot(int(s["snapshotID"]), s["name"],
                                                          int(s["volumeID"])))
        for g in dump["volumeAccessGroups"]:
            bi.access.extend(int(v) for v in g["volumes"])

    def read(self, vdi_uuid: str) -> bytes:
        """The VDI's first REGION bytes, through XAPI's data path."""
        out = io.BytesIO()
        rec = self.pool.call("VDI.get_record", self.pool.call("VDI.get_by_uuid", vdi_uuid))
        transfer.download(self.pool, vdi_uuid, out, size=int(rec["virtual_size"]),
                          length=model.REGION, timeout=60)
        return out.getvalue()


# -- logs ------------------------------------------------------------------------------

class SecretWatch(logging.Handler):
    """Every log record, formatted, searched for a password."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(level=1)
        self.secrets = [s for s in secrets if s]
        self.records = 0
        self.leaks: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception as exc:  # noqa: BLE001 - a broken record is itself a finding
            text = "unformattable record %r: %s" % (record.msg, exc)
        self.records += 1
        self.scan("log line", text)

    def scan(self, where: str, text: str) -> None:
        for secret in self.secrets:
            if secret in text:
                self.leaks.append("%s holds a password: %s" % (
                    where, text.replace(secret, "<PASSWORD>")[:300]))

    def install(self) -> None:
        root = logging.getLogger()
        root.addHandler(self)
        root.setLevel(1)        # taskflow's TRACE (5) logs task arguments
        # The simulator's own logs are not the driver's.
        logging.getLogger("xensm_driver.sim").setLevel(logging.WARNING)

    def remove(self) -> None:
        logging.getLogger().removeHandler(self)
