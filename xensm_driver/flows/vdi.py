"""Tasks on VDIs of one SR that every family shares, and how objects are found.

Each task has one side effect and undoes exactly that in ``revert``: it
returns early when its own ``execute`` failed (nothing to undo) and treats
"already gone" as done. The engine reverts completed tasks in reverse order
and re-raises the original exception, so a failed verb leaves the SR as it
found it.

Tasks act on ``target`` (a :class:`~xensm_driver.flows.target.SRTarget`:
storage, SR, what the SM type allows) and the verb's inputs from the flow's
store; they provide nouns (``vdi_ref``, ``vdi``) for the tasks after them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

from oslo_log import log as logging

from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.flows.claims import take_turn
from xensm_driver.flows.engine import GONE
from xensm_driver.flows.engine import XensmTask
from xensm_driver.flows.engine import failed
from xensm_driver.flows.engine import outcome_unknown
from xensm_driver.flows.engine import undo
from xensm_driver.flows.target import SRTarget
from xensm_driver.flows.target import Target
from xensm_driver.xapi.storage import VDI

LOG = logging.getLogger(__name__)

#: XAPI's VHD chain limit (sm's vhdutil.MAX_CHAIN_SIZE).
XAPI_MAX_CHAIN = 30


# -- lookups ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Found:
    """What one lookup of an object found on the back end's SR."""

    #: The object's VDI, or None when it is gone.
    vdi: VDI | None
    #: VDIs made for the object that are not it: copies whose identity was
    #: never set (a lost answer), reverts that never finished their swap,
    #: and copies *of* it never finished. Nobody else's; a delete removes
    #: them. A VDI that is an object of its own (tagged, no mark) is never
    #: one, even when it carries the same tag.
    leftovers: tuple[VDI, ...] = ()
    #: Sources that still carry the object's making marker as their own (a
    #: copy for it was cut off); a delete takes the marker off.
    marked_sources: tuple[VDI, ...] = ()


def lookup(target: SRTarget, ident: identity.Identity, provider_id: str | None = None,
           source: identity.Identity | None = None) -> Found:
    """Find ``ident`` on the back end's SR, and what was made for it. 1 call.

    A recorded uuid (``provider_id``) is the identity (DESIGN.md): when its
    VDI is gone, the object is gone, unless a VDI tagged as the object says
    it replaced that uuid (a revert swaps in a clone; XAPI gives it a new
    uuid). There is no fallback to a name that could reach another object.
    A VDI found by uuid must be on this SR and carry the object's tag, or
    IdentityMismatch is raised. ``source`` (what the object was copied
    from) widens the lookup to copies still named after it.
    """
    names = [ident.name_label] + ([source.name_label] if source else [])
    candidates = target.storage.find_vdis_named(target.sr_ref, names,
                                                 uuids=[provider_id] if provider_id else [])
    return found_in(target, candidates, ident, provider_id)


def found_in(target: SRTarget, candidates: list[VDI], ident: identity.Identity,
             provider_id: str | None = None) -> Found:
    """What :func:`lookup` finds of ``ident`` among ``candidates`` (the VDIs
    named as it, or as its source, and the one with ``provider_id``): one
    lookup can serve several objects."""
    local = [v for v in candidates if v.sr == target.sr_ref]
    vdi: VDI | None = None
    if provider_id:
        recorded = next((v for v in candidates if v.uuid == provider_id), None)
        if recorded is not None:
            _check_recorded(target, ident, recorded)
            vdi = recorded
        else:
            vdi = pick([v for v in local if provider_id in identity.replaced(v.other_config)],
                       ident)
            if vdi is None:
                LOG.debug("No VDI %s for %s on SR %s: it is gone", provider_id,
                          ident.name_label, target.sr_uuid)
    else:
        vdi = pick(local, ident)
    leftovers = tuple(v for v in local if v != vdi and (
        ident.made_for(v.uuid, v.other_config) or (vdi is not None and (
            _copy_in_making_of(v, vdi)
            or (_is_ours(v, ident) and vdi.uuid in identity.replaced(v.other_config))))))
    marked = tuple(v for v in local if identity.marker_source(
        v.other_config.get(ident.making_key, "")) == v.uuid)
    return Found(vdi, leftovers, marked)


def find_vdi(target: SRTarget, ident: identity.Identity,
             provider_id: str | None = None) -> VDI | None:
    """The VDI of ``ident`` on the back end's SR, or None (see lookup). 1 call."""
    return lookup(target, ident, provider_id).vdi


