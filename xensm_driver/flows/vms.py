"""Tasks that pause the VMs holding a group's volumes, and undo it.

A group snapshot on SM SRs is made consistent -- every volume at one
instant, as a crash would leave them -- by pausing the running VMs that
hold the volumes for the span of the per-VDI snapshots (XenServer removed
VSS quiescing in 8.1; XAPI's own VM.snapshot snapshots a VM's disks one
after the other without pausing it, xen-api ``xapi_vm_clone.ml``
``safe_clone_disks``).

Per VM, :class:`MarkVmTask` first writes who pauses it (the group
snapshot, the back end, when) into the VM's other_config, then
:class:`PauseVmTask` pauses it; :class:`ResumeVmsTask` unpauses every VM
and takes the marks off once the snapshots exist. A failure anywhere
unpauses first (:func:`resume`; the snapshot tasks of a group do it before
destroying what they made) and removes a mark only from a VM that runs
again. A VM a dead process left paused keeps its mark, which ``xensm
reconcile`` finds (:func:`finish_left_paused`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from oslo_log import log as logging

from xensm_driver import exception
from xensm_driver.flows import vdi as vdis
from xensm_driver.flows.engine import GONE
from xensm_driver.flows.engine import XensmTask
from xensm_driver.flows.engine import answer_or_lookup
from xensm_driver.flows.engine import failed
from xensm_driver.flows.engine import outcome_unknown
from xensm_driver.flows.engine import undo
from xensm_driver.flows.target import SRTarget
from xensm_driver.flows.target import Target
from xensm_driver.xapi.vms import VM
from xensm_driver.xapi.vms import PauseMark

LOG = logging.getLogger(__name__)


def holders(target: Target, vdi_refs: Iterable[str], vbd_refs: Iterable[str]) -> list[VM]:
    """The running guests that hold any of these VDIs attached, which a
    consistent group snapshot pauses. A VM already paused (not by xensm)
    takes no I/O and is left as it is; a disk plugged into a control domain (a transfer, a
    tool) cannot be paused and is logged. 0 calls when the VDIs have no
    VBD, else 1 + 1 per VM."""
    if not list(vbd_refs):
        return []
    vms = target.storage.vms
    attached = sorted({b.vm for b in vms.vbds_of_vdis(vdi_refs) if b.currently_attached})
    found = []
    for ref in attached:
        try:
            vm = vms.get(ref)
        except GONE:
            continue
        if vm.is_control_domain:
            LOG.warning("A volume of the group is plugged into the control domain %s "
                        "(a transfer?); it cannot be paused, so writes through it are "
                        "not held for the group snapshot.", vm.name_label)
            continue
        # A VM another group snapshot holds paused is one too: MarkVmTask
        # waits for that one to unpause it, so it cannot unpause it in the
        # middle of this one. A VM paused by somebody else stays as it is.
        if vm.power_state == "Running" or (vm.power_state == "Paused"
                                           and vm.paused_by is not None):
            found.append(vm)
    return found


def _bad_power_state(exc: exception.XapiError) -> bool:
    return exc.code == "VM_BAD_POWER_STATE"


def resume(target: Target, vm: VM) -> bool:
    """Unpause ``vm`` while undoing; never raises. Whether it runs (or is at
    least not paused) afterwards. 1 call."""
    try:
        target.storage.vms.unpause(vm.ref)
        return True
    except GONE:
        return True
    except exception.XapiError as exc:
        if _bad_power_state(exc):
            return True                 # not paused (any more)
        LOG.error("Could not unpause VM %s (%s): %s. It stays paused with its mark; "
                  "'xensm reconcile' unpauses it.", vm.uuid, vm.name_label, exc)
        return False
    except exception.XensmError as exc:
        LOG.error("Could not unpause VM %s (%s): %s. It stays paused with its mark; "
                  "'xensm reconcile' unpauses it.", vm.uuid, vm.name_label, exc)
        return False


class MarkVmTask(XensmTask):
    """Write the pause mark on one VM before it is paused: a process that
    dies while the VM is paused leaves a record naming the group snapshot.

    Another group snapshot's mark means that one holds the VM paused now:
    wait for it, up to the lease, then refuse (if its process died,
    ``xensm reconcile`` removes it). 1 call (+1 per wait). Revert removes
    the mark -- unless the VM is still paused (its unpause failed): then
    the mark stays for reconcile. 1-2 calls.
    """

    def __init__(self, index: int, **kwargs: Any) -> None:
        super().__init__(name="MarkVmTask:%d" % index, rebind={"vm": "vm_%d" % index},
                         provides="vm_mark_%d" % index, **kwargs)

    def execute(self, target: Target, vm: VM, group_snapshot_id: str) -> str:
        vms = target.storage.vms
        mark = PauseMark(group_snapshot_id, target.backend, time.time())
        deadline = time.monotonic() + target.lease
        delay = 0.02
        while True:
            try:
                vms.mark_paused(vm.ref, mark)
                return str(mark)
            except exception.XapiConnectionError as exc:
                if not exc.sent:
                    raise
                held = vms.pause_mark(vm.ref)
                if held is not None and held.group_snapshot_id == group_snapshot_id:
                    return str(held)            # our add was carried out
                raise
            except exception.XapiError as exc:
                if exc.code != "MAP_DUPLICATE_KEY":
                    raise
            held = vms.pause_mark(vm.ref)
            if held is None:
                continue                        # released meanwhile
            if held.group_snapshot_id == group_snapshot_id:
                return str(held)
            # A mark older than the lease was left by a process that died
            # (reconcile's to undo): refuse at once rather than wait.
            if time.monotonic() > deadline or time.time() - held.since > target.lease:
                raise exception.InUse(
                    kind="VM", name="%s (%s)" % (vm.uuid, vm.name_label),
                    reason="group snapshot %s of back end %s holds it paused since %s; "
                           "retry when it is done, or run 'xensm reconcile' if the "
                           "process that took it died" % (
                               held.group_snapshot_id, held.backend,
                               time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                             time.gmtime(held.since))))
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def revert(self, target: Target, vm: VM, result: Any, **kwargs: Any) -> None:
        if failed(result):
            return
        vms = target.storage.vms
        try:
            if vms.power_state(vm.ref) == "Paused":
                LOG.error("VM %s (%s) is still paused: its mark %s stays, so that "
                          "'xensm reconcile' unpauses it.", vm.uuid, vm.name_label, result)
                return
        except GONE:
            return
        except exception.XensmError as exc:
            LOG.error("Could not read the power state of VM %s: %s; its pause mark "
                      "stays for 'xensm reconcile'.", vm.uuid, exc)
            return
        undo("the pause mark on VM %s" % vm.uuid, vms.unmark_paused, vm.ref)


class PauseVmTask(XensmTask):
    """VM.pause one running VM that holds a volume of the group. 1 call (2
    after a lost answer: the power state says whether it was carried out).
    Revert unpauses it (also when the pause's outcome is unknown)."""

    def __init__(self, index: int, **kwargs: Any) -> None:
        super().__init__(name="PauseVmTask:%d" % index, rebind={"vm": "vm_%d" % index},
                         provides="vm_paused_%d" % index, **kwargs)

    def execute(self, target: Target, vm: VM) -> bool:
        vms = target.storage.vms

        def paused() -> bool | None:
            return True if vms.power_state(vm.ref) == "Paused" else None
        LOG.info("Pausing VM %s (%s) for a group snapshot.", vm.uuid, vm.name_label)

        def pause() -> bool:
            vms.pause(vm.ref)
            return True
        return answer_or_lookup(pause, paused)

    def revert(self, target: Target, vm: VM, result: Any, flow_failures: Any = None,
               **kwargs: Any) -> None:
        if failed(result) and not outcome_unknown(flow_failures):
            return
        resume(target, vm)


class GroupSnapshotVdiTask(vdis.SnapshotVdiTask):
    """VDI.snapshot of one member while its VMs are paused. Its revert
    unpauses the group's VMs before destroying the snapshot, so that no
    undo lengthens the pause. 1 call."""

    def execute(self, target: SRTarget, vdi: Any,  # type: ignore[override]
                paused_vms: list[VM]) -> str:
        return super().execute(target, vdi)

    def revert(self, target: SRTarget, result: Any, paused_vms: list[VM] | None = None,
               **kwargs: Any) -> None:
        for vm in paused_vms or []:
            resume(target, vm)
        super().revert(target, result, **kwargs)


class ResumeVmsTask(XensmTask):
    """Unpause every VM the group snapshot paused, then take its mark off:
    right after the last snapshot. 2 calls per VM (+1 after a lost answer
    to the unpause: the power state settles it). A failure fails the verb
    (whose undo unpauses again and keeps the mark on a VM still paused)."""

    def execute(self, target: Target, paused_vms: list[VM]) -> None:
        vms = target.storage.vms
        for vm in paused_vms:

            def unpause(vm: VM = vm) -> bool:
                vms.unpause(vm.ref)
                return True

            def running(vm: VM = vm) -> bool | None:
                # A lost answer: the power state says whether it landed.
                return True if vms.power_state(vm.ref) != "Paused" else None
            try:
                answer_or_lookup(unpause, running)
            except exception.XapiError as exc:
                if not _bad_power_state(exc):
                    raise
                LOG.warning("VM %s was no longer paused when the group snapshot "
                            "resumed it (%s).", vm.uuid, exc.params)
            vms.unmark_paused(vm.ref)


def finish_left_paused(target: Target, vm: VM, alive: bool) -> str:
    """What reconcile does with a VM carrying xensm's pause mark: unpause
    it and take the mark off, unless the group snapshot that paused it is
    still running (``alive``). Returns what was done. 1-2 calls."""
    mark = vm.paused_by
    if alive:
        return "left alone: group snapshot %s is still running" % (
            mark.group_snapshot_id if mark else "?")
    vms = target.storage.vms
    if vm.power_state == "Paused":
        vms.unpause(vm.ref)
        done = "unpaused"
    else:
        done = "was %s" % vm.power_state.lower()
    vms.unmark_paused(vm.ref)
    return "%s VM %s (%s) and removed its pause mark" % (done, vm.uuid, vm.name_label)
