"""XenAPISMDriver on every SM-native SR type, against the simulator.

For each of nfs, lvm, lvmoiscsi, lvmohba, netapp and equal: every verb end
to end, content checked byte for byte through the data path, the XAPI round
trips each verb costs, and a failure injected at every step of every flow,
after which the SR must hold exactly what it held before.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from tests.functional import base
from xensm_driver import driver as driver_mod
from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.backends import sm

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
        self.driver.revert_to_snapshot(None, vol, snap)
        self.assertEqual(A, self.read(vol, len(A)))
        self.assertEqual(vol["provider_id"], self.find(vol).uuid)   # identity kept

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
        self.assertEqual(2, cost(lambda: self.driver.create_volume(vol)))
        snap = {"id": str(uuid.uuid4()), "volume": vol, "volume_size": 1}
        vol_or_snap = snap
        self.assertEqual(5, cost(lambda: self.driver.create_snapshot(snap)))
        clone = self.volume()
        vol_or_snap = clone
        expected_clone = 6 if self.driver.backend.can(sm.base.VHD_CHAIN) else 5
        self.assertEqual(expected_clone,
                         cost(lambda: self.driver.create_volume_from_snapshot(clone, snap)))
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
                self.assertRaises(exception.XensmError, run)
                self.control.clear_faults()
                self.assertEqual(before, self.settled_state(),
                                 "%s: SR changed after %s #%d failed" % (verb, method, nth))

    # -- helpers --------------------------------------------------------------

    def find(self: Any, obj: dict[str, Any]) -> Any:
        return self.driver.backend.storage.vdi_by_uuid(obj["provider_id"])

    def settled_state(self: Any) -> dict[str, tuple[Any, ...]]:
        self.control.run_gc()
        return self.sr_state()

    def attach(self: Any, obj: dict[str, Any]) -> str:
        pool = self.driver.pool
        dom0 = [ref for ref, rec in pool.call("VM.get_all_records").items()
                if rec["is_control_domain"]][0]
        vbd = pool.call("VBD.create", {
            "VM": dom0, "VDI": self.find(obj).ref, "userdevice": "autodetect",
            "bootable": False, "mode": "RW", "type": "Disk", "empty": False,
            "unpluggable": True, "other_config": {}, "qos_algorithm_type": "",
            "qos_algorithm_params": {}})
        pool.call("VBD.plug", vbd)
        return vbd

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

    def test_a_stray_clone_makes_a_name_lookup_refuse_to_guess(self) -> None:
        vol = self.create_volume()
        self.control.inject_fault("VDI.clone", drop="after")
        self.assertRaises(exception.XapiConnectionError, self.driver.create_cloned_volume,
                          self.volume(), vol)
        before = self.sr_state()
        err = self.assertRaises(exception.XensmError, self.driver.delete_volume,
                                dict(vol, provider_id=None))
        self.assertIn("one creation stamp", str(err))
        self.assertEqual(before, self.sr_state())        # nothing destroyed on a guess
        self.driver.delete_volume(vol)                   # by its recorded uuid: exact
        self.assertNotIn(vol["provider_id"], self.sr_state())
