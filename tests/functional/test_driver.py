"""XenAPISMDriver on every SM-native SR type, against the simulator.

For each of nfs, lvm, lvmoiscsi, lvmohba, netapp and equal: every verb end
to end, content checked byte for byte through the data path, the XAPI round
trips each verb costs, and a failure injected at every step of every flow,
after which the SR must hold exactly what it held before.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from unittest import mock

import testtools.content

from tests.functional import base
from xensm_driver import driver as driver_mod
from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.backends import base as backend_base
from xensm_driver.flows import target as targets
from xensm_driver.flows import vdi as vdis
from xensm_driver.xapi import storage as storage_mod

A = base.pattern("A", 2 * base.MiB)
B = base.pattern("B", 2 * base.MiB)
C = base.pattern("C", 2 * base.MiB)
INJECTED = ["INTERNAL_ERROR", "fault injected by the test"]


class VerbsMixin:
    """The behaviour every SM-native back end must show."""

    # -- lifecycle and content ------------------------------------------------

    def test_snapshot_keeps_old_bytes_and_revert_restores_them(self: Any) -> None:
        vol = self.create_volume()
        self.write(vol, A)
        snap = self.snapshot_of(vol)
        self.write(vol, B)
        self.assertEqual(B, self.read(vol, len(B)))
        update = self.driver.revert_to_snapshot(None, vol, snap)
        # The volume's VDI was swapped for a clone of the snapshot: the
        # recorded provider_id still finds it, and the update names it.
        self.assertIsNone(self.find(vol))
        self.assertEqual(update["provider_id"],
                         self.driver.initialize_connection(vol, {})["data"]["vdi_uuid"])
        vol.update(update)
        self.assertEqual(A, self.read(vol, len(A)))

    def test_revert_restores_the_snapshot_over_the_whole_virtual_size(self: Any) -> None:
        vol = self.create_volume()
        self.write(vol, A[:base.MiB])
        snap = self.snapshot_of(vol)
        zeros = bytes(2 * base.MiB)
        self.write(vol, B + zeros + C)          # over A, and past what A covered
        vol.update(self.driver.revert_to_snapshot(None, vol, snap))
        self.assertEqual(A[:base.MiB] + bytes(5 * base.MiB), self.read(vol, 6 * base.MiB))
        self.assertEqual(A[:base.MiB], self.read(snap, base.MiB))   # the snapshot stays
        self.write(vol, C)                                          # and the volume is usable
        self.assertEqual(C, self.read(vol, len(C)))

    def test_revert_to_a_snapshot_of_an_unwritten_volume_empties_it(self: Any) -> None:
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        self.write(vol, B)
        self.driver.revert_to_snapshot(None, vol, snap)     # the old provider_id is kept
        self.assertEqual(bytes(len(B)), self.read(
            dict(vol, provider_id=self.driver.backend.locate(driver_mod.volume_spec(vol))),
            len(B)))
        self.driver.delete_snapshot(snap)
        self.driver.delete_volume(vol)                      # by the recorded provider_id
        self.control.run_gc()
        self.assertEqual({}, {k: v for k, v in self.sr_state().items() if v[3]})

    def test_a_recorded_uuid_that_is_gone_never_leads_to_another_vdi(self: Any) -> None:
        vol = self.create_volume()
        twin = self.volume(id=vol["id"])                 # same name and tag, its own VDI
        storage = self.driver.backend.storage
        other = storage.create_vdi(self.driver.backend.sr_ref, base.MiB * 8,
                                   "volume-%s" % vol["id"], identity.volume(vol["id"]).tags())
        self.driver.delete_volume(vol)                   # destroys what it recorded...
        self.assertIsNotNone(storage.get_vdi(other))
        self.driver.delete_volume(vol)                   # ...and, again, nothing else
        self.assertIsNotNone(storage.get_vdi(other))
        self.assertRaises(exception.NotFound, self.driver.initialize_connection, vol, {})
        self.assertIsNotNone(twin)

    def test_a_tagged_vdi_on_another_sr_is_never_used(self: Any) -> None:
        vol = self.create_volume()
        storage = self.driver.backend.storage
        other_sr = self.nfs_sr(storage)
        copy_ref = storage.create_vdi(other_sr, base.MiB * 8, "volume-%s" % vol["id"],
                                      identity.volume(vol["id"]).tags())
        elsewhere = dict(vol, provider_id=storage.get_vdi(copy_ref).uuid)
        for verb in (lambda: self.driver.delete_volume(elsewhere),
                     lambda: self.driver.extend_volume(elsewhere, 2),
                     lambda: self.driver.initialize_connection(elsewhere, {})):
            self.assertRaises(exception.IdentityMismatch, verb)
        self.assertEqual(base.MiB * 8, storage.get_vdi(copy_ref).virtual_size)
        self.assertIsNotNone(self.find(vol))

    def test_clone_of_snapshot_holds_its_bytes_while_source_changes(self: Any) -> None:
        vol = self.create_volume()
        self.write(vol, A)
        snap = self.snapshot_of(vol)
        clone = self.volume(size=2)
        clone.update(self.driver.create_volume_from_snapshot(clone, snap))
        self.write(vol, B)
        self.assertEqual(A, self.read(clone, len(A)))
        self.assertEqual(2 * base.GiB, self.find(clone).virtual_size)
        copy = self.volume(size=1)
        copy.update(self.driver.create_cloned_volume(copy, vol))
        self.write(vol, C)
        self.assertEqual(B, self.read(copy, len(B)))
        self.assertEqual(A, self.read(clone, len(A)))

    def test_delete_leaves_nothing_tagged(self: Any) -> None:
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        clone = self.volume()
        clone.update(self.driver.create_volume_from_snapshot(clone, snap))
        for obj, delete in ((clone, self.driver.delete_volume),
                            (snap, self.driver.delete_snapshot),
                            (vol, self.driver.delete_volume)):
            delete(obj)
        self.control.run_gc()
        leftovers = [v for v in self.sr_state().values()
                     if any(k.startswith("xensm-") for k, _ in v[1])]
        self.assertEqual([], leftovers)

    def test_parent_with_snapshots_can_be_deleted(self: Any) -> None:
        vol = self.create_volume()
        self.write(vol, A)
        snap = self.snapshot_of(vol)
        self.driver.delete_volume(vol)
        self.assertEqual(A, self.read(snap, len(A)))

    def test_extend_grows_and_shrink_is_refused_before_any_call(self: Any) -> None:
        vol = self.create_volume()
        self.driver.extend_volume(vol, 3)
        self.assertEqual(3 * base.GiB, self.find(vol).virtual_size)
        self.driver.pool.counter.reset()
        self.assertRaises(exception.InvalidInput, self.driver.extend_volume, vol, 2)
        self.assertNotIn("VDI.resize", self.calls())

    # -- identity and idempotency ---------------------------------------------

    def test_vdis_are_named_and_tagged(self: Any) -> None:
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        for obj, ident in ((vol, identity.volume(vol["id"])),
                           (snap, identity.snapshot(snap["id"]))):
            vdi = self.find(obj)
            self.assertEqual(ident.name_label, vdi.name_label)
            self.assertEqual(ident.id, vdi.other_config[ident.tag_key])
            self.assertEqual("%s/%s" % (self.sr_uuid, vdi.uuid), obj["provider_location"])
        self.assertNotIn(identity.VOLUME_TAG, self.find(snap).other_config)

    def test_retried_create_keeps_exactly_one_vdi(self: Any) -> None:
        vol = self.volume()
        first = self.driver.create_volume(dict(vol))
        second = self.driver.create_volume(dict(vol))
        self.assertEqual(first, second)
        named = self.driver.backend.storage.find_vdis(
            self.driver.backend.sr_ref, "volume-%s" % vol["id"])
        self.assertEqual(1, len(named))

    def test_create_whose_answer_was_lost_is_found_not_duplicated(self: Any) -> None:
        vol = self.volume()
        self.control.inject_fault("VDI.create", drop="after")
        self.assertRaises(exception.XapiConnectionError, self.driver.create_volume, dict(vol))
        update = self.driver.create_volume(dict(vol))    # the caller's retry
        named = self.driver.backend.storage.find_vdis(
            self.driver.backend.sr_ref, "volume-%s" % vol["id"])
        self.assertEqual([update["provider_id"]], [v.uuid for v in named])

    def test_delete_of_missing_vdi_succeeds(self: Any) -> None:
        self.driver.delete_volume(self.volume())
        self.driver.delete_snapshot({"id": str(uuid.uuid4()), "volume_id": "x",
                                     "volume_size": 1})

    def test_delete_refuses_a_vdi_that_is_not_the_volume(self: Any) -> None:
        mine, other = self.create_volume(), self.create_volume()
        impostor = dict(mine, provider_id=other["provider_id"])
        self.assertRaises(exception.IdentityMismatch, self.driver.delete_volume, impostor)
        self.assertIsNotNone(self.find(other))

    def test_attached_volume_cannot_be_deleted_or_reverted(self: Any) -> None:
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        vbd = self.attach(vol)
        self.assertRaises(exception.InUse, self.driver.revert_to_snapshot, None, vol, snap)
        self.assertRaises(exception.XapiInUse, self.driver.delete_volume, vol)
        self.assertRaises(exception.UnsupportedOperation, self.driver.extend_volume, vol, 2)
        self.detach(vbd)
        self.driver.delete_volume(vol)

    # -- round trips ----------------------------------------------------------

    def test_round_trips_per_verb(self: Any) -> None:
        counter = self.driver.pool.counter
        vol = self.volume()

        def cost(fn: Callable[[], Any]) -> int:
            counter.reset()
            result = fn()
            if isinstance(result, dict):
                vol_or_snap.update(result)
            return counter.total()

        vol_or_snap = vol
        # create: claim, create, identify, release.
        self.assertEqual(4, cost(lambda: self.driver.create_volume(vol)))
        snap = {"id": str(uuid.uuid4()), "volume": vol, "volume_size": 1}
        vol_or_snap = snap
        # find, mark, snapshot, name, tag, unmark, identify.
        self.assertEqual(7, cost(lambda: self.driver.create_snapshot(snap)))
        clone = self.volume()
        vol_or_snap = clone
        chain = 1 if self.driver.backend.can(backend_base.VHD_CHAIN) else 0
        self.assertEqual(7 + chain,     # the same, and the chain's depth
                         cost(lambda: self.driver.create_volume_from_snapshot(clone, snap)))
        vol_or_snap = vol
        # both VDIs in one lookup, (chain), mark, clone, name, tag, read,
        # unmark, swap.
        self.assertEqual(8 + chain, cost(lambda: self.driver.revert_to_snapshot(
            None, vol, snap)))
        self.assertEqual(3, cost(lambda: self.driver.get_volume_stats(True)))
        self.assertEqual(1, cost(lambda: self.driver.initialize_connection(vol, {})))
        self.assertEqual(2, cost(lambda: self.driver.extend_volume(vol, 2)))
        self.assertEqual(2, cost(lambda: self.driver.delete_snapshot(snap)))
        self.assertEqual(2, cost(lambda: self.driver.delete_volume(vol)))
        self.assertEqual(0, counter.snapshot().get("session.login_with_password", 0))

    # -- stats and attach -----------------------------------------------------

    def test_stats_report_capacity_from_the_sr(self: Any) -> None:
        stats = self.driver.get_volume_stats(True)
        for key in ("volume_backend_name", "vendor_name", "driver_version",
                    "storage_protocol", "total_capacity_gb", "free_capacity_gb",
                    "provisioned_capacity_gb", "thin_provisioning_support",
                    "thick_provisioning_support", "pool_name"):
            self.assertIn(key, stats)
        self.assertGreater(stats["total_capacity_gb"], 0)
        self.assertEqual(self.driver.backend.thin, stats["thin_provisioning_support"])
        self.assertFalse(stats["consistent_group_snapshot_enabled"])
        before = stats["provisioned_capacity_gb"]
        vol = self.create_volume(size=4)
        self.snapshot_of(vol)
        after = self.driver.get_volume_stats(True)["provisioned_capacity_gb"]
        self.assertGreaterEqual(after - before, 4)

    def test_connection_info_carries_no_secret(self: Any) -> None:
        vol = self.create_volume()
        info = self.driver.initialize_connection(vol, {"host": "h"})
        self.assertEqual("xensm", info["driver_volume_type"])
        self.assertEqual((self.sr_uuid, vol["provider_id"], self.SR_TYPE),
                         (info["data"]["sr_uuid"], info["data"]["vdi_uuid"],
                          info["data"]["sr_type"]))
        text = repr(info)
        for secret in self.driver.backend.secret_values().values():
            self.assertNotIn(secret, text)
        self.assertNotIn(base.PASSWORD, text)
        self.assertNotIn("password", text.lower())

    # -- manage ---------------------------------------------------------------

    def test_manage_and_unmanage_an_existing_vdi(self: Any) -> None:
        storage = self.driver.backend.storage
        ref = storage.create_vdi(self.driver.backend.sr_ref, 3 * base.GiB // 2,
                                 "legacy-disk", {"owner": "ops"})
        legacy = storage.get_vdi(ref)
        listed = self.driver.get_manageable_volumes([], None, 100, 0, ["size"], ["asc"])
        entry = [e for e in listed if e["reference"]["source-id"] == legacy.uuid][0]
        self.assertTrue(entry["safe_to_manage"])
        self.assertEqual(2, entry["size"])
        vol = self.volume(size=2)
        ref_spec = {"source-name": "legacy-disk"}
        self.assertEqual(2, self.driver.manage_existing_get_size(vol, ref_spec))
        vol.update(self.driver.manage_existing(vol, ref_spec))
        managed = self.find(vol)
        self.assertEqual((legacy.uuid, "volume-%s" % vol["id"], "ops", 2 * base.GiB),
                         (managed.uuid, managed.name_label, managed.other_config["owner"],
                          managed.virtual_size))
        listed = self.driver.get_manageable_volumes([vol], None, 100, 0, [], [])
        entry = [e for e in listed if e["reference"]["source-id"] == legacy.uuid][0]
        self.assertEqual((False, vol["id"]), (entry["safe_to_manage"], entry["cinder_id"]))
        self.driver.unmanage(vol)
        self.assertNotIn(identity.VOLUME_TAG, storage.get_vdi(ref).other_config)

    def test_snapshots_and_base_copies_cannot_be_managed(self: Any) -> None:
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        err = self.assertRaises(exception.InvalidInput, self.driver.manage_existing,
                                self.volume(), {"source-id": snap["provider_id"]})
        self.assertIn("snapshot", str(err))

    # -- atomicity ------------------------------------------------------------

    def test_a_failure_at_any_step_leaves_the_sr_as_it_was(self: Any) -> None:
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        storage = self.driver.backend.storage

        def adoptable() -> Callable[[], Any]:
            ref = storage.create_vdi(self.driver.backend.sr_ref, base.MiB * 8, "adopt-me", {})
            source = {"source-id": storage.get_vdi(ref).uuid}
            return lambda: self.driver.manage_existing(self.volume(size=1), source)

        # Each entry prepares what the verb needs (outside the comparison)
        # and returns the verb to run.
        verbs: dict[str, Callable[[], Callable[[], Any]]] = {
            "create_volume": lambda: lambda: self.driver.create_volume(self.volume()),
            "create_snapshot": lambda: lambda: self.driver.create_snapshot(
                {"id": str(uuid.uuid4()), "volume": vol, "volume_size": 1}),
            "create_volume_from_snapshot": lambda: lambda: (
                self.driver.create_volume_from_snapshot(self.volume(size=2), snap)),
            "create_cloned_volume": lambda: lambda: self.driver.create_cloned_volume(
                self.volume(size=2), vol),
            "extend_volume": lambda: lambda: self.driver.extend_volume(
                vol, self.find(vol).virtual_size // base.GiB + 1),
            "manage_existing": adoptable,
            "revert_to_snapshot": lambda: lambda: self.driver.revert_to_snapshot(
                None, vol, snap),
        }
        counter = self.driver.pool.counter
        for verb, prepare in verbs.items():
            run = prepare()
            counter.reset()
            run()                                   # learn the calls it makes
            steps = [(m, n) for m, count in sorted(counter.snapshot().items())
                     for n in range(1, count + 1)]
            self.assertTrue(steps, verb)
            for method, nth in steps:
                run = prepare()
                before = self.settled_state()
                self.control.inject_fault(method, error=INJECTED, nth=nth)
                try:
                    run()
                except exception.XensmError:
                    self.control.clear_faults()
                    self.assertEqual(before, self.settled_state(),
                                     "%s: SR changed after %s #%d failed" % (verb, method, nth))
                    continue
                # Only a step that must not undo what is done may absorb a
                # failure: giving back a create's claim (tried again).
                self.control.clear_faults()
                self.assertEqual(("create_volume", "SR.remove_from_other_config"),
                                 (verb, method), "%s survived a failed %s" % (verb, method))
                self.assertEqual((), self.settled_state()["sr_other_config"])

    # -- helpers --------------------------------------------------------------

    def find(self: Any, obj: dict[str, Any]) -> Any:
        return self.driver.backend.storage.vdi_by_uuid(obj["provider_id"])

    def settled_state(self: Any) -> dict[str, tuple[Any, ...]]:
        """The SR's VDIs and its other_config (where create claims are held)."""
        self.control.run_gc()
        backend = self.driver.backend
        return dict(self.sr_state(), sr_other_config=tuple(sorted(
            backend.storage.other_config("SR", backend.sr_ref).items())))

    def attach(self: Any, obj: dict[str, Any]) -> str:
        return base.attach_to_dom0(self.driver.pool, self.find(obj).ref)

    def detach(self: Any, vbd: str) -> None:
        self.driver.pool.call("VBD.unplug", vbd)
        self.driver.pool.call("VBD.destroy", vbd)


