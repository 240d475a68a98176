"""Flows of the SM-native back ends: one SR per back end, one VDI per volume.

A snapshot or clone is XAPI's O(1) VHD snapshot/clone. XAPI copies the
source's name and tags onto the copy, so every flow that copies marks the
source first (MarkSourceTask: the copy inherits the mark, so a copy whose
answer was lost is still known as made for the new object), re-identifies
the copy and resolves it (IdentifyVdiTask), which also keeps a retried
request from leaving two. A snapshot is renamed ``snapshot-<id>`` rather
than keeping the ``volume-<id>`` XAPI copies: one name per object keeps
every lookup of a volume from reading all of its snapshots, and keeps a
snapshot from passing for its volume in XenCenter and ``xe vdi-list``. It
costs one call (DESIGN.md lets either rule stand; issue 15).

Every flow's store holds ``target`` (an :class:`~xensm_driver.flows.target.SRTarget`)
and ``ident`` (the object made, found or removed), and per verb what its
docstring names. Each verb's flow is built once and its engines reused
(:class:`~xensm_driver.flows.engine.Verb`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from oslo_log import log as logging
from taskflow.patterns import linear_flow

from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.flows import claims
from xensm_driver.flows import vdi as vdis
from xensm_driver.flows import vms as vms_flows
from xensm_driver.flows.engine import GONE
from xensm_driver.flows.engine import Verb
from xensm_driver.flows.engine import XensmTask
from xensm_driver.flows.engine import failed
from xensm_driver.flows.engine import undo
from xensm_driver.flows.engine import unknown
from xensm_driver.flows.sr import PlugEverywhereTask
from xensm_driver.flows.target import SRTarget
from xensm_driver.flows.target import Target
from xensm_driver.xapi.storage import VDI
from xensm_driver.xapi.vms import VM as VMRecord

LOG = logging.getLogger(__name__)


# -- volumes ------------------------------------------------------------------

def _create_volume() -> linear_flow.Flow:
    """create_volume: ClaimTask -> CreateVdiTask -> IdentifyVdiTask ->
    ReleaseClaimTask. 4 XAPI calls: the claim makes concurrent creates of
    one id take turns, so they converge on one VDI. Store: ``size_bytes``."""
    return linear_flow.Flow("create_volume").add(
        claims.ClaimTask(), vdis.CreateVdiTask(), vdis.IdentifyVdiTask(),
        claims.ReleaseClaimTask())


def _delete() -> linear_flow.Flow:
    """delete_volume / delete_snapshot: LookupTask (missing is fine) ->
    DestroyFoundTask. 2 calls (1 more per leftover copy destroyed or source
    unmarked). Store: ``provider_id``, and ``source_ident``, what the object
    was copied from, when known (None otherwise)."""
    return linear_flow.Flow("delete").add(vdis.LookupTask(), vdis.DestroyFoundTask())


def _extend_volume() -> linear_flow.Flow:
    """extend_volume: FindResizableTask -> ResizeVdiTask. 2 calls (+1 per VBD
    of the VDI). Store: ``provider_id``, ``new_size_bytes``."""
    return linear_flow.Flow("extend_volume").add(
        FindResizableTask(), vdis.ResizeVdiTask())


def _revert_to_snapshot() -> linear_flow.Flow:
    """revert_to_snapshot: swap a clone of the snapshot in for the volume's
    VDI, as XAPI's own VM.revert does (xapi_vm_snapshot.ml).

    VDI.copy(into_vdi=) is no revert: it writes only the blocks allocated in
    the snapshot and leaves every other block of the volume as it was. A
    clone of the snapshot is the snapshot's content over the whole virtual
    size, O(1) on VHD SRs. The clone gets the volume's name and tag and
    lists the replaced uuid (identity.REPLACES_TAG), so a recorded
    provider_id still finds the volume; until the old VDI is destroyed, the
    old VDI is the volume (vdis.pick). Steps: LookupRevertTask (both VDIs in
    one call, the volume's leftovers, detached, clone allowed) ->
    DestroyLeftoversTask -> MarkSourceTask -> CloneForRevertTask ->
    TagRevertedVdiTask -> ReadVdiTask -> UnmarkSourceTask -> SwapOutTask.
    8 calls (+1 per VBD of the volume, +1 when the snapshot has a VHD
    parent). Store: ``provider_id`` (volume), ``snapshot_ident``,
    ``snapshot_provider_id``.
    """
    return linear_flow.Flow("revert_to_snapshot").add(
        LookupRevertTask(),
        DestroyLeftoversTask(),
        vdis.MarkSourceTask(),
        CloneForRevertTask(rebind={"vdi": "source_vdi"}),
        TagRevertedVdiTask(),
        ReadVdiTask(),
        vdis.UnmarkSourceTask(),
        SwapOutTask())


# -- copies -------------------------------------------------------------------

def _create_snapshot() -> linear_flow.Flow:
    """create_snapshot: FindSourceTask(the volume; snapshot allowed) ->
    MarkSourceTask -> SnapshotVdiTask -> TagVdiTask -> UnmarkSourceTask ->
    IdentifyVdiTask. 7 calls (8 when the volume already has a VHD parent and
    the chain depth must be read). Store: ``source_ident``,
    ``source_provider_id``."""
    return _copy_flow("create_snapshot", "snapshot", vdis.SnapshotVdiTask)


def _clone_to_volume() -> linear_flow.Flow:
    """create_volume_from_snapshot / create_cloned_volume: FindSourceTask
    (clone allowed) -> MarkSourceTask -> CloneVdiTask -> TagVdiTask ->
    UnmarkSourceTask -> IdentifyVdiTask -> ResizeVdiTask (only when the new
    volume is larger). 7 calls, 8 with a resize or a VHD parent. Store:
    ``source_ident``, ``source_provider_id``, ``new_size_bytes``."""
    return _copy_flow("clone_to_volume", "clone", vdis.CloneVdiTask).add(
        vdis.ResizeVdiTask())


def _copy_flow(name: str, operation: str, copy_task: type[XensmTask]) -> linear_flow.Flow:
    """Find the source (as ``source_vdi``) and check the SR allows the
    copy, mark the source, make the copy, give it its identity, unmark the
    source, resolve the copy."""
    return linear_flow.Flow(name).add(
        FindSourceTask(operation),
        vdis.MarkSourceTask(),
        copy_task(rebind={"vdi": "source_vdi"}),
        vdis.TagVdiTask(),
        vdis.UnmarkSourceTask(),
        vdis.IdentifyVdiTask())


def _manage_existing() -> linear_flow.Flow:
    """manage_existing: AdoptTagsTask -> AdoptNameTask (each restores what
    it changed) -> ResizeVdiTask (up to the whole GiB Cinder records). The
    VDI itself is found and vetted by the back end first. 2-3 calls. Store:
    ``vdi``, ``new_size_bytes``."""
    return linear_flow.Flow("manage_existing").add(
        vdis.AdoptTagsTask(), vdis.AdoptNameTask(), vdis.ResizeVdiTask())


create_volume = Verb(_create_volume)
delete = Verb(_delete)
extend_volume = Verb(_extend_volume)
revert_to_snapshot = Verb(_revert_to_snapshot)
create_snapshot = Verb(_create_snapshot)
clone_to_volume = Verb(_clone_to_volume)
manage_existing = Verb(_manage_existing)


class FindSourceTask(XensmTask):
    """The VDI to copy (``source_ident``; it must exist), refused before XAPI
    is asked when the SR would refuse the copy. Provides ``source_vdi``. No
    side effect. 1 call (2 with a VHD parent)."""

    default_provides = "source_vdi"

    def __init__(self, operation: str, **kwargs: Any) -> None:
        super().__init__(rebind={"ident": "source_ident", "provider_id": "source_provider_id"},
                         **kwargs)
        self.operation = operation

    def execute(self, target: SRTarget, ident: identity.Identity,
                provider_id: str | None) -> VDI:
        vdi = vdis.find_vdi(target, ident, provider_id)
        if vdi is None:
            raise vdis.not_found(target, ident)
        vdis.check_copy_allowed(target, vdi, self.operation)
        return vdi


class FindResizableTask(XensmTask):
    """The volume's VDI (it must exist), refused on a shrink or an online
    grow the SR cannot do. Provides ``vdi``. No side effect. 1 call (+1 per
    VBD)."""

    default_provides = "vdi"

    def execute(self, target: SRTarget, ident: identity.Identity, provider_id: str | None,
                new_size_bytes: int) -> VDI:
        vdi = vdis.find_vdi(target, ident, provider_id)
        if vdi is None:
            raise vdis.not_found(target, ident)
        if new_size_bytes < vdi.virtual_size:
            raise exception.InvalidInput(
                reason="volume %s is %d bytes; it cannot shrink to %d (SRs refuse "
                       "to shrink VDIs)" % (ident.id, vdi.virtual_size, new_size_bytes))
        if not target.online_resize:
            if vdis.attached(target, vdi):
                raise target.refuse(
                    "extend attached volume %s" % ident.id,
                    "its SR type cannot resize an attached VDI (no VDI_RESIZE_ONLINE); "
                    "detach it, extend, and attach it again")
        return vdi


# -- revert -------------------------------------------------------------------

class LookupRevertTask(XensmTask):
    """Both VDIs in one lookup: the volume's (it must exist, detached), what
    earlier reverts left of it, and the snapshot's (it must exist, and the
    SR must allow a clone of it). No side effect. 1 call (+1 per VBD of the
    volume, +1 when the snapshot has a VHD parent)."""

    default_provides = ("vdi", "leftovers", "source_vdi")

    def execute(self, target: SRTarget, ident: identity.Identity, provider_id: str | None,
                snapshot_ident: identity.Identity,
                snapshot_provider_id: str | None) -> tuple[VDI, tuple[VDI, ...], VDI]:
        candidates = target.storage.find_vdis_named(
            target.sr_ref, [ident.name_label, snapshot_ident.name_label],
            uuids=[u for u in (provider_id, snapshot_provider_id) if u])
        # The volume, and its leftovers, among VDIs named as the volume (or
        # recorded as it): a copy in the making that is still named after
        # the snapshot and inherited a stale mark for this volume may be
        # another volume's clone of that snapshot, never this one's to
        # destroy. Its own delete finds this volume's such copies.
        volume = vdis.found_in(
            target, [c for c in candidates
                     if c.name_label != snapshot_ident.name_label or c.uuid == provider_id],
            ident, provider_id)
        if volume.vdi is None:
            raise vdis.not_found(target, ident)
        snapshot = vdis.found_in(target, candidates, snapshot_ident, snapshot_provider_id)
        if snapshot.vdi is None:
            raise vdis.not_found(target, snapshot_ident)
        vdis.refuse_attached(target, ident, volume.vdi)
        vdis.check_copy_allowed(target, snapshot.vdi, "clone")
        return volume.vdi, volume.leftovers, snapshot.vdi


class DestroyLeftoversTask(XensmTask):
    """Destroy what an earlier revert of this volume left (a clone never
    swapped in), so that only the clone made now can replace the volume.
    Nothing to revert. 1 call each; usually none."""

    def execute(self, target: SRTarget, leftovers: tuple[VDI, ...]) -> None:
        vdis.destroy_each(target, leftovers, "left by an earlier revert")


class TagRevertedVdiTask(XensmTask):
    """Name and tag the clone as the volume, listing the VDI it replaces.
    2 calls. Revert: the clone is destroyed by the task that made it."""

    def execute(self, target: SRTarget, ident: identity.Identity, vdi_ref: str,
                vdi: VDI) -> None:
        replaces = [*identity.replaced(vdi.other_config), vdi.uuid]
        target.storage.set_vdi_identity(
            vdi_ref, ident.name_label, ident.tags(vdi.other_config, replaces=replaces))


class ReadVdiTask(XensmTask):
    """The clone's record, for the model update. 1 call."""

    default_provides = "new_vdi"

    def execute(self, target: SRTarget, vdi_ref: str) -> VDI:
        return target.storage.get_vdi(vdi_ref)


