"""The SolidFire back end against the XAPI and Element simulators on one fabric.

One Element volume, one lvmoiscsi SR and one VDI per Cinder volume; array
snapshots, clones (resigned with the relvmoiscsi pack, copied without it)
and rollbacks; content checked byte for byte through the data path.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from typing import Any

from tests.functional import base
from xensm_driver import exception
from xensm_driver import identity

A = base.pattern("A", base.MiB)
B = base.pattern("B", base.MiB)
C = base.pattern("C", base.MiB)


class SolidFireTestCase(base.DriverTestCase):
    SR_TYPE = "solidfire"
    PACKS: tuple[str, ...] = ("relvmoiscsi",)

    def setUp(self) -> None:
        self.SIM_KWARGS = {"solidfire": True, "supplemental_packs": self.PACKS}
        super().setUp()
        self.array = self.sim.solidfire.control
        self.client = self.driver.backend.client

    def snapshot_spec(self, vol: dict[str, Any]) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "volume_id": vol["id"], "volume": vol,
                "volume_size": vol["size"]}

    def array_volumes(self) -> list[tuple[str, str]]:
        return sorted((v["name"], v["status"])
                      for v in self.client.call("ListVolumes")["volumes"])

    def world(self) -> dict[str, Any]:
        """What a failed verb must leave as it found: LUNs, access, SRs, VDIs."""
        storage = self.driver.backend.storage
        srs = storage.pool.call("SR.get_all_records")
        vdis = storage.pool.call("VDI.get_all_records")
        groups = self.client.call("ListVolumeAccessGroups")["volumeAccessGroups"]
        return {
            "claims": self.claims(),
            "luns": self.array_volumes(),
            "access": sorted(v for g in groups for v in g.get("volumes", [])),
            "snapshots": sorted(s["name"] for s in self.client.list_snapshots()),
            "srs": sorted(r["name_label"] for r in srs.values()),
            "vdis": sorted((r["name_label"], r["uuid"]) for r in vdis.values()
                           if r["managed"]),
        }


    def claims(self) -> list[str]:
        """Create claims held on the pool (flows.claims.ClaimTask)."""
        pool = self.driver.backend.storage.pool
        (pool_ref,) = pool.call("pool.get_all")
        return sorted(k for k in pool.call("pool.get_other_config", pool_ref)
                      if k.startswith(identity.CLAIM_PREFIX))


class TestSolidFireVerbs(SolidFireTestCase):

    def test_snapshot_overwrite_revert_gives_the_old_bytes(self) -> None:
        vol = self.create_volume()
        self.write(vol, A)
        snap = self.snapshot_of(vol)
        self.write(vol, B)
        self.driver.revert_to_snapshot(None, vol, snap)
        self.assertEqual(A, self.read(vol, len(A)))
        # Same VDI after the SR came back, found by its recorded uuid.
        self.assertEqual(A, self.read({"provider_id": vol["provider_id"]}, len(A)))

    def test_clone_of_snapshot_keeps_its_bytes_while_the_source_changes(self) -> None:
        vol = self.create_volume()
        self.write(vol, A)
        snap = self.snapshot_of(vol)
        self.write(vol, B)
        clone = self.volume(size=2)
        clone.update(self.driver.create_volume_from_snapshot(clone, snap))
        self.write(vol, C)
        self.assertEqual(A, self.read(clone, len(A)))
        self.assertEqual(C, self.read(vol, len(C)))
        vdi = self.driver.backend.storage.vdi_by_uuid(clone["provider_id"])
        self.assertEqual((2 * base.GiB, "volume-%s" % clone["id"]),
                         (vdi.virtual_size, vdi.name_label))
        self.assertNotEqual(vol["provider_location"].split("/")[0],
                            clone["provider_location"].split("/")[0])

    def test_volume_from_a_snapshot_taken_before_its_source_grew(self) -> None:
        # The clone starts at the snapshot's size, whatever the source's size
        # is now: newSize is always sent (Cinder solidfire.py _do_clone_volume).
        vol = self.create_volume()
        self.write(vol, A)
        snap = self.snapshot_of(vol)
        self.driver.extend_volume(vol, 3)
        clone = self.volume(size=2)
        clone.update(self.driver.create_volume_from_snapshot(clone, snap))
        vdi = self.driver.backend.storage.vdi_by_uuid(clone["provider_id"])
        self.assertEqual(2 * base.GiB, vdi.virtual_size)
        self.assertEqual(A, self.read(clone, len(A)))

    def test_clone_of_volume(self) -> None:
        vol = self.create_volume()
        self.write(vol, A)
        clone = self.volume()
        clone.update(self.driver.create_cloned_volume(clone, vol))
        self.write(vol, B)
        self.assertEqual(A, self.read(clone, len(A)))

    def test_extend_grows_lun_sr_and_vdi(self) -> None:
        vol = self.create_volume()
        self.write(vol, A)
        self.driver.extend_volume(vol, 3)
        vdi = self.driver.backend.storage.vdi_by_uuid(vol["provider_id"])
        self.assertEqual(3 * base.GiB, vdi.virtual_size)
        (sf_volume,) = [v for v in self.client.call("ListVolumes")["volumes"]
                        if v["name"] == "xensm-%s" % vol["id"]]
        self.assertGreaterEqual(sf_volume["totalSize"], 3 * base.GiB)
        self.assertEqual(A, self.read(vol, len(A)))

    def test_extend_retried_after_the_scan_failed_grows_the_sr(self) -> None:
        # The LUN grew on the first attempt; only SR.scan grows the SR into
        # it (sm LVHDSR.scan), so the retry must scan although the LUN is big.
        vol = self.create_volume()
        self.write(vol, A)
        self.control.inject_fault("SR.scan", error=["INTERNAL_ERROR", "injected"])
        self.assertRaises(exception.XensmError, self.driver.extend_volume, vol, 2)
        self.control.clear_faults()
        self.driver.extend_volume(vol, 2)
        vdi = self.driver.backend.storage.vdi_by_uuid(vol["provider_id"])
        self.assertEqual(2 * base.GiB, vdi.virtual_size)
        self.assertEqual(A, self.read(vol, len(A)))

    def test_delete_retires_the_lun_until_its_last_snapshot_goes(self) -> None:
        # Not DeleteVolume: Element would purge the snapshot with the volume.
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        self.driver.delete_volume(vol)
        (sf_volume,) = self.client.call("ListVolumes")["volumes"]
        self.assertEqual(("xensm-%s" % vol["id"], "active"),
                         (sf_volume["name"], sf_volume["status"]))
        self.assertIn("xensm-retired", sf_volume["attributes"])
        self.assertEqual([], sf_volume["volumeAccessGroups"])
        self.assertNotIn("xensm-sf-volume-%s" % vol["id"], self.world()["srs"])
        self.driver.delete_snapshot(snap)
        self.assertEqual([], self.array_volumes())

    def test_group_snapshot_is_one_array_group_snapshot(self) -> None:
        vols = [self.create_volume(), self.create_volume()]
        snaps = [self.snapshot_spec(v) for v in vols]
        self.array.reset_calls()
        model, updates = self.driver.create_group_snapshot(None, {"id": "gs1"}, snaps)
        self.assertEqual(1, self.array.calls().get("CreateGroupSnapshot"))
        self.assertNotIn("CreateSnapshot", self.array.calls())
        self.assertEqual({s["id"] for s in snaps}, {u["id"] for u in updates})
        # A member can be reverted to like any snapshot.
        self.write(vols[0], B)
        member = dict(snaps[0], provider_id=updates[0]["provider_id"]
                      if updates[0]["id"] == snaps[0]["id"] else updates[1]["provider_id"])
        self.driver.revert_to_snapshot(None, vols[0], member)
        self.assertNotEqual(B, self.read(vols[0], len(B)))
        # Cinder keeps no provider_id for a group snapshot: found by name and tag.
        self.assertIn("provider_id", model)
        self.driver.delete_group_snapshot(None, {"id": "gs1"}, snaps)
        self.assertEqual([], self.client.list_snapshots())
        self.assertEqual([], self.client.call("ListGroupSnapshots")["groupSnapshots"])

    def test_deleted_members_go_with_their_group_snapshot(self) -> None:
        vols = [self.create_volume(), self.create_volume()]
        self.driver.create_group_snapshot(None, {"id": "gs2"},
                                          [self.snapshot_spec(v) for v in vols])
        for vol in vols:
            self.driver.delete_volume(vol)
        self.assertEqual(2, len(self.array_volumes()))       # retired, not deleted
        self.driver.delete_group_snapshot(None, {"id": "gs2"}, [])
        self.assertEqual([], self.array_volumes())

    def test_stats_are_thin_from_cluster_capacity(self) -> None:
        stats = self.driver.get_volume_stats(True)
        self.assertTrue(stats["thin_provisioning_support"])
        self.assertTrue(stats["consistent_group_snapshot_enabled"])
        self.assertEqual("resign", stats["xensm_clone_strategy"])
        self.assertGreater(stats["total_capacity_gb"], 0)
        self.create_volume(size=4)
        self.assertGreaterEqual(
            self.driver.get_volume_stats(True)["provisioned_capacity_gb"], 4)

    def test_connection_info_names_the_lun_sr_and_no_secret(self) -> None:
        vol = self.create_volume()
        data = self.driver.initialize_connection(vol, {})["data"]
        self.assertEqual(("lvmoiscsi", vol["provider_id"]), (data["sr_type"], data["vdi_uuid"]))
        self.assertTrue(data["SCSIid"].startswith("3"))
        self.assertNotIn(self.sim.topology["solidfire"]["password"], repr(data))
        self.assertNotIn("password", repr(data).lower())


class TestSolidFireSafety(SolidFireTestCase):

    def test_lost_create_answer_makes_no_second_volume(self) -> None:
        vol = self.volume()
        self.array.inject_fault("CreateVolume", drop_after=True)
        vol.update(self.driver.create_volume(vol))
        self.assertEqual([("xensm-%s" % vol["id"], "active")], self.array_volumes())
        self.assertEqual(1, self.array.calls()["CreateVolume"])

    def test_retried_create_reuses_the_array_volume(self) -> None:
        vol = self.volume()
        self.driver.create_volume(dict(vol))
        self.driver.create_volume(dict(vol))
        self.assertEqual([("xensm-%s" % vol["id"], "active")], self.array_volumes())

    def test_out_of_band_deleted_volume_never_deletes_another(self) -> None:
        gone, other = self.create_volume(), self.create_volume()
        (sf_gone,) = [v for v in self.client.call("ListVolumes")["volumes"]
                      if v["name"] == "xensm-%s" % gone["id"]]
        self.client.call("DeleteVolume", volumeID=sf_gone["volumeID"])
        self.client.call("PurgeDeletedVolume", volumeID=sf_gone["volumeID"])
        self.driver.delete_volume(gone)
        self.assertEqual([("xensm-%s" % other["id"], "active")], self.array_volumes())
        self.assertEqual(A, (self.write(other, A), self.read(other, len(A)))[1])

    def test_a_host_that_cannot_plug_fails_create_and_leaves_nothing(self) -> None:
        # SR.create answers with that host's PBD unplugged and no error
        # (xapi_sr.ml create): the volume must not come out 'available'.
        slave_iqn = self.sim.topology["hosts"][1]["iscsi_iqn"]
        self.client.call("RemoveInitiatorsFromVolumeAccessGroup",
                         volumeAccessGroupID=self.driver.backend.target.vag_id,
                         initiators=[slave_iqn])
        pool = self.driver.pool
        before = self.world(), len(pool.call("PBD.get_all"))
        err = self.assertRaises(exception.SRNotPlugged, self.driver.create_volume,
                                self.volume())
        self.assertIn("cannot be plugged on sim-host-1", str(err))
        self.assertEqual(before, (self.world(), len(pool.call("PBD.get_all"))))

    def test_33rd_snapshot_is_refused_before_the_array_is_asked(self) -> None:
        vol = self.create_volume()
        for _ in range(32):
            self.snapshot_of(vol)
        self.array.reset_calls()
        err = self.assertRaises(exception.UnsupportedOperation, self.driver.create_snapshot,
                                self.snapshot_spec(vol))
        self.assertIn("32 snapshots", str(err))
        self.assertNotIn("CreateSnapshot", self.array.calls())

    def test_attached_volume_is_not_reverted_or_deleted(self) -> None:
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        base.attach_to_dom0(
            self.driver.pool, self.driver.backend.storage.vdi_by_uuid(vol["provider_id"]).ref)
        before = self.world()
        self.assertRaises(exception.InUse, self.driver.revert_to_snapshot, None, vol, snap)
        self.assertRaises(exception.InUse, self.driver.delete_volume, vol)
        self.assertEqual(before, self.world())

    def test_a_failure_at_any_step_leaves_no_lun_sr_or_vdi(self) -> None:
        vol = self.create_volume()
        self.write(vol, A)
        snap = self.snapshot_of(vol)
        verbs: dict[str, Callable[[], Any]] = {
            "create_volume": lambda: self.driver.create_volume(self.volume()),
            "create_volume_from_snapshot": lambda: self.driver.create_volume_from_snapshot(
                self.volume(size=2), snap),
            "create_cloned_volume": lambda: self.driver.create_cloned_volume(
                self.volume(), vol),
            "revert_to_snapshot": lambda: self.driver.revert_to_snapshot(None, vol, snap),
        }
        xapi = self.driver.pool.counter
        for verb, run in verbs.items():
            xapi.reset()
            self.array.reset_calls()
            run()
            steps = [("xapi", m, n) for m, c in sorted(xapi.snapshot().items())
                     for n in range(1, c + 1)]
            steps += [("array", m, n) for m, c in sorted(self.array.calls().items())
                      for n in range(1, c + 1)]
            self.assertTrue(steps)
            for side, method, nth in steps:
                before = self.world()
                if side == "xapi":
                    self.control.inject_fault(method, error=["INTERNAL_ERROR", "injected"],
                                              nth=nth)
                else:
                    self.array.inject_fault(method, error_name="xInvalidParameter", nth=nth)
                try:
                    run()
                except exception.XensmError:
                    pass
                else:
                    # Only giving back a create's claim may absorb a failure
                    # (it is tried again; the create must not be undone).
                    self.assertEqual(("xapi", "pool.remove_from_other_config"),
                                     (side, method), "%s survived a failed %s" % (verb,
                                                                                  method))
                    self.assertEqual([], self.claims())
                    self.control.clear_faults()
                    continue
                self.control.clear_faults()
                self.array.clear_faults()
                self.assertEqual(before, self.world(),
                                 "%s: changed after %s %s #%d failed" % (verb, side, method,
                                                                         nth))
            # The volume still works after every failed attempt.
            self.assertEqual(identity.volume(vol["id"]).name_label,
                             self.driver.backend.storage.vdi_by_uuid(
                                 vol["provider_id"]).name_label)


class TestSolidFireConcurrentCreates(SolidFireTestCase):
    """Two driver instances (an active-active pair) create one volume id."""

    def run_both(self, drivers: list[Any], vol: dict[str, Any]) -> list[Any]:
        """Create ``vol`` through each driver at once; each result or error."""
        results: list[Any] = [None, None]

        def create(i: int) -> None:
            try:
                results[i] = drivers[i].create_volume(dict(vol))
            except exception.XensmError as exc:
                results[i] = exc

        threads = [threading.Thread(target=create, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def test_concurrent_creates_end_with_one_lun_and_sr_for_both(self) -> None:
        # Both look the volume up before either's CreateVolume lands.
        drivers = [self.driver, self.make_driver()]
        vol = self.volume()
        self.array.inject_fault("CreateVolume", latency=0.5, times=2)
        results = self.run_both(drivers, vol)
        self.assertEqual(results[0], results[1])
        self.assertEqual([("xensm-%s" % vol["id"], "active")], self.array_volumes())
        self.assertEqual(1, self.world()["srs"].count("xensm-sf-volume-%s" % vol["id"]))
        vol.update(results[0])
        self.assertEqual(A, (self.write(vol, A), self.read(vol, len(A)))[1])
        self.driver.delete_volume(vol)
        self.assertEqual([], self.array_volumes())
        self.assertEqual([], self.claims())                 # every claim given back

    def test_a_create_that_fails_never_undoes_what_the_other_returned(self) -> None:
        # The first instance has made the LUN, SR and VDI and fails reading
        # the SR's uuid (SRNoSpace-like) once the second has had its turn.
        first, second = self.driver, self.make_driver()
        second_turn = threading.Event()
        call = first.backend.storage.pool.call
        add = second.backend.storage.add_other_config_key

        def failing_call(method: str, *args: Any, **kwargs: Any) -> Any:
            if method == "SR.get_uuid":
                second_turn.wait(10)
                raise exception.XapiError("SR_BACKEND_FAILURE_44", method=method)
            return call(method, *args, **kwargs)

        def second_add(*args: Any) -> None:
            try:
                add(*args)
            except exception.XapiError:
                second_turn.set()           # waiting for the first's claim
                raise

        self.patch(first.backend.storage.pool, "call", failing_call)
        self.patch(second.backend.storage, "add_other_config_key", second_add)
        vol = self.volume()
        outcome: list[Any] = []

        def create_first() -> None:
            try:
                first.create_volume(dict(vol))
            except exception.XensmError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=create_first)
        thread.start()
        while not self.array_volumes() and thread.is_alive():
            second_turn.wait(0.01)
        try:
            vol.update(second.create_volume(dict(vol)))
        finally:
            second_turn.set()
            thread.join()
        self.assertIsInstance(outcome[0], exception.XapiError)
        self.assertEqual([("xensm-%s" % vol["id"], "active")], self.array_volumes())
        self.assertEqual(A, (self.write(vol, A), self.read(vol, len(A)))[1])


class TestSolidFireHalfDone(SolidFireTestCase):
    """Deletes cut in half."""

    def test_a_delete_cut_before_the_purge_is_finished_by_the_next(self) -> None:
        vol = self.create_volume()
        self.array.inject_fault("PurgeDeletedVolume", error_name="xUnexpected")
        self.assertRaises(exception.ArrayError, self.driver.delete_volume, vol)
        self.driver.delete_volume(vol)
        self.assertEqual([], self.array_volumes())

    def test_a_duplicate_a_late_create_made_goes_with_the_volume(self) -> None:
        # A CreateVolume answered after its client gave up lands as a second
        # volume of that name and tag; deleting the volume removes both.
        vol = self.create_volume()
        backend = self.driver.backend
        self.client.call("CreateVolume", name=backend.target.array_name(vol["id"]),
                         accountID=backend.target.account_id, totalSize=backend.target.lun_size(
                             base.GiB), enable512e=True,
                         attributes=backend.target.array_attributes(vol["id"]))
        self.driver.delete_volume(vol)
        self.assertEqual([], self.array_volumes())


class TestSolidFireLateAnswers(SolidFireTestCase):
    """Array calls the array carries out after the client gave up on them:
    the object's delete waits for the claim the failed verb kept, and so
    finds what landed late."""

    EXTRA_OPTIONS = {"xensm_sf_api_timeout": 1, "xenapi_call_timeout": 1}

    def setUp(self) -> None:
        super().setUp()
        # The claim's lease: a short one, so the delete's wait is short.
        self.patch(self.driver.backend, "_target",
                   dataclasses.replace(self.driver.backend.target, lease=3.0))

    def test_a_snapshot_landing_after_the_timeout_is_found_by_its_delete(self) -> None:
        vol = self.create_volume()
        snap = self.snapshot_spec(vol)
        self.array.inject_fault("CreateSnapshot", latency=2.0)
        self.assertRaises(exception.ArrayConnectionError, self.driver.create_snapshot, snap)
        self.driver.delete_snapshot(snap)
        self.assertEqual([], self.world()["snapshots"])

    def test_a_create_landing_after_the_timeout_is_found_by_its_delete(self) -> None:
        vol = self.volume()
        self.array.inject_fault("CreateVolume", latency=2.0)
        self.assertRaises(exception.ArrayConnectionError, self.driver.create_volume,
                          dict(vol))
        self.driver.delete_volume(vol)
        self.assertEqual([], self.array_volumes())


class TestSolidFireRetriesAndReverts(SolidFireTestCase):
    """Retries reuse what earlier attempts made; reverts undo only their own."""

    def test_failed_retry_of_a_finished_create_keeps_its_access_and_sr(self) -> None:
        vol = self.volume()
        vol.update(self.driver.create_volume(dict(vol)))
        before = self.world()
        self.control.inject_fault("SR.get_uuid", error=["INTERNAL_ERROR", "late"])
        self.assertRaises(exception.XensmError, self.driver.create_volume, dict(vol))
        self.assertEqual(before, self.world())
        self.assertEqual(A, (self.write(vol, A), self.read(vol, len(A)))[1])

    def test_retried_clone_is_idempotent(self) -> None:
        vol = self.create_volume()
        clone = self.volume()
        first = self.driver.create_cloned_volume(dict(clone), vol)
        before = self.world()
        self.assertEqual(first, self.driver.create_cloned_volume(dict(clone), vol))
        self.assertEqual(before, self.world())

    def test_a_revert_step_that_fails_does_not_stop_the_others(self) -> None:
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        before = self.world()
        # The last step fails, and so does forgetting the new SR on the way back.
        self.control.inject_fault("SR.get_uuid", error=["INTERNAL_ERROR", "late step"])
        self.control.inject_fault("SR.forget", error=["INTERNAL_ERROR", "stuck SR"])
        err = self.assertRaises(exception.XensmError, self.driver.create_volume_from_snapshot,
                                self.volume(), snap)
        self.assertIn("late step", str(err))           # the failure, not the revert's
        after = self.world()
        # The SR that could not be forgotten is left (and logged); the clone's
        # LUN and its access were still undone.
        self.assertEqual(before["luns"], after["luns"])
        self.assertEqual(before["access"], after["access"])
        self.assertEqual(1, len(set(after["srs"]) - set(before["srs"])))

    def test_lost_sr_create_answer_is_found_not_left_behind(self) -> None:
        vol = self.volume()
        self.control.inject_fault("SR.create", drop="after")
        vol.update(self.driver.create_volume(vol))
        srs = [s for s in self.world()["srs"] if vol["id"] in s]
        self.assertEqual(["xensm-sf-volume-%s" % vol["id"]], srs)
        self.assertEqual(A, (self.write(vol, A), self.read(vol, len(A)))[1])


class TestSolidFireFailedRevert(SolidFireTestCase):
    """A revert that fails part-way never strands the volume without its SR."""

    def sr_plugged(self, vol: dict[str, Any]) -> bool:
        pool = self.driver.pool
        srs = pool.call("SR.get_by_name_label", "xensm-sf-volume-%s" % vol["id"])
        pbds = [pool.call("PBD.get_record", p) for sr in srs
                for p in pool.call("SR.get_PBDs", sr)]
        return len(srs) == 1 and len(pbds) == 2 and all(
            p["currently_attached"] for p in pbds)

    def written(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A volume holding A in its snapshot and B now."""
        vol = self.create_volume()
        self.write(vol, A)
        snap = self.snapshot_of(vol)
        self.write(vol, B)
        return vol, snap

    def assert_usable(self, vol: dict[str, Any], snap: dict[str, Any]) -> None:
        data = self.driver.initialize_connection(vol, {})["data"]
        self.assertEqual(vol["provider_id"], data["vdi_uuid"])
        self.assertTrue(self.sr_plugged(vol))
        self.driver.extend_volume(vol, 2)
        self.driver.revert_to_snapshot(None, vol, snap)
        self.assertEqual(A, self.read(vol, len(A)))

    def test_a_lost_forget_answer_is_undone(self) -> None:
        # "after": XAPI forgot the SR; "before": only the PBDs were unplugged.
        for drop in ("after", "before"):
            vol, snap = self.written()
            self.control.inject_fault("SR.forget", drop=drop)
            self.assertRaises(exception.XensmError, self.driver.revert_to_snapshot,
                              None, vol, snap)
            self.control.clear_faults()
            self.assertTrue(self.sr_plugged(vol), drop)
            self.assertEqual(B, self.read(vol, len(B)))      # no rollback happened
            self.assert_usable(vol, snap)

    def test_a_forget_answer_past_the_call_timeout_is_undone(self) -> None:
        self.driver = self.make_driver(xenapi_call_timeout=1)
        vol, snap = self.written()
        self.control.inject_fault("SR.forget", hang=3)
        self.assertRaises(exception.XensmError, self.driver.revert_to_snapshot,
                          None, vol, snap)
        self.control.clear_faults()
        self.assertTrue(self.sr_plugged(vol))
        self.assertEqual(B, self.read(vol, len(B)))
        self.assert_usable(vol, snap)

    def test_every_verb_puts_back_an_sr_a_failed_rollback_left_out(self) -> None:
        faults: list[tuple[str, dict[str, Any]]] = [
            ("SR.probe", {"error": ["INTERNAL_ERROR", "injected"]}),
            ("SR.introduce", {"error": ["INTERNAL_ERROR", "injected"]}),
            ("SR.introduce", {"drop": "after"}),
            ("PBD.plug", {"error": ["INTERNAL_ERROR", "injected"]}),
            ("SR.scan", {"error": ["INTERNAL_ERROR", "injected"]}),
        ]
        verbs: dict[str, Callable[[dict[str, Any], dict[str, Any]], Any]] = {
            "revert": lambda vol, snap: self.driver.revert_to_snapshot(None, vol, snap),
            "attach": lambda vol, snap: self.driver.initialize_connection(vol, {}),
            "extend": lambda vol, snap: self.driver.extend_volume(vol, 2),
        }
        for method, fault in faults:
            for verb, run in verbs.items():
                vol, snap = self.written()
                self.array.inject_fault("RollbackToSnapshot", error_name="xInvalidParameter")
                self.control.inject_fault(method, **fault)
                self.assertRaises(exception.XensmError, self.driver.revert_to_snapshot,
                                  None, vol, snap)
                self.control.clear_faults()
                self.array.clear_faults()
                where = "%s %s, then %s" % (method, fault, verb)
                self.assertFalse(self.sr_plugged(vol), where)
                run(vol, snap)
                self.assertTrue(self.sr_plugged(vol), where)
                self.assertEqual(A if verb == "revert" else B, self.read(vol, len(A)),
                                 where)
                self.assert_usable(vol, snap)
                self.driver.delete_snapshot(snap)
                self.driver.delete_volume(vol)
        self.assertEqual([], self.array_volumes())


