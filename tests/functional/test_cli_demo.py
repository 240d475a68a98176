"""The README's main job: ``python -m xensm_driver.cmd.demo`` (what ``tox -e demo`` runs)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.functional import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xensm_driver.cmd.demo", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)


class DemoTest(base.oslotest_base.BaseTestCase):
    def test_the_demo_passes_end_to_end(self) -> None:
        proc = run_demo()
        self.assertEqual(0, proc.returncode, proc.stdout[-3000:] + proc.stderr[-3000:])
        out = proc.stdout
        for line in ("$ xensm check", "Back end demo-nfs: OK",
                     "$ xensm volume revert demo --snapshot before",
                     "# check 4 passed: volume from-before holds data A",
                     "├── snapshot before", "xensm: error: Refused: volume",
                     "Inventory and SR agree.", "No volumes."):
            self.assertIn(line, out)
        self.assertRegex(out.splitlines()[-1],
                         r"^DEMO PASSED: \d+ xensm commands, 4 content checks, in [\d.]+ s\.$")
        self.assertNotIn("Traceback", out + proc.stderr)


class DemoFailureTest(base.SimTestCase):
    def test_the_demo_fails_when_a_step_fails(self) -> None:
        # On a simulator of ours that refuses to make a VDI.
        self.control.inject_fault("VDI.create", error=["INTERNAL_ERROR", "injected"])
        proc = run_demo("--sim-url", self.sim.url)
        self.assertEqual(1, proc.returncode, proc.stdout[-3000:])
        self.assertIn("DEMO FAILED: 'xensm volume create --size 1 --name demo' exited 1, "
                      "expected 0", proc.stdout)
        self.assertNotIn("DEMO PASSED", proc.stdout)
        self.assertNotIn(base.PASSWORD, proc.stdout + proc.stderr)
