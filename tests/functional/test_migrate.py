"""Migration between SRs of one pool: Cinder's migrate_volume, retype and
update_migrated_volume, on an nfs and an lvmoiscsi back end of one
simulated pool, content checked byte for byte (issue 16)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from typing import Any

from tests.functional.base import MiB
from tests.functional.base import SimTestCase
from tests.functional.base import attach_to_dom0
from tests.functional.base import backend_ini
from tests.functional.base import configuration
from xensm_driver import driver as driver_mod
from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.backends import base
from xensm_driver.cmd.demo import pattern
from xensm_driver.xapi import transfer

INJECTED = ["INTERNAL_ERROR", "fault injected by the test"]
#: Where the test writes: the first blocks, and some past the first VHD block.
EXTENTS = ((0, 3 * MiB), (5 * MiB, MiB + 123))


class MigrateTest(SimTestCase):

    def setUp(self) -> None:
        super().setUp()
        self.src = self.make_driver("nfs", "xs-nfs")
        self.dst = self.make_driver("lvmoiscsi", "xs-iscsi")

    def make_driver(self, sr_type: str, section: str) -> driver_mod.XenAPISMDriver:
        drv = driver_mod.XenAPISMDriver(configuration=configuration(
            backend_ini(self.sim, sr_type, section=section), section))
        drv.do_setup(None)
        drv.check_for_setup_error()
        self.addCleanup(drv.close)
        return drv

    @staticmethod
    def host(drv: driver_mod.XenAPISMDriver) -> dict[str, Any]:
        """What Cinder's scheduler hands migrate_volume for a back end."""
        caps = drv.get_volume_stats(True)
        return {"host": "ci@%s" % caps["volume_backend_name"], "capabilities": caps}

    # -- objects and content ---------------------------------------------------

    def create_volume(self, drv: driver_mod.XenAPISMDriver) -> dict[str, Any]:
        vol = {"id": str(uuid.uuid4()), "size": 1, "display_name": "m"}
        vol.update(drv.create_volume(vol) or {})
        for n, (offset, length) in enumerate(EXTENTS):
            data = pattern("%s-%d" % (vol["id"], n), length)
            self.write_at(drv, vol["provider_id"], offset, data)
        return vol

    def write_at(self, drv: driver_mod.XenAPISMDriver, vdi_uuid: str, offset: int,
                 data: bytes) -> None:
        # A whole-prefix upload: zeros up to offset, then the data.
        transfer.upload(drv.pool, vdi_uuid, io.BytesIO(self.content_of(drv, vdi_uuid, offset)
                                                       + data), size=offset + len(data))

    def content_of(self, drv: driver_mod.XenAPISMDriver, vdi_uuid: str, length: int) -> bytes:
        if not length:
            return b""
        out = io.BytesIO()
        vdi = drv.backend.storage.vdi_by_uuid(vdi_uuid)
        transfer.download(drv.pool, vdi_uuid, out, size=vdi.virtual_size, length=length)
        return out.getvalue()

    def expected(self, vol: dict[str, Any]) -> bytes:
        end = max(o + n for o, n in EXTENTS)
        buf = bytearray(end)
        for n, (offset, length) in enumerate(EXTENTS):
            buf[offset:offset + length] = pattern("%s-%d" % (vol["id"], n), length)
        return bytes(buf)

    def assertContent(self, drv: driver_mod.XenAPISMDriver, vol: dict[str, Any]) -> None:
        want = self.expected(vol)
        self.assertEqual(want, self.content_of(drv, vol["provider_id"], len(want)))

    def state(self, drv: driver_mod.XenAPISMDriver) -> dict[str, Any]:
        """An SR's VDIs (name, tags, size) and its other_config."""
        self.control.run_gc()
        storage, backend = drv.backend.storage, drv.backend
        return {
            "vdis": {v.uuid: (v.name_label, tuple(sorted(v.other_config.items())),
                              v.virtual_size, v.managed, v.is_a_snapshot)
                     for v in storage.sr_vdis(backend.sr_ref)},
            "sr": tuple(sorted(storage.other_config("SR", backend.sr_ref).items()))}

    def assertIsTheVolume(self, drv: driver_mod.XenAPISMDriver, vol: dict[str, Any]) -> Any:
        vdi = drv.backend.storage.vdi_by_uuid(vol["provider_id"])
        self.assertIsNotNone(vdi)
        self.assertEqual(drv.backend.sr_ref, vdi.sr)
        self.assertEqual("volume-%s" % vol["id"], vdi.name_label)
        self.assertEqual(vol["id"], vdi.other_config[identity.VOLUME_TAG])
        self.assertFalse([k for k in vdi.other_config if k.startswith(identity.MAKING_PREFIX)])
        self.assertEqual(identity.provider_location(drv.backend.sr_uuid, vdi.uuid),
                         vol["provider_location"])
        return vdi

    # -- location_info ---------------------------------------------------------

    def test_location_info_names_the_sr_and_the_pool(self) -> None:
        caps = self.src.get_volume_stats(True)
        pool_uuid = self.src.backend.storage.the_pool()[1]
        self.assertEqual("xensm:nfs:%s:%s" % (self.src.backend.sr_uuid, pool_uuid),
                         caps["location_info"])
        dest = base.parse_location_info(caps["location_info"], "b")
        self.assertEqual(base.Destination("b", "nfs", self.src.backend.sr_uuid, pool_uuid),
                         dest)
        # The older form parses, but names no pool.
        self.assertIsNone(base.parse_location_info(
            "xensm:nfs:%s" % self.src.backend.sr_uuid).pool_uuid)
        for other in (None, "", "LVMVolumeDriver:vg:x", "xensm:solidfire:https://x:443",
                      "xensm:nfs:"):
            self.assertIsNone(base.parse_location_info(other), other)

    # -- the paths -------------------------------------------------------------

    def test_detached_volume_moves_by_copy(self) -> None:
        vol = self.create_volume(self.src)
        old_uuid = vol["provider_id"]
        dest_before = self.state(self.dst)
        counter = self.src.pool.counter
        counter.reset()
        moved, update = self.src.migrate_volume(None, vol, self.host(self.dst))
        calls = counter.snapshot()
        self.assertTrue(moved)
        vol.update(update)
        vdi = self.assertIsTheVolume(self.dst, vol)
        self.assertEqual([old_uuid], identity.replaced(vdi.other_config))
        self.assertIsNone(self.src.backend.storage.vdi_by_uuid(old_uuid))
        self.assertContent(self.dst, vol)
        self.assertEqual(set(dest_before["vdis"]) | {vdi.uuid}, set(self.state(self.dst)["vdis"]))
        self.assertNotIn("Async.VDI.pool_migrate", calls)
        # find the SR, the volume; clear the destination, mark, copy (+ polls
        # and task.destroy), tag, unmark, read, destroy the source.
        polls = calls.pop("task.get_record")
        self.assertGreaterEqual(polls, 1)
        self.assertEqual(10, sum(calls.values()), calls)
        # The volume is the destination back end's now: it deletes it.
        self.dst.delete_volume(vol)
        self.assertIsNone(self.dst.backend.storage.vdi_by_uuid(vdi.uuid))

    def test_attached_volume_moves_live(self) -> None:
        vol = self.create_volume(self.src)
        storage = self.src.backend.storage
        vbd = attach_to_dom0(self.src.pool, storage.vdi_by_uuid(vol["provider_id"]).ref)
        old_uuid = vol["provider_id"]
        host = self.host(self.dst)
        counter = self.src.pool.counter
        counter.reset()
        moved, update = self.src.migrate_volume(None, vol, host)
        calls = counter.snapshot()
        self.assertTrue(moved)
        vol.update(update)
        vdi = self.assertIsTheVolume(self.dst, vol)
        self.assertEqual([old_uuid], identity.replaced(vdi.other_config))
        self.assertEqual(vdi.ref, storage.vbd_vdi(vbd))
        self.assertNotIn("Async.VDI.copy", calls)
        # find the SR, the volume, its VBD's state; clear the destination,
        # move (+ polls and task.destroy), tag, read.
        self.assertGreaterEqual(calls.pop("task.get_record"), 1)
        self.assertEqual(8, sum(calls.values()), calls)
        self.assertIsNone(storage.vdi_by_uuid(old_uuid))
        self.assertContent(self.dst, vol)

    def test_attached_volume_with_changed_block_tracking_is_refused(self) -> None:
        vol = self.create_volume(self.src)
        storage = self.src.backend.storage
        ref = storage.vdi_by_uuid(vol["provider_id"]).ref
        self.src.pool.call("VDI.enable_cbt", ref)
        attach_to_dom0(self.src.pool, ref)
        before = self.state(self.src), self.state(self.dst)
        exc = self.assertRaises(exception.UnsupportedOperation, self.src.migrate_volume,
                                None, vol, self.host(self.dst))
        self.assertIn("VDI_CBT_ENABLED", str(exc))
        self.assertEqual(before, (self.state(self.src), self.state(self.dst)))
        self.assertContent(self.src, vol)

    def test_what_is_not_storage_assisted_falls_back(self) -> None:
        vol = self.create_volume(self.src)
        before = self.state(self.src), self.state(self.dst)
        caps = self.dst.get_volume_stats(True)
        sr_uuid = self.dst.backend.sr_uuid
        for location in (None, "LVMVolumeDriver:host:vg", "xensm:solidfire:https://10.0.0.1",
                         "xensm:lvmoiscsi:%s" % sr_uuid,                # names no pool
                         "xensm:lvmoiscsi:%s:%s" % (sr_uuid, uuid.uuid4())):  # another pool
            host = {"host": "ci@x", "capabilities": dict(caps, location_info=location)}
            self.assertEqual((False, None), self.src.migrate_volume(None, vol, host), location)
            self.assertEqual((False, None), self.src.retype(None, vol, {}, {}, host), location)
        # Its own back end: there already.
        self.assertEqual((True, None), self.src.migrate_volume(None, vol, self.host(self.src)))
        self.assertEqual((True, None), self.src.retype(None, vol, {}, {}, self.host(self.src)))
        # QoS or encryption: not this driver's to do.
        self.assertEqual((False, None), self.src.retype(
            None, vol, {}, {"qos_specs": {"a": ("1", "2")}}, self.host(self.dst)))
        self.assertEqual(before, (self.state(self.src), self.state(self.dst)))

    def test_retype_to_another_back_end_moves(self) -> None:
        vol = self.create_volume(self.src)
        moved, update = self.src.retype(None, vol, {"name": "iscsi"},
                                        {"extra_specs": {"volume_backend_name": ("a", "b")}},
                                        self.host(self.dst))
        self.assertTrue(moved)
        vol.update(update)
        self.assertIsTheVolume(self.dst, vol)
        self.assertContent(self.dst, vol)

    def test_update_migrated_volume_keeps_the_original_identity(self) -> None:
        """Cinder's generic path: the temporary volume on the destination
        takes the original's name and tag, and after Cinder swaps the
        records (finish_volume_migration) each record finds its VDI."""
        original = self.create_volume(self.src)
        temp = {"id": str(uuid.uuid4()), "size": 1}
        temp.update(self.dst.create_volume(temp) or {})
        data = self.expected(original)
        self.write_at(self.dst, temp["provider_id"], 0, data)
        update = self.dst.update_migrated_volume(None, original, temp, "available")
        self.assertEqual({"_name_id": None, "provider_location": identity.provider_location(
            self.dst.backend.sr_uuid, temp["provider_id"])}, update)
        # What Cinder's manager and finish_volume_migration then record.
        final = dict(original, **update, provider_id=temp["provider_id"])
        leftover = dict(temp, _name_id=original["id"], provider_id=original["provider_id"],
                        provider_location=original["provider_location"])
        self.assertIsTheVolume(self.dst, final)
        self.assertEqual(data, self.content_of(self.dst, final["provider_id"], len(data)))
        # The source's back end deletes the leftover record: the source VDI.
        self.src.delete_volume(leftover)
        self.assertIsNone(self.src.backend.storage.vdi_by_uuid(original["provider_id"]))
        self.dst.extend_volume(final, 2)
        self.dst.delete_volume(final)
        self.assertIsNone(self.dst.backend.storage.vdi_by_uuid(final["provider_id"]))

    # -- failures --------------------------------------------------------------

    def test_a_failure_at_each_call_leaves_both_srs_as_they_were(self) -> None:
        for attached in (False, True):
            self.each_call_fails(attached)

    def each_call_fails(self, attached: bool) -> None:
        storage = self.src.backend.storage
        host = self.host(self.dst)

        def prepare() -> tuple[dict[str, Any], Callable[[], Any]]:
            vol = self.create_volume(self.src)
            if attached:
                attach_to_dom0(self.src.pool, storage.vdi_by_uuid(vol["provider_id"]).ref)
            return vol, lambda: self.src.migrate_volume(None, vol, host)

        counter = self.src.pool.counter
        _, run = prepare()
        counter.reset()
        run()                                       # learn the calls it makes
        # (A finished task's destroy is best effort: the pool collects it.
        # How often a task is polled depends on timing: the first poll.)
        steps = [(m, n) for m, count in sorted(counter.snapshot().items())
                 for n in range(1, count + 1) if m != "task.destroy"
                 and not (m == "task.get_record" and n > 1)]
        self.assertIn("Async.VDI.pool_migrate" if attached else "Async.VDI.copy",
                      dict(steps))
        for method, nth in steps:
            vol, run = prepare()
            before = self.state(self.src), self.state(self.dst)
            self.control.inject_fault(method, error=INJECTED, nth=nth)
            try:
                run()
            except exception.XensmError:
                self.control.clear_faults()
                what = "%s #%d (%s)" % (method, nth, "attached" if attached else "detached")
                after_src, after_dst = self.state(self.src), self.state(self.dst)
                self.assertEqual(before[1], after_dst, "destination changed after " + what)
                if method == "Async.VDI.pool_migrate" or not attached:
                    self.assertEqual(before[0], after_src, "source changed after " + what)
                else:
                    # Moved back: a new uuid, the same name and tags, and
                    # the recorded provider_id still finds it.
                    self.assertEqual(len(before[0]["vdis"]), len(after_src["vdis"]), what)
                self.assertContent(self.src, dict(vol, provider_id=self.src.backend.locate(
                    driver_mod.volume_spec(vol))))
                continue
            self.control.clear_faults()
            # A failed poll of the move's task loses track of it, not the
            # move: the verb looks where the VDI went and finishes.
            self.assertEqual(("task.get_record", True), (method, attached),
                             "migrate survived a failed %s #%d" % (method, nth))
            vdi = self.dst.backend.storage.vdi_by_uuid(self.dst.backend.locate(
                driver_mod.volume_spec(vol)))
            self.assertEqual(self.dst.backend.sr_ref, vdi.sr)
            self.assertContent(self.dst, dict(vol, provider_id=vdi.uuid))

    def test_a_lost_copy_answer_leaves_nothing_on_the_destination(self) -> None:
        vol = self.create_volume(self.src)
        before = self.state(self.src), self.state(self.dst)
        self.control.inject_fault("Async.VDI.copy", drop="after")
        self.assertRaises(exception.XensmError, self.src.migrate_volume, None, vol,
                          self.host(self.dst))
        self.control.clear_faults()
        self.assertEqual(before[1], self.state(self.dst))
        # The source keeps the volume (its mark may stay, for its delete).
        self.assertEqual(set(before[0]["vdis"]), set(self.state(self.src)["vdis"]))
        self.assertContent(self.src, vol)
        # And a second attempt moves it.
        moved, update = self.src.migrate_volume(None, vol, self.host(self.dst))
        vol.update(update)
        self.assertIsTheVolume(self.dst, vol)
        self.assertContent(self.dst, vol)

    def test_a_lost_answer_to_the_source_destroy_keeps_the_copy(self) -> None:
        vol = self.create_volume(self.src)
        self.control.inject_fault("VDI.destroy", drop="after")
        moved, update = self.src.migrate_volume(None, vol, self.host(self.dst))
        self.control.clear_faults()
        vol.update(update)
        self.assertIsTheVolume(self.dst, vol)
        self.assertContent(self.dst, vol)

    def test_a_lost_answer_to_the_live_move_is_settled_through_the_vbd(self) -> None:
        vol = self.create_volume(self.src)
        storage = self.src.backend.storage
        vbd = attach_to_dom0(self.src.pool, storage.vdi_by_uuid(vol["provider_id"]).ref)
        self.control.inject_fault("Async.VDI.pool_migrate", drop="after")
        moved, update = self.src.migrate_volume(None, vol, self.host(self.dst))
        self.control.clear_faults()
        vol.update(update)
        vdi = self.assertIsTheVolume(self.dst, vol)
        self.assertEqual(vdi.ref, storage.vbd_vdi(vbd))
        self.assertContent(self.dst, vol)

    def test_a_lost_answer_at_each_call_leaves_one_whole_volume(self) -> None:
        """Each call's answer lost after XAPI acted: the volume ends whole on
        one SR or the other, found by its recorded provider_id, and the
        other SR holds nothing of it."""
        for attached in (False, True):
            self.each_answer_lost(attached)

    def each_answer_lost(self, attached: bool) -> None:
        storage = self.src.backend.storage
        host = self.host(self.dst)

        def prepare() -> tuple[dict[str, Any], Callable[[], Any]]:
            vol = self.create_volume(self.src)
            if attached:
                attach_to_dom0(self.src.pool, storage.vdi_by_uuid(vol["provider_id"]).ref)
            return vol, lambda: self.src.migrate_volume(None, vol, host)

        counter = self.src.pool.counter
        _, run = prepare()
        counter.reset()
        run()
        steps = [(m, n) for m, count in sorted(counter.snapshot().items())
                 for n in range(1, count + 1) if m != "task.destroy"
                 and not (m == "task.get_record" and n > 1)]
        for method, nth in steps:
            vol, run = prepare()
            what = "%s #%d (%s)" % (method, nth, "attached" if attached else "detached")
            dest_before = self.state(self.dst)["vdis"]
            self.control.inject_fault(method, drop="after", nth=nth)
            try:
                update = run()[1] or {}
            except exception.XensmError:
                update = None
            self.control.clear_faults()
            self.control.run_gc()
            if update is None:
                home, other = self.src, self.dst
                found = self.src.backend.locate(driver_mod.volume_spec(vol))
            else:
                vol.update(update)
                home, other = self.dst, self.src
                found = self.assertIsTheVolume(self.dst, vol).uuid
            self.assertContent(home, dict(vol, provider_id=found))
            leftovers = [v for v in other.backend.storage.sr_vdis(other.backend.sr_ref)
                         if v.name_label == "volume-%s" % vol["id"]]
            self.assertEqual([], [(v.uuid, dict(v.other_config)) for v in leftovers], what)
            if update is None:
                self.assertEqual(dest_before, self.state(self.dst)["vdis"], what)

    def test_live_move_to_an_sr_without_storage_motion_is_refused(self) -> None:
        netapp = self.make_driver("netapp", "xs-netapp")
        vol = self.create_volume(self.src)
        storage = self.src.backend.storage
        attach_to_dom0(self.src.pool, storage.vdi_by_uuid(vol["provider_id"]).ref)
        before = self.state(self.src), self.state(netapp)
        exc = self.assertRaises(exception.UnsupportedOperation, self.src.migrate_volume,
                                None, vol, self.host(netapp))
        self.assertIn("SR_DOES_NOT_SUPPORT_MIGRATION", str(exc))
        self.assertEqual(before, (self.state(self.src), self.state(netapp)))
        self.assertContent(self.src, vol)
