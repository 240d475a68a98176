"""The XAPI side of backups: CBT snapshots, changed blocks, NBD reads, chunked writes.

:class:`BackupAccess` is what ``service/backup.py`` is handed (by
``Backend.backup_access()``) to reach one back end's SR: it never sees the
session pool or the Storage underneath. Every method documents its round
trips. What the calls do on a real pool is in xen-api ``xapi_vdi.ml`` and
xapi-project/sm ``VDI.py`` (see ``sim/cbt.py`` and ``sim/nbd.py`` for the
simulator's model of them).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator

from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.xapi import nbd
from xensm_driver.xapi import transfer
from xensm_driver.xapi.storage import VDI
from xensm_driver.xapi.storage import Storage


@dataclasses.dataclass(frozen=True)
class Source:
    """A VDI as backups see it."""

    ref: str
    uuid: str
    virtual_size: int
    cbt_enabled: bool
    is_a_snapshot: bool
    #: The backup whose own snapshot this is (identity.BACKUP_TAG), if any.
    backup_id: str | None
    type: str

    @classmethod
    def of(cls, vdi: VDI) -> Source:
        return cls(ref=vdi.ref, uuid=vdi.uuid, virtual_size=vdi.virtual_size,
                   cbt_enabled=vdi.cbt_enabled, is_a_snapshot=vdi.is_a_snapshot,
                   backup_id=vdi.other_config.get(identity.BACKUP_TAG), type=vdi.type)


class BackupAccess:
    """Backups' XAPI calls on one SR."""

    def __init__(self, storage: Storage, sr_uuid: str, *, timeout: float = 3600.0) -> None:
        self._storage = storage
        self.sr_uuid = sr_uuid
        self.timeout = timeout

    def vdi(self, vdi_uuid: str | None) -> Source | None:
        """The VDI with this uuid, or None. 1 call (none without a uuid)."""
        if not vdi_uuid:
            return None
        vdi = self._storage.vdi_by_uuid(vdi_uuid)
        return None if vdi is None else Source.of(vdi)

    def take_snapshot(self, volume: Source, backup_id: str,
                      record: Callable[[str], object]) -> Source:
        """CBT on for the volume's VDI, then a snapshot of it named
        ``backup-<id>`` and tagged with the backup's id only. 7 calls.

        The volume carries ``xensm-making-backup-<id>`` while XAPI copies it,
        so a snapshot whose answer was lost still carries the marker and
        :meth:`drop_snapshot` finds it. ``record(uuid)`` is called as soon as
        the snapshot's uuid is known.
        """
        making = identity.Identity("backup", backup_id).making_key
        storage = self._storage
        storage.enable_cbt(volume.ref)
        storage.add_other_config_key("VDI", volume.ref, making, identity.marker(volume.uuid))
        snap_ref = storage.snapshot_vdi(volume.ref)
        snap = storage.get_vdi(snap_ref)
        record(snap.uuid)
        storage.set_vdi_identity(snap_ref, "backup-%s" % backup_id,
                                 {identity.BACKUP_TAG: backup_id})
        storage.remove_other_config_key("VDI", volume.ref, making)
        return dataclasses.replace(Source.of(snap), backup_id=backup_id)

    def drop_snapshot(self, backup_id: str, volume_uuid: str | None,
                      snap_uuid: str | None) -> None:
        """Destroy the backup's own snapshot and unmark the volume; absent is
        done. By the uuid recorded (1-2 calls), else by the making marker it
        inherited (2 calls to read the SR's VDIs, 1 per VDI found); 1-2 more
        to unmark the volume."""
        storage = self._storage
        making = identity.Identity("backup", backup_id).making_key
        if snap_uuid:
            vdi = storage.vdi_by_uuid(snap_uuid)
            if vdi is not None and vdi.is_a_snapshot and vdi.other_config.get(
                    identity.BACKUP_TAG, backup_id) == backup_id:
                self._destroy(vdi.ref)
        else:
            for sr in storage.find_sr(uuid=self.sr_uuid)[:1]:
                vdis = storage.sr_vdis(sr.ref)
                break
            else:
                vdis = []
            for vdi in vdis:
                marker = vdi.other_config.get(making)
                if marker and identity.marker_source(marker) != vdi.uuid and vdi.is_a_snapshot:
                    self._destroy(vdi.ref)
        volume = storage.vdi_by_uuid(volume_uuid) if volume_uuid else None
        if volume is not None and making in volume.other_config:
            with contextlib.suppress(exception.HandleInvalid):
                storage.remove_other_config_key("VDI", volume.ref, making)

    def destroy_tagged(self, vdi_uuid: str, backup_id: str) -> None:
        """Destroy the VDI if it is still backup ``backup_id``'s own. 1-2 calls."""
        vdi = self._storage.vdi_by_uuid(vdi_uuid)
        if vdi is not None and vdi.other_config.get(identity.BACKUP_TAG) == backup_id:
            self._destroy(vdi.ref)

    def _destroy(self, vdi_ref: str) -> None:
        with contextlib.suppress(exception.HandleInvalid):
            self._storage.destroy_vdi(vdi_ref)

    def keep_cbt_only(self, snap: Source) -> None:
        """Free the snapshot's data, keep its CBT log (``VDI.data_destroy``). 1 call."""
        self._storage.data_destroy(snap.ref)

    def changed_blocks(self, base: Source, to: Source) -> bytes:
        """The CBT bitmap from ``base`` to ``to`` (64 KiB blocks, MSB first). 1 call."""
        return self._storage.list_changed_blocks(base.ref, to.ref)

    @contextlib.contextmanager
    def reader(self, source: Source) -> Iterator[nbd.NbdReader]:
        """Ranged reads of the VDI through XAPI's NBD server. 1 call
        (``VDI.get_nbd_info``), then one NBD connection."""
        with nbd.open_reader(self._storage.nbd_info(source.ref), source.uuid) as reader:
            yield reader

    def write_blocks(self, vdi_uuid: str, blocks: Iterable[tuple[int, bytes]], *,
                     count: int, payload: int) -> int:
        """Write ``count`` blocks ``(offset, data)`` of ``payload`` bytes in
        all into the VDI through XAPI's chunked raw import: only the blocks
        sent are written. As ``Backend.write_volume``: 1 call for the task,
        the transfer, its polls and destroy."""
        def body() -> Iterator[bytes]:
            for offset, data in blocks:
                yield transfer.chunk_header(offset, len(data)) + data
            yield transfer.chunk_header(0, 0)

        transfer.upload(self._storage.pool, vdi_uuid, body(),
                        size=12 * (count + 1) + payload, timeout=self.timeout, chunked=True)
        return payload
