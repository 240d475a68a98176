"""Flows that make, grow and remove a volume's VDI on an SM-native SR.

Store keys: ``backend``, ``ident`` (the volume's identity) and per flow
``size_bytes``, ``provider_id``, ``new_size_bytes``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskflow.patterns import linear_flow

from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.flows import common
from xensm_driver.xapi.storage import VDI

if TYPE_CHECKING:
    from xensm_driver.backends.sm import SRBackend


def create_volume() -> linear_flow.Flow:
    """create_volume: ClaimTask -> CreateVdiTask -> IdentifyVdiTask ->
    ReleaseClaimTask. 4 XAPI calls: the claim makes concurrent creates of
    one id take turns, so they converge on one VDI."""
    return linear_flow.Flow("create_volume").add(
        common.ClaimTask(), common.CreateVdiTask(), common.IdentifyVdiTask(),
        common.ReleaseClaimTask())


def delete_volume() -> linear_flow.Flow:
    """delete_volume: LookupTask (missing is fine) -> DestroyFoundTask. 2 calls
    (1 more per leftover copy destroyed or source unmarked). Store:
    ``source_ident``, what the volume was cloned from, when known."""
    return linear_flow.Flow("delete_volume").add(
        common.LookupTask(), common.DestroyFoundTask())


def extend_volume() -> linear_flow.Flow:
    """extend_volume: FindVdiTask -> CheckResizableTask -> ResizeVdiTask. 2 calls."""
    return linear_flow.Flow("extend_volume").add(
        common.FindVdiTask(), common.CheckResizableTask(), common.ResizeVdiTask())


def revert_to_snapshot() -> linear_flow.Flow:
    """revert_to_snapshot: swap a clone of the snapshot in for the volume's
    VDI, as XAPI's own VM.revert does (xapi_vm_snapshot.ml).

    VDI.copy(into_vdi=) is no revert: it writes only the blocks allocated in
    the snapshot and leaves every other block of the volume as it was. A
    clone of the snapshot is the snapshot's content over the whole virtual
    size, O(1) on VHD SRs. The clone gets the volume's name and tag and
    lists the replaced uuid (identity.REPLACES_TAG), so a recorded
    provider_id still finds the volume; until the old VDI is destroyed, the
    old VDI is the volume (pick). Steps: FindVdiTask (volume, with its
    leftovers) -> FindSnapshotVdiTask -> CheckDetachedTask ->
    CheckCloneAllowedTask -> DestroyLeftoversTask -> MarkSourceTask ->
    CloneVdiTask -> TagRevertedVdiTask -> ReadVdiTask -> UnmarkSourceTask ->
    SwapOutTask. 9 calls. Store: ``ident``/``provider_id`` (volume) and
    ``snapshot_ident``/``snapshot_provider_id``.
    """
    return linear_flow.Flow("revert_to_snapshot").add(
        LookupVolumeTask(),
        common.FindVdiTask(ident_key="snapshot_ident",
                           provider_key="snapshot_provider_id",
                           name="FindSnapshotVdiTask", provides="source_vdi"),
        common.CheckDetachedTask(),
        common.CheckCopyAllowedTask(operation="clone", rebind={"vdi": "source_vdi"}),
        DestroyLeftoversTask(),
        common.MarkSourceTask(),
        common.CloneVdiTask(rebind={"vdi": "source_vdi"}),
        TagRevertedVdiTask(),
        ReadVdiTask(),
        common.UnmarkSourceTask(),
        SwapOutTask())


class LookupVolumeTask(common.XensmTask):
    """The volume's VDI (must exist) and what earlier reverts left. 1 call."""

    default_provides = ("vdi", "leftovers")

    def execute(self, backend: SRBackend, ident: identity.Identity,
                provider_id: str | None) -> tuple[VDI, tuple[VDI, ...]]:
        found = common.lookup(backend, ident, provider_id)
        if found.vdi is None:
            raise common.not_found(backend, ident)
        return found.vdi, found.leftovers


class DestroyLeftoversTask(common.XensmTask):
    """Destroy what an earlier revert of this volume left (a clone never
    swapped in), so that only the clone made now can replace the volume.
    Nothing to revert. 1 call each; usually none."""

    def execute(self, backend: SRBackend, leftovers: tuple[VDI, ...]) -> None:
        common.destroy_each(backend, leftovers, "left by an earlier revert")


class TagRevertedVdiTask(common.XensmTask):
    """Name and tag the clone as the volume, listing the VDI it replaces.
    2 calls. Revert: the clone is destroyed by the task that made it."""

    def execute(self, backend: SRBackend, ident: identity.Identity, vdi_ref: str,
                vdi: VDI) -> None:
        replaces = [*identity.replaced(vdi.other_config), vdi.uuid]
        backend.storage.set_vdi_identity(
            vdi_ref, ident.name_label, ident.tags(vdi.other_config, replaces=replaces))


class ReadVdiTask(common.XensmTask):
    """The clone's record, for the model update. 1 call."""

    default_provides = "new_vdi"

    def execute(self, backend: SRBackend, vdi_ref: str) -> VDI:
        return backend.storage.get_vdi(vdi_ref)


class SwapOutTask(common.XensmTask):
    """Destroy the volume's old VDI: from now on the clone is the volume.

    Last, and it never fails once the old VDI is gone: the flow's revert
    would destroy the clone, and with it the volume. A lost answer is
    settled by looking the old VDI up. 1 call (2 after a lost answer).
    """

    def execute(self, backend: SRBackend, vdi: VDI) -> None:
        try:
            backend.storage.destroy_vdi(vdi.ref)
        except common.GONE:
            return
        except exception.XapiConnectionError:
            if backend.storage.vdi_by_uuid(vdi.uuid) is not None:
                raise
