"""Flows of the SolidFire back end: one array volume, one SR, one VDI per volume.

A volume is an Element volume (a LUN) granted to the pool's volume access
group, an ``lvmoiscsi`` SR on that LUN, and one VDI filling the SR. Each
task makes one of those and undoes it in ``revert``; snapshots, clones and
reverts happen on the array.

A task that makes a part provides it with whether this attempt made it
(``(sf_volume, volume_made)``, ``(sr_ref, sr_made)``, ``(vdi_ref,
vdi_made)``): a retry reuses what an earlier attempt made, and its revert
removes only what it made itself.

Store keys: ``target`` (a :class:`~.array.LunTarget`), ``ident``, and per
flow the names below. Each verb's flow is built once and its engines reused
(:class:`~xensm_driver.flows.engine.Verb`).
"""

from __future__ import annotations

from typing import Any

from oslo_log import log as logging
from taskflow.patterns import linear_flow

from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.backends.solidfire.array import RESIGNED_TEXT
from xensm_driver.backends.solidfire.array import LunTarget
from xensm_driver.flows import claims
from xensm_driver.flows import vdi as vdis
from xensm_driver.flows.engine import Verb
from xensm_driver.flows.engine import XensmTask
from xensm_driver.flows.engine import answer_or_lookup
from xensm_driver.flows.engine import failed
from xensm_driver.flows.engine import undo
from xensm_driver.flows.sr import PlugEverywhereTask
from xensm_driver.xapi.storage import VDI

LOG = logging.getLogger(__name__)


# -- the array volume ---------------------------------------------------------

class _ArrayVolumeMaker(XensmTask):
    """Base of the tasks that make an array volume; provides ``(sf_volume,
    volume_made)``.

    Such a task looks its volume up by name first and reuses one a previous
    attempt made. Past that lookup, anything found by the name was made by
    this attempt -- so if the task fails after asking the array to make it
    (a lost answer, a failed wait), revert finds it by name and removes it.
    """

    default_provides = ("sf_volume", "volume_made")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked = False

    def reuse(self, target: LunTarget, ident: identity.Identity
              ) -> tuple[dict[str, Any], bool] | None:
        """What an earlier attempt made, if anything; every run starts here."""
        self.asked = False
        existing = target.find_array_volume(ident.id)
        if existing is None:
            return None
        LOG.info("Array volume %s for %s already exists (a retried create); "
                 "reusing it.", existing["volumeID"], ident.name_label)
        return existing, False

    def revert(self, target: LunTarget, ident: identity.Identity, result: Any,
               **kwargs: Any) -> None:
        if failed(result):
            made = target.find_array_volume(ident.id) if self.asked else None
        else:
            made = result[0] if result[1] else None
        if made is not None:
            undo("array volume %s" % made["volumeID"], target.destroy_array_volume,
                 made["volumeID"])


class CreateArrayVolumeTask(_ArrayVolumeMaker):
    """CreateVolume, found by name first so a retry never makes a second one.

    A lost answer is not re-sent: the volume is looked up by name instead.
    """

    def execute(self, target: LunTarget, ident: identity.Identity,
                size_bytes: int) -> tuple[dict[str, Any], bool]:
        reused = self.reuse(target, ident)
        if reused is not None:
            return reused
        self.asked = True
        # Not found after a lost answer: the call may still land, the
        # outcome is unknown (the flow's claim stays for it).
        volume = answer_or_lookup(
            lambda: target.client.call(
                "CreateVolume", name=target.array_name(ident.id),
                accountID=target.account_id, totalSize=target.lun_size(size_bytes),
                enable512e=True, attributes=target.array_attributes(ident.id))["volume"],
            lambda: target.find_array_volume(ident.id))
        return volume, True


