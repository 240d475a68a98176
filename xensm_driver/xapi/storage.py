"""Typed XAPI storage calls: SRs, PBDs, VDIs, secrets, hosts.

Everything above ``xapi/`` calls these functions and gets small frozen
records back, never raw XAPI dicts. Each function documents its XAPI round
trips, because round trips are what a busy pool master charges for.
Lookups go through ``get_all_records_where`` so that finding an object costs
one call whatever the size of the SR.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

from xensm_driver import exception
from xensm_driver.xapi.session import SessionPool

if TYPE_CHECKING:
    from xensm_driver.xapi.vms import VMs

NULL_REF = "OpaqueRef:NULL"


def _int(value: Any) -> int:
    # XAPI sends 64-bit ints as decimal strings.
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _quote(value: str) -> str:
    """A literal for XAPI's filter language (double-quoted, no escapes)."""
    if '"' in value or "\\" in value:
        raise exception.InvalidInput(
            reason="%r cannot be used in an XAPI query (quote or backslash)" % value)
    return '"%s"' % value


@dataclasses.dataclass(frozen=True)
class Host:
    ref: str
    uuid: str
    name_label: str
    address: str
    iscsi_iqn: str

    @classmethod
    def from_xapi(cls, ref: str, rec: Mapping[str, Any]) -> Host:
        other = rec.get("other_config") or {}
        return cls(ref=ref, uuid=rec["uuid"], name_label=rec.get("name_label", ""),
                   address=rec.get("address", ""),
                   iscsi_iqn=other.get("iscsi_iqn", rec.get("iscsi_iqn", "")))


@dataclasses.dataclass(frozen=True)
class SR:
    ref: str
    uuid: str
    name_label: str
    type: str
    shared: bool
    physical_size: int
    physical_utilisation: int
    virtual_allocation: int
    pbds: tuple[str, ...]
    other_config: Mapping[str, str]
    sm_config: Mapping[str, str]

    @classmethod
    def from_xapi(cls, ref: str, rec: Mapping[str, Any]) -> SR:
        return cls(ref=ref, uuid=rec["uuid"], name_label=rec.get("name_label", ""),
                   type=rec.get("type", ""), shared=bool(rec.get("shared")),
                   physical_size=_int(rec.get("physical_size")),
                   physical_utilisation=_int(rec.get("physical_utilisation")),
                   virtual_allocation=_int(rec.get("virtual_allocation")),
                   pbds=tuple(rec.get("PBDs") or ()),
                   other_config=dict(rec.get("other_config") or {}),
                   sm_config=dict(rec.get("sm_config") or {}))


@dataclasses.dataclass(frozen=True)
class Capacity:
    """An SR's space, in bytes, as XAPI accounts it."""

    physical_size: int
    physical_utilisation: int
    virtual_allocation: int

    @property
    def free(self) -> int:
        return max(0, self.physical_size - self.physical_utilisation)


@dataclasses.dataclass(frozen=True)
class PBD:
    ref: str
    uuid: str
    host: str
    sr: str
    currently_attached: bool
    device_config: Mapping[str, str]

    @classmethod
    def from_xapi(cls, ref: str, rec: Mapping[str, Any]) -> PBD:
        return cls(ref=ref, uuid=rec["uuid"], host=rec.get("host", NULL_REF),
                   sr=rec.get("SR", NULL_REF),
                   currently_attached=bool(rec.get("currently_attached")),
                   device_config=dict(rec.get("device_config") or {}))


@dataclasses.dataclass(frozen=True)
class VDI:
    ref: str
    uuid: str
    name_label: str
    sr: str
    virtual_size: int
    physical_utilisation: int
    is_a_snapshot: bool
    snapshot_of: str
    managed: bool
    read_only: bool
    vbds: tuple[str, ...]
    other_config: Mapping[str, str]
    sm_config: Mapping[str, str]
    type: str
    cbt_enabled: bool = False

    @classmethod
    def from_xapi(cls, ref: str, rec: Mapping[str, Any]) -> VDI:
        return cls(ref=ref, uuid=rec["uuid"], name_label=rec.get("name_label", ""),
                   sr=rec.get("SR", NULL_REF),
                   virtual_size=_int(rec.get("virtual_size")),
                   physical_utilisation=_int(rec.get("physical_utilisation")),
                   is_a_snapshot=bool(rec.get("is_a_snapshot")),
                   snapshot_of=rec.get("snapshot_of", NULL_REF),
                   managed=bool(rec.get("managed", True)),
                   read_only=bool(rec.get("read_only")),
                   vbds=tuple(rec.get("VBDs") or ()),
                   other_config=dict(rec.get("other_config") or {}),
                   sm_config=dict(rec.get("sm_config") or {}),
                   type=rec.get("type", "user"),
                   cbt_enabled=bool(rec.get("cbt_enabled")))

    @property
    def vhd_parent(self) -> str | None:
        """The uuid of the VHD parent (a hidden base copy), if any."""
        return self.sm_config.get("vhd-parent") or None


