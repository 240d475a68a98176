"""Flows of the SolidFire back end: one array volume, one SR, one VDI per volume.

A volume is an Element volume (a LUN) granted to the pool's volume access
group, an ``lvmoiscsi`` SR on that LUN, and one VDI filling the SR. Each
task makes one of those and undoes it in ``revert``; snapshots, clones and
reverts happen on the array.

Store keys: ``backend`` (a SolidFireBackend), ``ident``, and per flow the
names below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from oslo_log import log as logging
from taskflow.patterns import linear_flow

from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.flows import common
from xensm_driver.flows.setup_sr import PlugEverywhereTask
from xensm_driver.xapi.storage import VDI

if TYPE_CHECKING:
    from xensm_driver.backends.solidfire import SolidFireBackend

LOG = logging.getLogger(__name__)

_failed = common._failed


# -- the array volume ---------------------------------------------------------

class _ArrayVolumeMaker(common.XensmTask):
    """Base of the tasks that make an array volume.

    Such a task looks its volume up by name first and reuses one a previous
    attempt made. Past that lookup, anything found by the name was made by
    this attempt -- so if the task fails after asking the array to make it
    (a lost answer, a failed wait), revert finds it by name and removes it.
    """

    default_provides = "sf_volume"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked = False

    def revert(self, backend: SolidFireBackend, ident: identity.Identity, result: Any,
               **kwargs: Any) -> None:
        if _failed(result):
            if not self.asked:
                return
            made = backend.find_array_volume(ident.id)
            if made is None:
                return
            result = dict(made, _made_here=True)
        if result.get("_made_here"):
            backend.destroy_array_volume(result["volumeID"])


class CreateArrayVolumeTask(_ArrayVolumeMaker):
    """CreateVolume, found by name first so a retry never makes a second one.

    A lost answer is not re-sent: the volume is looked up by name instead.
    """

    def execute(self, backend: SolidFireBackend, ident: identity.Identity,
                size_bytes: int) -> dict[str, Any]:
        existing = backend.find_array_volume(ident.id)
        if existing is not None:
            LOG.info("Array volume %s for %s already exists (a retried create); "
                     "reusing it.", existing["volumeID"], ident.name_label)
            return dict(existing, _made_here=False)
        self.asked = True
        try:
            result = backend.client.call(
                "CreateVolume", name=backend.array_name(ident.id),
                accountID=backend.account_id, totalSize=backend.lun_size(size_bytes),
                enable512e=True, attributes=backend.array_attributes(ident.id))
            return dict(result["volume"], _made_here=True)
        except exception.ArrayConnectionError as exc:
            if not exc.kwargs.get("sent"):
                raise
            LOG.warning("CreateVolume for %s lost its answer; looking it up by name.",
                        ident.name_label)
            volume = backend.find_array_volume(ident.id)
            if volume is None:
                # Not there yet, and the call may still land: the outcome
                # is unknown (the flow's claim stays for it).
                raise
        return dict(volume, _made_here=True)


class CloneArrayVolumeTask(_ArrayVolumeMaker):
    """CloneVolume (of a volume, or of one of its snapshots), waited for."""

    def execute(self, backend: SolidFireBackend, ident: identity.Identity,
                source_volume: dict[str, Any], source_snapshot_id: int | None,
                size_bytes: int) -> dict[str, Any]:
        existing = backend.find_array_volume(ident.id)
        if existing is not None:
            return dict(existing, _made_here=False)
        # newSize always, as Cinder's _do_clone_volume sends it: a clone is
        # its snapshot's size otherwise, which may be below the source's
        # size now and below the volume's.
        params: dict[str, Any] = {
            "volumeID": source_volume["volumeID"], "name": backend.array_name(ident.id),
            "newAccountID": backend.account_id, "attributes": backend.array_attributes(ident.id),
            "newSize": backend.lun_size(size_bytes)}
        if source_snapshot_id is not None:
            params["snapshotID"] = source_snapshot_id
        self.asked = True
        result = backend.client.call("CloneVolume", **params)
        backend.client.wait_async(result["asyncHandle"],
                                  timeout=backend.options.xensm_sf_clone_timeout)
        volume = backend.client.get_volume_by_id(int(result["volumeID"]))
        if volume is None:
            raise exception.ArrayNotFound(
                array=backend.client.array, method="CloneVolume",
                name="xVolumeIDDoesNotExist",
                detail="clone %s vanished after it finished" % result["volumeID"])
        return dict(volume, _made_here=True)


class GrantAccessTask(common.XensmTask):
    """Add the volume to the pool's access group; revert removes it, if this
    attempt added it."""

    def execute(self, backend: SolidFireBackend, sf_volume: dict[str, Any]) -> bool:
        return backend.grant(sf_volume["volumeID"])

    def revert(self, backend: SolidFireBackend, sf_volume: dict[str, Any], result: Any,
               **kwargs: Any) -> None:
        if _failed(result) or not result:
            return
        common.undo("access of array volume %s" % sf_volume["volumeID"], backend.revoke,
                    sf_volume["volumeID"])


# -- the SR on the LUN --------------------------------------------------------

class _LunSrMaker(common.XensmTask):
    """Base of the tasks that put the volume's SR on its LUN.

    A retry finds the SR an earlier attempt made (on this very LUN) and
    reuses it; revert forgets only an SR this attempt made.
    """

    default_provides = "sr_ref"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.made = False

    def revert(self, backend: SolidFireBackend, result: Any, **kwargs: Any) -> None:
        if _failed(result) or not self.made:
            return
        common.undo("SR %s" % result, backend.forget_lun_sr, result)


class CreateLunSrTask(_LunSrMaker):
    """SR.create of a fresh lvmoiscsi SR on the LUN.

    A lost answer is not re-sent: the SR is looked up by name instead.
    """

    def execute(self, backend: SolidFireBackend, ident: identity.Identity,
                sf_volume: dict[str, Any]) -> str:
        existing = backend.find_lun_sr(ident.id, sf_volume)
        if existing is not None:
            return existing
        self.made = True
        try:
            return backend.storage.create_sr(
                backend.master_ref, backend.lun_device_config(sf_volume), "lvmoiscsi",
                backend.sr_name(ident.id), shared=True,
                name_description="SolidFire volume %s of back end %s" % (
                    sf_volume["volumeID"], backend.name))
        except exception.XapiConnectionError as exc:
            if not exc.sent:
                raise
            made = backend.find_lun_sr(ident.id, sf_volume)
            if made is None:
                raise
            return made


class FindLunSrTask(common.XensmTask):
    """The SR a previous attempt already put on this LUN, or None.

    Provides ``existing_sr``: a retried clone skips the resign and the
    introduce when it is there. No side effect.
    """

    default_provides = "existing_sr"

    def execute(self, backend: SolidFireBackend, ident: identity.Identity,
                sf_volume: dict[str, Any]) -> str | None:
        return backend.find_lun_sr(ident.id, sf_volume)


class ResignLunTask(common.XensmTask):
    """Give a cloned LUN its own SR identity (the relvmoiscsi pack).

    The pack always answers with a failure that says it resigned; any other
    answer is an error. Skipped when a retried clone's SR is already there.
    Nothing to revert: the LUN goes with its volume.
    """

    def execute(self, backend: SolidFireBackend, sf_volume: dict[str, Any],
                existing_sr: str | None) -> None:
        if existing_sr is not None:
            return
        dc = dict(backend.lun_device_config(sf_volume), resign="true")
        try:
            backend.storage.create_sr(backend.master_ref, dc, "relvmoiscsi", "resign",
                                      shared=True)
        except exception.SRBackendFailure as exc:
            if backend.RESIGNED_TEXT in exc.sm_text:
                return
            raise
        raise exception.XensmError(
            "Resigning the LUN of array volume %s did not answer as the "
            "relvmoiscsi pack does; refusing to attach it." % sf_volume["volumeID"])


class IntroduceLunSrTask(_LunSrMaker):
    """Probe the LUN for its SR and introduce it on every host."""

    def execute(self, backend: SolidFireBackend, ident: identity.Identity,
                sf_volume: dict[str, Any], existing_sr: str | None) -> str:
        if existing_sr is not None:
            return existing_sr
        self.made = True
        return backend.introduce_lun_sr(ident.id, sf_volume)


class ForgetLunSrTask(common.XensmTask):
    """Detach the volume's SR and drop its records (the LUN keeps them).

    Revert puts the SR back, so a failed teardown or rollback leaves the
    volume attached as it was -- also when this task failed itself: its
    answer may have been lost after XAPI forgot the SR, or it may have
    unplugged some PBDs before failing. If putting it back fails too, the
    next verb that finds the array volume without its SR puts it back.
    """

    def execute(self, backend: SolidFireBackend, sr_ref: str | None) -> bool:
        if sr_ref is None:
            return False
        backend.forget_lun_sr(sr_ref)
        return True

    def revert(self, backend: SolidFireBackend, ident: identity.Identity,
               sf_volume: dict[str, Any] | None, result: Any, **kwargs: Any) -> None:
        if sf_volume is None or result is False:
            return
        common.undo("the detach of volume %s's SR" % ident.id, backend.reattach_lun_sr,
                    ident, sf_volume)


# -- the VDI ------------------------------------------------------------------

class FillLunTask(common.XensmTask):
    """The volume's VDI, named and tagged, filling the new SR; revert destroys it.

    A retried create finds the VDI it made before and reuses it.
    """

    default_provides = "vdi_ref"

    def execute(self, backend: SolidFireBackend, ident: identity.Identity, sr_ref: str,
                size_bytes: int) -> str:
        found = common.pick(backend.storage.find_vdis(sr_ref, ident.name_label), ident)
        if found is not None:
            return "reused:" + found.ref
        return backend.storage.create_vdi(sr_ref, size_bytes, ident.name_label,
                                          ident.tags())

    def revert(self, backend: SolidFireBackend, result: Any, **kwargs: Any) -> None:
        if _failed(result) or result.startswith("reused:"):
            return
        common.undo("VDI %s" % result, backend.storage.destroy_vdi, result)


class ReadVdiTask(common.XensmTask):
    """The record of the VDI just made or found. Provides ``vdi``."""

    default_provides = "vdi"

    def execute(self, backend: SolidFireBackend, vdi_ref: str) -> VDI:
        return backend.storage.get_vdi(vdi_ref.removeprefix("reused:"))


class ModelUpdateTask(common.XensmTask):
    """Where the new volume lives, for Cinder. Provides ``model_update``.

    Inside the flow, so a failure reading it still undoes the volume.
    """

    default_provides = "model_update"

    def execute(self, backend: SolidFireBackend, vdi: VDI) -> dict[str, str]:
        sr_uuid = backend.storage.sr_uuid(vdi.sr)
        return identity.model_update(sr_uuid, vdi.uuid)


class AdoptLunVdiTask(common.XensmTask):
    """Name and tag the one VDI found on an introduced SR. Provides ``vdi``.

    Tags live in XAPI's database, not on the LUN, so every introduce needs
    this. Nothing to revert: the SR is forgotten by the task that made it.
    """

    default_provides = "vdi"

    def execute(self, backend: SolidFireBackend, ident: identity.Identity,
                sr_ref: str) -> VDI:
        return backend.tag_lun_vdi(ident, sr_ref)


class GrowVdiTask(common.XensmTask):
    """Grow the VDI to the volume's size (after a larger clone or an extend)."""

    def execute(self, backend: SolidFireBackend, vdi: VDI, size_bytes: int) -> None:
        if size_bytes > vdi.virtual_size:
            backend.storage.resize_vdi(vdi.ref, size_bytes)


