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

from typing import Any

from oslo_log import log as logging
from taskflow.patterns import linear_flow

from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.flows import claims
from xensm_driver.flows import vdi as vdis
from xensm_driver.flows.engine import GONE
from xensm_driver.flows.engine import Verb
from xensm_driver.flows.engine import XensmTask
from xensm_driver.flows.engine import failed
from xensm_driver.flows.engine import undo
from xensm_driver.flows.sr import PlugEverywhereTask
from xensm_driver.flows.target import SRTarget
from xensm_driver.flows.target import Target
from xensm_driver.xapi.storage import VDI

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
