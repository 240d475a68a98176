"""Several xensm processes at once share one inventory and one SR."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.functional import test_cli
from xensm_driver.cmd import xensm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ConcurrentProcessesTest(test_cli.CliTestCase):
    def test_parallel_creates_and_snapshots(self) -> None:
        base = self.j("volume", "create", "--size", "1", "--name", "base")

        def spawn(*args: str) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [sys.executable, "-m", "xensm_driver.cmd.xensm", "--config-file", self.conf,
                 "--json", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                cwd=ROOT)

        procs = [spawn("volume", "create", "--size", "1", "--name", "p%d" % i)
                 for i in range(2)]
        procs += [spawn("snapshot", "create", "base", "--name", "s%d" % i) for i in range(2)]
        made, refused = [], []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            if proc.returncode == xensm.EXIT_REFUSED:
                # One verb on one object at a time: a snapshot overlapping the
                # other snapshot of base is refused, and makes nothing.
                self.assertIn("is snapshotting", err)
                refused.append(proc)
                continue
            self.assertEqual(0, proc.returncode, err)
            made.append(json.loads(out))
        self.assertLessEqual(len(refused), 1)
        self.assertEqual(4 - len(refused), len({m["id"] for m in made}))
        self.assertEqual({"base", "p0", "p1"},
                         {v["name"] for v in self.j("volume", "list")})
        self.assertEqual({m["name"] for m in made if "volume_id" in m},
                         {s["name"] for s in self.j("snapshot", "list")})
        self.assertEqual("available", self.j("volume", "show", "base")["status"])
        made = [m["id"] for m in made]
        tags = set(self.tagged_vdis(self.storage()).values())
        self.assertTrue(set(made) | {base["id"]} <= tags)
        self.assertEqual(0, self.xensm("reconcile").code)