class CloneForRevertTask(vdis.CloneVdiTask):
    """VDI.clone of the snapshot, to be swapped in. Revert destroys it --
    unless the swap may have happened (SwapOutTask lost its answer): the
    old VDI may be gone by now, and then the clone is the volume."""

    def revert(self, target: SRTarget, result: Any, flow_failures: Any = None,
               **kwargs: Any) -> None:
        if any(isinstance(f.exception, exception.RevertOutcomeUnknown)
               for f in (flow_failures or {}).values()):
            LOG.warning("Keeping the clone %s: it may already be the volume.", result)
            return
        super().revert(target, result, **kwargs)


class SwapOutTask(XensmTask):
    """Destroy the volume's old VDI: from now on the clone is the volume.

    Last, and it never fails once the old VDI is gone: the flow's revert
    would destroy the clone, and with it the volume. A lost answer is
    settled by looking the old VDI up; when it is still there the destroy
    may yet land, so the verb fails keeping the clone (RevertOutcomeUnknown)
    -- each VDI is the volume in turn, never neither. 1 call (2 after a
    lost answer).
    """

    def execute(self, target: SRTarget, ident: identity.Identity, vdi: VDI,
                new_vdi: VDI) -> None:
        try:
            target.storage.destroy_vdi(vdi.ref)
        except GONE:
            return
        except exception.XapiConnectionError as exc:
            if not exc.sent:
                raise               # never reached XAPI: the old VDI is whole
            reason = exc.msg
            try:
                if target.storage.vdi_by_uuid(vdi.uuid) is None:
                    return
            except exception.XensmError as look:
                # Unsettled: the destroy may have landed, so the clone stays.
                reason = "%s; looking for it failed too: %s" % (reason, look)
            raise exception.RevertOutcomeUnknown(
                volume_id=ident.id, vdi_uuid=vdi.uuid, clone_uuid=new_vdi.uuid,
                reason=reason) from exc


