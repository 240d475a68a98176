"""What a back end is: declared as data, refused centrally.

A back end is a class with an SR type, a frozenset of capabilities, the
device_config keys it builds from options, a Cinder storage protocol, and
one method per verb. :meth:`Backend.require` is the one place a verb the
back end cannot do is refused -- before any storage is touched, with a
message that says why and what to do. A unit test checks that the declared
capabilities and the implemented verbs agree.

Back ends are found by SR type through the ``xensm_driver.backends`` entry
point group (stevedore), so a third party adds an SR family with a module
and an entry point.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import IO
from typing import Any
from typing import ClassVar

from stevedore import driver as stevedore_driver

from xensm_driver import config
from xensm_driver import coordination
from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.xapi import transfer
from xensm_driver.xapi.backup import BackupAccess
from xensm_driver.xapi.storage import VDI
from xensm_driver.xapi.storage import Storage
from xensm_driver.xapi.vms import PAUSED_BY_KEY as PAUSED_BY
from xensm_driver.xapi.vms import VBD
from xensm_driver.xapi.vms import VM

ENTRY_POINT_GROUP = "xensm_driver.backends"

#: ``progress(bytes_done, bytes_total)`` of :meth:`Backend.write_volume` and
#: :meth:`Backend.read_volume`; and the chunk size their callers read in.
Progress = transfer.Progress
CHUNK = transfer.CHUNK

# Capabilities, as sm's CAPABILITIES strings are: names a back end declares.
THIN = "thin"
SNAPSHOT = "snapshot"
CLONE = "clone"
REVERT = "revert"
EXTEND = "extend"
ONLINE_EXTEND = "online_extend"
MANAGE = "manage"
GROUP_SNAPSHOT = "group_snapshot"
SNAPSHOT_OF_SNAPSHOT = "snapshot_of_snapshot"
VHD_CHAIN = "vhd_chain"
#: Per-volume QoS set on the storage, changed in place (retype, set_qos).
QOS = "qos"

#: How a back end makes a group snapshot consistent -- every volume of the
#: group as it was at one instant, as a crash or power cut would leave
#: them (crash consistency: no guest quiescing; XenServer removed VSS
#: quiescing in 8.1). Back ends declare one in ``GROUP_CONSISTENCY``.
CONSISTENT_BY_ARRAY = "array"          # one group snapshot on the array
CONSISTENT_BY_PAUSE = "paused-vms"     # the VMs holding the volumes paused around it

#: The capability each optional verb needs.
VERB_CAPABILITY: Mapping[str, str] = {
    "create_snapshot": SNAPSHOT,
    "delete_snapshot": SNAPSHOT,
    "create_volume_from_snapshot": CLONE,
    "create_cloned_volume": CLONE,
    "revert_to_snapshot": REVERT,
    "extend_volume": EXTEND,
    "manage_existing": MANAGE,
    "manage_existing_get_size": MANAGE,
    "unmanage": MANAGE,
    "get_manageable_volumes": MANAGE,
    "retype": QOS,
    "set_qos": QOS,
    "create_group": GROUP_SNAPSHOT,
    "delete_group": GROUP_SNAPSHOT,
    "update_group": GROUP_SNAPSHOT,
    "create_group_snapshot": GROUP_SNAPSHOT,
    "delete_group_snapshot": GROUP_SNAPSHOT,
}

#: What to tell an operator when a capability is missing.
_WHY_NOT = {
    SNAPSHOT: "its SR type has no snapshots",
    CLONE: "its SR type cannot clone VDIs",
    REVERT: "its SR type cannot revert a VDI to a snapshot",
    EXTEND: "its SR type cannot resize VDIs",
    MANAGE: "it cannot adopt existing VDIs",
    QOS: "it sets no per-volume QoS on its storage",
    GROUP_SNAPSHOT: ("it has no write-order-consistent multi-volume snapshot; "
                     "use a generic (non-consistent) group, which Cinder "
                     "snapshots volume by volume"),
}


#: The VM other_config key xensm holds while a group snapshot pauses the VM.
PAUSED_BY_KEY = PAUSED_BY


@dataclasses.dataclass(frozen=True)
class VMDisk:
    """One disk of a VM: its VBD and the uuid of the VDI it holds."""

    vbd: VBD
    vdi_uuid: str


@dataclasses.dataclass(frozen=True)
class ConfigKey:
    """A device_config key and the option it comes from."""

    key: str
    option: str
    required: bool = False
    secret: bool = False


@dataclasses.dataclass(frozen=True)
class VolumeSpec:
    """The part of a Cinder volume a back end needs."""

    id: str
    size_gb: int
    provider_id: str | None = None
    provider_location: str | None = None
    display_name: str = ""
    #: What the volume was cloned from (Cinder's source_volid or
    #: snapshot_id), when it was: a copy whose answer was lost still
    #: carries the source's name, and a delete looks there too.
    source: identity.Identity | None = None
    #: The QoS asked for the volume, as raw key/values (its type's QoS specs
    #: or extra specs, its ``sf-qos`` metadata, ``xensm --qos``); None: none.
    qos: Mapping[str, str] | None = None
    #: The Cinder project owning the volume (an array account per project).
    project_id: str | None = None

    @property
    def ident(self) -> identity.Identity:
        return identity.volume(self.id)

    @property
    def size_bytes(self) -> int:
        return self.size_gb * identity.GiB


@dataclasses.dataclass(frozen=True)
class SnapshotSpec:
    """The part of a Cinder snapshot a back end needs."""

    id: str
    volume: VolumeSpec
    provider_id: str | None = None
    provider_location: str | None = None
    volume_size_gb: int = 0

    @property
    def ident(self) -> identity.Identity:
        return identity.snapshot(self.id)


@dataclasses.dataclass(frozen=True)
class Holding:
    """One object a back end holds: what ``reconcile`` compares with the
    inventory (:meth:`Backend.holdings`).

    On an SM back end, each VDI of its SR (tagged or not: reconcile counts
    what it checked). On SolidFire, where no one SR lists them all, each
    tagged array volume and array snapshot.

    ``uuid`` is its exact identity, as a record's provider_id names it (a
    VDI; an array snapshot's ID) or, for an array volume that has no VDI,
    ``array-volume-<ID>``. ``tags`` are the xensm tags it carries.
    """

    kind: str                              # "volume" or "snapshot"
    uuid: str
    name_label: str
    tags: Mapping[str, str]
    array_id: int = 0                      # the array volume (of a snapshot: its own
    volume_array_id: int = 0               # ID); the array volume it is, or is on;
    sr_uuid: str | None = None             # 0 for a VDI of an SM SR
    retired: bool = False
    #: A volume's array snapshots, by ID.
    snapshots: tuple[str, ...] = ()
    managed: bool = True                   # as a VDI: reconcile reads both alike

    @property
    def other_config(self) -> Mapping[str, str]:
        return self.tags


@dataclasses.dataclass(frozen=True)
class StorageDescription:
    """What ``xensm check`` shows of a back end's storage; never a secret."""

    #: The name labels of the pool's hosts.
    hosts: tuple[str, ...]
    #: The back end's one SR, if it has one (SolidFire has an SR per volume).
    sr_uuid: str | None = None
    sr_name_label: str = ""
    sr_type: str = ""
    sr_shared: bool = False
    #: The device_config the SR's PBDs were made with (one PBD's: a shared
    #: SR's are alike), keys that hold or name a secret left out; None
    #: when it has no PBD.
    device_config: Mapping[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class Destination:
    """Another back end's SR a volume may move to, as that back end's
    ``location_info`` names it (:func:`location_info`)."""

    backend: str
    sr_type: str
    sr_uuid: str
    #: The pool the SR is on; None when the location names none (an older
    #: driver's), so a move through XAPI cannot be proven possible.
    pool_uuid: str | None


#: location_info of an SM back end: ``xensm:<sr_type>:<sr_uuid>:<pool_uuid>``.
#: Older drivers reported ``xensm:<sr_type>:<sr_uuid>``; SolidFire reports
#: ``xensm:solidfire:<url>``.
LOCATION_PREFIX = "xensm"


def location_info(sr_type: str, sr_uuid: str, pool_uuid: str) -> str:
    """An SM back end's location_info: its SR and the pool it is on."""
    return ":".join((LOCATION_PREFIX, sr_type, sr_uuid, pool_uuid))


def parse_location_info(text: Any, backend: str = "") -> Destination | None:
    """The destination a location_info names, or None when it is no xensm
    SR's (another driver's, SolidFire's array URL)."""
    if not isinstance(text, str):
        return None
    parts = text.split(":")
    if len(parts) not in (3, 4) or parts[0] != LOCATION_PREFIX or not parts[2]:
        return None
    if parts[1] == "solidfire":
        return None
    return Destination(backend=backend, sr_type=parts[1], sr_uuid=parts[2],
                       pool_uuid=parts[3] if len(parts) == 4 and parts[3] else None)


def field(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a Cinder object (attribute) or of a plain dict (key)."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def size_gb(size_bytes: int) -> int:
    """Whole GiB that hold ``size_bytes`` (Cinder sizes are GiB)."""
    return max(1, math.ceil(size_bytes / identity.GiB))


class Backend:
    """One SR family. Subclasses declare the class attributes below."""

    SR_TYPE: ClassVar[str]
    CAPABILITIES: ClassVar[frozenset[str]]
    STORAGE_PROTOCOL: ClassVar[str]
    CONFIG_KEYS: ClassVar[tuple[ConfigKey, ...]] = ()
    #: Whether the SR is shared by the pool unless xensm_sr_shared says.
    SHARED: ClassVar[bool] = True
    #: How the back end makes a group (or VM) snapshot consistent, or None
    #: when it cannot: then its members are snapshotted one by one, each at
    #: its own instant (see CONSISTENT_BY_ARRAY, CONSISTENT_BY_PAUSE).
    GROUP_CONSISTENCY: ClassVar[str | None] = None

    def __init__(self, options: config.Options, storage: Storage,
                 locks: coordination.Locks | None = None) -> None:
        self.options = options
        self.storage = storage
        #: Inter-process locks (Cinder's coordination under cinder-volume):
        #: setup finds or creates shared storage under one.
        self.locks = locks or coordination.Locks(
            lock_path=options.values.get("xensm_lock_path"))

    @property
    def name(self) -> str:
        return self.options.backend_name

    @property
    def thin(self) -> bool:
        return THIN in self.CAPABILITIES

    def can(self, capability: str) -> bool:
        return capability in self.CAPABILITIES

    def require(self, verb: str) -> None:
        """Refuse ``verb`` if this back end lacks its capability."""
        capability = VERB_CAPABILITY.get(verb)
        if capability is not None and capability not in self.CAPABILITIES:
            raise exception.UnsupportedOperation(
                backend="%s (%s)" % (self.name, self.SR_TYPE), operation=verb,
                reason=_WHY_NOT.get(capability, "it lacks %s" % capability))

    def refuse(self, operation: str, reason: str) -> exception.UnsupportedOperation:
        """The exception for an operation this back end refuses for a reason."""
        return exception.UnsupportedOperation(
            backend="%s (%s)" % (self.name, self.SR_TYPE), operation=operation,
            reason=reason)

    def snapshot_limit(self) -> int | None:
        """The most snapshots one volume may hold at once here, or None for
        no limit of the back end's own (what schedules' retention stays under)."""
        return None

    def snapshot_space(self, volumes: Mapping[str, tuple[str | None, Mapping[str, str | None]]]
                       ) -> dict[str, Any]:
        """What each volume's snapshots hold and what deleting one frees, as
        far as this back end can tell, and the provisioned figure Cinder's
        scheduler reads, with what it counts.

        ``volumes``: volume id -> (its provider_id, {snapshot id: its
        provider_id}). Returns ``{"volumes": {id: ...}, "provisioned": ...,
        "notes": [...]}``.
        """
        raise self.refuse("report snapshot space", "it reports no per-snapshot figures")

    def attached(self, vdi: VDI) -> bool:
        """Whether any VBD of the VDI is attached to a VM. 1 call per VBD."""
        return self.storage.any_attached(vdi.vbds)

    @property
    def sr_uuid(self) -> str | None:
        """The uuid of the back end's one SR; None when it has none (an SR
        per volume). No call."""
        return None

    def describe(self) -> StorageDescription:
        """The pool's hosts and the back end's SR, for ``xensm check``."""
        raise NotImplementedError

    def is_attached(self, vdi_uuid: str) -> bool:
        """Whether the VDI with this uuid is attached to a VM; False when
        there is no such VDI. 1 call, +1 per VBD."""
        vdi = self.storage.vdi_by_uuid(vdi_uuid)
        return vdi is not None and self.attached(vdi)

    # -- the data path --------------------------------------------------------
    # The same for every family (a volume's VDI is on some SR of the pool),
    # so it is implemented once, here: XAPI's raw HTTP data path
    # (xapi/transfer.py), streamed, never staged on disk.

    def write_volume(self, vdi_uuid: str, chunks: IO[bytes] | Iterable[bytes], *, size: int,
                     progress: Progress | None = None) -> int:
        """Write ``size`` bytes of ``chunks`` (byte chunks, or a binary file)
        into the VDI from offset 0
        (``PUT /import_raw_vdi``); returns the byte count. 1 call for the
        task, the transfer, then 1 call per poll of the task until it ends
        and 1 to destroy it. The caller has found the VDI (:meth:`locate`,
        or its record's provider_id) and refused an attached one."""
        return transfer.upload(self.storage.pool, vdi_uuid, chunks, size=size,
                               progress=progress,
                               timeout=self.options.xenapi_task_timeout)

    def read_volume(self, volume_id: str, vdi_uuid: str, *, length: int | None = None,
                    progress: Progress | None = None) -> Iterator[bytes]:
        """Volume ``volume_id``'s VDI content (``GET /export_raw_vdi``): its
        whole virtual size, or its first ``length`` bytes, as chunks the
        caller pulls. 1 call now (the VDI's size; VolumeNotFound when it is
        gone); then, as the caller pulls, 1 for the task, the transfer, and
        the task's polls and destroy (or cancel, when stopped early)."""
        vdi = self.storage.vdi_by_uuid(vdi_uuid)
        if vdi is None:
            raise exception.VolumeNotFound(
                volume_id=volume_id, sr_uuid=self.sr_uuid or "(any: %s has an SR per "
                                                            "volume)" % self.name)
        return transfer.export_chunks(self.storage.pool, vdi_uuid, size=vdi.virtual_size,
                                      length=length, progress=progress,
                                      timeout=self.options.xenapi_task_timeout)

    def backup_access(self) -> BackupAccess:
        """The XAPI calls backups make on the back end's SR
        (``service/backup.py``: CBT snapshots, changed blocks, NBD reads,
        chunked writes). No call. Refused for a back end with no SR of its
        own (SolidFire: one SR per volume)."""
        if self.sr_uuid is None:
            raise self.refuse("back up volumes", "its volumes have no SR of the back end's "
                                                 "own (one SR per volume); not supported yet")
        return BackupAccess(self.storage, self.sr_uuid,
                            timeout=self.options.xenapi_task_timeout)

    # -- reconcile --------------------------------------------------------------
    # ``xensm reconcile`` compares holdings() with the inventory, and removes
    # what the inventory proves is its own orphan through the two methods
    # below, under the claim of the record whose tag it carries. Each checks
    # again, just before it destroys anything, by exact identity; nothing is
    # looked up by name.

    def holdings(self) -> list[Holding]:
        """Every object of this back end, for ``reconcile``."""
        raise NotImplementedError

    def remove_orphan_volume(self, held: Holding, keep: frozenset[str]) -> str:
        """Remove the volume ``held`` names if it still is that: still
        there, still carrying the volume tag in ``held.tags``, attached to
        nothing, and nothing of it in ``keep`` (the ids and provider_ids of
        every live volume and snapshot the inventory records, but the one
        the tag names). Returns what was done;
        :class:`~xensm_driver.exception.InUse` says why not."""
        raise NotImplementedError

    def remove_orphan_snapshot(self, held: Holding, keep: frozenset[str]) -> str:
        """Remove the snapshot ``held`` names if it still is that (as
        :meth:`remove_orphan_volume`, with the snapshot tag)."""
        raise NotImplementedError

    # -- VMs (VM snapshots), the pool's whatever the family ---------------------

    def find_vms(self, name_or_uuid: str) -> list[VM]:
        """Guests (no control domain, snapshot or template) with this uuid or
        name label. 1 call."""
        return self.storage.vms.find(name_or_uuid)

    def vm_disks(self, vm: VM) -> list[VMDisk]:
        """The VM's disks (disk VBDs that hold a VDI), by userdevice. 1 call,
        +1 per disk."""
        return [VMDisk(vbd, self.storage.get_vdi(vbd.vdi).uuid)
                for vbd in self.storage.vms.vbds_of_vm(vm.ref)
                if vbd.type == "Disk" and not vbd.empty]

    def plug_back(self, vm: VM, disk: VMDisk, vdi_uuid: str) -> bool:
        """Give the VM a VBD on VDI ``vdi_uuid`` in ``disk``'s slot
        (userdevice, mode, bootable) when the VDI has none: after an SM
        revert swapped a new VDI in (XAPI destroys a VDI's VBDs with it,
        xen-api xapi_vdi.ml destroy), or a SolidFire revert re-introduced
        the LUN's SR (SR.forget drops its VDIs' records and VBDs). Whether
        one was made. 1-2 calls."""
        vdi = self.storage.vdi_by_uuid(vdi_uuid)
        if vdi is None or vdi.vbds:
            return False
        self.storage.vms.create_vbd(vm.ref, vdi.ref, disk.vbd.userdevice,
                                    mode=disk.vbd.mode, bootable=disk.vbd.bootable)
        return True

    # -- VMs a group snapshot paused, for reconcile ---------------------------

    def left_paused(self) -> list[VM]:
        """VMs carrying xensm's pause mark (a group snapshot cut off while
        they were paused). None unless the back end pauses VMs."""
        return []

    def finish_left_paused(self, vm: VM, alive: bool) -> str:
        """Unpause ``vm`` and take its mark off unless its group snapshot is
        still running (``alive``); what was done."""
        raise self.refuse("unpause VMs", "it never pauses any")

    # -- what every back end implements ---------------------------------------

    def setup(self) -> None:
        """Find or create the back end's storage (do_setup)."""
        raise NotImplementedError

    def check(self) -> None:
        """Fail with a clear message unless the storage is usable."""
        raise NotImplementedError

    def stats(self) -> dict[str, object]:
        """Capacity and provisioning figures for Cinder's scheduler."""
        raise NotImplementedError

    def create_volume(self, volume: VolumeSpec) -> dict[str, str]:
        raise NotImplementedError

    def delete_volume(self, volume: VolumeSpec) -> None:
        raise NotImplementedError

    def replaced_provider_ids(self, volumes: list[VolumeSpec]) -> list[dict[str, str]]:
        """Model updates (with ``id``) for volumes whose recorded provider_id
        names a VDI that was replaced (an SM revert). None by default: only
        back ends that replace VDIs have any."""
        return []

    def locate(self, volume: VolumeSpec) -> str:
        """The uuid of the volume's VDI."""
        raise NotImplementedError

    # -- data motion ----------------------------------------------------------

    def migrate_volume(self, volume: VolumeSpec, dest: Destination,
                       progress: Callable[[float], None] | None = None
                       ) -> dict[str, str] | None:
        """Move the volume to ``dest`` through the storage itself: the model
        update (``{}`` when it is there already), or None when this back end
        cannot, and a generic copy is the way (Cinder's). None by default."""
        return None

    def adopt_migrated(self, volume: VolumeSpec,
                       new_volume: VolumeSpec) -> dict[str, str] | None:
        """After a generic migration: make ``new_volume`` (on this back end)
        carry ``volume``'s identity; the model update naming its VDI, or
        None when this back end keeps no such identity."""
        return None

    def connection_data(self, vdi_uuid: str) -> dict[str, object]:
        """Connection info ``data`` for the VDI; never a secret."""
        raise NotImplementedError

    # -- optional verbs (VERB_CAPABILITY) -------------------------------------
    # Declared here so that callers hold a Backend, not a family; a back end
    # lacking the capability is refused by require() (the one refusal point),
    # and one that declares it implements the verb (a unit test checks both).

    def _lacks(self, verb: str) -> NotImplementedError:
        self.require(verb)
        return NotImplementedError("%s declares %s but does not implement it"
                                   % (type(self).__name__, verb))

    def extend_volume(self, volume: VolumeSpec, new_size_gb: int) -> None:
        raise self._lacks("extend_volume")

    def create_snapshot(self, snapshot: SnapshotSpec) -> dict[str, str]:
        raise self._lacks("create_snapshot")

    def delete_snapshot(self, snapshot: SnapshotSpec) -> None:
        raise self._lacks("delete_snapshot")

    def create_volume_from_snapshot(self, volume: VolumeSpec,
                                    snapshot: SnapshotSpec) -> dict[str, str]:
        raise self._lacks("create_volume_from_snapshot")

    def create_cloned_volume(self, volume: VolumeSpec, src: VolumeSpec) -> dict[str, str]:
        raise self._lacks("create_cloned_volume")

    def revert_to_snapshot(self, volume: VolumeSpec,
                           snapshot: SnapshotSpec) -> dict[str, str] | None:
        raise self._lacks("revert_to_snapshot")

    def manage_existing(self, volume: VolumeSpec, existing_ref: dict[str, Any]) -> dict[str, str]:
        raise self._lacks("manage_existing")

    def manage_existing_get_size(self, volume: VolumeSpec, existing_ref: dict[str, Any]) -> int:
        raise self._lacks("manage_existing_get_size")

    def unmanage(self, volume: VolumeSpec) -> None:
        raise self._lacks("unmanage")

    def get_manageable_volumes(self, known_ids: set[str], marker: Any, limit: int,
                               offset: int, sort_keys: list[str],
                               sort_dirs: list[str]) -> list[dict[str, Any]]:
        raise self._lacks("get_manageable_volumes")

    def retype(self, volume: VolumeSpec, request: dict[str, str], *,
               diff: dict[str, Any], host: str | None, own_host: str | None) -> None:
        """Take a new volume type's QoS in place (``request``: its raw
        specs); refuse, with the reason, what needs the data moved."""
        raise self._lacks("retype")

    def set_qos(self, volume: VolumeSpec, request: dict[str, str]) -> dict[str, int]:
        """Change the volume's QoS in place; returns the QoS now set."""
        raise self._lacks("set_qos")

    def parse_qos(self, text: str) -> dict[str, str]:
        """``xensm --qos`` text as a QoS request for :meth:`set_qos`."""
        raise self._lacks("set_qos")

    def create_group(self, group: Any) -> dict[str, str]:
        raise self._lacks("create_group")

    def delete_group(self, group: Any, volumes: list[VolumeSpec]) -> tuple[Any, Any]:
        raise self._lacks("delete_group")

    def update_group(self, group: Any, add_volumes: Any, remove_volumes: Any) -> tuple[Any, ...]:
        raise self._lacks("update_group")

    def create_group_snapshot(self, group_snapshot: Any,
                              snapshots: list[SnapshotSpec]) -> tuple[Any, Any]:
        raise self._lacks("create_group_snapshot")

    def delete_group_snapshot(self, group_snapshot: Any,
                              snapshots: list[SnapshotSpec]) -> tuple[Any, Any]:
        raise self._lacks("delete_group_snapshot")

    def device_config(self, secrets: Mapping[str, str] | None = None) -> dict[str, str]:
        """device_config from options; secret keys only as ``<key>_secret``.

        ``secrets`` maps a secret key to the uuid of the XAPI secret holding
        its value; without it secret keys are left out (as in connection
        info, which must never carry them).
        """
        self.options.require(*(k.option for k in self.CONFIG_KEYS if k.required),
                             reason="a %s SR needs it" % self.SR_TYPE)
        dc: dict[str, str] = {}
        for item in self.CONFIG_KEYS:
            value = self.options.values.get(item.option)
            if value in (None, ""):
                continue
            if item.secret:
                if secrets and item.key in secrets:
                    dc[item.key + "_secret"] = secrets[item.key]
            else:
                dc[item.key] = str(value)
        return dc

    def secret_values(self) -> dict[str, str]:
        """The secret device_config values set in options, by key."""
        return {k.key: str(self.options.values[k.option]) for k in self.CONFIG_KEYS
                if k.secret and self.options.values.get(k.option)}


class GroupsAsRecords(Backend):
    """Groups that are only records on the storage side: made and updated
    with no storage call, deleted member by member. What makes a group
    snapshot consistent is each family's own (create_group_snapshot)."""

    def create_group(self, group: Any) -> dict[str, str]:
        return {"status": "available"}

    def delete_group(self, group: Any, volumes: list[VolumeSpec]) -> tuple[Any, Any]:
        updates = []
        for volume in volumes:
            self.delete_volume(volume)
            updates.append({"id": volume.id, "status": "deleted"})
        return {"status": "deleted"}, updates

    def update_group(self, group: Any, add_volumes: Any, remove_volumes: Any) -> tuple[Any, ...]:
        return None, None, None


def paginate(entries: list[dict[str, Any]], marker: Any, limit: int | None, offset: int | None,
             sort_keys: list[str] | None, sort_dirs: list[str] | None) -> list[dict[str, Any]]:
    """Sort and page manageable entries as Cinder's API expects.

    ``marker`` is the reference of the last entry already shown.
    """
    def sort_key(key: str) -> Any:
        if key == "size":
            return lambda entry: entry["size"]
        return lambda entry: str(entry["reference"])

    for key, direction in reversed(list(zip(sort_keys or ["reference"],
                                            sort_dirs or ["asc"], strict=False))):
        entries.sort(key=sort_key(key), reverse=direction == "desc")
    if marker is not None:
        refs = [e["reference"] for e in entries]
        if marker not in refs:
            raise exception.InvalidInput(reason="marker %s is not a manageable VDI" % marker)
        entries = entries[refs.index(marker) + 1:]
    start = offset or 0
    return entries[start:start + limit] if limit else entries[start:]


def load(sr_type: str) -> type[Backend]:
    """The back-end class registered for ``sr_type``."""
    try:
        mgr: stevedore_driver.DriverManager = stevedore_driver.DriverManager(
            ENTRY_POINT_GROUP, sr_type, invoke_on_load=False)
    except Exception as exc:  # noqa: BLE001 - stevedore raises several kinds
        raise exception.ConfigError(
            option="xensm_sr_type",
            reason="no back end is installed for SR type %r (%s)" % (sr_type, exc)) from None
    backend_cls = mgr.driver
    if not (isinstance(backend_cls, type) and issubclass(backend_cls, Backend)):
        raise exception.ConfigError(
            option="xensm_sr_type",
            reason="entry point %r of %s is not a Backend" % (sr_type, ENTRY_POINT_GROUP))
    return backend_cls

