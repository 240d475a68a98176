"""Scheduled snapshots against the simulator: one per period, retention, the
back end's limit, failures, several processes on one inventory, --forever.

Time is a fake clock handed to the Scheduler (or ``--now`` to the command);
nothing here sleeps to wait for a period.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import signal
import socket
import threading
from typing import Any

import fixtures

from tests.functional import base
from tests.functional import test_cli
from tests.functional import test_inventory_servers
from xensm_driver.service import inventory
from xensm_driver.service import models
from xensm_driver.service import schedule
from xensm_driver.service.manager import Manager
from xensm_driver.service.models import GroupSnapshot
from xensm_driver.service.models import ScheduleRun
from xensm_driver.service.models import Snapshot

HOUR = datetime.timedelta(hours=1)
T0 = datetime.datetime(2026, 11, 28, 10, 0, 0)
INJECTED = ["INTERNAL_ERROR", "fault injected by the test"]


class Clock:
    """A fake clock: ``now`` moves only when the test says."""

    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, delta: datetime.timedelta) -> None:
        self.now += delta


class ScheduleTestCase(test_cli.CliTestCase):
    EXTRA: dict[str, Any] = {}

    def setUp(self) -> None:
        super().setUp()
        if self.EXTRA:
            self.conf = self.write_config(base.backend_ini(
                self.sim, self.SR_TYPE, section=self.SECTION, **self.EXTRA))
        self.clock = Clock(T0 + datetime.timedelta(minutes=7))
        self.mgr = Manager([self.conf], db_url=self.db_url)
        self.addCleanup(self.mgr.close)
        self.sch = schedule.Scheduler(self.mgr, clock=self.clock)

    def volume(self, name: str = "v", size: int = 1) -> str:
        return str(self.mgr.create_volume(size, name=name).id)

    def write(self, volume: str, tag: str) -> None:
        data = base.pattern(tag, 2 * base.MiB)
        self.mgr.upload(volume, io.BytesIO(data), len(data))

    def live_snapshots(self, volume: str) -> list[Snapshot]:
        return self.mgr.inventory.snapshots(volume_id=volume)

    def sched_snapshot_ids(self, sched: Any) -> list[str]:
        return [str(r.made_id) for r in self.sch.live_made(sched)]

    def tagged_snapshot_vdis(self) -> set[str]:
        drv = self.mgr.driver()
        return {vdi.other_config["xensm-snapshot-id"]
                for vdi in drv.backend.storage.sr_vdis(drv.backend.sr_ref)
                if vdi.managed and "xensm-snapshot-id" in vdi.other_config}


class TestCreate(ScheduleTestCase):
    def test_create_validates_before_recording(self) -> None:
        vol = self.volume()
        for args, text in (
                (("--every", "1x", "--keep", "3"), "not a duration"),
                (("--every", "30s", "--keep", "3"), "shorter than a minute"),
                # nfs: chain limit 28 -> 27 snapshots; keep + 1 must fit.
                (("--every", "1h", "--keep", "27"), "use --keep 26 or less")):
            result = self.xensm("schedule", "create", vol, *args, expect=5)
            self.assertIn(text, result.err)
        self.assertEqual(2, self.xensm("schedule", "create", vol, "--every", "1h", "--keep",
                                       "0", expect=None).code)
        result = self.xensm("schedule", "create", "nosuch", "--every", "1h", "--keep", "3",
                            expect=4)
        self.assertIn("nosuch", result.err)
        self.assertEqual([], self.sch.schedules())

    def test_create_list_show_delete(self) -> None:
        vol = self.volume()
        made = self.j("schedule", "create", vol, "--every", "1h30m", "--keep", "26",
                      "--name", "hourly")
        self.assertEqual(("volume", vol, 5400, 26), (
            made["target_kind"], made["target_id"], made["every_s"], made["keep"]))
        listed = self.j("schedule", "list")
        self.assertEqual([("hourly", "1h30m", 0)],
                         [(s["name"], s["every"], s["snapshots"]) for s in listed])
        out = self.xensm("schedule", "list").out
        self.assertIn("hourly", out)
        self.assertIn("volume %s" % vol, out)
        self.xensm("schedule", "create", vol, "--every", "1h", "--keep", "2",
                   "--name", "hourly", expect=5)
        self.xensm("schedule", "delete", "hourly")
        self.assertEqual([], self.j("schedule", "list"))
        self.assertEqual(["deleted"], [s["status"] for s in self.j("schedule", "list",
                                                                   "--all")])


class TestRun(ScheduleTestCase):
    def test_one_snapshot_per_period_and_the_newest_kept(self) -> None:
        vol = self.volume()
        by_hand = self.mgr.create_snapshot(vol, name="by-hand")
        sched = self.sch.create(vol, "1h", 2, name="hourly")

        first = self.sch.run_due()
        self.assertEqual(["taken"], [r.action for r in first])
        # Again in the same period, and later in it: nothing.
        self.assertEqual(["not due"], [r.action for r in self.sch.run_due()])
        self.clock.advance(datetime.timedelta(minutes=52))
        self.assertEqual(["not due"], [r.action for r in self.sch.run_due()])
        self.assertEqual(2, len(self.live_snapshots(vol)))

        taken = [first[0].made_id]
        for _ in range(3):
            self.clock.advance(HOUR)
            (result,) = self.sch.run_due()
            self.assertEqual("taken", result.action)
            taken.append(result.made_id)
        # Oldest first, down to keep; the snapshot made by hand stays.
        self.assertEqual(taken[2:], self.sched_snapshot_ids(sched))
        self.assertEqual(sorted([by_hand.id, *taken[2:]]),
                         sorted(s.id for s in self.live_snapshots(vol)))
        self.assertEqual(sorted([by_hand.id, *taken[2:]]),
                         sorted(self.tagged_snapshot_vdis()))
        for gone in taken[:2]:
            self.assertEqual("deleted", self.mgr.inventory.get(Snapshot, gone).status)
        names = [self.mgr.inventory.get(Snapshot, i).name for i in taken]
        self.assertEqual(["hourly-20261128T%02d00Z" % h for h in (10, 11, 12, 13)], names)

    def test_missed_runs_take_one_catch_up_snapshot(self) -> None:
        vol = self.volume()
        sched = self.sch.create(vol, "15m", 10)
        self.assertEqual("taken", self.sch.run_due()[0].action)
        self.clock.advance(5 * HOUR)       # twenty periods nobody ran
        (result,) = self.sch.run_due()
        self.assertEqual(("taken", 19), (result.action, result.missed))
        self.assertEqual(2, len(self.sched_snapshot_ids(sched)))
        self.assertEqual(["not due"], [r.action for r in self.sch.run_due()])

    def test_a_failed_snapshot_frees_its_period_and_changes_nothing(self) -> None:
        vol = self.volume()
        self.sch.create(vol, "1h", 3)
        drv = self.mgr.driver()
        before = {v.uuid for v in drv.backend.storage.sr_vdis(drv.backend.sr_ref)}
        self.control.inject_fault("VDI.snapshot", INJECTED)
        (result,) = self.sch.run_due()
        self.assertEqual("failed", result.action)
        self.assertIn("fault injected", result.error or "")
        self.assertEqual(before, {v.uuid for v in drv.backend.storage.sr_vdis(
            drv.backend.sr_ref)})
        # The error record the failed create left is deleted: no stray snapshot.
        self.assertEqual([], self.live_snapshots(vol))
        sched = self.sch.schedules()[0]
        self.assertIn("fault injected", sched.last_error or "")
        self.assertIsNone(sched.owner)
        self.assertEqual([], self.sch.runs(sched.id))
        # The next run, in the same period, takes it.
        (result,) = self.sch.run_due()
        self.assertEqual("taken", result.action)
        self.assertIsNone(self.sch.schedules()[0].last_error)

    def test_a_failed_retention_delete_is_retried_by_the_next_run(self) -> None:
        vol = self.volume()
        sched = self.sch.create(vol, "1h", 1)
        self.sch.run_due()
        self.clock.advance(HOUR)
        self.control.inject_fault("VDI.destroy", INJECTED)
        (result,) = self.sch.run_due()
        self.assertEqual("taken", result.action)
        self.assertIn("retention could not delete", result.error or "")
        self.assertEqual([], result.pruned)
        self.assertEqual(2, len(self.sched_snapshot_ids(sched)))
        # The failed delete left its snapshot in error_deleting; the next
        # period's run deletes it and the one it replaces.
        self.clock.advance(HOUR)
        (result,) = self.sch.run_due()
        self.assertEqual(2, len(result.pruned))
        self.assertEqual([result.made_id], self.sched_snapshot_ids(sched))
        self.assertEqual({result.made_id}, self.tagged_snapshot_vdis())

    def test_a_deleted_schedule_takes_nothing_and_its_snapshots_stay(self) -> None:
        vol = self.volume()
        self.sch.create(vol, "1h", 3, name="h")
        self.sch.run_due()
        self.sch.delete("h")
        self.clock.advance(HOUR)
        self.assertEqual([], self.sch.run_due())
        self.assertEqual(1, len(self.live_snapshots(vol)))

    def test_a_deleted_target_fails_each_run_and_says_what_to_do(self) -> None:
        vol = self.volume()
        sched = self.sch.create(vol, "1h", 3)
        self.mgr.delete_volume(vol)
        (result,) = self.sch.run_due()
        self.assertEqual("failed", result.action)
        self.assertIn("xensm schedule delete %s" % sched.id, result.error or "")
        self.assertEqual([], self.sch.runs(sched.id))
        result = self.xensm("schedule", "run", expect=1)
        self.assertIn("is deleted", result.out)

    def test_a_run_in_progress_elsewhere_holds_the_schedule_for_a_lease(self) -> None:
        vol = self.volume()
        sched = self.sch.create(vol, "15m", 3)
        self.sch.run_due()
        # Another host's run of an earlier period started ten minutes ago and
        # has not finished (this host cannot tell whether it still runs).
        self.mgr.inventory.update(type(sched), sched.id, owner="elsewhere:1",
                                  run_started_at=self.clock() - datetime.timedelta(
                                      minutes=10))
        self.clock.advance(datetime.timedelta(minutes=15))
        self.assertEqual(["running elsewhere"], [r.action for r in self.sch.run_due()])
        self.assertIn("running (elsewhere:1)", self.xensm(
            "schedule", "list").out)
        self.clock.advance(schedule.RUN_LEASE)
        self.assertEqual(["taken"], [r.action for r in self.sch.run_due()])
        self.assertIsNone(self.sch.schedules()[0].owner)

    def test_what_a_killed_run_made_is_adopted_and_kept_in_count(self) -> None:
        vol = self.volume()
        sched = self.sch.create(vol, "1h", 1)
        dead = "%s:%d" % (socket.gethostname(), 2 ** 22 + 7)   # no such pid
        period = schedule.period_of(sched.anchor_at, sched.every_s, self.clock())
        # A run claimed this period and made its snapshot, then was killed.
        self.mgr.inventory.add(ScheduleRun(id=inventory.new_id(), schedule_id=sched.id,
                                           period=period, status="taking", owner=dead))
        made = self.mgr.create_snapshot(vol, name=self.sch.snapshot_name(sched, period))
        # Another killed run claimed the period before and made nothing.
        self.mgr.inventory.add(ScheduleRun(id=inventory.new_id(), schedule_id=sched.id,
                                           period=period - 1, status="taking", owner=dead))
        self.assertEqual(["not due"], [r.action for r in self.sch.run_due()])
        self.clock.advance(HOUR)
        (result,) = self.sch.run_due()
        self.assertEqual(("taken", [made.id]), (result.action, result.pruned))
        self.assertEqual([result.made_id], [s.id for s in self.live_snapshots(vol)])
        self.assertEqual([period, period + 1], [r.period for r in self.sch.runs(sched.id)])

    def test_delete_with_its_snapshots(self) -> None:
        vol = self.volume()
        by_hand = self.mgr.create_snapshot(vol)
        self.sch.create(vol, "1h", 3, name="h")
        self.sch.run_due()
        self.clock.advance(HOUR)
        self.sch.run_due()
        self.xensm("schedule", "delete", "h", "--delete-snapshots")
        self.assertEqual([by_hand.id], [s.id for s in self.live_snapshots(vol)])

    def test_the_command_with_now(self) -> None:
        vol = self.volume(name="data")
        self.xensm("schedule", "create", "data", "--every", "1d", "--keep", "2",
                   "--name", "daily")
        days = ["2026-11-2%dT03:00:00Z" % d for d in (1, 2, 3)]
        made = []
        for day in days:
            (result,) = self.j("schedule", "run", "--now", day)
            self.assertEqual("taken", result["action"])
            made.append(result["made_id"])
            (again,) = self.j("schedule", "run", "--now", day)
            self.assertEqual("not due", again["action"])
        self.assertEqual(made[1:], [s["id"] for s in self.j("snapshot", "list", "--volume",
                                                           vol)])
        text = self.xensm("schedule", "run", "--now", "2026-11-24T00:00:00Z").out
        self.assertIn("took", text)
        self.assertIn("deleted the oldest: %s" % made[1], text)
        shown = self.j("schedule", "show", "daily")
        self.assertEqual(["pruned", "pruned", "taken", "taken"],
                         [r["status"] for r in shown["runs"]])
        result = self.xensm("schedule", "run", "--now", "yesterday", expect=None)
        self.assertEqual(2, result.code)
        self.assertIn("not an ISO 8601 time", result.err)

    def test_a_group_schedule_takes_group_snapshots(self) -> None:
        a, b = self.volume("a"), self.volume("b")
        group = self.mgr.create_group("g", [a, b])
        sched = self.sch.create("g", "1h", 1)
        self.assertEqual("group", sched.target_kind)
        first = self.sch.run_due()[0].made_id
        self.clock.advance(HOUR)
        second = self.sch.run_due()[0].made_id
        self.assertEqual([second], self.sched_snapshot_ids(sched))
        self.assertEqual("deleted", self.mgr.inventory.get(GroupSnapshot, first).status)
        self.assertEqual([second], [g.id for g in self.mgr.inventory.group_snapshots(
            group.id)])
        self.assertEqual(2, len(self.mgr.inventory.snapshots(group_snapshot_id=second)))
        self.assertEqual(2, len(self.tagged_snapshot_vdis()))


class TestChainLimit(ScheduleTestCase):
    """An nfs SR with a VHD chain limit of 4: three snapshots with writes
    between them fill a volume's chain."""

    EXTRA = {"xensm_snapshot_chain_limit": 4}

    def test_the_oldest_scheduled_snapshot_makes_room(self) -> None:
        vol = self.volume()
        self.write(vol, "0")
        by_hand = self.mgr.create_snapshot(vol, name="by-hand")
        sched = self.sch.create(vol, "1h", 2)
        for i in range(2):
            self.write(vol, str(i + 1))
            self.assertEqual("taken", self.sch.run_due()[0].action)
            self.clock.advance(HOUR)
        oldest = self.sched_snapshot_ids(sched)[0]
        self.write(vol, "3")
        # The chain is full; the coalesce after a delete is held.
        self.control.pause_gc(True)
        (result,) = self.sch.run_due()
        self.assertEqual("failed", result.action)
        self.assertEqual([oldest], result.pruned)
        self.assertIn("coalesced", result.error or "")
        self.assertEqual("deleted", self.mgr.inventory.get(Snapshot, oldest).status)
        # The coalesce shortens the chain; the next run takes the period.
        self.control.pause_gc(False)
        self.control.wait_gc()
        (result,) = self.sch.run_due()
        self.assertEqual("taken", result.action)
        self.assertEqual(sorted([by_hand.id, *self.sched_snapshot_ids(sched)]),
                         sorted(s.id for s in self.live_snapshots(vol)))
        self.assertEqual(2, len(self.sched_snapshot_ids(sched)))

    def test_keep_must_leave_room_in_the_chain(self) -> None:
        vol = self.volume()
        result = self.xensm("schedule", "create", vol, "--every", "1h", "--keep", "3",
                            expect=5)
        self.assertIn("use --keep 2 or less", result.err)


