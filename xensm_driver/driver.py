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
        id=str(base.field(volume, "id")),
        size_gb=size_gb(size, "size of volume %s" % base.field(volume, "id"))
        if sized else _lenient_size(size),
        provider_id=base.field(volume, "provider_id"),
        provider_location=base.field(volume, "provider_location"),
        display_name=base.field(volume, "display_name") or "", source=source)


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


def vdi_uuid_of(spec: base.VolumeSpec | base.SnapshotSpec) -> str | None:
    """The VDI uuid recorded for a volume or snapshot, without a call."""
    if spec.provider_id:
        return spec.provider_id
    parsed = identity.parse_provider_location(spec.provider_location)
    return parsed[1] if parsed else None


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
            "QoS_support": False,
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
    # Without a consistent multi-volume snapshot (SM-native SRs have none),
    # these raise NotImplementedError: that is how Cinder's manager knows to
    # use its generic group code, which snapshots volume by volume.

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
        return self._group_backend("create_group_snapshot").create_group_snapshot(
            group_snapshot, [snapshot_spec(s) for s in snapshots])

    def delete_group_snapshot(self, context: Any, group_snapshot: Any,
                              snapshots: list[Any]) -> Any:
        return self._group_backend("delete_group_snapshot").delete_group_snapshot(
            group_snapshot, [snapshot_spec(s) for s in snapshots])

    def _require(self, verb: str) -> None:
        self.backend.require(verb)

