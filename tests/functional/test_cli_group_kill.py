"""A ``xensm group snapshot`` killed while the VMs are paused: reconcile finishes it.

The VM carries xensm's pause mark (the group snapshot, the back end, when)
from before its pause, so after a SIGKILL ``xensm reconcile`` finds it,
sees in the inventory that the group snapshot's process is gone, unpauses
the VM and takes the mark off; ``--delete-orphans --yes`` then removes the
partial member snapshots (found by their making marks) and the record.
"""

from __future__ import annotations

import signal
from typing import Any

from tests.functional import test_cli_kill
from xensm_driver.cmd import xensm
from xensm_driver.xapi.vms import PAUSED_BY_KEY


class KillGroupSnapshotTest(test_cli_kill.KillTestCase):
    def guest(self, drv: Any, volumes: list[dict[str, Any]]) -> str:
        pool = drv.pool
        vm = pool.call("VM.create", {"name_label": "guest"})
        for i, vol in enumerate(volumes):
            vdi = drv.backend.storage.vdi_by_uuid(vol["provider_id"])
            pool.call("VBD.create", {
                "VM": vm, "VDI": vdi.ref, "userdevice": str(i), "bootable": False,
                "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                "qos_algorithm_type": "", "qos_algorithm_params": {}})
        pool.call("VM.start", vm, False, False)
        return str(vm)

    def test_killed_while_paused(self) -> None:
        vols = [self.j("volume", "create", "--size", "1", "--name", n) for n in "ab"]
        group = self.j("group", "create", "g", "--volume", "a", "--volume", "b")
        drv = self.storage()
        pool = drv.pool
        vm = self.guest(drv, vols)
        before = self.tagged_vdis(drv)
        # The second member's snapshot is made, its answer held: the
        # process dies with the VM paused and both snapshots half made.
        self.control.inject_fault("VDI.snapshot", hang=30, nth=2)
        proc = self.spawn("group", "snapshot", "g")
        self.wait_for("the second snapshot", self.fault_fired)
        self.assertEqual("Paused", pool.call("VM.get_power_state", vm))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mark = pool.call("VM.get_other_config", vm)[PAUSED_BY_KEY]
        (gsnap,) = self.j("group", "show", "g")["group_snapshots"]
        self.assertEqual((gsnap["id"], "xs"), tuple(mark.split(" ")[:2]))

        report = self.xensm("reconcile", "--json", expect=xensm.EXIT_DRIFT).json
        paused = [f for f in report["findings"] if f["kind"] == "paused_vm"]
        self.assertEqual([pool.call("VM.get_uuid", vm)], [f["id"] for f in paused])
        self.assertIn("unpaused VM", paused[0]["action_taken"])
        self.assertEqual("Running", pool.call("VM.get_power_state", vm))
        self.assertNotIn(PAUSED_BY_KEY, pool.call("VM.get_other_config", vm))
        members = {f["id"] for f in report["findings"] if f["kind"] == "interrupted"}
        self.assertEqual(2, len(members))
        self.assertNotEqual(before, self.tagged_vdis(drv))       # half-made copies

        report = self.xensm("reconcile", "--delete-orphans", "--yes", "--json",
                            expect=None).json
        done = {f["id"]: f["action_taken"] for f in report["findings"]
                if f["kind"] == "interrupted"}
        self.assertEqual(members, set(done))
        self.assertTrue(all(a.startswith("deleted") for a in done.values()), done)
        self.assertEqual(before, self.tagged_vdis(drv))
        for vdi in drv.backend.storage.sr_vdis(drv.backend.sr_ref):
            self.assertFalse([k for k in vdi.other_config if k.startswith("xensm-making-")])
        self.assertEqual(xensm.EXIT_OK, self.xensm("reconcile").code)
        shown = self.j("group", "show", group["id"])
        self.assertEqual(["deleted"], [g["status"] for g in shown["group_snapshots"]])
        # And the group snapshots again, pausing and resuming the VM.
        self.control.clear_faults()
        self.assertEqual(2, len(self.j("group", "snapshot", "g")["snapshots"]))
        self.assertEqual("Running", pool.call("VM.get_power_state", vm))

    def test_vm_snapshot_killed_while_paused(self) -> None:
        vols = [self.j("volume", "create", "--size", "1", "--name", n) for n in "ab"]
        drv = self.storage()
        pool = drv.pool
        vm = self.guest(drv, vols)
        before = self.tagged_vdis(drv)
        self.control.inject_fault("VDI.snapshot", hang=30, nth=2)
        proc = self.spawn("vm", "snapshot", "guest")
        self.wait_for("the second snapshot", self.fault_fired)
        self.assertEqual("Paused", pool.call("VM.get_power_state", vm))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (vmsnap,) = self.j("vm", "list")
        self.assertEqual("creating", vmsnap["status"])
        self.assertIn("interrupted", self.xensm("vm", "list").out)

        report = self.xensm("reconcile", "--json", expect=xensm.EXIT_DRIFT).json
        paused = [f for f in report["findings"] if f["kind"] == "paused_vm"]
        self.assertEqual(1, len(paused))
        self.assertIn("unpaused VM", paused[0]["action_taken"])
        self.assertEqual("Running", pool.call("VM.get_power_state", vm))
        self.assertNotIn(PAUSED_BY_KEY, pool.call("VM.get_other_config", vm))

        self.xensm("reconcile", "--delete-orphans", "--yes", expect=None)
        self.assertEqual(before, self.tagged_vdis(drv))
        self.assertEqual(xensm.EXIT_OK, self.xensm("reconcile").code)
        self.assertEqual([], self.j("vm", "list"))         # deleted: listed no more
        self.assertEqual([], self.j("snapshot", "list"))
        self.control.clear_faults()
        self.assertEqual("available", self.j("vm", "snapshot", "guest")["status"])
        self.assertEqual("Running", pool.call("VM.get_power_state", vm))
