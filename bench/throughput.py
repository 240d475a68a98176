"""Throughput of the mixed workload: the driver against the floor client.

For each simulated latency and each number of concurrent callers, the floor
(every caller its own bare-SDK session making only the floor's calls) and
the driver (one driver shared by all callers, as cinder-volume shares it)
run the same cycles for the same time, alternately, ``repeats`` times; the
best run of each is kept and the ratio driver/floor reported.
"""

from __future__ import annotations

import functools
from typing import Any

from bench import workload
from bench.common import Settings
from bench.common import diff
from bench.common import make_driver
from bench.common import pool_size
from bench.common import server_calls
from bench.floor import FloorClient
from bench.floor import SameCallsClient
from bench.simproc import SimProcess
from xensm_driver import driver as driver_mod

SR_TYPE = "nfs"


def _one(sim: SimProcess, cycles: list[Any], duration: float) -> dict[str, Any]:
    # Warm-up, not measured: every caller once, so sessions are logged in.
    workload.run_callers(cycles, cycles_each=1)
    before = server_calls(sim)
    run = workload.run_callers(cycles, duration=duration)
    calls = sum(diff(server_calls(sim), before).values())
    ops = run["ops"]
    return {"ops": ops, "seconds": round(run["seconds"], 3),
            "ops_per_s": round(ops / run["seconds"], 2),
            "calls_per_op": round(calls / ops, 2),
            "client_cpu_ms_per_op": round(run["cpu_seconds"] * 1000 / ops, 3)}


def _best(samples: list[dict[str, Any]]) -> dict[str, Any]:
    best = dict(max(samples, key=lambda s: s["ops_per_s"]))
    best["ops_per_s_samples"] = [s["ops_per_s"] for s in samples]
    return best


def measure(sim: SimProcess, settings: Settings) -> dict[str, Any]:
    drivers: dict[int | None, driver_mod.XenAPISMDriver] = {
        None: make_driver(sim, SR_TYPE, "tp-%s" % SR_TYPE)}
    top = max(settings.concurrency)
    default_pool = pool_size(drivers[None])
    if settings.matched_pool and top > default_pool:
        drivers[top] = make_driver(sim, SR_TYPE, "tp-%s" % SR_TYPE,
                                   xenapi_connection_pool_size=top)
    sr_uuid = drivers[None].backend.sr_uuid
    clients = [FloorClient(sim.url, "root", sim.password) for _ in range(top)]
    same = [SameCallsClient(sim.url, "root", sim.password) for _ in range(top)]
    sr_ref = clients[0].sr_ref(sr_uuid)
    rows: list[dict[str, Any]] = []
    try:
        for latency_ms in settings.latencies_ms:
            sim.ctl.set_latency(latency_ms / 1000.0)
            for conc in settings.concurrency:
                floor_cycles = [functools.partial(workload.floor_cycle, fc, sr_ref)
                                for fc in clients[:conc]]
                pools = [None] + ([top] if conc == top and top in drivers else [])
                same_cycles = [functools.partial(workload.same_calls_cycle, fc, sr_ref)
                               for fc in same[:conc]]
                floor_runs: list[dict[str, Any]] = []
                same_runs: list[dict[str, Any]] = []
                driver_runs: dict[int | None, list[dict[str, Any]]] = {p: [] for p in pools}
                for _ in range(settings.repeats):
                    floor_runs.append(_one(sim, floor_cycles, settings.duration))
                    same_runs.append(_one(sim, same_cycles, settings.duration))
                    for pool in pools:
                        cycle = functools.partial(workload.driver_cycle, drivers[pool])
                        driver_runs[pool].append(
                            _one(sim, [cycle] * conc, settings.duration))
                floor_best = _best(floor_runs)
                same_best = _best(same_runs)
                for pool in pools:
                    drv_best = _best(driver_runs[pool])
                    rows.append({
                        "latency_ms": latency_ms, "concurrency": conc,
                        "driver_pool_size": pool_size(drivers[pool]),
                        "ratio": round(drv_best["ops_per_s"] / floor_best["ops_per_s"], 3),
                        "same_calls_ratio": round(
                            drv_best["ops_per_s"] / same_best["ops_per_s"], 3),
                        "driver": drv_best, "floor": floor_best,
                        "same_calls": same_best})
    finally:
        sim.ctl.set_latency(0.0)
        for drv in drivers.values():
            drv.close()
        for fc in [*clients, *same]:
            fc.close()
    return {"sr_type": SR_TYPE, "cycle": "create, snapshot, clone, delete x3",
            "ops_per_cycle": workload.OPS_PER_CYCLE, "seconds_per_run": settings.duration,
            "repeats": settings.repeats, "rows": rows}