class Storage:
    """Typed storage calls over one :class:`SessionPool`."""

    def __init__(self, pool: SessionPool) -> None:
        self.pool = pool

    @functools.cached_property
    def vms(self) -> VMs:
        """Typed VM calls on the same session pool (:mod:`.vms`)."""
        from xensm_driver.xapi.vms import VMs
        return VMs(self.pool)

    # -- hosts ----------------------------------------------------------------

    def hosts(self) -> list[Host]:
        """Every host of the pool. 1 call."""
        records = self.pool.call("host.get_all_records")
        return sorted((Host.from_xapi(r, rec) for r, rec in records.items()),
                      key=lambda h: h.name_label)

    def master(self) -> Host:
        """The pool master. 2 calls."""
        pools = self.pool.call("pool.get_all_records")
        (pool_rec,) = pools.values()
        ref = pool_rec["master"]
        return Host.from_xapi(ref, self.pool.call("host.get_record", ref, obj=ref))

    # -- SRs ------------------------------------------------------------------

    def find_sr(self, *, uuid: str | None = None,
                name_label: str | None = None) -> list[SR]:
        """SRs with this uuid, or else this name label. 1 call."""
        if uuid:
            where = 'field "uuid"=%s' % _quote(uuid)
        elif name_label:
            where = 'field "name__label"=%s' % _quote(name_label)
        else:
            raise exception.InvalidInput(reason="find_sr needs a uuid or a name label")
        records = self.pool.call("SR.get_all_records_where", where)
        return [SR.from_xapi(r, rec) for r, rec in records.items()]

    def sr_uuid(self, sr_ref: str) -> str:
        """The SR's uuid. 1 call."""
        return str(self.pool.call("SR.get_uuid", sr_ref, obj=sr_ref))

    def get_sr(self, sr_ref: str) -> SR:
        """The SR record. 1 call (its VDI list is dropped on our side)."""
        return SR.from_xapi(sr_ref, self.pool.call("SR.get_record", sr_ref, obj=sr_ref))

    def capacity(self, sr_ref: str) -> Capacity:
        """The SR's space figures. 3 small calls.

        ``SR.get_record`` would answer in one call, but it carries the ref of
        every VDI on the SR, so its cost grows with the SR; three scalar
        getters stay flat (see bench/).
        """
        return Capacity(
            physical_size=_int(self.pool.call("SR.get_physical_size", sr_ref, obj=sr_ref)),
            physical_utilisation=_int(self.pool.call(
                "SR.get_physical_utilisation", sr_ref, obj=sr_ref)),
            virtual_allocation=_int(self.pool.call(
                "SR.get_virtual_allocation", sr_ref, obj=sr_ref)))

    def pbds(self, sr_ref: str) -> list[PBD]:
        """The SR's PBDs. 1 call."""
        records = self.pool.call("PBD.get_all_records_where",
                                 'field "SR"=%s' % _quote(sr_ref), obj=sr_ref)
        return [PBD.from_xapi(r, rec) for r, rec in records.items()]

    def all_pbds(self) -> list[PBD]:
        """Every PBD of the pool. 1 call."""
        records = self.pool.call("PBD.get_all_records")
        return [PBD.from_xapi(r, rec) for r, rec in records.items()]

    def sm_features(self, sr_type: str) -> frozenset[str] | None:
        """The SM plugin's capabilities for ``sr_type``, or None when the
        pool has no plugin of that type (XAPI would answer
        SR_UNKNOWN_DRIVER). 1 call."""
        records = self.pool.call("SM.get_all_records_where",
                                 'field "type"=%s' % _quote(sr_type))
        if not records:
            return None
        caps: set[str] = set()
        for rec in records.values():
            caps.update(rec.get("capabilities") or ())
            caps.update((rec.get("features") or {}).keys())
        return frozenset(caps)

    def create_sr(self, host_ref: str, device_config: Mapping[str, str], sr_type: str,
                  name_label: str, *, shared: bool, name_description: str = "",
                  content_type: str = "user", physical_size: int = 0,
                  sm_config: Mapping[str, str] | None = None) -> str:
        """Create an SR; XAPI makes and plugs a PBD on every host when shared.

        1 call. On failure XAPI removes what it made.
        """
        return self.pool.call(
            "SR.create", host_ref, dict(device_config), str(physical_size), name_label,
            name_description, sr_type, content_type, shared, dict(sm_config or {}),
            obj=name_label)

    def introduce_sr(self, sr_uuid: str, name_label: str, sr_type: str, *,
                     shared: bool, device_config: Mapping[str, str],
                     hosts: list[Host], name_description: str = "",
                     content_type: str = "user") -> str:
        """Introduce an existing SR and attach it on ``hosts``.

        SR.introduce, then PBD.create and PBD.plug per host: 1 + 2 per host.
        If any step fails, what was made is undone and the error re-raised.
        """
        sr_ref = self.pool.call("SR.introduce", sr_uuid, name_label, name_description,
                                sr_type, content_type, shared, {}, obj=sr_uuid)
        try:
            for host in hosts:
                pbd = self.pool.call("PBD.create", {
                    "host": host.ref, "SR": sr_ref,
                    "device_config": dict(device_config), "other_config": {}},
                    obj=sr_uuid)
                self.pool.call("PBD.plug", pbd, obj=sr_uuid)
        except exception.XensmError:
            with contextlib.suppress(exception.XensmError):
                self.forget_sr(sr_ref)
            raise
        return sr_ref

    def plug_unplugged(self, sr_ref: str) -> dict[str, str]:
        """Plug every unplugged PBD of the SR; what still failed, by host ref.

        A shared ``SR.create`` returns with a PBD unplugged, and raises
        nothing, when a host cannot attach the SR (xen-api ``xapi_sr.ml``
        ``create`` does not read its ``Async.PBD.plug`` results). 1 call, +1
        per unplugged PBD.
        """
        failed: dict[str, str] = {}
        for pbd in self.pbds(sr_ref):
            if pbd.currently_attached:
                continue
            try:
                self.pool.call("PBD.plug", pbd.ref, obj=sr_ref)
            except exception.SRBackendFailure as exc:
                failed[pbd.host] = "%s (%s)" % (exc.code, exc.sm_text or exc.sm_name)
            except exception.XapiError as exc:
                failed[pbd.host] = exc.code
        return failed

    def unplug(self, sr_ref: str) -> None:
        """Unplug every plugged PBD of the SR. 1 + 1 per plugged PBD."""
        for pbd in self.pbds(sr_ref):
            if pbd.currently_attached:
                self.pool.call("PBD.unplug", pbd.ref, obj=sr_ref)

    def forget_sr(self, sr_ref: str) -> None:
        """Detach the SR and drop its records; the storage is kept."""
        self.unplug(sr_ref)
        self.pool.call("SR.forget", sr_ref, obj=sr_ref)

    def destroy_sr(self, sr_ref: str) -> None:
        """Detach the SR and destroy it with its storage."""
        self.unplug(sr_ref)
        self.pool.call("SR.destroy", sr_ref, obj=sr_ref)

    def scan_sr(self, sr_ref: str) -> None:
        """Reconcile the SR's VDI records with its storage. 1 call."""
        self.pool.call("SR.scan", sr_ref, obj=sr_ref)

    def probe_sr(self, host_ref: str, device_config: Mapping[str, str],
                 sr_type: str) -> str:
        """Probe storage for SRs; returns XAPI's XML. 1 call.

        An incomplete device_config fails with SR_BACKEND_FAILURE_<n>; the XML
        of what was found is the exception's ``params[2]``.
        """
        return self.pool.call("SR.probe", host_ref, dict(device_config), sr_type, {},
                              obj=sr_type)

    # -- secrets --------------------------------------------------------------

    def create_secret(self, value: str, purpose: str) -> str:
        """Store ``value`` as an XAPI secret; return its uuid. 2 calls (3
        when reading its uuid fails: the secret is deleted again, so no
        caller is left holding a secret it cannot name)."""
        ref = self.pool.call("secret.create", {
            "value": value, "other_config": {"xensm-purpose": purpose}})
        try:
            return self.pool.call("secret.get_uuid", ref, obj=ref)
        except exception.XensmError:
            with contextlib.suppress(exception.XensmError):
                self.pool.call("secret.destroy", ref, obj=ref)
            raise

    def destroy_secret(self, secret_uuid: str) -> None:
        """Delete a secret by uuid; a missing one is fine. 1-2 calls."""
        try:
            ref = self.pool.call("secret.get_by_uuid", secret_uuid, obj=secret_uuid)
        except (exception.UuidInvalid, exception.HandleInvalid):
            return
        with contextlib.suppress(exception.HandleInvalid):
            self.pool.call("secret.destroy", ref, obj=secret_uuid)

    # -- VDIs -----------------------------------------------------------------

    def create_vdi(self, sr_ref: str, size_bytes: int, name_label: str,
                   other_config: Mapping[str, str], *, name_description: str = "",
                   sm_config: Mapping[str, str] | None = None) -> str:
        """Create a user VDI, named and tagged in the one call. 1 call."""
        return self.pool.call("VDI.create", {
            "SR": sr_ref, "virtual_size": str(size_bytes), "type": "user",
            "sharable": False, "read_only": False,
            "name_label": name_label, "name_description": name_description,
            "other_config": dict(other_config), "sm_config": dict(sm_config or {}),
            "xenstore_data": {}, "tags": []}, obj=name_label)

    def find_vdis(self, sr_ref: str, name_label: str) -> list[VDI]:
        """The SR's VDIs with this name label. 1 call, flat in SR size."""
        where = 'field "name__label"=%s and field "SR"=%s' % (
            _quote(name_label), _quote(sr_ref))
        records = self.pool.call("VDI.get_all_records_where", where, obj=name_label)
        return [VDI.from_xapi(r, rec) for r, rec in records.items()]

    def find_vdis_named(self, sr_ref: str, names: list[str],
                        uuids: Iterable[str] = ()) -> list[VDI]:
        """The SR's VDIs with any of these name labels, and the VDIs with
        these uuids wherever they are. 1 call: one lookup finds objects by
        their recorded uuids and, beside them, whatever else carries their
        names."""
        terms = ['(field "name__label"=%s and field "SR"=%s)' % (_quote(n), _quote(sr_ref))
                 for n in names]
        terms += ['field "uuid"=%s' % _quote(u) for u in uuids]
        records = self.pool.call("VDI.get_all_records_where", " or ".join(terms),
                                 obj=names[0] if names else ",".join(uuids))
        return [VDI.from_xapi(r, rec) for r, rec in records.items()]

    def vdi_by_uuid(self, vdi_uuid: str) -> VDI | None:
        """The VDI with this uuid, or None. 1 call."""
        records = self.pool.call("VDI.get_all_records_where",
                                 'field "uuid"=%s' % _quote(vdi_uuid), obj=vdi_uuid)
        for ref, rec in records.items():
            return VDI.from_xapi(ref, rec)
        return None

    def sr_vdis(self, sr_ref: str) -> list[VDI]:
        """Every VDI record on the SR (base copies included). 1 call."""
        records = self.pool.call("VDI.get_all_records_where",
                                 'field "SR"=%s' % _quote(sr_ref), obj=sr_ref)
        return [VDI.from_xapi(r, rec) for r, rec in records.items()]

    def any_attached(self, vbds: tuple[str, ...]) -> bool:
        """Whether any of these VBDs is attached. 1 call per VBD.

        A VBD that vanished since the VDI record was read (a transfer's
        temporary VBD, a VM just shut down) is not attached.
        """
        for vbd in vbds:
            try:
                if self.pool.call("VBD.get_currently_attached", vbd, obj=vbd):
                    return True
            except exception.HandleInvalid:
                continue
        return False

    def base_copies(self, sr_ref: str) -> list[VDI]:
        """The SR's hidden VHD base copies (managed=false). 1 call.

        Grows with the number of base copies, not with the number of VDIs.
        """
        where = 'field "managed"="false" and field "SR"=%s' % _quote(sr_ref)
        records = self.pool.call("VDI.get_all_records_where", where, obj=sr_ref)
        return [VDI.from_xapi(r, rec) for r, rec in records.items()]

    def get_vdi(self, vdi_ref: str) -> VDI:
        """The VDI record. 1 call."""
        return VDI.from_xapi(vdi_ref, self.pool.call("VDI.get_record", vdi_ref, obj=vdi_ref))

    def snapshot_vdi(self, vdi_ref: str) -> str:
        """An O(1) snapshot; XAPI copies name and other_config. 1 call."""
        return self.pool.call("VDI.snapshot", vdi_ref, {}, obj=vdi_ref)

    def clone_vdi(self, vdi_ref: str) -> str:
        """An O(1) writable clone; XAPI copies name and other_config. 1 call."""
        return self.pool.call("VDI.clone", vdi_ref, {}, obj=vdi_ref)

    def copy_vdi_into(self, src_ref: str, dst_ref: str, *, timeout: float) -> None:
        """Copy ``src``'s content over ``dst`` inside XAPI (no data here).

        Runs as a task: Async.VDI.copy + task polling + destroy.
        """
        self.pool.call_async("VDI.copy", src_ref, NULL_REF, NULL_REF, dst_ref,
                             obj=dst_ref, timeout=timeout)

    def copy_vdi_to_sr(self, vdi_ref: str, sr_ref: str, *, timeout: float,
                       progress: Callable[[float], None] | None = None) -> str:
        """A full copy of the VDI as a new VDI on ``sr_ref``; the new ref.

        XAPI makes the copy with the source's name, description,
        other_config and tags and a new uuid, then copies the data inside
        the pool (no data here), and destroys the copy again when that
        fails (xen-api ``xapi_vdi.ml`` ``copy``). A VDI a VM holds
        read-write is refused (VDI_IN_USE). Runs as a task:
        Async.VDI.copy, 1+ task.get_record polls, task.destroy: 3 round
        trips or more.
        """
        return str(self.pool.call_async("VDI.copy", vdi_ref, sr_ref, NULL_REF, NULL_REF,
                                        obj=vdi_ref, timeout=timeout, progress=progress))

    def pool_migrate_vdi(self, vdi_ref: str, sr_ref: str, *, timeout: float,
                         progress: Callable[[float], None] | None = None) -> str:
        """Move an attached VDI live to ``sr_ref`` (storage motion); the new ref.

        XAPI mirrors the VDI into a new VDI (new uuid, the source's name;
        not its other_config), repoints the VM's VBD at it and destroys the
        source; a failure leaves the source as it was (xen-api
        ``xapi_vm_migrate.ml`` ``vdi_pool_migrate``, ``migrate_send``).
        Refused: no VM holds it (VDI_NEEDS_VM_FOR_MIGRATE), changed-block
        tracking on (VDI_CBT_ENABLED), an SR without VDI_MIRROR
        (SR_DOES_NOT_SUPPORT_MIGRATION). Runs as a task: Async.VDI.pool_migrate,
        1+ task.get_record polls, task.destroy: 3 round trips or more.
        """
        return str(self.pool.call_async("VDI.pool_migrate", vdi_ref, sr_ref, {},
                                        obj=vdi_ref, timeout=timeout, progress=progress))

    def vdi_operations(self, vdi_ref: str) -> list[str]:
        """The operations XAPI is running on the VDI now (``mirror`` while
        storage motion moves it). 1 call."""
        return sorted(str(op) for op in (self.pool.call(
            "VDI.get_current_operations", vdi_ref, obj=vdi_ref) or {}).values())

    def vbd_vdi(self, vbd_ref: str) -> str:
        """The VDI a VBD holds (storage motion repoints it). 1 call."""
        return str(self.pool.call("VBD.get_VDI", vbd_ref, obj=vbd_ref))

    def resize_vdi(self, vdi_ref: str, size_bytes: int, *, online: bool = False) -> None:
        """Grow the VDI. 1 call."""
        method = "VDI.resize_online" if online else "VDI.resize"
        self.pool.call(method, vdi_ref, str(size_bytes), obj=vdi_ref)

    def destroy_vdi(self, vdi_ref: str) -> None:
        """Destroy the VDI and its data. 1 call."""
        self.pool.call("VDI.destroy", vdi_ref, obj=vdi_ref)

    def set_vdi_identity(self, vdi_ref: str, name_label: str,
                         other_config: Mapping[str, str]) -> None:
        """Rename the VDI, then replace its other_config. 2 calls.

        Name first: until the tags are replaced, a copy still carries the
        making marker its source had (identity.MAKING_PREFIX), which names
        what it was made for whatever its name; tags first would leave, for
        a moment, a VDI tagged as the new object under its source's name.
        """
        self.set_vdi_name_label(vdi_ref, name_label)
        self.set_vdi_other_config(vdi_ref, other_config)

    def set_vdi_name_label(self, vdi_ref: str, name_label: str) -> None:
        """Rename the VDI (goes through the SM: the SR must be attached). 1 call."""
        self.pool.call("VDI.set_name_label", vdi_ref, name_label, obj=vdi_ref)

    def set_vdi_other_config(self, vdi_ref: str, other_config: Mapping[str, str]) -> None:
        """Replace the VDI's other_config. 1 call."""
        self.pool.call("VDI.set_other_config", vdi_ref, dict(other_config), obj=vdi_ref)

    def add_other_config_key(self, cls: str, ref: str, key: str, value: str) -> None:
        """Add one other_config key to an SR or VDI; XAPI refuses with
        MAP_DUPLICATE_KEY when the key is already there, which makes it a
        compare-and-set the whole pool agrees on. 1 call."""
        self.pool.call("%s.add_to_other_config" % cls, ref, key, value, obj=ref)

    def remove_other_config_key(self, cls: str, ref: str, key: str) -> None:
        """Remove one other_config key (absent is fine). 1 call."""
        self.pool.call("%s.remove_from_other_config" % cls, ref, key, obj=ref)

    def other_config(self, cls: str, ref: str) -> dict[str, str]:
        """The other_config of an SR, VDI or pool (where claims and marks are
        held). 1 call."""
        return dict(self.pool.call("%s.get_other_config" % cls, ref, obj=ref) or {})

    def the_pool(self) -> tuple[str, str]:
        """The pool object's ref and uuid (a pool has exactly one). 1 call."""
        ref, rec = next(iter(self.pool.call("pool.get_all_records").items()))
        return ref, rec["uuid"]

    # -- changed-block tracking and the NBD read path (backups) ------------------

    def enable_cbt(self, vdi_ref: str) -> None:
        """Turn changed-block tracking on (idempotent in XAPI). 1 call."""
        self.pool.call("VDI.enable_cbt", vdi_ref, obj=vdi_ref)

    def disable_cbt(self, vdi_ref: str) -> None:
        """Turn changed-block tracking off; its log is deleted. 1 call."""
        self.pool.call("VDI.disable_cbt", vdi_ref, obj=vdi_ref)

    def list_changed_blocks(self, vdi_from_ref: str, vdi_to_ref: str) -> bytes:
        """The 64 KiB blocks changed from one VDI to a later one of its CBT
        chain: a bitmap, block ``i`` at bit ``0x80 >> (i % 8)`` of byte
        ``i // 8`` (XAPI returns it base64-encoded). 1 call."""
        encoded = self.pool.call("VDI.list_changed_blocks", vdi_from_ref, vdi_to_ref,
                                 obj=vdi_to_ref)
        return base64.b64decode(encoded)

    def data_destroy(self, vdi_ref: str) -> None:
        """Free a CBT-enabled snapshot's data and keep its CBT log (its type
        becomes cbt_metadata). 1 call."""
        self.pool.call("VDI.data_destroy", vdi_ref, obj=vdi_ref)

    def nbd_info(self, vdi_ref: str) -> list[dict[str, Any]]:
        """Where XAPI's NBD server serves this VDI: ``{address, port,
        exportname, cert, subject}`` per address; the export name carries
        this call's session. 1 call."""
        return list(self.pool.call("VDI.get_nbd_info", vdi_ref, obj=vdi_ref) or [])
