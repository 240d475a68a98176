"""A ``xensm`` process killed in the middle of a create loses nothing.

The inventory records ``creating`` (with the process) before the driver's
first call, so after a SIGKILL the record says what was under way, reconcile
reports it with whatever reached the SR, and ``xensm volume delete`` cleans
up both -- whether the VDI was made before the kill or only after it (XAPI
runs a call whose caller has gone).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.functional import test_cli
from xensm_driver.cmd import xensm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class KillTestCase(test_cli.CliTestCase):
    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xensm_driver.cmd.xensm", "--config-file", self.conf,
             *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        self.addCleanup(self.reap, proc)
        return proc

    @staticmethod
    def reap(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        self.fail("timed out waiting for %s" % what)

    def fault_fired(self) -> bool:
        return any(f["fired"] for f in self.control.faults())

    def kill_create(self, ready: Callable[[], Any] | None = None
                    ) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
        proc = self.spawn("volume", "create", "--size", "1", "--name", "doomed")
        self.wait_for("the create to reach XAPI", self.fault_fired)
        if ready is not None:
            self.wait_for("the VDI to be made", ready)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (vol,) = self.j("volume", "list")
        self.assertEqual(("creating", "%d" % proc.pid),
                         (vol["status"], vol["owner"].rsplit(":", 1)[1]))
        self.assertIn("creating (interrupted)", self.xensm("volume", "list").out)
        return vol, proc

    def interrupted(self, vol: dict[str, Any]) -> dict[str, Any]:
        report = self.xensm("reconcile", "--json", expect=xensm.EXIT_DRIFT).json
        (finding,) = report["findings"]
        self.assertEqual(("interrupted", "volume", vol["id"]),
                         (finding["kind"], finding["object"], finding["id"]))
        return dict(finding)

    def clean_up(self, vol: dict[str, Any]) -> None:
        # The record blocks nothing but itself: other volumes work meanwhile.
        self.j("volume", "create", "--size", "1", "--name", "bystander")
        self.xensm("snapshot", "create", "doomed", expect=xensm.EXIT_REFUSED)
        self.xensm("volume", "delete", "doomed")
        self.assertEqual("deleted", self.j("volume", "show", vol["id"])["status"])
        self.assertNotIn(vol["id"], self.tagged_vdis(self.storage()).values())
        self.assertEqual(xensm.EXIT_OK, self.xensm("reconcile").code)


class KillAfterTheVdiWasMadeTest(KillTestCase):
    def test_killed_while_waiting_for_the_answer(self) -> None:
        # XAPI makes the VDI, then sits on the answer.
        self.control.inject_fault("VDI.create", hang=30)
        drv = self.storage()
        vol, _proc = self.kill_create(ready=lambda: self.tagged_vdis(drv))
        (vdi_uuid,) = [u for u, tag in self.tagged_vdis(drv).items() if tag == vol["id"]]
        finding = self.interrupted(vol)
        self.assertEqual(vdi_uuid, finding["vdi_uuid"])
        self.assertIn("VDI %s is on the SR" % vdi_uuid, finding["detail"])
        self.assertIn("xensm volume delete %s" % vol["id"], finding["action"])
        # reconcile --delete-orphans leaves it alone: it is recorded.
        self.xensm("reconcile", "--delete-orphans", "--yes", expect=xensm.EXIT_DRIFT)
        self.assertIn(vdi_uuid, self.tagged_vdis(drv))
        self.clean_up(vol)


class KillBeforeTheVdiWasMadeTest(KillTestCase):
    #: How long after the request XAPI runs it: after the client died, and
    #: after the test has looked (a slower inventory wants longer).
    LATENCY = 3

    def test_killed_before_xapi_ran_the_call(self) -> None:
        # The request is in, XAPI runs it LATENCY s later: after the client died.
        self.control.inject_fault("VDI.create", latency=self.LATENCY)
        vol, _proc = self.kill_create()
        finding = self.interrupted(vol)
        self.assertIsNone(finding["vdi_uuid"])
        self.assertIn("no VDI on the SR", finding["detail"])
        drv = self.storage()
        self.wait_for("XAPI to run the orphaned call",
                      lambda: vol["id"] in self.tagged_vdis(drv).values())
        finding = self.interrupted(vol)
        self.assertIn("is on the SR", finding["detail"])
        self.clean_up(vol)
