"""What the soak believes is on storage, and the checker that compares.

The model knows every object the walk ever created: its back end, its
recorded uuid (``provider_id``), its size and what its first bytes must
read. The checker takes what storage holds (an :class:`Inventory`, read
from XAPI and the Element array) and what each live object reads, and
reports every object storage holds that no live object owns (a leak) and
every live object that is not as the model says (wrong). It does no I/O,
so the unit tests feed it by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from typing import Any

from xensm_driver import identity
from xensm_driver.cmd.demo import pattern

KiB = 1 << 10
MiB = 1 << 20
GiB = identity.GiB

#: Every write puts a pattern here; a long write also at LONG_AT (another
#: 2 MiB VHD block, so a revert that copies only allocated blocks shows).
PIECE = 64 * KiB
LONG_AT = 2 * MiB
#: The bytes of each volume the soak writes and reads back.
REGION = LONG_AT + PIECE

#: SR types the soak's back ends use: SM-native (one SR, a VDI per object)
#: or SolidFire (an array volume and its own SR per volume).
SOLIDFIRE = "solidfire"


# -- content -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Content:
    """The first REGION bytes of a disk: a long write's seed (pattern at 0
    and at LONG_AT, zeros between), overlaid by a short write's (pattern at
    0). Both None: zeros."""

    long: str | None = None
    short: str | None = None

    def write(self, seed: str, long: bool) -> Content:
        return Content(seed, None) if long else Content(self.long, seed)

    def render(self) -> bytes:
        return render(self)

    def describe(self) -> str:
        if self.long is None and self.short is None:
            return "zeros"
        parts = []
        if self.long is not None:
            parts.append("long write %s" % self.long)
        if self.short is not None:
            parts.append("short write %s" % self.short)
        return " + ".join(parts)


def write_buffer(seed: str, long: bool) -> bytes:
    """What a write uploads from offset 0 (zeros are holes on the wire)."""
    head = pattern(seed + ":0", PIECE)
    if not long:
        return head
    return head + bytes(LONG_AT - PIECE) + pattern(seed + ":1", PIECE)


def render(content: Content) -> bytes:
    out = bytearray(REGION)
    if content.long is not None:
        out[:] = write_buffer(content.long, True)
    if content.short is not None:
        out[:PIECE] = pattern(content.short + ":0", PIECE)
    return bytes(out)


class Seeds:
    """Which write put a given piece there: turns a wrong read into a story."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_hash: dict[bytes, str] = {hashlib.sha256(bytes(PIECE)).digest(): "zeros"}

    def add(self, seed: str, long: bool) -> None:
        buf = write_buffer(seed, long)
        with self._lock:
            self._by_hash[hashlib.sha256(buf[:PIECE]).digest()] = "write %s" % seed
            if long:
                self._by_hash[hashlib.sha256(buf[LONG_AT:]).digest()] = "write %s" % seed

    def name(self, piece: bytes) -> str:
        with self._lock:
            return self._by_hash.get(hashlib.sha256(piece).digest(), "unknown bytes")

    def explain(self, expected: bytes, got: bytes) -> str:
        """Where ``got`` differs from ``expected``, naming what each holds."""
        if len(got) != len(expected):
            return "read %d bytes, expected %d" % (len(got), len(expected))
        out = []
        for at, end in ((0, PIECE), (PIECE, LONG_AT), (LONG_AT, REGION)):
            if got[at:end] != expected[at:end]:
                if end - at == PIECE:
                    out.append("at %d KiB: %s, expected %s" % (
                        at // KiB, self.name(got[at:end]), self.name(expected[at:end])))
                else:
                    out.append("%d-%d KiB differs" % (at // KiB, end // KiB))
        return "; ".join(out)


# -- objects -------------------------------------------------------------------------

@dataclasses.dataclass
class Obj:
    """A volume or a snapshot the walk created (or tried to)."""

    kind: str                       # "volume" | "snapshot"
    id: str
    backend: str                    # back-end name, e.g. "nfs"
    size_gb: int
    #: "live": exists as recorded; "unsure": a create failed, may exist;
    #: "dead": deleted; "stuck": converge could not settle it.
    state: str = "live"
    provider_id: str | None = None
    provider_location: str | None = None
    #: The volume's VDI now, when it is not the recorded one: an SM revert
    #: swaps a clone of the snapshot in and returns it; like Cinder, the
    #: walk keeps handing the driver the recorded provider_id.
    vdi_uuid: str | None = None
    #: None: unknown (a write, revert or extend failed; converge settles it).
    content: Content | None = dataclasses.field(default_factory=Content)
    volume_id: str | None = None    # a snapshot's volume
    #: What a user retries in the converge phase: ("delete",),
    #: ("extend", gb), ("revert", snapshot id), ("write", seed, long).
    pending: tuple[Any, ...] | None = None
    writes: int = 0
    #: Creation order (revert goes to a volume's latest snapshot only).
    seq: int = 0
    history: list[str] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    @property
    def ident(self) -> identity.Identity:
        return identity.Identity(self.kind, self.id)

    @property
    def current_vdi(self) -> str | None:
        """The uuid of the VDI that holds the object now."""
        return self.vdi_uuid or self.provider_id

    def cinder(self, volume: Obj | None = None) -> dict[str, Any]:
        """The object as Cinder hands it to the driver."""
        if self.kind == "volume":
            return {"id": self.id, "size": self.size_gb, "display_name": "soak",
                    "provider_id": self.provider_id,
                    "provider_location": self.provider_location}
        assert volume is not None
        return {"id": self.id, "volume_id": volume.id, "volume": volume.cinder(),
                "volume_size": self.size_gb, "provider_id": self.provider_id,
                "provider_location": self.provider_location}

    def record(self, update: dict[str, Any] | None) -> None:
        for key in ("provider_id", "provider_location"):
            if update and update.get(key):
                setattr(self, key, update[key])

    def note(self, text: str) -> None:
        self.history.append(text)

    def story(self, last: int = 10) -> str:
        """The last operations on the object, repeats of one failure folded."""
        folded: list[str] = []
        for entry in self.history:
            text = entry.split(" ", 1)[1] if entry.startswith("#") else entry
            prev = folded[-1].split(" ", 1)[1] if folded and folded[-1].startswith("#") else None
            if prev is not None and text == prev:
                continue
            folded.append(entry)
        return " | ".join(folded[-last:]) or "(no operation)"


class Model:
    """Every object of the walk, by id; thread-safe registry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.objects: dict[str, Obj] = {}
        self.seeds = Seeds()

    def add(self, obj: Obj) -> Obj:
        with self._lock:
            self.objects[obj.id] = obj
        return obj

    def get(self, obj_id: str) -> Obj | None:
        with self._lock:
            return self.objects.get(obj_id)

    def all(self, backend: str | None = None) -> list[Obj]:
        with self._lock:
            return [o for o in self.objects.values()
                    if backend is None or o.backend == backend]

    def alive(self, backend: str | None = None) -> list[Obj]:
        """Objects that may be on storage (not dead)."""
        return [o for o in self.all(backend) if o.state != "dead"]

    def snapshots_of(self, volume_id: str) -> list[Obj]:
        return [o for o in self.all() if o.kind == "snapshot" and o.volume_id == volume_id
                and o.state != "dead"]


# -- what storage holds ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class VdiRec:
    uuid: str
    name: str
    tags: tuple[tuple[str, str], ...]        # the xensm-* other_config keys
    size: int
    sr_uuid: str
    sr_name: str
    is_snapshot: bool = False

    def tag(self, key: str) -> str | None:
        return dict(self.tags).get(key)

    def describe(self) -> str:
        return "VDI %s %r tags {%s} %d GiB%s on SR %s (%s)" % (
            self.uuid, self.name, ", ".join("%s=%s" % t for t in self.tags),
            self.size // GiB, " (a snapshot)" if self.is_snapshot else "",
            self.sr_name, self.sr_uuid)


@dataclasses.dataclass(frozen=True)
class ArrayVolume:
    id: int
    name: str
    status: str                 # "active" | "deleted"
    size: int
    attributes: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class ArraySnapshot:
    id: int
    name: str
    volume_id: int


@dataclasses.dataclass
class BackendInventory:
    """What one back end's storage holds."""

    name: str
    sr_type: str
    #: SM-native: the back end's SR; SolidFire: None.
    sr_uuid: str | None = None
    vdis: list[VdiRec] = dataclasses.field(default_factory=list)
    #: SolidFire: SRs named for a volume (name -> uuids).
    srs: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    luns: list[ArrayVolume] = dataclasses.field(default_factory=list)
    array_snapshots: list[ArraySnapshot] = dataclasses.field(default_factory=list)
    access: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Inventory:
    backends: dict[str, BackendInventory]
    #: SRs on the pool that are neither the baseline's nor a back end's
    #: per-volume SRs: (uuid, name).
    stray_srs: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: xensm-tagged VDIs on SRs no soak back end owns.
    stray_vdis: list[VdiRec] = dataclasses.field(default_factory=list)


# -- the checker -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Finding:
    kind: str           # "leaked" | "wrong"
    backend: str
    text: str
    #: What storage object a leak is (one leak seen twice counts once).
    key: str = ""

    def __str__(self) -> str:
        return "%s [%s] %s" % (self.kind.upper(), self.backend, self.text)


def sf_sr_name(volume_id: str) -> str:
    return "xensm-sf-volume-%s" % volume_id


def sf_array_name(obj_id: str) -> str:
    return "xensm-%s" % obj_id


def _owner(model: Model, rec: VdiRec) -> str:
    """What the model knows of the object a stray VDI claims to be."""
    for key in (identity.VOLUME_TAG, identity.SNAPSHOT_TAG):
        oid = rec.tag(key)
        if oid:
            obj = model.get(oid)
            if obj is None:
                return "; tagged %s=%s, unknown to the model" % (key, oid)
            return "; tagged as %s %s (%s, recorded %s): %s" % (
                obj.kind, obj.id, obj.state, obj.provider_id, obj.story())
    return "; untagged"


def check(model: Model, inventory: Inventory,
          reads: dict[str, bytes | None] | None = None) -> list[Finding]:
    """Every leak and every wrong object; ``reads``: object id -> its first
    REGION bytes as read (None: the read failed), for live objects whose
    content the model knows."""
    findings: list[Finding] = []
    reads = reads or {}
    for name, inv in sorted(inventory.backends.items()):
        live = [o for o in model.alive(name) if o.state != "unsure"]
        unsure = {o.id for o in model.alive(name) if o.state == "unsure"}
        if inv.sr_type == SOLIDFIRE:
            findings += _check_solidfire(model, inv, live, unsure)
        else:
            findings += _check_sm(model, inv, live, unsure)
        for obj in live:
            if obj.state == "stuck":
                findings.append(Finding("wrong", name, "%s %s could not be settled: %s"
                                        % (obj.kind, obj.id, obj.story())))
                continue
            if obj.id not in reads or obj.content is None:
                continue
            got = reads[obj.id]
            expected = obj.content.render()
            if got is None:
                findings.append(Finding("wrong", name, "%s %s (VDI %s) cannot be read: %s"
                                        % (obj.kind, obj.id, obj.current_vdi, obj.story())))
            elif got != expected:
                findings.append(Finding("wrong", name, "%s %s (VDI %s) reads wrong: %s "
                                        "(expected %s) after: %s" % (
                                            obj.kind, obj.id, obj.provider_id,
                                            model.seeds.explain(expected, got),
                                            obj.content.describe(), obj.story())))
    for uuid, sr_name in inventory.stray_srs:
        findings.append(Finding("leaked", "pool", "SR %s %r belongs to no back end "
                                "object" % (uuid, sr_name), "sr:" + uuid))
    for rec in inventory.stray_vdis:
        findings.append(Finding("leaked", "pool", rec.describe() + " outside the soak's "
                                "SRs" + _owner(model, rec), "vdi:" + rec.uuid))
    return findings


def _check_vdi(model: Model, backend: str, obj: Obj, rec: VdiRec) -> list[Finding]:
    out = []
    ident = obj.ident
    if rec.name != ident.name_label or rec.tag(ident.tag_key) != obj.id:
        out.append(Finding("wrong", backend, "%s %s: its %s should be named %r and "
                           "tagged %s=%s; after: %s" % (
                               obj.kind, obj.id, rec.describe(), ident.name_label,
                               ident.tag_key, obj.id, obj.story())))
    if obj.content is not None and rec.size != obj.size_gb * GiB:
        out.append(Finding("wrong", backend, "%s %s: %s, expected %d GiB; after: %s" % (
            obj.kind, obj.id, rec.describe(), obj.size_gb, obj.story())))
    return out


def _check_sm(model: Model, inv: BackendInventory, live: list[Obj],
              unsure: set[str]) -> list[Finding]:
    findings = []
    by_uuid = {o.current_vdi: o for o in live if o.current_vdi}
    seen: set[str] = set()
    for rec in inv.vdis:
        obj = by_uuid.get(rec.uuid)
        if obj is not None:
            seen.add(obj.id)
            findings += _check_vdi(model, inv.name, obj, rec)
            continue
        claimed = rec.tag(identity.VOLUME_TAG) or rec.tag(identity.SNAPSHOT_TAG)
        if claimed in unsure:
            continue        # a failed create the converge phase has not settled
        findings.append(Finding("leaked", inv.name, rec.describe() + _owner(model, rec),
                                "vdi:" + rec.uuid))
    for obj in live:
        if obj.id not in seen:
            findings.append(Finding("wrong", inv.name, "%s %s: no VDI %s on SR %s; after: %s"
                                    % (obj.kind, obj.id, obj.current_vdi, inv.sr_uuid,
                                       obj.story())))
    return findings


def _check_solidfire(model: Model, inv: BackendInventory, live: list[Obj],
                     unsure: set[str]) -> list[Finding]:
    findings = []
    volumes = {o.id: o for o in live if o.kind == "volume"}
    snapshots = {o.id: o for o in live if o.kind == "snapshot"}
    # SRs: one per live volume, holding its VDI and nothing else.
    vdis_by_sr: dict[str, list[VdiRec]] = {}
    for rec in inv.vdis:
        vdis_by_sr.setdefault(rec.sr_uuid, []).append(rec)
    for sr_name, uuids in sorted(inv.srs.items()):
        vol_id = sr_name[len(sf_sr_name("")):]
        obj = volumes.get(vol_id)
        keep = uuids[:1] if obj is not None else []
        for uuid in uuids:
            if uuid in keep:
                continue
            if obj is None and vol_id in unsure:
                continue
            held = "; ".join(r.describe() for r in vdis_by_sr.get(uuid, [])) or "no VDI"
            owner = model.get(vol_id)
            findings.append(Finding("leaked", inv.name, "SR %s %r (%s)%s" % (
                uuid, sr_name, held, "; volume %s (%s): %s" % (
                    vol_id, owner.state, owner.story()) if owner else ""), "sr:" + uuid))
    for vol_id, obj in sorted(volumes.items()):
        uuids = inv.srs.get(sf_sr_name(vol_id), [])
        if not uuids:
            findings.append(Finding("wrong", inv.name, "volume %s has no SR %r; after: %s"
                                    % (vol_id, sf_sr_name(vol_id), obj.story())))
            continue
        recs = vdis_by_sr.get(uuids[0], [])
        mine = [r for r in recs if r.uuid == obj.provider_id]
        if not mine:
            findings.append(Finding("wrong", inv.name, "volume %s: no VDI %s on its SR %s "
                                    "(holds %s); after: %s" % (
                                        vol_id, obj.provider_id, uuids[0],
                                        [r.describe() for r in recs], obj.story())))
        else:
            findings += _check_vdi(model, inv.name, obj, mine[0])
        for rec in recs:
            if rec.uuid != obj.provider_id:
                findings.append(Finding("leaked", inv.name, rec.describe() + _owner(model, rec),
                                        "vdi:" + rec.uuid))
    # LUNs: an active one per live volume; a deleted one only under a live snapshot.
    names = {sf_array_name(v): v for v in volumes}
    active: dict[str, list[ArrayVolume]] = {}
    snap_sources = {s.volume_id for s in inv.array_snapshots
                    if s.name[len("xensm-"):] in snapshots}
    owned_luns: set[int] = set()
    for lun in inv.luns:
        if lun.status == "active" and lun.name in names:
            active.setdefault(lun.name, []).append(lun)
            continue
        if lun.status == "deleted" and lun.id in snap_sources:
            owned_luns.add(lun.id)
            continue
        if lun.name[len("xensm-"):] in unsure:
            owned_luns.add(lun.id)
            continue
        findings.append(Finding("leaked", inv.name, "array volume %d %r (%s, %d GiB)%s" % (
            lun.id, lun.name, lun.status, lun.size // GiB, _story_of(model, lun.name)),
            "lun:%d" % lun.id))
    for name, luns in sorted(active.items()):
        owned_luns.add(luns[0].id)
        for extra in luns[1:]:
            findings.append(Finding("leaked", inv.name, "array volume %d %r: a second "
                                    "active LUN of one volume%s" % (
                                        extra.id, name, _story_of(model, name)),
                                    "lun:%d" % extra.id))
    for vol_id, obj in sorted(volumes.items()):
        if sf_array_name(vol_id) not in active:
            findings.append(Finding("wrong", inv.name, "volume %s has no active array "
                                    "volume; after: %s" % (vol_id, obj.story())))
    # Array snapshots: one per live snapshot.
    snap_names: dict[str, int] = {}
    for snap in inv.array_snapshots:
        sid = snap.name[len("xensm-"):]
        if sid in snapshots and sid not in snap_names:
            snap_names[sid] = snap.id
        elif sid not in unsure:
            findings.append(Finding("leaked", inv.name, "array snapshot %d %r of array "
                                    "volume %d%s" % (snap.id, snap.name, snap.volume_id,
                                                     _story_of(model, snap.name)),
                                    "snap:%d" % snap.id))
    for sid, obj in sorted(snapshots.items()):
        if sid not in snap_names:
            findings.append(Finding("wrong", inv.name, "snapshot %s has no array snapshot; "
                                    "after: %s" % (sid, obj.story())))
    # Access group entries: only LUNs that belong to an object.
    for lun_id in inv.access:
        if lun_id not in owned_luns:
            lun = next((v for v in inv.luns if v.id == lun_id), None)
            findings.append(Finding("leaked", inv.name, "access group entry for array volume "
                                    "%d %s" % (lun_id, "%r (%s)" % (lun.name, lun.status)
                                               if lun else "(gone from the array)"),
                                    "access:%d" % lun_id))
    return findings


def _story_of(model: Model, array_name: str) -> str:
    obj = model.get(array_name[len("xensm-"):])
    if obj is None:
        return ""
    return "; %s %s (%s): %s" % (obj.kind, obj.id, obj.state, obj.story())
