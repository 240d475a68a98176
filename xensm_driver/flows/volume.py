"""Flows that make, grow and remove a volume's VDI on an SM-native SR.

Store keys: ``backend``, ``ident`` (the volume's identity) and per flow
``size_bytes``, ``provider_id``, ``new_size_bytes``.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from xensm_driver.flows import common


def create_volume() -> linear_flow.Flow:
    """create_volume: CreateVdiTask -> IdentifyVdiTask. 2 XAPI calls."""
    return linear_flow.Flow("create_volume").add(
        common.CreateVdiTask(), common.IdentifyVdiTask())


def delete_volume() -> linear_flow.Flow:
    """delete_volume: FindVdiTask (missing is fine) -> DestroyVdiTask. 2 calls."""
    return linear_flow.Flow("delete_volume").add(
        common.FindVdiTask(missing_ok=True), common.DestroyVdiTask())


def extend_volume() -> linear_flow.Flow:
    """extend_volume: FindVdiTask -> CheckResizableTask -> ResizeVdiTask. 2 calls."""
    return linear_flow.Flow("extend_volume").add(
        common.FindVdiTask(), common.CheckResizableTask(), common.ResizeVdiTask())


def revert_to_snapshot() -> linear_flow.Flow:
    """revert_to_snapshot: find the volume and the snapshot, check the volume
    is detached, copy the snapshot's content over the volume inside XAPI.

    The volume keeps its VDI (uuid, ref, tags), so nothing that refers to it
    goes stale. Store: ``ident``/``provider_id`` (volume) and
    ``snapshot_ident``/``snapshot_provider_id``.
    """
    return linear_flow.Flow("revert_to_snapshot").add(
        common.FindVdiTask(),
        common.FindVdiTask(ident_key="snapshot_ident",
                           provider_key="snapshot_provider_id",
                           name="FindSnapshotVdiTask", provides="snapshot_vdi"),
        common.CheckDetachedTask(),
        common.CopyIntoVdiTask())
