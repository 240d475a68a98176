"""Tasks the SM-native flows share, and the engine that runs a flow.

Each task has one side effect and undoes exactly that in ``revert``: it
returns early when its own ``execute`` failed (nothing to undo) and treats
"already gone" as done. The engine reverts completed tasks in reverse order
and re-raises the original exception, so a failed verb leaves the SR as it
found it.

Tasks read the back end (``backend``: SR ref and uuid, storage calls,
options) and the verb's inputs from the flow's store; they provide nouns
(``vdi_ref``, ``vdi``) for the tasks after them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from oslo_log import log as logging
from taskflow import engines
from taskflow import task
from taskflow.types import failure

from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.xapi.storage import VDI

if TYPE_CHECKING:
    from taskflow.flow import Flow

    from xensm_driver.backends.sm import SRBackend

LOG = logging.getLogger(__name__)

#: Errors that mean the object is already gone.
GONE = (exception.HandleInvalid, exception.UuidInvalid)


def run(flow: Flow, **store: Any) -> Any:
    """Run ``flow`` with ``store``; return the whole result store."""
    engine = engines.load(flow, store=store, engine="serial")
    engine.run()
    return engine.storage.fetch_all()


def _failed(result: Any) -> bool:
    return isinstance(result, failure.Failure)


# -- lookups ------------------------------------------------------------------

def find_vdi(backend: SRBackend, ident: identity.Identity,
             provider_id: str | None = None) -> VDI | None:
    """Find the VDI of ``ident`` on the back end's SR, or None.

    By ``provider_id`` (its uuid) when known, else by name label; in both
    cases the tag must match, or IdentityMismatch is raised rather than
    returning somebody else's VDI. 1 call (2 if the uuid is stale).
    """
    storage = backend.storage
    if provider_id:
        vdi = storage.vdi_by_uuid(provider_id)
        if vdi is not None:
            if not ident.matches(vdi.other_config):
                raise exception.IdentityMismatch(
                    operation="use", vdi_uuid=vdi.uuid,
                    found=ident.describe(vdi.other_config),
                    expected="%s=%s" % (ident.tag_key, ident.id))
            return vdi
        LOG.debug("No VDI %s for %s; looking it up by name", provider_id,
                  ident.name_label)
    return pick(storage.find_vdis(backend.sr_ref, ident.name_label), ident)


def pick(candidates: list[VDI], ident: identity.Identity) -> VDI | None:
    """The VDI that is ``ident``: tagged, managed, and the oldest.

    A VDI that already held the volume (a finished earlier create, perhaps
    with data on it) is older than any duplicate a retry makes, so it wins,
    and every caller picks the same winner. A volume is never a snapshot
    (XAPI copies a volume's tags onto its snapshots until they are
    re-tagged). Two VDIs with the same stamp are a VDI and an XAPI copy of
    it whose re-tagging never happened (a lost answer): there is no telling
    which is the original, so the lookup refuses rather than guess.
    """
    ours = [v for v in candidates if v.managed and ident.matches(v.other_config)
            and not (ident.kind == "volume" and v.is_a_snapshot)]
    if not ours:
        return None
    ours.sort(key=lambda v: (identity.created(v.other_config), v.uuid))
    first = ours[0]
    twins = [v.uuid for v in ours[1:]
             if identity.created(v.other_config) == identity.created(first.other_config)]
    if twins:
        raise exception.XensmError(
            "VDIs %s all claim %s with one creation stamp: one is an XAPI copy whose "
            "identity was never set (an answer lost mid-snapshot or clone). Look it "
            "up by its recorded provider_id, or remove the stray copy (xensm "
            "reconcile lists it)." % (", ".join([first.uuid, *twins]), ident.name_label))
    return first


# -- tasks --------------------------------------------------------------------

class XensmTask(task.Task):
    """A task named after its class, so flow errors name the step."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", type(self).__name__)
        super().__init__(**kwargs)