# -- migration between SRs of one pool ---------------------------------------

def _migrate_detached() -> linear_flow.Flow:
    """migrate_volume, detached: a copy into the destination SR, then the
    source destroyed. XAPI's VDI.copy copies the source's name and
    other_config, so the source is marked first (MarkSourceTask): a copy
    whose answer was lost still says whom it was made for.

    ClearDestinationTask (1 call) -> MarkSourceTask (1) -> CopyToSrTask
    (Async.VDI.copy: 3+; the copy inherits the mark) -> TagMovedVdiTask
    (1, 2 if the name differs) -> UnmarkSourceTask (1) -> ReadVdiTask (1)
    -> DestroySourceTask (1, 2 after a lost answer). 8 calls and the
    task's polls (10 with finding the SR and the volume). Every step before
    the last undoes itself, so a failure leaves the volume whole on the
    source SR and nothing on the destination. Store: ``target`` (the
    source SR), ``dest`` (the destination SR), ``ident``, ``source_vdi``,
    ``task_timeout``, ``progress`` (None, or hears the copy's progress).
    """
    return linear_flow.Flow("migrate_detached").add(
        ClearDestinationTask(),
        vdis.MarkSourceTask(),
        CopyToSrTask(),
        TagMovedVdiTask(),
        vdis.UnmarkSourceTask(),
        ReadVdiTask(rebind={"target": "dest"}),
        DestroySourceTask())


