"""SolidFire, VDI-per-LUN: one Element volume, one lvmoiscsi SR per volume.

Snapshots, clones and reverts happen on the array, so they cost no copy and
no VHD chain. The pool reaches the LUNs through one volume access group
(an initiator may belong to only one), named after the pool.

A clone of a LUN carries its source's SR identity and cannot be attached
next to it. With CloudOps' ``relvmoiscsi`` pack on the pool, the clone is
resigned and introduced (``xensm_clone_strategy = resign``); without it,
a cloned volume is a fresh LUN with the source VDI copied in by XAPI
(``copy``), and a volume cannot be made from a snapshot at all -- the
refusal says so.

Element purges a deleted volume after its cleanup interval (about 8 h by
default) and its snapshots go with it. So a volume whose snapshots are still
wanted is not deleted but *retired*: detached, out of the access group,
tagged ``xensm-retired``, seen by snapshot lookups only, and deleted with
its last snapshot. Volumes and snapshots then behave as on SM back ends,
where a snapshot outlives its volume.

Accounts follow Cinder's model: each project's volumes in an array account
of its own (``<prefix>-<project_id>``, made on first use; Element generates
its CHAP secrets), volumes without a project in the back end's own
(``<prefix>-<backend>``), or all in that one with
``xensm_sf_account_per_project = false``. Volumes are found by name and tag
in whichever account holds them. Each LUN's SR carries its account as
``chapuser`` and ``chappassword_secret`` (an XAPI secret); the pool's
volume access group still grants the access.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any
from typing import ClassVar

from oslo_log import log as logging

from xensm_driver import coordination
from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.arrays.solidfire import ElementClient
from xensm_driver.backends import base
from xensm_driver.backends.base import SnapshotSpec
from xensm_driver.backends.base import VolumeSpec
from xensm_driver.backends.solidfire import flows
from xensm_driver.backends.solidfire import qos as qoses
from xensm_driver.backends.solidfire.array import ADOPTED
from xensm_driver.backends.solidfire.array import RETIRED
from xensm_driver.backends.solidfire.array import LunTarget
from xensm_driver.flows import claims
from xensm_driver.flows import target as targets
from xensm_driver.flows import vdi as vdis
from xensm_driver.flows.engine import answer_or_lookup
from xensm_driver.xapi.storage import VDI

LOG = logging.getLogger(__name__)

class SolidFireBackend(base.GroupsAsRecords):
    SR_TYPE: ClassVar[str] = "solidfire"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({
        base.THIN, base.SNAPSHOT, base.CLONE, base.REVERT, base.EXTEND,
        base.GROUP_SNAPSHOT, base.SNAPSHOT_OF_SNAPSHOT, base.QOS, base.MANAGE})
    STORAGE_PROTOCOL: ClassVar[str] = "iSCSI"
    GROUP_CONSISTENCY: ClassVar[str | None] = base.CONSISTENT_BY_ARRAY

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client: ElementClient = None  # type: ignore[assignment]
        self._target: LunTarget | None = None
        self.clone_strategy = "copy"
        self.qos_policy = qoses.Policy()

    @property
    def target(self) -> LunTarget:
        """What the flows act on; made by :meth:`setup`."""
        if self._target is None:
            raise exception.XensmError(
                "Back end %s is not set up: do_setup has not run or failed." % self.name)
        return self._target

    # -- setup ----------------------------------------------------------------

    def setup(self) -> None:
        opts = self.options
        opts.require("xensm_sf_mvip", "xensm_sf_login", "xensm_sf_password",
                     reason="the solidfire back end manages volumes through the "
                            "cluster's Element API")
        self.client = ElementClient(
            opts.xensm_sf_mvip, opts.xensm_sf_login, opts.xensm_sf_password,
            verify=opts.xensm_sf_verify_tls, timeout=opts.xensm_sf_api_timeout,
            retries=opts.xensm_sf_retry_count, backoff=opts.xensm_sf_retry_backoff)
        cluster = self.client.call("GetClusterInfo")["clusterInfo"]
        self.qos_policy = self._qos_policy(self.client.call("GetLimits"))
        pool_ref, pool_uuid = self.storage.the_pool()
        # Active-active: the services of a cluster (and the pool's other
        # SolidFire back ends, which share its access group) find or create
        # the account and access group, and settle half-done deletes, one
        # at a time, under a lock named after the pool.
        with self.locks.lock(coordination.lock_name("xensm", "sf-setup", pool_uuid)):
            account_id = int(self.client.ensure_account(
                "%s-%s" % (opts.xensm_sf_account_prefix, self.name))["accountID"])
            self._target = LunTarget(
                storage=self.storage, backend=self.name, sr_type=self.SR_TYPE,
                # The pool holds the claims: a volume has no SR before it is
                # made, and Element has no compare-and-set (ModifyVolume and
                # ModifyAccount replace the whole attributes map, last writer
                # wins), while XAPI's pool.add_to_other_config refuses a key
                # already there (MAP_DUPLICATE_KEY) for every host and process.
                claim_holder=("pool", pool_ref),
                lease=targets.lease(opts.xenapi_call_timeout, opts.xensm_sf_api_timeout),
                client=self.client, account_id=account_id,
                vag_id=self._ensure_access_group(pool_uuid),
                svip=opts.xensm_sf_svip or cluster["svip"],
                master_ref=self.storage.master().ref,
                clone_timeout=opts.xensm_sf_clone_timeout,
                task_timeout=opts.xenapi_task_timeout,
                per_project=bool(opts.xensm_sf_account_per_project),
                account_prefix=opts.xensm_sf_account_prefix)
            self._retire_deleted_with_snapshots()
        self.clone_strategy = "resign" if self._has_sm("relvmoiscsi") else "copy"

    def _qos_policy(self, limits: dict[str, Any]) -> qoses.Policy:
        """The QoS defaults from options, checked against the cluster's
        limits (GetLimits) here, at setup, naming the option."""
        opts = self.options
        defaults = {key: int(value) for key, value in (
            ("minIOPS", opts.xensm_sf_qos_min_iops), ("maxIOPS", opts.xensm_sf_qos_max_iops),
            ("burstIOPS", opts.xensm_sf_qos_burst_iops)) if value is not None}
        policy = qoses.Policy(limits=qoses.Limits.from_get_limits(limits),
                              defaults=defaults,
                              allow_presets=bool(opts.xensm_sf_allow_tenant_qos))
        try:
            policy.resolve(None, 1, what="the defaults")
        except exception.InvalidInput as exc:
            raise exception.ConfigError(
                option="xensm_sf_qos_{min,max,burst}_iops in [%s]" % opts.section,
                reason=str(exc.kwargs.get("reason", exc))) from None
        return policy

    def _retire_deleted_with_snapshots(self) -> None:
        """Save the snapshots of volumes left deleted while they had some.

        Earlier versions deleted such a volume and only skipped the purge;
        Element purges it, snapshots and all, after the cleanup interval.
        Restored and retired, its snapshots live on. 1 call, +6 per volume.
        """
        # Every account: volumes of each project's account carry the back
        # end's attribute as the back end's own account's do.
        deleted = self.client.call("ListVolumes", volumeStatus="deleted")["volumes"]
        for volume in deleted:
            attributes = volume.get("attributes") or {}
            if (attributes.get("xensm-backend") != self.name
                    or identity.VOLUME_TAG not in attributes
                    or not self.target.snapshots_of(volume["volumeID"])):
                continue
            self.target.finish_deleted(volume)

    def _has_sm(self, sr_type: str) -> bool:
        return self.storage.sm_features(sr_type) is not None

    def _ensure_access_group(self, pool_uuid: str) -> int:
        """The pool's volume access group, holding every host's IQN."""
        name = "xensm-%s" % pool_uuid
        initiators = sorted(h.iscsi_iqn for h in self.storage.hosts() if h.iscsi_iqn)
        groups = self.client.call("ListVolumeAccessGroups")["volumeAccessGroups"]
        group = next((g for g in groups if g.get("name") == name), None)
        try:
            if group is None:
                return int(self.client.call("CreateVolumeAccessGroup", name=name,
                                            initiators=initiators)["volumeAccessGroupID"])
            missing = sorted(set(initiators) - set(group.get("initiators") or []))
            if missing:
                self.client.call("AddInitiatorsToVolumeAccessGroup",
                                 volumeAccessGroupID=group["volumeAccessGroupID"],
                                 initiators=missing)
        except exception.ArrayError as exc:
            if exc.name in ("xExceededLimit", "xAlreadyInVolumeAccessGroup"):
                raise exception.ConfigError(
                    option="xensm_sr_type = solidfire in [%s]" % self.options.section,
                    reason="a host of this pool is already in another volume access "
                           "group of the cluster, and an initiator may be in only one "
                           "(%s). Move it into %s or remove the other group."
                           % (exc.name, name)) from None
            raise
        return int(group["volumeAccessGroupID"])

    def check(self) -> None:
        if not self._has_sm("lvmoiscsi"):
            raise exception.XensmError(
                "The pool has no lvmoiscsi SM plugin, which back end %s needs to "
                "attach SolidFire LUNs." % self.name)
        self.client.call("GetClusterCapacity")

    def describe(self) -> base.StorageDescription:
        """The pool's hosts; a volume's SR is its own (see holdings). 1 call."""
        return base.StorageDescription(hosts=tuple(h.name_label for h in self.storage.hosts()))

    def stats(self) -> dict[str, Any]:
        """Capacity and efficiency as the cluster tells them (1 call,
        GetClusterCapacity), computed as Cinder's SolidFire driver does
        (``_update_cluster_status`` with ``sf_provisioning_calc =
        usedSpace``): total ``maxUsedSpace``, free ``maxUsedSpace -
        usedSpace``; compression ``uniqueBlocks * 4096 /
        uniqueBlocksUsedSpace``, deduplication ``nonZeroBlocks /
        uniqueBlocks`` and thin provisioning ``(nonZeroBlocks + zeroBlocks) /
        nonZeroBlocks``, as percentages -- 100 when any figure is 0 (an
        empty cluster; LP#1874541). Provisioned space is the cluster's
        ``provisionedSpace``, not a second ListVolumes call."""
        cap = self.client.call("GetClusterCapacity")["clusterCapacity"]
        gib = float(identity.GiB)

        def n(key: str) -> int:
            return int(cap.get(key) or 0)

        total, used, provisioned = n("maxUsedSpace"), n("usedSpace"), n("provisionedSpace")
        over = n("maxOverProvisionableSpace")
        unique, unique_used = n("uniqueBlocks"), n("uniqueBlocksUsedSpace")
        non_zero, zero = n("nonZeroBlocks"), n("zeroBlocks")
        if 0 in (unique, unique_used, non_zero, zero):
            compression = dedup = thin = 100.0
        else:
            compression = unique * 4096.0 / unique_used * 100
            dedup = float(non_zero) / unique * 100
            thin = float(non_zero + zero) / non_zero * 100
        return {
            "pool_name": "solidfire-%s" % self.name,
            "total_capacity_gb": round(total / gib, 2),
            "free_capacity_gb": round(max(0, total - used) / gib, 2),
            "allocated_capacity_gb": round(used / gib, 2),
            "provisioned_capacity_gb": round(provisioned / gib, 2),
            "max_over_subscription_ratio": round(over / total, 2) if total else 1.0,
            "thin_provisioning_support": True,
            "thick_provisioning_support": False,
            "compression_percent": round(compression, 2),
            "deduplication_percent": round(dedup, 2),
            "thin_provision_percent": round(thin, 2),
            "current_iops": n("currentIOPS"),
            "average_iops": n("averageIOPS"),
            "max_iops": n("maxIOPS"),
            "peak_iops": n("peakIOPS"),
            "QoS_support": True,
            "xensm_clone_strategy": self.clone_strategy,
            "location_info": "xensm:solidfire:%s" % self.client.url,
        }

    def snapshot_limit(self) -> int | None:
        """Element's snapshots per volume (``xensm_solidfire_snapshot_limit``)."""
        return int(self.options.xensm_solidfire_snapshot_limit)

    def snapshot_space(self, volumes: Mapping[str, tuple[str | None, Mapping[str, str | None]]]
                       ) -> dict[str, Any]:
        """The array's figures. 2 calls per volume, +1.

        Element reports each snapshot's ``totalSize`` (the volume's size when
        it was taken) and, cluster-wide, used and provisioned space; not the
        blocks one snapshot alone holds (blocks are deduplicated across the
        cluster), so what a delete frees is not known in advance."""
        out: dict[str, Any] = {}
        for vol_id, (_provider_id, snaps) in volumes.items():
            sf_volume = self.target.find_array_volume(vol_id, include_retired=True)
            if sf_volume is None:
                out[vol_id] = {"present": False, "snapshots": {}}
                continue
            by_name = {s.get("name"): s for s in self.target.snapshots_of(
                sf_volume["volumeID"])}
            by_id = {str(s["snapshotID"]): s for s in by_name.values()}
            info: dict[str, Any] = {}
            for snap_id, provider_id in snaps.items():
                found = by_name.get(self.target.array_name(snap_id)) or by_id.get(
                    str(provider_id))
                info[snap_id] = {"present": found is not None,
                                 "total_size": found.get("totalSize") if found else None,
                                 "own_bytes": None, "frees": None}
            out[vol_id] = {"present": True, "total_size": sf_volume.get("totalSize"),
                           "array_snapshots": len(by_name), "snapshots": info}
        cap = self.client.call("GetClusterCapacity")["clusterCapacity"]
        return {"volumes": out, "provisioned": {
            "provisioned_space": cap.get("provisionedSpace"),
            "used_space": cap.get("usedSpace"),
            "snapshot_non_zero_blocks": cap.get("snapshotNonZeroBlocks")},
            "notes": [
                "provisioned_capacity_gb is the cluster's provisionedSpace: the sum of "
                "volumes' sizes; snapshots are not counted there, their blocks are in "
                "usedSpace.",
                "Element reports no per-snapshot space: blocks are deduplicated and "
                "compressed cluster-wide, so what deleting one snapshot frees is only "
                "seen in usedSpace afterwards."]}

    # -- naming and lookups ---------------------------------------------------

    # -- reconcile ------------------------------------------------------------

    def holdings(self) -> list[base.Holding]:
        """Each array volume, in any account, carrying this back end's name
        and tag, with its SR and VDI if it has them, and each of its array
        snapshots (a group snapshot's member carries the group's tag, not a
        snapshot's). Retired volumes are marked. 2 calls, +2 per SR."""
        volumes = self.client.call("ListVolumes")["volumes"]
        snapshots: dict[int, list[dict[str, Any]]] = {}
        for snap in self.client.list_snapshots():
            snapshots.setdefault(int(snap["volumeID"]), []).append(snap)
        held: list[base.Holding] = []
        for volume in volumes:
            attributes = volume.get("attributes") or {}
            volume_id = attributes.get(identity.VOLUME_TAG)
            if (not volume_id or attributes.get("xensm-backend") != self.name
                    or (volume.get("name") != self.target.array_name(volume_id)
                        and ADOPTED not in attributes)):
                continue
            array_id = int(volume["volumeID"])
            sr_uuid = vdi_uuid = None
            found = self.storage.find_sr(name_label=self.target.sr_name(volume_id))
            if len(found) == 1:
                sr_uuid = found[0].uuid
                vdis = [v for v in self.storage.sr_vdis(found[0].ref)
                        if v.managed and not v.is_a_snapshot]
                if len(vdis) == 1:
                    vdi_uuid = vdis[0].uuid
            mine = snapshots.get(array_id, [])
            held.append(base.Holding(
                "volume", vdi_uuid or "array-volume-%d" % array_id, volume["name"],
                {identity.VOLUME_TAG: volume_id}, array_id, array_id, sr_uuid,
                self.target.retired(volume), tuple(str(s["snapshotID"]) for s in mine)))
            for snap in mine:
                tag = (snap.get("attributes") or {}).get(identity.SNAPSHOT_TAG)
                held.append(base.Holding(
                    "snapshot", str(snap["snapshotID"]), snap.get("name") or "",
                    {identity.SNAPSHOT_TAG: tag} if tag else {}, int(snap["snapshotID"]),
                    array_id))
        return held

    def remove_orphan_volume(self, held: base.Holding, keep: frozenset[str]) -> str:
        """Checked again first: the array volume still exists in this
        account, named and tagged as ``held`` says; its SR's VDI attached to
        nothing; none of its array snapshots is one the inventory still
        records (``keep``: IDs and tags). Then its SR is forgotten, access
        revoked, and the array volume deleted -- or retired while other
        snapshots are on it. 4-10 calls."""
        volume_id = held.tags[identity.VOLUME_TAG]
        sf_volume = self.client.get_volume_by_id(held.volume_array_id, include_deleted=True)

        def not_now(why: str) -> exception.InUse:
            return exception.InUse(kind="Array volume", name=held.volume_array_id,
                                   reason=why)

        if sf_volume is None:
            raise not_now("it is already gone")
        attributes = sf_volume.get("attributes") or {}
        if ((sf_volume.get("name") != self.target.array_name(volume_id)
             and ADOPTED not in attributes)
                or attributes.get(identity.VOLUME_TAG) != volume_id
                or attributes.get("xensm-backend") != self.name):
            raise not_now("it no longer carries the name and tag of volume %s" % volume_id)
        snaps = self.target.snapshots_of(held.volume_array_id)
        kept = [str(s["snapshotID"]) for s in snaps
                if str(s["snapshotID"]) in keep
                or (s.get("attributes") or {}).get(identity.SNAPSHOT_TAG) in keep]
        if kept:
            raise not_now("its snapshot(s) %s are still recorded" % ", ".join(kept))
        sr_ref = (self.target.find_lun_sr(volume_id, sf_volume)
                  if sf_volume.get("status") != "deleted" else None)
        if sr_ref is not None:
            for vdi in self.storage.sr_vdis(sr_ref):
                if vdis.attached(self.target, vdi):
                    raise not_now("its VDI %s is attached to a VM" % vdi.uuid)
            self.target.forget_lun_sr(sr_ref)
        if sf_volume.get("status") == "deleted":
            self.target.finish_deleted(sf_volume)
        else:
            self.target.revoke(held.volume_array_id)
            self.target.retire_array_volume(sf_volume)
        if self.client.get_volume_by_id(held.volume_array_id, include_deleted=True):
            return "retired array volume %d (it has snapshots)" % held.volume_array_id
        return "deleted array volume %d" % held.volume_array_id

    def remove_orphan_snapshot(self, held: base.Holding, keep: frozenset[str]) -> str:
        """Checked again first: array snapshot ``held.array_id`` is still on
        its volume carrying its tag. Then deleted, and a retired volume
        with no snapshot left goes too. 2-5 calls. (``keep`` is not read:
        an array snapshot's ID is recorded by no object but its own.)"""
        snapshot_id = held.tags.get(identity.SNAPSHOT_TAG)
        found = [s for s in self.target.snapshots_of(held.volume_array_id)
                 if int(s["snapshotID"]) == held.array_id]
        if not found or snapshot_id is None or (
                found[0].get("attributes") or {}).get(identity.SNAPSHOT_TAG) != snapshot_id:
            raise exception.InUse(kind="Array snapshot", name=held.array_id,
                                  reason="it is gone or no longer carries the tag of "
                                         "snapshot %s" % snapshot_id)
        with contextlib.suppress(exception.ArrayNotFound):
            self.client.call("DeleteSnapshot", snapshotID=held.array_id)
        self.target.purge_if_unwanted(held.volume_array_id)
        return "deleted array snapshot %d" % held.array_id

    # -- array side effects ---------------------------------------------------

    # -- XAPI side effects ----------------------------------------------------

    # -- verbs ----------------------------------------------------------------

    def _volume_parts(self, volume: VolumeSpec, *, required: bool = True
                      ) -> tuple[dict[str, Any] | None, str | None]:
        """The volume's array volume and SR. ``required``: both must exist,
        and an array volume found without its SR (a failed revert) gets it
        back. 3 calls when both are there."""
        sf_volume = self.target.find_array_volume(volume.id)
        sr_ref = self.target.find_lun_sr(volume.id, sf_volume)
        if required and sf_volume is not None and sr_ref is None:
            sr_ref = self.target.reattach_lun_sr(volume.ident, sf_volume)
        if required and (sf_volume is None or sr_ref is None):
            raise exception.VolumeNotFound(volume_id=volume.id,
                                           sr_uuid="(its own SolidFire LUN)")
        return sf_volume, sr_ref

    def _attached_parts(self, volume: VolumeSpec) -> tuple[dict[str, Any], str, VDI]:
        """The volume's array volume, SR and VDI (named and tagged).

        A failed revert may leave the array volume without its SR, or with
        an SR record that has no PBD and no VDI (an introduce whose answer
        was lost): the SR is put back first. 4 calls when all is well.
        """
        sf_volume, sr_ref = self._volume_parts(volume)
        assert sf_volume is not None and sr_ref is not None
        try:
            return sf_volume, sr_ref, self.target.tag_lun_vdi(volume.ident, sr_ref)
        except exception.LunSrContent as exc:
            if exc.kwargs["count"]:
                raise
        sr_ref = self.target.reattach_lun_sr(volume.ident, sf_volume)
        return sf_volume, sr_ref, self.target.tag_lun_vdi(volume.ident, sr_ref)

    def create_volume(self, volume: VolumeSpec) -> dict[str, str]:
        qos = self.qos_policy.resolve(volume.qos, volume.size_gb,
                                      what="volume %s" % volume.id)
        result = flows.create_volume.run(
            target=self.target, ident=volume.ident, size_bytes=volume.size_bytes, qos=qos,
            account_id=self.target.account_id_for(volume.project_id))
        return result["model_update"]

    def _asked_qos(self, volume: VolumeSpec, size_gb: int | None = None,
                   current: dict[str, Any] | None = None) -> dict[str, int] | None:
        """The validated QoS ``volume`` asks for (keys it does not set from
        ``current``, the array volume's QoS now), or None when it asks for
        nothing: the array volume keeps what it has."""
        if not self.qos_policy.asked(volume.qos, size_gb or volume.size_gb):
            return None
        return self.qos_policy.resolve(
            volume.qos, size_gb or volume.size_gb, what="volume %s" % volume.id,
            base=qoses.of_volume(current) if current else None)

    def delete_volume(self, volume: VolumeSpec) -> None:
        """Under the volume's claim: a create that failed with its outcome
        unknown kept it, and its array call may still land."""
        with claims.holding_claim(self.target, volume.ident):
            sf_volume, sr_ref = self._volume_parts(volume, required=False)
            if sr_ref is not None:
                self._refuse_attached(volume, sr_ref)
            flows.delete_volume.run(target=self.target, ident=volume.ident,
                       sr_ref=sr_ref, sf_volume=sf_volume)

    def extend_volume(self, volume: VolumeSpec, new_size_gb: int) -> None:
        sf_volume, sr_ref, vdi = self._attached_parts(volume)
        new_size = new_size_gb * identity.GiB
        if new_size < vdi.virtual_size:
            raise exception.InvalidInput(
                reason="volume %s cannot shrink to %d GiB" % (volume.id, new_size_gb))
        # The volume keeps its QoS (Cinder lost it, LP#1783588) unless it
        # asks for some: then recomputed for the new size (scaledIOPS).
        qos = self._asked_qos(volume, new_size_gb, sf_volume)
        flows.extend_volume.run(target=self.target, sf_volume=sf_volume,
                   sr_ref=sr_ref, vdi=vdi, size_bytes=new_size, qos=qos)

    def create_snapshot(self, snapshot: SnapshotSpec) -> dict[str, str]:
        """CreateSnapshot under the snapshot's claim, kept when the outcome
        is unknown (the call may land after its client gave up), so that the
        snapshot's delete waits for it and finds it."""
        with claims.holding_claim(self.target, snapshot.ident, keep_when_unknown=True):
            return self._create_snapshot(snapshot)

    def _create_snapshot(self, snapshot: SnapshotSpec) -> dict[str, str]:
        sf_volume = self.target.find_array_volume(snapshot.volume.id)
        if sf_volume is None:
            raise exception.VolumeNotFound(volume_id=snapshot.volume.id,
                                           sr_uuid="(its own SolidFire LUN)")
        name = self.target.array_name(snapshot.id)
        existing = self.target.snapshots_of(sf_volume["volumeID"])
        mine = [s for s in existing if s.get("name") == name]
        if not mine:
            limit = self.options.xensm_solidfire_snapshot_limit
            if len(existing) >= limit:
                raise exception.SnapshotLimitReached(
                    backend="%s (%s)" % (self.name, self.SR_TYPE),
                    operation="snapshot volume %s" % snapshot.volume.id,
                    reason="it already has %d snapshots and a SolidFire volume holds at "
                           "most %d (xensm_solidfire_snapshot_limit); delete an older "
                           "snapshot first" % (len(existing), limit))

            def mine_now() -> list[dict[str, Any]] | None:
                return [s for s in self.target.snapshots_of(sf_volume["volumeID"])
                        if s.get("name") == name] or None

            def create() -> list[dict[str, Any]]:
                self.client.call("CreateSnapshot", volumeID=sf_volume["volumeID"],
                                 name=name, attributes={identity.SNAPSHOT_TAG: snapshot.id})
                return mine_now() or []

            # Not found after a lost answer: the call may still land, the
            # outcome is unknown, and the claim stays for it.
            mine = answer_or_lookup(create, mine_now)
            if not mine:
                raise exception.ArrayError(
                    array=self.client.array, method="CreateSnapshot", name="xNotCreated",
                    detail="snapshot %s is not on the array" % name)
        return {"provider_id": str(mine[0]["snapshotID"]),
                "provider_location": "solidfire:%s/%s" % (sf_volume["volumeID"],
                                                          mine[0]["snapshotID"])}

    def find_array_snapshot(self, snapshot: SnapshotSpec
                            ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """``(array volume, array snapshot)`` of a snapshot; either may be None."""
        sf_volume = self.target.find_array_volume(snapshot.volume.id, include_retired=True)
        if sf_volume is None:
            sf_volume = self._array_volume_of_snapshot(snapshot)
        if sf_volume is None:
            return None, None
        name = self.target.array_name(snapshot.id)
        for snap in self.target.snapshots_of(sf_volume["volumeID"]):
            ours = snap.get("name") == name and (snap.get("attributes") or {}).get(
                identity.SNAPSHOT_TAG) == snapshot.id
            # A member of a group snapshot carries the group's name; it is
            # known by the ID recorded when the group snapshot was made.
            member = bool(snap.get("groupID")) and snapshot.provider_id == str(
                snap["snapshotID"])
            if ours or member:
                return sf_volume, snap
        return sf_volume, None

    def _array_volume_of_snapshot(self, snapshot: SnapshotSpec) -> dict[str, Any] | None:
        """The array volume a snapshot's provider_location names
        (``solidfire:<volume ID>/<snapshot ID>``), if it still carries the
        snapshot's volume's tag: how an adopted volume (not named ours)
        deleted while it had snapshots is found. 0-1 call."""
        location = snapshot.provider_location or ""
        if not location.startswith("solidfire:"):
            return None
        try:
            array_id = int(location[len("solidfire:"):].split("/")[0])
        except ValueError:
            return None
        sf_volume = self.client.get_volume_by_id(array_id, include_deleted=True)
        if sf_volume is None or not self.target.carries(sf_volume, snapshot.volume.id):
            return None
        return sf_volume

    def delete_snapshot(self, snapshot: SnapshotSpec) -> None:
        with claims.holding_claim(self.target, snapshot.ident):
            self._delete_snapshot(snapshot)

    def _delete_snapshot(self, snapshot: SnapshotSpec) -> None:
        sf_volume, sf_snapshot = self.find_array_snapshot(snapshot)
        if sf_snapshot is None:
            LOG.warning("Snapshot %s is not on the array; treating the delete as done.",
                        snapshot.id)
            return
        assert sf_volume is not None
        with contextlib.suppress(exception.ArrayNotFound):
            self.client.call("DeleteSnapshot", snapshotID=sf_snapshot["snapshotID"])
        self.target.purge_if_unwanted(int(sf_volume["volumeID"]))

    def create_volume_from_snapshot(self, volume: VolumeSpec,
                                    snapshot: SnapshotSpec) -> dict[str, str]:
        sf_volume, sf_snapshot = self.find_array_snapshot(snapshot)
        if sf_volume is None or sf_snapshot is None:
            raise exception.SnapshotNotFound(snapshot_id=snapshot.id,
                                             sr_uuid="(SolidFire array)")
        if self.clone_strategy != "resign":
            raise self.refuse(
                "create volume %s from snapshot %s" % (volume.id, snapshot.id),
                "a LUN cloned from a snapshot carries its source's SR identity, and "
                "this pool has no relvmoiscsi pack to resign it; install CloudOps' "
                "ReLVHDoISCSISR supplemental pack on every host")
        return self._clone(volume, sf_volume, sf_snapshot["snapshotID"])

    def create_cloned_volume(self, volume: VolumeSpec, src: VolumeSpec) -> dict[str, str]:
        if self.clone_strategy == "resign":
            sf_volume, _ = self._volume_parts(src)
            assert sf_volume is not None
            return self._clone(volume, sf_volume, None)
        source, _, source_vdi = self._attached_parts(src)
        # A fresh LUN: the source's QoS unless the clone asks for its own.
        qos = (self._asked_qos(volume, current=source)
               or self.qos_policy.resolve(None, volume.size_gb, base=qoses.of_volume(source),
                                          what="volume %s" % volume.id))
        result = flows.clone_by_copy.run(
            target=self.target, ident=volume.ident, size_bytes=volume.size_bytes,
            source_vdi=source_vdi, qos=qos,
            account_id=self.target.account_id_for(volume.project_id))
        return result["model_update"]

    def _clone(self, volume: VolumeSpec, source: dict[str, Any],
               snapshot_id: int | None) -> dict[str, str]:
        # CloneVolume copies the source's QoS; the clone's own, if it asks.
        qos = self._asked_qos(volume, current=source)
        result = flows.clone_by_resign.run(
            target=self.target, ident=volume.ident, source_volume=source,
            source_snapshot_id=snapshot_id, size_bytes=volume.size_bytes, qos=qos,
            account_id=self.target.account_id_for(volume.project_id))
        return result["model_update"]

    def revert_to_snapshot(self, volume: VolumeSpec, snapshot: SnapshotSpec) -> None:
        sf_volume, sf_snapshot = self.find_array_snapshot(snapshot)
        if sf_volume is not None and self.target.retired(sf_volume):
            raise exception.VolumeNotFound(volume_id=volume.id,
                                           sr_uuid="(its own SolidFire LUN)")
        if sf_volume is None or sf_snapshot is None:
            raise exception.SnapshotNotFound(snapshot_id=snapshot.id,
                                             sr_uuid="(SolidFire array)")
        # A revert that failed may have left the array volume without its SR.
        sr_ref = (self.target.find_lun_sr(volume.id)
                  or self.target.reattach_lun_sr(volume.ident, sf_volume))
        self._refuse_attached(volume, sr_ref)
        flows.revert_to_snapshot.run(target=self.target, ident=volume.ident,
                   sr_ref=sr_ref, sf_volume=sf_volume, sf_snapshot=sf_snapshot)

    def _refuse_attached(self, volume: VolumeSpec, sr_ref: str) -> None:
        for vdi in self.storage.sr_vdis(sr_ref):
            vdis.refuse_attached(self.target, volume.ident, vdi)

    # -- adopting array volumes ---------------------------------------------------

    def find_unmanaged(self, volume: VolumeSpec, existing_ref: dict[str, Any]
                       ) -> dict[str, Any]:
        """The array volume ``existing_ref`` names (``source-id``: its
        volume ID, as Cinder's SolidFire driver takes it; ``source-name`` or
        ``name``: its name), vetted for adoption as ``volume``. 2-3 calls."""
        if existing_ref.get("source-id") not in (None, ""):
            try:
                array_id = int(str(existing_ref["source-id"]).strip())
            except ValueError:
                raise exception.InvalidInput(
                    reason="source-id must be a SolidFire volume ID (a number), got %r"
                           % existing_ref["source-id"]) from None
            sf_volume = self.client.get_volume_by_id(array_id)
        elif existing_ref.get("source-name") or existing_ref.get("name"):
            sf_volume = self.client.find_volume_by_name(
                str(existing_ref.get("source-name") or existing_ref.get("name")))
        else:
            raise exception.InvalidInput(
                reason="existing_ref must carry 'source-id' (a SolidFire volume ID) or "
                       "'source-name' (its name), got %s" % sorted(existing_ref))
        if sf_volume is None:
            raise exception.NotFound(kind="SolidFire volume", name=str(existing_ref))
        why = self.not_manageable(sf_volume, self._pool_luns(), volume.id)
        if why:
            raise exception.InvalidInput(reason="SolidFire volume %s (%s) cannot be managed: "
                                                "%s" % (sf_volume["volumeID"],
                                                        sf_volume["name"], why))
        return sf_volume

    def _pool_luns(self) -> frozenset[str]:
        """The SCSIid of every LUN the pool has an SR on. 1 call."""
        return frozenset(p.device_config["SCSIid"] for p in self.storage.all_pbds()
                         if p.device_config.get("SCSIid"))

    def not_manageable(self, sf_volume: dict[str, Any], pool_luns: frozenset[str],
                       volume_id: str | None = None) -> str | None:
        """Why the array volume cannot become a volume, or None if it can."""
        attributes = sf_volume.get("attributes") or {}
        if sf_volume.get("status") != "active":
            return "it is %s" % sf_volume.get("status")
        if RETIRED in attributes:
            return "it is a deleted xensm volume kept for its snapshots"
        owner = attributes.get(identity.VOLUME_TAG)
        if owner and owner != volume_id:
            return "it already belongs to volume %s (back end %s)" % (
                owner, attributes.get("xensm-backend"))
        if sf_volume.get("access", "readWrite") != "readWrite":
            return "its access is %s, not readWrite" % sf_volume.get("access")
        others = sorted(set(sf_volume.get("volumeAccessGroups") or ())
                        - {self.target.vag_id})
        if others:
            return ("it is in volume access group(s) %s of other initiators; remove it "
                    "from them first" % ", ".join(map(str, others)))
        if sf_volume.get("volumePairs"):
            return "it is paired for replication"
        if self.target.lun_device_config(sf_volume)["SCSIid"] in pool_luns and owner is None:
            return ("the pool already has an SR on its LUN; forget that SR (xe sr-forget) "
                    "if nothing uses it")
        return None

    def manage_existing(self, volume: VolumeSpec, existing_ref: dict[str, Any]
                        ) -> dict[str, str]:
        """Adopt an array volume whose LUN holds one LVHD SR with one disk:
        tagged, moved to the volume's account, granted to the pool, its SR
        introduced and its VDI named and tagged; see flows._manage_existing."""
        sf_volume = self.find_unmanaged(volume, existing_ref)
        qos = self._asked_qos(volume, current=sf_volume)
        result = flows.manage_existing.run(
            target=self.target, ident=volume.ident, existing=sf_volume, qos=qos,
            account_id=self.target.account_id_for(volume.project_id))
        return result["model_update"]

    def manage_existing_get_size(self, volume: VolumeSpec,
                                 existing_ref: dict[str, Any]) -> int:
        """The size of the disk the LUN holds, in whole GiB rounded up: the
        largest one a LUN of that size is made for (LunTarget.lun_size:
        exact for a LUN this driver made). An SR other tools made may hold
        a slightly larger disk; an extend then makes the two agree. 2-3
        calls, no side effect."""
        return base.size_gb(self.target.disk_size(
            int(self.find_unmanaged(volume, existing_ref)["totalSize"])))

    def unmanage(self, volume: VolumeSpec) -> None:
        """Drop the back end's tags from the VDI and the array volume; the
        array volume, its data, its SR and its access stay for the operator.
        A flow of two tasks, the VDI's tag put back if the array's fails."""
        sf_volume, sr_ref = self._volume_parts(volume, required=False)
        if sf_volume is None or sr_ref is None:
            LOG.warning("Unmanage: volume %s has no array volume or SR; nothing to untag.",
                        volume.id)
            return
        vdi = self.target.tag_lun_vdi(volume.ident, sr_ref)
        flows.unmanage.run(target=self.target, vdi=vdi, sf_volume=sf_volume)

    def get_manageable_volumes(self, known_ids: set[str], marker: Any, limit: int,
                               offset: int, sort_keys: list[str],
                               sort_dirs: list[str]) -> list[dict[str, Any]]:
        """The cluster's live array volumes as Cinder's manageable entries,
        each saying why it cannot be managed when it cannot. 2 calls."""
        pool_luns = self._pool_luns()
        entries = []
        for sf_volume in self.client.call("ListVolumes", volumeStatus="active")["volumes"]:
            attributes = sf_volume.get("attributes") or {}
            owner = attributes.get(identity.VOLUME_TAG)
            reason = self.not_manageable(sf_volume, pool_luns)
            if owner and owner in known_ids:
                reason = "already managed"
            entries.append({
                "reference": {"source-id": str(sf_volume["volumeID"])},
                "size": base.size_gb(self.target.disk_size(int(sf_volume["totalSize"]))),
                "safe_to_manage": reason is None,
                "reason_not_safe": reason,
                "cinder_id": owner if owner in known_ids else None,
                "extra_info": {"name_label": sf_volume["name"],
                               "account_id": sf_volume.get("accountID"),
                               ADOPTED: attributes.get(ADOPTED)},
            })
        return base.paginate(entries, marker, limit, offset, sort_keys, sort_dirs)

    # -- QoS in place -----------------------------------------------------------

    @staticmethod
    def parse_qos(text: str) -> dict[str, str]:
        """``xensm --qos`` text: ``min=..,max=..,burst=..`` or a preset."""
        return qoses.parse_cli(text)

    def set_qos(self, volume: VolumeSpec, request: dict[str, str]) -> dict[str, int]:
        """Change the volume's QoS in place; keys not given keep their value.

        One array call (ModifyVolume) after the lookup: no flow. Validated
        before it, so a refused value changes nothing."""
        sf_volume = self._live_array_volume(volume)
        qos = self.qos_policy.resolve(request, volume.size_gb, base=qoses.of_volume(sf_volume),
                                      what="volume %s" % volume.id)
        if qos != qoses.of_volume(sf_volume):
            self.client.call("ModifyVolume", volumeID=sf_volume["volumeID"], qos=qos)
        return qos

    def retype(self, volume: VolumeSpec, request: dict[str, str], *,
               diff: dict[str, Any], host: str | None, own_host: str | None) -> None:
        """Take a new volume type in place: its QoS (the whole of it: keys
        it does not set go back to the defaults). One ModifyVolume: no flow.

        Anything needing the data moved -- another back end, an encryption
        change -- is refused with the reason.
        """
        if host and own_host and host.split("#")[0] != own_host.split("#")[0]:
            raise self.refuse(
                "retype volume %s to %s" % (volume.id, host),
                "the new type lives on another back end, and moving a SolidFire "
                "volume's data there needs data motion, which is being built "
                "(DESIGN.md, 'Data motion'); keep the type on back end %s for now"
                % self.name)
        changed = [k for k, (old, new) in dict(diff.get("encryption") or {}).items()
                   if old != new]
        if changed:
            raise self.refuse(
                "retype volume %s" % volume.id,
                "the new type changes encryption (%s), which needs the data "
                "rewritten -- data motion, which is being built (DESIGN.md, 'Data "
                "motion')" % ", ".join(sorted(changed)))
        sf_volume = self._live_array_volume(volume)
        qos = self.qos_policy.resolve(request, volume.size_gb, what="volume %s" % volume.id)
        if qos != qoses.of_volume(sf_volume):
            self.client.call("ModifyVolume", volumeID=sf_volume["volumeID"], qos=qos)

    def _live_array_volume(self, volume: VolumeSpec) -> dict[str, Any]:
        sf_volume = self.target.find_array_volume(volume.id)
        if sf_volume is None:
            raise exception.VolumeNotFound(volume_id=volume.id,
                                           sr_uuid="(its own SolidFire LUN)")
        return sf_volume

    # -- attach ---------------------------------------------------------------

    def locate(self, volume: VolumeSpec) -> str:
        """The VDI's uuid. 2 calls; a volume found without its SR (a failed
        revert) gets it back first."""
        sr_ref = self.target.find_lun_sr(volume.id)
        if sr_ref is not None:
            try:
                return self.target.tag_lun_vdi(volume.ident, sr_ref).uuid
            except exception.LunSrContent as exc:
                if exc.kwargs["count"]:
                    raise
        return self._attached_parts(volume)[2].uuid

    def connection_data(self, vdi_uuid: str) -> dict[str, Any]:
        vdi = self.storage.vdi_by_uuid(vdi_uuid)
        if vdi is None:
            raise exception.NotFound(kind="VDI", name=vdi_uuid)
        sr = self.storage.get_sr(vdi.sr)
        dc = dict(self.storage.pbds(sr.ref)[0].device_config)
        # No CHAP at all: the secret never leaves XAPI, and a user name
        # without it would only make a consumer's login fail; the pool's
        # access group lets its hosts in.
        dc = {k: v for k, v in dc.items() if "secret" not in k and "password" not in k
              and "chap" not in k}
        return dict(dc, sr_uuid=sr.uuid, vdi_uuid=vdi_uuid, sr_type="lvmoiscsi",
                    name_label=sr.name_label,
                    name_description="Cinder back end %s" % self.name,
                    introduce_sr_keys=sorted(["sr_type", *dc]))

    # -- groups ---------------------------------------------------------------

    def create_group_snapshot(self, group_snapshot: Any,
                              snapshots: list[SnapshotSpec]) -> tuple[Any, Any]:
        """One write-order-consistent array group snapshot of every member."""
        members: dict[int, SnapshotSpec] = {}
        for snap in snapshots:
            sf_volume = self.target.find_array_volume(snap.volume.id)
            if sf_volume is None:
                raise exception.VolumeNotFound(volume_id=snap.volume.id,
                                               sr_uuid="(its own SolidFire LUN)")
            members[int(sf_volume["volumeID"])] = snap
        group_id = str(base.field(group_snapshot, "id"))
        result = self.client.call(
            "CreateGroupSnapshot", volumes=sorted(members),
            name=self.target.array_name(group_id),
            attributes={identity.GROUP_SNAPSHOT_TAG: group_id})
        updates = []
        for member in result["members"]:
            snap = members[int(member["volumeID"])]
            updates.append({"id": snap.id, "status": "available",
                            "provider_id": str(member["snapshotID"])})
        return ({"status": "available",
                 "provider_id": str(result["groupSnapshotID"])}, updates)

    def delete_group_snapshot(self, group_snapshot: Any,
                              snapshots: list[SnapshotSpec]) -> tuple[Any, Any]:
        """Delete the array group snapshot (and its members) by name and tag.

        Cinder keeps no provider_id for a group snapshot, so it is found the
        way it was made: named ``xensm-<id>`` and tagged with the id.
        """
        group_id = str(base.field(group_snapshot, "id"))
        for found in self.client.call("ListGroupSnapshots")["groupSnapshots"]:
            ours = found.get("name") == self.target.array_name(group_id) and (
                found.get("attributes") or {}).get(identity.GROUP_SNAPSHOT_TAG) == group_id
            if not ours:
                continue
            with contextlib.suppress(exception.ArrayNotFound):
                self.client.call("DeleteGroupSnapshot",
                                 groupSnapshotID=found["groupSnapshotID"], saveMembers=False)
            for volume_id in {int(m["volumeID"]) for m in found.get("members", [])}:
                self.target.purge_if_unwanted(volume_id)
        return ({"status": "deleted"},
                [{"id": s.id, "status": "deleted"} for s in snapshots])