class TestSolidFireLimit(ScheduleTestCase):
    """SolidFire refuses a fourth snapshot here: the oldest scheduled one goes
    first (Element deletes at once, so the retry succeeds)."""

    SR_TYPE = "solidfire"
    EXTRA = {"xensm_solidfire_snapshot_limit": 3}

    def setUp(self) -> None:
        self.SIM_KWARGS = {"solidfire": True, "supplemental_packs": ("relvmoiscsi",)}
        super().setUp()

    def test_the_oldest_scheduled_snapshot_makes_room(self) -> None:
        vol = self.volume()
        by_hand = self.mgr.create_snapshot(vol, name="by-hand")
        sched = self.sch.create(vol, "1h", 2)
        for _ in range(2):
            self.assertEqual("taken", self.sch.run_due()[0].action)
            self.clock.advance(HOUR)
        oldest = self.sched_snapshot_ids(sched)[0]
        (result,) = self.sch.run_due()
        self.assertEqual("taken", result.action)
        self.assertEqual([oldest], result.pruned)
        live = self.sched_snapshot_ids(sched)
        self.assertEqual(2, len(live))
        self.assertEqual(sorted([by_hand.id, *live]),
                         sorted(s.id for s in self.live_snapshots(vol)))
        array = self.mgr.driver().backend.client.list_snapshots()
        self.assertEqual(3, len(array))