def _migrate_attached() -> linear_flow.Flow:
    """migrate_volume, attached: XAPI's live storage motion
    (VDI.pool_migrate), which destroys the source itself and repoints the
    VM's VBD. The new VDI keeps the name but not the other_config, so it is
    tagged again. ClearDestinationTask (1 call) -> PoolMigrateTask
    (Async.VDI.pool_migrate: 3+) -> TagMovedVdiTask (1) -> ReadVdiTask (1).
    5 calls and the task's polls (8 with finding the SR, the volume and
    its VBD's state). A failure after the move moves the VDI
    back and gives it back its identity. Store: as the detached flow.
    """
    return linear_flow.Flow("migrate_attached").add(
        ClearDestinationTask(),
        PoolMigrateTask(),
        TagMovedVdiTask(),
        ReadVdiTask(rebind={"target": "dest"}))


migrate_detached = Verb(_migrate_detached)
migrate_attached = Verb(_migrate_attached)


class ClearDestinationTask(XensmTask):
    """Make sure the destination SR holds nothing of the volume: copies an
    earlier migration made and never finished (they carry the volume's
    making mark) are destroyed; a VDI that is the volume there (an earlier
    migration that lost its last answer) refuses the migration, naming it.
    Nothing to revert. 1 call (+1 per leftover)."""

    def execute(self, dest: SRTarget, ident: identity.Identity, source_vdi: VDI) -> None:
        found = dest.storage.find_vdis(dest.sr_ref, ident.name_label)
        leftovers = [v for v in found if ident.made_for(v.uuid, v.other_config)]
        settled = [v for v in found if v not in leftovers and ident.matches(v.other_config)]
        if settled:
            raise exception.InUse(
                kind="Volume", name=ident.id,
                reason="SR %s of back end %s already holds VDI %s as this volume (an "
                       "earlier migration that lost its answer?) while VDI %s on the "
                       "source SR is it too; keep the one with the data you want "
                       "(xensm reconcile lists both) and destroy the other first"
                       % (dest.sr_uuid, dest.backend, settled[0].uuid, source_vdi.uuid))
        vdis.destroy_each(dest, leftovers,
                          "an unfinished migration copy of %s" % ident.name_label)


