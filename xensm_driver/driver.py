"""XenAPISMDriver: Cinder volumes as VDIs on XenServer / XCP-ng SRs.

A facade. It reads the back end's options once, opens the XAPI session pool,
picks the back end for ``xensm_sr_type``, refuses what that back end cannot
do, and hands each verb to it. Storage calls are the back ends'; the driver
uses only the :class:`~xensm_driver.backends.base.Backend` interface (the
image verbs too: the back end streams the data through XAPI's data path).
Its only contact with ``xapi/`` is wiring: do_setup makes the SessionPool
and the Storage over it that the back end is built on, and close ends it.

In ``cinder.conf``::

    [xs-nfs]
    volume_driver = xensm_driver.driver.XenAPISMDriver
    xensm_sr_type = nfs
    ...
"""

from __future__ import annotations

from typing import Any

from oslo_log import log as logging

from xensm_driver import config
from xensm_driver import coordination
from xensm_driver import exception
from xensm_driver import identity
from xensm_driver import interface
from xensm_driver.backends import base
from xensm_driver.xapi.session import SessionPool
from xensm_driver.xapi.storage import Storage

LOG = logging.getLogger(__name__)

VERSION = "1.0.0"

#: Stats Cinder keeps per back end, not per pool.
_BACKEND_LEVEL = frozenset({"volume_backend_name", "vendor_name", "driver_version",
                            "storage_protocol", "pools"})


def volume_spec(volume: Any, *, sized: bool = False) -> base.VolumeSpec:
    """The back end's view of a Cinder volume. ``sized``: the verb makes or
    grows storage, so the size must be a whole number of GiB above 0."""
    size = base.field(volume, "size")
    source_volid = base.field(volume, "source_volid")
    snapshot_id = base.field(volume, "snapshot_id")
    source = (identity.volume(str(source_volid)) if source_volid
              else identity.snapshot(str(snapshot_id)) if snapshot_id else None)
    return base.VolumeSpec(
        id=name_id(volume),
        size_gb=size_gb(size, "size of volume %s" % base.field(volume, "id"))
        if sized else _lenient_size(size),
        provider_id=base.field(volume, "provider_id"),
        provider_location=base.field(volume, "provider_location"),
        display_name=base.field(volume, "display_name") or "", source=source,
        qos=qos_request(volume), project_id=base.field(volume, "project_id"))


#: Metadata keys a volume may carry to ask for QoS (Cinder's ``sf-qos``).
_QOS_METADATA = ("sf-qos",)


def _specs_of(obj: Any) -> dict[str, str]:
    """Key/values of a Cinder specs holder (object or dict), or {}."""
    if obj is None:
        return {}
    if isinstance(obj, dict) and "specs" not in obj:
        return {str(k): str(v) for k, v in obj.items()}
    specs = base.field(obj, "specs") or {}
    return {str(k): str(v) for k, v in dict(specs).items()}


def type_qos(volume_type: Any) -> dict[str, str]:
    """The QoS key/values a volume type asks for: its QoS specs when one is
    associated (unless consumed by the front end only), else its extra
    specs -- as Cinder's SolidFire driver prefers them
    (``_set_qos_by_volume_type``). Which keys mean QoS is the back end's
    business."""
    if volume_type is None:
        return {}
    qos_specs = base.field(volume_type, "qos_specs")
    if qos_specs is not None and base.field(qos_specs, "consumer", "back-end") != "front-end":
        specs = _specs_of(qos_specs)
        if specs:
            return specs
    return {str(k): str(v) for k, v in dict(base.field(volume_type, "extra_specs")
                                            or {}).items()}


def qos_request(volume: Any) -> dict[str, str] | None:
    """What a volume asks for as QoS, raw: its ``sf-qos`` metadata, then
    its type's specs over it, then ``qos_specs`` (the standalone service's
    ``--qos``) over both. None when it asks for nothing."""
    request: dict[str, str] = {}
    metadata = base.field(volume, "metadata")
    if not isinstance(metadata, dict):
        metadata = {base.field(m, "key"): base.field(m, "value")
                    for m in base.field(volume, "volume_metadata") or []}
    request.update({k: str(metadata[k]) for k in _QOS_METADATA if metadata.get(k)})
    request.update(type_qos(base.field(volume, "volume_type")))
    request.update(_specs_of(base.field(volume, "qos_specs")))
    return request or None