class TestForever(ScheduleTestCase):
    def test_forever_takes_each_period_until_stopped(self) -> None:
        vol = self.volume()
        sched = self.sch.create(vol, "1h", 3)
        clock = self.clock
        reports: list[list[Any]] = []

        class Stop(threading.Event):
            """Waiting moves the fake clock; the fifth wait is a SIGTERM."""

            waits: list[float] = []

            def wait(self, timeout: float | None = None) -> bool:
                self.waits.append(timeout or 0)
                clock.advance(datetime.timedelta(seconds=timeout or 0))
                if len(self.waits) == 5:
                    self.set()
                return self.is_set()

        stop = Stop()
        self.sch.forever(stop, reports.append, poll_s=3600)
        taken = [r for batch in reports for r in batch if r.action == "taken"]
        # Started at 10:07: waits to 11:00, then an hour each time.
        self.assertEqual(53 * 60, Stop.waits[0])
        self.assertEqual(5, len(taken))
        self.assertEqual(3, len(self.sched_snapshot_ids(sched)))

    def test_forever_outlives_a_back_end_it_cannot_reach(self) -> None:
        vol = self.volume()
        self.sch.create(vol, "1h", 3)
        self.mgr.close()            # the next use logs in again...
        self.sim.control.inject_fault("session.login_with_password", INJECTED, times=1)
        clock, seen = self.clock, []

        class Stop(threading.Event):
            def wait(self, timeout: float | None = None) -> bool:
                clock.advance(datetime.timedelta(seconds=timeout or 0))
                if len(seen) == 2:
                    self.set()
                return self.is_set()

        self.sch.forever(Stop(), seen.append, poll_s=60)
        self.assertEqual("failed", seen[0][0].action)
        self.assertEqual("taken", seen[1][0].action, seen)

    def test_sigterm_stops_the_process_cleanly(self) -> None:
        vol = self.volume()
        self.sch.create(vol, "1h", 3)
        proc = self.spawn("schedule", "run", "--forever", "--poll", "3600")
        self.assertIn("started", proc.stderr.readline() if proc.stderr else "")
        first = json.loads(proc.stdout.readline() if proc.stdout else "{}")
        self.assertEqual("taken", first["action"])
        proc.send_signal(signal.SIGTERM)
        (result,) = self.finish(proc)
        self.assertEqual(0, result.code, result.err)
        self.assertIn("stopped", result.err)
        self.assertEqual(1, len(self.live_snapshots(vol)))