class CopyVdiTask(common.XensmTask):
    """Copy the source VDI's content into the new one, inside XAPI."""

    def execute(self, backend: SolidFireBackend, source_vdi: VDI, vdi: VDI) -> None:
        backend.storage.copy_vdi_into(source_vdi.ref, vdi.ref,
                                      timeout=backend.options.xenapi_task_timeout)


# -- teardown and rollback ----------------------------------------------------

class DeleteArrayVolumeTask(common.XensmTask):
    """Revoke access and delete the array volume, or retire it while it has
    snapshots (Element would purge them with it). Nothing to revert.

    Also whatever else carries the volume's name and tag: a duplicate a
    create made after its client gave up, and a volume an earlier delete
    left deleted but not purged (cut off between DeleteVolume and
    PurgeDeletedVolume). A retired volume stays for its snapshots.
    """

    def execute(self, backend: SolidFireBackend, ident: identity.Identity,
                sf_volume: dict[str, Any] | None) -> None:
        if sf_volume is None:
            LOG.warning("%s has no volume on the array; treating the delete as done.",
                        ident.name_label)
        else:
            backend.revoke(sf_volume["volumeID"])
            backend.retire_array_volume(sf_volume)
        backend.remove_strays(ident.id, keep=sf_volume)


class RollbackTask(common.XensmTask):
    """RollbackToSnapshot on the array. Runs with the SR forgotten."""

    def execute(self, backend: SolidFireBackend, sf_volume: dict[str, Any],
                sf_snapshot: dict[str, Any]) -> None:
        backend.client.call("RollbackToSnapshot", volumeID=sf_volume["volumeID"],
                            snapshotID=sf_snapshot["snapshotID"], saveCurrentState=False)