def _check_recorded(target: SRTarget, ident: identity.Identity, vdi: VDI) -> None:
    if vdi.sr != target.sr_ref:
        raise exception.IdentityMismatch(
            operation="use", vdi_uuid=vdi.uuid,
            found="on another SR, not SR %s of back end %s" % (target.sr_uuid,
                                                              target.backend),
            expected="%s=%s on SR %s" % (ident.tag_key, ident.id, target.sr_uuid))
    if not ident.matches(vdi.other_config):
        raise exception.IdentityMismatch(
            operation="use", vdi_uuid=vdi.uuid,
            found=ident.describe(vdi.other_config),
            expected="%s=%s" % (ident.tag_key, ident.id))


def _copy_in_making_of(vdi: VDI, source: VDI) -> bool:
    """A copy of ``source`` whose identity was never set (still named after
    it, carrying a making mark with its uuid): garbage once it is deleted."""
    return vdi.uuid != source.uuid and any(
        identity.marker_source(v) == source.uuid for k, v in vdi.other_config.items()
        if k.startswith(identity.MAKING_PREFIX))


def _is_ours(vdi: VDI, ident: identity.Identity) -> bool:
    """Tagged as ``ident`` and an object of its own (not a copy in making)."""
    return (vdi.managed and ident.matches(vdi.other_config)
            and not (ident.kind == "volume" and vdi.is_a_snapshot)
            and not identity.is_copy_in_making(vdi.uuid, vdi.other_config))


def pick(candidates: list[VDI], ident: identity.Identity) -> VDI | None:
    """The VDI that is ``ident``: tagged, managed, settled, and the oldest.

    A VDI that already held the volume (a finished earlier create, perhaps
    with data on it) is older than any duplicate a retry makes, so it wins,
    and every caller picks the same winner. A volume is never a snapshot
    (XAPI copies a volume's tags onto its snapshots until they are
    re-tagged), and never a copy still carrying a making marker. A VDI that
    replaces another one still present is a revert that has not finished
    its swap: the one it replaces is still the volume. Two VDIs with the
    same stamp cannot be told apart, so the lookup refuses rather than guess.
    """
    ours = [v for v in candidates if _is_ours(v, ident)]
    present = {v.uuid for v in ours}
    ours = [v for v in ours if not present.intersection(identity.replaced(v.other_config))]
    if not ours:
        return None
    ours.sort(key=lambda v: (identity.created(v.other_config), v.uuid))
    first = ours[0]
    twins = [v.uuid for v in ours[1:]
             if identity.created(v.other_config) == identity.created(first.other_config)]
    if twins:
        raise exception.XensmError(
            "VDIs %s all claim %s with one creation stamp; look it up by its "
            "recorded provider_id, or remove the duplicate (xensm reconcile lists it)."
            % (", ".join([first.uuid, *twins]), ident.name_label))
    return first


# -- tasks --------------------------------------------------------------------


def not_found(target: SRTarget, ident: identity.Identity) -> exception.NotFound:
    if ident.kind == "snapshot":
        return exception.SnapshotNotFound(snapshot_id=ident.id, sr_uuid=target.sr_uuid)
    return exception.VolumeNotFound(volume_id=ident.id, sr_uuid=target.sr_uuid)


class LookupTask(XensmTask):
    """Find ``ident``, and what was made for it, for a delete. 1 call."""

    default_provides = "found"

    def execute(self, target: SRTarget, ident: identity.Identity,
                provider_id: str | None, source_ident: identity.Identity | None) -> Found:
        return lookup(target, ident, provider_id, source_ident)


class _MakeVdiTask(XensmTask):
    """A task whose one side effect is a new VDI; revert destroys it."""

    default_provides = "vdi_ref"

    def revert(self, target: SRTarget, result: Any, **kwargs: Any) -> None:
        if failed(result):
            return
        destroy_quietly(target, result)


