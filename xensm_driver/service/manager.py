"""The standalone volume manager: the driver's verbs, recorded in the inventory.

:class:`Manager` loads back ends by ini section (the same sections
cinder-volume reads), builds :class:`~xensm_driver.driver.XenAPISMDriver`
for each on first use, and runs its verbs on plain dicts, recording each in
the :class:`~xensm_driver.service.inventory.Inventory`:

* a new object is recorded ``creating`` (with the process that makes it)
  before the driver is called, and ``available`` with the driver's model
  update after; a failure marks it ``error`` with the reason, a refusal by
  the driver (nothing was made) removes the record;
* a verb on an existing object first claims it (``deleting``, ``extending``,
  ...), refusing if its status does not allow the verb; a refusal by the
  driver (nothing was changed on storage) puts the old status back, any other
  failure marks it ``error`` (``error_deleting``, ``error_extending``);
* requests that would do damage are refused before any call, with the reason:
  delete of a volume that still has snapshots (unless ``cascade``), a revert
  to another volume's snapshot, a shrink, and so on.

The driver stays the only authority over storage; :meth:`Manager.reconcile`
compares what the inventory says with what the SR holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import stat
import time
import unicodedata
import urllib.parse
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from typing import IO
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from xensm_driver import config
from xensm_driver import driver as driver_mod
from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.backends import base
from xensm_driver.service import backup as backup_mod
from xensm_driver.service import config as service_config
from xensm_driver.service import inventory as inventory_mod
from xensm_driver.service import reconcile as reconcile_mod
from xensm_driver.service.inventory import BUSY
from xensm_driver.service.inventory import GONE
from xensm_driver.service.inventory import Inventory
from xensm_driver.service.inventory import NotInInventory
from xensm_driver.service.inventory import Refused
from xensm_driver.service.inventory import effective_status
from xensm_driver.service.inventory import new_id
from xensm_driver.service.inventory import this_owner
from xensm_driver.service.models import Group
from xensm_driver.service.models import GroupSnapshot
from xensm_driver.service.models import Record
from xensm_driver.service.models import Snapshot
from xensm_driver.service.models import VMSnapshot
from xensm_driver.service.models import Volume
from xensm_driver.service.models import utcnow

LOG = logging.getLogger(__name__)

#: Driver errors that mean "refused, nothing on storage changed": the
#: object keeps the status it had.
REFUSALS: tuple[type[BaseException], ...] = (
    exception.UnsupportedOperation, exception.InUse, exception.InvalidInput,
    exception.XapiInUse, Refused)

#: Statuses from which each verb may start. An interrupted verb (its
#: process died) reads as ``error``.
DELETABLE = frozenset({"available", "error", "error_deleting", "error_extending"})
AVAILABLE = frozenset({"available"})
EXTENDABLE = frozenset({"available", "error_extending"})
UNMANAGEABLE = frozenset({"available", "error"})
UPLOADABLE = frozenset({"available", "error"})
#: The statuses a record of a finished delete may be in, for reconcile to
#: remove a VDI that still carries its tag.
DELETED = frozenset({"deleted"})

#: Names as Cinder caps them (its ``display_name`` column).
NAME_MAX = 255
#: The largest size a record holds (a 32-bit SQL integer of GiB).
SIZE_MAX_GB = 2**31 - 1

#: The start of image formats that are not raw: ``(magic, offset, format)``.
#: A VHD (dynamic) starts with a copy of its footer; a fixed VHD ends with it.
IMAGE_MAGIC = ((b"QFI\xfb", 0, "qcow2"), (b"conectix", 0, "vhd"), (b"KDMV", 0, "vmdk"),
               (b"<<< Oracle VM VirtualBox Disk Image >>>", 0, "vdi"),
               (b"vhdxfile", 0, "vhdx"))
VHD_FOOTER = 512


def reason(exc: BaseException) -> str:
    """One line saying why a verb failed (kept with an ``error`` record)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (text or type(exc).__name__)[:1000]