class TestSharedInventory(ScheduleTestCase):
    """Several processes run ``schedule run`` at one instant on one inventory."""

    def race(self, db_url: str) -> None:
        mgr = Manager([self.conf], db_url=db_url)
        self.addCleanup(mgr.close)
        sch = schedule.Scheduler(mgr, clock=self.clock)
        vol = str(mgr.create_volume(1, name="v").id)
        sched = sch.create(vol, "1h", 5)
        procs = [self.spawn("schedule", "run", "--now", "2026-11-28T10:30:00Z",
                            db_url=db_url) for _ in range(4)]
        results = self.finish(*procs)
        actions = sorted(r.json[0]["action"] for r in results)
        self.assertEqual(["not due", "not due", "not due", "taken"], actions,
                         [r.err for r in results])
        self.assertEqual(1, len(mgr.inventory.snapshots(volume_id=vol)))
        self.assertEqual(1, len(sch.runs(sched.id)))

    def test_sqlite(self) -> None:
        self.race(self.db_url)

    def on_server(self, name: str) -> str:
        """A fresh database on the PostgreSQL or MySQL server the inventory
        tests use (skipped, saying why, when it does not answer)."""
        server = test_inventory_servers.OnServer("run")
        server.SERVER = name
        server.skipTest = self.skipTest  # type: ignore[method-assign]
        url = server.database_url()
        self.addCleanup(server.doCleanups)
        inventory.Inventory(url).close()
        return url

    def test_postgresql(self) -> None:
        self.race(self.on_server("postgresql"))

    def test_mysql(self) -> None:
        self.race(self.on_server("mysql"))