def name_id(volume: Any) -> str:
    """The id a volume's storage is named after: Cinder's ``name_id``,
    ``_name_id`` when set, else ``id``. After a generic migration Cinder
    keeps the volume's id on the record that now holds the destination's
    storage and deletes the source under the temporary id, with
    ``_name_id`` naming the original (cinder/objects/volume.py
    ``finish_volume_migration``): the identity follows ``_name_id``."""
    return str(base.field(volume, "_name_id") or base.field(volume, "id"))


def size_gb(value: Any, what: str) -> int:
    """A size in GiB: a whole number above 0 (an int, or text or a float that
    is one). Anything else is InvalidInput naming ``what``, before any call."""
    number: Any = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        raise exception.InvalidInput(
            reason="%s must be a whole number of GiB above 0, got %r" % (what, value))
    return number


def _lenient_size(value: Any) -> int:
    # Verbs that neither make nor grow storage (delete, attach) must still
    # work on a record whose size is odd, so it is only read here.
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def snapshot_spec(snapshot: Any) -> base.SnapshotSpec:
    volume = base.field(snapshot, "volume")
    if volume is None:
        volume = {"id": base.field(snapshot, "volume_id"),
                  "size": base.field(snapshot, "volume_size")}
    return base.SnapshotSpec(
        id=str(base.field(snapshot, "id")), volume=volume_spec(volume),
        provider_id=base.field(snapshot, "provider_id"),
        provider_location=base.field(snapshot, "provider_location"),
        volume_size_gb=int(base.field(snapshot, "volume_size") or 0))


def destination(host: Any) -> base.Destination | None:
    """The xensm SR a Cinder ``host`` (as the scheduler passes it, with its
    ``capabilities``) names in its location_info, or None."""
    caps = base.field(host, "capabilities") or {}
    return base.parse_location_info(base.field(caps, "location_info"),
                                    str(base.field(caps, "volume_backend_name") or
                                        base.field(host, "host") or ""))


def vdi_uuid_of(spec: base.VolumeSpec | base.SnapshotSpec) -> str | None:
    """The VDI uuid recorded for a volume or snapshot, without a call."""
    if spec.provider_id:
        return spec.provider_id
    parsed = identity.parse_provider_location(spec.provider_location)
    return parsed[1] if parsed else None


def consistency_requested(group_or_snapshot: Any) -> bool:
    """Whether a group (snapshot) asks for consistency: in Cinder, its group
    type carries ``consistent_group_snapshot_enabled = <is> True``
    (Cinder's own test, ``volume_utils.is_group_a_cg_snapshot_type``); the
    standalone service's groups have no type and always ask."""
    if base.field(group_or_snapshot, "group_type_id") is None:
        return True
    try:
        from cinder.volume import volume_utils  # only inside cinder-volume
    except ImportError:
        return True
    return bool(volume_utils.is_group_a_cg_snapshot_type(group_or_snapshot))


