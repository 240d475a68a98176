"""reconcile.compare: inventory records against the tagged VDIs of an SR."""

from __future__ import annotations

import uuid
from typing import Any

import testtools

from xensm_driver import identity
from xensm_driver.service import inventory
from xensm_driver.service import reconcile
from xensm_driver.service.models import Snapshot
from xensm_driver.service.models import Volume
from xensm_driver.xapi.storage import VDI


def vdi(tags: dict[str, str] | None = None, managed: bool = True, name: str = "") -> VDI:
    u = str(uuid.uuid4())
    return VDI(ref="OpaqueRef:" + u, uuid=u, name_label=name or "vdi", sr="OpaqueRef:sr",
               virtual_size=1 << 30, physical_utilisation=0, is_a_snapshot=False,
               snapshot_of="OpaqueRef:NULL", managed=managed, read_only=False, vbds=(),
               other_config=dict(tags or {}), sm_config={}, type="user")


def volume(status: str = "available", vdi_uuid: str | None = None, **kw: Any) -> Volume:
    return Volume(id=str(uuid.uuid4()), backend="xs", name="", size_gb=1, status=status,
                  provider_id=vdi_uuid, **kw)


def snapshot(vol: Volume, status: str = "available", vdi_uuid: str | None = None) -> Snapshot:
    return Snapshot(id=str(uuid.uuid4()), backend="xs", volume_id=vol.id, name="",
                    volume_size_gb=1, status=status, provider_id=vdi_uuid)


def tag_of(obj: Volume | Snapshot) -> dict[str, str]:
    key = identity.SNAPSHOT_TAG if isinstance(obj, Snapshot) else identity.VOLUME_TAG
    return {key: obj.id}


class CompareTest(testtools.TestCase):
    def compare(self, records: list[Any], vdis: list[VDI]) -> reconcile.Report:
        return reconcile.compare("xs", "sr", records, vdis)

    def kinds(self, report: reconcile.Report) -> list[tuple[str, str]]:
        return [(f.kind, f.id) for f in report.findings]

    def test_agreement_is_clean(self) -> None:
        vol = volume()
        v1 = vdi(tag_of(vol))
        vol.provider_id = v1.uuid
        snap = snapshot(vol)
        v2 = vdi(tag_of(snap))
        snap.provider_id = v2.uuid
        untagged = vdi({"owner": "someone else"})
        report = self.compare([vol, snap], [v1, v2, untagged])
        self.assertEqual([], report.findings)
        self.assertTrue(report.clean)
        self.assertEqual((2, 3), (report.checked_records, report.checked_vdis))

    def test_a_tagged_vdi_this_inventory_never_recorded_is_foreign(self) -> None:
        # Another inventory's, or Cinder's (same tags): reported, never an orphan.
        stray = vdi({identity.VOLUME_TAG: "ghost"})
        report = self.compare([], [stray])
        self.assertEqual([(reconcile.FOREIGN_VDI, "ghost")], self.kinds(report))
        self.assertEqual(stray.uuid, report.findings[0].vdi_uuid)
        self.assertIn("never touches it", report.findings[0].action)
        self.assertTrue(report.clean)

    def test_a_vdi_still_tagged_by_a_deleted_record_is_an_orphan(self) -> None:
        vol = volume(status="deleted")
        report = self.compare([vol], [vdi(tag_of(vol))])
        self.assertEqual([(reconcile.ORPHAN_VDI, vol.id)], self.kinds(report))

    def test_a_live_record_without_its_vdi_is_missing(self) -> None:
        vol = volume(vdi_uuid="gone-uuid")
        report = self.compare([vol], [])
        self.assertEqual([(reconcile.MISSING_VDI, vol.id)], self.kinds(report))
        self.assertEqual("gone-uuid", report.findings[0].vdi_uuid)

    def test_interrupted_and_in_progress(self) -> None:
        from tests.unit.service.test_inventory import dead_owner
        killed = volume(status="creating", owner=dead_owner())
        running = volume(status="creating", owner=inventory.this_owner())
        report = self.compare([killed, running], [vdi(tag_of(killed))])
        by_id = {f.id: f for f in report.findings}
        self.assertEqual(reconcile.INTERRUPTED, by_id[killed.id].kind)
        self.assertIn("is on the SR", by_id[killed.id].detail)
        self.assertEqual(reconcile.IN_PROGRESS, by_id[running.id].kind)
        self.assertEqual([killed.id], [f.id for f in report.discrepancies])

    def test_error_records(self) -> None:
        kept = volume(status="error")
        clean = volume(status="error")
        report = self.compare([kept, clean], [vdi(tag_of(kept))])
        self.assertEqual([(reconcile.ERROR_WITH_VDI, kept.id)], self.kinds(report))

    def test_copies_beside_the_recorded_vdi_are_strays_never_orphans(self) -> None:
        # A VM snapshot or an xe vdi-copy carries the tag too: not provably ours.
        vol = volume()
        recorded, extra = vdi(tag_of(vol)), vdi(tag_of(vol))
        vol.provider_id = recorded.uuid
        report = self.compare([vol], [recorded, extra])
        self.assertEqual([(reconcile.STRAY_VDI, vol.id)], self.kinds(report))
        self.assertEqual(extra.uuid, report.findings[0].vdi_uuid)
        self.assertFalse(report.clean)

    def test_an_unmanaged_volumes_tagged_vdi_is_a_stray(self) -> None:
        vol = volume(status="unmanaged")
        report = self.compare([vol], [vdi(tag_of(vol))])
        self.assertEqual([(reconcile.STRAY_VDI, vol.id)], self.kinds(report))

    def test_a_reader_that_died_leaves_the_record_as_it_was(self) -> None:
        from tests.unit.service.test_inventory import dead_owner
        vol = volume(status="snapshotting", owner=dead_owner())
        v1 = vdi(tag_of(vol))
        vol.provider_id = v1.uuid
        self.assertEqual([], self.compare([vol], [v1]).findings)
        self.assertEqual("available", inventory.effective_status(vol))

    def test_duplicates_none_of_which_is_recorded(self) -> None:
        vol = volume(vdi_uuid="elsewhere")
        report = self.compare([vol], [vdi(tag_of(vol)), vdi(tag_of(vol))])
        self.assertEqual([(reconcile.DUPLICATE_VDI, vol.id)], self.kinds(report))
        self.assertIsNone(report.findings[0].vdi_uuid)

    def test_a_tag_on_another_vdi_than_recorded(self) -> None:
        vol = volume(vdi_uuid="recorded-uuid")
        report = self.compare([vol], [vdi(tag_of(vol))])
        self.assertEqual([(reconcile.PROVIDER_MISMATCH, vol.id)], self.kinds(report))

    def test_hidden_base_copies_are_not_counted(self) -> None:
        vol = volume()
        live = vdi(tag_of(vol))
        vol.provider_id = live.uuid
        base_copy = vdi(tag_of(vol), managed=False)
        self.assertEqual([], self.compare([vol], [live, base_copy]).findings)

    def test_report_as_dict(self) -> None:
        snap = snapshot(volume(), status="deleted")
        report = self.compare([snap], [vdi(tag_of(snap))])
        data = report.to_dict()
        self.assertEqual((False, "snapshot", snap.id), (
            data["clean"], data["findings"][0]["object"], data["findings"][0]["id"]))
