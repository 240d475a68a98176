"""Consistent group snapshots on SM SRs: the VMs holding the volumes paused.

A guest writes to its disks through the simulator (a write waits while its
VM is paused); the writer issues numbered rounds, each to every disk in
turn, so a snapshot of the group is consistent -- every disk as it was at
one instant -- exactly when its values are a prefix of the write order.
"""

from __future__ import annotations

import struct
import threading
import uuid
from typing import Any

import fixtures

from tests.functional import base
from xensm_driver import exception
from xensm_driver.xapi.vms import PAUSED_BY_KEY

MiB = base.MiB


def consistent(values: list[int]) -> bool:
    """Whether per-disk round numbers (disks written in list order each
    round) are what one instant of the write order leaves: the first k disks
    at round n and the rest at round n - 1."""
    drops = [a - b for a, b in zip(values, values[1:], strict=False)]
    return all(d in (0, 1) for d in drops) and sum(drops) <= 1


class GuestWriter(threading.Thread):
    """Writes round n (8 bytes, big-endian) at offset 0 of every disk in
    turn, through the VM, until stopped."""

    def __init__(self, control: Any, vm_uuid: str, vdi_uuids: list[str]) -> None:
        super().__init__(daemon=True)
        self.control = control
        self.vm_uuid = vm_uuid
        self.vdi_uuids = vdi_uuids
        self.rounds = 0
        self.stop = threading.Event()
        self.progress = threading.Condition()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                n = self.rounds + 1
                for vdi in self.vdi_uuids:
                    self.control.guest_write(self.vm_uuid, vdi, 0, struct.pack(">Q", n))
                with self.progress:
                    self.rounds = n
                    self.progress.notify_all()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def wait_rounds(self, count: int, timeout: float = 30) -> None:
        with self.progress:
            target = self.rounds + count
            ok = self.progress.wait_for(lambda: self.rounds >= target or self.error,
                                        timeout)
        if not ok or self.error:
            raise AssertionError("the guest writer stalled: %r" % (self.error,))

    def finish(self) -> None:
        self.stop.set()
        self.join(30)


