"""Named locks that every process running one back end agrees on.

Several cinder-volume services may run one back end as a cluster
(active-active), and several ``xensm`` processes may share one back end, so
a lock the driver takes must exclude the other processes, never only the
threads of its own. :class:`Locks` hands out such locks by name:

* under Cinder, from Cinder's own coordinator
  (``cinder.coordination.COORDINATOR``: tooz on the ``[coordination]
  backend_url``, e.g. Redis, etcd or files), which cinder-volume starts
  before it sets the driver up. Cinder is looked up in ``sys.modules`` at
  the moment a lock is taken and never imported here, so the driver stays
  importable without Cinder;
* from a tooz coordinator the caller started and hands over;
* otherwise from files in ``lock_path`` (``flock``; every process and
  thread that opens the file is excluded, on one host).

The driver takes few locks: the claims of concurrent creates and the marks
on copied VDIs live in XAPI's own records (``SR.add_to_other_config`` is a
compare-and-set the whole pool agrees on, see ``flows/common.py``), which a
killed process cannot leave held beyond their lease. A lock here guards
what XAPI or the array cannot: finding or creating a back end's SR, access
group and account at setup, and (under a coordinator) one verb at a time
on one volume or snapshot, so Cinder's cleanup redoing a verb never runs
beside a service still doing it. A tooz lock whose holder is killed expires with it (Redis:
the key's TTL, kept alive by the coordinator's heartbeat); a file lock is
released by the kernel when its holder dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

from oslo_log import log as logging

from xensm_driver import exception

LOG = logging.getLogger(__name__)

#: Lock directories of this process's file locks, for clean_*_file_locks
#: (Cinder calls those as classmethods, without a driver instance).
_FILE_LOCK_DIRS: set[str] = set()

_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]")


def lock_name(*parts: str) -> str:
    """A lock name from ``parts``: ASCII (tooz encodes names as ASCII), safe
    as a file name; other characters become ``%xx``."""
    return "-".join(_UNSAFE.sub(lambda m: "".join("%%%02x" % b for b in m.group().encode()),
                                str(p)) for p in parts)


def volume_lock(volume_id: str) -> str:
    return lock_name("xensm", "volume", volume_id)


def snapshot_lock(snapshot_id: str) -> str:
    return lock_name("xensm", "snapshot", snapshot_id)


def default_lock_path() -> str:
    """``$XDG_STATE_HOME/xensm/locks`` (``~/.local/state/xensm/locks``)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "xensm", "locks")


def cinder_coordinator() -> Any:
    """Cinder's started coordinator when this process is a Cinder service,
    else None. Never imports Cinder."""
    module = sys.modules.get("cinder.coordination")
    coordinator = getattr(module, "COORDINATOR", None) if module else None
    if coordinator is not None and getattr(coordinator, "started", False):
        return coordinator
    return None


class Locks:
    """Named inter-process locks (see the module doc).

    ``coordinator``: a started tooz coordinator, or an object with
    ``get_lock(name)`` as Cinder's is; None to use Cinder's when running
    under Cinder and files in ``lock_path`` otherwise.
    """

    def __init__(self, coordinator: Any = None, lock_path: str | None = None) -> None:
        self._coordinator = coordinator
        self.lock_path = lock_path or default_lock_path()

    def backend(self) -> str:
        """Which kind of lock :meth:`lock` takes now: for logs and tests."""
        if self._coordinator is not None:
            return "tooz"
        if cinder_coordinator() is not None:
            return "cinder"
        return "file"

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the lock called ``name`` (blocking until it is free)."""
        coordinator = self._coordinator or cinder_coordinator()
        if coordinator is None:
            with self._file_lock(name):
                yield
            return
        # Cinder's get_lock takes text and adds its prefix; tooz's takes bytes.
        tooz_lock = coordinator.get_lock(
            name.encode("ascii") if coordinator is self._coordinator else name)
        LOG.debug("Taking lock %s", name)
        tooz_lock.acquire(blocking=True)
        try:
            yield
        finally:
            try:
                tooz_lock.release()
            except Exception as exc:  # noqa: BLE001 - tooz drivers raise their own kinds
                # The verb is done; a lock that cannot be released expires
                # with its lease (tooz backends that have none: files,
                # released when the process exits).
                LOG.warning("Could not release lock %s: %s", name, exc)

    def object_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """The lock of one volume or snapshot; a no-op outside a coordinator.

        Outside Cinder the ``xensm`` inventory already claims each object in
        its database (one verb on one object at a time, across hosts), so a
        lock file per object would only duplicate that and pile up files.
        """
        if self._coordinator is None and cinder_coordinator() is None:
            return contextlib.nullcontext()
        return self.lock(name)

    @contextlib.contextmanager
    def _file_lock(self, name: str) -> Iterator[None]:
        try:
            os.makedirs(self.lock_path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise exception.ConfigError(
                option="xensm_lock_path",
                reason="cannot create lock directory %s (%s)" % (self.lock_path, exc)
            ) from None
        _FILE_LOCK_DIRS.add(self.lock_path)
        path = os.path.join(self.lock_path, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)        # releases the flock


def remove(name_glob: str) -> None:
    """Remove the lock files named ``name_glob`` left by file locks: this
    process's lock directories and Cinder's coordinator when it keeps
    files (tooz ``file://``; other tooz backends remove a lock on
    release). After a volume or snapshot is deleted, nothing locks it any
    more."""
    for lock_dir in list(_FILE_LOCK_DIRS):
        for path in glob.glob(os.path.join(lock_dir, name_glob)):
            try:
                os.remove(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    LOG.warning("Could not remove lock file %s: %s", path, exc)
    coordinator = cinder_coordinator()
    if coordinator is not None:
        # Cinder's remove_lock globs under its file:// path (with its
        # prefix) and does nothing for other backends.
        coordinator.remove_lock(name_glob)