class CopyToSrTask(XensmTask):
    """VDI.copy of the marked source into the destination SR.

    A lost answer fails the verb: the copy is a task whose ref was lost, so
    a copy found by its mark might still be filling. Revert destroys the
    copy, or when the copy failed on this side whatever copy for the volume
    the destination holds (XAPI queues the destroy behind a running copy) --
    but keeps it when the source's destroy may have happened
    (MoveOutcomeUnknown): the copy may be the volume by now."""

    default_provides = "vdi_ref"

    def execute(self, dest: SRTarget, source_vdi: VDI, task_timeout: float,
                progress: Callable[[float], None] | None) -> str:
        return dest.storage.copy_vdi_to_sr(source_vdi.ref, dest.sr_ref,
                                           timeout=task_timeout, progress=progress)

    def revert(self, dest: SRTarget, ident: identity.Identity, source_vdi: VDI,
               result: Any, flow_failures: Any = None, **kwargs: Any) -> None:
        if failed(result):
            # The copy's task may have gone on after this side lost it (a
            # lost answer, a poll that failed): look for its VDI by the mark.
            undo("a late copy of VDI %s on SR %s" % (source_vdi.uuid, dest.sr_uuid),
                 lambda: vdis.destroy_each(dest, [
                     v for v in dest.storage.find_vdis(dest.sr_ref, source_vdi.name_label)
                     if ident.made_for(v.uuid, v.other_config)],
                     "a copy for %s whose answer was lost" % ident.name_label))
            return
        if any(isinstance(f.exception, exception.MoveOutcomeUnknown)
               for f in (flow_failures or {}).values()):
            LOG.warning("Keeping the copy %s on SR %s: it may already be the volume.",
                        result, dest.sr_uuid)
            return
        vdis.destroy_quietly(dest, result)


def _migrated(target: SRTarget, dest: SRTarget, source_vdi: VDI) -> str | None:
    """The VDI a VBD of ``source_vdi`` holds now, when storage motion moved
    it to the destination SR. 1 call per VBD, +1 when one moved."""
    for vbd in source_vdi.vbds:
        try:
            ref = target.storage.vbd_vdi(vbd)
        except GONE:
            continue
        if ref != source_vdi.ref and target.storage.get_vdi(ref).sr == dest.sr_ref:
            return ref
    return None


#: How often a move whose task was lost is looked at again.
SETTLE_INTERVAL = 0.2


def _settle_migration(target: SRTarget, dest: SRTarget, source_vdi: VDI,
                      timeout: float) -> str | None:
    """After this side lost track of a VDI.pool_migrate (a lost answer, a
    failed poll): wait while XAPI still moves the source (its
    current_operations), then the new VDI if the move was done, None if
    not. 2 calls a look."""
    deadline = time.monotonic() + timeout
    while True:
        moved = _migrated(target, dest, source_vdi)
        if moved is not None:
            return moved
        try:
            running = target.storage.vdi_operations(source_vdi.ref)
        except GONE:
            return _migrated(target, dest, source_vdi)
        if not running or time.monotonic() >= deadline:
            return None
        time.sleep(SETTLE_INTERVAL)