def _without_userinfo(url: str) -> str:
    """A URL fit to print: any ``user:password@`` dropped."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def volume_dict(vol: Volume, qos: dict[str, str] | None = None) -> dict[str, Any]:
    """The Cinder-style volume the driver's verbs take.

    ``provider_id``/``provider_location`` only as recorded (None until the
    driver returned them); ``source_volid``/``snapshot_id`` (Cinder's names)
    say what a clone was made from, so a delete can find a copy an
    interrupted create left behind.
    """
    return {"id": vol.id, "size": vol.size_gb, "provider_id": vol.provider_id,
            "provider_location": vol.provider_location, "display_name": vol.name,
            "source_volid": vol.source_volume_id, "snapshot_id": vol.source_snapshot_id,
            "qos_specs": qos}


def check_name(name: str | None, kind: str) -> str:
    """A name fit to find again and to print: refused (InvalidInput) otherwise."""
    name = name or ""
    if len(name) > NAME_MAX:
        raise exception.InvalidInput(reason="a %s name has at most %d characters (this one "
                                            "has %d)" % (kind, NAME_MAX, len(name)))
    if name != name.strip():
        raise exception.InvalidInput(reason="%s name %r starts or ends with white space; "
                                            "it could not be found again by it" % (kind, name))
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    if bad:
        raise exception.InvalidInput(reason="%s name %r holds a control character (%s)" % (
            kind, name, ", ".join("U+%04X" % ord(c) for c in sorted(set(bad)))))
    return name


def check_size(size_gb: int, what: str) -> int:
    if size_gb < 1 or size_gb > SIZE_MAX_GB:
        raise exception.InvalidInput(reason="%s must be 1 to %d GiB, not %d"
                                            % (what, SIZE_MAX_GB, size_gb))
    return int(size_gb)


def image_format(head: bytes, tail: bytes = b"") -> str | None:
    """The format an image's first bytes (and last 512, for a fixed VHD) name,
    or None for what may be raw."""
    for magic, offset, fmt in IMAGE_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return fmt
    if tail[:8] == b"conectix":
        return "vhd"
    return None


def snapshot_dict(snap: Snapshot, vol: Volume) -> dict[str, Any]:
    return {"id": snap.id, "volume_id": vol.id, "volume": volume_dict(vol),
            "volume_size": snap.volume_size_gb, "provider_id": snap.provider_id,
            "provider_location": snap.provider_location, "display_name": snap.name}


@dataclasses.dataclass
class BackendInfo:
    """A back-end section and, once set up, its driver."""

    name: str
    configuration: config.Configuration
    driver: driver_mod.XenAPISMDriver | None = None


class Manager:
    """Volumes, snapshots and groups on the back ends of one ini file."""

    def __init__(self, config_files: list[str], db_url: str | None = None, *,
                 create_inventory: bool = True) -> None:
        """Read ``config_files``; open the inventory (making it only with
        ``create_inventory``: a command that only reads never does)."""
        self.config_files = list(config_files)
        self.conf = service_config.load(config_files)
        sections = service_config.backend_sections(self.conf)
        self.backends: dict[str, BackendInfo] = {
            name: BackendInfo(name, config.Configuration([], name, self.conf))
            for name in sections}
        self.db_url = db_url or service_config.db_url(self.conf)
        self.create_inventory = create_inventory
        self._inventory: Inventory | None = None

    @property
    def inventory(self) -> Inventory:
        """The inventory, opened on first use (NoInventory if there is none
        and this manager may not make one)."""
        if self._inventory is None:
            self._inventory = Inventory(self.db_url, create=self.create_inventory)
        return self._inventory

    def close(self) -> None:
        for info in self.backends.values():
            if info.driver is not None:
                info.driver.close()
                info.driver = None
        if self._inventory is not None:
            self._inventory.close()

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- back ends ------------------------------------------------------------

    def backend_name(self, name: str | None = None) -> str:
        """The back end ``name`` (checked), or the only one configured."""
        if name:
            if name not in self.backends:
                raise exception.ConfigError(
                    option="--backend %s" % name,
                    reason="no such back-end section; configured: %s"
                           % (", ".join(self.backends) or "none"))
            return name
        if len(self.backends) == 1:
            return next(iter(self.backends))
        if not self.backends:
            raise exception.ConfigError(
                option="--config-file",
                reason="no back-end section (a section setting xensm_sr_type)")
        raise exception.ConfigError(
            option="--backend",
            reason="several back ends are configured (%s); name one"
                   % ", ".join(self.backends))

    def driver(self, name: str | None = None) -> driver_mod.XenAPISMDriver:
        """The set-up driver of a back end (logs in and finds its SR once)."""
        info = self.backends[self.backend_name(name)]
        if info.driver is None:
            drv = driver_mod.XenAPISMDriver(configuration=info.configuration)
            try:
                drv.do_setup(None)
            except BaseException:
                drv.close()
                raise
            info.driver = drv
        return info.driver

    def _making(self, name: str) -> driver_mod.XenAPISMDriver:
        """The driver of a back end about to make something: the inventory
        records the back end and its SR first (what reconcile later proves
        against)."""
        drv = self.driver(name)
        self.inventory.record_backend(name, drv.backend.SR_TYPE, drv.backend.sr_uuid)
        return drv

    def check(self, name: str | None = None) -> dict[str, Any]:
        """Connect, validate the SR and report what the back end can do."""
        drv = self.driver(name)
        drv.check_for_setup_error()
        backend = drv.backend
        options = drv.options
        assert options is not None
        stats = drv.get_volume_stats(refresh=True)
        capabilities = {cap: backend.can(cap) for cap in (
            base.THIN, base.SNAPSHOT, base.CLONE, base.REVERT, base.EXTEND,
            base.ONLINE_EXTEND, base.MANAGE, base.GROUP_SNAPSHOT,
            base.SNAPSHOT_OF_SNAPSHOT)}
        described = backend.describe()
        warnings = service_config.unknown_options(self.config_files, options.section)
        if described.sr_uuid is not None:
            warnings += self._device_config_drift(backend, described)
        return {
            "backend": backend.name,
            "section": options.section,
            "sr_type": backend.SR_TYPE,
            "xapi_url": _without_userinfo(options.xenapi_connection_url),
            "xapi_username": options.xenapi_connection_username,
            "hosts": list(described.hosts),
            "sr": None if described.sr_uuid is None else {
                "uuid": described.sr_uuid, "name_label": described.sr_name_label,
                "type": described.sr_type, "shared": described.sr_shared},
            "storage_protocol": backend.STORAGE_PROTOCOL,
            "capabilities": capabilities,
            "group_consistency": backend.GROUP_CONSISTENCY,
            "total_capacity_gb": stats.get("total_capacity_gb"),
            "free_capacity_gb": stats.get("free_capacity_gb"),
            "provisioned_capacity_gb": stats.get("provisioned_capacity_gb"),
            "inventory": self._inventory_text(),
            "warnings": warnings,
            "ok": True,
        }

    def _inventory_text(self) -> str:
        try:
            return self.inventory.display_url
        except inventory_mod.NoInventory:
            return "%s (none yet: the first volume create makes it)" % (
                inventory_mod.display_url(self.db_url or inventory_mod.default_url()))

    @staticmethod
    def _device_config_drift(backend: base.Backend,
                             described: base.StorageDescription) -> list[str]:
        """Where the found SR's device_config differs from the options.

        The SR is found by uuid or name label, so after an option changes
        (a new NFS server) the back end keeps using the old SR: say so.
        """
        try:
            configured = backend.device_config()
        except exception.ConfigError:
            return []           # a required option unset: check said so already
        option_of = {k.key: k.option for k in backend.CONFIG_KEYS}
        warnings = []
        for key, value in sorted(configured.items()):
            actual = (described.device_config or {}).get(key)
            if actual is None or actual == value:
                continue
            warnings.append(
                "SR %s (%s) was made with %s=%s, but %s in [%s] says %r: the back end "
                "uses the SR it finds by %s, not one made from the options now" % (
                    described.sr_uuid, described.sr_name_label, key, actual,
                    option_of.get(key, key), backend.options.section, value,
                    "uuid (xensm_sr_uuid)" if backend.options.xensm_sr_uuid
                    else "name label (xensm_sr_name_label)"))
        return warnings

    def stats(self, name: str | None = None) -> dict[str, Any]:
        """The driver's volume stats and the inventory's counts."""
        backend = self.backend_name(name)
        stats = dict(self.driver(backend).get_volume_stats(refresh=True))
        stats["inventory"] = self.inventory.counts(backend)
        try:
            stats["snapshot_space"] = self.snapshot_space(backend)
        except exception.UnsupportedOperation as exc:
            stats["snapshot_space"] = {"volumes": {}, "notes": [reason(exc)]}
        return stats

    def snapshot_space(self, name: str | None = None,
                       volume_ids: list[str] | None = None) -> dict[str, Any]:
        """What the back end says each live volume's snapshots hold and what
        deleting each would free (see the back end's ``snapshot_space``)."""
        backend = self.backend_name(name)
        vols = [v for v in self.inventory.volumes(backend=backend)
                if volume_ids is None or v.id in volume_ids]
        request = {v.id: (v.provider_id, {s.id: s.provider_id
                                          for s in self.inventory.snapshots(volume_id=v.id)})
                   for v in vols}
        report: dict[str, Any] = self.driver(backend).backend.snapshot_space(request)
        return report

    # -- recording helpers ----------------------------------------------------

    def _create(self, record: Volume | Snapshot,
                call: Callable[[], dict[str, Any] | None], busy: str = "creating") -> Any:
        record.status, record.owner = busy, this_owner()
        self.inventory.add(record)
        cls = type(record)
        try:
            update = call() or {}
        except REFUSALS:
            # Refused before anything was made: there is nothing to record.
            self.inventory.remove(cls, record.id)
            raise
        except BaseException as exc:
            self.inventory.update(cls, record.id, status="error", owner=None,
                                  status_reason=reason(exc))
            raise
        return self.inventory.update(
            cls, record.id, status="available", owner=None, status_reason=None,
            provider_id=update.get("provider_id", record.provider_id),
            provider_location=update.get("provider_location", record.provider_location))

    def _act(self, cls: type[Record], obj_id: str, busy: str, allowed: frozenset[str],
             call: Callable[[Any], Any], *, fail: str = "error", done: str = "available",
             check: Callable[[orm.Session, Any], None] | None = None,
             **done_fields: Any) -> Any:
        before = self.inventory.claim(cls, obj_id, busy, allowed, check)
        try:
            result = call(before)
        except REFUSALS:
            self.inventory.update(cls, obj_id, status=effective_status(before), owner=None)
            raise
        except BaseException as exc:
            self.inventory.update(cls, obj_id, status=fail, owner=None,
                                  status_reason=reason(exc))
            raise
        if done in ("deleted", "unmanaged"):
            done_fields["deleted_at"] = utcnow()
        self.inventory.update(cls, obj_id, status=done, owner=None, status_reason=None,
                              **done_fields)
        return result

    @contextlib.contextmanager
    def _reading(self, cls: type[Record], obj_id: str, busy: str) -> Iterator[Any]:
        """Hold an available object as ``busy`` while a verb reads it (a volume
        snapshotted or cloned, a snapshot a volume is made from): nothing
        deletes, extends or reverts it meanwhile. Yields the record, fresh."""
        record = self.inventory.claim(cls, obj_id, busy, AVAILABLE)
        try:
            yield record
        finally:
            self.inventory.release(cls, obj_id, busy, "available")

    # -- lookups --------------------------------------------------------------

    def volume(self, ref: str, include_gone: bool = False) -> Volume:
        return self.inventory.resolve(Volume, ref, include_gone=include_gone)

    def snapshot(self, ref: str, include_gone: bool = False) -> Snapshot:
        return self.inventory.resolve(Snapshot, ref, include_gone=include_gone)

    def group(self, ref: str, include_gone: bool = False) -> Group:
        return self.inventory.resolve(Group, ref, include_gone=include_gone)

    @staticmethod
    def _require_status(obj: Record, allowed: frozenset[str], kind: str, doing: str) -> None:
        status = effective_status(obj)
        if status not in allowed:
            raise Refused(reason="%s %s is %s%s; %s needs it %s" % (
                kind, obj.id, status, inventory_mod.owner_note(obj), doing,
                " or ".join(sorted(allowed))))

    # -- volumes --------------------------------------------------------------

    def create_volume(self, size_gb: int | None, name: str = "", backend: str | None = None,
                      snapshot: str | None = None, source_volume: str | None = None,
                      qos: str | None = None) -> Volume:
        """A new volume: empty, from a snapshot, or a clone of a volume.

        ``qos``: ``min=..,max=..,burst=..`` or a preset name, for back ends
        that set per-volume QoS (refused, before anything is made, by the
        others); a clone without it keeps its source's."""
        if snapshot and source_volume:
            raise exception.InvalidInput(reason="give a snapshot or a source volume, not both")
        name = check_name(name, "volume")
        if size_gb is not None:
            check_size(size_gb, "a volume's size")
        if snapshot:
            snap = self.snapshot(snapshot)
            return self._from_snapshot(snap, size_gb, name, qos)
        if source_volume:
            return self.clone_volume(source_volume, name=name, size_gb=size_gb, qos=qos)
        if not size_gb or size_gb < 1:
            raise exception.InvalidInput(reason="a volume needs a size of at least 1 GiB")
        backend = self.backend_name(backend)
        drv = self.driver(backend)
        request = _qos_request(drv, qos)
        self._check_space(drv, size_gb, "a new %d GiB volume" % size_gb)
        self._making(backend)
        vol = Volume(id=new_id(), backend=backend, name=name, size_gb=int(size_gb))
        return self._create(vol, lambda: drv.create_volume(volume_dict(vol, request)))

    @staticmethod
    def _check_space(drv: driver_mod.XenAPISMDriver, add_gb: int, what: str) -> None:
        """Refuse ``add_gb`` more GiB the back end has no room for. 3 calls.

        Thick: its free space. Thin: its total times the over-subscription
        ratio, less what is already provisioned (Cinder's scheduler's test).
        """
        stats = drv.get_volume_stats(refresh=True)
        try:
            total = float(stats["total_capacity_gb"])
            free = float(stats["free_capacity_gb"])
            provisioned = float(stats.get("provisioned_capacity_gb") or 0)
            ratio = float(stats.get("max_over_subscription_ratio") or 1.0)
        except (KeyError, TypeError, ValueError):
            return              # figures the back end does not give: XAPI decides
        if stats.get("thin_provisioning_support"):
            room = total * ratio - provisioned
            rule = ("%s GiB total x %s over-subscription - %s GiB provisioned"
                    % (total, ratio, provisioned))
        else:
            room, rule = free, "%s GiB free" % free
        if add_gb > room:
            raise Refused(reason="%s does not fit on back end %s: room for %d GiB (%s)"
                                 % (what, drv.backend.name, max(0, int(room)), rule))

    def _from_snapshot(self, snap: Snapshot, size_gb: int | None, name: str,
                       qos: str | None = None) -> Volume:
        self._require_status(snap, AVAILABLE, "snapshot", "making a volume from it")
        size = size_gb or snap.volume_size_gb
        if size < snap.volume_size_gb:
            raise Refused(reason="snapshot %s is %d GiB; a volume made from it cannot be "
                                 "smaller (asked %d GiB)" % (snap.id, snap.volume_size_gb, size))
        source = self.inventory.get(Volume, snap.volume_id)
        drv = self._making(snap.backend)
        request = _qos_request(drv, qos)
        self._check_space(drv, size, "a new %d GiB volume" % size)
        with self._reading(Snapshot, snap.id, "cloning") as snap:
            vol = Volume(id=new_id(), backend=snap.backend, name=name, size_gb=size,
                         source_snapshot_id=snap.id)
            created: Volume = self._create(vol, lambda: drv.create_volume_from_snapshot(
                volume_dict(vol, request), snapshot_dict(snap, source)))
        return created

    def clone_volume(self, source: str, name: str = "", size_gb: int | None = None,
                     qos: str | None = None) -> Volume:
        name = check_name(name, "volume")
        src = self.volume(source)
        self._require_status(src, AVAILABLE, "volume", "cloning it")
        size = size_gb or src.size_gb
        if size < src.size_gb:
            raise Refused(reason="volume %s is %d GiB; its clone cannot be smaller "
                                 "(asked %d GiB)" % (src.id, src.size_gb, size))
        check_size(size, "a volume's size")
        drv = self._making(src.backend)
        request = _qos_request(drv, qos)
        self._check_space(drv, size, "a new %d GiB volume" % size)
        with self._reading(Volume, src.id, "cloning") as src:
            if size < src.size_gb:
                raise Refused(reason="volume %s is %d GiB; its clone cannot be smaller "
                                     "(asked %d GiB)" % (src.id, src.size_gb, size))
            vol = Volume(id=new_id(), backend=src.backend, name=name, size_gb=size,
                         source_volume_id=src.id)
            created: Volume = self._create(vol, lambda: drv.create_cloned_volume(
                volume_dict(vol, request), volume_dict(src)))
        return created

    def delete_volume(self, ref: str, cascade: bool = False) -> Volume:
        """Delete a volume; with ``cascade``, its snapshots first."""
        vol = self.volume(ref)
        snaps = self.inventory.dependents(vol.id)["snapshots"]
        if snaps and not cascade:
            raise Refused(reason="volume %s has %d snapshot(s) (%s); delete them first or "
                                 "use --cascade" % (vol.id, len(snaps),
                                                    ", ".join(s.id for s in snaps)))
        self._require_status(vol, DELETABLE, "volume", "delete")
        drv = self.driver(vol.backend)
        if snaps:
            # Refuse now what the volume's delete would refuse after its
            # snapshots were gone.
            self._check_detached(drv, vol)
        for snap in snaps:
            self.delete_snapshot(snap.id)
        self._act(Volume, vol.id, "deleting", DELETABLE,
                  lambda v: drv.delete_volume(volume_dict(v)),
                  fail="error_deleting", done="deleted", check=_no_snapshots)
        try:
            backup_mod.Backups(self).volume_deleted(vol.id)
        except exception.XensmError as exc:
            LOG.error("Volume %s is deleted, but the changed-block records its backups "
                      "kept on the SR were not all removed: %s", vol.id, exc)
        return self.inventory.get(Volume, vol.id)

    @staticmethod
    def _check_detached(drv: driver_mod.XenAPISMDriver, vol: Volume,
                        doing: str = "delete it") -> None:
        """Refuse (InUse) if the volume's VDI is attached to a VM. 1-2 calls."""
        if vol.provider_id and drv.backend.is_attached(vol.provider_id):
            raise exception.InUse(kind="Volume", name=vol.id,
                                  reason="its VDI %s is attached to a VM; detach it to %s"
                                         % (vol.provider_id, doing))

    def extend_volume(self, ref: str, new_size_gb: int) -> Volume:
        vol = self.volume(ref)
        check_size(new_size_gb, "the new size")

        def larger(v: Volume) -> None:
            if new_size_gb <= v.size_gb:
                raise Refused(reason="volume %s is %d GiB; extend needs a larger size "
                                     "(volumes never shrink)" % (v.id, v.size_gb))

        larger(vol)
        drv = self.driver(vol.backend)
        self._check_space(drv, new_size_gb - vol.size_gb,
                          "extending volume %s by %d GiB" % (vol.id, new_size_gb - vol.size_gb))
        self._act(Volume, vol.id, "extending", EXTENDABLE,
                  lambda v: drv.extend_volume(volume_dict(v), new_size_gb),
                  fail="error_extending",
                  check=lambda sess, v: larger(v), size_gb=int(new_size_gb))
        return self.inventory.get(Volume, vol.id)

    def set_volume_qos(self, ref: str, qos: str) -> tuple[Volume, dict[str, int]]:
        """Change a volume's QoS in place (``min=..,max=..,burst=..`` or a
        preset; keys not given keep their value). Returns the QoS now set."""
        vol = self.volume(ref)
        drv = self.driver(vol.backend)
        request = drv.parse_qos(qos)
        result = self._act(Volume, vol.id, "updating", AVAILABLE,
                           lambda v: drv.set_volume_qos(volume_dict(v), request),
                           fail="available")
        return self.inventory.get(Volume, vol.id), result

    def revert_volume(self, ref: str, snapshot: str | None = None) -> tuple[Volume, Snapshot]:
        """Put the volume's content back to a snapshot (default: its latest)."""
        vol = self.volume(ref)
        if snapshot:
            snap = self.snapshot(snapshot)
            if snap.volume_id != vol.id:
                raise Refused(reason="snapshot %s belongs to volume %s, not to %s" % (
                    snap.id, snap.volume_id, vol.id))
        else:
            live = [s for s in self.inventory.snapshots(volume_id=vol.id)
                    if s.status == "available"]
            if not live:
                raise Refused(reason="volume %s has no available snapshot to revert to"
                              % vol.id)
            snap = live[-1]
        self._require_status(snap, AVAILABLE, "snapshot", "reverting to it")
        drv = self.driver(vol.backend)
        # The snapshot is held too: no delete of it while the volume takes its
        # content.
        with self._reading(Snapshot, snap.id, "restoring") as snap:
            update = self._act(Volume, vol.id, "reverting", AVAILABLE,
                               lambda v: drv.revert_to_snapshot(None, volume_dict(v),
                                                                snapshot_dict(snap, v)))
        if update:      # an SM revert swaps in a new VDI: record it
            self.inventory.update(Volume, vol.id, provider_id=update["provider_id"],
                                  provider_location=update["provider_location"])
        return self.inventory.get(Volume, vol.id), self.inventory.get(Snapshot, snap.id)

    def migrate_volume(self, ref: str, to: str,
                       progress: base.Progress | None = None) -> Volume:
        """Move the volume to back end ``to``, an SR of the same pool, through
        XAPI: VDI.copy when it is detached, live storage motion
        (VDI.pool_migrate) when a VM holds it. The volume keeps its id, name
        and tag; the inventory records its new back end and VDI. Refused
        (nothing changed): a volume with snapshots (they stay on the source
        SR; Cinder refuses too), a destination on another pool or of
        another family (SolidFire), not room enough there."""
        vol = self.volume(ref)
        dest_name = self.backend_name(to)
        if dest_name == vol.backend:
            raise Refused(reason="volume %s is on back end %s already" % (vol.id, dest_name))
        src = self.driver(vol.backend)
        dst = self._making(dest_name)
        dest = base.parse_location_info(dst.get_volume_stats(True).get("location_info"),
                                        dest_name)
        if dest is None:
            raise Refused(reason="back end %s (%s) keeps its volumes on no one SR of a "
                                 "pool, so XAPI cannot move volume %s there; copy its "
                                 "content (xensm volume download, then upload) instead"
                                 % (dest_name, dst.backend.SR_TYPE, vol.id))
        self._check_space(dst, vol.size_gb, "volume %s" % vol.id)
        size = vol.size_gb * identity.GiB

        def heard(fraction: float) -> None:
            if progress is not None:
                progress(min(size, int(fraction * size)), size)

        def move(v: Volume) -> dict[str, str]:
            update = src.migrate_to(volume_dict(v), dest, heard)
            if update is None:
                raise Refused(reason="back end %s's SR %s is on another pool than back end "
                                     "%s's (or names none): XAPI moves VDIs only within "
                                     "a pool" % (dest_name, dest.sr_uuid, v.backend))
            return update

        update = self._act(Volume, vol.id, "migrating", AVAILABLE, move, check=_no_snapshots)
        self.inventory.update(Volume, vol.id, backend=dest_name, **update)
        return self.inventory.get(Volume, vol.id)

    def manage_volume(self, *, vdi_uuid: str | None = None, vdi_name: str | None = None,
                      name: str = "", backend: str | None = None,
                      array_volume: str | None = None) -> Volume:
        """Adopt an existing VDI on the back end's SR as a new volume, or
        (``array_volume``: an ID or a name) an array volume whose LUN holds
        an SR with one disk, on back ends with one SR per volume."""
        if sum(bool(x) for x in (vdi_uuid, vdi_name, array_volume)) != 1:
            raise exception.InvalidInput(reason="name the VDI by uuid or by name label, "
                                                "or the array volume by ID or name")
        if array_volume:
            existing_ref = ({"source-id": array_volume} if array_volume.isdigit()
                            else {"source-name": array_volume})
        else:
            existing_ref = ({"source-id": str(vdi_uuid)} if vdi_uuid
                            else {"source-name": str(vdi_name)})
        name = check_name(name, "volume")
        backend = self.backend_name(backend)
        drv = self._making(backend)
        vol = Volume(id=new_id(), backend=backend, name=name, size_gb=0)
        # Sizing also vets the VDI: a refusal here records nothing.
        vol.size_gb = drv.manage_existing_get_size(volume_dict(vol), existing_ref)
        return self._create(vol, lambda: drv.manage_existing(volume_dict(vol), existing_ref),
                            busy="managing")

    def unmanage_volume(self, ref: str) -> Volume:
        """Forget a volume; its VDI and data stay on the SR, untagged."""
        vol = self.volume(ref)
        snaps = self.inventory.dependents(vol.id)["snapshots"]
        if snaps:
            raise Refused(reason="volume %s has %d snapshot(s); delete them before "
                                 "unmanaging it" % (vol.id, len(snaps)))
        drv = self.driver(vol.backend)
        self._act(Volume, vol.id, "unmanaging", UNMANAGEABLE,
                  lambda v: drv.unmanage(volume_dict(v)), done="unmanaged",
                  check=_no_snapshots)
        return self.inventory.get(Volume, vol.id)

    def manageable(self, backend: str | None = None) -> list[dict[str, Any]]:
        """The SR's VDIs that could become volumes (Cinder's manageable list)."""
        backend = self.backend_name(backend)
        known = [volume_dict(v) for v in self.inventory.volumes(backend=backend)]
        return self.driver(backend).get_manageable_volumes(
            known, None, 0, 0, ["reference"], ["asc"])

    def reset_state(self, kind: str, ref: str, status: str = "error") -> Record:
        """Set a record's status by hand (Cinder's reset-state), storage untouched.

        For a record left busy by a process on another host that will not
        come back, where no host can tell whether it still runs (an SQLite
        file shared between hosts; on PostgreSQL and MySQL its liveness lock
        tells, and a live owner's record is refused here).
        """
        cls: type[Volume] | type[Snapshot] = Volume if kind == "volume" else Snapshot
        if status not in ("error", "available"):
            raise exception.InvalidInput(reason="reset to error or available, not %r" % status)
        obj = self.inventory.resolve(cls, ref)
        if obj.status in BUSY and inventory_mod.owner_alive_of(obj):
            raise Refused(reason="%s %s is %s by process %s, which is still running"
                                 % (kind, obj.id, obj.status, obj.owner))
        return self.inventory.update(cls, obj.id, status=status, owner=None,
                                     status_reason="reset from %s by %s" % (obj.status,
                                                                            this_owner()))

    # -- data -----------------------------------------------------------------

    def _vdi_uuid(self, vol: Volume) -> str:
        spec = driver_mod.volume_spec(volume_dict(vol))
        vdi_uuid = driver_mod.vdi_uuid_of(spec)
        if not vdi_uuid:
            raise Refused(reason="volume %s has no VDI recorded (status %s)"
                                 % (vol.id, vol.status))
        return vdi_uuid

    def upload(self, ref: str, source: IO[bytes], size: int,
               progress: base.Progress | None = None) -> int:
        """Write ``size`` bytes of raw ``source`` at the start of the volume.

        Refused before anything is claimed or sent: a size that does not fit
        or is not the file's, an image that is not raw (qcow2, VHD, ...),
        a volume attached to a VM.
        """
        vol = self.volume(ref)
        if size > vol.size_gb * identity.GiB:
            raise Refused(reason="%d bytes do not fit in volume %s (%d GiB)"
                                 % (size, vol.id, vol.size_gb))
        held = _regular_file_size(source)
        if held is not None and held != size:
            raise exception.InvalidInput(
                reason="the file holds %d bytes from here, not %d: leave --size out to "
                       "send it whole" % (held, size))
        head, tail = _peek(source, size)
        fmt = image_format(head, tail)
        if fmt is not None:
            raise exception.InvalidInput(
                reason="the image is %s, not raw; the volume would hold the %s file, not "
                       "the disk. Convert it first: qemu-img convert -f %s -O raw IMAGE "
                       "IMAGE.raw" % (fmt, fmt, "vpc" if fmt == "vhd" else fmt))
        vdi_uuid = self._vdi_uuid(vol)
        drv = self.driver(vol.backend)
        self._check_detached(drv, vol, "upload into it")
        backend = drv.backend
        chunks = itertools.chain([head], iter(lambda: source.read(base.CHUNK), b""))
        result: int = self._act(
            Volume, vol.id, "uploading", UPLOADABLE,
            lambda v: backend.write_volume(vdi_uuid, chunks, size=size, progress=progress))
        return result

    def download(self, ref: str, sink: IO[bytes] | Callable[[bytes], Any],
                 length: int | None = None,
                 progress: base.Progress | None = None) -> int:
        """Read the volume's content (or its first ``length`` bytes) into ``sink``.

        Reading changes nothing, so the volume is not claimed; it must not be
        in the middle of a verb that changes its content.
        """
        vol = self.volume(ref)
        if vol.status in BUSY and effective_status(vol) in BUSY:
            raise Refused(reason="volume %s is %s (process %s); wait for it"
                                 % (vol.id, vol.status, vol.owner))
        vdi_uuid = self._vdi_uuid(vol)
        drv = self.driver(vol.backend)
        write = sink.write if hasattr(sink, "write") else sink
        done = 0
        for chunk in drv.backend.read_volume(vol.id, vdi_uuid, length=length,
                                             progress=progress):
            write(chunk)
            done += len(chunk)
        return done

    # -- snapshots ------------------------------------------------------------

    def create_snapshot(self, volume: str, name: str = "",
                        group_snapshot_id: str | None = None) -> Snapshot:
        """Snapshot a volume; the volume is held (``snapshotting``) meanwhile."""
        name = check_name(name, "snapshot")
        vol = self.volume(volume)
        self._require_status(vol, AVAILABLE, "volume", "a snapshot")
        drv = self._making(vol.backend)
        with self._reading(Volume, vol.id, "snapshotting") as vol:
            snap = Snapshot(id=new_id(), backend=vol.backend, volume_id=vol.id, name=name,
                            volume_size_gb=vol.size_gb, group_snapshot_id=group_snapshot_id)
            created: Snapshot = self._create(
                snap, lambda: drv.create_snapshot(snapshot_dict(snap, vol)))
        return created

    def delete_snapshot(self, ref: str) -> Snapshot:
        snap = self.snapshot(ref)
        vol = self.inventory.get(Volume, snap.volume_id)
        drv = self.driver(snap.backend)
        self._act(Snapshot, snap.id, "deleting", DELETABLE,
                  lambda s: drv.delete_snapshot(snapshot_dict(s, vol)),
                  fail="error_deleting", done="deleted")
        return self.inventory.get(Snapshot, snap.id)

    # -- groups ---------------------------------------------------------------

    def create_group(self, name: str, volumes: list[str],
                     backend: str | None = None) -> Group:
        """A group of volumes of one back end, for snapshotting them together."""
        name = check_name(name, "group")
        members = [self.volume(ref) for ref in volumes]
        backends = {v.backend for v in members}
        if len(backends) > 1:
            raise Refused(reason="a group's volumes must share one back end; these are "
                                 "on %s" % ", ".join(sorted(backends)))
        backend = self.backend_name(backend or (members[0].backend if members else None))
        for vol in members:
            if vol.backend != backend:
                raise Refused(reason="volume %s is on back end %s, not %s"
                                     % (vol.id, vol.backend, backend))
            if vol.group_id:
                raise Refused(reason="volume %s is already in group %s"
                                     % (vol.id, vol.group_id))
        drv = self._making(backend)
        group = Group(id=new_id(), backend=backend, name=name, status="creating",
                      owner=this_owner())
        self.inventory.add(group)
        try:
            try:
                drv.create_group(None, {"id": group.id, "name": name})
            except NotImplementedError:
                LOG.debug("Back end %s has no consistent groups; group %s is generic",
                          backend, group.id)
            for vol in members:
                self.inventory.update(Volume, vol.id, group_id=group.id)
        except BaseException as exc:
            self.inventory.update(Group, group.id, status="error", owner=None,
                                  status_reason=reason(exc))
            raise
        return self.inventory.update(Group, group.id, status="available", owner=None)

    def snapshot_group(self, ref: str, name: str = "") -> tuple[GroupSnapshot, list[Snapshot]]:
        """Snapshot every member: consistently where the back end can, else one by one.

        Member by member (Cinder's generic groups), a failure deletes the
        member snapshots already made, so a group snapshot is whole or absent.
        """
        name = check_name(name, "group snapshot")
        group = self.group(ref)
        self._require_status(group, AVAILABLE, "group", "a group snapshot")
        members = self.inventory.volumes(group_id=group.id)
        if not members:
            raise Refused(reason="group %s has no volumes" % group.id)
        for vol in members:
            self._require_status(vol, AVAILABLE, "volume", "a group snapshot")
        drv = self.driver(group.backend)
        gsnap = GroupSnapshot(id=new_id(), backend=group.backend, group_id=group.id,
                              name=name, status="creating", owner=this_owner())
        self.inventory.add(gsnap)
        provider_id = None
        try:
            if drv.backend.can(base.GROUP_SNAPSHOT):
                with contextlib.ExitStack() as held:
                    # Every member held, as a snapshot of one volume holds it.
                    members = [held.enter_context(self._reading(Volume, v.id, "snapshotting"))
                               for v in members]
                    provider_id, snaps = self._consistent_group_snapshot(drv, gsnap, members,
                                                                         name)
            else:
                snaps = self._generic_group_snapshot(gsnap, members, name)
        except BaseException as exc:
            self.inventory.update(GroupSnapshot, gsnap.id, status="error", owner=None,
                                  status_reason=reason(exc))
            raise
        gsnap = self.inventory.update(GroupSnapshot, gsnap.id, status="available", owner=None,
                                      provider_id=provider_id)
        return gsnap, snaps

    def _consistent_group_snapshot(self, drv: driver_mod.XenAPISMDriver, gsnap: GroupSnapshot,
                                   members: list[Volume], name: str
                                   ) -> tuple[str | None, list[Snapshot]]:
        """One write-order-consistent snapshot by the back end (Cinder's contract:
        it returns the group snapshot's model update and one update per snapshot)."""
        snaps = [Snapshot(id=new_id(), backend=vol.backend, volume_id=vol.id,
                          name=name or "", volume_size_gb=vol.size_gb,
                          group_snapshot_id=gsnap.id, status="creating", owner=this_owner())
                 for vol in members]
        for snap in snaps:
            self.inventory.add(snap)
        by_volume = {v.id: v for v in members}
        try:
            model, updates = drv.create_group_snapshot(
                None, {"id": gsnap.id, "group_id": gsnap.group_id, "name": name},
                [snapshot_dict(s, by_volume[s.volume_id]) for s in snaps])
        except BaseException as exc:
            # The back end's verb undid itself; deleting the group snapshot
            # by its members' identities also finds what a lost answer left,
            # so the group snapshot is whole or absent, as a generic one is.
            status = "error"
            try:
                drv.delete_group_snapshot(
                    None, {"id": gsnap.id, "group_id": gsnap.group_id},
                    [snapshot_dict(s, by_volume[s.volume_id]) for s in snaps])
                status = "deleted"
            except Exception as cleanup:  # noqa: BLE001 - the first failure is raised
                LOG.error("Could not remove what failed group snapshot %s left: %s; "
                          "'xensm reconcile' reports it", gsnap.id, cleanup)
            for snap in snaps:
                self.inventory.update(Snapshot, snap.id, status=status, owner=None,
                                      status_reason=reason(exc),
                                      deleted_at=utcnow() if status == "deleted" else None)
            raise
        updates_by_id = {str(u.get("id")): u for u in updates or []}
        done = []
        for snap in snaps:
            update = updates_by_id.get(snap.id, {})
            done.append(self.inventory.update(
                Snapshot, snap.id, status=update.get("status", "available"), owner=None,
                provider_id=update.get("provider_id"),
                provider_location=update.get("provider_location")))
        return (model or {}).get("provider_id"), done

    def _generic_group_snapshot(self, gsnap: GroupSnapshot, members: list[Volume],
                                name: str) -> list[Snapshot]:
        made: list[Snapshot] = []
        try:
            for vol in members:
                made.append(self.create_snapshot(vol.id, name=name,
                                                 group_snapshot_id=gsnap.id))
        except BaseException:
            # Every member snapshot of this group snapshot goes, the failed
            # one (recorded as error, nothing on the SR) included.
            for snap in reversed(self.inventory.snapshots(group_snapshot_id=gsnap.id)):
                try:
                    self.delete_snapshot(snap.id)
                except exception.XensmError as exc:
                    LOG.error("Could not delete snapshot %s of failed group snapshot %s: "
                              "%s; 'xensm reconcile' reports it", snap.id, gsnap.id, exc)
            raise
        return made

    def delete_group(self, ref: str, delete_volumes: bool = False,
                     cascade: bool = False) -> Group:
        """Delete a group; its volumes too with ``delete_volumes``, else refuse.

        The volumes (and with ``cascade`` their snapshots) are deleted one by
        one, each recorded; then the group's snapshots and the group itself.
        """
        group = self.group(ref)
        members = self.inventory.volumes(group_id=group.id)
        if members and not delete_volumes:
            raise Refused(reason="group %s has %d volume(s) (%s); use --delete-volumes" % (
                group.id, len(members), ", ".join(v.id for v in members)))
        for vol in members:
            snaps = self.inventory.dependents(vol.id)["snapshots"]
            if snaps and not cascade:
                raise Refused(reason="volume %s of group %s has %d snapshot(s); use "
                                     "--cascade" % (vol.id, group.id, len(snaps)))
        drv = self.driver(group.backend)

        def delete(g: Group) -> None:
            for vol in members:
                self.delete_volume(vol.id, cascade=cascade)
            for gsnap in self.inventory.group_snapshots(g.id):
                self._delete_group_snapshot(drv, gsnap)
            try:
                drv.delete_group(None, {"id": g.id, "name": g.name}, [])
            except NotImplementedError:
                pass            # a generic group is only a record

        self._act(Group, group.id, "deleting", DELETABLE, delete, fail="error_deleting",
                  done="deleted")
        return self.inventory.get(Group, group.id)

    def _delete_group_snapshot(self, drv: driver_mod.XenAPISMDriver,
                               gsnap: GroupSnapshot) -> None:
        """Delete what is left of a group snapshot: its live snapshots, then itself."""
        snaps = self.inventory.snapshots(group_snapshot_id=gsnap.id)
        for snap in snaps:
            self.delete_snapshot(snap.id)
        if gsnap.provider_id:
            drv.delete_group_snapshot(None, {"id": gsnap.id, "provider_id": gsnap.provider_id},
                                      [])
        self.inventory.update(GroupSnapshot, gsnap.id, status="deleted", deleted_at=utcnow())

    # -- VM snapshots ---------------------------------------------------------
    # A VM snapshot is a snapshot of every xensm volume the VM holds, taken
    # per back end as consistently as that back end can (GROUP_CONSISTENCY):
    # one array group snapshot on SolidFire, the VM paused around the
    # per-VDI snapshots on SM SRs. Each back end's share is one instant;
    # a VM whose volumes span back ends gets one instant per back end.

    def find_vm(self, ref: str) -> tuple[str, Any]:
        """The guest ``ref`` names (uuid or name label) on the pool of a
        configured back end: ``(back end, VM)``. 1 call per back end tried."""
        seen: dict[str, Any] = {}
        for name in self.backends:
            for vm in self.driver(name).backend.find_vms(ref):
                seen.setdefault(vm.uuid, (name, vm))
            if seen:
                break
        if not seen:
            raise NotInInventory(kind="VM", name=ref)
        if len(seen) > 1:
            raise Refused(reason="%d VMs are named %r (%s); use the uuid" % (
                len(seen), ref, ", ".join(sorted(seen))))
        return next(iter(seen.values()))

    def _vm_volumes(self, backend: str, vm: Any) -> tuple[list[tuple[Volume, Any]], list[str]]:
        """The VM's disks that are xensm volumes, with their VBDs, and the
        uuids of the disks that are not. 1 call + 1 per disk."""
        members, skipped = [], []
        for disk in self.driver(backend).backend.vm_disks(vm):
            vol = self.inventory.volume_by_provider_id(disk.vdi_uuid)
            if vol is None:
                skipped.append(disk.vdi_uuid)
            else:
                members.append((vol, disk.vbd))
        return members, skipped

    def snapshot_vm(self, ref: str, name: str = "") -> tuple[VMSnapshot, list[Snapshot]]:
        """Snapshot every xensm volume of the VM, back end by back end."""
        name = check_name(name, "VM snapshot")
        home, vm = self.find_vm(ref)
        members, skipped = self._vm_volumes(home, vm)
        if not members:
            raise Refused(reason="VM %s (%s) holds no xensm volume%s" % (
                vm.uuid, vm.name_label,
                " (its disks %s are not in this inventory)" % ", ".join(skipped)
                if skipped else ""))
        for vol, _vbd in members:
            self._require_status(vol, AVAILABLE, "volume", "a VM snapshot")
        by_backend: dict[str, list[tuple[Volume, Any]]] = {}
        for vol, vbd in members:
            by_backend.setdefault(vol.backend, []).append((vol, vbd))
        drivers = {b: self._making(b) for b in sorted(by_backend)}
        vmsnap = VMSnapshot(
            id=new_id(), name=name, vm_uuid=vm.uuid, vm_name=vm.name_label,
            status="creating", owner=this_owner(), skipped=" ".join(skipped),
            consistency=", ".join("%s: %s" % (b, d.backend.GROUP_CONSISTENCY or "none")
                                  for b, d in drivers.items()))
        self.inventory.add(vmsnap)
        made: list[Snapshot] = []
        try:
            for backend, share in sorted(by_backend.items()):
                made += self._vm_share(drivers[backend], vmsnap, share, name)
        except BaseException as exc:
            self._drop_vm_snapshot(vmsnap)
            self.inventory.update(VMSnapshot, vmsnap.id, status="error", owner=None,
                                  status_reason=reason(exc))
            raise
        vmsnap = self.inventory.update(VMSnapshot, vmsnap.id, status="available", owner=None)
        return vmsnap, made

    @staticmethod
    def vm_share_id(vm_snapshot_id: str, backend: str) -> str:
        """The group snapshot id a back end's share of a VM snapshot goes by
        (an array group snapshot is named and tagged with it)."""
        return str(uuid.uuid5(uuid.UUID(vm_snapshot_id), backend))

    def _vm_share(self, drv: driver_mod.XenAPISMDriver, vmsnap: VMSnapshot,
                  share: list[tuple[Volume, Any]], name: str) -> list[Snapshot]:
        """One back end's share of a VM snapshot: one consistent group
        snapshot where the back end can, else volume by volume."""
        with contextlib.ExitStack() as held:
            vols = [held.enter_context(self._reading(Volume, v.id, "snapshotting"))
                    for v, _ in share]
            devices = {v.id: vbd.userdevice for v, vbd in share}
            snaps = [Snapshot(id=new_id(), backend=v.backend, volume_id=v.id, name=name,
                              volume_size_gb=v.size_gb, vm_snapshot_id=vmsnap.id,
                              vm_userdevice=devices[v.id], status="creating",
                              owner=this_owner()) for v in vols]
            for snap in snaps:
                self.inventory.add(snap)
            by_volume = {v.id: v for v in vols}
            dicts = [snapshot_dict(s, by_volume[s.volume_id]) for s in snaps]
            try:
                if drv.backend.GROUP_CONSISTENCY:
                    _model, updates = drv.create_group_snapshot(
                        None, {"id": self.vm_share_id(vmsnap.id, drv.backend.name)}, dicts)
                else:
                    updates = []
                    for item in dicts:
                        updates.append(dict(drv.create_snapshot(item) or {}, id=item["id"]))
            except BaseException as exc:
                for snap in snaps:
                    self.inventory.update(Snapshot, snap.id, status="error", owner=None,
                                          status_reason=reason(exc))
                raise
            by_id = {str(u.get("id")): u for u in updates or []}
            return [self.inventory.update(
                Snapshot, s.id, status="available", owner=None,
                provider_id=by_id.get(s.id, {}).get("provider_id"),
                provider_location=by_id.get(s.id, {}).get("provider_location"))
                for s in snaps]

    def _drop_vm_snapshot(self, vmsnap: VMSnapshot) -> None:
        """Delete every member snapshot of a VM snapshot, back end by back end
        (a failed one's too: deleting by identity finds what a lost answer left)."""
        members = self.inventory.vm_snapshot_members(vmsnap.id)
        by_backend: dict[str, list[Snapshot]] = {}
        for snap in members:
            by_backend.setdefault(snap.backend, []).append(snap)
        for backend, snaps in sorted(by_backend.items()):
            drv = self.driver(backend)
            dicts = [snapshot_dict(s, self.inventory.get(Volume, s.volume_id)) for s in snaps]
            try:
                if drv.backend.GROUP_CONSISTENCY:
                    drv.delete_group_snapshot(
                        None, {"id": self.vm_share_id(vmsnap.id, backend)}, dicts)
                else:
                    for item in dicts:
                        drv.delete_snapshot(item)
            except exception.XensmError as exc:
                LOG.error("Could not delete the snapshots of VM snapshot %s on back end "
                          "%s: %s; 'xensm reconcile' reports them", vmsnap.id, backend, exc)
                for snap in snaps:
                    self.inventory.update(Snapshot, snap.id, status="error_deleting",
                                          owner=None, status_reason=reason(exc))
                continue
            for snap in snaps:
                self.inventory.update(Snapshot, snap.id, status="deleted", owner=None,
                                      deleted_at=utcnow())

    def vm_snapshot(self, ref: str, include_gone: bool = False) -> VMSnapshot:
        return self.inventory.resolve(VMSnapshot, ref, include_gone=include_gone)

    def vm_snapshots(self, vm: str | None = None) -> list[VMSnapshot]:
        vm_uuid = None
        if vm:
            known = {s.vm_uuid for s in self.inventory.vm_snapshots()
                     if vm in (s.vm_uuid, s.vm_name)}
            vm_uuid = next(iter(known)) if len(known) == 1 else self.find_vm(vm)[1].uuid
        return self.inventory.vm_snapshots(vm_uuid=vm_uuid)

    def delete_vm_snapshot(self, ref: str) -> VMSnapshot:
        vmsnap = self.vm_snapshot(ref)
        self._act(VMSnapshot, vmsnap.id, "deleting", DELETABLE,
                  lambda v: self._drop_vm_snapshot(v), fail="error_deleting", done="deleted")
        left = [s.id for s in self.inventory.vm_snapshot_members(vmsnap.id)]
        if left:
            self.inventory.update(VMSnapshot, vmsnap.id, status="error_deleting",
                                  status_reason="snapshots %s were not deleted"
                                                % ", ".join(left))
        return self.inventory.get(VMSnapshot, vmsnap.id)

    def revert_vm(self, ref: str) -> tuple[VMSnapshot, list[Volume]]:
        """Put every member volume back to the VM snapshot; the VM must be halted.

        Each volume is reverted as ``volume revert`` does it. On SM SRs that
        swaps in a new VDI, and XAPI's VDI.destroy of the old one destroys
        its VBD (xen-api xapi_vdi.ml destroy), so the new VDI is plugged back
        into the VM where the old one was (the VBD's userdevice, mode and
        bootable flag), as XAPI's own VM.revert does. A member volume no
        longer held by the VM is reverted and left detached; a volume the VM
        gained since the snapshot is left as it is.
        """
        vmsnap = self.vm_snapshot(ref)
        self._require_status(vmsnap, AVAILABLE, "VM snapshot", "a revert")
        members = self.inventory.vm_snapshot_members(vmsnap.id)
        home, vm = self.find_vm(vmsnap.vm_uuid)
        home_backend = self.driver(home).backend
        if vm.power_state != "Halted":
            raise Refused(reason="VM %s (%s) is %s; shut it down first (xe vm-shutdown): a "
                                 "revert needs it halted, as XAPI's own VM.revert leaves it"
                          % (vm.uuid, vm.name_label, vm.power_state.lower()))
        missing = [s.id for s in members if s.status != "available"]
        if missing or not members:
            raise Refused(reason="VM snapshot %s is incomplete (snapshots %s are not "
                                 "available)" % (vmsnap.id, ", ".join(missing) or "none"))
        reverted = []
        for snap in members:
            vol = self.inventory.get(Volume, snap.volume_id)
            held = [d for d in home_backend.vm_disks(vm) if d.vdi_uuid == vol.provider_id]
            vol, _snap = self.revert_volume(vol.id, snap.id)
            for disk in held:
                home_backend.plug_back(vm, disk, vol.provider_id or "")
            reverted.append(vol)
        return self.inventory.get(VMSnapshot, vmsnap.id), reverted

    # -- reconcile ------------------------------------------------------------

    def reconcile(self, backend: str | None = None, delete_orphans: bool = False,
                  yes: bool = False) -> reconcile_mod.Report:
        """Compare inventory and storage; with ``delete_orphans`` and ``yes``,
        remove what this inventory proves is its own leftover (without
        ``yes``, only say which would go).

        Refused when this inventory never made anything on the back end's
        SR (an empty or another inventory: a mistyped ``--db-url``), or
        recorded it on another SR. What the back end holds is read through
        :meth:`~xensm_driver.backends.base.Backend.holdings` (the VDIs of
        its SR; on SolidFire its tagged array volumes and snapshots).
        """
        name = self.backend_name(backend)
        records: list[Record] = [*self.inventory.volumes(backend=name, include_gone=True),
                                 *self.inventory.snapshots(backend=name, include_gone=True)]
        recorded = self.inventory.backend(name)
        if recorded is None or not records:
            raise Refused(reason="inventory %s has no record of anything made on back end "
                                 "%s, so it cannot tell what on its SR is whose (is "
                                 "--db-url right?)" % (self.inventory.display_url, name))
        drv = self.driver(name)
        back_end = drv.backend
        sr_uuid = back_end.sr_uuid
        if sr_uuid is not None and recorded.sr_uuid != sr_uuid:
            raise Refused(reason="inventory %s recorded back end %s on SR %s, but the back "
                                 "end now finds SR %s; its records do not describe this SR"
                                 % (self.inventory.display_url, name, recorded.sr_uuid,
                                    sr_uuid))
        # First what a group or VM snapshot cut off mid-way left: its VMs
        # paused (unpaused now: that undoes xensm's own step and destroys
        # nothing) and its partial member snapshots (deleted with --yes).
        paused = self._left_paused(name, drv)
        partial = self._partial_group_snapshots(name, drv, delete_orphans and yes)
        live_snapshots = frozenset(i for r in records if isinstance(r, Snapshot)
                                   and r.status not in GONE for i in (r.id, r.provider_id) if i)
        held = reconcile_mod.holdings_for(back_end.holdings(), records, live_snapshots)
        report = reconcile_mod.compare(name, sr_uuid or "(an SR per volume)", records, held)
        report.findings[:0] = paused
        members = self._partial_members(name)
        for finding in report.findings:
            if finding.kind == reconcile_mod.INTERRUPTED and finding.id in partial:
                finding.action_taken = partial[finding.id]
            elif finding.kind == reconcile_mod.INTERRUPTED and finding.id in members:
                finding.action = ("it is a member of a group or VM snapshot cut off mid-way: "
                                  "'xensm reconcile --delete-orphans --yes' deletes it")
        if delete_orphans:
            by_uuid = {h.uuid: h for h in held}
            for finding in report.findings:
                if finding.kind != reconcile_mod.ORPHAN_VDI:
                    continue
                if not yes:
                    finding.action_taken = (
                        "would delete %s %s (a dry run: add --yes to delete)"
                        % ("VDI" if sr_uuid else finding.object, finding.vdi_uuid))
                    continue
                self._remove_orphan(back_end, by_uuid[finding.vdi_uuid or ""], finding)
        return report

    def _left_paused(self, name: str, drv: driver_mod.XenAPISMDriver
                     ) -> list[reconcile_mod.Finding]:
        """VMs carrying the pause mark of a group snapshot of back end
        ``name``: unpaused and unmarked when that group snapshot is not
        running in a live process (this inventory says so), else reported.
        1 call (every VM record), +2 per VM unpaused."""
        backend = drv.backend
        findings = []
        for vm in backend.left_paused():
            mark = vm.paused_by
            if mark is None or mark.backend != name:
                continue
            gsnap = self._pausing_record(name, mark.group_snapshot_id)
            finding = reconcile_mod.Finding(
                reconcile_mod.PAUSED_VM, "vm", vm.uuid, None,
                gsnap.status if gsnap else None,
                "VM %s (%s) is %s and carries the pause mark of group snapshot %s "
                "(since %s)" % (vm.uuid, vm.name_label, vm.power_state.lower(),
                                mark.group_snapshot_id, _stamp(mark.since)),
                "none: reconcile unpauses it once that group snapshot is not running")
            if gsnap is None:
                finding.action = ("this inventory does not know group snapshot %s (Cinder "
                                  "or another inventory?): once it is not running, 'xe "
                                  "vm-unpause uuid=%s' and remove other-config:%s"
                                  % (mark.group_snapshot_id, vm.uuid, base.PAUSED_BY_KEY))
            else:
                alive = gsnap.status in inventory_mod.BUSY and \
                    inventory_mod.owner_alive(gsnap.owner) is not False
                try:
                    finding.action_taken = backend.finish_left_paused(vm, alive)
                except exception.XensmError as exc:
                    finding.action_taken = "not unpaused: %s" % reason(exc)
            findings.append(finding)
        return findings

    def _pausing_record(self, name: str, pause_id: str) -> GroupSnapshot | VMSnapshot | None:
        """The group snapshot, or VM snapshot (by its share on back end
        ``name``), that a pause mark names; None when this inventory has none."""
        try:
            return self.inventory.get(GroupSnapshot, pause_id)
        except NotInInventory:
            pass
        for vmsnap in self.inventory.vm_snapshots(include_gone=True):
            if self.vm_share_id(vmsnap.id, name) == pause_id:
                return vmsnap
        return None

    def _interrupted_snapshots(self, name: str) -> list[GroupSnapshot | VMSnapshot]:
        """Group and VM snapshots with members on back end ``name`` that a
        process which died left busy."""
        found: list[GroupSnapshot | VMSnapshot] = []
        for group in self.inventory.groups(backend=name, include_gone=True):
            found += [g for g in self.inventory.group_snapshots(group.id)
                      if inventory_mod.interrupted(g)]
        for vmsnap in self.inventory.vm_snapshots():
            if inventory_mod.interrupted(vmsnap) and any(
                    s.backend == name for s in self.inventory.vm_snapshot_members(vmsnap.id)):
                found.append(vmsnap)
        return found

    def _members_of(self, record: GroupSnapshot | VMSnapshot) -> list[Snapshot]:
        if isinstance(record, VMSnapshot):
            return self.inventory.vm_snapshot_members(record.id)
        return self.inventory.snapshots(group_snapshot_id=record.id)

    def _partial_members(self, name: str) -> set[str]:
        """Member snapshots of group snapshots of ``name`` left busy by a
        process that died."""
        return {s.id for record in self._interrupted_snapshots(name)
                for s in self._members_of(record) if s.backend == name}

    def _partial_group_snapshots(self, name: str, drv: driver_mod.XenAPISMDriver,
                                 delete: bool) -> dict[str, str]:
        """With ``delete``, remove every group snapshot of ``name`` a dead
        process left half made: each member snapshot through the driver's
        delete (which finds copies by their making mark), then the record.
        What was done, by member snapshot id."""
        done: dict[str, str] = {}
        # An array group snapshot's members are known by the IDs its answer
        # carried: one cut off before it answered is the array's to list
        # (reported as interrupted members; their delete says what to do).
        if not delete or drv.backend.GROUP_CONSISTENCY == base.CONSISTENT_BY_ARRAY:
            return done
        for record in self._interrupted_snapshots(name):
            kind = "VM" if isinstance(record, VMSnapshot) else "group"
            left = False
            for snap in self._members_of(record):
                if snap.backend != name:
                    left = True         # another back end's reconcile removes it
                    continue
                vol = self.inventory.get(Volume, snap.volume_id)
                try:
                    drv.delete_snapshot(snapshot_dict(snap, vol))
                except exception.XensmError as exc:
                    done[snap.id] = "not deleted: %s" % reason(exc)
                    left = True
                    continue
                self.inventory.update(Snapshot, snap.id, status="deleted", owner=None,
                                      deleted_at=utcnow())
                done[snap.id] = "deleted (a member of %s snapshot %s, cut off mid-way)" % (
                    kind, record.id)
            if not left:
                self.inventory.update(type(record), record.id, status="deleted", owner=None,
                                      deleted_at=utcnow(),
                                      status_reason="cut off mid-way; removed by reconcile")
        return done

    def _remove_orphan(self, backend: base.Backend, held: base.Holding,
                       finding: reconcile_mod.Finding) -> None:
        """Remove what a finding names through its back end, under the claim
        of the record whose tag it carries (so another reconcile or a verb on
        that object cannot act at the same time). The back end checks it
        again just before it destroys anything: still there, still carrying
        that tag, attached to nothing, and held by no live record of the
        inventory (read again here, under the claim)."""
        cls: type[Volume] | type[Snapshot] = Volume if finding.object == "volume" else Snapshot
        try:
            before = self.inventory.claim(cls, finding.id, "deleting", DELETED)
        except (Refused, NotInInventory) as exc:
            finding.action_taken = "not deleted: %s" % reason(exc)
            return
        try:
            live: list[Volume | Snapshot] = [*self.inventory.volumes(),
                                             *self.inventory.snapshots()]
            keep = frozenset(i for r in live if r.id != finding.id
                             for i in (r.id, r.provider_id) if i)
            # The finding names one object: the back end checks that tag.
            tag = identity.VOLUME_TAG if finding.object == "volume" else identity.SNAPSHOT_TAG
            held = dataclasses.replace(held, kind=finding.object, tags={tag: finding.id})
            if finding.object == "volume":
                finding.action_taken = backend.remove_orphan_volume(held, keep)
            else:
                finding.action_taken = backend.remove_orphan_snapshot(held, keep)
        except exception.XensmError as exc:
            finding.action_taken = "not deleted: %s" % reason(exc)
        finally:
            self.inventory.release(cls, finding.id, "deleting", before.status)


def _qos_request(drv: driver_mod.XenAPISMDriver, qos: str | None) -> dict[str, str] | None:
    """``--qos`` text as the driver takes it; refused (before anything is
    made) by a back end that sets no per-volume QoS."""
    return None if qos is None else drv.parse_qos(qos)


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _no_snapshots(sess: orm.Session, vol: Volume) -> None:
    """Refuse, inside a claim, a volume verb that would strand live snapshots."""
    live = list(sess.scalars(sa.select(Snapshot.id).where(
        Snapshot.volume_id == vol.id, Snapshot.status.not_in(GONE))))
    if live:
        raise Refused(reason="volume %s has %d snapshot(s) (%s); delete them first"
                             % (vol.id, len(live), ", ".join(live)))


def _regular_file_size(source: IO[bytes]) -> int | None:
    """Bytes left in ``source`` when it is a regular file, else None."""
    try:
        st = os.fstat(source.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return st.st_size - source.tell()
    except (AttributeError, OSError, ValueError):
        return None


def _peek(source: IO[bytes], size: int) -> tuple[bytes, bytes]:
    """The first bytes of the ``size`` to send (consumed: send them first)
    and, for a regular file, its last 512 (read, then the position put back)."""
    held = _regular_file_size(source)
    want = min(VHD_FOOTER, size)
    head = b""
    while len(head) < want:
        chunk = source.read(want - len(head))
        if not chunk:
            break
        head += chunk
    tail = b""
    if held is not None and held > VHD_FOOTER:
        here = source.tell()
        source.seek(here - len(head) + held - VHD_FOOTER)
        tail = source.read(VHD_FOOTER)
        source.seek(here)
    return head, tail