class FindVdiTask(XensmTask):
    """Find the VDI of ``ident`` (must exist unless ``missing_ok``)."""

    default_provides = "vdi"

    def __init__(self, ident_key: str = "ident", provider_key: str = "provider_id",
                 missing_ok: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("rebind", {"ident": ident_key, "provider_id": provider_key})
        super().__init__(**kwargs)
        self.missing_ok = missing_ok

    def execute(self, backend: SRBackend, ident: identity.Identity,
                provider_id: str | None) -> VDI | None:
        vdi = find_vdi(backend, ident, provider_id)
        if vdi is None and not self.missing_ok:
            if ident.kind == "snapshot":
                raise exception.SnapshotNotFound(snapshot_id=ident.id,
                                                 sr_uuid=backend.sr_uuid)
            raise exception.VolumeNotFound(volume_id=ident.id, sr_uuid=backend.sr_uuid)
        return vdi


class _MakeVdiTask(XensmTask):
    """A task whose one side effect is a new VDI; revert destroys it."""

    default_provides = "vdi_ref"

    def revert(self, backend: SRBackend, result: Any, **kwargs: Any) -> None:
        if _failed(result):
            return
        destroy_quietly(backend, result)


class CreateVdiTask(_MakeVdiTask):
    """VDI.create, named and tagged in the one call."""

    def execute(self, backend: SRBackend, ident: identity.Identity,
                size_bytes: int) -> str:
        return backend.storage.create_vdi(backend.sr_ref, size_bytes,
                                          ident.name_label, ident.tags())


class SnapshotVdiTask(_MakeVdiTask):
    """VDI.snapshot of ``vdi``."""

    def execute(self, backend: SRBackend, vdi: VDI) -> str:
        return backend.storage.snapshot_vdi(vdi.ref)


class CloneVdiTask(_MakeVdiTask):
    """VDI.clone of ``vdi`` (a writable copy)."""

    def execute(self, backend: SRBackend, vdi: VDI) -> str:
        return backend.storage.clone_vdi(vdi.ref)


class TagVdiTask(XensmTask):
    """Give the new VDI its identity: other_config tag, then name label.

    XAPI's snapshot and clone copy the source's name and tags, so the copy
    would otherwise pass for its source. The tag goes first: a VDI renamed
    but still tagged as the source is the one state never to leave behind.
    Revert has nothing to undo -- the VDI it renamed is destroyed by the
    task that made it.
    """

    def execute(self, backend: SRBackend, ident: identity.Identity, vdi_ref: str) -> None:
        backend.storage.set_vdi_identity(vdi_ref, ident.name_label, ident.tags())


class IdentifyVdiTask(XensmTask):
    """Resolve the VDI just made to its record, keeping one per identity.

    Looks the identity up by name: if an earlier attempt (a retry, or a
    concurrent duplicate) already made a VDI for the same id, the oldest
    (see :func:`pick`) is kept and ours destroyed, so exactly one remains.
    1 call (2 when ours loses).
    """

    default_provides = "vdi"

    def execute(self, backend: SRBackend, ident: identity.Identity, vdi_ref: str) -> VDI:
        found = backend.storage.find_vdis(backend.sr_ref, ident.name_label)
        winner = pick(found, ident)
        if winner is None:
            # Renamed away or untagged by somebody else between our calls.
            raise exception.XensmError(
                "VDI %s for %s vanished or lost its tag right after it was made "
                "on SR %s." % (vdi_ref, ident.name_label, backend.sr_uuid))
        if winner.ref != vdi_ref:
            LOG.warning("%s already had VDI %s on SR %s (an earlier attempt); "
                        "keeping it and destroying the one just made.",
                        ident.name_label, winner.uuid, backend.sr_uuid)
            destroy_quietly(backend, vdi_ref)
        return winner


class ResizeVdiTask(XensmTask):
    """Grow ``vdi`` to ``new_size_bytes`` (no-op when already that big).

    Revert cannot shrink a VDI (SM refuses), so it only logs.
    """

    def __init__(self, vdi_key: str = "vdi", **kwargs: Any) -> None:
        super().__init__(rebind={"vdi": vdi_key}, **kwargs)

    def execute(self, backend: SRBackend, vdi: VDI, new_size_bytes: int) -> None:
        if new_size_bytes > vdi.virtual_size:
            backend.storage.resize_vdi(vdi.ref, new_size_bytes,
                                       online=backend.resize_online(vdi))


class DestroyVdiTask(XensmTask):
    """Destroy ``vdi`` (None means already gone). Nothing to revert."""

    def execute(self, backend: SRBackend, ident: identity.Identity,
                vdi: VDI | None) -> bool:
        if vdi is None:
            LOG.warning("%s has no VDI on SR %s; treating the delete as done.",
                        ident.name_label, backend.sr_uuid)
            return False
        try:
            backend.storage.destroy_vdi(vdi.ref)
        except GONE:
            LOG.warning("VDI %s of %s vanished before it was destroyed.",
                        vdi.uuid, ident.name_label)
            return False
        return True


def undo(what: str, fn: Callable[..., Any], *args: Any) -> None:
    """Run one step of a revert; never let it stop the others.

    taskflow stops reverting at the first revert that raises and the
    original failure is lost behind it. So "already gone" counts as done,
    and anything else is logged as left behind -- tagged objects show up in
    ``xensm reconcile`` -- while the rest of the flow still reverts.
    """
    try:
        fn(*args)
    except GONE:
        return
    except exception.XensmError as exc:
        LOG.error("Could not undo %s: %s. It is left behind; 'xensm reconcile' "
                  "reports tagged leftovers.", what, exc)


def destroy_quietly(backend: SRBackend, vdi_ref: str) -> None:
    """Destroy a VDI this flow made, while undoing."""
    undo("VDI %s on SR %s" % (vdi_ref, backend.sr_uuid), backend.storage.destroy_vdi,
         vdi_ref)


class CheckCopyAllowedTask(XensmTask):
    """Refuse a snapshot or clone the SR would refuse, before asking it.

    The back end knows its limits (VHD chain depth, no snapshot of a
    snapshot on EqualLogic). No side effect.
    """

    def __init__(self, operation: str, **kwargs: Any) -> None:
        super().__init__(name="Check%sAllowedTask" % operation.capitalize(), **kwargs)
        self.operation = operation

    def execute(self, backend: SRBackend, vdi: VDI) -> None:
        backend.check_copy_allowed(vdi, self.operation)


class CheckDetachedTask(XensmTask):
    """Refuse while the VDI is attached to a VM. No side effect."""

    def execute(self, backend: SRBackend, ident: identity.Identity, vdi: VDI) -> None:
        if backend.attached(vdi):
            raise exception.InUse(
                kind="Volume", name=ident.id,
                reason="its VDI %s is attached to a VM; detach it first" % vdi.uuid)


class CheckResizableTask(XensmTask):
    """Refuse a shrink, or an online grow the SR cannot do. No side effect."""

    def execute(self, backend: SRBackend, ident: identity.Identity, vdi: VDI,
                new_size_bytes: int) -> None:
        if new_size_bytes < vdi.virtual_size:
            raise exception.InvalidInput(
                reason="volume %s is %d bytes; it cannot shrink to %d (SRs refuse "
                       "to shrink VDIs)" % (ident.id, vdi.virtual_size, new_size_bytes))
        if not backend.resize_online(vdi) and backend.attached(vdi):
            raise backend.refuse(
                "extend attached volume %s" % ident.id,
                "its SR type cannot resize an attached VDI (no VDI_RESIZE_ONLINE); "
                "detach it, extend, and attach it again")


class CopyIntoVdiTask(XensmTask):
    """Copy ``snapshot_vdi``'s content over ``vdi`` inside XAPI.

    Last in its flow, with nothing to revert: a copy that failed or timed
    out may have overwritten part of the volume, but the snapshot is
    untouched, so running the revert again completes it.
    """

    def execute(self, backend: SRBackend, vdi: VDI, snapshot_vdi: VDI) -> None:
        if snapshot_vdi.virtual_size > vdi.virtual_size:
            raise exception.InvalidInput(
                reason="snapshot VDI %s (%d bytes) is larger than volume VDI %s "
                       "(%d bytes)" % (snapshot_vdi.uuid, snapshot_vdi.virtual_size,
                                       vdi.uuid, vdi.virtual_size))
        backend.storage.copy_vdi_into(snapshot_vdi.ref, vdi.ref,
                                      timeout=backend.options.xenapi_task_timeout)


class AdoptTagsTask(XensmTask):
    """Tag an existing VDI as the volume; revert puts back its old tags."""

    default_provides = "previous_other_config"

    def execute(self, backend: SRBackend, ident: identity.Identity,
                vdi: VDI) -> dict[str, str]:
        backend.storage.set_vdi_other_config(vdi.ref, ident.tags(vdi.other_config))
        return dict(vdi.other_config)

    def revert(self, backend: SRBackend, vdi: VDI, result: Any, **kwargs: Any) -> None:
        if _failed(result):
            return
        undo("the tags of VDI %s" % vdi.uuid, backend.storage.set_vdi_other_config,
             vdi.ref, result)


class AdoptNameTask(XensmTask):
    """Rename an existing VDI after the volume; revert puts back its old name."""

    def execute(self, backend: SRBackend, ident: identity.Identity, vdi: VDI) -> str:
        backend.storage.set_vdi_name_label(vdi.ref, ident.name_label)
        return vdi.name_label

    def revert(self, backend: SRBackend, vdi: VDI, result: Any, **kwargs: Any) -> None:
        if _failed(result):
            return
        undo("the name of VDI %s" % vdi.uuid, backend.storage.set_vdi_name_label,
             vdi.ref, result)