class TestNFS(VerbsMixin, base.DriverTestCase):
    SR_TYPE = "nfs"


class TestLVM(VerbsMixin, base.DriverTestCase):
    SR_TYPE = "lvm"


class TestLVMoISCSI(VerbsMixin, base.DriverTestCase):
    SR_TYPE = "lvmoiscsi"


class TestLVMoHBA(VerbsMixin, base.DriverTestCase):
    SR_TYPE = "lvmohba"


class TestNetApp(VerbsMixin, base.DriverTestCase):
    SR_TYPE = "netapp"


class TestEqualLogic(VerbsMixin, base.DriverTestCase):
    SR_TYPE = "equal"


class TestLostCopyAnswers(base.DriverTestCase):
    """XAPI made a copy but its answer was lost: the copy carries the
    source's name, tags and stamp, and must never be taken for the source."""

    SR_TYPE = "nfs"

    def test_a_stray_snapshot_is_never_taken_for_its_volume(self) -> None:
        vol = self.create_volume()
        self.control.inject_fault("VDI.snapshot", drop="after")
        self.assertRaises(exception.XapiConnectionError, self.snapshot_of, vol)
        by_name = dict(vol, provider_id=None)            # a lookup by name alone
        self.assertEqual(vol["provider_id"], self.driver.backend.locate(
            driver_mod.volume_spec(by_name)))

    def test_a_lost_clone_answer_is_undone_by_the_failed_verb(self) -> None:
        vol = self.create_volume()
        before = self.sr_state()
        clone = dict(self.volume(), source_volid=vol["id"])
        self.control.inject_fault("VDI.clone", drop="after")
        self.assertRaises(exception.XapiConnectionError, self.driver.create_cloned_volume,
                          clone, vol)
        # The flow's own undo found the copy by its mark and destroyed it.
        self.assertEqual(before, self.settled())

    def test_a_copy_whose_undo_failed_is_removed_by_the_later_delete(self) -> None:
        vol = self.create_volume()
        before = self.sr_state()
        clone = dict(self.volume(), source_volid=vol["id"])
        # The answer to the clone is lost and so is every call of the undo (a
        # master restart): the copy stays, named as its source and marked.
        self.control.inject_fault("VDI.clone", drop="after")
        self.control.inject_fault("VDI.get_all_records_where", drop="before", nth=2,
                                  times=10)
        self.control.inject_fault("VDI.remove_from_other_config", drop="before")
        self.assertRaises(exception.XensmError, self.driver.create_cloned_volume, clone, vol)
        self.control.clear_faults()
        self.assertNotEqual(before, self.settled())
        self.assertEqual(vol["provider_id"], self.driver.backend.locate(
            driver_mod.volume_spec(dict(vol, provider_id=None))))   # never the source
        self.driver.delete_volume(clone)
        self.assertEqual(before, self.settled())

    def test_a_copy_left_between_naming_and_tagging_is_removed_by_the_delete(self) -> None:
        vol = self.create_volume()
        before = self.sr_state()
        snap = {"id": str(uuid.uuid4()), "volume": vol, "volume_size": 1}
        # An outage after the copy was named and before it was tagged, and
        # during the undo's VDI.destroy.
        self.control.inject_fault("VDI.set_other_config", drop="before")
        self.control.inject_fault("VDI.destroy", drop="before")
        self.assertRaises(exception.XensmError, self.driver.create_snapshot, snap)
        self.control.clear_faults()
        self.assertNotEqual(before, self.settled())
        self.driver.delete_snapshot(snap)
        self.assertEqual(before, self.settled())

    def test_deleting_the_source_removes_copies_of_it_never_finished(self) -> None:
        vol = self.create_volume()
        self.control.inject_fault("VDI.snapshot", drop="after")
        self.control.inject_fault("VDI.get_all_records_where", drop="before", nth=2,
                                  times=10)
        self.assertRaises(exception.XapiConnectionError, self.snapshot_of, vol)
        self.control.clear_faults()
        self.assertEqual(2, len(self.settled()))         # the volume and the stray
        self.driver.delete_volume(vol)
        self.assertEqual({}, self.settled())

    def settled(self) -> dict[str, Any]:
        self.control.run_gc()
        return {k: v for k, v in self.sr_state().items() if v[3]}   # managed VDIs


