"""The SM-native back ends: one SR per back end, one VDI per volume.

nfs, lvm, lvmoiscsi, lvmohba, netapp and equal differ only in data -- their
device_config keys, capabilities, provisioning and storage protocol -- so
they share :class:`SRBackend` and each is a table row below. Every verb is a
taskflow flow from :mod:`.flows`, run on the back end's
:class:`~xensm_driver.flows.target.SRTarget`.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import ClassVar

from oslo_log import log as logging

from xensm_driver import coordination
from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.backends import base
from xensm_driver.backends.base import ConfigKey
from xensm_driver.backends.base import SnapshotSpec
from xensm_driver.backends.base import VolumeSpec
from xensm_driver.backends.sm import flows
from xensm_driver.backends.sm import space
from xensm_driver.flows import engine
from xensm_driver.flows import target as targets
from xensm_driver.flows import vdi as vdis
from xensm_driver.flows import vms as vms_flows
from xensm_driver.flows.target import SRTarget
from xensm_driver.xapi.storage import SR
from xensm_driver.xapi.storage import VDI
from xensm_driver.xapi.vms import VM

LOG = logging.getLogger(__name__)

#: The SM feature each capability needs from the SR's plugin.
SM_FEATURE = {
    base.SNAPSHOT: "VDI_SNAPSHOT",
    base.CLONE: "VDI_CLONE",
    base.REVERT: "VDI_CLONE",
    base.EXTEND: "VDI_RESIZE",
    base.ONLINE_EXTEND: "VDI_RESIZE_ONLINE",
}

_VHD = frozenset({base.SNAPSHOT, base.CLONE, base.REVERT, base.EXTEND, base.MANAGE,
                  base.VHD_CHAIN, base.SNAPSHOT_OF_SNAPSHOT, base.GROUP_SNAPSHOT})


#: Why a pool lacks the netapp and equal SM types.
_STORAGELINK_HINT = (
    " netapp and equal were StorageLink adapters of XenServer 5.6 to 6.0; no current "
    "XenServer or XCP-ng pool has them, so use this back end only with a pool that "
    "still does, or pick an SR type the pool offers (lvmoiscsi on the array's LUN).")


class SRBackend(base.GroupsAsRecords):
    """A back end whose volumes are VDIs on one SM-native SR."""

    #: Said after "not installed on this pool" when the SM type is missing.
    MISSING_SM_HINT: ClassVar[str] = ""
    GROUP_CONSISTENCY: ClassVar[str | None] = base.CONSISTENT_BY_PAUSE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sr: SR | None = None
        self._pool_uuid = ""

    # -- the SR ---------------------------------------------------------------

    @property
    def sr(self) -> SR:
        if self._sr is None:
            raise exception.XensmError(
                "Back end %s has no SR yet: do_setup has not run or failed." % self.name)
        return self._sr

    @property
    def sr_ref(self) -> str:
        return self.sr.ref

    @property
    def sr_uuid(self) -> str:
        return self.sr.uuid

    @property
    def target(self) -> SRTarget:
        """What the flows act on: the SR and what its SM type allows. Made
        afresh each time (a few microseconds), so it never outlives the SR
        record or the storage it names."""
        sr = self.sr
        return SRTarget(
            storage=self.storage, backend=self.name, sr_type=self.SR_TYPE,
            claim_holder=("SR", sr.ref), lease=targets.lease(
                self.options.xenapi_call_timeout),
            sr_ref=sr.ref, sr_uuid=sr.uuid,
            online_resize=self.can(base.ONLINE_EXTEND),
            snapshot_of_snapshot=self.can(base.SNAPSHOT_OF_SNAPSHOT),
            chain_limit=(self.options.xensm_snapshot_chain_limit
                         if self.can(base.VHD_CHAIN) else None))

    def snapshot_limit(self) -> int | None:
        """On VHD SRs, one less than the chain limit: each snapshot adds a
        base copy under the volume's leaf (until the SR coalesces it after a
        delete), and a snapshot is refused at ``xensm_snapshot_chain_limit``."""
        if not self.can(base.VHD_CHAIN):
            return None
        return int(self.options.xensm_snapshot_chain_limit) - 1

    def snapshot_space(self, volumes: Mapping[str, tuple[str | None, Mapping[str, str | None]]]
                       ) -> dict[str, Any]:
        """From the SR's VDI records (base copies included). 1 call.

        See :mod:`xensm_driver.backends.sm.space` for what the figures mean
        and why a VHD SR frees a deleted snapshot's space only after it
        coalesces."""
        vdis = self.storage.sr_vdis(self.sr.ref)
        out = {vol_id: space.volume_space(vdis, vdi_uuid, snaps)
               for vol_id, (vdi_uuid, snaps) in volumes.items()}
        vhd = self.can(base.VHD_CHAIN)
        # sm FileSR._loadvdis: virtual_allocation sums the size of every VDI
        # that is not hidden (volumes and snapshots; not base copies).
        notes = ["provisioned_capacity_gb is the SR's virtual_allocation: every volume "
                 "and every snapshot at its full virtual size, although a snapshot holds "
                 "only its own VHD."]
        if self.thin:
            notes.append(
                "This SR is thin, so Cinder's scheduler (and xensm's room check) admits a "
                "new volume while provisioned_capacity_gb stays under total x "
                "max_over_subscription_ratio: kept snapshots use up that room at their "
                "full size.")
        else:
            notes.append(
                "This SR is thick, so Cinder's scheduler reads free_capacity_gb (what "
                "the SR holds) and not the provisioned figure; snapshots count there at "
                "what they hold.")
        if vhd:
            notes.append(
                "A snapshot's own VHD is freed at once when it is deleted; its base copy "
                "only after the SR's garbage collector has coalesced it (in the "
                "background), and then only the blocks the newer layer had rewritten: "
                "XAPI does not report blocks, so 'frees' is a range.")
        if not self.thin:
            notes.append(
                "On this thick (LVHD) SR a volume's leaf is inflated to its full size, "
                "while snapshots and base copies are deflated to what they hold.")
        return {"volumes": out, "provisioned": space.provisioned(
            vdis, {u for u, _ in volumes.values() if u}), "notes": notes}

    @property
    def pool_uuid(self) -> str:
        """The uuid of the pool the SR is on (location_info names it):
        learnt by check, or else on first use. 1 call the first time."""
        if not self._pool_uuid:
            self._pool_uuid = self.storage.the_pool()[1]
        return self._pool_uuid

    @property
    def sr_name_label(self) -> str:
        return self.options.xensm_sr_name_label or "xensm-%s" % self.name

    @property
    def shared(self) -> bool:
        shared = self.options.xensm_sr_shared
        return self.SHARED if shared is None else bool(shared)

    def setup(self) -> None:
        """Find the configured SR, or create it. 1 call to find.

        Several services of one back end (a Cinder cluster) may start at
        once: the SR is created under a lock named after it, shared by all
        of them, and looked for again once the lock is held, so only one of
        them creates it and the others find it. 1 more call to look again.
        """
        if self._find_sr():
            return
        with self.locks.lock(coordination.lock_name("xensm", "sr", self.sr_name_label)):
            if self._find_sr():
                return
            self._create_sr()

    def _find_sr(self) -> bool:
        """Set the configured SR if it exists; fail if it is ambiguous or
        must exist and does not. 1 call."""
        uuid = self.options.xensm_sr_uuid
        found = self.storage.find_sr(uuid=uuid, name_label=None if uuid else self.sr_name_label)
        if len(found) > 1:
            raise exception.ConfigError(
                option="xensm_sr_name_label in [%s]" % self.options.section,
                reason="%d SRs are named %r (%s); set xensm_sr_uuid to the one to use"
                       % (len(found), self.sr_name_label, ", ".join(s.uuid for s in found)))
        if found:
            self._sr = found[0]
            return True
        if uuid:
            raise exception.SRNotFound(
                sr=uuid, reason="no SR has this uuid (xensm_sr_uuid in [%s])"
                % self.options.section)
        if not self.options.xensm_sr_create:
            raise exception.SRNotFound(
                sr=self.sr_name_label,
                reason="no SR has this name and xensm_sr_create is false in [%s]"
                       % self.options.section)
        return False

    def _create_sr(self) -> None:
        self.device_config()    # fail on a missing required option before any call
        self._require_sm_type()
        LOG.info("Creating %s SR %r for back end %s", self.SR_TYPE, self.sr_name_label,
                 self.name)
        pool = targets.Target(storage=self.storage, backend=self.name,
                              sr_type=self.SR_TYPE, claim_holder=("", ""), lease=0.0)
        secrets = flows.Secrets(self.secret_values())
        result = engine.run(flows.create_sr(sorted(secrets)), target=pool, secrets=secrets,
                            device_config=self.device_config(),
                            name_label=self.sr_name_label, shared=self.shared)
        self._sr = self.storage.get_sr(result["sr_ref"])

    def check(self) -> None:
        """Fail unless the SR is ours to use: type, plugged, capable. Learns
        the pool's uuid too (1 call), so stats need no more than theirs."""
        sr = self._sr = self.storage.get_sr(self.sr.ref)
        self._pool_uuid = self.storage.the_pool()[1]
        where = "[%s]" % self.options.section
        if sr.type != self.SR_TYPE:
            raise exception.ConfigError(
                option="xensm_sr_type in %s" % where,
                reason="SR %s (%s) is of type %s, not %s" % (
                    sr.uuid, sr.name_label, sr.type, self.SR_TYPE))
        pbds = self.storage.pbds(sr.ref)
        hosts = self.storage.hosts()
        unplugged = [p for p in pbds if not p.currently_attached]
        missing = [h for h in hosts if self.shared and h.ref not in {p.host for p in pbds}]
        if not pbds or unplugged or missing:
            names = {h.ref: h.name_label for h in hosts}
            detail = []
            if not pbds:
                detail.append("it has no PBD on any host")
            if unplugged:
                detail.append("unplugged on %s" % ", ".join(names.get(p.host, p.host)
                                                          for p in unplugged))
            if missing:
                detail.append("no PBD on %s" % ", ".join(h.name_label for h in missing))
            raise exception.XensmError(
                "SR %s (%s) of back end %s is not attached everywhere: %s. Plug it "
                "(xe pbd-plug) or repair it (xe sr-repair), then restart the back end."
                % (sr.uuid, sr.name_label, self.name, "; ".join(detail)))
        features = self._require_sm_type()
        lacking = sorted({SM_FEATURE[c] for c in self.CAPABILITIES if c in SM_FEATURE}
                         - features)
        if lacking:
            raise exception.XensmError(
                "The %s SM plugin of the pool lacks %s, which back end %s needs for "
                "its declared capabilities; upgrade the SM package or use another "
                "SR type." % (self.SR_TYPE, ", ".join(lacking), self.name))

    def _require_sm_type(self) -> frozenset[str]:
        """The pool's SM features for this SR type; fail plainly when the
        pool has no such plugin. 1 call."""
        features = self.storage.sm_features(self.SR_TYPE)
        if features is None:
            raise exception.ConfigError(
                option="xensm_sr_type in [%s]" % self.options.section,
                reason="SR type %s is not installed on this pool: its SM has no %s "
                       "plugin (XAPI answers SR_UNKNOWN_DRIVER; `xe sm-list` shows the "
                       "types it has).%s" % (self.SR_TYPE, self.SR_TYPE,
                                             self.MISSING_SM_HINT))
        return features

    def stats(self) -> dict[str, Any]:
        """Capacity figures from the SR. 3 calls."""
        cap = self.storage.capacity(self.sr.ref)
        gib = float(identity.GiB)
        return {
            "pool_name": self.sr.name_label,
            "total_capacity_gb": round(cap.physical_size / gib, 2),
            "free_capacity_gb": round(cap.free / gib, 2),
            "allocated_capacity_gb": round(cap.physical_utilisation / gib, 2),
            "provisioned_capacity_gb": round(cap.virtual_allocation / gib, 2),
            "thin_provisioning_support": self.thin,
            "thick_provisioning_support": not self.thin,
            "location_info": base.location_info(self.SR_TYPE, self.sr.uuid,
                                                self.pool_uuid),
        }

    def describe(self) -> base.StorageDescription:
        """The pool's hosts, the SR as setup or check read it, and its PBDs'
        device_config (secret keys left out). 2 calls."""
        sr = self.sr
        hosts = tuple(h.name_label for h in self.storage.hosts())
        pbds = self.storage.pbds(sr.ref)
        return base.StorageDescription(
            hosts=hosts, sr_uuid=sr.uuid, sr_name_label=sr.name_label, sr_type=sr.type,
            sr_shared=sr.shared,
            device_config=None if not pbds else {
                k: v for k, v in pbds[0].device_config.items()
                if "secret" not in k and "password" not in k})

    def connection_data(self, vdi_uuid: str) -> dict[str, Any]:
        """What a consumer needs to introduce the SR and find the VDI.

        Compatible with nova's xensm consumer; never a password or secret.
        """
        dc = self.device_config()
        return dict(dc, sr_uuid=self.sr.uuid, vdi_uuid=vdi_uuid, sr_type=self.SR_TYPE,
                    name_label=self.sr.name_label,
                    name_description="Cinder back end %s" % self.name,
                    introduce_sr_keys=sorted(["sr_type", *dc]))

    def locate(self, volume: VolumeSpec) -> str:
        """The uuid of the volume's VDI, tag checked: by provider_id, else by
        name. 1 call (2 if the provider_id is stale)."""
        vdi = vdis.find_vdi(self.target, volume.ident, volume.provider_id)
        if vdi is None:
            raise exception.VolumeNotFound(volume_id=volume.id, sr_uuid=self.sr.uuid)
        return vdi.uuid

    def replaced_provider_ids(self, volumes: list[VolumeSpec]) -> list[dict[str, str]]:
        """Follow reverts' swaps (identity.REPLACES_TAG) from each recorded
        provider_id to the VDI that is the volume now. 1 call for the SR,
        however many volumes."""
        recorded = {v.provider_id: v for v in volumes if v.provider_id}
        if not recorded:
            return []
        on_sr = self.storage.sr_vdis(self.sr.ref)
        present = {v.uuid for v in on_sr}
        updates = []
        for uuid, spec in sorted(recorded.items()):
            if uuid in present:
                continue
            current = vdis.pick([v for v in on_sr
                                 if uuid in identity.replaced(v.other_config)], spec.ident)
            if current is not None:
                updates.append({"id": spec.id,
                                **identity.model_update(self.sr.uuid, current.uuid)})
        return updates

    # -- reconcile ------------------------------------------------------------

    def holdings(self) -> list[base.Holding]:
        """Every VDI on the SR, hidden base copies and untagged ones included
        (reconcile reads their tags and counts what it checked), with its
        xensm tags. 1 call."""
        held = []
        for vdi in self.storage.sr_vdis(self.sr.ref):
            tags = {k: vdi.other_config[k] for k in (identity.VOLUME_TAG, identity.SNAPSHOT_TAG)
                    if k in vdi.other_config}
            held.append(base.Holding(
                "snapshot" if identity.SNAPSHOT_TAG in tags else "volume", vdi.uuid,
                vdi.name_label, tags, sr_uuid=self.sr.uuid, managed=vdi.managed))
        return held

    def remove_orphan_volume(self, held: base.Holding, keep: frozenset[str]) -> str:
        """Destroy the VDI ``held`` names after checking it again (see
        :meth:`_remove_orphan_vdi`). 3 calls, +1 per VBD."""
        return self._remove_orphan_vdi(
            held, identity.volume(held.tags[identity.VOLUME_TAG]), keep)

    def remove_orphan_snapshot(self, held: base.Holding, keep: frozenset[str]) -> str:
        """As :meth:`remove_orphan_volume`, for a snapshot's VDI."""
        return self._remove_orphan_vdi(
            held, identity.snapshot(held.tags[identity.SNAPSHOT_TAG]), keep)

    def _remove_orphan_vdi(self, held: base.Holding, ident: identity.Identity,
                           keep: frozenset[str]) -> str:
        """Destroy VDI ``held.uuid`` if, read again now, it is still on this
        back end's SR, visible and carrying ``ident``'s tag, recorded by
        no live object of the inventory (not in ``keep``) and attached to
        nothing. Read by its uuid; nothing is looked up by name. 3 calls,
        +1 per VBD."""
        def not_now(why: str) -> exception.InUse:
            return exception.InUse(kind="VDI", name=held.uuid, reason=why)

        vdi = self.storage.vdi_by_uuid(held.uuid)
        if vdi is None:
            raise not_now("it is already gone")
        if vdi.sr != self.sr.ref:
            raise not_now("it is no longer on SR %s" % self.sr.uuid)
        if not (vdi.managed and ident.matches(vdi.other_config)):
            raise not_now("it no longer carries the tag of %s %s" % (ident.kind, ident.id))
        if vdi.uuid in keep:
            raise not_now("the inventory now records it as a live volume's or "
                          "snapshot's VDI")
        if vdis.attached(self.target, vdi):
            raise not_now("it is attached to a VM")
        self.storage.destroy_vdi(vdi.ref)
        return "deleted VDI %s" % vdi.uuid

    # -- verbs ----------------------------------------------------------------

    def _run(self, verb: engine.Verb, **store: Any) -> dict[str, Any]:
        return verb.run(target=self.target, **store)

    def create_volume(self, volume: VolumeSpec) -> dict[str, str]:
        result = self._run(flows.create_volume, ident=volume.ident,
                           size_bytes=volume.size_bytes)
        return identity.model_update(self.sr.uuid, result["vdi"].uuid)

    def delete_volume(self, volume: VolumeSpec) -> None:
        self._run(flows.delete, ident=volume.ident,
                  provider_id=volume.provider_id, source_ident=volume.source)

    def extend_volume(self, volume: VolumeSpec, new_size_gb: int) -> None:
        self._run(flows.extend_volume, ident=volume.ident,
                  provider_id=volume.provider_id,
                  new_size_bytes=new_size_gb * identity.GiB)

    def create_snapshot(self, snapshot: SnapshotSpec) -> dict[str, str]:
        result = self._run(flows.create_snapshot, ident=snapshot.ident,
                           source_ident=snapshot.volume.ident,
                           source_provider_id=snapshot.volume.provider_id)
        return identity.model_update(self.sr.uuid, result["vdi"].uuid)

    def delete_snapshot(self, snapshot: SnapshotSpec) -> None:
        self._run(flows.delete, ident=snapshot.ident,
                  provider_id=snapshot.provider_id, source_ident=snapshot.volume.ident)

    def create_volume_from_snapshot(self, volume: VolumeSpec,
                                    snapshot: SnapshotSpec) -> dict[str, str]:
        return self._clone(volume, snapshot.ident, snapshot.provider_id)

    def create_cloned_volume(self, volume: VolumeSpec, src: VolumeSpec) -> dict[str, str]:
        return self._clone(volume, src.ident, src.provider_id)

    def _clone(self, volume: VolumeSpec, source: identity.Identity,
               source_provider_id: str | None) -> dict[str, str]:
        result = self._run(flows.clone_to_volume, ident=volume.ident,
                           source_ident=source, source_provider_id=source_provider_id,
                           new_size_bytes=volume.size_bytes)
        return identity.model_update(self.sr.uuid, result["vdi"].uuid)

    def revert_to_snapshot(self, volume: VolumeSpec,
                           snapshot: SnapshotSpec) -> dict[str, str]:
        """Swap a clone of the snapshot in (see flows.revert_to_snapshot): the volume's
        VDI gets a new uuid, returned as a model update. Cinder ignores it;
        the old provider_id still finds the volume (identity.REPLACES_TAG)
        and update_provider_info records the new one."""
        result = self._run(flows.revert_to_snapshot, ident=volume.ident,
                           provider_id=volume.provider_id, snapshot_ident=snapshot.ident,
                           snapshot_provider_id=snapshot.provider_id)
        return identity.model_update(self.sr.uuid, result["new_vdi"].uuid)

    # -- migration ------------------------------------------------------------

    def migrate_volume(self, volume: VolumeSpec, dest: base.Destination,
                       progress: Callable[[float], None] | None = None
                       ) -> dict[str, str] | None:
        """Move the volume's VDI into ``dest``'s SR when it is on this pool:
        detached with VDI.copy (then the source destroyed), attached with
        XAPI's live storage motion (VDI.pool_migrate). The VDI keeps the
        volume's name and tag and gets a new uuid (the model update names
        it, and lists the old one as replaced). {} when the volume is on
        that SR already; None when ``dest`` is on another pool or its pool
        is unknown (a generic copy is the way then). 2 calls to find the
        destination SR and the volume (+1 per VBD), then the flow's
        (flows.migrate_detached, flows.migrate_attached)."""
        if dest.sr_uuid == self.sr_uuid:
            return {}
        if dest.pool_uuid is None or dest.pool_uuid != self.pool_uuid:
            LOG.info("Volume %s: SR %s of back end %s is on pool %s, not on %s; no "
                     "storage-assisted move.", volume.id, dest.sr_uuid, dest.backend,
                     dest.pool_uuid or "(not named)", self.pool_uuid)
            return None
        found = self.storage.find_sr(uuid=dest.sr_uuid)
        if not found:
            raise exception.SRNotFound(
                sr=dest.sr_uuid, reason="back end %s reports it, but pool %s has no such "
                                        "SR" % (dest.backend, self.pool_uuid))
        dest_sr = found[0]
        if dest_sr.type != dest.sr_type:
            raise exception.InvalidInput(
                reason="SR %s is of type %s, not %s as back end %s reports" % (
                    dest_sr.uuid, dest_sr.type, dest.sr_type, dest.backend))
        dest_target = SRTarget(
            storage=self.storage, backend=dest.backend or dest_sr.name_label,
            sr_type=dest_sr.type, claim_holder=("SR", dest_sr.ref),
            lease=targets.lease(self.options.xenapi_call_timeout),
            sr_ref=dest_sr.ref, sr_uuid=dest_sr.uuid)
        target = self.target
        vdi = vdis.find_vdi(target, volume.ident, volume.provider_id)
        if vdi is None:
            raise exception.VolumeNotFound(volume_id=volume.id, sr_uuid=self.sr_uuid)
        verb = flows.migrate_attached if vdis.attached(target, vdi) else flows.migrate_detached
        LOG.info("Moving volume %s (VDI %s) from SR %s to SR %s of back end %s (%s).",
                 volume.id, vdi.uuid, self.sr_uuid, dest_sr.uuid, dest_target.backend,
                 "attached: live storage motion" if verb is flows.migrate_attached
                 else "detached: a copy")
        result = verb.run(target=target, dest=dest_target, ident=volume.ident,
                          source_vdi=vdi, task_timeout=self.options.xenapi_task_timeout,
                          progress=progress)
        return identity.model_update(dest_sr.uuid, result["new_vdi"].uuid)

    def adopt_migrated(self, volume: VolumeSpec,
                       new_volume: VolumeSpec) -> dict[str, str] | None:
        """Rename and re-tag ``new_volume``'s VDI as ``volume`` (Cinder
        keeps the original id once a generic migration completes). 3
        calls."""
        vdi = vdis.find_vdi(self.target, new_volume.ident, new_volume.provider_id)
        if vdi is None:
            raise exception.VolumeNotFound(volume_id=new_volume.id, sr_uuid=self.sr_uuid)
        tags = volume.ident.tags(vdi.other_config, replaces=identity.replaced(vdi.other_config))
        self.storage.set_vdi_identity(vdi.ref, volume.ident.name_label, tags)
        return identity.model_update(self.sr_uuid, vdi.uuid)

    # -- groups ---------------------------------------------------------------
    # A group is only a record here (base.GroupsAsRecords); what makes a
    # group snapshot consistent is that the VMs holding its volumes are
    # paused around the per-VDI snapshots (flows.group_snapshot).

    def create_group_snapshot(self, group_snapshot: Any,
                              snapshots: list[SnapshotSpec]) -> tuple[Any, Any]:
        """Every member at one instant: the running VMs that hold the
        volumes are paused (VM.pause) around the per-VDI snapshots, and
        unpaused even when a snapshot fails (flows.group_snapshot). Crash
        consistency, as a power cut would leave the disks: no guest
        quiescing. With N members held by M running VMs: 6N + 5M + 2
        calls (1 fewer when no member has a VBD, 1 more when one has a VHD
        parent)."""
        if not snapshots:
            return {"status": "available"}, []
        group_id = str(base.field(group_snapshot, "id"))
        target = self.target
        sources, paused = flows.find_group(
            target, [(s.volume.ident, s.volume.provider_id) for s in snapshots])
        store: dict[str, Any] = {"target": target, "group_snapshot_id": group_id,
                                 "paused_vms": paused}
        for i, (snap, vdi) in enumerate(zip(snapshots, sources, strict=True)):
            store["ident_%d" % i] = snap.ident
            store["source_vdi_%d" % i] = vdi
        for j, vm in enumerate(paused):
            store["vm_%d" % j] = vm
        if paused:
            LOG.info("Group snapshot %s of back end %s pauses VM(s) %s.", group_id,
                     self.name, ", ".join(v.uuid for v in paused))
        result = engine.run(flows.group_snapshot(len(snapshots), len(paused)), **store)
        updates = [{"id": snap.id, "status": "available",
                    **identity.model_update(self.sr.uuid, result["vdi_%d" % i].uuid)}
                   for i, snap in enumerate(snapshots)]
        return {"status": "available"}, updates

    def left_paused(self) -> list[VM]:
        """VMs carrying xensm's pause mark. 1 call (every VM record)."""
        return self.storage.vms.marked_paused()

    def finish_left_paused(self, vm: VM, alive: bool) -> str:
        """See flows.vms.finish_left_paused. 1-2 calls."""
        return vms_flows.finish_left_paused(self.target, vm, alive)

    def delete_group_snapshot(self, group_snapshot: Any,
                              snapshots: list[SnapshotSpec]) -> tuple[Any, Any]:
        """Delete every member snapshot (2 calls each); a member already
        gone counts as deleted."""
        for snap in snapshots:
            self.delete_snapshot(snap)
        return ({"status": "deleted"},
                [{"id": s.id, "status": "deleted"} for s in snapshots])

    # -- manage ---------------------------------------------------------------

    def find_unmanaged(self, volume: VolumeSpec, existing_ref: dict[str, Any]) -> VDI:
        """The VDI ``existing_ref`` names, vetted for adoption as ``volume``."""
        if existing_ref.get("source-id"):
            vdi = self.storage.vdi_by_uuid(str(existing_ref["source-id"]))
            candidates = [vdi] if vdi else []
        elif existing_ref.get("source-name"):
            candidates = self.storage.find_vdis(self.sr.ref, str(existing_ref["source-name"]))
        else:
            raise exception.InvalidInput(
                reason="existing_ref must carry 'source-id' (a VDI uuid) or "
                       "'source-name' (a VDI name label), got %s" % sorted(existing_ref))
        candidates = [v for v in candidates if v.sr == self.sr.ref]
        if not candidates:
            raise exception.NotFound(kind="VDI", name="%s on SR %s" % (
                existing_ref, self.sr.uuid))
        if len(candidates) > 1:
            raise exception.InvalidInput(
                reason="%d VDIs on SR %s match %s; name it by 'source-id'" % (
                    len(candidates), self.sr.uuid, existing_ref))
        vdi = candidates[0]
        why = self.not_manageable(vdi, volume.id)
        if why:
            raise exception.InvalidInput(reason="VDI %s cannot be managed: %s" % (vdi.uuid, why))
        return vdi

    @staticmethod
    def not_manageable(vdi: VDI, volume_id: str | None = None) -> str | None:
        """Why the VDI cannot become a volume, or None if it can."""
        if not vdi.managed:
            return "it is a hidden VHD base copy"
        if vdi.is_a_snapshot:
            return "it is a snapshot"
        if vdi.type != "user":
            return "it is a %s VDI, not a user disk" % vdi.type
        owner = vdi.other_config.get(identity.VOLUME_TAG)
        if owner and owner != volume_id:
            return "it already belongs to volume %s" % owner
        if vdi.other_config.get(identity.SNAPSHOT_TAG):
            return "it belongs to snapshot %s" % vdi.other_config[identity.SNAPSHOT_TAG]
        return None

    def manage_existing(self, volume: VolumeSpec, existing_ref: dict[str, Any]) -> dict[str, str]:
        vdi = self.find_unmanaged(volume, existing_ref)
        self._run(flows.manage_existing, ident=volume.ident, vdi=vdi,
                  new_size_bytes=base.size_gb(vdi.virtual_size) * identity.GiB)
        return identity.model_update(self.sr.uuid, vdi.uuid)

    def manage_existing_get_size(self, volume: VolumeSpec, existing_ref: dict[str, Any]) -> int:
        return base.size_gb(self.find_unmanaged(volume, existing_ref).virtual_size)

    def unmanage(self, volume: VolumeSpec) -> None:
        """Drop the volume's tag; the VDI and its data stay on the SR."""
        vdi = vdis.find_vdi(self.target, volume.ident, volume.provider_id)
        if vdi is None:
            LOG.warning("Unmanage: volume %s has no VDI on SR %s", volume.id, self.sr.uuid)
            return
        tags = {k: v for k, v in vdi.other_config.items() if k != identity.VOLUME_TAG}
        self.storage.set_vdi_other_config(vdi.ref, tags)

    def get_manageable_volumes(self, known_ids: set[str], marker: Any, limit: int,
                               offset: int, sort_keys: list[str],
                               sort_dirs: list[str]) -> list[dict[str, Any]]:
        """The SR's user-visible VDIs as Cinder's manageable entries. 1 call."""
        entries = []
        for vdi in self.storage.sr_vdis(self.sr.ref):
            if not vdi.managed:
                continue            # hidden VHD base copies are nobody's volume
            owner = vdi.other_config.get(identity.VOLUME_TAG)
            reason = self.not_manageable(vdi)
            if owner and owner in known_ids:
                reason = "already managed"
            entries.append({
                "reference": {"source-id": vdi.uuid},
                "size": base.size_gb(vdi.virtual_size),
                "safe_to_manage": reason is None,
                "reason_not_safe": reason,
                "cinder_id": owner if owner in known_ids else None,
                "extra_info": {"name_label": vdi.name_label, "sr_uuid": self.sr.uuid},
            })
        return base.paginate(entries, marker, limit, offset, sort_keys, sort_dirs)