class CloneArrayVolumeTask(_ArrayVolumeMaker):
    """CloneVolume (of a volume, or of one of its snapshots), waited for."""

    def execute(self, target: LunTarget, ident: identity.Identity,
                source_volume: dict[str, Any], source_snapshot_id: int | None,
                size_bytes: int) -> tuple[dict[str, Any], bool]:
        reused = self.reuse(target, ident)
        if reused is not None:
            return reused
        # newSize always, as Cinder's _do_clone_volume sends it: a clone is
        # its snapshot's size otherwise, which may be below the source's
        # size now and below the volume's.
        params: dict[str, Any] = {
            "volumeID": source_volume["volumeID"], "name": target.array_name(ident.id),
            "newAccountID": target.account_id, "attributes": target.array_attributes(ident.id),
            "newSize": target.lun_size(size_bytes)}
        if source_snapshot_id is not None:
            params["snapshotID"] = source_snapshot_id
        self.asked = True
        result = target.client.call("CloneVolume", **params)
        target.client.wait_async(result["asyncHandle"], timeout=target.clone_timeout)
        volume = target.client.get_volume_by_id(int(result["volumeID"]))
        if volume is None:
            raise exception.ArrayNotFound(
                array=target.client.array, method="CloneVolume",
                name="xVolumeIDDoesNotExist",
                detail="clone %s vanished after it finished" % result["volumeID"])
        return volume, True


class GrantAccessTask(XensmTask):
    """Add the volume to the pool's access group; revert removes it, if this
    attempt added it."""

    def execute(self, target: LunTarget, sf_volume: dict[str, Any]) -> bool:
        return target.grant(sf_volume["volumeID"])

    def revert(self, target: LunTarget, sf_volume: dict[str, Any], result: Any,
               **kwargs: Any) -> None:
        if failed(result) or not result:
            return
        undo("access of array volume %s" % sf_volume["volumeID"], target.revoke,
                    sf_volume["volumeID"])


# -- the SR on the LUN --------------------------------------------------------

class _LunSrMaker(XensmTask):
    """Base of the tasks that put the volume's SR on its LUN; provides
    ``(sr_ref, sr_made)``. A retry finds the SR an earlier attempt made (on
    this very LUN) and reuses it; revert forgets only an SR this attempt
    made."""

    default_provides = ("sr_ref", "sr_made")

    def revert(self, target: LunTarget, result: Any, **kwargs: Any) -> None:
        if failed(result) or not result[1]:
            return
        undo("SR %s" % result[0], target.forget_lun_sr, result[0])


class CreateLunSrTask(_LunSrMaker):
    """SR.create of a fresh lvmoiscsi SR on the LUN.

    A lost answer is not re-sent: the SR is looked up by name instead.
    """

    def execute(self, target: LunTarget, ident: identity.Identity,
                sf_volume: dict[str, Any]) -> tuple[str, bool]:
        existing = target.find_lun_sr(ident.id, sf_volume)
        if existing is not None:
            return existing, False
        sr_ref = answer_or_lookup(
            lambda: target.storage.create_sr(
                target.master_ref, target.lun_device_config(sf_volume), "lvmoiscsi",
                target.sr_name(ident.id), shared=True,
                name_description="SolidFire volume %s of back end %s" % (
                    sf_volume["volumeID"], target.backend)),
            lambda: target.find_lun_sr(ident.id, sf_volume))
        return sr_ref, True


class FindLunSrTask(XensmTask):
    """The SR a previous attempt already put on this LUN, or None.

    Provides ``existing_sr``: a retried clone skips the resign and the
    introduce when it is there. No side effect.
    """

    default_provides = "existing_sr"

    def execute(self, target: LunTarget, ident: identity.Identity,
                sf_volume: dict[str, Any]) -> str | None:
        return target.find_lun_sr(ident.id, sf_volume)


