"""The SQL inventory: schema versioning, records, lookups, claims, hierarchy."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import fixtures
import sqlalchemy as sa
import testtools

from xensm_driver.service import inventory as inv
from xensm_driver.service import models
from xensm_driver.service.models import Group
from xensm_driver.service.models import Snapshot
from xensm_driver.service.models import Volume


class InventoryTestCase(testtools.TestCase):
    """An inventory on SQLite; tests/functional/test_inventory_servers.py runs
    the same tests on PostgreSQL and MySQL by overriding :meth:`database_url`."""

    def setUp(self) -> None:
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.url = self.database_url()
        self.inv = self.open()
        self.inv.record_backend("xs", "nfs", "sr-uuid")

    def database_url(self) -> str:
        return "sqlite:///%s/inventory.sqlite" % self.tmp

    def open(self, **kwargs: Any) -> inv.Inventory:
        opened = inv.Inventory(self.url, **kwargs)
        self.addCleanup(opened.close)
        return opened

    def volume(self, name: str = "", status: str = "available", **fields: Any) -> Volume:
        return self.inv.add(Volume(id=inv.new_id(), backend="xs", name=name, size_gb=1,
                                   status=status, **fields))

    def snapshot(self, vol: Volume, name: str = "", status: str = "available",
                 **fields: Any) -> Snapshot:
        return self.inv.add(Snapshot(id=inv.new_id(), backend="xs", volume_id=vol.id,
                                     name=name, volume_size_gb=vol.size_gb, status=status,
                                     **fields))


class SchemaTest(InventoryTestCase):
    def version(self) -> int:
        engine = sa.create_engine(self.url)
        self.addCleanup(engine.dispose)
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT version FROM xensm_schema")).scalar_one())

    def set_version(self, version: int) -> None:
        engine = sa.create_engine(self.url)
        self.addCleanup(engine.dispose)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE xensm_schema SET version = :v"), {"v": version})

    def test_a_new_inventory_records_the_current_schema_version(self) -> None:
        self.assertEqual(models.SCHEMA_VERSION, self.version())
        self.assertEqual(models.SCHEMA_VERSION, self.inv.schema_version)
        tables = set(sa.inspect(self.inv.engine).get_table_names())
        self.assertTrue({"backends", "volumes", "snapshots", "groups", "group_snapshots",
                         "xensm_schema"} <= tables)

    def test_reopening_keeps_the_records(self) -> None:
        vol = self.volume("kept")
        self.inv.close()
        self.assertEqual("kept", self.open().get(Volume, vol.id).name)

    def test_an_older_inventory_is_migrated_step_by_step(self) -> None:
        self.inv.close()
        self.set_version(1)
        applied = []

        def add_column(conn: sa.engine.Connection) -> None:
            applied.append(2)
            conn.execute(sa.text("ALTER TABLE volumes ADD COLUMN note VARCHAR(20)"))

        self.useFixture(fixtures.MonkeyPatch(
            "xensm_driver.service.models.SCHEMA_VERSION", 2))
        self.useFixture(fixtures.MonkeyPatch(
            "xensm_driver.service.inventory.MIGRATIONS", {2: add_column}))
        self.open()
        self.assertEqual([2], applied)
        self.assertEqual(2, self.version())
        columns = {c["name"] for c in sa.inspect(sa.create_engine(self.url)).get_columns(
            "volumes")}
        self.assertIn("note", columns)
        self.open()                       # already at 2: nothing runs again
        self.assertEqual([2], applied)

    def test_a_missing_migration_step_is_refused_and_changes_nothing(self) -> None:
        self.inv.close()
        self.set_version(1)
        self.useFixture(fixtures.MonkeyPatch(
            "xensm_driver.service.models.SCHEMA_VERSION", 3))
        self.useFixture(fixtures.MonkeyPatch(
            "xensm_driver.service.inventory.MIGRATIONS", {2: lambda conn: None}))
        err = self.assertRaises(inv.InventoryError, self.open)
        self.assertIn("no migration from schema version 2 to 3", str(err))
        self.assertEqual(1, self.version())       # the step to 2 was rolled back too

    def test_a_version_1_inventory_opens_at_the_current_version(self) -> None:
        vol = self.volume("kept")
        self.inv.close()
        self.set_version(1)
        self.assertEqual("kept", self.open().get(Volume, vol.id).name)
        self.assertEqual(models.SCHEMA_VERSION, self.version())

    def test_a_version_2_inventory_gets_the_backups_table(self) -> None:
        vol = self.volume("kept")
        self.inv.close()
        engine = sa.create_engine(self.url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE backups"))
        self.set_version(2)
        self.assertEqual("kept", self.open().get(Volume, vol.id).name)
        self.assertEqual(models.SCHEMA_VERSION, self.version())
        self.assertIn("backups", sa.inspect(sa.create_engine(self.url)).get_table_names())

    def test_a_newer_inventory_is_refused(self) -> None:
        self.set_version(models.SCHEMA_VERSION + 1)
        err = self.assertRaises(inv.InventoryError, self.open)
        self.assertIn("newer than this xensm", str(err))

    def test_tables_without_a_version_are_not_ours(self) -> None:
        engine = sa.create_engine(self.url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE xensm_schema"))
        engine.dispose()
        err = self.assertRaises(inv.InventoryError, self.open)
        self.assertIn("no schema version", str(err))


class UrlTest(testtools.TestCase):
    def test_default_is_sqlite_in_the_xdg_state_directory(self) -> None:
        self.useFixture(fixtures.EnvironmentVariable("XDG_STATE_HOME", "/srv/state"))
        self.assertEqual("sqlite:////srv/state/xensm/inventory.sqlite", inv.default_url())

    def test_default_without_xdg_is_under_local_state(self) -> None:
        self.useFixture(fixtures.EnvironmentVariable("XDG_STATE_HOME"))
        self.useFixture(fixtures.EnvironmentVariable("HOME", "/home/op"))
        self.assertEqual("sqlite:////home/op/.local/state/xensm/inventory.sqlite",
                         inv.default_url())

    def test_the_state_directory_is_made(self) -> None:
        tmp = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.EnvironmentVariable("XDG_STATE_HOME", tmp))
        opened = inv.Inventory()
        self.addCleanup(opened.close)
        self.assertTrue(os.path.exists(os.path.join(tmp, "xensm", "inventory.sqlite")))

    def test_passwords_in_urls_are_masked(self) -> None:
        shown = inv.display_url("postgresql+psycopg://xensm:hunter2@db.example/xensm")
        self.assertNotIn("hunter2", shown)
        self.assertIn("db.example/xensm", shown)

    def test_xapi_urls_are_shown_without_userinfo(self) -> None:
        from xensm_driver.service import manager
        self.assertEqual("https://pool.example:443/x",
                         manager._without_userinfo("https://root:hunter2@pool.example:443/x"))
        self.assertEqual("http://pool.example", manager._without_userinfo("http://pool.example"))

    def test_an_unusable_url_fails_without_its_password(self) -> None:
        for url in ("postgresql+nosuchdriver://xensm:hunter2@db.example/xensm",
                    "not a url at all"):
            err = self.assertRaises(inv.InventoryError, inv.Inventory, url)
            self.assertNotIn("hunter2", str(err))


class RecordsTest(InventoryTestCase):
    def test_resolve_by_id_name_and_unique_prefix(self) -> None:
        vol = self.volume("alpha")
        other = self.volume("beta")
        self.assertEqual(vol.id, self.inv.resolve(Volume, vol.id).id)
        self.assertEqual(vol.id, self.inv.resolve(Volume, "alpha").id)
        prefix = next(vol.id[:n] for n in range(4, 36) if not other.id.startswith(vol.id[:n]))
        self.assertEqual(vol.id, self.inv.resolve(Volume, prefix).id)
        self.assertRaises(inv.NotInInventory, self.inv.resolve, Volume, "gamma")
        self.assertRaises(inv.NotInInventory, self.inv.resolve, Volume, "abc")  # too short

    def test_a_name_shared_by_two_live_volumes_must_be_an_id(self) -> None:
        self.volume("twin")
        self.volume("twin")
        err = self.assertRaises(inv.NotInInventory, self.inv.resolve, Volume, "twin")
        self.assertIn("use the id", str(err))

    def test_deleted_objects_are_hidden_unless_asked_for(self) -> None:
        gone = self.volume("old", status="deleted", deleted_at=models.utcnow())
        self.volume("old")
        self.assertNotEqual(gone.id, self.inv.resolve(Volume, "old").id)
        self.assertEqual(1, len(self.inv.volumes()))
        self.assertEqual(2, len(self.inv.volumes(include_gone=True)))
        self.assertEqual(gone.id, self.inv.resolve(Volume, gone.id).id)  # an id always works
        self.assertNotEqual(gone.id, self.inv.resolve(Volume, "old", include_gone=True).id)
        only_gone = self.volume("older", status="deleted")
        self.assertRaises(inv.NotInInventory, self.inv.resolve, Volume, "older")
        self.assertEqual(only_gone.id,
                         self.inv.resolve(Volume, "older", include_gone=True).id)

    def test_claim_moves_to_the_busy_state_and_names_this_process(self) -> None:
        vol = self.volume()
        before = self.inv.claim(Volume, vol.id, "extending", frozenset({"available"}))
        self.assertEqual("available", before.status)
        now = self.inv.get(Volume, vol.id)
        self.assertEqual(("extending", inv.this_owner()), (now.status, now.owner))
        err = self.assertRaises(inv.Refused, self.inv.claim, Volume, vol.id, "deleting",
                                frozenset({"available"}))
        self.assertIn("is extending", str(err))

    def test_a_busy_record_of_a_dead_process_reads_as_error(self) -> None:
        dead = dead_owner()
        vol = self.volume(status="creating", owner=dead)
        self.assertTrue(inv.interrupted(vol))
        self.assertEqual("error", inv.effective_status(vol))
        self.inv.claim(Volume, vol.id, "deleting", frozenset({"error"}))
        live = self.volume(status="creating", owner=inv.this_owner())
        self.assertFalse(inv.interrupted(live))
        err = self.assertRaises(inv.Refused, self.inv.claim, Volume, live.id, "deleting",
                                frozenset({"error"}))
        self.assertIn("process %s is creating it" % inv.this_owner(), str(err))

    def test_owner_alive(self) -> None:
        self.assertTrue(inv.owner_alive(inv.this_owner()))
        self.assertFalse(inv.owner_alive(dead_owner()))
        self.assertIsNone(inv.owner_alive("some-other-host.example:1"))
        self.assertFalse(inv.owner_alive(None))

    def test_counts_and_dependents(self) -> None:
        vol = self.volume()
        snap = self.snapshot(vol)
        self.snapshot(vol, status="deleted")
        clone = self.inv.add(Volume(id=inv.new_id(), backend="xs", size_gb=3,
                                    status="available", source_volume_id=vol.id))
        deps = self.inv.dependents(vol.id)
        self.assertEqual([snap.id], [s.id for s in deps["snapshots"]])
        self.assertEqual([clone.id], [v.id for v in deps["clones"]])
        counts = self.inv.counts("xs")
        self.assertEqual((2, 1, 4), (counts["volumes"], counts["snapshots"],
                                     counts["volume_gb"]))

    def test_foreign_keys_are_enforced(self) -> None:
        self.assertRaises(sa.exc.IntegrityError, self.inv.add,
                          Snapshot(id=inv.new_id(), backend="xs", volume_id="nope",
                                   volume_size_gb=1, status="available"))


class HierarchyTest(InventoryTestCase):
    def test_tree_nests_snapshots_and_the_volumes_made_from_them(self) -> None:
        root = self.volume("root")
        s1 = self.snapshot(root, "s1")
        from_s1 = self.volume("from-s1", source_snapshot_id=s1.id)
        s2 = self.snapshot(from_s1, "s2")
        grandchild = self.volume("from-s2", source_snapshot_id=s2.id)
        clone = self.volume("clone", source_volume_id=root.id)
        self.volume("gone", source_volume_id=root.id, status="deleted")
        tree = self.inv.tree(root.id)

        def shape(node: dict[str, Any]) -> Any:
            return (node["record"].name, [shape(c) for c in node["children"]])

        self.assertEqual(
            ("root", [("s1", [("from-s1", [("s2", [("from-s2", [])])])]), ("clone", [])]),
            shape(tree))
        self.assertEqual(3, len(self.inv.tree(root.id, include_gone=True)["children"]))
        self.assertEqual([s2.id, from_s1.id, s1.id, root.id],
                         [r.id for r in self.inv.lineage(grandchild.id)])
        self.assertEqual([root.id], [r.id for r in self.inv.lineage(clone.id)])
        self.assertEqual([], self.inv.lineage(root.id))

    def test_groups_and_their_members(self) -> None:
        group = self.inv.add(Group(id=inv.new_id(), backend="xs", name="g",
                                   status="available"))
        member = self.volume("m", group_id=group.id)
        self.volume("other")
        self.assertEqual([member.id], [v.id for v in self.inv.volumes(group_id=group.id)])
        self.assertEqual(group.id, self.inv.resolve(Group, "g").id)


class ClaimTest(InventoryTestCase):
    """One object, one verb at a time: claims race in threads and processes."""

    CONTENDERS = 4

    def test_threads_racing_for_one_record_one_wins(self) -> None:
        vol = self.volume()
        barrier = threading.Barrier(self.CONTENDERS)
        results: list[str] = []

        def contend() -> None:
            barrier.wait()
            try:
                self.inv.claim(Volume, vol.id, "extending", frozenset({"available"}))
                results.append("won")
            except inv.Refused:
                results.append("refused")

        threads = [threading.Thread(target=contend) for _ in range(self.CONTENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(["won"] + ["refused"] * (self.CONTENDERS - 1), sorted(results,
                                                                              key="won".__ne__))

    def test_processes_racing_for_one_record_one_wins(self) -> None:
        for _trial in range(3):
            vol = self.volume()
            self.assertEqual(1, race(self.url, vol.id, self.CONTENDERS).count("won"))
            self.assertEqual("extending", self.inv.get(Volume, vol.id).status)

    def test_a_check_inside_the_claim_sees_what_the_claim_saw(self) -> None:
        vol = self.volume()
        self.snapshot(vol)

        def no_snapshots(sess: Any, record: Volume) -> None:
            # In the claim's own transaction (another would wait for its lock).
            if sess.scalars(sa.select(Snapshot).where(Snapshot.volume_id == record.id)).all():
                raise inv.Refused(reason="has snapshots")

        self.assertRaises(inv.Refused, self.inv.claim, Volume, vol.id, "deleting",
                          frozenset({"available"}), no_snapshots)
        self.assertEqual("available", self.inv.get(Volume, vol.id).status)

    def test_release_puts_back_only_its_own_claim(self) -> None:
        vol = self.volume()
        self.inv.claim(Volume, vol.id, "snapshotting", frozenset({"available"}))
        self.inv.release(Volume, vol.id, "snapshotting", "available")
        self.assertEqual(("available", None), (self.inv.get(Volume, vol.id).status,
                                               self.inv.get(Volume, vol.id).owner))
        self.inv.update(Volume, vol.id, status="error", owner=None)   # a reset-state
        self.inv.release(Volume, vol.id, "snapshotting", "available")
        self.assertEqual("error", self.inv.get(Volume, vol.id).status)

    def test_a_reader_that_died_leaves_the_record_available(self) -> None:
        vol = self.volume(status="cloning", owner=dead_owner())
        self.assertEqual("available", inv.effective_status(vol))
        self.inv.claim(Volume, vol.id, "extending", frozenset({"available"}))


class OpenTest(testtools.TestCase):
    def test_a_missing_inventory_is_not_made_without_create(self) -> None:
        tmp = self.useFixture(fixtures.TempDir()).path
        for path in (os.path.join(tmp, "inv.sqlite"),
                     os.path.join(tmp, "no", "such", "dir", "inv.sqlite")):
            err = self.assertRaises(inv.NoInventory, inv.Inventory, "sqlite:///" + path,
                                    create=False)
            self.assertIn("nothing has been recorded there", str(err))
            self.assertFalse(os.path.exists(path))
        self.assertEqual([], os.listdir(tmp))

    def test_a_given_urls_directory_is_never_made(self) -> None:
        tmp = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(tmp, "typo", "inv.sqlite")
        self.assertRaises(inv.InventoryError, inv.Inventory, "sqlite:///" + path)
        self.assertFalse(os.path.exists(os.path.dirname(path)))


RACE = """
import sys, time
from xensm_driver.service import inventory as inv
from xensm_driver.service.models import Volume
opened = inv.Inventory(sys.argv[1], create=False)
start = float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
try:
    opened.claim(Volume, sys.argv[2], "extending", frozenset({"available"}))
    print("won")