class GroupSnapshotTest(base.DriverTestCase):
    SR_TYPE = "nfs"

    def setUp(self) -> None:
        super().setUp()
        self.pool_ = self.driver.pool

    # -- a guest ---------------------------------------------------------------

    def guest(self, volumes: list[dict[str, Any]], start: bool = True) -> tuple[str, str]:
        vm = self.pool_.call("VM.create", {"name_label": "guest-%s" % uuid.uuid4().hex[:6]})
        for i, vol in enumerate(volumes):
            vdi = self.driver.backend.storage.vdi_by_uuid(vol["provider_id"])
            self.pool_.call("VBD.create", {
                "VM": vm, "VDI": vdi.ref, "userdevice": str(i), "bootable": i == 0,
                "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                "qos_algorithm_type": "", "qos_algorithm_params": {}})
        if start:
            self.pool_.call("VM.start", vm, False, False)
        return vm, self.pool_.call("VM.get_uuid", vm)

    def vm_state(self, vm: str) -> tuple[str, bool]:
        other = self.pool_.call("VM.get_other_config", vm)
        return self.pool_.call("VM.get_power_state", vm), PAUSED_BY_KEY in other

    def group_snapshot(self, volumes: list[dict[str, Any]]
                       ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        snaps = [{"id": str(uuid.uuid4()), "volume_id": v["id"], "volume": v,
                  "volume_size": v["size"]} for v in volumes]
        model, updates = self.driver.create_group_snapshot(
            None, {"id": str(uuid.uuid4())}, snaps)
        by_id = {u["id"]: u for u in updates}
        for snap in snaps:
            snap.update(by_id[snap["id"]])
        return model, snaps

    def managed_state(self) -> dict[str, Any]:
        """The SR's VDIs once the coalescer ran (base copies of destroyed
        snapshots go), with the SR's own other_config."""
        self.control.run_gc()
        storage = self.driver.backend.storage
        return dict(self.sr_state(), sr_other_config=tuple(sorted(
            storage.other_config("SR", self.driver.backend.sr_ref).items())))

    def round_of(self, obj: dict[str, Any]) -> int:
        return int(struct.unpack(">Q", self.read(obj, 8))[0])

    # -- tests -----------------------------------------------------------------

    def test_capability_and_stats(self) -> None:
        stats = self.driver.get_volume_stats(True)
        self.assertTrue(stats["consistent_group_snapshot_enabled"])
        self.assertEqual("paused-vms", self.driver.backend.GROUP_CONSISTENCY)

    def test_paused_around_the_snapshots_and_resumed(self) -> None:
        vols = [self.create_volume() for _ in range(2)]
        vm, vm_uuid = self.guest(vols)
        for i, vol in enumerate(vols):
            self.control.guest_write(vm_uuid, vol["provider_id"], 0, b"disk-%d" % i)
        before = self.calls()
        self.control.reset_calls()
        model, snaps = self.group_snapshot(vols)
        after = self.calls()
        cost = {k: after.get(k, 0) - before.get(k, 0) for k in after
                if after.get(k, 0) != before.get(k, 0)}
        # 6 per member, 5 for the VM, the VDI lookup and the VBD lookup.
        self.assertEqual(6 * 2 + 5 + 2, sum(cost.values()), cost)
        sim_calls = self.control.calls()
        self.assertEqual((1, 1), (sim_calls.get("VM.pause"), sim_calls.get("VM.unpause")))
        self.assertEqual("available", model["status"])
        self.assertEqual(("Running", False), self.vm_state(vm))
        for i, snap in enumerate(snaps):
            self.assertEqual(b"disk-%d" % i, self.read(snap, 6))
            self.assertNotEqual(snap["provider_id"], vols[i]["provider_id"])
        # Writes after the snapshot reach the volumes, not the snapshots.
        self.control.guest_write(vm_uuid, vols[0]["provider_id"], 0, b"later!")
        self.assertEqual(b"disk-0", self.read(snaps[0], 6))
        self.driver.delete_group_snapshot(None, {"id": "g"}, snaps)
        for snap in snaps:
            self.assertIsNone(self.driver.backend.storage.vdi_by_uuid(snap["provider_id"]))

    def recorded_calls(self) -> list[str]:
        """Every XAPI call the driver makes from now on, in order (recorded,
        then made as usual)."""
        calls: list[str] = []
        real = self.driver.pool.call

        def call(method: str, *args: Any, **kwargs: Any) -> Any:
            calls.append(method)
            return real(method, *args, **kwargs)
        self.useFixture(fixtures.MonkeyPatch(
            "xensm_driver.xapi.session.SessionPool.call",
            lambda pool, method, *a, **k: call(method, *a, **k)
            if pool is self.driver.pool else real.__func__(pool, method, *a, **k)))
        return calls

    def test_only_the_snapshots_run_while_the_vm_is_paused(self) -> None:
        vols = [self.create_volume() for _ in range(3)]
        self.guest(vols)
        calls = self.recorded_calls()
        self.group_snapshot(vols)
        paused = calls[calls.index("VM.pause") + 1:calls.index("VM.unpause")]
        self.assertEqual(["VDI.snapshot"] * 3, paused)

    def test_a_failed_snapshot_unpauses_before_anything_is_undone(self) -> None:
        vols = [self.create_volume() for _ in range(3)]
        vm, _ = self.guest(vols)
        calls = self.recorded_calls()
        self.control.inject_fault("VDI.snapshot", error=["INTERNAL_ERROR", "injected"], nth=3)
        self.assertRaises(exception.XensmError, self.group_snapshot, vols)
        paused = calls[calls.index("VM.pause") + 1:calls.index("VM.unpause")]
        self.assertEqual(["VDI.snapshot"] * 3, paused)          # the third one failed
        self.assertIn("VDI.destroy", calls[calls.index("VM.unpause"):])
        self.assertEqual(("Running", False), self.vm_state(vm))

    def test_no_vm_no_pause(self) -> None:
        vols = [self.create_volume() for _ in range(2)]
        self.guest(vols, start=False)               # halted: nothing attached
        self.control.reset_calls()
        self.group_snapshot(vols)
        self.assertNotIn("VM.pause", self.control.calls())

    def test_writes_during_the_group_snapshot_land_before_or_after_it(self) -> None:
        vols = [self.create_volume() for _ in range(3)]
        vm, vm_uuid = self.guest(vols)
        writer = GuestWriter(self.control, vm_uuid, [v["provider_id"] for v in vols])
        writer.start()
        self.addCleanup(writer.finish)
        writer.wait_rounds(3)
        # Slow snapshots: the window in which a write could land between
        # two disks' snapshots is wide.
        self.control.inject_fault("VDI.snapshot", latency=0.2, times=3)
        _model, snaps = self.group_snapshot(vols)
        writer.wait_rounds(3)                        # the guest runs again
        writer.finish()
        self.assertIsNone(writer.error)
        values = [self.round_of(s) for s in snaps]
        self.assertTrue(consistent(values), values)
        self.assertGreater(min(values), 0)
        self.assertLess(max(values), writer.rounds)  # writes landed after it too

    def test_volume_by_volume_is_not_consistent(self) -> None:
        """The check above can fail: snapshots one by one, with the guest
        writing between them, are not a prefix of the write order."""
        vols = [self.create_volume() for _ in range(2)]
        _vm, vm_uuid = self.guest(vols)
        snaps = []
        for n in (1, 2, 3):
            for vol in vols:
                self.control.guest_write(vm_uuid, vol["provider_id"], 0,
                                         struct.pack(">Q", n))
            if n != 2:
                snaps.append(self.snapshot_of(vols[len(snaps)]))
        self.assertEqual([1, 3], [self.round_of(s) for s in snaps])
        self.assertFalse(consistent([1, 3]))
        self.assertTrue(consistent([3, 3]) and consistent([4, 3]))

    def test_a_failure_at_every_call_leaves_no_vm_paused_and_no_snapshot(self) -> None:
        vols = [self.create_volume() for _ in range(2)]
        vm, _vm_uuid = self.guest(vols)
        self.control.reset_calls()
        _model, snaps = self.group_snapshot(vols)
        sequence = self.control.calls()
        self.driver.delete_group_snapshot(None, {"id": "g"}, snaps)
        before = self.managed_state()
        steps = [(m, n) for m, c in sorted(sequence.items())
                 if not m.startswith(("session.", "http:")) for n in range(1, c + 1)]
        self.assertGreaterEqual(len(steps), 19)
        for method, nth in steps:
            self.control.clear_faults()
            self.control.inject_fault(method, error=["INTERNAL_ERROR", "injected"], nth=nth)
            with self.subTest(method=method, nth=nth):
                self.assertRaises(exception.XensmError, self.group_snapshot, vols)
                self.control.clear_faults()
                self.assertEqual(("Running", False), self.vm_state(vm))
                self.assertEqual(before, self.managed_state())

    def test_a_lost_pause_answer_is_settled_by_the_power_state(self) -> None:
        vols = [self.create_volume()]
        vm, _vm_uuid = self.guest(vols)
        self.control.inject_fault("VM.pause", drop="after")
        _model, snaps = self.group_snapshot(vols)
        self.assertEqual(("Running", False), self.vm_state(vm))
        self.assertIsNotNone(self.driver.backend.storage.vdi_by_uuid(snaps[0]["provider_id"]))

    def test_a_lost_unpause_answer_is_settled_by_the_power_state(self) -> None:
        vols = [self.create_volume() for _ in range(2)]
        vm, _vm_uuid = self.guest(vols)
        self.control.inject_fault("VM.unpause", drop="after")
        _model, snaps = self.group_snapshot(vols)
        self.assertEqual(("Running", False), self.vm_state(vm))
        for snap in snaps:
            self.assertIsNotNone(self.driver.backend.storage.vdi_by_uuid(snap["provider_id"]))

    def test_a_vm_held_by_another_group_snapshot_is_waited_for(self) -> None:
        vols = [self.create_volume()]
        vm, _vm_uuid = self.guest(vols)
        self.pool_.call("VM.add_to_other_config", vm, PAUSED_BY_KEY,
                        "other-group xs 1.0")        # taken long ago: a lease ran out
        err = self.assertRaises(exception.InUse, self.group_snapshot, vols)
        self.assertIn("other-group", str(err))
        self.assertIn("xensm reconcile", str(err))
        self.assertEqual("Running", self.vm_state(vm)[0])
        self.assertEqual("other-group xs 1.0", self.pool_.call(
            "VM.get_other_config", vm)[PAUSED_BY_KEY])