class TestCallTimeout(base.DriverTestCase):
    """A copy XAPI makes while the driver has given up waiting for it."""

    SR_TYPE = "nfs"
    EXTRA_OPTIONS = {"xenapi_call_timeout": 1}

    def test_a_snapshot_answered_after_the_timeout_leaves_nothing(self) -> None:
        vol = self.create_volume()
        before = self.sr_state()
        snap = {"id": str(uuid.uuid4()), "volume": vol, "volume_size": 1}
        self.control.inject_fault("VDI.snapshot", hang=3)
        self.assertRaises(exception.XapiTimeout, self.driver.create_snapshot, snap)
        self.driver.delete_snapshot(snap)
        self.control.run_gc()
        self.assertEqual(before, self.sr_state())

    def test_a_create_answered_after_the_timeout_leaves_nothing(self) -> None:
        # XAPI makes the VDI after the driver gave up: the failed create's
        # undo watches for it and destroys it, so a delete that ran first
        # (Cinder deletes a volume whose create failed) leaves nothing.
        before = self.sr_state()
        vol = self.volume()
        self.control.inject_fault("VDI.create", hang=2)
        self.assertRaises(exception.XapiTimeout, self.driver.create_volume, vol)
        self.control.clear_faults()
        self.control.run_gc()
        self.assertEqual(before, self.sr_state())
        self.assertEqual({}, self.driver.backend.storage.other_config(
            "SR", self.driver.backend.sr_ref))                # the claim given back

    def test_a_claim_given_back_late_never_undoes_the_create(self) -> None:
        # The release reaches XAPI, its answer does not come back in time;
        # the second creator, let in by it, is handed the first's VDI.
        drivers = [self.driver, self.make_driver()]
        self.control.inject_fault("SR.remove_from_other_config", hang=2)
        assert_one_vdi_for_all(self, drivers, self.volume())