class ResizeLunTask(common.XensmTask):
    """Grow the array volume (ModifyVolume); the LUN cannot shrink back."""

    def execute(self, backend: SolidFireBackend, sf_volume: dict[str, Any],
                size_bytes: int) -> None:
        lun_size = backend.lun_size(size_bytes)
        if lun_size > int(sf_volume["totalSize"]):
            backend.client.call("ModifyVolume", volumeID=sf_volume["volumeID"],
                                totalSize=lun_size)


class GrowLunSrTask(common.XensmTask):
    """Grow the SR into the grown LUN: SR.scan.

    Only a scan grows an LVHD SR (sm ``LVHDSR.scan`` -> ``_expand_size``,
    by 100 MiB or more); ``SR.update`` only re-reads its stats, and a
    ``VDI.resize`` into space only the LUN has fails with
    SR_BACKEND_FAILURE_44. A scan is safe to repeat, so a retried extend
    whose LUN is already grown still grows the SR.
    """

    def execute(self, backend: SolidFireBackend, sr_ref: str) -> None:
        backend.storage.scan_sr(sr_ref)


# -- flows --------------------------------------------------------------------

# Every flow that makes a volume holds the volume's claim on the pool from
# before its first lookup until its model update (common.ClaimTask): two
# driver instances creating one id take turns, the second finds and reuses
# every part the first made (none of them "made here", so its undo never
# removes them), and a part found by name after asking for it was made by
# this attempt. The release comes last and never fails the verb. A failure
# whose outcome is unknown (CreateVolume past the API timeout may still
# land) keeps the claim for its lease; the volume's delete takes its turn
# and so finds what landed late.

