"""Run every part of the bench against one simulator and collect the results."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import calls
from bench import memory
from bench import overhead
from bench import scale
from bench import throughput
from bench.common import Settings
from bench.common import backends
from bench.simproc import SimProcess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "xensm_driver"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def run(settings: Settings, command: str = "python -m bench",
        log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure everything ``settings`` asks for; return the results dict."""
    say = log or (lambda message: None)
    started = datetime.datetime.now(datetime.UTC)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    results: dict[str, Any] = {}
    chosen = backends(settings.backends)
    with SimProcess(solidfire="solidfire" in chosen) as sim:
        parts: list[tuple[str, Callable[[], Any]]] = [
            ("calls", lambda: calls.measure(sim, chosen)),
            ("overhead", lambda: overhead.measure(sim, settings)),
            ("throughput", lambda: throughput.measure(sim, settings)),
            ("scale", lambda: scale.measure(sim, settings)),
            ("memory", lambda: memory.measure(sim, settings)),
        ]
        for name, part in parts:
            say("bench: %s ..." % name)
            t0 = time.perf_counter()
            results[name] = part()
            timings[name] = round(time.perf_counter() - t0, 1)
            say("bench: %s done in %.1f s" % (name, timings[name]))
    results["meta"] = {
        "command": command,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "git": _git(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "simulator": "xensm-sim in a child process, %d pool hosts" % 2,
        "backends": list(chosen),
        "seconds": round(time.perf_counter() - start, 1),
        "seconds_by_part": timings,
        "settings": {k: list(v) if isinstance(v, tuple) else v
                     for k, v in vars(settings).items()},
        "argv": sys.argv,
    }
    return results
