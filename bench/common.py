"""What every part of the bench shares: settings, drivers, objects, counting."""

from __future__ import annotations

import dataclasses
import logging
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import cast

from xensm_driver import identity

if TYPE_CHECKING:
    from bench.simproc import SimProcess
    from xensm_driver import driver as driver_mod

GiB = identity.GiB

#: The SM-native back ends, in table order.
SM_BACKENDS = ("nfs", "lvm", "lvmoiscsi", "lvmohba", "netapp", "equal")
#: Every back end the bench knows how to configure; those without an
#: installed entry point are left out (see :func:`backends`).
ALL_BACKENDS = SM_BACKENDS + ("solidfire",)


@dataclasses.dataclass
class Settings:
    """How much to measure. The defaults are the full run (``tox -e bench``)."""

    backends: tuple[str, ...] = ALL_BACKENDS
    concurrency: tuple[int, ...] = (1, 4, 16)
    latencies_ms: tuple[float, ...] = (0.0, 5.0)
    #: Seconds each throughput run keeps starting new cycles.
    duration: float = 3.0
    #: Throughput runs per configuration (the best is kept; driver and floor
    #: alternate, so both see the same machine).
    repeats: int = 2
    #: Also run the driver with a session pool as large as the callers at
    #: the largest concurrency (the default pool holds 4 sessions).
    matched_pool: bool = True
    scale_sizes: tuple[int, ...] = (10, 1000, 10000)
    #: Repetitions of each operation at each SR size (the median is kept).
    scale_repeats: int = 9
    #: Cycles each of the memory child's callers runs.
    memory_cycles: int = 10
    memory_concurrency: int = 16
    #: Verbs timed with XAPI stubbed out, per verb.
    overhead_repeats: int = 100

    @classmethod
    def quick(cls) -> Settings:
        """A seconds-long run for tests: every code path, tiny amounts."""
        return cls(concurrency=(1,), latencies_ms=(0.0,), duration=0.3, repeats=1,
                   matched_pool=False, scale_sizes=(10,), scale_repeats=2,
                   memory_cycles=2, memory_concurrency=2, overhead_repeats=5)


def backends(requested: tuple[str, ...]) -> tuple[str, ...]:
    """The requested back ends that are installed (have an entry point)."""
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group="xensm_driver.backends")}
    return tuple(b for b in requested if b in installed)


def quiet_logging() -> None:
    """Warnings only: taskflow's TRACE lines would cost more than the calls."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)


@dataclasses.dataclass
class SimAddress:
    """Where a running simulator is, for a process that did not start it."""

    url: str
    topology: dict[str, Any]
    password: str


def nfs_ini(sim: SimProcess | SimAddress, section: str, **extra: Any) -> str:
    """The ini ``tests.functional.base.backend_ini`` writes for an nfs back
    end, without importing the tests (and their test libraries) -- for the
    memory child, whose size must be the driver's alone. A test checks that
    the two agree.
    """
    from xensm_driver.cmd import simconfig

    values = simconfig.backend_section(section, "nfs", sim.url, "root", sim.password,
                                       sim.topology)
    values["xenapi_retry_backoff"] = "0.01"
    values.update({k: str(v) for k, v in extra.items()})
    return simconfig.render_ini({section: values})


def make_driver(sim: SimProcess | SimAddress, sr_type: str, section: str, *,
                light: bool = False, **extra: Any) -> driver_mod.XenAPISMDriver:
    """A set-up driver for ``sr_type`` on the simulator, as the tests build it.

    The ini comes from ``tests.functional.base`` (it needs only the
    simulator's ``url`` and ``topology``), so the bench runs the driver
    exactly as the functional tests do; ``light`` (nfs only) writes the same
    ini without importing the tests. Imported here, not at the top: a
    process that only runs the floor client (the memory baseline) must not
    load the driver.
    """
    from oslo_config import cfg

    from xensm_driver import config
    from xensm_driver import driver as driver_mod

    if light:
        if sr_type != "nfs":
            raise ValueError("light drivers are nfs only")
        ini = nfs_ini(sim, section, **extra)
    else:
        from tests.functional import base as test_base

        ini = test_base.backend_ini(cast(Any, sim), sr_type, section, **extra)
    # As tests.functional.base.configuration reads it.
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write(ini)
        f.flush()
        conf = cfg.ConfigOpts()
        conf([], default_config_files=[f.name])
    drv = driver_mod.XenAPISMDriver(configuration=config.Configuration([], section, conf))
    drv.do_setup(None)
    drv.check_for_setup_error()
    return drv


def pool_size(drv: driver_mod.XenAPISMDriver) -> int:
    """How many XAPI sessions the driver may hold at once."""
    return drv.pool.size if drv.pool is not None else 0


def new_volume(size_gb: int = 1) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "size": size_gb, "provider_id": None,
            "provider_location": None}


def new_snapshot(volume: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "volume": volume, "volume_size": volume["size"],
            "provider_id": None}


def server_calls(sim: SimProcess) -> dict[str, int]:
    """The simulator's per-method request counters (logins included)."""
    return {k: int(v) for k, v in sim.ctl.calls().items()
            if not k.startswith("http:")}


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    out = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    return {k: v for k, v in sorted(out.items()) if v}


class Counted:
    """Run one operation and count its requests on the simulator's side."""

    def __init__(self, sim: SimProcess) -> None:
        self.sim = sim

    def __call__(self, fn: Callable[[], Any]) -> tuple[Any, dict[str, int], float]:
        """``(result, {method: calls}, seconds)`` of ``fn()``."""
        self.sim.ctl.reset_calls()
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        return result, server_calls(self.sim), elapsed


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)
