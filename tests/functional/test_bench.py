"""The bench (``tox -e bench``) at tiny scale, so its code cannot rot.

Runs every part of ``bench/`` once against its own ``xensm-sim`` child with
one caller, no latency and a 10-VDI SR, then checks the shape of the
results and the exact XAPI request counts. No time is asserted: timings
are only checked to exist.
"""

from __future__ import annotations

import json
import os
from typing import Any
from typing import cast

import testtools

from bench import calls
from bench import floor
from bench import report
from bench import suite
from bench import workload
from bench.common import SM_BACKENDS
from bench.common import Settings
from bench.common import SimAddress
from bench.common import nfs_ini
from tests.functional import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: What each verb costs through the driver on the SM-native back ends:
#: (VHD-chain back ends, array-snapshot back ends). The clones of a volume
#: that already has a snapshot read the chain depth first (one call more).
#: A create holds a claim on the SR (2 calls) and a copy marks its source
#: (2 calls), so that concurrent creates and lost answers converge.
DRIVER_CALLS = {
    "create_volume": (4, 4),
    "delete_volume": (2, 2),
    "extend_volume": (2, 2),
    "create_snapshot": (7, 7),
    "delete_snapshot": (2, 2),
    "create_cloned_volume": (8, 7),
    "create_volume_from_snapshot": (8, 7),
    "get_volume_stats": (3, 3),
    "initialize_connection": (1, 1),   # the VDI is verified by its tag
}
VHD_CHAIN = {"nfs", "lvm", "lvmoiscsi", "lvmohba"}
#: revert_to_snapshot swaps in a clone of the snapshot: (VHD, array) calls.
REVERT_CALLS = {"VDI.add_to_other_config": 1, "VDI.clone": 1, "VDI.set_name_label": 1,
                "VDI.set_other_config": 1, "VDI.get_record": 1,
                "VDI.remove_from_other_config": 1, "VDI.destroy": 1}
REVERT_LOOKUPS = (2, 1)     # both VDIs in one (and the chain's depth)


