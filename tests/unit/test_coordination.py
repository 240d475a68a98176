"""The driver's named locks: files outside Cinder, a coordinator's when given one.

Under Cinder they are Cinder's coordination (tooz) locks: that path runs in
tests/cinder/test_cinder_cluster.py, on Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import fixtures
import testtools

from xensm_driver import coordination
from xensm_driver import driver as driver_mod

#: A second process: take the lock, say so, hold it until told to let go.
CHILD = textwrap.dedent("""
    import os, sys, time
    from xensm_driver import coordination
    lock_path, tmp = sys.argv[1:3]
    open(os.path.join(tmp, "trying"), "w").close()
    with coordination.Locks(lock_path=lock_path).lock("xensm-sr-x"):
        open(os.path.join(tmp, "got"), "w").close()
""")


class _FakeLock:
    def __init__(self, log: list[str], name: bytes) -> None:
        self.log, self.name = log, name

    def acquire(self, blocking: bool = True) -> bool:
        self.log.append("acquire %s" % self.name.decode())
        return True

    def release(self) -> bool:
        self.log.append("release %s" % self.name.decode())
        return True


class _FakeCoordinator:
    """What a started tooz coordinator offers the driver: get_lock(bytes)."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def get_lock(self, name: bytes) -> _FakeLock:
        assert isinstance(name, bytes)
        return _FakeLock(self.log, name)


class TestLocks(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.lock_path = os.path.join(self.tmp, "locks")

    def test_names_are_ascii_and_safe_as_file_names(self) -> None:
        self.assertEqual("xensm-sr-xensm-my%20sr%2fa%c3%a9",
                         coordination.lock_name("xensm", "sr", "xensm-my sr/aé"))
        self.assertEqual("xensm-volume-0b5c-11", coordination.volume_lock("0b5c-11"))

    def test_a_file_lock_excludes_another_process_until_released(self) -> None:
        locks = coordination.Locks(lock_path=self.lock_path)
        got = os.path.join(self.tmp, "got")
        with locks.lock("xensm-sr-x"):
            child = subprocess.Popen([sys.executable, "-c", CHILD, self.lock_path, self.tmp])
            self.addCleanup(child.wait, 30)
            deadline = time.monotonic() + 30
            while not os.path.exists(os.path.join(self.tmp, "trying")):
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.01)
            time.sleep(0.5)       # time for the child to take the lock, were it free
            self.assertFalse(os.path.exists(got), "the other process got a held lock")
        self.assertEqual(0, child.wait(timeout=30))
        self.assertTrue(os.path.exists(got))

    def test_object_locks_are_no_op_without_a_coordinator(self) -> None:
        # Outside Cinder the inventory claims each object; no file per volume.
        locks = coordination.Locks(lock_path=self.lock_path)
        self.assertEqual("file", locks.backend())
        with locks.object_lock(coordination.volume_lock("v1")):
            pass
        self.assertFalse(os.path.exists(os.path.join(self.lock_path, "xensm-volume-v1")))

    def test_a_given_coordinator_takes_every_lock_by_its_ascii_name(self) -> None:
        coordinator = _FakeCoordinator()
        locks = coordination.Locks(coordinator, lock_path=self.lock_path)
        self.assertEqual("tooz", locks.backend())
        with locks.object_lock(coordination.snapshot_lock("s1")):
            coordinator.log.append("inside")
        with locks.lock("xensm-sr-x"):
            pass
        self.assertEqual(["acquire xensm-snapshot-s1", "inside", "release xensm-snapshot-s1",
                          "acquire xensm-sr-x", "release xensm-sr-x"], coordinator.log)
        self.assertFalse(os.path.exists(self.lock_path))

    def test_clean_volume_file_locks_removes_that_volumes_lock_files(self) -> None:
        locks = coordination.Locks(lock_path=self.lock_path)
        for name in ("xensm-volume-v1", "xensm-volume-v2", "xensm-snapshot-s1"):
            with locks.lock(name):
                pass
        driver_mod.XenAPISMDriver.clean_volume_file_locks("v1")
        driver_mod.XenAPISMDriver.clean_snapshot_file_locks("s1")
        self.assertEqual(["xensm-volume-v2"], sorted(os.listdir(self.lock_path)))