class TestMigration(TestSharedInventory):
    def test_sqlite(self) -> None:
        self.version_2_gains_the_tables("sqlite:///%s" % os.path.join(self.tmp, "v2.sqlite"))

    def test_postgresql(self) -> None:
        self.version_2_gains_the_tables(self.on_server("postgresql"))

    def test_mysql(self) -> None:
        self.version_2_gains_the_tables(self.on_server("mysql"))

    def version_2_gains_the_tables(self, url: str) -> None:
        import sqlalchemy as sa
        inventory.Inventory(url).close()
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE schedule_runs"))
            conn.execute(sa.text("DROP TABLE schedules"))
            conn.execute(sa.text("UPDATE xensm_schema SET version = 2"))
        engine.dispose()
        inv = inventory.Inventory(url)
        self.addCleanup(inv.close)
        self.assertEqual(models.SCHEMA_VERSION, inv.schema_version)
        with inv.session() as sess:
            self.assertEqual([], list(sess.scalars(sa.select(ScheduleRun))))
        # And it works: the race, on the migrated inventory.
        self.race(url)


class TestSpaceNfs(ScheduleTestCase):
    """What a volume's snapshots hold on a VHD SR, and whether a delete frees
    what ``snapshot_space`` said it would, once the SR has coalesced."""

    KIND_NOTE = "This SR is thin, so Cinder's scheduler"

    def sr_used(self) -> int:
        drv = self.mgr.driver()
        return int(drv.backend.storage.capacity(drv.backend.sr_ref).physical_utilisation)

    def chain_with_two_snapshots(self) -> tuple[str, str, str]:
        vol = self.volume("data")
        self.write(vol, "A")                     # 2 MiB: one block in the first base copy
        s1 = self.mgr.create_snapshot(vol, name="s1").id
        self.write(vol, "B")                     # the same block, rewritten
        s2 = self.mgr.create_snapshot(vol, name="s2").id
        return vol, s1, s2

    def test_a_delete_frees_what_the_report_said(self) -> None:
        vol, s1, s2 = self.chain_with_two_snapshots()
        report = self.mgr.snapshot_space()
        info = report["volumes"][vol]
        self.assertEqual(3, info["chain_depth"])
        self.assertEqual(info["leaf_bytes"] + info["base_copy_bytes"]
                         + info["snapshot_leaf_bytes"], info["tree_bytes"])
        self.assertGreater(info["base_copy_bytes"], 2 * base.MiB)
        for snap_id in (s1, s2):
            frees = info["snapshots"][snap_id]["frees"]
            self.control.pause_gc(True)
            before = self.sr_used()
            self.mgr.delete_snapshot(snap_id)
            self.assertEqual(frees["now"], before - self.sr_used())
            self.control.pause_gc(False)
            self.control.wait_gc()
            freed = before - self.sr_used()
            self.assertGreaterEqual(freed, frees["after_coalesce_min"], (snap_id, frees))
            self.assertLessEqual(freed, frees["after_coalesce_max"], (snap_id, frees))
            report = self.mgr.snapshot_space()
            info = report["volumes"][vol]
        self.assertEqual(1, info["chain_depth"])

    def test_the_provisioned_figure_counts_every_snapshot_at_full_size(self) -> None:
        vol, s1, s2 = self.chain_with_two_snapshots()
        stats = self.j("stats")
        prov = stats["snapshot_space"]["provisioned"]
        self.assertEqual((base.GiB, 2 * base.GiB), (prov["volumes"], prov["snapshots"]))
        self.assertEqual(round((prov["volumes"] + prov["snapshots"] + prov["other"])
                               / base.GiB, 2), stats["provisioned_capacity_gb"])
        text = self.xensm("stats").out
        self.assertIn("provisioned (virtual sizes): volumes 1.0 GiB, snapshots 2.0 GiB", text)
        self.assertIn("volume data: 2 snapshots; chain 3 deep", text)
        self.assertIn("coalesce", text)
        self.assertIn(self.KIND_NOTE, text)

    def test_the_tree_with_space(self) -> None:
        vol, s1, s2 = self.chain_with_two_snapshots()
        plain = self.xensm("snapshot", "tree", "data").out
        self.assertNotIn("frees", plain)
        text = self.xensm("snapshot", "tree", "data", "--space").out
        self.assertIn("chain 3 deep", text)
        self.assertEqual(2, text.count("delete frees"))
        self.assertIn("after the SR coalesces", text)
        data = self.j("snapshot", "tree", "data", "--space")
        self.assertEqual({s1, s2}, set(data["space"]["volumes"][vol]["snapshots"]))