class PoolMigrateTask(XensmTask):
    """VDI.pool_migrate of the attached source into the destination SR;
    XAPI destroys the source itself once the mirror is done, and leaves it
    as it was when the move fails. A lost answer is settled through the
    VM's VBD: it holds the new VDI once the move is done, and while the
    source is still being moved (XAPI's ``mirror`` operation on it) that is
    waited for. Refused for a
    VDI with changed-block tracking on (XAPI's VDI_CBT_ENABLED).

    Revert moves the VDI back (storage motion again) and gives it back the
    source's name and tags, listing both uuids it replaced, so the
    recorded provider_id still finds the volume."""

    default_provides = "vdi_ref"

    def execute(self, target: SRTarget, dest: SRTarget, ident: identity.Identity,
                source_vdi: VDI, task_timeout: float,
                progress: Callable[[float], None] | None) -> str:
        try:
            return target.storage.pool_migrate_vdi(source_vdi.ref, dest.sr_ref,
                                                   timeout=task_timeout, progress=progress)
        except exception.XapiError as exc:
            if exc.code == "VDI_CBT_ENABLED":
                raise target.refuse(
                    "migrate attached volume %s" % ident.id,
                    "its VDI %s has changed-block tracking on, and XAPI refuses to "
                    "move such a VDI live (VDI_CBT_ENABLED); detach it and migrate "
                    "it detached (a copy), or disable changed-block tracking "
                    "(which ends its incremental backups' chain)" % source_vdi.uuid
                ) from exc
            if exc.code == "SR_DOES_NOT_SUPPORT_MIGRATION":
                raise target.refuse(
                    "migrate attached volume %s" % ident.id,
                    "XAPI cannot move a VDI live between these SRs: the SM of one of "
                    "them lacks %s (SR_DOES_NOT_SUPPORT_MIGRATION); detach the volume "
                    "and migrate it detached (a copy)"
                    % (":".join(exc.params[1:]) or "VDI_MIRROR")) from exc
            if exc.method in ("VDI.pool_migrate", "Async.VDI.pool_migrate"):
                raise                   # refused: nothing moved
            return self._settle(target, dest, source_vdi, task_timeout, exc)
        except (exception.XapiConnectionError, exception.TaskTimeout) as exc:
            if isinstance(exc, exception.XapiConnectionError) and not exc.sent:
                raise
            return self._settle(target, dest, source_vdi, task_timeout, exc)

    @staticmethod
    def _settle(target: SRTarget, dest: SRTarget, source_vdi: VDI, timeout: float,
                exc: exception.XensmError) -> str:
        LOG.warning("%s; looking at where VDI %s is now.", exc, source_vdi.uuid)
        moved = _settle_migration(target, dest, source_vdi, timeout)
        if moved is None:
            raise exc
        return moved

    def revert(self, target: SRTarget, source_vdi: VDI, result: Any,
               task_timeout: float, **kwargs: Any) -> None:
        if failed(result):
            return
        other_config = dict(source_vdi.other_config)
        other_config[identity.REPLACES_TAG] = " ".join(
            [*identity.replaced(source_vdi.other_config), source_vdi.uuid])

        def back() -> None:
            ref = target.storage.pool_migrate_vdi(result, target.sr_ref, timeout=task_timeout)
            target.storage.set_vdi_identity(ref, source_vdi.name_label, other_config)

        undo("moving VDI %s back to SR %s" % (result, target.sr_uuid), back)


class TagMovedVdiTask(XensmTask):
    """Give the new VDI on the destination SR the volume's identity: its
    tags (and name, when XAPI did not keep it), listing the source's uuid
    as replaced, so the provider_id recorded before the move still finds
    the volume. 1 call (2 with the name). Revert: the VDI is destroyed or
    moved back by the task that made it."""

    def execute(self, dest: SRTarget, ident: identity.Identity, source_vdi: VDI,
                vdi_ref: str) -> None:
        tags = ident.tags(source_vdi.other_config, replaces=[
            *identity.replaced(source_vdi.other_config), source_vdi.uuid])
        if source_vdi.name_label != ident.name_label:
            dest.storage.set_vdi_name_label(vdi_ref, ident.name_label)
        dest.storage.set_vdi_other_config(vdi_ref, tags)