class ResignLunTask(XensmTask):
    """Give a cloned LUN its own SR identity (the relvmoiscsi pack).

    The pack always answers with a failure that says it resigned; any other
    answer is an error. Skipped when a retried clone's SR is already there.
    Nothing to revert: the LUN goes with its volume.
    """

    def execute(self, target: LunTarget, sf_volume: dict[str, Any],
                existing_sr: str | None) -> None:
        if existing_sr is not None:
            return
        dc = dict(target.lun_device_config(sf_volume), resign="true")
        try:
            target.storage.create_sr(target.master_ref, dc, "relvmoiscsi", "resign",
                                      shared=True)
        except exception.SRBackendFailure as exc:
            if RESIGNED_TEXT in exc.sm_text:
                return
            raise
        raise exception.XensmError(
            "Resigning the LUN of array volume %s did not answer as the "
            "relvmoiscsi pack does; refusing to attach it." % sf_volume["volumeID"])


class IntroduceLunSrTask(_LunSrMaker):
    """Probe the LUN for its SR and introduce it on every host."""

    def execute(self, target: LunTarget, ident: identity.Identity,
                sf_volume: dict[str, Any], existing_sr: str | None) -> tuple[str, bool]:
        if existing_sr is not None:
            return existing_sr, False
        return target.introduce_lun_sr(ident.id, sf_volume), True


class ForgetLunSrTask(XensmTask):
    """Detach the volume's SR and drop its records (the LUN keeps them).

    Revert puts the SR back, so a failed teardown or rollback leaves the
    volume attached as it was -- also when this task failed itself: its
    answer may have been lost after XAPI forgot the SR, or it may have
    unplugged some PBDs before failing. If putting it back fails too, the
    next verb that finds the array volume without its SR puts it back.
    """

    def execute(self, target: LunTarget, sr_ref: str | None) -> bool:
        if sr_ref is None:
            return False
        target.forget_lun_sr(sr_ref)
        return True

    def revert(self, target: LunTarget, ident: identity.Identity,
               sf_volume: dict[str, Any] | None, result: Any, **kwargs: Any) -> None:
        if sf_volume is None or result is False:
            return
        undo("the detach of volume %s's SR" % ident.id, target.reattach_lun_sr,
                    ident, sf_volume)


# -- the VDI ------------------------------------------------------------------

class FillLunTask(XensmTask):
    """The volume's VDI, named and tagged, filling the new SR; provides
    ``(vdi_ref, vdi_made)``; revert destroys it if this attempt made it.

    A retried create finds the VDI it made before and reuses it.
    """

    default_provides = ("vdi_ref", "vdi_made")

    def execute(self, target: LunTarget, ident: identity.Identity, sr_ref: str,
                size_bytes: int) -> tuple[str, bool]:
        found = vdis.pick(target.storage.find_vdis(sr_ref, ident.name_label), ident)
        if found is not None:
            return found.ref, False
        return target.storage.create_vdi(sr_ref, size_bytes, ident.name_label,
                                         ident.tags()), True

    def revert(self, target: LunTarget, result: Any, **kwargs: Any) -> None:
        if failed(result) or not result[1]:
            return
        undo("VDI %s" % result[0], target.storage.destroy_vdi, result[0])


class ReadVdiTask(XensmTask):
    """The record of the VDI just made or found. Provides ``vdi``."""

    default_provides = "vdi"

    def execute(self, target: LunTarget, vdi_ref: str) -> VDI:
        return target.storage.get_vdi(vdi_ref)


class ModelUpdateTask(XensmTask):
    """Where the new volume lives, for Cinder. Provides ``model_update``.

    Inside the flow, so a failure reading it still undoes the volume.
    """

    default_provides = "model_update"

    def execute(self, target: LunTarget, vdi: VDI) -> dict[str, str]:
        sr_uuid = target.storage.sr_uuid(vdi.sr)
        return identity.model_update(sr_uuid, vdi.uuid)