def create_volume() -> linear_flow.Flow:
    """ClaimTask -> CreateArrayVolumeTask -> GrantAccessTask ->
    CreateLunSrTask -> PlugEverywhereTask -> FillLunTask -> ReadVdiTask ->
    ModelUpdateTask -> ReleaseClaimTask. Store: ident, size_bytes."""
    return linear_flow.Flow("sf_create_volume").add(
        common.ClaimTask(keep_when_unknown=True), CreateArrayVolumeTask(), GrantAccessTask(),
        CreateLunSrTask(), PlugEverywhereTask(), FillLunTask(), ReadVdiTask(),
        ModelUpdateTask(), common.ReleaseClaimTask())


def clone_by_resign() -> linear_flow.Flow:
    """ClaimTask -> CloneArrayVolumeTask -> GrantAccessTask -> FindLunSrTask
    -> ResignLunTask -> IntroduceLunSrTask -> AdoptLunVdiTask -> GrowVdiTask
    -> ModelUpdateTask -> ReleaseClaimTask. Store: ident, source_volume,
    source_snapshot_id, size_bytes."""
    return linear_flow.Flow("sf_clone_by_resign").add(
        common.ClaimTask(keep_when_unknown=True), CloneArrayVolumeTask(),
        GrantAccessTask(), FindLunSrTask(), ResignLunTask(), IntroduceLunSrTask(),
        AdoptLunVdiTask(), GrowVdiTask(), ModelUpdateTask(), common.ReleaseClaimTask())


def clone_by_copy() -> linear_flow.Flow:
    """A fresh volume (as create_volume), then CopyVdiTask from the source's
    attached VDI, under the claim. Store: ident, size_bytes, source_vdi."""
    return linear_flow.Flow("sf_clone_by_copy").add(
        common.ClaimTask(keep_when_unknown=True), CreateArrayVolumeTask(), GrantAccessTask(),
        CreateLunSrTask(), PlugEverywhereTask(), FillLunTask(), ReadVdiTask(),
        CopyVdiTask(), ModelUpdateTask(), common.ReleaseClaimTask())


def delete_volume() -> linear_flow.Flow:
    """ForgetLunSrTask (revert introduces it again) -> DeleteArrayVolumeTask.
    Store: ident, sr_ref (or None), sf_volume (or None)."""
    return linear_flow.Flow("sf_delete_volume").add(
        ForgetLunSrTask(), DeleteArrayVolumeTask())


def revert_to_snapshot() -> linear_flow.Flow:
    """ForgetLunSrTask -> RollbackTask -> IntroduceLunSrTask -> AdoptLunVdiTask.

    The SR is forgotten around the rollback (XAPI must not hold a view of
    the LUN while the array rewrites it) and introduced again with the
    identity the LUN holds. Store: ident, sr_ref, sf_volume, sf_snapshot.
    """
    return linear_flow.Flow("sf_revert_to_snapshot").add(
        ForgetLunSrTask(), RollbackTask(),
        # The SR was forgotten just before: nothing on the LUN to reuse.
        IntroduceLunSrTask(provides="new_sr_ref", inject={"existing_sr": None}),
        AdoptLunVdiTask(rebind={"sr_ref": "new_sr_ref"}))


def extend_volume() -> linear_flow.Flow:
    """ResizeLunTask -> GrowLunSrTask -> GrowVdiTask.
    Store: sf_volume, sr_ref, vdi, size_bytes."""
    return linear_flow.Flow("sf_extend_volume").add(
        ResizeLunTask(), GrowLunSrTask(), GrowVdiTask())