class DestroySourceTask(XensmTask):
    """Destroy the source VDI: from now on the copy is the volume.

    Last, and it never fails once the source is gone (the flow's revert
    would destroy the copy). A lost answer is settled by looking the
    source up; when it is still there the destroy may yet land, so the verb
    fails keeping the copy (MoveOutcomeUnknown). 1 call (2 after a lost
    answer)."""

    def execute(self, target: SRTarget, dest: SRTarget, ident: identity.Identity,
                source_vdi: VDI, new_vdi: VDI) -> None:
        try:
            target.storage.destroy_vdi(source_vdi.ref)
        except GONE:
            return
        except exception.XapiConnectionError as exc:
            if not unknown(exc):
                raise
            if target.storage.vdi_by_uuid(source_vdi.uuid) is None:
                return
            raise exception.MoveOutcomeUnknown(
                volume_id=ident.id, vdi_uuid=source_vdi.uuid, sr_uuid=target.sr_uuid,
                copy_uuid=new_vdi.uuid, dest_sr_uuid=dest.sr_uuid, reason=exc.msg) from exc


# -- the SR -------------------------------------------------------------------

class Secrets(dict[str, str]):
    """device_config passwords by key, on their way to XAPI secrets: never
    shown, so a flow's store can be logged at any level."""

    def __repr__(self) -> str:
        return "<secrets %s>" % ", ".join(sorted(self))

    __str__ = __repr__


class CreateSecretTask(XensmTask):
    """Store one device_config password as an XAPI secret; revert deletes it.

    Provides ``secret_<key>``: the secret's uuid.
    """

    def __init__(self, key: str, **kwargs: Any) -> None:
        super().__init__(name="CreateSecretTask:%s" % key,
                         provides="secret_%s" % key, **kwargs)
        self.key = key

    def execute(self, target: Target, secrets: Secrets) -> str:
        return target.storage.create_secret(
            secrets[self.key], purpose="%s device_config %s" % (target.backend, self.key))

    def revert(self, target: Target, result: Any, **kwargs: Any) -> None:
        if failed(result):
            return
        undo("secret %s" % result, target.storage.destroy_secret, result)


class CreateSrTask(XensmTask):
    """SR.create on the pool master (PBDs on every host when shared), with
    each password as ``<key>_secret``. Revert destroys it."""

    default_provides = "sr_ref"

    def execute(self, target: Target, device_config: dict[str, str], name_label: str,
                shared: bool, **secret_uuids: str) -> str:
        dc = dict(device_config)
        for name, uuid in secret_uuids.items():
            dc[name[len("secret_"):] + "_secret"] = uuid
        master = target.storage.master()
        return target.storage.create_sr(
            master.ref, dc, target.sr_type, name_label, shared=shared,
            name_description="Cinder volumes of back end %s (xensm-driver)" % target.backend)

    def revert(self, target: Target, result: Any, **kwargs: Any) -> None:
        if failed(result):
            return
        undo("SR %s" % result, target.storage.destroy_sr, result)


class DestroySecretTask(XensmTask):
    """Delete the secret CreateSecretTask made, once the SR exists.

    XAPI gives every PBD its own copy of a ``*password_secret``
    (xen-api ``xapi_pbd.ml`` ``duplicate_passwds``) and SR.forget/destroy
    delete only those copies, so the driver's own would outlive the SR.
    The last task: nothing after it can fail and need the secret back. A
    failure to delete is logged, not raised: the SR is made and usable.
    """

    def __init__(self, key: str, **kwargs: Any) -> None:
        super().__init__(name="DestroySecretTask:%s" % key,
                         requires=["secret_%s" % key], **kwargs)
        self.key = key

    def execute(self, target: Target, **secret_uuid: str) -> None:
        uuid = secret_uuid["secret_%s" % self.key]
        try:
            target.storage.destroy_secret(uuid)
        except exception.XensmError as exc:
            LOG.warning("Could not delete secret %s (device_config %s of back end %s) "
                        "after the SR was made: %s", uuid, self.key, target.backend, exc)


