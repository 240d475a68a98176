"""Several processes setting one back end up at once make its storage once.

Two cinder-volume services of one cluster (or two ``xensm`` hosts) may
start together. Each looks for the SR (on SolidFire: the account and the
pool's volume access group), and the one that finds nothing creates it:
without a lock shared by the processes, two of them find nothing and two SRs
(or two access groups, the second refused for an initiator already in the
first) are made. Here processes start on a signal, with every XAPI call
answering late so that their lookups overlap, and share the file lock
directory (outside Cinder the driver's locks are files; under Cinder they
are Cinder's coordination locks, tests/cinder/test_cinder_cluster.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import fixtures

from tests.functional import base

#: One process: build the driver, wait for the signal, set up, report.
CHILD = textwrap.dedent("""
    import json, os, sys, time
    from tests.functional import base
    from xensm_driver import driver as driver_mod
    ini_path, go, out = sys.argv[1:4]
    with open(ini_path) as f:
        drv = driver_mod.XenAPISMDriver(configuration=base.configuration(f.read()))
    open(out + ".ready", "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    drv.do_setup(None)
    backend = drv.backend
    target = backend.target
    found = {"sr": getattr(target, "sr_uuid", None),
             "vag": getattr(target, "vag_id", None),
             "account": getattr(target, "account_id", None)}
    drv.close()
    with open(out, "w") as f:
        json.dump(found, f)
""")

PROCESSES = 4


class ConcurrentSetupMixin:
    SR_TYPE = "nfs"

    def start_together(self: base.SimTestCase, **options: object) -> list[dict[str, object]]:
        tmp = self.useFixture(fixtures.TempDir()).path
        ini = os.path.join(tmp, "xensm.conf")
        with open(ini, "w") as f:
            f.write(base.backend_ini(self.sim, self.SR_TYPE,  # type: ignore[attr-defined]
                                     xensm_lock_path=os.path.join(tmp, "locks"), **options))
        go = os.path.join(tmp, "go")
        procs = []
        for n in range(PROCESSES):
            out = os.path.join(tmp, "out-%d.json" % n)
            procs.append((out, subprocess.Popen(
                [sys.executable, "-c", CHILD, ini, go, out], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT)))
        deadline = time.monotonic() + 120
        while not all(os.path.exists(out + ".ready") for out, _ in procs):
            self.assertLess(time.monotonic(), deadline, "processes not ready")
            self.assertEqual([], [p.returncode for _, p in procs if p.poll() is not None])
            time.sleep(0.02)
        self.control.set_latency(0.05)      # lookups overlap, as on a busy pool
        if self.SR_TYPE == "solidfire":     # and on a busy array
            self.sim.solidfire.control.inject_fault("*", latency=0.05, times=None)
        open(go, "w").close()
        results = []
        for out, proc in procs:
            output, _ = proc.communicate(timeout=120)
            self.assertEqual(0, proc.returncode, output.decode(errors="replace")[-4000:])
            with open(out) as f:
                results.append(json.load(f))
        self.control.set_latency(0.0)
        if self.SR_TYPE == "solidfire":
            self.sim.solidfire.control.clear_faults()
        return results


class TestConcurrentSetupSM(ConcurrentSetupMixin, base.SimTestCase):

    def test_processes_starting_at_once_make_one_sr_and_all_use_it(self) -> None:
        results = self.start_together()
        srs = [rec for rec in self.control.dump()["SR"].values()
               if rec["name_label"] == "xensm-xs"]
        self.assertEqual(1, len(srs), "SRs made by %d processes at once" % PROCESSES)
        self.assertEqual({srs[0]["uuid"]}, {r["sr"] for r in results})


class TestConcurrentSetupSolidFire(ConcurrentSetupMixin, base.SimTestCase):
    SR_TYPE = "solidfire"
    SIM_KWARGS = {"solidfire": True}

    def test_processes_starting_at_once_make_one_account_and_access_group(self) -> None:
        results = self.start_together()
        array = self.sim.solidfire.control.dump()
        groups = [g for g in array["volumeAccessGroups"]
                  if str(g["name"]).startswith("xensm-")]
        accounts = [a for a in array["accounts"] if str(a["username"]).endswith("-xs")]
        self.assertEqual((1, 1), (len(groups), len(accounts)),
                         "access groups %s, accounts %s" % (groups, accounts))
        self.assertEqual({(groups[0]["volumeAccessGroupID"], accounts[0]["accountID"])},
                         {(r["vag"], r["account"]) for r in results})
