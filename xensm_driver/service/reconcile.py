"""Inventory against storage: what each says that the other does not.

The SR's VDIs carry their identity in ``other_config`` (``xensm-volume-id``,
``xensm-snapshot-id``; see :mod:`xensm_driver.identity`). :func:`compare`
matches them with the inventory's records of one back end and reports
what follows. Each back end lists what it holds
(:meth:`~xensm_driver.backends.base.Backend.holdings`): the VDIs of its SR,
or, with no one SR (SolidFire: an SR per volume), its tagged array volumes,
with their VDIs, and their array snapshots, read here as VDIs are; "VDI"
below then means such a holding.

``orphan_vdi``
    A VDI carrying the tag of an object this inventory recorded as deleted
    (a delete whose answer was lost, or that missed a copy). The only kind
    ``reconcile --delete-orphans --yes`` destroys, through the back end's
    ``remove_orphan_volume`` or ``remove_orphan_snapshot``: by the VDI's
    uuid (or array ID), after checking again that it still is one.
``stray_vdi``
    A VDI carrying the tag of a recorded object that is not that object's
    VDI: a copy (an XAPI VM snapshot, an ``xe vdi-copy``, a snapshot or
    clone whose answer was lost) or the VDI of an unmanaged volume. Never
    deleted by reconcile: only a person can tell a stray from a kept copy.
``foreign_vdi``
    A VDI tagged with an id this inventory never recorded: another inventory
    or Cinder (same tags) manages it. Reported, never touched, not a
    discrepancy.
``missing_vdi``
    A live record whose VDI is not on the SR.
``interrupted``
    A record left busy (``creating``, ``deleting``, ...) by a process that
    died; whether its VDI exists is in the detail.
``error_with_vdi``
    A record marked ``error`` whose VDI is on the SR (storage kept; the
    data may be usable).
``provider_mismatch``
    The record's provider id is not the VDI that carries its tag.
``duplicate_vdi``
    Several VDIs carry the same tag and none is the recorded one. (When one
    is, the others are reported as ``orphan_vdi``.)
``in_progress``
    A verb running right now in a live process; not a discrepancy.

Nothing here changes anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import Protocol

from xensm_driver import identity
from xensm_driver.backends.base import Holding
from xensm_driver.service import inventory

ORPHAN_VDI = "orphan_vdi"
MISSING_VDI = "missing_vdi"
INTERRUPTED = "interrupted"
ERROR_WITH_VDI = "error_with_vdi"
PROVIDER_MISMATCH = "provider_mismatch"
DUPLICATE_VDI = "duplicate_vdi"
STRAY_VDI = "stray_vdi"
FOREIGN_VDI = "foreign_vdi"
IN_PROGRESS = "in_progress"

#: Findings that are not discrepancies.
INFORMATIONAL = frozenset({IN_PROGRESS, FOREIGN_VDI})

_TAGS = (("volume", identity.VOLUME_TAG), ("snapshot", identity.SNAPSHOT_TAG))


class Tagged(Protocol):
    """What compare reads of a holding (or of a VDI record: they read alike)."""

    @property
    def uuid(self) -> str: ...
    @property
    def name_label(self) -> str: ...
    @property
    def managed(self) -> bool: ...
    @property
    def other_config(self) -> Mapping[str, str]: ...


@dataclasses.dataclass
class Finding:
    kind: str
    object: str               # "volume" or "snapshot"
    id: str
    vdi_uuid: str | None
    status: str | None        # the record's status; None when there is no record
    detail: str
    action: str               # what the operator can do about it
    action_taken: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Report:
    backend: str
    sr_uuid: str
    checked_records: int
    checked_vdis: int
    findings: list[Finding]

    @property
    def discrepancies(self) -> list[Finding]:
        return [f for f in self.findings if f.kind not in INFORMATIONAL]

    @property
    def clean(self) -> bool:
        return not self.discrepancies

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "sr_uuid": self.sr_uuid,
                "checked_records": self.checked_records, "checked_vdis": self.checked_vdis,
                "clean": self.clean, "findings": [f.to_dict() for f in self.findings]}


def tagged(vdis: Iterable[Tagged]) -> dict[tuple[str, str], list[Tagged]]:
    """The SR's user-visible VDIs (or a back end's holdings) by ``(kind, id)``
    of the tag they carry."""
    out: dict[tuple[str, str], list[Tagged]] = {}
    for vdi in vdis:
        if not vdi.managed:
            continue              # hidden VHD base copies keep their parent's tags
        for kind, key in _TAGS:
            tag = vdi.other_config.get(key)
            if tag:
                out.setdefault((kind, tag), []).append(vdi)
    return out


def holdings_for(held: Sequence[Holding], records: Sequence[Any],
                 keep: frozenset[str]) -> list[Holding]:
    """What a back end holds, as :func:`compare` reads it (VDIs of an SR as
    they are).

    An array snapshot without a snapshot tag (a group snapshot's member)
    takes the tag of the snapshot recorded with its ID; a retired volume
    (kept for its snapshots) still holding one in ``keep`` (what the
    inventory records live) is expected, not compared.
    """
    by_provider = {r.provider_id: r.id for r in records
                   if hasattr(r, "volume_id") and r.provider_id}
    out: list[Holding] = []
    for h in held:
        if h.kind == "snapshot" and not h.tags and h.uuid in by_provider:
            h = dataclasses.replace(h, tags={identity.SNAPSHOT_TAG: by_provider[h.uuid]})
        if h.kind == "volume" and h.retired and keep.intersection(h.snapshots):
            continue
        out.append(h)
    return out


def compare(backend: str, sr_uuid: str, records: Sequence[Any],
            vdis: Sequence[Tagged]) -> Report:
    """Match ``records`` (volumes and snapshots of ``backend``) with the SR's VDIs."""
    on_sr = tagged(vdis)
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for record in records:
        kind = "snapshot" if hasattr(record, "volume_id") else "volume"
        key = (kind, record.id)
        seen.add(key)
        found = on_sr.get(key, [])
        findings.extend(_judge(kind, record, found))
    for (kind, obj_id), found in sorted(on_sr.items()):
        if (kind, obj_id) in seen:
            continue
        for vdi in found:
            findings.append(Finding(
                FOREIGN_VDI, kind, obj_id, vdi.uuid, None,
                "VDI %s (%s) is tagged as %s %s, which this inventory never recorded: "
                "another inventory or Cinder manages it" % (vdi.uuid, vdi.name_label,
                                                             kind, obj_id),
                "none; reconcile never touches it"))
    findings.sort(key=lambda f: (f.kind, f.object, f.id, f.vdi_uuid or ""))
    return Report(backend, sr_uuid, len(records), len(vdis), findings)


def _judge(kind: str, record: Any, found: list[Tagged]) -> list[Finding]:
    status = record.status
    uuids = ", ".join(v.uuid for v in found)
    where = "VDI %s is on the SR" % uuids if found else "no VDI on the SR"
    one = found[0].uuid if len(found) == 1 else None

    def finding(what: str, detail: str, action: str, vdi: str | None = one) -> Finding:
        return Finding(what, kind, record.id, vdi, status, detail, action)

    if status == "deleted":
        return [finding(ORPHAN_VDI, "VDI %s (%s) still carries the tag of %s %s, which is "
                                    "recorded as deleted" % (v.uuid, v.name_label, kind,
                                                             record.id),
                        "'xensm reconcile --delete-orphans --yes' to destroy it", v.uuid)
                for v in found]
    if status in inventory.GONE:
        return [finding(STRAY_VDI, "VDI %s (%s) carries the tag of %s %s, which is recorded "
                                   "as %s: its data was handed back, tagged" % (
                                       v.uuid, v.name_label, kind, record.id, status),
                        "remove the tag (xe vdi-param-remove) or the VDI by hand", v.uuid)
                for v in found]
    if status in inventory.READING and inventory.owner_alive(record.owner) is False:
        status = "available"     # only read by a process that died: as it was
    if status in inventory.BUSY:
        alive = inventory.owner_alive(record.owner)
        if alive is False:
            return [finding(INTERRUPTED, "recorded as %s by process %s, which is gone; %s"
                                         % (status, record.owner, where),
                            "'xensm %s delete %s' to remove it" % (kind, record.id))]
        return [finding(IN_PROGRESS, "%s by process %s%s; %s" % (
            status, record.owner, "" if alive else " on another host", where),
            "wait for it")]
    if status.startswith("error"):
        if found:
            return [finding(ERROR_WITH_VDI, "recorded as %s (%s); %s" % (
                status, record.status_reason or "no reason kept", where),
                "'xensm %s delete %s' to remove both" % (kind, record.id))]
        return []
    # A live record.
    if not found:
        return [finding(MISSING_VDI, "recorded as %s with VDI %s, but no VDI on the SR "
                                     "carries its tag" % (status, record.provider_id),
                        "'xensm %s delete %s' to drop the record" % (kind, record.id),
                        record.provider_id)]
    if len(found) > 1:
        recorded = [v for v in found if v.uuid == record.provider_id]
        if not recorded:
            return [finding(DUPLICATE_VDI, "%d VDIs carry its tag (%s), none of them the "
                                           "recorded VDI %s" % (len(found), uuids,
                                                                record.provider_id),
                            "check which VDI holds the data; reconcile deletes none of "
                            "them", None)]
        return [finding(STRAY_VDI, "VDI %s (%s) carries the tag of %s %s, which is "
                                   "recorded on VDI %s: a copy (an XAPI VM snapshot, an "
                                   "xe vdi-copy, or a snapshot or clone whose answer was "
                                   "lost)" % (v.uuid, v.name_label, kind, record.id,
                                              record.provider_id),
                        "check what it holds; reconcile deletes no copy", v.uuid)
                for v in found if v.uuid != record.provider_id]
    if record.provider_id and record.provider_id != found[0].uuid:
        return [finding(PROVIDER_MISMATCH, "recorded VDI %s, but its tag is on VDI %s"
                                           % (record.provider_id, found[0].uuid),
                        "check which VDI holds the data")]
    return []