except inv.Refused:
    print("refused")
"""


def race(url: str, volume_id: str, contenders: int) -> list[str]:
    """``contenders`` processes claim one volume at one instant; their answers."""
    start = "%f" % (time.time() + 1.5)     # all have started by then, on a busy machine
    procs = [subprocess.Popen([sys.executable, "-c", RACE, url, volume_id, start],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(contenders)]
    answers = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        if proc.returncode:
            raise AssertionError("claim process failed: %s" % err)
        answers.append(out.strip())
    return answers


def dead_owner() -> str:
    """The owner string of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return "%s:%d" % (socket.gethostname(), proc.pid)


class VMSnapshotMigrationTest(testtools.TestCase):
    """Schema 3 adds VM snapshots to an inventory made before them."""

    def test_a_version_2_inventory_gains_vm_snapshots(self) -> None:
        tmp = self.useFixture(fixtures.TempDir()).path
        url = "sqlite:///%s/inventory.sqlite" % tmp
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            for table in models.Base.metadata.sorted_tables:
                if table.name != "vm_snapshots":
                    table.create(conn)
            conn.execute(sa.text("DROP INDEX ix_snapshots_vm_snapshot_id"))
            conn.execute(sa.text("ALTER TABLE snapshots DROP COLUMN vm_snapshot_id"))
            conn.execute(sa.text("ALTER TABLE snapshots DROP COLUMN vm_userdevice"))
            conn.execute(sa.insert(models.SchemaVersion).values(
                id=1, version=2, updated_at=models.utcnow()))
        engine.dispose()
        opened = inv.Inventory(url)
        self.addCleanup(opened.close)
        self.assertEqual(models.SCHEMA_VERSION, opened.schema_version)
        self.assertEqual([], opened.vm_snapshots())
        with opened.session() as sess:
            columns = {c["name"] for c in sa.inspect(sess.connection()).get_columns(
                "snapshots")}
        self.assertTrue({"vm_snapshot_id", "vm_userdevice"} <= columns)