class TestSpaceLvm(TestSpaceNfs):
    """Thick LVHD: the volume's leaf is inflated, so coalescing a base copy
    into it frees the whole base copy."""

    SR_TYPE = "lvm"
    KIND_NOTE = "This SR is thick, so Cinder's scheduler reads free_capacity_gb"

    def test_the_provisioned_figure_counts_every_snapshot_at_full_size(self) -> None:
        super().test_the_provisioned_figure_counts_every_snapshot_at_full_size()

    def test_a_full_child_makes_the_figure_exact(self) -> None:
        vol, s1, s2 = self.chain_with_two_snapshots()
        frees = self.mgr.snapshot_space()["volumes"][vol]["snapshots"][s2]["frees"]
        self.assertEqual(frees["after_coalesce_min"], frees["after_coalesce_max"])
        self.assertGreater(frees["after_coalesce_max"], frees["now"])


class TestSpaceSolidFire(ScheduleTestCase):
    SR_TYPE = "solidfire"

    def setUp(self) -> None:
        self.SIM_KWARGS = {"solidfire": True, "supplemental_packs": ("relvmoiscsi",)}
        super().setUp()

    def test_the_array_reports_no_per_snapshot_space(self) -> None:
        vol = self.volume("data")
        snap = self.mgr.create_snapshot(vol).id
        report = self.mgr.snapshot_space()
        info = report["volumes"][vol]["snapshots"][snap]
        # The array volume's size (the LUN holds an SR: a little over the volume).
        self.assertEqual((True, None), (info["present"], info["frees"]))
        self.assertGreaterEqual(info["total_size"], base.GiB)
        text = self.xensm("stats").out
        self.assertIn("space per snapshot not reported", text)
        self.assertIn("provisionedSpace", text)
        self.assertIn("not reported by the array",
                      self.xensm("snapshot", "tree", "data", "--space").out)