class XenAPISMDriver(interface.VolumeDriver):
    """Volumes as VDIs on an SR, through XAPI's Storage Manager.

    Active-active: several cinder-volume services may run one back end as a
    cluster. Every lock the driver takes is Cinder's coordination lock
    (:mod:`xensm_driver.coordination`), the claims of concurrent creates are
    XAPI's own records, and nothing two services could disagree on is kept
    in memory: the SR (found, or created under the back end's lock and
    looked for again once it is held), and on SolidFire the account and
    access group, are what the storage says at setup.
    """

    VERSION = VERSION
    SUPPORTS_ACTIVE_ACTIVE = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options: config.Options | None = None
        self.pool: SessionPool | None = None
        self._backend: base.Backend | None = None
        #: Set by do_setup from the options (a caller may hand a started
        #: tooz coordinator as ``coordinator=``).
        self._coordinator = kwargs.get("coordinator")
        self.locks: coordination.Locks | None = None

    @property
    def backend(self) -> base.Backend:
        """The back end (set up by do_setup)."""
        if self._backend is None:
            raise exception.XensmError(
                "The xensm back end is not set up: do_setup has not run or failed.")
        return self._backend

    # -- setup ----------------------------------------------------------------

    def do_setup(self, context: Any) -> None:
        options = self.options = config.read_options(self.configuration)
        backend_cls = base.load(options.xensm_sr_type)
        options.require("xenapi_connection_url", "xenapi_connection_password",
                        reason="the driver logs in to XAPI with it")
        self.pool = SessionPool(
            options.xenapi_connection_url, options.xenapi_connection_username,
            options.xenapi_connection_password,
            size=options.xenapi_connection_pool_size,
            call_timeout=options.xenapi_call_timeout,
            connect_timeout=options.xenapi_connect_timeout,
            verify_tls=options.xenapi_verify_tls, ca_bundle=options.xenapi_ca_bundle,
            retries=options.xenapi_retry_count, backoff=options.xenapi_retry_backoff,
            originator="xensm-driver/%s" % options.backend_name)
        self.locks = coordination.Locks(self._coordinator,
                                        lock_path=options.values.get("xensm_lock_path"))
        backend = backend_cls(options, Storage(self.pool), locks=self.locks)
        backend.setup()
        self._backend = backend

    def check_for_setup_error(self) -> None:
        self.backend.check()

    def close(self) -> None:
        """Log out of XAPI (the standalone service calls this on exit)."""
        if self.pool is not None:
            self.pool.close()

    def _update_volume_stats(self) -> None:
        backend = self.backend
        stats = {
            "volume_backend_name": backend.name,
            "vendor_name": "Open Source",
            "driver_version": self.VERSION,
            "storage_protocol": backend.STORAGE_PROTOCOL,
            "reserved_percentage": self.configuration.safe_get("reserved_percentage") or 0,
            "max_over_subscription_ratio": (
                self.configuration.safe_get("max_over_subscription_ratio")
                or (20.0 if backend.thin else 1.0)),
            "QoS_support": backend.can(base.QOS),
            "multiattach": False,
            "online_extend_support": backend.can(base.ONLINE_EXTEND),
            "consistent_group_snapshot_enabled": backend.can(base.GROUP_SNAPSHOT),
            "sparse_copy_volume": backend.thin,
            "xensm_sr_type": backend.SR_TYPE,
            "xensm_capabilities": sorted(backend.CAPABILITIES),
        }
        stats.update(backend.stats())
        configured = self.configuration.safe_get("max_over_subscription_ratio")
        if configured:
            stats["max_over_subscription_ratio"] = configured     # the operator's wins
        stats.setdefault("pool_name", backend.name)
        # Cinder's scheduler reads pool figures only from "pools": without
        # it, it ignores pool_name and names the one pool after the back end.
        # The SR is the one pool; it carries every capability (the
        # CapabilitiesFilter matches a pool's), the top level stays for others.
        stats["pools"] = [{k: v for k, v in stats.items() if k not in _BACKEND_LEVEL}]
        self._stats = stats

    # -- volumes --------------------------------------------------------------

    def _holding(self, lock: str) -> Any:
        """The lock of one volume or snapshot, shared by every service of the
        back end (Cinder's coordination lock; see coordination.Locks)."""
        if self.locks is None:
            raise exception.XensmError(
                "The xensm back end is not set up: do_setup has not run or failed.")
        return self.locks.object_lock(lock)

    def create_volume(self, volume: Any) -> dict[str, Any] | None:
        spec = volume_spec(volume, sized=True)
        with self._holding(coordination.volume_lock(spec.id)):
            return self.backend.create_volume(spec)

    def delete_volume(self, volume: Any) -> None:
        spec = volume_spec(volume)
        with self._holding(coordination.volume_lock(spec.id)):
            self.backend.delete_volume(spec)

    def extend_volume(self, volume: Any, new_size: int) -> None:
        spec = volume_spec(volume)
        new_size_gb = size_gb(new_size, "new size of volume %s" % spec.id)
        self._require("extend_volume")
        with self._holding(coordination.volume_lock(spec.id)):
            self.backend.extend_volume(spec, new_size_gb)

    def create_cloned_volume(self, volume: Any, src_vref: Any) -> dict[str, Any] | None:
        self._require("create_cloned_volume")
        spec = volume_spec(volume, sized=True)
        with self._holding(coordination.volume_lock(spec.id)):
            return self.backend.create_cloned_volume(spec, volume_spec(src_vref))

    # -- migration ------------------------------------------------------------

    def migrate_volume(self, context: Any, volume: Any, host: Any) -> tuple[bool, Any]:
        """Storage-assisted when ``host`` is an xensm back end on this pool:
        the VDI moves into its SR (VDI.copy detached, VDI.pool_migrate
        attached) and keeps the volume's name and tag; the model update
        names the new VDI. (False, None) otherwise: Cinder's generic path
        (which attaches volumes with os-brick, and so cannot move xensm
        volumes)."""
        dest = destination(host)
        if dest is None:
            return False, None
        update = self.migrate_to(volume, dest)
        if update is None:
            return False, None
        return True, update or None

    def migrate_to(self, volume: Any, dest: base.Destination,
                   progress: Any = None) -> dict[str, str] | None:
        """Move ``volume`` to ``dest`` (see migrate_volume): the model
        update, {} when it is there already, None when it takes a generic
        copy. ``progress`` hears the move's progress (0 to 1)."""
        return self.backend.migrate_volume(volume_spec(volume), dest, progress)

    def update_migrated_volume(self, ctxt: Any, volume: Any, new_volume: Any,
                               original_volume_status: Any) -> dict[str, Any]:
        """After Cinder's generic migration (called on ``new_volume``'s back
        end): ``new_volume``'s VDI takes ``volume``'s name and tag, so the
        volume's storage is named after its own id again.

        The update keeps ``volume``'s ``_name_id`` and names the new VDI's
        location; provider_id is left to Cinder, which swaps it between the
        two records (finish_volume_migration): the original ends with the
        new VDI's uuid and the temporary record, deleted next, with the
        source's -- under the same ``_name_id``, so that delete finds the
        source VDI by its tag. 3 calls."""
        spec = volume_spec(volume)
        adopted = self.backend.adopt_migrated(spec, volume_spec(new_volume))
        if adopted is None:
            return {"_name_id": base.field(new_volume, "_name_id") or base.field(
                new_volume, "id"), "provider_location": base.field(
                    new_volume, "provider_location")}
        return {"_name_id": base.field(volume, "_name_id"),
                "provider_location": adopted["provider_location"]}
    def retype(self, context: Any, volume: Any, new_type: Any, diff: Any,
               host: Any) -> tuple[bool, Any]:
        """Change what a new type changes: QoS in place on back ends that set
        it (SolidFire); a move to another xensm back end of this pool as a
        storage-assisted migration; nothing on the same back end. What cannot
        be done (an encryption change, QoS where none is set, another pool)
        is answered False, and Cinder decides (it refuses or migrates).

        ``diff`` is Cinder's ``volume_types_diff``: ``{"qos_specs": {key:
        (old, new)}, "extra_specs": ..., "encryption": ...}``.
        """
        if self.backend.can(base.QOS):
            return self._retype_qos(volume, new_type, diff, host)
        if diff and (base.field(diff, "encryption") or base.field(diff, "qos_specs")):
            return False, None
        return self.migrate_volume(context, volume, host)

    def _retype_qos(self, volume: Any, new_type: Any, diff: Any,
                    host: Any) -> tuple[bool, Any]:
        """Change what a new type changes in place (QoS), or say False.

        ``diff`` is Cinder's ``volume_types_diff``: ``{"qos_specs": {key:
        (old, new)}, "extra_specs": ..., "encryption": ...}``. What the back
        end cannot do in place (another back end, an encryption change) is
        logged with its reason and answered False, so Cinder migrates the
        volume when the retype's migration policy allows it.
        """
        spec = volume_spec(volume)
        if not self.backend.can(base.QOS):
            LOG.info("Retype of volume %s: back end %s sets no QoS in place.", spec.id,
                     self.backend.name)
            return False, None
        new_qos = {k: str(new) for k, (_old, new) in
                   dict((diff or {}).get("qos_specs") or {}).items() if new is not None}
        new_qos.pop("consumer", None)
        request = new_qos or {str(k): str(v) for k, v in dict(
            base.field(new_type, "extra_specs") or {}).items()}
        target = base.field(host, "host") if host is not None else None
        try:
            self.backend.retype(spec, request, diff=diff or {},
                                host=target, own_host=base.field(volume, "host"))
        except exception.UnsupportedOperation as exc:
            LOG.warning("Retype of volume %s refused in place: %s", spec.id, exc)
            return False, None
        return True, None

    def parse_qos(self, text: str) -> dict[str, str]:
        """``min=..,max=..,burst=..`` or a preset name, as the back end reads
        QoS; refused by a back end that sets none."""
        self._require("set_qos")
        result: dict[str, str] = self.backend.parse_qos(text)
        return result

    def set_volume_qos(self, volume: Any, request: dict[str, str]) -> dict[str, int]:
        """Set a volume's QoS in place (``xensm volume set --qos``): keys not
        given keep their value. Returns the QoS now set."""
        self._require("set_qos")
        result: dict[str, int] = self.backend.set_qos(volume_spec(volume), request)
        return result

    # -- snapshots ------------------------------------------------------------

    def create_snapshot(self, snapshot: Any) -> dict[str, Any] | None:
        self._require("create_snapshot")
        spec = snapshot_spec(snapshot)
        with self._holding(coordination.snapshot_lock(spec.id)):
            return self.backend.create_snapshot(spec)

    def delete_snapshot(self, snapshot: Any) -> None:
        self._require("delete_snapshot")
        spec = snapshot_spec(snapshot)
        with self._holding(coordination.snapshot_lock(spec.id)):
            self.backend.delete_snapshot(spec)

    def create_volume_from_snapshot(self, volume: Any, snapshot: Any) -> dict[str, Any] | None:
        self._require("create_volume_from_snapshot")
        spec = volume_spec(volume, sized=True)
        with self._holding(coordination.volume_lock(spec.id)):
            return self.backend.create_volume_from_snapshot(spec, snapshot_spec(snapshot))

    def revert_to_snapshot(self, context: Any, volume: Any,
                           snapshot: Any) -> dict[str, Any] | None:
        """Revert; on SM SRs the volume's VDI is replaced (see the back end),
        and the model update names the new one. Cinder's manager ignores
        it; the recorded provider_id still finds the volume, and
        update_provider_info records the new one at the next start."""
        self._require("revert_to_snapshot")
        spec = volume_spec(volume)
        with self._holding(coordination.volume_lock(spec.id)):
            return self.backend.revert_to_snapshot(spec, snapshot_spec(snapshot))

    @classmethod
    def clean_volume_file_locks(cls, volume_id: str) -> None:
        """Remove the lock file of a deleted volume, where locks are files
        (the driver's own outside Cinder, Cinder's ``file://``
        coordination); cinder-volume calls this after a delete."""
        coordination.remove(coordination.volume_lock(volume_id))

    @classmethod
    def clean_snapshot_file_locks(cls, snapshot_id: str) -> None:
        """As clean_volume_file_locks, for a deleted snapshot."""
        coordination.remove(coordination.snapshot_lock(snapshot_id))

    # -- attach ---------------------------------------------------------------

    def initialize_connection(self, volume: Any, connector: dict[str, Any],
                              initiator_data: Any = None) -> dict[str, Any]:
        return {"driver_volume_type": "xensm",
                "data": self.backend.connection_data(self._vdi_uuid(volume))}

    def terminate_connection(self, volume: Any, connector: dict[str, Any] | None,
                             **kwargs: Any) -> None:
        # The consumer (a XenServer host) detaches its VBD; the SR stays.
        return None

    # -- images ---------------------------------------------------------------
    # Cinder's generic image copy attaches the volume to the cinder-volume
    # host with os-brick, which cannot attach an SR; the data path moves the
    # bytes through XAPI instead, streamed, never staged on disk.

    def copy_image_to_volume(self, context: Any, volume: Any, image_service: Any,
                             image_id: Any, disable_sparse: bool = False) -> None:
        meta = image_service.show(context, image_id)
        spec = volume_spec(volume)
        self._require_raw(meta.get("disk_format"), "copy image %s to volume %s"
                          % (image_id, spec.id))
        size = int(meta.get("size") or 0)
        if size > spec.size_bytes:
            raise exception.InvalidInput(
                reason="image %s holds %d bytes, more than volume %s (%d GiB)"
                       % (image_id, size, spec.id, spec.size_gb))
        self.backend.write_volume(self._vdi_uuid(volume),
                                  image_service.download(context, image_id), size=size)

    def copy_volume_to_image(self, context: Any, volume: Any, image_service: Any,
                             image_meta: Any) -> Any:
        spec = volume_spec(volume)
        self._require_raw(image_meta.get("disk_format"), "copy volume %s to image %s"
                          % (spec.id, image_meta.get("id")))
        chunks = self.backend.read_volume(spec.id, self._vdi_uuid(volume))
        meta = {"disk_format": "raw", "container_format": image_meta.get(
            "container_format") or "bare"}
        return image_service.update(context, image_meta["id"], meta, chunks)

    def _require_raw(self, disk_format: str | None, operation: str) -> None:
        if disk_format != "raw":
            raise exception.UnsupportedOperation(
                backend=self.backend.name, operation=operation,
                reason="the image format is %s; only raw images move through XAPI's "
                       "raw data path (convert it, e.g. qemu-img convert -O raw)"
                       % disk_format)

    def _vdi_uuid(self, volume: Any) -> str:
        """The volume's VDI uuid, verified by its tag (1 call): what is
        written to, read from or handed to a VM must be this volume's."""
        return self.backend.locate(volume_spec(volume))

    # -- manage ---------------------------------------------------------------

    def manage_existing(self, volume: Any, existing_ref: dict[str, Any]) -> dict[str, Any] | None:
        self._require("manage_existing")
        return self.backend.manage_existing(volume_spec(volume), existing_ref)

    def manage_existing_get_size(self, volume: Any, existing_ref: dict[str, Any]) -> int:
        self._require("manage_existing_get_size")
        return int(self.backend.manage_existing_get_size(volume_spec(volume), existing_ref))

    def unmanage(self, volume: Any) -> None:
        self._require("unmanage")
        self.backend.unmanage(volume_spec(volume))

    def get_manageable_volumes(self, cinder_volumes: list[Any], marker: Any, limit: int,
                               offset: int, sort_keys: list[str],
                               sort_dirs: list[str]) -> list[dict[str, Any]]:
        self._require("get_manageable_volumes")
        known = {str(base.field(v, "id")) for v in cinder_volumes}
        return self.backend.get_manageable_volumes(known, marker, limit, offset,
                                                   sort_keys, sort_dirs)

    def update_provider_info(self, volumes: list[Any],
                             snapshots: list[Any]) -> tuple[Any, Any]:
        """Fill provider_id where only provider_location was recorded, and
        follow a revert's swap to the volume's current VDI.

        Cinder ignores what revert_to_snapshot returns, so after an SM
        revert its provider_id names the replaced VDI (which still finds the
        volume); this records the current one. At most 1 call for the SR,
        however many volumes.
        """
        def missing(items: list[Any]) -> list[dict[str, str]]:
            updates = []
            for item in items:
                if base.field(item, "provider_id"):
                    continue
                parsed = identity.parse_provider_location(base.field(item, "provider_location"))
                if parsed:
                    updates.append({"id": str(base.field(item, "id")), "provider_id": parsed[1]})
            return updates
        swapped = self.backend.replaced_provider_ids([volume_spec(v) for v in volumes])
        return missing(volumes) + swapped, missing(snapshots)

    # -- groups ---------------------------------------------------------------
    # Without a consistent multi-volume snapshot these raise
    # NotImplementedError: that is how Cinder's manager knows to use its
    # generic group code, which snapshots volume by volume. SolidFire makes
    # one array group snapshot; SM SRs pause the VMs holding the volumes,
    # only for groups whose type asks for consistency.

    def _group_backend(self, verb: str) -> base.Backend:
        if not self.backend.can(base.GROUP_SNAPSHOT):
            raise NotImplementedError(
                "%s: back end %s (%s) has no consistent group snapshot; Cinder's "
                "generic groups apply" % (verb, self.backend.name, self.backend.SR_TYPE))
        return self.backend

    def create_group(self, context: Any, group: Any) -> dict[str, Any]:
        return self._group_backend("create_group").create_group(group)

    def delete_group(self, context: Any, group: Any, volumes: list[Any]) -> Any:
        return self._group_backend("delete_group").delete_group(
            group, [volume_spec(v) for v in volumes])

    def update_group(self, context: Any, group: Any, add_volumes: Any = None,
                     remove_volumes: Any = None) -> Any:
        return self._group_backend("update_group").update_group(
            group, add_volumes or [], remove_volumes or [])

    def create_group_snapshot(self, context: Any, group_snapshot: Any,
                              snapshots: list[Any]) -> Any:
        backend = self._group_backend("create_group_snapshot")
        if (backend.GROUP_CONSISTENCY == base.CONSISTENT_BY_PAUSE
                and not consistency_requested(group_snapshot)):
            # Pausing VMs is for groups whose type asks for consistency; a
            # generic group is Cinder's to snapshot volume by volume.
            raise NotImplementedError(
                "create_group_snapshot: group snapshot %s is of a generic group type; "
                "Cinder's generic groups apply" % base.field(group_snapshot, "id"))
        return backend.create_group_snapshot(
            group_snapshot, [snapshot_spec(s) for s in snapshots])

    def delete_group_snapshot(self, context: Any, group_snapshot: Any,
                              snapshots: list[Any]) -> Any:
        return self._group_backend("delete_group_snapshot").delete_group_snapshot(
            group_snapshot, [snapshot_spec(s) for s in snapshots])

    def _require(self, verb: str) -> None:
        self.backend.require(verb)

