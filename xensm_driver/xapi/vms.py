"""Typed XAPI calls on VMs: who holds a VDI, pause and unpause, marks.

A group snapshot on SM SRs pauses the VMs that hold its volumes for the
instant of the per-VDI snapshots (xen-api ``xapi_vm.ml`` ``pause``: the
domain's vCPUs stop; its disks stay attached and take no I/O). Each call
documents its round trips, as ``storage.py`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from xensm_driver.xapi.session import SessionPool
from xensm_driver.xapi.storage import _quote

#: A VM's other_config key while xensm holds it paused for a group
#: snapshot. Its value is :func:`pause_mark`: the group snapshot, the back
#: end, and when -- so that ``xensm reconcile`` can unpause a VM a dead
#: process left paused.
PAUSED_BY_KEY = "xensm-paused-by"


@dataclasses.dataclass(frozen=True)
class VM:
    ref: str
    uuid: str
    name_label: str
    power_state: str
    is_control_domain: bool
    is_a_snapshot: bool
    other_config: Mapping[str, str]
    vbds: tuple[str, ...]

    @classmethod
    def from_xapi(cls, ref: str, rec: Mapping[str, Any]) -> VM:
        return cls(ref=ref, uuid=rec["uuid"], name_label=rec.get("name_label", ""),
                   power_state=rec.get("power_state", "Halted"),
                   is_control_domain=bool(rec.get("is_control_domain")),
                   is_a_snapshot=bool(rec.get("is_a_snapshot")),
                   other_config=dict(rec.get("other_config") or {}),
                   vbds=tuple(rec.get("VBDs") or ()))

    @property
    def paused_by(self) -> PauseMark | None:
        value = self.other_config.get(PAUSED_BY_KEY)
        return PauseMark.parse(value) if value else None


@dataclasses.dataclass(frozen=True)
class VBD:
    ref: str
    vm: str
    vdi: str
    userdevice: str
    currently_attached: bool
    type: str
    mode: str = "RW"
    bootable: bool = False
    empty: bool = False

    @classmethod
    def from_xapi(cls, ref: str, rec: Mapping[str, Any]) -> VBD:
        return cls(ref=ref, vm=rec.get("VM", ""), vdi=rec.get("VDI", ""),
                   userdevice=str(rec.get("userdevice", "")),
                   currently_attached=bool(rec.get("currently_attached")),
                   type=rec.get("type", "Disk"), mode=rec.get("mode", "RW"),
                   bootable=bool(rec.get("bootable")), empty=bool(rec.get("empty")))


@dataclasses.dataclass(frozen=True)
class PauseMark:
    """Who paused a VM: ``<group snapshot id> <back end> <epoch seconds>``."""

    group_snapshot_id: str
    backend: str
    since: float

    def __str__(self) -> str:
        return "%s %s %.6f" % (self.group_snapshot_id, self.backend, self.since)

    @classmethod
    def parse(cls, value: str) -> PauseMark | None:
        parts = value.split(" ")
        if len(parts) != 3:
            return None
        try:
            return cls(parts[0], parts[1], float(parts[2]))
        except ValueError:
            return None


class VMs:
    """Typed VM calls over one :class:`SessionPool`."""

    def __init__(self, pool: SessionPool) -> None:
        self.pool = pool

    def vbds_of_vdis(self, vdi_refs: Iterable[str]) -> list[VBD]:
        """Every VBD of these VDIs. 1 call, whatever their number."""
        refs = sorted(set(vdi_refs))
        if not refs:
            return []
        where = " or ".join('field "VDI"=%s' % _quote(r) for r in refs)
        records = self.pool.call("VBD.get_all_records_where", where, obj=refs[0])
        return [VBD.from_xapi(r, rec) for r, rec in records.items()]

    def vbds_of_vm(self, vm_ref: str) -> list[VBD]:
        """The VM's VBDs. 1 call."""
        records = self.pool.call("VBD.get_all_records_where",
                                 'field "VM"=%s' % _quote(vm_ref), obj=vm_ref)
        return sorted((VBD.from_xapi(r, rec) for r, rec in records.items()),
                      key=lambda b: b.userdevice)

    def create_vbd(self, vm_ref: str, vdi_ref: str, userdevice: str, *, mode: str = "RW",
                   bootable: bool = False) -> str:
        """A (detached) disk VBD of the VM on the VDI. 1 call."""
        return str(self.pool.call("VBD.create", {
            "VM": vm_ref, "VDI": vdi_ref, "userdevice": userdevice, "bootable": bootable,
            "mode": mode, "type": "Disk", "empty": False, "other_config": {},
            "qos_algorithm_type": "", "qos_algorithm_params": {}}, obj=vm_ref))

    def get(self, vm_ref: str) -> VM:
        """The VM record. 1 call."""
        return VM.from_xapi(vm_ref, self.pool.call("VM.get_record", vm_ref, obj=vm_ref))

    def power_state(self, vm_ref: str) -> str:
        """The VM's power state (Halted, Paused, Running, Suspended). 1 call."""
        return str(self.pool.call("VM.get_power_state", vm_ref, obj=vm_ref))

    def find(self, name_or_uuid: str) -> list[VM]:
        """Guests (no control domain, no snapshot, no template) with this uuid
        or name label. 1 call."""
        where = 'field "uuid"=%s or field "name__label"=%s' % (
            _quote(name_or_uuid), _quote(name_or_uuid))
        records = self.pool.call("VM.get_all_records_where", where, obj=name_or_uuid)
        vms = [VM.from_xapi(r, rec) for r, rec in records.items()
               if not rec.get("is_control_domain") and not rec.get("is_a_template")
               and not rec.get("is_a_snapshot")]
        return sorted(vms, key=lambda v: v.uuid)

    def marked_paused(self) -> list[VM]:
        """VMs carrying xensm's pause mark (what a process that died
        mid-way left). 1 call; it reads the whole VM table, so only
        reconcile uses it."""
        records = self.pool.call("VM.get_all_records")
        return [VM.from_xapi(r, rec) for r, rec in records.items()
                if PAUSED_BY_KEY in (rec.get("other_config") or {})]

    def pause(self, vm_ref: str) -> None:
        """VM.pause: Running -> Paused (VM_BAD_POWER_STATE otherwise). 1 call."""
        self.pool.call("VM.pause", vm_ref, obj=vm_ref)

    def unpause(self, vm_ref: str) -> None:
        """VM.unpause: Paused -> Running (VM_BAD_POWER_STATE otherwise). 1 call."""
        self.pool.call("VM.unpause", vm_ref, obj=vm_ref)

    def mark_paused(self, vm_ref: str, mark: PauseMark) -> None:
        """Add the pause mark; MAP_DUPLICATE_KEY when one is there (a
        compare-and-set the pool agrees on). 1 call."""
        self.pool.call("VM.add_to_other_config", vm_ref, PAUSED_BY_KEY, str(mark),
                       obj=vm_ref)

    def unmark_paused(self, vm_ref: str) -> None:
        """Remove the pause mark (absent is fine). 1 call."""
        self.pool.call("VM.remove_from_other_config", vm_ref, PAUSED_BY_KEY, obj=vm_ref)

    def pause_mark(self, vm_ref: str) -> PauseMark | None:
        """The VM's pause mark, if any. 1 call."""
        value = (self.pool.call("VM.get_other_config", vm_ref, obj=vm_ref)
                 or {}).get(PAUSED_BY_KEY)
        return PauseMark.parse(value) if value else None
