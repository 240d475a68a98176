"""The driver's own cost per verb, with XAPI taken out.

The driver's back end gets an in-memory storage stub that answers every
call at once, so what is left is the driver: specs, identity, the taskflow
engine. Each verb is timed through the driver as it is, then with the
flow's tasks called in order by a plain loop instead of the taskflow
engine (the same tasks, the same store), so the engine's share is measured,
not guessed. Beside them: one XAPI round trip on the simulator at 0 ms
latency, from the floor client.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
import uuid
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

from bench.common import Settings
from bench.common import make_driver
from bench.common import median_ms
from bench.common import new_snapshot
from bench.common import new_volume
from bench.floor import FloorClient
from bench.simproc import SimProcess
from xensm_driver import driver as driver_mod
from xensm_driver.flows import engine as flows_engine
from xensm_driver.xapi.storage import VDI


class StubStorage:
    """The storage calls the mixed workload makes, answered from a dict."""

    def __init__(self, sr_ref: str) -> None:
        self.sr_ref = sr_ref
        self.vdis: dict[str, VDI] = {}
        self.by_name: dict[str, set[str]] = {}
        self.sr_config: dict[str, str] = {}

    def _add(self, vdi: VDI) -> str:
        self.vdis[vdi.ref] = vdi
        self.by_name.setdefault(vdi.name_label, set()).add(vdi.ref)
        return vdi.ref

    def _replace(self, ref: str, **changes: Any) -> None:
        old = self.vdis[ref]
        self.by_name[old.name_label].discard(ref)
        self._add(dataclasses.replace(old, **changes))

    def create_vdi(self, sr_ref: str, size_bytes: int, name_label: str,
                   other_config: Mapping[str, str], **kwargs: Any) -> str:
        vid = str(uuid.uuid4())
        return self._add(VDI(
            ref="OpaqueRef:" + vid, uuid=vid, name_label=name_label, sr=sr_ref,
            virtual_size=size_bytes, physical_utilisation=0, is_a_snapshot=False,
            snapshot_of="OpaqueRef:NULL", managed=True, read_only=False, vbds=(),
            other_config=dict(other_config), sm_config={}, type="user"))

    def _copy(self, ref: str, snapshot: bool) -> str:
        src = self.vdis[ref]
        vid = str(uuid.uuid4())
        return self._add(dataclasses.replace(
            src, ref="OpaqueRef:" + vid, uuid=vid, is_a_snapshot=snapshot,
            snapshot_of=ref if snapshot else "OpaqueRef:NULL"))

    def snapshot_vdi(self, vdi_ref: str) -> str:
        return self._copy(vdi_ref, True)

    def clone_vdi(self, vdi_ref: str) -> str:
        return self._copy(vdi_ref, False)

    def find_vdis(self, sr_ref: str, name_label: str) -> list[VDI]:
        return [self.vdis[r] for r in self.by_name.get(name_label, ())]

    def find_vdis_named(self, sr_ref: str, names: list[str],
                        uuids: Iterable[str] = ()) -> list[VDI]:
        found = {v.ref: v for n in names for v in self.find_vdis(sr_ref, n)}
        for uuid_ in uuids:
            by_uuid = self.vdi_by_uuid(uuid_)
            if by_uuid is not None:
                found[by_uuid.ref] = by_uuid
        return list(found.values())

    def vdi_by_uuid(self, vdi_uuid: str) -> VDI | None:
        return self.vdis.get("OpaqueRef:" + vdi_uuid)

    def get_vdi(self, vdi_ref: str) -> VDI:
        return self.vdis[vdi_ref]

    def add_other_config_key(self, cls: str, ref: str, key: str, value: str) -> None:
        if cls == "SR":
            self.sr_config[key] = value
        else:
            self._replace(ref, other_config={**self.vdis[ref].other_config, key: value})

    def remove_other_config_key(self, cls: str, ref: str, key: str) -> None:
        if cls == "SR":
            self.sr_config.pop(key, None)
        else:
            self._replace(ref, other_config={k: v for k, v in
                                             self.vdis[ref].other_config.items() if k != key})

    def other_config(self, cls: str, ref: str) -> dict[str, str]:
        return dict(self.sr_config) if cls == "SR" else dict(self.vdis[ref].other_config)

    def base_copies(self, sr_ref: str) -> list[VDI]:
        return []

    def set_vdi_identity(self, vdi_ref: str, name_label: str,
                         other_config: Mapping[str, str]) -> None:
        self._replace(vdi_ref, name_label=name_label, other_config=dict(other_config))

    def destroy_vdi(self, vdi_ref: str) -> None:
        vdi = self.vdis.pop(vdi_ref)
        self.by_name[vdi.name_label].discard(vdi_ref)


def plain_run(flow: Any, **store: Any) -> dict[str, Any]:
    """Run a linear flow's tasks in order, reverting done ones on failure.

    What ``flows.engine.run`` and ``Verb.run`` do, without the taskflow engine: used only
    to measure the engine's share.
    """
    values = dict(store)
    done: list[tuple[Any, dict[str, Any], Any]] = []
    try:
        for atom in flow:
            kwargs = {arg: values[key] for arg, key in atom.rebind.items() if key in values}
            result = atom.execute(**kwargs)
            for name, index in atom.save_as.items():
                values[name] = result if index is None else result[index]
            done.append((atom, kwargs, result))
    except Exception:
        for atom, kwargs, result in reversed(done):
            atom.revert(result=result, flow_failures={}, **kwargs)
        raise
    return values


@contextlib.contextmanager
def _plain_engine() -> Iterator[None]:
    saved_run, saved_verb = flows_engine.run, flows_engine.Verb.run

    def verb_run(verb: flows_engine.Verb, **store: Any) -> dict[str, Any]:
        return plain_run(verb.flow(), **store)

    flows_engine.run = plain_run                          # type: ignore[assignment]
    flows_engine.Verb.run = verb_run                      # type: ignore[method-assign]
    try:
        yield
    finally:
        flows_engine.run = saved_run                      # type: ignore[assignment]
        flows_engine.Verb.run = saved_verb                # type: ignore[method-assign]


def _time_verbs(drv: driver_mod.XenAPISMDriver, repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {v: [] for v in (
        "create_volume", "create_snapshot", "create_cloned_volume", "delete_snapshot",
        "delete_volume")}

    def timed(verb: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        result = fn()
        samples[verb].append(time.perf_counter() - t0)
        return result

    for _ in range(repeats):
        vol = new_volume()
        vol.update(timed("create_volume", functools.partial(drv.create_volume, vol)))
        snap = new_snapshot(vol)
        snap.update(timed("create_snapshot", functools.partial(drv.create_snapshot, snap)))
        clone = new_volume()
        clone.update(timed("create_cloned_volume",
                           functools.partial(drv.create_cloned_volume, clone, vol)))
        timed("delete_snapshot", functools.partial(drv.delete_snapshot, snap))
        timed("delete_volume", functools.partial(drv.delete_volume, clone))
        drv.delete_volume(vol)
    return {verb: median_ms(s) for verb, s in samples.items()}


def measure(sim: SimProcess, settings: Settings) -> dict[str, Any]:
    drv = make_driver(sim, "nfs", "overhead-nfs")
    real_storage = drv.backend.storage
    try:
        drv.backend.storage = StubStorage(drv.backend.sr_ref)
        _time_verbs(drv, 3)                     # warm-up: imports, caches
        with_taskflow = _time_verbs(drv, settings.overhead_repeats)
        with _plain_engine():
            _time_verbs(drv, 3)
            plain = _time_verbs(drv, settings.overhead_repeats)
    finally:
        drv.backend.storage = real_storage
        drv.close()
    fc = FloorClient(sim.url, "root", sim.password)
    try:
        samples = []
        for _ in range(max(20, settings.overhead_repeats)):
            t0 = time.perf_counter()
            fc.x.host.get_all()
            samples.append(time.perf_counter() - t0)
    finally:
        fc.close()
    return {
        "note": "driver verbs with XAPI stubbed out; median ms per verb",
        "driver_ms": with_taskflow,
        "plain_loop_ms": plain,
        "taskflow_share": {v: round(1 - plain[v] / with_taskflow[v], 3)
                           for v in with_taskflow},
        "xapi_round_trip_ms": median_ms(samples),
        "repeats": settings.overhead_repeats,
    }
