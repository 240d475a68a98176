"""Adopting existing SolidFire volumes (manage_existing) and letting them
go (unmanage): the LUN's SR introduced, never formatted; refusals first."""

from __future__ import annotations

import uuid
from typing import Any

from tests.functional import base
from tests.functional.test_solidfire_backend import SolidFireTestCase
from xensm_driver import exception

A = base.pattern("A", base.MiB)
B = base.pattern("B", base.MiB)


class ManageTestCase(SolidFireTestCase):
    EXTRA_OPTIONS = {"xensm_sf_retry_backoff": "0.01"}

    def sf(self, name: str) -> dict[str, Any]:
        (found,) = self.client.find_volumes_by_name(name)
        return found

    def foreign_volume(self) -> tuple[dict[str, Any], str]:
        """An array volume holding an LVHD SR with one disk of content A,
        unknown to the driver and the pool: made as a volume, unmanaged,
        its SR forgotten. (array volume, its name)."""
        vol = self.create_volume()
        self.write(vol, A)
        name = "xensm-%s" % vol["id"]
        self.driver.unmanage(vol)
        storage = self.driver.backend.storage
        sr_ref = storage.vdi_by_uuid(vol["provider_id"]).sr
        storage.forget_sr(sr_ref)
        return self.sf(name), name

    def array_state(self, array_id: int) -> tuple[Any, ...]:
        sf = self.client.get_volume_by_id(array_id)
        assert sf is not None
        return (sf["accountID"], sorted((sf["attributes"] or {}).items()),
                sorted(sf["volumeAccessGroups"]), sf["qos"]["minIOPS"])


class TestManage(ManageTestCase):

    def test_manage_by_id_keeps_the_content_and_every_verb_works(self) -> None:
        sf, _name = self.foreign_volume()
        vol = self.volume(project_id="p-adopt")
        ref = {"source-id": str(sf["volumeID"])}
        self.assertEqual(1, self.driver.manage_existing_get_size(vol, ref))
        vol.update(self.driver.manage_existing(vol, ref))
        self.assertEqual(A, self.read(vol, len(A)))
        adopted = self.client.get_volume_by_id(sf["volumeID"])
        self.assertEqual(vol["id"], adopted["attributes"]["xensm-volume-id"])
        self.assertEqual("xensm-p-adopt", self.client.call(
            "GetAccountByID", accountID=adopted["accountID"])["account"]["username"])
        vdi = self.driver.backend.storage.vdi_by_uuid(vol["provider_id"])
        self.assertEqual(("volume-%s" % vol["id"], vol["id"]),
                         (vdi.name_label, vdi.other_config["xensm-volume-id"]))
        # Found again by its LUN although it keeps its old name.
        snap = self.snapshot_of(vol)
        self.write(vol, B)
        self.driver.revert_to_snapshot(None, vol, snap)
        self.assertEqual(A, self.read(vol, len(A)))
        self.driver.extend_volume(vol, 3)
        self.driver.delete_volume(vol)
        self.driver.delete_snapshot(snap)
        self.assertEqual([], self.array_volumes())

    def test_manage_by_name_and_unmanage_leaves_array_volume_and_sr(self) -> None:
        _sf, name = self.foreign_volume()
        vol = self.volume()
        vol.update(self.driver.manage_existing(vol, {"source-name": name}))
        self.driver.unmanage(vol)
        sf = self.sf(name)
        self.assertNotIn("xensm-volume-id", sf["attributes"])
        self.assertIn(self.driver.backend.target.vag_id, sf["volumeAccessGroups"])
        vdi = self.driver.backend.storage.vdi_by_uuid(vol["provider_id"])
        self.assertNotIn("xensm-volume-id", vdi.other_config)
        self.assertEqual(A, self.read(vol, len(A)))          # SR still attached

    def test_refusals_name_the_reason_and_touch_nothing(self) -> None:
        sf, name = self.foreign_volume()
        owned = self.create_volume()
        iqn = "iqn.2020-01.org.example:elsewhere"
        other = self.client.call("CreateVolumeAccessGroup", name="elsewhere",
                                 initiators=[iqn])["volumeAccessGroupID"]
        self.client.call("AddVolumesToVolumeAccessGroup", volumeAccessGroupID=other,
                         volumes=[sf["volumeID"]])
        cases = [
            ({"source-id": str(sf["volumeID"])}, "access group(s) %d of other initiators"
             % other),
            ({"source-name": "xensm-%s" % owned["id"]}, "already belongs to volume %s"
             % owned["id"]),
            ({"source-id": "x1"}, "must be a SolidFire volume ID"),
            ({"vdi": "x"}, "must carry 'source-id'"),
        ]
        before = self.world(), self.array_state(sf["volumeID"])
        self.array.reset_calls()
        for ref, why in cases:
            err = self.assertRaises(exception.InvalidInput, self.driver.manage_existing,
                                    self.volume(), ref)
            self.assertIn(why, str(err))
        self.assertRaises(exception.NotFound, self.driver.manage_existing, self.volume(),
                          {"source-id": "9999"})
        self.assertEqual(before, (self.world(), self.array_state(sf["volumeID"])))
        self.assertNotIn("ModifyVolume", self.array.calls())

    def test_a_lun_the_pool_already_has_an_sr_on_is_refused(self) -> None:
        vol = self.create_volume()
        name = "xensm-%s" % vol["id"]
        self.driver.unmanage(vol)                       # its SR stays attached
        err = self.assertRaises(exception.InvalidInput, self.driver.manage_existing,
                                self.volume(), {"source-name": name})
        self.assertIn("the pool already has an SR on its LUN", str(err))

    def test_a_blank_lun_is_not_formatted(self) -> None:
        account = self.driver.backend.target.account_id
        blank = self.client.call("CreateVolume", name="blank", accountID=account,
                                 totalSize=2 << 30)["volume"]
        before = self.world(), self.array_state(blank["volumeID"])
        err = self.assertRaises(exception.XensmError, self.driver.manage_existing,
                                self.volume(), {"source-id": str(blank["volumeID"])})
        self.assertIn("holds 0 SRs", str(err))
        self.assertEqual(before, (self.world(), self.array_state(blank["volumeID"])))

    def test_manageable_list_says_why_not(self) -> None:
        sf, _name = self.foreign_volume()
        owned = self.create_volume()
        entries = {e["extra_info"]["name_label"]: e for e in
                   self.driver.get_manageable_volumes([owned], None, 0, 0, ["reference"],
                                                      ["asc"])}
        self.assertTrue(entries[sf["name"]]["safe_to_manage"])
        self.assertEqual(1, entries[sf["name"]]["size"])
        mine = entries["xensm-%s" % owned["id"]]
        self.assertEqual(("already managed", owned["id"]),
                         (mine["reason_not_safe"], mine["cinder_id"]))

    def test_a_failure_at_any_call_leaves_array_and_pool_as_they_were(self) -> None:
        sf, _name = self.foreign_volume()
        ref = {"source-id": str(sf["volumeID"])}
        qos_type = {"extra_specs": {"minIOPS": "300", "maxIOPS": "3000",
                                    "burstIOPS": "3000"}}

        def run() -> dict[str, Any]:
            vol = self.volume(project_id="p-%s" % uuid.uuid4().hex[:6],
                              volume_type=qos_type)
            return dict(vol, **self.driver.manage_existing(vol, ref))

        xapi = self.driver.pool.counter
        xapi.reset()
        self.array.reset_calls()
        managed = run()
        steps = [("xapi", m, n) for m, c in sorted(xapi.snapshot().items())
                 for n in range(1, c + 1)]
        steps += [("array", m, n) for m, c in sorted(self.array.calls().items())
                  for n in range(1, c + 1)]
        self.assertIn(("array", "ModifyVolume", 2), steps)
        self.assertIn(("xapi", "SR.introduce", 1), steps)
        # Back to unmanaged and foreign, for the failing runs.
        self.driver.unmanage(managed)
        storage = self.driver.backend.storage
        storage.forget_sr(storage.vdi_by_uuid(managed["provider_id"]).sr)
        for side, method, nth in steps:
            before = self.world(), self.array_state(sf["volumeID"])
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
                self.assertIn(method, ("secret.get_by_uuid", "secret.destroy"),
                              "manage survived a failed %s #%d" % (method, nth))
                continue
            finally:
                self.control.clear_faults()
                self.array.clear_faults()
            self.assertEqual(before, (self.world(), self.array_state(sf["volumeID"])),
                             "changed after %s %s #%d failed" % (side, method, nth))