class TestFaults(ScheduleTestCase):
    """A failure injected at each XAPI call a run makes (a take, then a
    retention delete): a failed take leaves the SR as it was and frees the
    period; a failed delete is reported and finished by the next run; no
    snapshot VDI is ever left without its record."""

    def settled(self) -> dict[str, Any]:
        self.control.run_gc()
        drv = self.mgr.driver()
        return {v.uuid: (v.name_label, tuple(sorted(v.other_config.items())), v.managed)
                for v in drv.backend.storage.sr_vdis(drv.backend.sr_ref)}

    def prepared(self) -> Any:
        """A schedule keeping one, with its first snapshot; the clock in its
        second period."""
        vol = self.volume()
        sched = self.sch.create(vol, "1h", 1)
        self.assertEqual("taken", self.sch.run_due([sched.id])[0].action)
        self.clock.advance(HOUR)
        return sched

    #: Calls a run must make (proof the steps were learnt).
    MUST_CALL = (("xapi", "VDI.snapshot", 1), ("xapi", "VDI.destroy", 1))

    def setUp(self) -> None:
        # A fault on a claim's release leaves the claim for its lease (30 s
        # and more), which the next verb on that object waits out: a short
        # lease keeps a walk over every call within the test's time.
        self.useFixture(fixtures.MockPatch("xensm_driver.flows.target.lease",
                                           lambda *args: 2.0))
        super().setUp()

    def reset_calls(self) -> None:
        self.mgr.driver().pool.counter.reset()

    def steps(self) -> list[tuple[str, str, int]]:
        counter = self.mgr.driver().pool.counter
        return [("xapi", m, n) for m, count in sorted(counter.snapshot().items())
                for n in range(1, count + 1)]

    def inject(self, side: str, method: str, nth: int) -> None:
        self.control.inject_fault(method, error=INJECTED, nth=nth)

    def clear(self) -> None:
        self.control.clear_faults()

    def test_a_failure_at_each_call(self) -> None:
        sched = self.prepared()
        self.reset_calls()
        self.assertEqual(1, len(self.sch.run_due([sched.id])[0].pruned))
        steps = self.steps()
        for step in self.MUST_CALL:
            self.assertIn(step, steps)
        for side, method, nth in steps:
            sched = self.prepared()
            (old,) = self.sched_snapshot_ids(sched)
            before = self.settled()
            self.inject(side, method, nth)
            (result,) = self.sch.run_due([sched.id])
            self.clear()
            where = "%s %s #%d: %s" % (side, method, nth, result)
            if result.action == "failed":
                self.assertEqual(before, self.settled(), where)
                self.assertEqual([old], self.sched_snapshot_ids(sched), where)
            else:
                self.assertEqual("taken", result.action, where)
            # Whatever failed, the next run puts the schedule right.
            self.clock.advance(HOUR)
            (result,) = self.sch.run_due([sched.id])
            self.assertEqual("taken", result.action, where)
            self.assertEqual([result.made_id], self.sched_snapshot_ids(sched), where)
            live = {s.id for s in self.mgr.inventory.snapshots()
                    if s.status == "available"}
            self.assertEqual(live, self.tagged_snapshot_vdis(), where)
            self.assertEqual(set(), {s.id for s in self.mgr.inventory.snapshots()} - live,
                             where)