class AdoptLunVdiTask(XensmTask):
    """Name and tag the one VDI found on an introduced SR. Provides ``vdi``.

    Tags live in XAPI's database, not on the LUN, so every introduce needs
    this. Nothing to revert: the SR is forgotten by the task that made it.
    """

    default_provides = "vdi"

    def execute(self, target: LunTarget, ident: identity.Identity,
                sr_ref: str) -> VDI:
        return target.tag_lun_vdi(ident, sr_ref)


class GrowVdiTask(XensmTask):
    """Grow the VDI to the volume's size (after a larger clone or an extend)."""

    def execute(self, target: LunTarget, vdi: VDI, size_bytes: int) -> None:
        if size_bytes > vdi.virtual_size:
            target.storage.resize_vdi(vdi.ref, size_bytes)


class CopyVdiTask(XensmTask):
    """Copy the source VDI's content into the new one, inside XAPI."""

    def execute(self, target: LunTarget, source_vdi: VDI, vdi: VDI) -> None:
        target.storage.copy_vdi_into(source_vdi.ref, vdi.ref,
                                      timeout=target.task_timeout)


# -- teardown and rollback ----------------------------------------------------

class DeleteArrayVolumeTask(XensmTask):
    """Revoke access and delete the array volume, or retire it while it has
    snapshots (Element would purge them with it). Nothing to revert.

    Also whatever else carries the volume's name and tag: a duplicate a
    create made after its client gave up, and a volume an earlier delete
    left deleted but not purged (cut off between DeleteVolume and
    PurgeDeletedVolume). A retired volume stays for its snapshots.
    """

    def execute(self, target: LunTarget, ident: identity.Identity,
                sf_volume: dict[str, Any] | None) -> None:
        if sf_volume is None:
            LOG.warning("%s has no volume on the array; treating the delete as done.",
                        ident.name_label)
        else:
            target.revoke(sf_volume["volumeID"])
            target.retire_array_volume(sf_volume)
        target.remove_strays(ident.id, keep=sf_volume)


class RollbackTask(XensmTask):
    """RollbackToSnapshot on the array. Runs with the SR forgotten."""

    def execute(self, target: LunTarget, sf_volume: dict[str, Any],
                sf_snapshot: dict[str, Any]) -> None:
        target.client.call("RollbackToSnapshot", volumeID=sf_volume["volumeID"],
                            snapshotID=sf_snapshot["snapshotID"], saveCurrentState=False)


class ResizeLunTask(XensmTask):
    """Grow the array volume (ModifyVolume); the LUN cannot shrink back."""

    def execute(self, target: LunTarget, sf_volume: dict[str, Any],
                size_bytes: int) -> None:
        lun_size = target.lun_size(size_bytes)
        if lun_size > int(sf_volume["totalSize"]):
            target.client.call("ModifyVolume", volumeID=sf_volume["volumeID"],
                                totalSize=lun_size)


class GrowLunSrTask(XensmTask):
    """Grow the SR into the grown LUN: SR.scan.

    Only a scan grows an LVHD SR (sm ``LVHDSR.scan`` -> ``_expand_size``,
    by 100 MiB or more); ``SR.update`` only re-reads its stats, and a
    ``VDI.resize`` into space only the LUN has fails with
    SR_BACKEND_FAILURE_44. A scan is safe to repeat, so a retried extend
    whose LUN is already grown still grows the SR.
    """

    def execute(self, target: LunTarget, sr_ref: str) -> None:
        target.storage.scan_sr(sr_ref)


# -- flows --------------------------------------------------------------------

# Every flow that makes a volume holds the volume's claim on the pool from
# before its first lookup until its model update (claims.ClaimTask): two
# driver instances creating one id take turns, the second finds and reuses
# every part the first made (none of them "made here", so its undo never
# removes them), and a part found by name after asking for it was made by
# this attempt. The release comes last and never fails the verb. A failure
# whose outcome is unknown (CreateVolume past the API timeout may still
# land) keeps the claim for its lease; the volume's delete takes its turn
# and so finds what landed late.

