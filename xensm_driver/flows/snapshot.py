"""Flows that make and remove snapshots, and volumes made from VDIs.

A snapshot or clone is XAPI's O(1) VHD snapshot/clone. XAPI copies the
source's name and tags onto the copy, so every such flow marks the source
first (MarkSourceTask: the copy inherits the mark, so a copy whose answer
was lost is still known as made for the new object), re-identifies the
copy (TagVdiTask) and then resolves it (IdentifyVdiTask), which also keeps
a retried request from leaving two.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from xensm_driver.flows import common


def create_snapshot() -> linear_flow.Flow:
    """create_snapshot: FindSourceVdiTask(the volume) -> CheckSnapshotAllowedTask
    -> MarkSourceTask -> SnapshotVdiTask -> TagVdiTask -> UnmarkSourceTask
    -> IdentifyVdiTask.

    Store: ``source_ident``/``source_provider_id`` (the volume) and
    ``ident`` (the snapshot). 7 calls (8 when the volume already has a VHD
    parent and the chain depth must be read).
    """
    return _copy_flow("create_snapshot", "snapshot", common.SnapshotVdiTask)


def delete_snapshot() -> linear_flow.Flow:
    """delete_snapshot: LookupTask (missing is fine) -> DestroyFoundTask.
    2 calls, 1 more per leftover. Store: ``source_ident``, the volume."""
    return linear_flow.Flow("delete_snapshot").add(
        common.LookupTask(), common.DestroyFoundTask())


def clone_to_volume() -> linear_flow.Flow:
    """create_volume_from_snapshot / create_cloned_volume:
    FindSourceVdiTask -> CheckCloneAllowedTask -> MarkSourceTask ->
    CloneVdiTask -> TagVdiTask -> UnmarkSourceTask -> IdentifyVdiTask ->
    ResizeVdiTask (only when the new volume is larger).

    Store: ``source_ident``/``source_provider_id``, ``ident`` (the new
    volume), ``new_size_bytes``. 7 calls, 8 with a resize or a VHD parent.
    """
    return _copy_flow("clone_to_volume", "clone", common.CloneVdiTask).add(
        common.ResizeVdiTask())


def _copy_flow(name: str, operation: str,
               copy_task: type[common.XensmTask]) -> linear_flow.Flow:
    """Find the source (as ``source_vdi``), check the SR allows the copy,
    mark the source, make the copy, give it its identity, unmark the
    source, resolve the copy."""
    return linear_flow.Flow(name).add(
        common.FindVdiTask(ident_key="source_ident", provider_key="source_provider_id",
                           name="FindSourceVdiTask", provides="source_vdi"),
        common.CheckCopyAllowedTask(operation=operation, rebind={"vdi": "source_vdi"}),
        common.MarkSourceTask(),
        copy_task(rebind={"vdi": "source_vdi"}),
        common.TagVdiTask(),
        common.UnmarkSourceTask(),
        common.IdentifyVdiTask())
