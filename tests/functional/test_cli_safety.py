"""A careless operator cannot make ``xensm`` destroy data or lie (issue 13, items 1-4).

Real ``xensm`` processes, one simulator: reconcile against an empty, a
missing or another inventory, two reconciles at once, mistyped inventory
URLs, and two verbs racing for one object.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tests.functional import base
from tests.functional import test_cli
from xensm_driver import identity
from xensm_driver.cmd import xensm
from xensm_driver.service import inventory


class ReconcileSafetyTest(test_cli.CliTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.live = [self.j("volume", "create", "--size", "1", "--name", "v%d" % i)
                     for i in range(3)]
        self.drv = self.storage()

    def assert_live_vdis_intact(self) -> None:
        storage = self.drv.backend.storage
        for vol in self.live:
            vdi = storage.vdi_by_uuid(vol["provider_id"])
            self.assertIsNotNone(vdi, "volume %s lost its VDI" % vol["name"])
            self.assertEqual(vol["id"], vdi.other_config[identity.VOLUME_TAG])
        self.assertEqual(xensm.EXIT_OK, self.xensm("reconcile").code)

    def url(self, name: str) -> str:
        return "sqlite:///%s" % os.path.join(self.tmp, name)

    def test_a_missing_or_empty_inventory_refuses_and_destroys_nothing(self) -> None:
        missing = os.path.join(self.tmp, "typo", "inv.sqlite")
        empty = self.url("empty.sqlite")
        inventory.Inventory(empty).close()
        results = self.finish(
            self.spawn("reconcile", "--delete-orphans", "--yes", db_url="sqlite:///" + missing),
            self.spawn("reconcile", "--delete-orphans", "--yes", db_url=empty))
        self.assertEqual([xensm.EXIT_CONFIG, xensm.EXIT_REFUSED], [r.code for r in results])
        self.assertIn("No xensm inventory", results[0].err)
        self.assertIn("has no record of anything made on back end xs", results[1].err)
        self.assertFalse(os.path.exists(os.path.dirname(missing)))
        self.assert_live_vdis_intact()

    def test_another_inventory_on_the_same_sr_touches_none_of_ours(self) -> None:
        other = self.url("other.sqlite")
        theirs = self.j("volume", "create", "--size", "1", "--name", "theirs",
                        "--db-url", other)
        # Leave one of theirs behind, so their reconcile has something to delete.
        gone = self.j("volume", "create", "--size", "1", "--db-url", other)
        inv = inventory.Inventory(other)
        self.addCleanup(inv.close)
        inv.update(test_cli.Volume, gone["id"], status="deleted")
        (result,) = self.finish(self.spawn("reconcile", "--delete-orphans", "--yes",
                                           db_url=other))
        self.assertEqual(xensm.EXIT_OK, result.code, result.err)
        report = test_cli.Result(0, result.out, "").json
        self.assertEqual({("foreign_vdi", v["id"]) for v in self.live}
                         | {("orphan_vdi", gone["id"])},
                         {(f["kind"], f["id"]) for f in report["findings"]})
        self.assertEqual(["deleted VDI %s" % gone["provider_id"]],
                         [f["action_taken"] for f in report["findings"] if f["action_taken"]])
        self.assertIsNotNone(self.drv.backend.storage.vdi_by_uuid(theirs["provider_id"]))
        self.assert_live_vdis_intact()

    def test_two_reconciles_at_once_never_destroy_a_live_volume(self) -> None:
        storage = self.drv.backend.storage
        self.control.set_latency(0.05)           # widen every window between calls
        for trial in range(3):
            # A copy of a live volume carrying its tag (what a lost clone
            # answer leaves), and a deleted record whose VDI stayed.
            copy = storage.get_vdi(storage.create_vdi(
                self.drv.backend.sr_ref, base.GiB, self.live[0]["name"],
                identity.volume(self.live[0]["id"]).tags()))
            left = self.j("volume", "create", "--size", "1", "--name", "left%d" % trial)
            self.mark_deleted(left["id"])
            results = self.finish(*[self.spawn("reconcile", "--delete-orphans", "--yes")
                                    for _ in range(2)])
            self.assertEqual([xensm.EXIT_DRIFT] * 2, [r.code for r in results],
                             [r.err for r in results])     # the copy stays, reported
            actions = [f["action_taken"] for r in results for f in r.json["findings"]
                       if f["action_taken"]]
            self.assertIn("deleted VDI %s" % left["provider_id"], actions)
            self.assertIsNone(storage.vdi_by_uuid(left["provider_id"]))
            self.assertIsNotNone(storage.vdi_by_uuid(copy.uuid))
            storage.destroy_vdi(copy.ref)
            self.assertEqual("deleted", self.j("volume", "show", left["id"])["status"])
            self.assert_live_vdis_intact()


class InventoryUrlTest(test_cli.CliTestCase):
    def test_a_mistyped_db_url_never_makes_an_inventory(self) -> None:
        typo = os.path.join(self.tmp, "nonexistent", "dir", "inv.sqlite")
        url = "sqlite:///" + typo
        for args in (("volume", "list"), ("snapshot", "list"), ("group", "list"),
                     ("volume", "show", "v"), ("volume", "delete", "v"),
                     ("volume", "create", "--size", "1", "--snapshot", "s"),
                     ("stats",), ("reconcile",)):
            result = self.xensm(*args, "--db-url", url, expect=xensm.EXIT_CONFIG)
            self.assertIn("No xensm inventory at %s" % url, result.err)
        # Even a command that makes something does not make the directory.
        result = self.xensm("volume", "create", "--size", "1", "--db-url", url,
                            expect=xensm.EXIT_CONFIG)
        self.assertIn("unable to open database file", result.err)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "nonexistent")))
        self.assertEqual([], [v for v in self.tagged_vdis(self.storage())])
        # check says where the inventory would be, and that there is none yet.
        self.assertIn("(none yet: the first volume create makes it)",
                      self.xensm("check", "--db-url", url).out)
        # A file in an existing directory is a new inventory for a create only.
        fresh = "sqlite:///%s" % os.path.join(self.tmp, "fresh.sqlite")
        self.xensm("volume", "list", "--db-url", fresh, expect=xensm.EXIT_CONFIG)
        self.assertEqual(1, self.j("volume", "create", "--size", "1", "--db-url",
                                   fresh)["size_gb"])
        self.assertEqual(1, len(self.j("volume", "list", "--db-url", fresh)))


class OneVerbAtATimeTest(test_cli.CliTestCase):
    """Verbs racing for one object in separate processes (SQLite inventory)."""

    def setUp(self) -> None:
        super().setUp()
        self.vol = self.j("volume", "create", "--size", "1", "--name", "v")

    def test_two_extends_of_one_volume_one_is_refused(self) -> None:
        self.control.inject_fault("VDI.resize", latency=2, times=2)
        results = self.finish(*[self.spawn("volume", "extend", "v", "2") for _ in range(2)])
        self.assertEqual([0, xensm.EXIT_REFUSED], sorted(r.code for r in results))
        refused = [r for r in results if r.code][0]
        self.assertTrue("is extending" in refused.err or "extend needs a larger size"
                        in refused.err, refused.err)
        shown = self.j("volume", "show", "v")
        self.assertEqual(("available", 2), (shown["status"], shown["size_gb"]))

    def test_snapshot_racing_delete_never_leaves_a_snapshot_of_a_deleted_volume(self) -> None:
        for trial in range(2):
            vol = self.j("volume", "create", "--size", "1", "--name", "t%d" % trial)
            self.control.inject_fault("VDI.snapshot", latency=2)
            snap = self.spawn("snapshot", "create", vol["id"])
            self.wait_for_status(vol["id"], "snapshotting")
            delete = self.spawn("volume", "delete", vol["id"])
            snapped, deleted = self.finish(snap, delete)
            self.assertEqual((0, xensm.EXIT_REFUSED), (snapped.code, deleted.code),
                             deleted.err)
            # Refused by the claim, or by the snapshot already recorded.
            self.assertTrue("is snapshotting" in deleted.err or "has 1 snapshot" in
                            deleted.err, deleted.err)
            self.assertEqual("available", self.j("volume", "show", vol["id"])["status"])
            # The other order: a delete under way refuses the snapshot.
            # The 2nd destroy is the volume's (its snapshot goes first).
            self.control.inject_fault("VDI.destroy", latency=2, nth=2)
            delete = self.spawn("volume", "delete", vol["id"], "--cascade")
            self.wait_for_status(vol["id"], "deleting")
            snapped, deleted = self.finish(self.spawn("snapshot", "create", vol["id"]),
                                           delete)
            self.assertEqual((xensm.EXIT_REFUSED, 0), (snapped.code, deleted.code),
                             snapped.err)
            self.assertEqual([], self.j("snapshot", "list", "--volume", vol["id"]))
            self.assertEqual("deleted", self.j("volume", "show", vol["id"])["status"])

    def test_a_snapshot_being_reverted_to_cannot_be_deleted(self) -> None:
        snap = self.j("snapshot", "create", "v", "--name", "s")
        self.control.set_latency(1.0)           # a revert of several calls, slowed
        revert = self.spawn("volume", "revert", "v", "--snapshot", "s")
        self.wait_for_status(snap["id"], "restoring", kind="snapshot")
        (deleted,) = self.finish(self.spawn("snapshot", "delete", "s"))
        (reverted,) = self.finish(revert)
        self.control.set_latency(0)
        self.assertEqual((0, xensm.EXIT_REFUSED), (reverted.code, deleted.code), deleted.err)
        self.assertIn("is restoring", deleted.err)
        self.assertEqual("available", self.j("snapshot", "show", "s")["status"])
        self.assertEqual("available", self.j("volume", "show", "v")["status"])

    def wait_for_status(self, obj_id: str, status: str, kind: str = "volume") -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.j(kind, "show", obj_id)["status"] == status:
                return
            time.sleep(0.05)
        self.fail("%s %s never became %s" % (kind, obj_id, status))


class InterruptedCloneTest(test_cli.CliTestCase):
    # A lost VDI.clone answer leaves a copy named after its source; it carries
    # the mark of what it was made for, so the failed clone's undo, or its
    # delete, removes it (issue 12, items 2 and 3). The service passes what
    # the driver needs: the clone's source_volid / snapshot_id, and
    # provider_id only if recorded.
    def test_deleting_an_interrupted_clone_removes_its_copy(self) -> None:
        src = self.j("volume", "create", "--size", "1", "--name", "src")
        drv = self.storage()
        # XAPI makes the copy; its answer never comes back.
        self.control.inject_fault("VDI.clone", drop="after")
        (cloned,) = self.finish(self.spawn("volume", "clone", "src", "--name", "copy"))
        clones = [v for v in self.j("volume", "list") if v["name"] == "copy"]
        for clone in clones:
            self.xensm("volume", "delete", clone["id"])
        self.assertEqual({src["provider_id"]: src["id"]}, self.tagged_vdis(drv),
                         "clone exit %d: %s" % (cloned.code, cloned.err))
        user_vdis = [v.uuid for v in drv.backend.storage.sr_vdis(drv.backend.sr_ref)
                     if v.managed]
        self.assertEqual([src["provider_id"]], user_vdis)


class SolidFireReconcileSafetyTest(test_cli.CliTestCase):
    """Reconcile on a back end with an SR per volume (issue 13, item 9)."""

    SIM_KWARGS = test_cli.SolidFireTest.SIM_KWARGS
    SR_TYPE = test_cli.SolidFireTest.SR_TYPE

    def setUp(self) -> None:
        super().setUp()
        self.live = [self.j("volume", "create", "--size", "1", "--name", "v%d" % i)
                     for i in range(2)]
        self.snap = self.j("snapshot", "create", "v0", "--name", "s0")
        self.drv = self.storage()
        self.backend = self.drv.backend

    def array_volume(self, volume_id: str) -> Any:
        return self.backend.target.find_array_volume(volume_id, include_retired=True)

    def assert_live_intact(self) -> None:
        for vol in self.live:
            self.assertIsNotNone(self.backend.target.find_array_volume(vol["id"]), vol["name"])
            self.assertIsNotNone(self.backend.target.find_lun_sr(vol["id"]), vol["name"])
        self.assertEqual([self.snap["provider_id"]],
                         [str(s["snapshotID"]) for s in self.backend.target.snapshots_of(
                             self.array_volume(self.live[0]["id"])["volumeID"])])
        self.assertEqual(xensm.EXIT_OK, self.xensm("reconcile").code)

    def foreign(self) -> Any:
        """An array volume of this account tagged by another manager."""
        return self.backend.client.call(
            "CreateVolume", name=self.backend.target.array_name("cinders"),
            accountID=self.backend.target.account_id, totalSize=base.GiB, enable512e=True,
            attributes=self.backend.target.array_attributes("cinders"))["volumeID"]

    def test_only_an_orphan_of_this_inventory_goes_and_only_with_yes(self) -> None:
        foreign = self.foreign()
        self.assertEqual(xensm.EXIT_OK, self.xensm("reconcile").code)
        left = self.j("volume", "create", "--size", "1", "--name", "left")
        gone = self.j("snapshot", "create", "v1", "--name", "gone")
        self.mark_deleted(left["id"])
        self.mark_deleted(gone["id"], cls=test_cli.models.Snapshot)
        report = self.xensm("reconcile", "--json", expect=xensm.EXIT_DRIFT).json
        self.assertEqual([("foreign_vdi", "volume", "cinders"),
                          ("orphan_vdi", "snapshot", gone["id"]),
                          ("orphan_vdi", "volume", left["id"])],
                         [(f["kind"], f["object"], f["id"]) for f in report["findings"]])
        dry = self.xensm("reconcile", "--delete-orphans", "--json",
                         expect=xensm.EXIT_DRIFT).json
        self.assertEqual(["would delete snapshot %s (a dry run: add --yes to delete)"
                          % gone["provider_id"],
                          "would delete volume %s (a dry run: add --yes to delete)"
                          % left["provider_id"]],
                         [f["action_taken"] for f in dry["findings"] if f["action_taken"]])
        left_array = self.array_volume(left["id"])
        self.assertIsNotNone(left_array)
        (done,) = self.finish(self.spawn("reconcile", "--delete-orphans", "--yes"))
        self.assertEqual(xensm.EXIT_OK, done.code, done.err)
        self.assertEqual(["deleted array snapshot %s" % gone["provider_id"],
                          "deleted array volume %d" % left_array["volumeID"]],
                         [f["action_taken"] for f in done.json["findings"]
                          if f["action_taken"]])
        self.assertIsNone(self.array_volume(left["id"]))
        self.assertIsNone(self.backend.target.find_lun_sr(left["id"]))
        self.assertIsNotNone(self.backend.client.get_volume_by_id(foreign))
        self.assertEqual("deleted", self.j("volume", "show", left["id"])["status"])
        self.assert_live_intact()

    def test_an_empty_or_another_inventory_touches_none_of_ours(self) -> None:
        foreign = self.foreign()
        empty = "sqlite:///%s" % os.path.join(self.tmp, "empty.sqlite")
        inventory.Inventory(empty).close()
        (refused,) = self.finish(self.spawn("reconcile", "--delete-orphans", "--yes",
                                            db_url=empty))
        self.assertEqual(xensm.EXIT_REFUSED, refused.code)
        self.assertIn("has no record of anything made on back end xs", refused.err)
        other = "sqlite:///%s" % os.path.join(self.tmp, "other.sqlite")
        theirs = self.j("volume", "create", "--size", "1", "--db-url", other)
        inv = inventory.Inventory(other)
        self.addCleanup(inv.close)
        inv.update(test_cli.Volume, theirs["id"], status="deleted")
        (result,) = self.finish(self.spawn("reconcile", "--delete-orphans", "--yes",
                                           db_url=other))
        self.assertEqual(xensm.EXIT_OK, result.code, result.err)
        self.assertEqual({("foreign_vdi", v["id"]) for v in self.live}
                         | {("foreign_vdi", "cinders"), ("foreign_vdi", self.snap["id"]),
                            ("orphan_vdi", theirs["id"])},
                         {(f["kind"], f["id"]) for f in result.json["findings"]})
        self.assertIsNone(self.array_volume(theirs["id"]))
        self.assertIsNotNone(self.backend.client.get_volume_by_id(foreign))
        self.assert_live_intact()

    def test_two_reconciles_at_once_remove_an_orphan_once(self) -> None:
        left = self.j("volume", "create", "--size", "1", "--name", "left")
        left_array = self.array_volume(left["id"])
        self.mark_deleted(left["id"])
        self.control.set_latency(0.05)           # widen every window between calls
        results = self.finish(*[self.spawn("reconcile", "--delete-orphans", "--yes")
                                for _ in range(2)])
        self.control.set_latency(0)
        actions = sorted(f["action_taken"] for r in results for f in r.json["findings"]
                         if f["action_taken"])
        self.assertIn("deleted array volume %d" % left_array["volumeID"], actions)
        self.assertTrue(all(a.startswith("not deleted") for a in actions
                            if not a.startswith("deleted")), actions)
        self.assertIsNone(self.array_volume(left["id"]))
        self.assert_live_intact()

    def test_an_attached_orphan_stays(self) -> None:
        left = self.j("volume", "create", "--size", "1", "--name", "left")
        self.mark_deleted(left["id"])
        pool = self.drv.pool
        vbd = base.attach_to_dom0(
            pool, self.backend.storage.vdi_by_uuid(left["provider_id"]).ref)
        report = self.xensm("reconcile", "--delete-orphans", "--yes", "--json",
                            expect=xensm.EXIT_DRIFT).json
        (action,) = [f["action_taken"] for f in report["findings"] if f["action_taken"]]
        self.assertIn("not deleted", action)
        self.assertIn("attached to a VM", action)
        self.assertIsNotNone(self.array_volume(left["id"]))
        self.assertIsNotNone(self.backend.target.find_lun_sr(left["id"]))
        pool.call("VBD.unplug", vbd)
        pool.call("VBD.destroy", vbd)
        self.xensm("reconcile", "--delete-orphans", "--yes")
        self.assertIsNone(self.array_volume(left["id"]))
        self.assert_live_intact()