def assert_one_vdi_for_all(test: base.DriverTestCase, drivers: list[Any],
                           vol: dict[str, Any]) -> None:
    """Each driver creates ``vol`` at once; all get the one VDI on the SR."""
    results: list[Any] = [None] * len(drivers)

    def create(i: int) -> None:
        results[i] = drivers[i].create_volume(dict(vol))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(drivers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    test.assertEqual([results[0]] * len(drivers), results)
    named = test.driver.backend.storage.find_vdis(test.driver.backend.sr_ref,
                                                  "volume-%s" % vol["id"])
    test.assertEqual([results[0]["provider_id"]], [v.uuid for v in named])


class TestConcurrentCreates(base.DriverTestCase):
    """Two driver instances (an active-active pair) create the same id."""

    SR_TYPE = "nfs"

    def test_concurrent_creates_of_one_id_end_with_one_vdi_for_every_caller(self) -> None:
        drivers = [self.driver, self.make_driver()]
        for _ in range(10):
            assert_one_vdi_for_all(self, drivers, self.volume())
        self.assertEqual({}, self.driver.backend.storage.other_config(
            "SR", self.driver.backend.sr_ref))                # every claim given back

    def test_a_duplicate_whose_destroy_failed_once_is_still_destroyed(self) -> None:
        vol = self.create_volume()
        self.control.inject_fault("VDI.destroy", error=INJECTED)
        self.assertEqual(vol["provider_id"], self.driver.create_volume(dict(vol))["provider_id"])
        named = self.driver.backend.storage.find_vdis(
            self.driver.backend.sr_ref, "volume-%s" % vol["id"])
        self.assertEqual([vol["provider_id"]], [v.uuid for v in named])


class TestSizes(base.DriverTestCase):
    """Sizes are whole GiB above 0, refused before any call otherwise."""

    SR_TYPE = "nfs"

    def test_bad_sizes_are_refused_naming_the_argument_before_any_call(self) -> None:
        vol = self.create_volume()
        counter = self.driver.pool.counter
        for bad in ("1.5", "abc", float("nan"), 0, None, -1, 1.5, True, ""):
            counter.reset()
            err = self.assertRaises(exception.InvalidInput, self.driver.create_volume,
                                    self.volume(size=bad))
            self.assertIn("size of volume", str(err))
            err = self.assertRaises(exception.InvalidInput, self.driver.extend_volume,
                                    vol, bad)
            self.assertIn("new size of volume %s" % vol["id"], str(err))
            self.assertEqual(0, counter.total(), bad)
        self.assertIsNotNone(self.driver.create_volume(self.volume(size="2")))


class TestRevertWhoseSwapIsUnsettled(base.DriverTestCase):
    """The old VDI's destroy loses its answer and the lookup that would
    settle it fails too: the revert keeps the clone (issue 15 review)."""

    SR_TYPE = "nfs"

    def test_swap_answer_lost_and_its_lookup_failing_never_loses_the_volume(self) -> None:
        vol = self.create_volume()
        self.write(vol, A)
        snap = self.snapshot_of(vol)
        self.write(vol, B)
        # SwapOutTask: VDI.destroy of the old VDI runs, its answer is lost
        # (a master restart); the lookup that should settle it
        # (vdi_by_uuid) cannot reach XAPI either.
        self.control.inject_fault("VDI.destroy", drop="after")
        lost = exception.XapiConnectionError(url="x", method="VDI.get_all_records_where",
                                             reason="master restarting", sent=False)
        with mock.patch.object(storage_mod.Storage, "vdi_by_uuid", side_effect=lost):
            self.assertRaises(exception.XensmError, self.driver.revert_to_snapshot,
                              None, vol, snap)
        self.control.clear_faults()
        # Whatever the outcome, the volume must still have a VDI: the old one
        # (if the destroy had not landed) or the snapshot's clone.
        spec = driver_mod.volume_spec(vol)
        try:
            self.driver.backend.locate(spec)
        except exception.VolumeNotFound:
            self.fail("revert lost the volume: its old VDI was destroyed and the "
                      "snapshot's clone undone")


class TestLateCreateWatchStaysWithinTheClaim(base.DriverTestCase):
    """CreateVdiTask's watch for a late VDI ends while the create's claim is
    surely held: a retry let in once the lease ran out never has its VDI
    destroyed by that watch (issue 15 review)."""

    SR_TYPE = "nfs"

    def test_a_retry_let_in_by_the_lease_never_gets_a_vdi_the_watch_destroys(self) -> None:
        lease = 4.0
        for p_ in (mock.patch.object(targets, "lease", lambda *a: lease),
                   mock.patch.object(vdis.CreateVdiTask, "WATCH_INTERVAL", 4.5)):
            p_.start()
            self.addCleanup(p_.stop)
        real_create = storage_mod.Storage.create_vdi
        t0 = time.monotonic()
        timeline: list[str] = []

        def create_vdi(self_: Any, *args: Any) -> Any:
            if threading.current_thread().name != "first":
                out = real_create(self_, *args)
                timeline.append("%.2f B made its VDI" % (time.monotonic() - t0))
                return out
            # A's VDI.create: XAPI takes it, the driver times out after 1 s,
            # and XAPI carries it out 3.5 s after it was sent.
            def land() -> None:
                real_create(self_, *args)
                timeline.append("%.2f A's VDI landed" % (time.monotonic() - t0))
            threading.Timer(3.5, land).start()
            time.sleep(1.0)
            raise exception.XapiTimeout(url="sim", method="VDI.create", sent=True, timeout=1)

        p_ = mock.patch.object(storage_mod.Storage, "create_vdi", create_vdi)
        p_.start()
        self.addCleanup(p_.stop)

        vol = self.volume()
        other = self.make_driver()
        errors: list[BaseException] = []

        def first() -> None:
            try:
                self.driver.create_volume(dict(vol))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        a = threading.Thread(target=first, name="first")
        a.start()
        time.sleep(0.2)
        got = other.create_volume(dict(vol))          # a retry, let in by the lease
        timeline.append("%.2f B returned %s" % (time.monotonic() - t0, got["provider_id"]))
        a.join(30)
        timeline.append("%.2f A ended: %s" % (time.monotonic() - t0, errors))
        self.addDetail("timeline", testtools.content.text_content("\n".join(timeline)))
        # B's caller records got["provider_id"]: that VDI must exist.
        self.assertIsNotNone(self.driver.backend.storage.vdi_by_uuid(got["provider_id"]),
                             "the retry was handed a VDI the first attempt's watch destroyed")
