"""The mixed workload, through the driver and through the floor client.

One cycle is six operations on a fresh volume -- create it, snapshot it,
clone it, then delete the clone, the snapshot and the volume -- so the SR
ends a cycle as it began and any number of cycles can run.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from bench.common import GiB
from bench.common import new_snapshot
from bench.common import new_volume
from bench.floor import FloorClient
from bench.floor import SameCallsClient
from xensm_driver import identity

if TYPE_CHECKING:
    from xensm_driver import driver as driver_mod

OPS_PER_CYCLE = 6


def driver_cycle(drv: driver_mod.XenAPISMDriver) -> int:
    vol = new_volume()
    vol.update(drv.create_volume(vol) or {})
    snap = new_snapshot(vol)
    snap.update(drv.create_snapshot(snap) or {})
    clone = new_volume()
    clone.update(drv.create_cloned_volume(clone, vol) or {})
    drv.delete_volume(clone)
    drv.delete_snapshot(snap)
    drv.delete_volume(vol)
    return OPS_PER_CYCLE


def floor_cycle(fc: FloorClient, sr_ref: str) -> int:
    ident = identity.volume(str(uuid.uuid4()))
    vol = fc.create_volume(sr_ref, GiB, ident.name_label, ident.tags())
    snap = fc.create_snapshot(vol)
    clone = fc.create_cloned_volume(vol)
    fc.delete_volume(clone)
    fc.delete_snapshot(snap)
    fc.delete_volume(vol)
    return OPS_PER_CYCLE


def same_calls_cycle(fc: SameCallsClient, sr_ref: str) -> int:
    """The cycle with exactly the driver's calls (SameCallsClient)."""
    vol = identity.volume(str(uuid.uuid4()))
    snap = identity.snapshot(str(uuid.uuid4()))
    clone = identity.volume(str(uuid.uuid4()))
    vol_uuid = fc.create_volume(sr_ref, GiB, vol.name_label, vol.tags())
    snap_uuid = fc.copy(sr_ref, vol_uuid, vol.name_label, snap.name_label, snap.tags(),
                        "snapshot")
    clone_uuid = fc.copy(sr_ref, vol_uuid, vol.name_label, clone.name_label, clone.tags(),
                         "clone")
    fc.delete(sr_ref, clone_uuid, clone.name_label)
    fc.delete(sr_ref, snap_uuid, snap.name_label)
    fc.delete(sr_ref, vol_uuid, vol.name_label)
    return OPS_PER_CYCLE


def run_callers(cycles: Sequence[Callable[[], int]], *, duration: float | None = None,
                cycles_each: int | None = None) -> dict[str, Any]:
    """Run one thread per entry of ``cycles`` at once, each repeating its
    cycle until ``duration`` seconds have passed since the start (a cycle
    under way is finished) or ``cycles_each`` times.

    Returns ops done, wall seconds and the bench process's CPU seconds. Any
    error in a caller is raised here: a failed operation is never counted.
    """
    if (duration is None) == (cycles_each is None):
        raise ValueError("give duration or cycles_each")
    start = threading.Barrier(len(cycles) + 1)
    ops = [0] * len(cycles)
    errors: list[BaseException] = []
    deadline = [0.0]

    def caller(i: int, cycle: Callable[[], int]) -> None:
        start.wait()
        done = 0
        try:
            while True:
                if cycles_each is not None and done >= cycles_each:
                    return
                if duration is not None and time.perf_counter() >= deadline[0]:
                    return
                ops[i] += cycle()
                done += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(i, c), daemon=True)
               for i, c in enumerate(cycles)]
    for t in threads:
        t.start()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline[0] = t0 + (duration or 0.0)
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    if errors:
        raise errors[0]
    return {"ops": sum(ops), "seconds": wall, "cpu_seconds": cpu}