class CreateVdiTask(XensmTask):
    """VDI.create, named and tagged in the one call. 1 call.

    Revert destroys the VDI; when the answer was lost and XAPI may still
    make it (the call timed out), revert watches for it -- a VDI carrying
    the very creation stamp this attempt sent -- for the claim's lease and
    destroys it when it lands, so a create that lands late never outlives
    a delete that came first. It watches only while the create's claim is
    surely held (two thirds of its lease), so a retry of the same id waits
    rather than meets it. 1 call per second watched.
    """

    default_provides = "vdi_ref"
    #: Seconds between looks while watching for a late VDI.
    WATCH_INTERVAL = 1.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: dict[str, str] = {}

    def execute(self, target: SRTarget, ident: identity.Identity,
                size_bytes: int) -> str:
        self.sent = ident.tags()
        return target.storage.create_vdi(target.sr_ref, size_bytes,
                                          ident.name_label, self.sent)

    def revert(self, target: SRTarget, ident: identity.Identity, claim: str, result: Any,
               flow_failures: Any = None, **kwargs: Any) -> None:
        if not failed(result):
            destroy_quietly(target, result)
        elif outcome_unknown(flow_failures):
            self._watch(target, ident, claim)

    def _watch(self, target: SRTarget, ident: identity.Identity, claim: str) -> None:
        # Only while the claim is surely ours: until two thirds of its lease
        # (a call timeout at most is left for giving it back), so a retry
        # that takes it over once the lease ran out never meets this watch.
        # A VDI landing later is found by the volume's delete or by reconcile.
        stamp = self.sent.get(identity.CREATED_TAG)
        watch = 2 * target.lease / 3 - identity.marker_age(claim)
        deadline = time.monotonic() + watch
        LOG.warning("VDI.create for %s may still land on SR %s: watching for it for "
                    "%.0f s to remove it.", ident.name_label, target.sr_uuid, watch)
        while True:
            try:
                late = [v for v in target.storage.find_vdis(target.sr_ref, ident.name_label)
                        if v.other_config.get(identity.CREATED_TAG) == stamp]
            except exception.XensmError as exc:
                LOG.error("Could not look for the late VDI of %s (%s); deleting %s "
                          "finds it if it lands.", ident.name_label, exc, ident.name_label)
                return
            if late:
                destroy_each(target, late, "made late for %s" % ident.name_label)
                return
            if time.monotonic() + self.WATCH_INTERVAL >= deadline:
                LOG.warning("No late VDI for %s appeared on SR %s.", ident.name_label,
                            target.sr_uuid)
                return
            time.sleep(self.WATCH_INTERVAL)


class SnapshotVdiTask(_MakeVdiTask):
    """VDI.snapshot of ``vdi``."""

    def execute(self, target: SRTarget, vdi: VDI) -> str:
        return target.storage.snapshot_vdi(vdi.ref)


class CloneVdiTask(_MakeVdiTask):
    """VDI.clone of ``vdi`` (a writable copy)."""

    def execute(self, target: SRTarget, vdi: VDI) -> str:
        return target.storage.clone_vdi(vdi.ref)


class MarkSourceTask(XensmTask):
    """Mark the source with ``ident``'s making key before XAPI copies it.

    The copy inherits the mark, so a copy whose answer was lost is found
    and known as made for ``ident`` (Found.leftovers), by the revert below
    or by the object's later delete. Copies for one object take turns on
    the mark. 1 call.

    Revert removes copies made for ``ident`` (the answer to the copy was
    lost) and the mark -- but keeps the mark when the copy may still be
    running inside XAPI (its call timed out) and none was found: the mark
    is then what lets the late copy be found.
    """

    default_provides = "mark"

    def __init__(self, source_key: str = "source_vdi", **kwargs: Any) -> None:
        kwargs.setdefault("rebind", {"source_vdi": source_key})
        super().__init__(**kwargs)

    def execute(self, target: SRTarget, ident: identity.Identity,
                source_vdi: VDI) -> str:
        # A mark already there for ``ident`` is an earlier attempt's at the
        # same object (Cinder never makes one object twice at once): it
        # names the same copies, so it is taken as ours.
        value = identity.marker(source_vdi.uuid)
        take_turn(target, "VDI", source_vdi.ref, ident.making_key, value,
                  mine=lambda held: True)
        return value

    def revert(self, target: SRTarget, ident: identity.Identity, source_vdi: VDI,
               result: Any, flow_failures: Any = None, **kwargs: Any) -> None:
        if failed(result):
            return
        storage = target.storage
        try:
            strays = [v for v in storage.find_vdis(target.sr_ref, source_vdi.name_label)
                      if ident.made_for(v.uuid, v.other_config)]
        except exception.XensmError as exc:
            LOG.error("Could not look for copies made for %s of VDI %s: %s; the mark "
                      "stays so that deleting %s finds them.", ident.name_label,
                      source_vdi.uuid, exc, ident.name_label)
            return
        for stray in strays:
            destroy_quietly(target, stray.ref)
        if not strays and outcome_unknown(flow_failures):
            LOG.warning("The copy of VDI %s for %s may still be made by XAPI; its "
                        "mark stays so that deleting %s removes it.",
                        source_vdi.uuid, ident.name_label, ident.name_label)
            return
        unmark(target, ident, source_vdi)