def _iscsi_keys() -> tuple[ConfigKey, ...]:
    return (
        ConfigKey("target", "xensm_iscsi_target", required=True),
        ConfigKey("port", "xensm_iscsi_port"),
        ConfigKey("targetIQN", "xensm_iscsi_target_iqn", required=True),
        ConfigKey("SCSIid", "xensm_iscsi_scsi_id", required=True),
        ConfigKey("chapuser", "xensm_iscsi_chap_user"),
        ConfigKey("chappassword", "xensm_iscsi_chap_password", secret=True),
    )


class NFSBackend(SRBackend):
    SR_TYPE: ClassVar[str] = "nfs"
    CAPABILITIES: ClassVar[frozenset[str]] = _VHD | {base.THIN}
    STORAGE_PROTOCOL: ClassVar[str] = "NFS"
    CONFIG_KEYS: ClassVar[tuple[ConfigKey, ...]] = (
        ConfigKey("server", "xensm_nfs_server", required=True),
        ConfigKey("serverpath", "xensm_nfs_serverpath", required=True),
        ConfigKey("nfsversion", "xensm_nfs_version"),
        ConfigKey("options", "xensm_nfs_options"),
    )


class LVMBackend(SRBackend):
    SR_TYPE: ClassVar[str] = "lvm"
    CAPABILITIES: ClassVar[frozenset[str]] = _VHD
    STORAGE_PROTOCOL: ClassVar[str] = "SCSI"
    SHARED: ClassVar[bool] = False
    CONFIG_KEYS: ClassVar[tuple[ConfigKey, ...]] = (
        ConfigKey("device", "xensm_lvm_device", required=True),
    )


