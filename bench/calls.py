"""XAPI requests per verb per back end, counted by the simulator.

Each back end gets a fresh driver (its own SR) and runs every verb once in
a fixed order; the simulator's counters are zeroed before each verb and
read after it. The driver's own wire counter must agree with the
simulator's. The floor client then runs the same verbs on the same SR.
"""

from __future__ import annotations

from typing import Any

from bench import floor
from bench.common import Counted
from bench.common import GiB
from bench.common import make_driver
from bench.common import new_snapshot
from bench.common import new_volume
from bench.simproc import SimProcess
from xensm_driver import identity


def _driver_counts(sim: SimProcess, sr_type: str) -> tuple[dict[str, dict[str, int]],
                                                        dict[str, int], str, str]:
    """``({verb: {method: n}}, {verb: client-side n}, sr_uuid, sr_ref)``."""
    drv = make_driver(sim, sr_type, "calls-%s" % sr_type)
    assert drv.pool is not None
    counter = drv.pool.counter
    counted = Counted(sim)
    server: dict[str, dict[str, int]] = {}
    client: dict[str, int] = {}

    def run(verb: str, fn: Any) -> Any:
        before = counter.total()
        result, calls, _ = counted(fn)
        if verb in server and server[verb] != calls:
            raise AssertionError("%s on %s cost %s, then %s" % (verb, sr_type, server[verb],
                                                                 calls))
        server[verb] = calls
        client[verb] = counter.total() - before
        return result

    try:
        vol = new_volume()
        vol.update(run("create_volume", lambda: drv.create_volume(vol)))
        snap = new_snapshot(vol)
        snap.update(run("create_snapshot", lambda: drv.create_snapshot(snap)))
        from_snap = new_volume()
        from_snap.update(run("create_volume_from_snapshot",
                             lambda: drv.create_volume_from_snapshot(from_snap, snap)))
        clone = new_volume()
        clone.update(run("create_cloned_volume",
                         lambda: drv.create_cloned_volume(clone, vol)))
        run("extend_volume", lambda: drv.extend_volume(vol, 2))
        vol["size"] = 2
        run("revert_to_snapshot", lambda: drv.revert_to_snapshot(None, vol, snap))
        run("get_volume_stats", lambda: drv.get_volume_stats(True))
        run("initialize_connection", lambda: drv.initialize_connection(vol, {}))
        run("delete_snapshot", lambda: drv.delete_snapshot(snap))
        for each in (from_snap, clone, vol):
            run("delete_volume", lambda each=each: drv.delete_volume(each))
        return server, client, drv.backend.sr_uuid, drv.backend.sr_ref
    finally:
        drv.close()


def _floor_counts(sim: SimProcess, sr_uuid: str) -> dict[str, dict[str, int]]:
    fc = floor.FloorClient(sim.url, "root", sim.password)
    counted = Counted(sim)
    out: dict[str, dict[str, int]] = {}

    def run(verb: str, fn: Any) -> Any:
        result, calls, _ = counted(fn)
        out[verb] = calls
        return result

    try:
        sr_ref = fc.sr_ref(sr_uuid)
        ident = identity.volume("floor-calls")
        vol = run("create_volume",
                  lambda: fc.create_volume(sr_ref, GiB, ident.name_label, ident.tags()))
        snap = run("create_snapshot", lambda: fc.create_snapshot(vol))
        from_snap = run("create_volume_from_snapshot",
                        lambda: fc.create_volume_from_snapshot(snap))
        clone = run("create_cloned_volume", lambda: fc.create_cloned_volume(vol))
        run("extend_volume", lambda: fc.extend_volume(vol, 2 * GiB))
        run("revert_to_snapshot", lambda: fc.revert_to_snapshot(vol, snap))
        run("get_volume_stats", lambda: fc.get_volume_stats(sr_ref))
        run("initialize_connection", lambda: None)
        run("delete_snapshot", lambda: fc.delete_snapshot(snap))
        for each in (from_snap, clone, vol):
            run("delete_volume", lambda each=each: fc.delete_volume(each))
        return out
    finally:
        fc.close()


def measure(sim: SimProcess, backends: tuple[str, ...]) -> dict[str, Any]:
    """``{backend: {verb: {driver, floor, old_driver, ...}}}``."""
    results: dict[str, Any] = {}
    for sr_type in backends:
        server, client, sr_uuid, _ = _driver_counts(sim, sr_type)
        floor_calls = _floor_counts(sim, sr_uuid)
        per_verb: dict[str, Any] = {}
        for verb in floor.VERBS:
            measured_floor = sum(floor_calls[verb].values())
            if measured_floor != floor.FLOOR[verb]:
                raise AssertionError("the floor client made %d calls for %s, the floor is %d"
                                     % (measured_floor, verb, floor.FLOOR[verb]))
            driver_calls = sum(server[verb].values())
            if driver_calls != client[verb]:
                raise AssertionError("%s on %s: the simulator counted %d calls, the driver %d"
                                     % (verb, sr_type, driver_calls, client[verb]))
            per_verb[verb] = {
                "driver": driver_calls,
                "floor": measured_floor,
                "old_driver": floor.OLD_DRIVER[verb] if sr_type == "nfs" else None,
                "driver_methods": server[verb],
                # A task's status is polled until it ends: timing decides how often.
                "task_polls": server[verb].get("task.get_status", 0),
                "floor_methods": floor_calls[verb],
            }
        results[sr_type] = per_verb
    return results
