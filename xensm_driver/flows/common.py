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

import contextlib
import dataclasses
import time
import uuid as uuidlib
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

from oslo_log import log as logging
from taskflow import engines
from taskflow import task
from taskflow.persistence import base as persistence_base
from taskflow.persistence import models as persistence_models
from taskflow.types import failure

from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.xapi.storage import VDI

if TYPE_CHECKING:
    from taskflow.flow import Flow

    from xensm_driver.backends.base import Backend
    from xensm_driver.backends.sm import SRBackend

LOG = logging.getLogger(__name__)

#: Errors that mean the object is already gone.
GONE = (exception.HandleInvalid, exception.UuidInvalid)


def run(flow: Flow, **store: Any) -> Any:
    """Run ``flow`` with ``store``; return the whole result store."""
    # A flow detail of its own and no logbook: nothing to save it in, and
    # taskflow warns about a missing logbook on every run otherwise.
    detail = persistence_models.FlowDetail(flow.name, str(uuidlib.uuid4()))
    engine = engines.load(flow, store=store, engine="serial", backend=_UNPERSISTED,
                          flow_detail=detail)
    engine.run()
    return engine.storage.fetch_all()


class _Unpersisted(persistence_base.Backend, persistence_base.Connection):
    """A taskflow persistence backend that keeps nothing.

    A flow here lives and dies in one call: nothing resumes it from a
    logbook. taskflow's default in-memory backend still copies every atom
    state change into a path-based store under a lock, which was most of
    the engine's cost (issue 15). Handing each update straight back keeps
    the engine's own records (in its Storage) and drops the copy.
    """

    def __init__(self) -> None:
        persistence_base.Backend.__init__(self, {})

    # Backend
    def get_connection(self) -> _Unpersisted:
        return self

    def close(self) -> None:
        return None

    # Connection
    @property
    def backend(self) -> _Unpersisted:
        return self

    def upgrade(self) -> None:
        return None

    def validate(self) -> None:
        return None

    def clear_all(self) -> None:
        return None

    def update_atom_details(self, atom_detail: Any) -> Any:
        return atom_detail

    def update_flow_details(self, flow_detail: Any, ignore_missing: bool = False) -> Any:
        return flow_detail

    def save_logbook(self, book: Any) -> Any:
        return book

    def destroy_logbook(self, book_uuid: str) -> None:
        return None

    def _nothing(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("flows are not persisted; nothing can be read back")

    get_logbook = get_logbooks = get_flows_for_book = _nothing
    get_flow_details = get_atom_details = get_atoms_for_flow = _nothing


_UNPERSISTED = _Unpersisted()


def _failed(result: Any) -> bool:
    return isinstance(result, failure.Failure)


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


def lookup(backend: SRBackend, ident: identity.Identity, provider_id: str | None = None,
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
    candidates = backend.storage.find_vdis_named(backend.sr_ref, names, uuid=provider_id)
    local = [v for v in candidates if v.sr == backend.sr_ref]
    vdi: VDI | None = None
    if provider_id:
        recorded = next((v for v in candidates if v.uuid == provider_id), None)
        if recorded is not None:
            _check_recorded(backend, ident, recorded)
            vdi = recorded
        else:
            vdi = pick([v for v in local if provider_id in identity.replaced(v.other_config)],
                       ident)
            if vdi is None:
                LOG.debug("No VDI %s for %s on SR %s: it is gone", provider_id,
                          ident.name_label, backend.sr_uuid)
    else:
        vdi = pick(local, ident)
    leftovers = tuple(v for v in local if v != vdi and (
        ident.made_for(v.uuid, v.other_config) or (vdi is not None and (
            _copy_in_making_of(v, vdi)
            or (_is_ours(v, ident) and vdi.uuid in identity.replaced(v.other_config))))))
    marked = tuple(v for v in local if identity.marker_source(
        v.other_config.get(ident.making_key, "")) == v.uuid)
    return Found(vdi, leftovers, marked)


def find_vdi(backend: SRBackend, ident: identity.Identity,
             provider_id: str | None = None) -> VDI | None:
    """The VDI of ``ident`` on the back end's SR, or None (see lookup). 1 call."""
    return lookup(backend, ident, provider_id).vdi


def _check_recorded(backend: SRBackend, ident: identity.Identity, vdi: VDI) -> None:
    if vdi.sr != backend.sr_ref:
        raise exception.IdentityMismatch(
            operation="use", vdi_uuid=vdi.uuid,
            found="on another SR, not SR %s of back end %s" % (backend.sr_uuid,
                                                              backend.name),
            expected="%s=%s on SR %s" % (ident.tag_key, ident.id, backend.sr_uuid))
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

class XensmTask(task.Task):
    """A task named after its class, so flow errors name the step."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", type(self).__name__)
        super().__init__(**kwargs)


class FindVdiTask(XensmTask):
    """Find the VDI of ``ident`` (must exist unless ``missing_ok``). 1 call."""

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
            raise not_found(backend, ident)
        return vdi


def not_found(backend: SRBackend, ident: identity.Identity) -> exception.NotFound:
    if ident.kind == "snapshot":
        return exception.SnapshotNotFound(snapshot_id=ident.id, sr_uuid=backend.sr_uuid)
    return exception.VolumeNotFound(volume_id=ident.id, sr_uuid=backend.sr_uuid)


class LookupTask(XensmTask):
    """Find ``ident``, and what was made for it, for a delete. 1 call."""

    default_provides = "found"

    def execute(self, backend: SRBackend, ident: identity.Identity,
                provider_id: str | None, source_ident: identity.Identity | None) -> Found:
        return lookup(backend, ident, provider_id, source_ident)


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


# -- taking turns -------------------------------------------------------------
# XAPI's add_to_other_config refuses a key that is there (MAP_DUPLICATE_KEY):
# a compare-and-set the whole pool agrees on, whichever host or process asks.

def lease(backend: Backend) -> float:
    """How long a claim or marker is honoured before it counts as left by a
    process that died: longer than any one call may take, with retries --
    to XAPI or to the back end's array."""
    longest = max(backend.options.xenapi_call_timeout,
                  backend.options.values.get("xensm_sf_api_timeout") or 0.0)
    return max(30.0, 3 * longest)


def take_turn(backend: Backend, cls: str, ref: str, key: str, value: str,
              mine: Callable[[str], bool]) -> None:
    """Add ``key`` to the other_config of ``ref``; wait while somebody else
    holds it, and take it over once its holder's lease ran out.

    ``mine(held)`` says whether a held value is this attempt's own (a lost
    answer to our own add, or an earlier attempt at the same thing).
    """
    storage = backend.storage
    deadline = time.monotonic() + lease(backend)
    delay = 0.02
    while True:
        try:
            storage.add_other_config_key(cls, ref, key, value)
            return
        except exception.XapiConnectionError as exc:
            if not exc.sent:
                raise
            held = storage.other_config(cls, ref).get(key)
            if held is not None and mine(held):
                return                          # the add was carried out
            raise
        except exception.XapiError as exc:
            if exc.code != "MAP_DUPLICATE_KEY":
                raise
        held = storage.other_config(cls, ref).get(key)
        if held is None:
            continue                            # released meanwhile
        if mine(held):
            return
        if identity.marker_age(held) > lease(backend) or time.monotonic() > deadline:
            # Left by an attempt that died or lost its answers. Two takers
            # may both remove it; the next add lets only one of them in.
            LOG.warning("Taking over %s on %s %s (held: %s).", key, cls, ref, held)
            storage.remove_other_config_key(cls, ref, key)
            deadline = time.monotonic() + lease(backend)
            continue
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def claim(backend: Backend, ident: identity.Identity) -> str:
    """Take ``ident``'s claim on the back end's claim holder (its SR, or the
    pool), waiting while another holds it. 1 call. Returns the token."""
    token = "%s %.6f" % (uuidlib.uuid4(), time.time())
    cls, ref = backend.claim_holder()
    take_turn(backend, cls, ref, ident.claim_key, token, mine=lambda held: held == token)
    return token


class ClaimTask(XensmTask):
    """Hold ``ident``'s claim while its storage is made, so that concurrent
    creates of one id take turns: the second finds what the first made
    (IdentifyVdiTask, or a SolidFire maker's lookup by name) instead of
    racing it. 1 call (more while another holds it). Revert gives it back.

    ``keep_when_unknown``: a failure whose outcome is unknown (a call that
    timed out may still be carried out) keeps the claim until its lease
    runs out, and the object's delete takes its turn (:func:`holding_claim`),
    so it finds what such a call made late instead of missing it.
    """

    default_provides = "claim"

    def __init__(self, keep_when_unknown: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keep_when_unknown = keep_when_unknown

    def execute(self, backend: Backend, ident: identity.Identity) -> str:
        return claim(backend, ident)

    def revert(self, backend: Backend, ident: identity.Identity, result: Any,
               flow_failures: Any = None, **kwargs: Any) -> None:
        if _failed(result):
            return
        if self.keep_when_unknown and _outcome_unknown(flow_failures):
            _keep_claim(backend, ident)
            return
        release_claim(backend, ident)


@contextlib.contextmanager
def holding_claim(backend: Backend, ident: identity.Identity, *,
                  keep_when_unknown: bool = False) -> Iterator[None]:
    """Hold ``ident``'s claim around a verb that is no flow (a SolidFire
    snapshot, a delete), given back as ClaimTask and ReleaseClaimTask do:
    never failing the verb, and kept past a failure whose outcome is
    unknown with ``keep_when_unknown``. 2 calls."""
    claim(backend, ident)
    try:
        yield
    except exception.XensmError as exc:
        if keep_when_unknown and _unknown(exc):
            _keep_claim(backend, ident)
        else:
            release_claim(backend, ident)
        raise
    except BaseException:
        release_claim(backend, ident)
        raise
    release_claim(backend, ident)


def _keep_claim(backend: Backend, ident: identity.Identity) -> None:
    LOG.warning("%s failed with an outcome unknown (a call that timed out may still "
                "be carried out): its claim %s stays until its lease runs out, so "
                "that a delete or retry sees what that call makes.",
                ident.name_label, ident.claim_key)


class ReleaseClaimTask(XensmTask):
    """Give the claim back once the object is made and identified. 1 call.

    Never fails the verb: once the release may have reached XAPI, the next
    creator of this id may already hold the claim and have been handed our
    object as the one that was there first, so undoing the create would
    pull it from under them. The release is idempotent, so it is tried
    twice; a claim still left is taken over when its lease runs out.
    """

    def execute(self, backend: Backend, ident: identity.Identity) -> None:
        cls, ref = backend.claim_holder()
        try:
            backend.storage.remove_other_config_key(cls, ref, ident.claim_key)
        except exception.XensmError as exc:
            LOG.warning("Giving back the claim %s on %s %s failed (%s); trying once "
                        "more.", ident.claim_key, cls, ref, exc)
            release_claim(backend, ident)


def release_claim(backend: Backend, ident: identity.Identity) -> None:
    cls, ref = backend.claim_holder()
    undo("the claim %s on %s %s" % (ident.claim_key, cls, ref),
         backend.storage.remove_other_config_key, cls, ref, ident.claim_key)


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

    def execute(self, backend: SRBackend, ident: identity.Identity,
                source_vdi: VDI) -> str:
        # A mark already there for ``ident`` is an earlier attempt's at the
        # same object (Cinder never makes one object twice at once): it
        # names the same copies, so it is taken as ours.
        value = identity.marker(source_vdi.uuid)
        take_turn(backend, "VDI", source_vdi.ref, ident.making_key, value,
                  mine=lambda held: True)
        return value

    def revert(self, backend: SRBackend, ident: identity.Identity, source_vdi: VDI,
               result: Any, flow_failures: Any = None, **kwargs: Any) -> None:
        if _failed(result):
            return
        storage = backend.storage
        try:
            strays = [v for v in storage.find_vdis(backend.sr_ref, source_vdi.name_label)
                      if ident.made_for(v.uuid, v.other_config)]
        except exception.XensmError as exc:
            LOG.error("Could not look for copies made for %s of VDI %s: %s; the mark "
                      "stays so that deleting %s finds them.", ident.name_label,
                      source_vdi.uuid, exc, ident.name_label)
            return
        for stray in strays:
            destroy_quietly(backend, stray.ref)
        if not strays and _outcome_unknown(flow_failures):
            LOG.warning("The copy of VDI %s for %s may still be made by XAPI; its "
                        "mark stays so that deleting %s removes it.",
                        source_vdi.uuid, ident.name_label, ident.name_label)
            return
        unmark(backend, ident, source_vdi)


def _outcome_unknown(flow_failures: Any) -> bool:
    """Whether a failure of this flow may still be carried out by XAPI (or
    the back end's array)."""
    return any(fail.exception is not None and _unknown(fail.exception)
               for fail in (flow_failures or {}).values())


def _unknown(exc: BaseException) -> bool:
    """Whether the call that raised ``exc`` may still be carried out."""
    if isinstance(exc, (exception.XapiTimeout, exception.TaskTimeout)):
        return True
    if isinstance(exc, exception.XapiConnectionError):
        return bool(exc.sent)
    if isinstance(exc, exception.ArrayConnectionError):
        return bool(exc.kwargs.get("sent"))
    return False


class UnmarkSourceTask(XensmTask):
    """Take the making mark off the source once the copy has its identity.
    1 call. When that fails the verb fails and undoes itself (MarkSourceTask
    removes the mark again)."""

    def __init__(self, source_key: str = "source_vdi", **kwargs: Any) -> None:
        kwargs.setdefault("rebind", {"source_vdi": source_key})
        super().__init__(**kwargs)

    def execute(self, backend: SRBackend, ident: identity.Identity,
                source_vdi: VDI) -> None:
        backend.storage.remove_other_config_key("VDI", source_vdi.ref, ident.making_key)


def unmark(backend: SRBackend, ident: identity.Identity, source_vdi: VDI) -> None:
    undo("the mark %s on VDI %s" % (ident.making_key, source_vdi.uuid),
         backend.storage.remove_other_config_key, "VDI", source_vdi.ref, ident.making_key)


class TagVdiTask(XensmTask):
    """Give the new VDI its identity: name label, then other_config. 2 calls.

    XAPI's snapshot and clone copy the source's name and tags (and the
    making mark, which names the copy as ``ident``'s until the tags
    replace it). Revert has nothing to undo -- the VDI it renamed is
    destroyed by the task that made it.
    """

    def execute(self, backend: SRBackend, ident: identity.Identity, vdi_ref: str) -> None:
        backend.storage.set_vdi_identity(vdi_ref, ident.name_label, ident.tags())


class IdentifyVdiTask(XensmTask):
    """Resolve the VDI just made to its record, keeping one per identity.

    Looks the identity up by name. What an earlier attempt (a retry, a
    concurrent duplicate that held the claim before us) already made
    wins, whatever the clocks say, and ours is destroyed, so exactly one
    remains and every caller gets that one. 1 call (2 when ours loses).
    """

    default_provides = "vdi"

    def execute(self, backend: SRBackend, ident: identity.Identity, vdi_ref: str) -> VDI:
        found = backend.storage.find_vdis(backend.sr_ref, ident.name_label)
        earlier = pick([v for v in found if v.ref != vdi_ref], ident)
        if earlier is not None:
            LOG.warning("%s already had VDI %s on SR %s (an earlier attempt); "
                        "keeping it and destroying the one just made.",
                        ident.name_label, earlier.uuid, backend.sr_uuid)
            # Ours carries the tag like the winner: left behind, nothing could
            # tell it from an object of its own, so failing to destroy it fails
            # the verb (whose undo tries once more) rather than leak it.
            try:
                backend.storage.destroy_vdi(vdi_ref)
            except GONE:
                pass
            except exception.XensmError as exc:
                LOG.warning("Destroying VDI %s failed (%s); trying once more.", vdi_ref, exc)
                try:
                    backend.storage.destroy_vdi(vdi_ref)
                except GONE:
                    pass
            return earlier
        mine = next((v for v in found if v.ref == vdi_ref and _is_ours(v, ident)), None)
        if mine is None:
            # Renamed away or untagged by somebody else between our calls.
            raise exception.XensmError(
                "VDI %s for %s vanished or lost its tag right after it was made "
                "on SR %s." % (vdi_ref, ident.name_label, backend.sr_uuid))
        return mine


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


class DestroyFoundTask(XensmTask):
    """Destroy the object's VDI and everything made for it (Found), and take
    its making mark off any source. Nothing to revert: a delete retried
    after a failure finds what is left. 1 call per VDI."""

    def execute(self, backend: SRBackend, ident: identity.Identity, found: Found) -> bool:
        if found.vdi is None:
            LOG.warning("%s has no VDI on SR %s; treating the delete as done.",
                        ident.name_label, backend.sr_uuid)
        destroyed = destroy_each(backend, [found.vdi] if found.vdi else [], ident.name_label)
        destroy_each(backend, found.leftovers,
                     "made for %s but never finished" % ident.name_label)
        for source in found.marked_sources:
            unmark(backend, ident, source)
        return destroyed


def destroy_each(backend: SRBackend, vdis: Iterable[VDI], what: str) -> bool:
    """Destroy the VDIs (``what`` they are, for the log); one already gone
    counts as done. Whether any was destroyed. 1 call each."""
    destroyed = False
    for vdi in vdis:
        LOG.info("Destroying VDI %s on SR %s (%s).", vdi.uuid, backend.sr_uuid, what)
        try:
            backend.storage.destroy_vdi(vdi.ref)
            destroyed = True
        except GONE:
            LOG.warning("VDI %s (%s) vanished before it was destroyed.", vdi.uuid, what)
    return destroyed


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