class UnmarkSourceTask(XensmTask):
    """Take the making mark off the source once the copy has its identity.
    1 call. When that fails the verb fails and undoes itself (MarkSourceTask
    removes the mark again)."""

    def __init__(self, source_key: str = "source_vdi", **kwargs: Any) -> None:
        kwargs.setdefault("rebind", {"source_vdi": source_key})
        super().__init__(**kwargs)

    def execute(self, target: SRTarget, ident: identity.Identity,
                source_vdi: VDI) -> None:
        target.storage.remove_other_config_key("VDI", source_vdi.ref, ident.making_key)


def unmark(target: SRTarget, ident: identity.Identity, source_vdi: VDI) -> None:
    undo("the mark %s on VDI %s" % (ident.making_key, source_vdi.uuid),
         target.storage.remove_other_config_key, "VDI", source_vdi.ref, ident.making_key)


class TagVdiTask(XensmTask):
    """Give the new VDI its identity: name label, then other_config. 2 calls.

    XAPI's snapshot and clone copy the source's name and tags (and the
    making mark, which names the copy as ``ident``'s until the tags
    replace it). Revert has nothing to undo -- the VDI it renamed is
    destroyed by the task that made it.
    """

    def execute(self, target: SRTarget, ident: identity.Identity, vdi_ref: str) -> None:
        target.storage.set_vdi_identity(vdi_ref, ident.name_label, ident.tags())


class IdentifyVdiTask(XensmTask):
    """Resolve the VDI just made to its record, keeping one per identity.

    Looks the identity up by name. What an earlier attempt (a retry, a
    concurrent duplicate that held the claim before us) already made
    wins, whatever the clocks say, and ours is destroyed, so exactly one
    remains and every caller gets that one. 1 call (2 when ours loses).
    """

    default_provides = "vdi"

    def execute(self, target: SRTarget, ident: identity.Identity, vdi_ref: str) -> VDI:
        found = target.storage.find_vdis(target.sr_ref, ident.name_label)
        earlier = pick([v for v in found if v.ref != vdi_ref], ident)
        if earlier is not None:
            LOG.warning("%s already had VDI %s on SR %s (an earlier attempt); "
                        "keeping it and destroying the one just made.",
                        ident.name_label, earlier.uuid, target.sr_uuid)
            # Ours carries the tag like the winner: left behind, nothing could
            # tell it from an object of its own, so failing to destroy it fails
            # the verb (whose undo tries once more) rather than leak it.
            try:
                target.storage.destroy_vdi(vdi_ref)
            except GONE:
                pass
            except exception.XensmError as exc:
                LOG.warning("Destroying VDI %s failed (%s); trying once more.", vdi_ref, exc)
                try:
                    target.storage.destroy_vdi(vdi_ref)
                except GONE:
                    pass
            return earlier
        mine = next((v for v in found if v.ref == vdi_ref and _is_ours(v, ident)), None)
        if mine is None:
            # Renamed away or untagged by somebody else between our calls.
            raise exception.XensmError(
                "VDI %s for %s vanished or lost its tag right after it was made "
                "on SR %s." % (vdi_ref, ident.name_label, target.sr_uuid))
        return mine


class ResizeVdiTask(XensmTask):
    """Grow ``vdi`` to ``new_size_bytes`` (no-op when already that big).

    Revert cannot shrink a VDI (SM refuses), so it only logs.
    """

    def __init__(self, vdi_key: str = "vdi", **kwargs: Any) -> None:
        super().__init__(rebind={"vdi": vdi_key}, **kwargs)

    def execute(self, target: SRTarget, vdi: VDI, new_size_bytes: int) -> None:
        if new_size_bytes > vdi.virtual_size:
            target.storage.resize_vdi(vdi.ref, new_size_bytes,
                                       online=resize_online(target, vdi))


class DestroyFoundTask(XensmTask):
    """Destroy the object's VDI and everything made for it (Found), and take
    its making mark off any source. Nothing to revert: a delete retried
    after a failure finds what is left. 1 call per VDI."""

    def execute(self, target: SRTarget, ident: identity.Identity, found: Found) -> bool:
        if found.vdi is None:
            LOG.warning("%s has no VDI on SR %s; treating the delete as done.",
                        ident.name_label, target.sr_uuid)
        destroyed = destroy_each(target, [found.vdi] if found.vdi else [], ident.name_label)
        destroy_each(target, found.leftovers,
                     "made for %s but never finished" % ident.name_label)
        for source in found.marked_sources:
            unmark(target, ident, source)
        return destroyed


