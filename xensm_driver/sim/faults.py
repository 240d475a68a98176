"""Call counters and fault injection for the simulator's control plane."""

from __future__ import annotations

import threading
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

DROPS = (None, 'before', 'after')


@dataclass
class Fault:
    """Make calls of ``method`` misbehave.

    The ``nth`` matching call after injection (1 = the next one) and the
    ``times - 1`` after it fail with ``error`` (an ErrorDescription list)
    instead of running, and/or sleep ``latency`` seconds before running,
    and/or run and then wait ``hang`` seconds before answering (an async
    task stays pending that long; a data-path request waits before
    starting), and/or lose the connection (``drop='before'``: nothing runs;
    ``'after'``: the call runs, its answer is lost).  ``after_bytes`` makes
    a data-path transfer break after that many bytes.  ``method`` is a dotted XAPI name
    (``VDI.create``, ``Async.VDI.copy``), ``http:import_raw_vdi`` /
    ``http:export_raw_vdi``, or ``*`` for every XAPI call.
    """

    id: int
    method: str
    error: list[str] | None = None
    nth: int = 1
    times: int = 1
    latency: float | None = None
    drop: str | None = None
    hang: float | None = None
    after_bytes: int | None = None
    seen: int = 0
    fired: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultBox:
    """Thread-safe call counters and the list of injected faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}
        self._faults: list[Fault] = []
        self._next_id = 1
        self.latency = 0.0

    def count(self, method: str) -> None:
        with self._lock:
            self._calls[method] = self._calls.get(method, 0) + 1

    def calls(self) -> dict[str, int]:
        with self._lock:
            return dict(self._calls)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def inject(self, method: str, error: list[str] | None = None,
               nth: int = 1, times: int = 1, latency: float | None = None,
               drop: str | None = None, hang: float | None = None,
               after_bytes: int | None = None) -> Fault:
        if drop not in DROPS:
            raise ValueError("drop must be 'before' or 'after'")
        if nth < 1 or times < 1:
            raise ValueError('nth and times must be >= 1')
        if error is not None:
            error = [str(x) for x in error]
            if not error:
                raise ValueError('error must name a code')
        with self._lock:
            f = Fault(self._next_id, method, error, int(nth), int(times),
                      latency, drop, hang, after_bytes)
            self._next_id += 1
            self._faults.append(f)
            return f

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._faults]

    def match(self, method: str) -> Fault | None:
        """The fault that fires for this call of ``method``, if any."""
        with self._lock:
            fired = None
            for f in self._faults:
                if f.method not in (method, '*'):
                    continue
                if f.method == '*' and method.startswith('http:'):
                    continue
                if f.fired >= f.times:
                    continue
                f.seen += 1
                if f.seen >= f.nth and fired is None:
                    f.fired += 1
                    fired = f
            return fired