class TestBenchQuick(testtools.TestCase):

    results: dict[str, Any]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.results = suite.run(Settings.quick(), command="test")

    def test_every_part_is_there(self) -> None:
        self.assertEqual({"calls", "throughput", "scale", "memory", "overhead", "meta"},
                         set(self.results))
        self.assertEqual(set(SM_BACKENDS), set(self.results["meta"]["backends"])
                         & set(SM_BACKENDS))
        json.dumps(self.results)            # it must be writable as results.json
        text = report.render(self.results)
        for heading in ("XAPI requests per verb", "Throughput", "Scale", "Memory",
                        "overhead"):
            self.assertIn(heading, text)

    def test_calls_per_verb_are_exact(self) -> None:
        for sr_type in SM_BACKENDS:
            verbs = self.results["calls"][sr_type]
            self.assertEqual(set(floor.VERBS), set(verbs))
            for verb, (vhd, array) in DRIVER_CALLS.items():
                expected = vhd if sr_type in VHD_CHAIN else array
                self.assertEqual(expected, verbs[verb]["driver"], "%s %s" % (sr_type, verb))
            revert = dict(verbs["revert_to_snapshot"]["driver_methods"])
            lookups = REVERT_LOOKUPS[0] if sr_type in VHD_CHAIN else REVERT_LOOKUPS[1]
            self.assertEqual(dict(REVERT_CALLS, **{"VDI.get_all_records_where": lookups}),
                             revert, sr_type)
            if sr_type == "nfs":
                for verb in calls.SAME_CALLS_VERBS:
                    self.assertEqual(verbs[verb]["driver_methods"],
                                     verbs[verb]["same_calls_methods"], verb)
            for verb in floor.VERBS:
                where = "%s %s" % (sr_type, verb)
                self.assertEqual(floor.FLOOR[verb], verbs[verb]["floor"], where)
                self.assertNotIn("session.login_with_password",
                                 verbs[verb]["driver_methods"], where)
                self.assertEqual(floor.OLD_DRIVER[verb] if sr_type == "nfs" else None,
                                 verbs[verb]["old_driver"])

    def test_solidfire_counts_xapi_and_array_requests(self) -> None:
        if "solidfire" not in self.results["meta"]["backends"]:
            self.skipTest("no solidfire back end installed")
        for verb, entry in self.results["calls"]["solidfire"].items():
            self.assertIsNone(entry["floor"], verb)     # the SM floor does not apply
            self.assertEqual(entry["array"], sum(entry["array_methods"].values()), verb)
            self.assertNotIn("session.login_with_password", entry["driver_methods"], verb)
        self.assertGreater(self.results["calls"]["solidfire"]["create_volume"]["array"], 0)

    def test_throughput_compares_like_with_like(self) -> None:
        (row,) = self.results["throughput"]["rows"]
        self.assertEqual((0.0, 1), (row["latency_ms"], row["concurrency"]))
        driver, base = row["driver"], row["floor"]
        # A cycle: create 4, snapshot 7, clone 8 (chain read), 3 deletes of 2.
        self.assertEqual(round(25 / workload.OPS_PER_CYCLE, 2), driver["calls_per_op"])
        self.assertEqual(round(14 / workload.OPS_PER_CYCLE, 2), base["calls_per_op"])
        for run in (driver, base):
            self.assertEqual(0, run["ops"] % workload.OPS_PER_CYCLE)
            self.assertGreater(run["ops"], 0)
            self.assertGreater(run["client_cpu_ms_per_op"], 0)
        self.assertAlmostEqual(driver["ops_per_s"] / base["ops_per_s"], row["ratio"],
                               places=2)

    def test_scale_counts_are_flat(self) -> None:
        (point,) = self.results["scale"]["points"]
        self.assertEqual(10, point["vdis_on_sr"])
        expected = {"get_volume_stats": 3, "create_volume": 4, "delete_volume": 2,
                    "update_provider_info": 1, "floor_get_volume_stats": 1,
                    "floor_create_volume": 2, "floor_delete_volume": 2}
        self.assertEqual(expected, {k: point[k]["calls"] for k in expected})
        self.assertEqual(10, point["update_provider_info"]["volumes"])
        for verdict in self.results["scale"]["verdict"].values():
            self.assertTrue(verdict["calls_flat"])

    def test_memory_is_measured_in_children(self) -> None:
        mem = self.results["memory"]
        for mode in ("driver", "floor"):
            self.assertEqual(2 * 2 * workload.OPS_PER_CYCLE, mem[mode]["ops"])
            self.assertGreater(mem[mode]["peak_rss_mib"], 0)
            self.assertGreaterEqual(mem[mode]["peak_rss_mib"], mem[mode]["rss_end_mib"])

    def test_overhead_covers_the_workload_verbs(self) -> None:
        over = self.results["overhead"]
        self.assertEqual(set(over["driver_ms"]), set(over["plain_loop_ms"]))
        self.assertGreater(over["xapi_round_trip_ms"], 0)


class TestBenchDriverConfig(testtools.TestCase):

    def test_light_nfs_ini_is_the_tests_ini(self) -> None:
        sim = SimAddress(url="http://127.0.0.1:1", password=base.PASSWORD,
                         topology={"nfs": {"server": "127.0.0.10", "serverpath": "/x"}})
        self.assertEqual(base.backend_ini(cast(Any, sim), "nfs", "s",
                                          xenapi_connection_pool_size=3),
                         nfs_ini(sim, "s", xenapi_connection_pool_size=3))


class TestCommittedResults(testtools.TestCase):
    """bench/results.json is a full run, with every figure issue 9 asks for."""

    def test_committed_results_are_a_full_run(self) -> None:
        with open(os.path.join(ROOT, "bench", "results.json")) as f:
            results = json.load(f)
        full = Settings()
        settings = results["meta"]["settings"]
        self.assertEqual(list(full.concurrency), settings["concurrency"])
        self.assertEqual(list(full.latencies_ms), settings["latencies_ms"])
        self.assertEqual(list(full.scale_sizes), settings["scale_sizes"])
        self.assertEqual({(lat, c) for lat in full.latencies_ms for c in full.concurrency},
                         {(r["latency_ms"], r["concurrency"])
                          for r in results["throughput"]["rows"]})
        self.assertEqual(list(full.scale_sizes),
                         [p["vdis_on_sr"] for p in results["scale"]["points"]])
        for sr_type in SM_BACKENDS:
            self.assertEqual(set(floor.VERBS), set(results["calls"][sr_type]))
        report.render(results)