class TestFaultsSolidFire(TestFaults):
    """The same on SolidFire: a failure at each XAPI and each Element call."""

    SR_TYPE = "solidfire"
    MUST_CALL = (("array", "CreateSnapshot", 1), ("array", "DeleteSnapshot", 1))

    def setUp(self) -> None:
        self.SIM_KWARGS = {"solidfire": True, "supplemental_packs": ("relvmoiscsi",)}
        super().setUp()
        self.array = self.sim.solidfire.control

    def reset_calls(self) -> None:
        super().reset_calls()
        self.array.reset_calls()

    def steps(self) -> list[tuple[str, str, int]]:
        return super().steps() + [("array", m, n) for m, c in sorted(
            self.array.calls().items()) for n in range(1, c + 1)]

    def inject(self, side: str, method: str, nth: int) -> None:
        if side == "xapi":
            super().inject(side, method, nth)
        else:
            self.array.inject_fault(method, error_name="xInvalidParameter", nth=nth)

    def clear(self) -> None:
        super().clear()
        self.array.clear_faults()

    def settled(self) -> dict[str, Any]:
        client = self.mgr.driver().backend.client
        return {"snapshots": sorted((s["name"], str(s.get("attributes")))
                                    for s in client.list_snapshots()),
                "volumes": sorted((v["name"], v["status"])
                                  for v in client.call("ListVolumes")["volumes"])}

    def tagged_snapshot_vdis(self) -> set[str]:
        """Here: the snapshot tags on the array."""
        client = self.mgr.driver().backend.client
        return {(s.get("attributes") or {}).get("xensm-snapshot-id")
                for s in client.list_snapshots()}


class TestGroupSolidFire(ScheduleTestCase):
    """A group's schedule on SolidFire: one array group snapshot per period;
    at the per-volume limit the oldest scheduled group snapshot goes first."""

    SR_TYPE = "solidfire"
    EXTRA = {"xensm_solidfire_snapshot_limit": 3}

    def setUp(self) -> None:
        self.SIM_KWARGS = {"solidfire": True, "supplemental_packs": ("relvmoiscsi",)}
        super().setUp()

    def test_group_snapshots_kept_and_pruned(self) -> None:
        a, b = self.volume("a"), self.volume("b")
        self.mgr.create_group("g", [a, b])
        by_hand = self.mgr.create_snapshot(a)
        sched = self.sch.create("g", "1h", 2)
        made = []
        for _ in range(3):
            (result,) = self.sch.run_due()
            self.assertEqual("taken", result.action, result)
            made.append(result.made_id)
            self.clock.advance(HOUR)
        self.assertEqual(made[1:], self.sched_snapshot_ids(sched))
        client = self.mgr.driver().backend.client
        groups = client.call("ListGroupSnapshots")["groupSnapshots"]
        self.assertEqual(2, len(groups))
        # Volume a holds 3 snapshots (the limit): the next take needs room.
        (result,) = self.sch.run_due()
        self.assertEqual("taken", result.action, result)
        self.assertEqual([made[1]], result.pruned)
        self.assertIn(by_hand.id, [s.id for s in self.live_snapshots(a)])
