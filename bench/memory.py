"""Peak RSS of a process running the mixed workload, measured in a child.

The parent starts ``python -m bench.memory`` once per mode: ``driver``
(one driver shared by the callers, as cinder-volume runs it) and ``floor``
(the bare SDK, one session per caller, the same cycles). The child reports
its own peak resident set (``VmHWM``), imports and all, and its
resident set after setup and one warm-up cycle per caller, half-way and at
the end, so growth during the workload shows apart from the imports, and a
leak apart from both.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING
from typing import Any

from bench.common import Settings
from bench.common import SimAddress
from bench.common import make_driver
from bench.common import quiet_logging

if TYPE_CHECKING:
    from bench.simproc import SimProcess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20
SECTION = "memory-nfs"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_bytes() -> int:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forked
    # copy of the parent across exec, so it would report the parent's size.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(mode: str, url: str, topology: dict[str, Any], password: str,
          sr_uuid: str, concurrency: int, cycles: int) -> dict[str, Any]:
    """The workload, in this (child) process; returns what it measured.

    The floor mode imports neither the driver nor its libraries.
    """
    from bench import workload
    from bench.floor import FloorClient

    closers: list[Any] = []
    if mode == "driver":
        drv = make_driver(SimAddress(url=url, topology=topology, password=password),
                          "nfs", SECTION, light=True)
        closers.append(drv.close)
        calls = [functools.partial(workload.driver_cycle, drv)] * concurrency
    elif mode == "floor":
        clients = [FloorClient(url, "root", password) for _ in range(concurrency)]
        closers.extend(fc.close for fc in clients)
        sr_ref = clients[0].sr_ref(sr_uuid)
        calls = [functools.partial(workload.floor_cycle, fc, sr_ref) for fc in clients]
    else:
        raise ValueError(mode)
    try:
        workload.run_callers(calls, cycles_each=1)
        after_setup = _rss_bytes()
        # Two halves: a leak shows as growth from the middle to the end.
        first = workload.run_callers(calls, cycles_each=cycles // 2)
        middle = _rss_bytes()
        second = workload.run_callers(calls, cycles_each=cycles - cycles // 2)
        return {"mode": mode, "concurrency": concurrency,
                "ops": first["ops"] + second["ops"],
                "rss_after_setup_mib": round(after_setup / MiB, 1),
                "rss_half_mib": round(middle / MiB, 1),
                "rss_end_mib": round(_rss_bytes() / MiB, 1),
                "peak_rss_mib": round(_peak_bytes() / MiB, 1)}
    finally:
        for close in closers:
            close()


def measure(sim: SimProcess, settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {"concurrency": settings.memory_concurrency,
                           "cycles_per_caller": settings.memory_cycles}
    # The SR both children use, made here so the floor child need not.
    setup = make_driver(sim, "nfs", SECTION)
    sr_uuid = setup.backend.sr_uuid
    setup.close()
    for mode in ("driver", "floor"):
        args = {"mode": mode, "url": sim.url, "topology": sim.topology,
                "password": sim.password, "sr_uuid": sr_uuid,
                "concurrency": settings.memory_concurrency, "cycles": settings.memory_cycles}
        proc = subprocess.run(
            [sys.executable, "-m", "bench.memory"], input=json.dumps(args),
            capture_output=True, text=True, cwd=ROOT, timeout=600,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)))
        if proc.returncode != 0:
            raise RuntimeError("memory child (%s) failed: %s" % (mode, proc.stderr[-3000:]))
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["ratio"] = round(out["driver"]["peak_rss_mib"] / out["floor"]["peak_rss_mib"], 3)
    return out


def main() -> int:
    argparse.ArgumentParser(description="bench memory child: reads its job as JSON "
                            "on stdin, prints its figures as JSON").parse_args()
    quiet_logging()
    job = json.load(sys.stdin)
    print(json.dumps(child(**job)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
