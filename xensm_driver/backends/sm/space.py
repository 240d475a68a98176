"""What a volume's snapshots hold on a VHD SR, and what deleting one frees.

Pure arithmetic over the SR's VDI records (one ``VDI.get_all_records_where``
call gives them all, base copies included). What XAPI tells, per VDI, is
``physical_utilisation`` (the VHD file's size on file SRs, the LV's size on
LVHD) and ``sm_config:vhd-parent``; not which 2 MiB blocks a VHD holds. So:

* A snapshot of a volume on a VHD SR (sm ``FileVDI._snapshot``,
  ``LVHDVDI._snapshot``) turns the volume's VHD into a hidden, read-only
  **base copy** and gives the volume and the snapshot each a new, empty
  leaf above it. The base copy holds what the volume held then; the leaf
  then holds only what was written since. Everything below the volume's
  leaf is shared by the volume and its snapshots.
* Deleting a snapshot removes its leaf at once (``VDI.destroy``: the file or
  LV goes). Its base copy stays until the SR's garbage collector (sm
  ``cleanup.py``, kicked by ``_kickGC`` after the delete, running in the
  background) finds it with one child left and coalesces the two. Only
  then is space freed, and only the blocks of the base copy that the child
  had rewritten (the child reads every other block through to it): at most
  the smaller of the two, exactly the base copy when the child is fully
  allocated (an inflated LVHD leaf). XAPI does not say which blocks those
  are, so the figure is a range, and the lower end is what is sure.
* A base copy with more children (snapshots taken with nothing written in
  between share one: blktap ``vhd_util_find_snapshot_target``; a volume
  made from the snapshot) stays: the delete frees the leaf only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from xensm_driver.xapi.storage import VDI


@dataclasses.dataclass(frozen=True)
class Frees:
    """Bytes a delete frees: ``now`` at once, up to ``after_coalesce_max``
    (at least ``after_coalesce_min``) once the SR has coalesced."""

    now: int
    after_coalesce_min: int
    after_coalesce_max: int
    why: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def children_of(vdis: Iterable[VDI]) -> dict[str, list[VDI]]:
    kids: dict[str, list[VDI]] = {}
    for vdi in vdis:
        if vdi.vhd_parent:
            kids.setdefault(vdi.vhd_parent, []).append(vdi)
    return kids


def chain(by_uuid: Mapping[str, VDI], vdi: VDI) -> list[VDI]:
    """The VHDs under ``vdi``, nearest first (its base copies)."""
    out: list[VDI] = []
    seen = {vdi.uuid}
    parent = vdi.vhd_parent
    while parent and parent not in seen and parent in by_uuid:
        seen.add(parent)
        out.append(by_uuid[parent])
        parent = by_uuid[parent].vhd_parent
    return out


def frees(by_uuid: Mapping[str, VDI], kids: Mapping[str, list[VDI]], snap: VDI) -> Frees:
    """What deleting the snapshot ``snap`` frees (see the module's docstring)."""
    own = snap.physical_utilisation
    parent = by_uuid.get(snap.vhd_parent or "")
    if parent is None or parent.managed:
        return Frees(own, own, own, "its own VDI, at once (no VHD parent to coalesce)")
    siblings = [k for k in kids.get(parent.uuid, []) if k.uuid != snap.uuid]
    base = parent.physical_utilisation
    if not siblings:
        return Frees(own, own + base, own + base,
                     "its VHD at once; its base copy %s (no other child) when the SR's "
                     "garbage collector removes it" % parent.uuid)
    if len(siblings) > 1:
        return Frees(own, own, own,
                     "its VHD only: its base copy %s stays, %d other VHDs read through it"
                     % (parent.uuid, len(siblings)))
    (child,) = siblings
    if child.managed and child.physical_utilisation >= child.virtual_size:
        return Frees(own, own + base, own + base,
                     "its VHD at once; its base copy %s when the SR coalesces it into "
                     "%s, which is fully allocated" % (parent.uuid, child.uuid))
    return Frees(own, own, own + min(base, child.physical_utilisation),
                 "its VHD at once; after the SR coalesces its base copy %s with %s, the "
                 "blocks of the base copy that %s rewrote (XAPI does not say how many: "
                 "up to the smaller of the two)" % (parent.uuid, child.uuid, child.uuid))


def volume_space(vdis: list[VDI], volume_uuid: str | None,
                 snapshots: Mapping[str, str | None]) -> dict[str, Any]:
    """A volume's chain and what each of its snapshots (id -> VDI uuid) holds."""
    by_uuid = {v.uuid: v for v in vdis}
    kids = children_of(vdis)
    vol = by_uuid.get(volume_uuid or "")
    under = chain(by_uuid, vol) if vol is not None else []
    snaps: dict[str, Any] = {}
    for snap_id, uuid in snapshots.items():
        vdi = by_uuid.get(uuid or "")
        if vdi is None:
            snaps[snap_id] = {"vdi": uuid, "present": False}
            continue
        snaps[snap_id] = {
            "vdi": vdi.uuid, "present": True, "virtual_size": vdi.virtual_size,
            "own_bytes": vdi.physical_utilisation,
            "base_copy": vdi.vhd_parent,
            "base_copy_bytes": (by_uuid[vdi.vhd_parent].physical_utilisation
                                if vdi.vhd_parent in by_uuid else None),
            "frees": frees(by_uuid, kids, vdi).to_dict(),
        }
    below = {b.uuid for b in under}
    # Base copies reached from a snapshot but not from the volume (the
    # volume was reverted, or the chain forked): also held for the snapshots.
    extra = {}
    for info in snaps.values():
        if not info.get("present"):
            continue
        for b in chain(by_uuid, by_uuid[info["vdi"]]):
            if b.uuid not in below and not b.managed:
                extra[b.uuid] = b
    snapshot_leaves = sum(int(i["own_bytes"]) for i in snaps.values() if i.get("present"))
    chain_bytes = sum(b.physical_utilisation for b in under) + sum(
        b.physical_utilisation for b in extra.values())
    leaf = vol.physical_utilisation if vol is not None else 0
    layers = [leaf, *(b.physical_utilisation for b in under)]
    return {
        "vdi": volume_uuid,
        "present": vol is not None,
        "leaf_bytes": leaf,
        "chain_depth": 1 + len(under) if vol is not None else None,
        "base_copies": [{"vdi": b.uuid, "bytes": b.physical_utilisation} for b in under],
        "base_copy_bytes": chain_bytes,
        "snapshot_leaf_bytes": snapshot_leaves,
        "tree_bytes": leaf + chain_bytes + snapshot_leaves,
        # Every snapshot deleted and coalesced: at least their leaves go; at
        # most all but the largest layer (the volume then holds at least that).
        "snapshots_hold_min": snapshot_leaves,
        "snapshots_hold_max": snapshot_leaves + chain_bytes + leaf - max(layers),
        "snapshots": snaps,
    }


def provisioned(vdis: list[VDI], volume_uuids: set[str]) -> dict[str, int]:
    """The SR's managed VDIs' virtual sizes: volumes, snapshots, others."""
    out = {"volumes": 0, "snapshots": 0, "other": 0}
    for vdi in vdis:
        if not vdi.managed:
            continue
        if vdi.uuid in volume_uuids:
            out["volumes"] += vdi.virtual_size
        elif vdi.is_a_snapshot:
            out["snapshots"] += vdi.virtual_size
        else:
            out["other"] += vdi.virtual_size
    return out