def _create_volume() -> linear_flow.Flow:
    """ClaimTask -> CreateArrayVolumeTask -> GrantAccessTask ->
    CreateLunSrTask -> PlugEverywhereTask -> FillLunTask -> ReadVdiTask ->
    ModelUpdateTask -> ReleaseClaimTask. Store: ident, size_bytes."""
    return linear_flow.Flow("sf_create_volume").add(
        claims.ClaimTask(keep_when_unknown=True), CreateArrayVolumeTask(), GrantAccessTask(),
        CreateLunSrTask(), PlugEverywhereTask(), FillLunTask(), ReadVdiTask(),
        ModelUpdateTask(), claims.ReleaseClaimTask())


def _clone_by_resign() -> linear_flow.Flow:
    """ClaimTask -> CloneArrayVolumeTask -> GrantAccessTask -> FindLunSrTask
    -> ResignLunTask -> IntroduceLunSrTask -> AdoptLunVdiTask -> GrowVdiTask
    -> ModelUpdateTask -> ReleaseClaimTask. Store: ident, source_volume,
    source_snapshot_id, size_bytes."""
    return linear_flow.Flow("sf_clone_by_resign").add(
        claims.ClaimTask(keep_when_unknown=True), CloneArrayVolumeTask(),
        GrantAccessTask(), FindLunSrTask(), ResignLunTask(), IntroduceLunSrTask(),
        AdoptLunVdiTask(), GrowVdiTask(), ModelUpdateTask(), claims.ReleaseClaimTask())


def _clone_by_copy() -> linear_flow.Flow:
    """A fresh volume (as create_volume), then CopyVdiTask from the source's
    attached VDI, under the claim. Store: ident, size_bytes, source_vdi."""
    return linear_flow.Flow("sf_clone_by_copy").add(
        claims.ClaimTask(keep_when_unknown=True), CreateArrayVolumeTask(), GrantAccessTask(),
        CreateLunSrTask(), PlugEverywhereTask(), FillLunTask(), ReadVdiTask(),
        CopyVdiTask(), ModelUpdateTask(), claims.ReleaseClaimTask())


def _delete_volume() -> linear_flow.Flow:
    """ForgetLunSrTask (revert introduces it again) -> DeleteArrayVolumeTask.
    Store: ident, sr_ref (or None), sf_volume (or None)."""
    return linear_flow.Flow("sf_delete_volume").add(
        ForgetLunSrTask(), DeleteArrayVolumeTask())


def _revert_to_snapshot() -> linear_flow.Flow:
    """ForgetLunSrTask -> RollbackTask -> IntroduceLunSrTask -> AdoptLunVdiTask.

    The SR is forgotten around the rollback (XAPI must not hold a view of
    the LUN while the array rewrites it) and introduced again with the
    identity the LUN holds. Store: ident, sr_ref, sf_volume, sf_snapshot.
    """
    return linear_flow.Flow("sf_revert_to_snapshot").add(
        ForgetLunSrTask(), RollbackTask(),
        # The SR was forgotten just before: nothing on the LUN to reuse.
        IntroduceLunSrTask(provides=("new_sr_ref", "new_sr_made"),
                           inject={"existing_sr": None}),
        AdoptLunVdiTask(rebind={"sr_ref": "new_sr_ref"}))


def _extend_volume() -> linear_flow.Flow:
    """ResizeLunTask -> GrowLunSrTask -> GrowVdiTask.
    Store: sf_volume, sr_ref, vdi, size_bytes."""
    return linear_flow.Flow("sf_extend_volume").add(
        ResizeLunTask(), GrowLunSrTask(), GrowVdiTask())


create_volume = Verb(_create_volume)
clone_by_resign = Verb(_clone_by_resign)
clone_by_copy = Verb(_clone_by_copy)
delete_volume = Verb(_delete_volume)
revert_to_snapshot = Verb(_revert_to_snapshot)
extend_volume = Verb(_extend_volume)
