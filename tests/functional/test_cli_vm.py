"""``xensm vm snapshot|list|revert|delete``: all of a VM's volumes at once."""

from __future__ import annotations

import io
from typing import Any

from tests.functional import test_cli
from xensm_driver.cmd import xensm
from xensm_driver.xapi import transfer
from xensm_driver.xapi.vms import PAUSED_BY_KEY

INJECTED = ["INTERNAL_ERROR", "fault injected by the test"]


class VMSnapshotTest(test_cli.CliTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.drv = self.storage()
        self.pool = self.drv.pool

    def guest(self, volumes: list[dict[str, Any]], extra_vdi: str | None = None) -> str:
        vm = self.pool.call("VM.create", {"name_label": "web"})
        refs = [self.drv.backend.storage.vdi_by_uuid(v["provider_id"]).ref for v in volumes]
        if extra_vdi:
            refs.append(extra_vdi)
        for i, ref in enumerate(refs):
            self.pool.call("VBD.create", {
                "VM": vm, "VDI": ref, "userdevice": str(i + 1), "bootable": i == 0,
                "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                "qos_algorithm_type": "", "qos_algorithm_params": {}})
        self.pool.call("VM.start", vm, False, False)
        return str(vm)

    def write(self, vm: str, vdi_uuid: str, data: bytes) -> None:
        self.control.guest_write(self.pool.call("VM.get_uuid", vm), vdi_uuid, 0, data)

    def read(self, vdi_uuid: str, length: int) -> bytes:
        out = io.BytesIO()
        vdi = self.drv.backend.storage.vdi_by_uuid(vdi_uuid)
        transfer.download(self.pool, vdi_uuid, out, size=vdi.virtual_size, length=length)
        return out.getvalue()

    def disks(self, vm: str) -> dict[str, str]:
        """userdevice -> VDI uuid of the VM's disks."""
        out = {}
        for vbd in self.pool.call("VM.get_VBDs", vm):
            rec = self.pool.call("VBD.get_record", vbd)
            out[rec["userdevice"]] = self.pool.call("VDI.get_uuid", rec["VDI"])
        return out

    def test_snapshot_revert_delete(self) -> None:
        vols = [self.j("volume", "create", "--size", "1", "--name", n) for n in ("a", "b")]
        other = self.drv.backend.storage.create_vdi(self.drv.backend.sr_ref, 1 << 30,
                                                    "os-disk", {})
        vm = self.guest(vols, extra_vdi=other)
        for vol in vols:
            self.write(vm, vol["provider_id"], b"before")
        made = self.j("vm", "snapshot", "web", "--name", "s1")
        self.assertEqual("available", made["status"])
        self.assertEqual("xs: paused-vms", made["consistency"])
        self.assertEqual(self.pool.call("VDI.get_uuid", other), made["skipped"])
        self.assertEqual(["1", "2"], [s["vm_userdevice"] for s in made["snapshots"]])
        self.assertEqual(("Running", False), (
            self.pool.call("VM.get_power_state", vm),
            PAUSED_BY_KEY in self.pool.call("VM.get_other_config", vm)))
        for vol in vols:
            self.write(vm, vol["provider_id"], b"after!")
        listed = self.j("vm", "list", "web")
        self.assertEqual([made["id"]], [v["id"] for v in listed])
        self.assertIn("s1", self.xensm("vm", "list").out)

        refused = self.xensm("vm", "revert", "s1", expect=xensm.EXIT_REFUSED)
        self.assertIn("shut it down first", refused.err)
        self.pool.call("VM.clean_shutdown", vm)
        before_disks = self.disks(vm)
        reverted = self.j("vm", "revert", "s1")
        after_disks = self.disks(vm)
        # The same slots, new VDIs for the volumes (an SM revert swaps in a
        # clone), the other disk untouched.
        self.assertEqual(sorted(before_disks), sorted(after_disks))
        self.assertEqual(before_disks["3"], after_disks["3"])
        new = {v["name"]: v["provider_id"] for v in reverted["volumes"]}
        self.assertEqual([new["a"], new["b"]], [after_disks["1"], after_disks["2"]])
        for uuid in (new["a"], new["b"]):
            self.assertEqual(b"before", self.read(uuid, 6))
        self.pool.call("VM.start", vm, False, False)
        self.write(vm, new["a"], b"again!")

        self.assertEqual("deleted", self.j("vm", "delete", "s1")["status"])
        for snap in made["snapshots"]:
            self.assertIsNone(self.drv.backend.storage.vdi_by_uuid(snap["provider_id"]))
        self.assertEqual([], self.j("vm", "list"))
        self.assertEqual(xensm.EXIT_OK, self.xensm("reconcile").code)

    def test_a_failed_vm_snapshot_leaves_nothing(self) -> None:
        vols = [self.j("volume", "create", "--size", "1", "--name", n) for n in ("a", "b")]
        vm = self.guest(vols)
        before = self.tagged_vdis(self.drv)
        for method, nth in (("VDI.snapshot", 2), ("VM.unpause", 1), ("VM.pause", 1)):
            self.control.clear_faults()
            self.control.inject_fault(method, error=INJECTED, nth=nth)
            self.xensm("vm", "snapshot", "web", expect=xensm.EXIT_FAILED)
            self.control.clear_faults()
            self.assertEqual("Running", self.pool.call("VM.get_power_state", vm))
            self.assertNotIn(PAUSED_BY_KEY, self.pool.call("VM.get_other_config", vm))
            self.assertEqual(before, self.tagged_vdis(self.drv))
        self.assertEqual(["error"] * 3, [v["status"] for v in self.j("vm", "list")])
        self.assertEqual([], [s for s in self.j("snapshot", "list")])

    def test_a_failure_at_every_xapi_call_of_vm_snapshot(self) -> None:
        vols = [self.j("volume", "create", "--size", "1", "--name", n) for n in ("a", "b")]
        vm = self.guest(vols)
        before = self.tagged_vdis(self.drv)
        self.control.reset_calls()
        made = self.j("vm", "snapshot", "web")
        sequence = self.control.calls()
        self.xensm("vm", "delete", made["id"])
        steps = [(m, n) for m, c in sorted(sequence.items())
                 if not m.startswith(("session.", "http:")) for n in range(1, c + 1)]
        self.assertGreaterEqual(len(steps), 19)
        failed = 0
        for method, nth in steps:
            self.control.clear_faults()
            self.control.inject_fault(method, error=INJECTED, nth=nth)
            result = self.xensm("vm", "snapshot", "web", "--json", expect=None)
            self.control.clear_faults()
            if result.code == 0:        # the fault hit a call that was retried
                self.xensm("vm", "delete", result.json["id"])
            else:
                failed += 1
            self.assertEqual("Running", self.pool.call("VM.get_power_state", vm),
                             "%s #%d" % (method, nth))
            self.assertNotIn(PAUSED_BY_KEY, self.pool.call("VM.get_other_config", vm))
            self.assertEqual(before, self.tagged_vdis(self.drv), "%s #%d" % (method, nth))
            self.assertEqual([], self.j("snapshot", "list"), "%s #%d" % (method, nth))
        self.assertGreater(failed, len(steps) // 2)

    def test_a_vm_without_xensm_volumes_is_refused(self) -> None:
        other = self.drv.backend.storage.create_vdi(self.drv.backend.sr_ref, 1 << 30,
                                                    "os-disk", {})
        self.guest([], extra_vdi=other)
        self.j("volume", "create", "--size", "1", "--name", "a")   # makes the inventory
        err = self.xensm("vm", "snapshot", "web", expect=xensm.EXIT_REFUSED).err
        self.assertIn("holds no xensm volume", err)
        self.xensm("vm", "snapshot", "nope", expect=xensm.EXIT_NOT_FOUND)


class MixedBackendsVMSnapshotTest(test_cli.CliTestCase):
    """A VM with a volume on an nfs SR and one on SolidFire: each back end
    takes its share its own way (the VM paused; one array group snapshot)."""

    SIM_KWARGS = {"solidfire": True, "supplemental_packs": ("relvmoiscsi",)}

    def setUp(self) -> None:
        super().setUp()
        from tests.functional import base
        self.conf = self.write_config(
            base.backend_ini(self.sim, "nfs", section="xs") + "\n"
            + base.backend_ini(self.sim, "solidfire", section="sf"), "mixed.conf")
        self.drv = self.storage()
        self.pool = self.drv.pool

    def test_each_back_end_takes_its_share(self) -> None:
        a = self.j("volume", "create", "--size", "1", "--name", "a", "--backend", "xs")
        b = self.j("volume", "create", "--size", "1", "--name", "b", "--backend", "sf")
        vm = self.pool.call("VM.create", {"name_label": "mixed"})
        for i, vol in enumerate((a, b)):
            ref = self.pool.call("VDI.get_by_uuid", vol["provider_id"])
            self.pool.call("VBD.create", {
                "VM": vm, "VDI": ref, "userdevice": str(i), "bootable": False,
                "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                "qos_algorithm_type": "", "qos_algorithm_params": {}})
        self.pool.call("VM.start", vm, False, False)
        vm_uuid = self.pool.call("VM.get_uuid", vm)
        for vol in (a, b):
            self.control.guest_write(vm_uuid, vol["provider_id"], 0, b"before")
        self.control.reset_calls()
        made = self.j("vm", "snapshot", "mixed")
        self.assertEqual("sf: array, xs: paused-vms", made["consistency"])
        self.assertEqual(1, self.control.calls().get("VM.pause"))
        by_backend = {s["backend"]: s for s in made["snapshots"]}
        self.assertEqual({"xs", "sf"}, set(by_backend))
        for vol in (a, b):
            self.control.guest_write(vm_uuid, vol["provider_id"], 0, b"after!")
        self.pool.call("VM.clean_shutdown", vm)
        reverted = {v["name"]: v for v in self.j("vm", "revert", made["id"])["volumes"]}
        self.assertEqual(b["provider_id"], reverted["b"]["provider_id"])   # in place
        disks = {}
        for vbd in self.pool.call("VM.get_VBDs", vm):
            rec = self.pool.call("VBD.get_record", vbd)
            disks[rec["userdevice"]] = self.pool.call("VDI.get_uuid", rec["VDI"])
        self.assertEqual({"0": reverted["a"]["provider_id"], "1": b["provider_id"]}, disks)
        for name in ("a", "b"):
            self.assertEqual(b"before", self.content(name, 6))
        self.assertEqual("deleted", self.j("vm", "delete", made["id"])["status"])
        self.assertEqual([], self.j("snapshot", "list"))