def destroy_each(target: SRTarget, vdis: Iterable[VDI], what: str) -> bool:
    """Destroy the VDIs (``what`` they are, for the log); one already gone
    counts as done. Whether any was destroyed. 1 call each."""
    destroyed = False
    for vdi in vdis:
        LOG.info("Destroying VDI %s on SR %s (%s).", vdi.uuid, target.sr_uuid, what)
        try:
            target.storage.destroy_vdi(vdi.ref)
            destroyed = True
        except GONE:
            LOG.warning("VDI %s (%s) vanished before it was destroyed.", vdi.uuid, what)
    return destroyed


def destroy_quietly(target: SRTarget, vdi_ref: str) -> None:
    """Destroy a VDI this flow made, while undoing."""
    undo("VDI %s on SR %s" % (vdi_ref, target.sr_uuid), target.storage.destroy_vdi,
         vdi_ref)


def attached(target: Target, vdi: VDI) -> bool:
    """Whether any VBD of the VDI is attached. 1 call per VBD."""
    return target.storage.any_attached(vdi.vbds)


def refuse_attached(target: Target, ident: identity.Identity, vdi: VDI) -> None:
    """Raise InUse while ``vdi`` (the object's) is attached to a VM. 1 call per VBD."""
    if attached(target, vdi):
        raise exception.InUse(
            kind=ident.kind.capitalize(), name=ident.id,
            reason="its VDI %s is attached to a VM; detach it first" % vdi.uuid)


def resize_online(target: SRTarget, vdi: VDI) -> bool:
    """Whether ``vdi`` is resized while attached (VDI.resize_online)."""
    return target.online_resize and attached(target, vdi)


def check_copy_allowed(target: SRTarget, vdi: VDI, operation: str) -> None:
    """Refuse what the SR would refuse: snapshot of a snapshot, deep chains.
    No call, 1 when the VDI has a VHD parent (the chain's depth)."""
    if vdi.is_a_snapshot and operation == "snapshot" and not target.snapshot_of_snapshot:
        raise target.refuse(
            "snapshot VDI %s" % vdi.uuid,
            "it is itself a snapshot, and %s SRs cannot snapshot a snapshot; "
            "clone it to a volume first" % target.sr_type)
    if target.chain_limit is None or not vdi.vhd_parent:
        return
    depth = chain_depth(target, vdi)
    if depth >= target.chain_limit:
        raise target.refuse(
            "%s VDI %s" % (operation, vdi.uuid),
            "its VHD chain is %d deep and the limit is %d (xensm_snapshot_chain_limit; "
            "XAPI itself refuses at %d). Delete older snapshots of this volume and "
            "let the SR coalesce the chain, then retry"
            % (depth, target.chain_limit, XAPI_MAX_CHAIN))


def chain_depth(target: SRTarget, vdi: VDI) -> int:
    """VHDs in the VDI's chain, itself included. 1 call (the base copies)."""
    parents = {b.uuid: b.vhd_parent for b in target.storage.base_copies(target.sr_ref)}
    depth, parent, seen = 1, vdi.vhd_parent, set()
    while parent and parent not in seen:
        seen.add(parent)
        depth += 1
        parent = parents.get(parent)
    return depth


class AdoptTagsTask(XensmTask):
    """Tag an existing VDI as the volume; revert puts back its old tags."""

    default_provides = "previous_other_config"

    def execute(self, target: SRTarget, ident: identity.Identity,
                vdi: VDI) -> dict[str, str]:
        target.storage.set_vdi_other_config(vdi.ref, ident.tags(vdi.other_config))
        return dict(vdi.other_config)

    def revert(self, target: SRTarget, vdi: VDI, result: Any, **kwargs: Any) -> None:
        if failed(result):
            return
        undo("the tags of VDI %s" % vdi.uuid, target.storage.set_vdi_other_config,
             vdi.ref, result)


class AdoptNameTask(XensmTask):
    """Rename an existing VDI after the volume; revert puts back its old name."""

    def execute(self, target: SRTarget, ident: identity.Identity, vdi: VDI) -> str:
        target.storage.set_vdi_name_label(vdi.ref, ident.name_label)
        return vdi.name_label

    def revert(self, target: SRTarget, vdi: VDI, result: Any, **kwargs: Any) -> None:
        if failed(result):
            return
        undo("the name of VDI %s" % vdi.uuid, target.storage.set_vdi_name_label,
             vdi.ref, result)
