"""Flows that make and remove snapshots, and volumes made from VDIs.

A snapshot or clone is XAPI's O(1) VHD snapshot/clone. XAPI copies the
source's name and tags onto the copy, so every such flow re-identifies the
copy (TagVdiTask) and then resolves it (IdentifyVdiTask), which also keeps
a retried request from leaving two.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from xensm_driver.flows import common


def create_snapshot() -> linear_flow.Flow:
    """create_snapshot: FindVdiTask(source volume) -> CheckCopyAllowedTask ->
    SnapshotVdiTask -> TagVdiTask -> IdentifyVdiTask.

    Store: ``source_ident``/``source_provider_id`` (the volume; found as
    ``source_vdi``) and
    ``ident`` (the snapshot). 5 calls (6 when the volume already has a VHD
    parent and the chain depth must be read).
    """
    return linear_flow.Flow("create_snapshot").add(
        common.FindVdiTask(ident_key="source_ident", provider_key="source_provider_id",
                           name="FindSourceVdiTask", provides="source_vdi"),
        common.CheckCopyAllowedTask(operation="snapshot", rebind={"vdi": "source_vdi"}),
        common.SnapshotVdiTask(rebind={"vdi": "source_vdi"}),
        common.TagVdiTask(),
        common.IdentifyVdiTask())


def delete_snapshot() -> linear_flow.Flow:
    """delete_snapshot: FindVdiTask (missing is fine) -> DestroyVdiTask. 2 calls."""
    return linear_flow.Flow("delete_snapshot").add(
        common.FindVdiTask(missing_ok=True), common.DestroyVdiTask())


def clone_to_volume() -> linear_flow.Flow:
    """create_volume_from_snapshot / create_cloned_volume:
    FindVdiTask(source) -> CheckCopyAllowedTask -> CloneVdiTask -> TagVdiTask
    -> IdentifyVdiTask -> ResizeVdiTask (only when the new volume is larger).

    Store: ``source_ident``/``source_provider_id``, ``ident`` (the new
    volume), ``new_size_bytes``. 5 calls, 6 with a resize.
    """
    return linear_flow.Flow("clone_to_volume").add(
        common.FindVdiTask(ident_key="source_ident", provider_key="source_provider_id",
                           name="FindSourceVdiTask", provides="source_vdi"),
        common.CheckCopyAllowedTask(operation="clone", rebind={"vdi": "source_vdi"}),
        common.CloneVdiTask(rebind={"vdi": "source_vdi"}),
        common.TagVdiTask(),
        common.IdentifyVdiTask(),
        common.ResizeVdiTask())