class LVMoISCSIBackend(SRBackend):
    SR_TYPE: ClassVar[str] = "lvmoiscsi"
    CAPABILITIES: ClassVar[frozenset[str]] = _VHD
    STORAGE_PROTOCOL: ClassVar[str] = "iSCSI"
    CONFIG_KEYS: ClassVar[tuple[ConfigKey, ...]] = _iscsi_keys()


class LVMoHBABackend(SRBackend):
    SR_TYPE: ClassVar[str] = "lvmohba"
    CAPABILITIES: ClassVar[frozenset[str]] = _VHD
    STORAGE_PROTOCOL: ClassVar[str] = "FC"
    CONFIG_KEYS: ClassVar[tuple[ConfigKey, ...]] = (
        ConfigKey("SCSIid", "xensm_hba_scsi_id", required=True),
    )


class NetAppBackend(SRBackend):
    """NetApp FlexVol LUNs: snapshots and clones on the array, no VHD chain.

    A StorageLink adapter of XenServer 5.6-6.0: current pools lack it.
    """

    SR_TYPE: ClassVar[str] = "netapp"
    MISSING_SM_HINT: ClassVar[str] = _STORAGELINK_HINT
    CAPABILITIES: ClassVar[frozenset[str]] = (_VHD - {base.VHD_CHAIN}) | {base.THIN}
    STORAGE_PROTOCOL: ClassVar[str] = "iSCSI"
    CONFIG_KEYS: ClassVar[tuple[ConfigKey, ...]] = (
        ConfigKey("target", "xensm_netapp_target", required=True),
        ConfigKey("username", "xensm_netapp_username", required=True),
        ConfigKey("password", "xensm_netapp_password", required=True, secret=True),
        ConfigKey("aggregate", "xensm_netapp_aggregate", required=True),
        ConfigKey("FlexVols", "xensm_netapp_flexvols"),
    )


class EqualLogicBackend(SRBackend):
    """EqualLogic volumes: array snapshots and clones, no snapshot of a snapshot.

    A StorageLink adapter of XenServer 5.6-6.0: current pools lack it.
    """

    SR_TYPE: ClassVar[str] = "equal"
    MISSING_SM_HINT: ClassVar[str] = _STORAGELINK_HINT
    CAPABILITIES: ClassVar[frozenset[str]] = (
        _VHD - {base.VHD_CHAIN, base.SNAPSHOT_OF_SNAPSHOT}) | {base.THIN}
    STORAGE_PROTOCOL: ClassVar[str] = "iSCSI"
    CONFIG_KEYS: ClassVar[tuple[ConfigKey, ...]] = (
        ConfigKey("target", "xensm_eql_target", required=True),
        ConfigKey("username", "xensm_eql_username", required=True),
        ConfigKey("password", "xensm_eql_password", required=True, secret=True),
        ConfigKey("storagepool", "xensm_eql_storagepool", required=True),
    )
