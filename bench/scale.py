"""Cost of stats, create, delete and update_provider_info as the SR grows.

One nfs SR is filled with volume VDIs (named and tagged as the driver tags
them) to each size in turn -- 10, 1,000, 10,000 -- and at each size every
operation runs ``scale_repeats`` times: its XAPI requests are counted by
the simulator (they must be the same at every size) and its wall time kept
(the median). The floor client's create, delete and stats run beside the
driver's, on the same SR at the same size, so growth in the simulator
itself shows apart from growth in the driver.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import Counted
from bench.common import GiB
from bench.common import Settings
from bench.common import make_driver
from bench.common import median_ms
from bench.common import new_volume
from bench.floor import FloorClient
from bench.simproc import SimProcess
from xensm_driver import identity

SR_TYPE = "nfs"
#: Callers filling the SR (each its own session).
FILLERS = 8
#: Above this ratio of largest-SR to smallest-SR time, a figure "grows".
FLAT_RATIO = 1.5


def fill(sim: SimProcess, sr_ref: str, count: int) -> float:
    """Add ``count`` volume VDIs to the SR; return the seconds it took."""
    if count <= 0:
        return 0.0
    errors: list[BaseException] = []
    shares = [count // FILLERS + (1 if i < count % FILLERS else 0) for i in range(FILLERS)]

    def filler(n: int) -> None:
        try:
            fc = FloorClient(sim.url, "root", sim.password)
            try:
                for _ in range(n):
                    ident = identity.volume(str(uuid.uuid4()))
                    fc.x.VDI.create({
                        "SR": sr_ref, "virtual_size": str(GiB), "type": "user",
                        "sharable": False, "read_only": False,
                        "name_label": ident.name_label, "name_description": "",
                        "other_config": ident.tags(), "sm_config": {},
                        "xenstore_data": {}, "tags": []})
            finally:
                fc.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    start = time.perf_counter()
    threads = [threading.Thread(target=filler, args=(n,), daemon=True) for n in shares if n]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def _series(counted: Counted, fn: Callable[[], Any], repeats: int,
            what: str) -> dict[str, Any]:
    """Run ``fn`` ``repeats`` times: its (constant) calls and median time."""
    calls: dict[str, int] | None = None
    rows: dict[str, int] = {}
    samples = []
    for _ in range(repeats):
        _, made, seconds = counted(fn)
        if calls is not None and made != calls:
            raise AssertionError("%s cost %s, then %s" % (what, calls, made))
        calls = made
        # Database rows a real pool reads for the lookups (the simulator
        # counts them as xen-api's db_cache_impl would): the last run's.
        rows = counted.sim.ctl.rows()
        samples.append(seconds)
    assert calls is not None
    return {"calls": sum(calls.values()), "methods": calls, "ms": median_ms(samples),
            "rows": sum(rows.values()), "rows_by_method": rows}


def _verdict(points: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Whether ``key``'s calls and time stay flat from the smallest SR to the largest."""
    first, last = points[0][key], points[-1][key]
    time_key = "per_volume_us" if "per_volume_us" in first else "ms"
    ratio = round(last[time_key] / first[time_key], 2) if first[time_key] else None
    calls_flat = len({p[key]["calls"] for p in points}) == 1
    time_flat = ratio is not None and ratio <= FLAT_RATIO
    return {"calls_flat": calls_flat, "time_ratio": ratio, "time_compared": time_key,
            "flat": calls_flat and time_flat}


def _point(drv: Any, fc: FloorClient, counted: Counted, sr_ref: str,
           reps: int) -> dict[str, Any]:
    """Every operation at the SR's current size."""
    sr_uuid = drv.backend.sr_uuid
    records = fc.x.VDI.get_all_records_where('field "SR"="%s"' % sr_ref)
    # What Cinder hands update_provider_info at start-up: every volume of
    # the back end, each with its provider_id; the driver lists the SR once
    # to follow the VDIs that reverts swapped in.
    volumes = [{"id": rec["other_config"].get(identity.VOLUME_TAG, ""),
                "provider_id": rec["uuid"],
                "provider_location": identity.provider_location(sr_uuid, rec["uuid"])}
               for rec in records.values()]
    made: list[dict[str, Any]] = []
    floor_made: list[str] = []

    def create() -> None:
        vol = new_volume()
        vol.update(drv.create_volume(vol) or {})
        made.append(vol)

    def floor_create() -> None:
        ident = identity.volume(str(uuid.uuid4()))
        floor_made.append(fc.create_volume(sr_ref, GiB, ident.name_label, ident.tags()))

    point: dict[str, Any] = {"vdis_on_sr": len(records)}
    point["get_volume_stats"] = _series(
        counted, lambda: drv.get_volume_stats(True), reps, "stats")
    point["create_volume"] = _series(counted, create, reps, "create")
    point["delete_volume"] = _series(
        counted, lambda: drv.delete_volume(made.pop()), reps, "delete")
    upi = _series(counted, lambda: drv.update_provider_info(volumes, []), reps,
                  "update_provider_info")
    upi["volumes"] = len(volumes)
    upi["per_volume_us"] = round(upi["ms"] * 1000 / max(1, len(volumes)), 3)
    point["update_provider_info"] = upi
    point["floor_get_volume_stats"] = _series(
        counted, lambda: fc.get_volume_stats(sr_ref), reps, "floor stats")
    point["floor_create_volume"] = _series(counted, floor_create, reps, "floor create")
    point["floor_delete_volume"] = _series(
        counted, lambda: fc.delete_volume(floor_made.pop()), reps, "floor delete")
    return point


def measure(sim: SimProcess, settings: Settings) -> dict[str, Any]:
    drv = make_driver(sim, SR_TYPE, "scale-%s" % SR_TYPE)
    fc = FloorClient(sim.url, "root", sim.password)
    counted = Counted(sim)
    sr_ref = fc.sr_ref(drv.backend.sr_uuid)
    points: list[dict[str, Any]] = []
    try:
        on_sr = 0
        for size in sorted(settings.scale_sizes):
            fill_seconds = fill(sim, sr_ref, size - on_sr)
            point = _point(drv, fc, counted, sr_ref, settings.scale_repeats)
            point["fill_seconds"] = round(fill_seconds, 2)
            on_sr = point["vdis_on_sr"]
            points.append(point)
    finally:
        drv.close()
        fc.close()
    keys = [k for k in points[0] if isinstance(points[0][k], dict)]
    return {"sr_type": SR_TYPE, "repeats": settings.scale_repeats, "points": points,
            "verdict": {k: _verdict(points, k) for k in keys}}
