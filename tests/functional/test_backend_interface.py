"""What service/ and driver.py use of a back end: base.Backend's interface.

An SM back end against the simulator: describe() for ``xensm check``,
is_attached(), the data path (write_volume / read_volume), and reconcile's
holdings() and remove_orphan_volume / remove_orphan_snapshot, whose checks
just before the destroy each refuse with the SR as it was.
"""

from __future__ import annotations

from typing import Any

from tests.functional import base
from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.backends.base import Backend
from xensm_driver.backends.base import Holding


class SMBackendInterfaceTest(base.DriverTestCase):

    @property
    def backend(self) -> Backend:
        return self.driver.backend

    def counted(self, fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, int]]:
        """What ``fn`` returned and the XAPI calls it made, by method."""
        before = self.calls()
        result = fn(*args, **kwargs)
        after = self.calls()
        return result, {k: after[k] - before.get(k, 0) for k in after
                        if after[k] != before.get(k, 0)}

    def held(self, obj: dict[str, Any], kind: str = "volume") -> Holding:
        (found,) = [h for h in self.backend.holdings() if h.uuid == obj["provider_id"]]
        self.assertEqual(kind, found.kind)
        return found

    # -- describe, attached ---------------------------------------------------

    def test_describe_names_the_sr_its_hosts_and_no_secret(self) -> None:
        described, calls = self.counted(self.backend.describe)
        self.assertEqual({"host.get_all_records": 1, "PBD.get_all_records_where": 1}, calls)
        storage = self.driver.backend.storage       # what the test reads to compare
        self.assertEqual(tuple(h.name_label for h in storage.hosts()), described.hosts)
        self.assertEqual(2, len(described.hosts))
        self.assertEqual(self.sr_uuid, described.sr_uuid)
        self.assertEqual(("nfs", True), (described.sr_type, described.sr_shared))
        topo = self.sim.topology["nfs"]
        self.assertEqual(topo["server"], described.device_config["server"])
        self.assertFalse([k for k in described.device_config
                          if "secret" in k or "password" in k])

    def test_is_attached_reads_the_vdi_and_its_vbds(self) -> None:
        vol = self.create_volume()
        self.assertFalse(self.backend.is_attached(vol["provider_id"]))
        self.assertFalse(self.backend.is_attached("no-such-vdi"))
        vdi = self.driver.backend.storage.vdi_by_uuid(vol["provider_id"])
        base.attach_to_dom0(self.driver.pool, vdi.ref)
        attached, calls = self.counted(self.backend.is_attached, vol["provider_id"])
        self.assertTrue(attached)
        self.assertEqual({"VDI.get_all_records_where": 1, "VBD.get_currently_attached": 1},
                         calls)

    # -- the data path --------------------------------------------------------

    def test_write_then_read_a_volume_through_the_backend(self) -> None:
        vol = self.create_volume()
        data = b"xensm" * 100000
        self.assertEqual(len(data), self.backend.write_volume(
            vol["provider_id"], [data[:4096], data[4096:]], size=len(data)))
        self.assertEqual(data, b"".join(self.backend.read_volume(
            vol["id"], vol["provider_id"], length=len(data))))
        whole = b"".join(self.backend.read_volume(vol["id"], vol["provider_id"]))
        self.assertEqual(base.GiB, len(whole))
        self.assertEqual(data, whole[:len(data)])

    def test_reading_a_gone_volume_fails_before_any_transfer(self) -> None:
        vol = self.create_volume()
        self.driver.delete_volume(vol)
        err = self.assertRaises(exception.VolumeNotFound, self.backend.read_volume,
                                vol["id"], vol["provider_id"])
        self.assertIn(vol["id"], str(err))
        self.assertIn(self.sr_uuid, str(err))
        self.assertNotIn("task.create", self.calls())

    def test_a_short_source_fails_the_write(self) -> None:
        vol = self.create_volume()
        self.assertRaises(exception.TransferError, self.backend.write_volume,
                          vol["provider_id"], [b"x" * 100], size=200)

    # -- reconcile ------------------------------------------------------------

    def test_holdings_are_every_vdi_of_the_sr_with_its_tags(self) -> None:
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        held, calls = self.counted(self.backend.holdings)
        self.assertEqual({"VDI.get_all_records_where": 1}, calls)
        self.assertEqual(set(self.sr_state()), {h.uuid for h in held})
        by_uuid = {h.uuid: h for h in held}
        self.assertEqual(("volume", {identity.VOLUME_TAG: vol["id"]}),
                         (by_uuid[vol["provider_id"]].kind,
                          dict(by_uuid[vol["provider_id"]].tags)))
        self.assertEqual(("snapshot", {identity.SNAPSHOT_TAG: snap["id"]}),
                         (by_uuid[snap["provider_id"]].kind,
                          dict(by_uuid[snap["provider_id"]].tags)))
        self.assertTrue(all(h.sr_uuid == self.sr_uuid for h in held))

    def test_an_orphan_is_destroyed_only_after_every_check_passes(self) -> None:
        vol = self.create_volume()
        held = self.held(vol)
        storage = self.driver.backend.storage
        vdi = storage.vdi_by_uuid(vol["provider_id"])

        def refused(why: str, keep: frozenset[str] = frozenset()) -> None:
            before = self.sr_state()
            err = self.assertRaises(exception.InUse, self.backend.remove_orphan_volume,
                                    held, keep)
            self.assertIn(why, str(err))
            self.assertEqual(before, self.sr_state())

        # Recorded again by a live record of the inventory.
        refused("records it", frozenset({vol["provider_id"]}))
        # Attached to a VM.
        vbd = base.attach_to_dom0(self.driver.pool, vdi.ref)
        refused("attached to a VM")
        self.driver.pool.call("VBD.unplug", vbd)
        self.driver.pool.call("VBD.destroy", vbd)
        # Its tag now names another volume.
        storage.set_vdi_other_config(vdi.ref, identity.volume("another").tags())
        refused("no longer carries the tag of volume %s" % vol["id"])
        storage.set_vdi_other_config(vdi.ref, identity.volume(vol["id"]).tags())
        # A failed destroy leaves it; then, every check passed, it goes.
        self.control.inject_fault("VDI.destroy",
                                  error=["INTERNAL_ERROR", "fault injected by the test"])
        before = self.sr_state()
        self.assertRaises(exception.XensmError, self.backend.remove_orphan_volume,
                          held, frozenset())
        self.assertEqual(before, self.sr_state())
        done, calls = self.counted(self.backend.remove_orphan_volume, held,
                                   frozenset({"other-vdi", vol["id"]}))
        self.assertEqual("deleted VDI %s" % vol["provider_id"], done)
        self.assertEqual({"VDI.get_all_records_where": 1, "VDI.destroy": 1}, calls)
        self.assertIsNone(storage.vdi_by_uuid(vol["provider_id"]))
        refused("already gone")

    def test_a_tagged_vdi_on_another_sr_is_not_this_backends_orphan(self) -> None:
        vol = self.create_volume()
        storage = self.driver.backend.storage
        other = storage.get_vdi(storage.create_vdi(
            self.nfs_sr(storage), base.GiB, "volume-%s" % vol["id"],
            identity.volume(vol["id"]).tags()))
        held = Holding("volume", other.uuid, other.name_label,
                       {identity.VOLUME_TAG: vol["id"]}, sr_uuid=self.sr_uuid)
        err = self.assertRaises(exception.InUse, self.backend.remove_orphan_volume,
                                held, frozenset())
        self.assertIn("no longer on SR %s" % self.sr_uuid, str(err))
        self.assertIsNotNone(storage.vdi_by_uuid(other.uuid))

    def test_a_snapshot_orphan_is_checked_by_the_snapshot_tag(self) -> None:
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        held = self.held(snap, "snapshot")
        # A volume's tag is not a snapshot's.
        as_volume = Holding("volume", vol["provider_id"], "",
                            {identity.SNAPSHOT_TAG: snap["id"]})
        self.assertRaises(exception.InUse, self.backend.remove_orphan_snapshot,
                          as_volume, frozenset())
        self.assertIsNotNone(self.driver.backend.storage.vdi_by_uuid(vol["provider_id"]))
        self.assertEqual("deleted VDI %s" % snap["provider_id"],
                         self.backend.remove_orphan_snapshot(held, frozenset()))
        self.assertIsNone(self.driver.backend.storage.vdi_by_uuid(snap["provider_id"]))
        self.assertIsNotNone(self.driver.backend.storage.vdi_by_uuid(vol["provider_id"]))
