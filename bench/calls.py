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


def _array_control(sim: SimProcess, sr_type: str) -> Any:
    """The Element simulator's control client, for a VDI-per-LUN back end."""
    if sr_type != "solidfire":
        return None
    from xensm_driver.sim.solidfire import ElementControl

    return ElementControl(sim.topology["solidfire"]["mvip"])


def _driver_counts(sim: SimProcess, sr_type: str) -> dict[str, Any]:
    """Per verb: XAPI requests by method (simulator and driver counters),
    array requests by method (VDI-per-LUN back ends); and the SR uuid of an
    SM-native back end."""
    drv = make_driver(sim, sr_type, "calls-%s" % sr_type)
    assert drv.pool is not None
    counter = drv.pool.counter
    counted = Counted(sim)
    array = _array_control(sim, sr_type)
    server: dict[str, dict[str, int]] = {}
    rows: dict[str, dict[str, int]] = {}
    client: dict[str, int] = {}
    array_calls: dict[str, dict[str, int]] = {}

    def run(verb: str, fn: Any) -> Any:
        before = counter.total()
        if array is not None:
            array.reset_calls()
        result, calls, _ = counted(fn)
        if verb in server and server[verb] != calls:
            raise AssertionError("%s on %s cost %s, then %s" % (verb, sr_type, server[verb],
                                                                 calls))
        server[verb] = calls
        rows[verb] = sim.ctl.rows()
        client[verb] = counter.total() - before
        if array is not None:
            array_calls[verb] = dict(sorted(array.calls().items()))
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
        return {"server": server, "rows": rows, "client": client, "array": array_calls,
                "sr_uuid": getattr(drv.backend, "sr_uuid", None)}
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


#: The verbs of the mixed cycle, which SameCallsClient makes as the driver does.
SAME_CALLS_VERBS = ("create_volume", "create_snapshot", "create_cloned_volume",
                    "delete_snapshot", "delete_volume")


def _same_calls_counts(sim: SimProcess, sr_uuid: str) -> dict[str, dict[str, int]]:
    """The same-calls floor's requests per verb of the cycle, by method."""
    fc = floor.SameCallsClient(sim.url, "root", sim.password)
    counted = Counted(sim)
    out: dict[str, dict[str, int]] = {}

    def run(verb: str, fn: Any) -> Any:
        result, calls, _ = counted(fn)
        out[verb] = calls
        return result

    try:
        sr_ref = fc.sr_ref(sr_uuid)
        vol = identity.volume("same-calls")
        snap = identity.snapshot("same-calls")
        clone = identity.volume("same-calls-clone")
        vol_uuid = run("create_volume", lambda: fc.create_volume(
            sr_ref, GiB, vol.name_label, vol.tags()))
        snap_uuid = run("create_snapshot", lambda: fc.copy(
            sr_ref, vol_uuid, vol.name_label, snap.name_label, snap.tags(), "snapshot"))
        clone_uuid = run("create_cloned_volume", lambda: fc.copy(
            sr_ref, vol_uuid, vol.name_label, clone.name_label, clone.tags(), "clone"))
        run("delete_snapshot", lambda: fc.delete(sr_ref, snap_uuid, snap.name_label))
        fc.delete(sr_ref, clone_uuid, clone.name_label)
        run("delete_volume", lambda: fc.delete(sr_ref, vol_uuid, vol.name_label))
        return out
    finally:
        fc.close()


def measure(sim: SimProcess, backends: tuple[str, ...]) -> dict[str, Any]:
    """``{backend: {verb: {driver, floor, old_driver, ...}}}``.

    The floor client runs on each SM-native back end's SR. A VDI-per-LUN
    back end (SolidFire) makes an SR per volume and works on the array, so
    the SM floor does not apply to it (``floor`` is None); its array
    requests are counted beside its XAPI requests.
    """
    results: dict[str, Any] = {}
    for sr_type in backends:
        counts = _driver_counts(sim, sr_type)
        server, client = counts["server"], counts["client"]
        floor_calls = _floor_counts(sim, counts["sr_uuid"]) if counts["sr_uuid"] else None
        same_calls = _same_calls_counts(sim, counts["sr_uuid"]) if sr_type == "nfs" else {}
        per_verb: dict[str, Any] = {}
        for verb in floor.VERBS:
            driver_calls = sum(server[verb].values())
            if driver_calls != client[verb]:
                raise AssertionError("%s on %s: the simulator counted %d calls, the driver %d"
                                     % (verb, sr_type, driver_calls, client[verb]))
            entry: dict[str, Any] = {
                "driver": driver_calls,
                "floor": None,
                "old_driver": floor.OLD_DRIVER[verb] if sr_type == "nfs" else None,
                "driver_methods": server[verb],
                # Database rows the pool master reads (scans count every VDI).
                "rows": sum(counts["rows"][verb].values()),
                "rows_by_method": counts["rows"][verb],
                # A task's status is polled until it ends: timing decides how often.
                "task_polls": server[verb].get("task.get_record", 0),
            }
            if verb in same_calls:
                entry["same_calls_methods"] = same_calls[verb]
                if same_calls[verb] != server[verb]:
                    raise AssertionError("the same-calls floor made %s for %s, the driver %s"
                                         % (same_calls[verb], verb, server[verb]))
            if floor_calls is not None:
                entry["floor"] = sum(floor_calls[verb].values())
                entry["floor_methods"] = floor_calls[verb]
                if entry["floor"] != floor.FLOOR[verb]:
                    raise AssertionError(
                        "the floor client made %d calls for %s, the floor is %d"
                        % (entry["floor"], verb, floor.FLOOR[verb]))
            if verb in counts["array"]:
                entry["array"] = sum(counts["array"][verb].values())
                entry["array_methods"] = counts["array"][verb]
            per_verb[verb] = entry
        results[sr_type] = per_verb
    return results