class TestSolidFireUnderPurge(SolidFireTestCase):
    """Element purges a deleted volume, and its snapshots with it, after the
    cleanup interval; here the interval is 0, so it happens at once."""

    def setUp(self) -> None:
        super().setUp()
        self.array.configure(purge_seconds=0)

    def test_a_snapshot_outlives_its_deleted_volume(self) -> None:
        vol = self.create_volume()
        self.write(vol, A)
        snap = self.snapshot_of(vol)
        self.driver.delete_volume(vol)
        self.assertNotIn("xensm-sf-volume-%s" % vol["id"], self.world()["srs"])
        clone = self.volume()
        clone.update(self.driver.create_volume_from_snapshot(clone, snap))
        self.assertEqual(A, self.read(clone, len(A)))
        self.driver.delete_snapshot(snap)
        self.assertEqual([("xensm-%s" % clone["id"], "active")], self.array_volumes())
        self.assertEqual(A, self.read(clone, len(A)))
        self.driver.delete_volume(clone)
        self.assertEqual([], self.array_volumes())
        self.assertEqual([], self.client.list_snapshots())

    def test_group_snapshot_members_outlive_their_volumes(self) -> None:
        vols = [self.create_volume(), self.create_volume()]
        for vol, data in zip(vols, (A, B), strict=True):
            self.write(vol, data)
        snaps = [self.snapshot_spec(v) for v in vols]
        _, updates = self.driver.create_group_snapshot(None, {"id": "gs3"}, snaps)
        ids = {u["id"]: u["provider_id"] for u in updates}
        for vol in vols:
            self.driver.delete_volume(vol)
        clone = self.volume()
        member = dict(snaps[1], provider_id=ids[snaps[1]["id"]])
        clone.update(self.driver.create_volume_from_snapshot(clone, member))
        self.assertEqual(B, self.read(clone, len(B)))
        self.driver.delete_group_snapshot(None, {"id": "gs3"}, snaps)
        self.assertEqual([("xensm-%s" % clone["id"], "active")], self.array_volumes())
        self.assertEqual(B, self.read(clone, len(B)))

    def test_setup_saves_snapshots_of_a_volume_left_deleted(self) -> None:
        # As earlier versions left it: deleted, not purged, with a snapshot.
        self.array.configure(purge_seconds=3600)
        vol = self.create_volume()
        self.write(vol, A)
        snap = self.snapshot_of(vol)
        sf_volume = self.driver.backend.target.find_array_volume(vol["id"])
        assert sf_volume is not None
        self.driver.backend.target.forget_lun_sr(self.driver.backend.target.find_lun_sr(vol["id"]))
        self.client.call("DeleteVolume", volumeID=sf_volume["volumeID"])
        self.array.configure(purge_seconds=0)
        self.driver = self.make_driver()
        self.assertNotIn(sf_volume["volumeID"], self.world()["access"])
        clone = self.volume()
        clone.update(self.driver.create_volume_from_snapshot(clone, snap))
        self.assertEqual(A, self.read(clone, len(A)))
        self.driver.delete_snapshot(snap)
        self.assertEqual([("xensm-%s" % clone["id"], "active")], self.array_volumes())

    def test_a_deleted_volume_kept_for_its_snapshots_is_no_volume(self) -> None:
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        self.driver.delete_volume(vol)
        self.driver.delete_volume(vol)                       # a retried delete
        self.assertRaises(exception.VolumeNotFound, self.driver.create_snapshot,
                          self.snapshot_spec(vol))
        self.assertRaises(exception.VolumeNotFound, self.driver.extend_volume, vol, 2)
        self.assertRaises(exception.NotFound, self.driver.revert_to_snapshot,
                          None, vol, snap)
        self.assertEqual([], self.world()["access"])
        self.driver.delete_snapshot(snap)
        self.assertEqual([], self.array_volumes())


class TestSolidFireWithoutResign(SolidFireTestCase):
    PACKS = ()

    def test_clone_copies_and_volume_from_snapshot_is_refused_with_the_fix(self) -> None:
        self.assertEqual("copy", self.driver.get_volume_stats(True)["xensm_clone_strategy"])
        vol = self.create_volume()
        self.write(vol, A)
        clone = self.volume()
        clone.update(self.driver.create_cloned_volume(clone, vol))
        self.assertEqual(A, self.read(clone, len(A)))
        snap = self.snapshot_of(vol)
        before = self.world()
        self.array.reset_calls()
        err = self.assertRaises(exception.UnsupportedOperation,
                                self.driver.create_volume_from_snapshot, self.volume(), snap)
        self.assertIn("ReLVHDoISCSISR", str(err))
        self.assertNotIn("CloneVolume", self.array.calls())
        self.assertEqual(before, self.world())