def create_sr(secret_keys: list[str]) -> linear_flow.Flow:
    """create_sr: CreateSecretTask per password -> CreateSrTask ->
    PlugEverywhereTask -> DestroySecretTask per password (the PBDs hold their
    own copies). Built per call: its shape follows the passwords set.

    Store: target (no SR yet), secrets, device_config (no passwords),
    name_label, shared.
    """
    flow = linear_flow.Flow("create_sr")
    for key in secret_keys:
        flow.add(CreateSecretTask(key))
    flow.add(CreateSrTask(requires=["secret_%s" % k for k in secret_keys]),
             PlugEverywhereTask())
    for key in secret_keys:
        flow.add(DestroySecretTask(key))
    return flow


# -- consistent group snapshots -------------------------------------------------

def find_group(target: SRTarget, members: list[tuple[identity.Identity, str | None]]
               ) -> tuple[list[VDI], list[VMRecord]]:
    """The members' VDIs (each must exist and allow a snapshot) and the
    running VMs that hold them. Before the flow, because the flow's shape
    follows them. 1 call for the VDIs (+1 when any has a VHD parent: the
    chain depth), +1 for their VBDs when any has one, +1 per VM."""
    candidates = target.storage.find_vdis_named(
        target.sr_ref, [ident.name_label for ident, _ in members],
        uuids=[p for _, p in members if p])
    sources = []
    for ident, provider_id in members:
        vdi = vdis.found_in(target, candidates, ident, provider_id).vdi
        if vdi is None:
            raise vdis.not_found(target, ident)
        vdis.check_copy_allowed(target, vdi, "snapshot")
        sources.append(vdi)
    paused = vms_flows.holders(target, [v.ref for v in sources],
                               [b for v in sources for b in v.vbds])
    return sources, paused


def group_snapshot(count: int, vm_count: int) -> linear_flow.Flow:
    """create_group_snapshot on SM SRs: every member snapshotted at one
    instant, the VMs holding them paused only around the VDI.snapshot calls.

    MarkSourceTask per member -> (MarkVmTask, PauseVmTask) per running VM ->
    GroupSnapshotVdiTask per member -> ResumeVmsTask -> (TagVdiTask,
    UnmarkSourceTask, IdentifyVdiTask) per member. With N members held by M
    VMs, after find_group: N + 2M + N + 2M + 4N calls (6N + 4M). A failure
    unpauses first, then destroys what was made; a VM whose unpause fails
    keeps its pause mark for ``xensm reconcile``. Built per call (its shape
    follows N and M).

    Store: ``target``, ``group_snapshot_id``, ``paused_vms`` (the VMs), and
    per member i ``ident_i`` (the snapshot), ``source_vdi_i``; per VM j
    ``vm_j``.
    """
    flow = linear_flow.Flow("group_snapshot")
    for i in range(count):
        flow.add(vdis.MarkSourceTask(name="MarkSourceTask:%d" % i, provides="mark_%d" % i,
                                     rebind={"source_vdi": "source_vdi_%d" % i,
                                             "ident": "ident_%d" % i}))
    for j in range(vm_count):
        flow.add(vms_flows.MarkVmTask(j), vms_flows.PauseVmTask(j))
    for i in range(count):
        flow.add(vms_flows.GroupSnapshotVdiTask(
            name="GroupSnapshotVdiTask:%d" % i, provides="vdi_ref_%d" % i,
            rebind={"vdi": "source_vdi_%d" % i}))
    flow.add(vms_flows.ResumeVmsTask())
    for i in range(count):
        flow.add(
            vdis.TagVdiTask(name="TagVdiTask:%d" % i,
                            rebind={"ident": "ident_%d" % i, "vdi_ref": "vdi_ref_%d" % i}),
            vdis.UnmarkSourceTask(name="UnmarkSourceTask:%d" % i,
                                  rebind={"source_vdi": "source_vdi_%d" % i,
                                          "ident": "ident_%d" % i}),
            vdis.IdentifyVdiTask(name="IdentifyVdiTask:%d" % i, provides="vdi_%d" % i,
                                 rebind={"ident": "ident_%d" % i,
                                         "vdi_ref": "vdi_ref_%d" % i}))
    return flow
