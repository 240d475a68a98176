"""Guests: power states, pause, VM.snapshot / VM.revert, writes through a VM."""

from __future__ import annotations

import threading
from typing import Any

import XenAPI

from tests.functional.sim import base

MiB = base.MiB


def read_at(sim: Any, x: Any, vdi: str, offset: int, length: int) -> bytes:
    """Bytes of a VDI's content, straight from the simulator's data file."""
    with sim.xapi.lock:
        path = sim.xapi.data_file(vdi)
    with open(path, 'rb') as f:
        f.seek(offset)
        return f.read(length)


class TestVM(base.SimTestCase):
    srs = ('nfs',)

    def guest(self, disks: int = 2) -> tuple[str, list[str]]:
        vm = self.x.VM.create({'name_label': 'guest'})
        vdis = []
        for i in range(disks):
            vdi = self.vdi(self.sr('nfs'), 64 * MiB, name='disk%d' % i)
            self.x.VBD.create({
                'VM': vm, 'VDI': vdi, 'userdevice': str(i), 'bootable': i == 0,
                'mode': 'RW', 'type': 'Disk', 'empty': False, 'other_config': {},
                'qos_algorithm_type': '', 'qos_algorithm_params': {}})
            vdis.append(vdi)
        return vm, vdis

    def test_power_states_as_xapi_allows_them(self) -> None:
        vm, vdis = self.guest()
        # xapi_vm_lifecycle.ml: pause needs running, unpause paused.
        self.assertFailure(['VM_BAD_POWER_STATE', vm, 'running', 'halted'],
                           self.x.VM.pause, vm)
        self.assertFailure(['VM_BAD_POWER_STATE', vm, 'paused', 'halted'],
                           self.x.VM.unpause, vm)
        self.x.VM.start(vm, False, False)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        vbds = self.x.VM.get_VBDs(vm)
        self.assertTrue(all(self.x.VBD.get_currently_attached(b) for b in vbds))
        self.assertFailure(['VM_BAD_POWER_STATE', vm, 'halted', 'running'],
                           self.x.VM.start, vm, False, False)
        self.x.VM.pause(vm)
        self.assertEqual('Paused', self.x.VM.get_power_state(vm))
        self.assertFailure(['VM_BAD_POWER_STATE', vm, 'running', 'paused'],
                           self.x.VM.pause, vm)
        self.assertFailure(['VM_BAD_POWER_STATE', vm, 'running', 'paused'],
                           self.x.VM.clean_shutdown, vm)
        self.x.VM.unpause(vm)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertFailure(['VM_BAD_POWER_STATE', vm, 'halted, suspended', 'running'],
                           self.x.VM.destroy, vm)
        self.x.VM.clean_shutdown(vm)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))
        self.assertFalse(any(self.x.VBD.get_currently_attached(b) for b in vbds))
        dom0 = self.dom0()
        self.assertFailure(['OPERATION_NOT_ALLOWED'], self.x.VM.pause, dom0)
        self.x.VM.destroy(vm)
        for vdi in vdis:                     # the disks stay
            self.x.VDI.get_uuid(vdi)

    def test_writes_wait_while_paused(self) -> None:
        vm, vdis = self.guest(1)
        self.x.VM.start(vm, False, False)
        vm_uuid = self.x.VM.get_uuid(vm)
        vdi_uuid = self.x.VDI.get_uuid(vdis[0])
        self.ctl.guest_write(vm_uuid, vdi_uuid, 0, b'one')
        self.assertEqual(b'one', read_at(self.sim, self.x, vdis[0], 0, 3))
        self.x.VM.pause(vm)
        landed = threading.Event()

        def write() -> None:
            self.ctl.guest_write(vm_uuid, vdi_uuid, 0, b'two')
            landed.set()
        worker = threading.Thread(target=write)
        worker.start()
        self.assertFalse(landed.wait(0.3))
        snap = self.x.VDI.snapshot(vdis[0], {})       # taken while paused
        self.assertEqual(b'one', read_at(self.sim, self.x, vdis[0], 0, 3))
        self.x.VM.unpause(vm)
        self.assertTrue(landed.wait(10))
        worker.join()
        self.assertEqual(b'two', read_at(self.sim, self.x, vdis[0], 0, 3))
        self.assertEqual(b'one', read_at(self.sim, self.x, snap, 0, 3))

    def test_write_to_a_halted_guest_fails(self) -> None:
        vm, vdis = self.guest(1)
        from xensm_driver.sim.control import ControlError
        exc = self.assertRaises(
            ControlError, self.ctl.guest_write, self.x.VM.get_uuid(vm),
            self.x.VDI.get_uuid(vdis[0]), 0, b'x')
        self.assertEqual(409, exc.status)
        self.assertEqual('VM_BAD_POWER_STATE', exc.message[0])

    def test_snapshot_and_revert(self) -> None:
        vm, vdis = self.guest()
        self.x.VM.start(vm, False, False)
        vm_uuid = self.x.VM.get_uuid(vm)
        uuids = [self.x.VDI.get_uuid(v) for v in vdis]
        for u in uuids:
            self.ctl.guest_write(vm_uuid, u, 0, b'before')
        snap = self.x.VM.snapshot(vm, 'snap')
        rec = self.x.VM.get_record(snap)
        self.assertTrue(rec['is_a_snapshot'])
        self.assertEqual(vm, rec['snapshot_of'])
        self.assertEqual('Halted', rec['power_state'])
        self.assertEqual('Running', rec['snapshot_info']['power-state-at-snapshot'])
        snap_vdis = [self.x.VBD.get_VDI(b) for b in rec['VBDs']]
        self.assertEqual(sorted(vdis), sorted(self.x.VDI.get_snapshot_of(v)
                                              for v in snap_vdis))
        for u in uuids:
            self.ctl.guest_write(vm_uuid, u, 0, b'after!')
        # Revert while the disks are attached fails, and leaves the VM halted.
        exc = self.assertRaises(XenAPI.Failure, self.x.VM.revert, snap)
        self.assertEqual(['VM_REVERT_FAILED', snap, vm], exc.details)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))
        for v in vdis:                               # nothing was destroyed
            self.x.VDI.get_uuid(v)
        self.assertEqual(2 + 2, len([r for r in self.x.VDI.get_all_records().values()
                                     if r['managed']]))
        self.x.VM.revert(snap)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))
        new_vdis = [self.x.VBD.get_VDI(b) for b in self.x.VM.get_VBDs(vm)]
        self.assertEqual(2, len(new_vdis))
        for v in new_vdis:
            self.assertNotIn(self.x.VDI.get_uuid(v), uuids)   # new uuids
            self.assertEqual(b'before', read_at(self.sim, self.x, v, 0, 6))
        for v in vdis:                               # the old disks are gone
            self.assertFailure(['HANDLE_INVALID'], self.x.VDI.get_uuid, v)
        self.assertFailure(['ONLY_REVERT_SNAPSHOT'], self.x.VM.revert, vm)