class TestUnmanageFailures(ManageTestCase):

    def test_a_failure_at_any_call_of_unmanage_leaves_the_volume_managed(self) -> None:
        vol = self.create_volume()
        sf = self.sf("xensm-%s" % vol["id"])
        xapi = self.driver.pool.counter
        probe = self.create_volume()
        xapi.reset()
        self.array.reset_calls()
        self.driver.unmanage(probe)
        steps = [("xapi", m, n) for m, c in sorted(xapi.snapshot().items())
                 for n in range(1, c + 1)]
        steps += [("array", m, n) for m, c in sorted(self.array.calls().items())
                  for n in range(1, c + 1)]
        self.assertIn(("array", "ModifyVolume", 1), steps)
        storage = self.driver.backend.storage

        def state() -> tuple[Any, ...]:
            vdi = storage.vdi_by_uuid(vol["provider_id"])
            return self.world(), self.array_state(sf["volumeID"]), dict(vdi.other_config)

        for side, method, nth in steps:
            before = state()
            if side == "xapi":
                self.control.inject_fault(method, error=["INTERNAL_ERROR", "injected"],
                                          nth=nth)
            else:
                self.array.inject_fault(method, error_name="xInvalidParameter", nth=nth)
            try:
                self.assertRaises(exception.XensmError, self.driver.unmanage, vol)
            finally:
                self.control.clear_faults()
                self.array.clear_faults()
            self.assertEqual(before, state(), "changed after %s %s #%d failed"
                             % (side, method, nth))
        self.driver.delete_volume(vol)          # still ours, whole


class TestAdoptedWithoutItsSr(ManageTestCase):

    def test_a_verb_puts_back_the_sr_a_failed_revert_left_out(self) -> None:
        sf, _name = self.foreign_volume()
        vol = self.volume()
        vol.update(self.driver.manage_existing(vol, {"source-id": str(sf["volumeID"])}))
        storage = self.driver.backend.storage
        storage.forget_sr(storage.vdi_by_uuid(vol["provider_id"]).sr)
        self.driver.extend_volume(vol, 2)                   # found, SR introduced again
        vdi = storage.vdi_by_uuid(vol["provider_id"])
        self.assertEqual((2 << 30, vol["id"]),
                         (vdi.virtual_size, vdi.other_config["xensm-volume-id"]))
        self.assertEqual(A, self.read(vol, len(A)))
        snap = self.snapshot_of(vol)
        self.driver.delete_volume(vol)                      # retired: it has a snapshot
        self.driver.delete_snapshot(snap)                   # and goes with it
        self.assertEqual([], self.array_volumes())
