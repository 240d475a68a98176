"""task.cancel: a running operation is asked to stop, and is cancelled
only once it has wound down (XAPI's 'cancelling' state)."""

from __future__ import annotations

import time

import XenAPI

from tests.functional import base
from xensm_driver.xapi.storage import Storage


class TestTaskCancel(base.SimTestCase):

    def setUp(self) -> None:
        super().setUp()
        self.session = XenAPI.Session(self.sim.url)
        self.session.login_with_password("root", base.PASSWORD, "1.0", "test")
        self.addCleanup(self.session.xenapi.session.logout)
        self.x = self.session.xenapi

    def wait_until(self, task: str, statuses: tuple[str, ...]) -> str:
        for _ in range(200):
            status = self.x.task.get_status(task)
            if status in statuses:
                return status
            time.sleep(0.02)
        return self.x.task.get_status(task)

    def test_running_task_reads_cancelling_until_its_work_ends(self) -> None:
        storage = Storage(self.pool())
        sr = self.nfs_sr(storage)
        src, dst = (storage.create_vdi(sr, 4 * base.MiB, n, {}) for n in ("src", "dst"))
        self.control.inject_fault("VDI.copy", hang=0.5)
        task = self.x.Async.VDI.copy(src, "OpaqueRef:NULL", "OpaqueRef:NULL", dst)
        self.x.task.cancel(task)
        self.assertEqual("cancelling", self.x.task.get_status(task))
        self.assertEqual("cancelled", self.wait_until(task, ("cancelled",)))
        self.assertEqual(["TASK_CANCELLED", task], self.x.task.get_error_info(task))

    def test_task_with_no_work_is_cancelled_at_once(self) -> None:
        task = self.x.task.create("client task", "")
        self.x.task.cancel(task)
        self.assertEqual("cancelled", self.x.task.get_status(task))
