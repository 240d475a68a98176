"""The simulated storage network shared by the XAPI and array simulators.

A :class:`Fabric` is rooted in a directory and holds everything a storage
network would: iSCSI targets (address, port, IQN, optional CHAP) with their
LUNs, Fibre Channel (HBA) LUNs seen by every host, NFS exports, local disks of
individual hosts and the management endpoints of storage arrays (NetApp,
EqualLogic) with their credentials.

Every LUN, export and disk owns a real directory: whatever an SR writes onto
it (its metadata - SR uuid, VDI records - and its VDI data files) lives under
that directory.  Copying a LUN's directory with :meth:`Fabric.copy_tree`
therefore copies the SR on it, exactly as an array-side snapshot or clone of a
LUN does, uuid included.

The registry (not the data) is kept in ``<root>/fabric.json`` so a fabric
reopened on the same directory finds its targets and LUNs again.

The fabric is thread-safe: registry changes are serialised by one lock; each
LUN carries its own ``lock`` that users take while touching its directory.
This module imports nothing outside the standard library.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

__all__ = ['Fabric', 'FabricError', 'Lun', 'Target', 'NfsExport', 'Array',
           'sparse_copy', 'allocated_bytes']

_CHUNK = 1 << 20


class FabricError(Exception):
    """A storage network operation failed.

    ``kind`` says why, so callers can map it to the error a real initiator
    sees: ``unreachable`` (nothing listens at that address/port), ``iqn``
    (no such target at that portal), ``chap`` (CHAP credentials rejected),
    ``access`` (initiator not allowed to see any LUN), ``nfs-server`` (no NFS
    service on that host), ``nfs-path`` (no such export), ``no-device``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(eq=False)
class Lun:
    """One SCSI logical unit, backed by a directory."""

    scsi_id: str
    lun_id: int
    size_bytes: int
    vendor: str
    serial: str
    iqn: str            # target IQN; '' for an HBA (Fibre Channel) LUN
    path: str           # backing directory
    initiators: set[str] | None = None    # None: any initiator may log in
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def allows(self, initiator: str | None) -> bool:
        return self.initiators is None or (initiator is not None and
                                           initiator in self.initiators)

    def to_dict(self) -> dict[str, Any]:
        return {'scsi_id': self.scsi_id, 'lun_id': self.lun_id,
                'size_bytes': self.size_bytes, 'vendor': self.vendor,
                'serial': self.serial, 'iqn': self.iqn, 'path': self.path,
                'initiators': (None if self.initiators is None
                               else sorted(self.initiators))}


@dataclass(eq=False)
class Target:
    """An iSCSI target (portal address, port, IQN, optional CHAP)."""

    address: str
    iqn: str
    port: int = 3260
    chap: tuple[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {'address': self.address, 'iqn': self.iqn, 'port': self.port,
                'chap': list(self.chap) if self.chap else None}


@dataclass(eq=False)
class NfsExport:
    server: str
    path: str
    size_bytes: int
    directory: str

    def to_dict(self) -> dict[str, Any]:
        return {'server': self.server, 'path': self.path,
                'size_bytes': self.size_bytes, 'directory': self.directory}


@dataclass(eq=False)
class Array:
    """The management endpoint of a storage array (``netapp``, ``equal``).

    ``pools`` maps an aggregate (NetApp) or storage pool (EqualLogic) name to
    its capacity in bytes.  Volumes the array creates are LUNs on target
    ``iqn`` at ``address``.
    """

    kind: str
    address: str
    username: str
    password: str
    pools: dict[str, int]
    iqn: str
    directory: str

    def to_dict(self) -> dict[str, Any]:
        return {'kind': self.kind, 'address': self.address,
                'username': self.username, 'password': self.password,
                'pools': dict(self.pools), 'iqn': self.iqn,
                'directory': self.directory}


def _sanitize(name: str) -> str:
    out = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)
    return out.strip('_') or '_'


def _chap(chap: Any) -> tuple[str, str] | None:
    if not chap:
        return None
    user, secret = chap
    return (str(user), str(secret))


def allocated_bytes(path: str) -> int:
    """Bytes a (sparse) file really occupies on disk."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def data_extents(fd: int, size: int) -> Iterable[tuple[int, int]]:
    """Yield ``(offset, length)`` of the data (non-hole) regions of ``fd``.

    Uses SEEK_DATA/SEEK_HOLE; where the filesystem lacks them the whole file
    is reported as one extent.
    """
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    return
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            end = min(end, size)
            if end > start:
                yield start, end - start
            pos = end
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP) and pos == 0:
            if size:
                yield 0, size
            return
        raise


def sparse_copy(src: str, dst: str) -> None:
    """Copy file ``src`` to ``dst`` keeping holes as holes."""
    size = os.path.getsize(src)
    tmp = dst + '.copy-tmp'
    with open(src, 'rb') as fsrc, open(tmp, 'wb') as fdst:
        sfd, dfd = fsrc.fileno(), fdst.fileno()
        for off, length in data_extents(sfd, size):
            _copy_range(sfd, dfd, off, length)
        os.ftruncate(dfd, size)
    os.replace(tmp, dst)


def _copy_range(sfd: int, dfd: int, off: int, length: int) -> None:
    end = off + length
    while off < end:
        n = min(_CHUNK * 8, end - off)
        try:
            copied = os.copy_file_range(sfd, dfd, n, off, off)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                 errno.EOPNOTSUPP):
                raise
            copied = 0
        if copied <= 0:
            data = os.pread(sfd, min(n, _CHUNK), off)
            if not data:
                return
            # Skip zero blocks so a filled-with-zeros region stays a hole.
            if data.count(0) != len(data):
                os.pwrite(dfd, data, off)
            copied = len(data)
        off += copied


class Fabric:
    """The simulated storage network: targets, LUNs, exports, disks, arrays."""

    def __init__(self, root_dir: str) -> None:
        self.root_dir = os.path.abspath(root_dir)
        os.makedirs(self.root_dir, exist_ok=True)
        self._lock = threading.RLock()
        self._targets: dict[str, Target] = {}
        self._luns: dict[str, Lun] = {}
        self._exports: dict[tuple[str, str], NfsExport] = {}
        self._local: dict[tuple[str, str], tuple[str, int]] = {}
        self._arrays: dict[str, Array] = {}
        self._load()

    # -- persistence -------------------------------------------------------
    @property
    def _registry(self) -> str:
        return os.path.join(self.root_dir, 'fabric.json')

    def _load(self) -> None:
        try:
            with open(self._registry) as f:
                data = json.load(f)
        except FileNotFoundError:
            return
        for t in data.get('targets', []):
            self._targets[t['iqn']] = Target(
                t['address'], t['iqn'], t['port'],
                _chap(t.get('chap')))
        for d in data.get('luns', []):
            inits = d.get('initiators')
            self._luns[d['scsi_id']] = Lun(
                d['scsi_id'], d['lun_id'], d['size_bytes'], d['vendor'],
                d['serial'], d['iqn'], d['path'],
                None if inits is None else set(inits))
        for e in data.get('exports', []):
            self._exports[(e['server'], e['path'])] = NfsExport(
                e['server'], e['path'], e['size_bytes'], e['directory'])
        for d in data.get('local', []):
            self._local[(d['host'], d['device'])] = (d['directory'],
                                                     d['size_bytes'])
        for a in data.get('arrays', []):
            self._arrays[a['address']] = Array(**a)

    def _save(self) -> None:
        data = {
            'targets': [t.to_dict() for t in self._targets.values()],
            'luns': [lun.to_dict() for lun in self._luns.values()],
            'exports': [e.to_dict() for e in self._exports.values()],
            'local': [{'host': h, 'device': dev, 'directory': d,
                       'size_bytes': s}
                      for (h, dev), (d, s) in self._local.items()],
            'arrays': [a.to_dict() for a in self._arrays.values()],
        }
        tmp = self._registry + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(data, f)
        os.replace(tmp, self._registry)

    # -- iSCSI targets -----------------------------------------------------
    def add_target(self, address: str, iqn: str, port: int = 3260,
                   chap: tuple[str, str] | None = None) -> None:
        """Add (or redefine) the iSCSI target ``iqn`` at ``address:port``."""
        with self._lock:
            self._targets[iqn] = Target(address, iqn, int(port),
                                        _chap(chap))
            self._save()

    def remove_target(self, iqn: str) -> None:
        """Remove a target and every LUN behind it."""
        with self._lock:
            self._targets.pop(iqn, None)
            for lun in [x for x in self._luns.values() if x.iqn == iqn]:
                self._drop_lun(lun)
            self._save()

    def get_target(self, iqn: str) -> Target:
        with self._lock:
            return self._targets[iqn]

    def targets(self, address: str | None = None,
                port: int | None = None) -> list[Target]:
        with self._lock:
            return [t for t in self._targets.values()
                    if (address is None or t.address == address)
                    and (port is None or t.port == port)]

    def set_target_chap(self, iqn: str, chap: tuple[str, str] | None) -> None:
        with self._lock:
            self._targets[iqn].chap = _chap(chap)
            self._save()

    def iscsi_login(self, address: str, port: int, iqn: str,
                    initiator: str | None,
                    chap: tuple[str, str] | None) -> list[Lun]:
        """Log ``initiator`` into target ``iqn`` at ``address:port``.

        Returns the LUNs the initiator may see; raises :class:`FabricError`
        (``unreachable``, ``iqn``, ``chap``, ``access``) as a real login
        would fail.
        """
        with self._lock:
            portal = self.targets(address, port)
            if not portal:
                raise FabricError('unreachable',
                                  'no iSCSI service at %s:%s' % (address, port))
            tgt = self._targets.get(iqn)
            if tgt is None or tgt.address != address or tgt.port != port:
                raise FabricError('iqn', 'no target %s at %s:%s'
                                  % (iqn, address, port))
            if tgt.chap is not None and (chap is None or
                                         tuple(chap) != tuple(tgt.chap)):
                raise FabricError('chap', 'CHAP authentication failed')
            luns = self.luns(iqn)
            visible = [lun for lun in luns if lun.allows(initiator)]
            if luns and not visible:
                raise FabricError('access', 'initiator %s not allowed on %s'
                                  % (initiator, iqn))
            return visible

    # -- LUNs ----------------------------------------------------------------
    def add_lun(self, iqn: str, size_bytes: int, scsi_id: str | None = None,
                lun_id: int = 0, vendor: str = 'XENSIM',
                serial: str | None = None) -> Lun:
        """Add a LUN of ``size_bytes`` behind target ``iqn``."""
        with self._lock:
            if iqn and iqn not in self._targets:
                raise KeyError(iqn)
            return self._new_lun(iqn, size_bytes, scsi_id, lun_id, vendor,
                                 serial)

    def add_hba_lun(self, size_bytes: int, scsi_id: str | None = None) -> Lun:
        """Add a Fibre Channel LUN, visible to every host's HBA."""
        with self._lock:
            lun_id = len([x for x in self._luns.values() if not x.iqn])
            return self._new_lun('', size_bytes, scsi_id, lun_id, 'XENSIM',
                                 None)

    def _new_lun(self, iqn: str, size_bytes: int, scsi_id: str | None,
                 lun_id: int, vendor: str, serial: str | None) -> Lun:
        if scsi_id is None:
            scsi_id = '36001405' + uuidlib.uuid4().hex[:25]
        if scsi_id in self._luns:
            raise ValueError('LUN %s already exists' % scsi_id)
        if serial is None:
            serial = scsi_id[-12:]
        path = os.path.join(self.root_dir, 'luns', _sanitize(scsi_id))
        os.makedirs(path, exist_ok=True)
        lun = Lun(scsi_id, int(lun_id), int(size_bytes), vendor, serial, iqn,
                  path)
        self._luns[scsi_id] = lun
        self._save()
        return lun

    def _drop_lun(self, lun: Lun) -> None:
        self._luns.pop(lun.scsi_id, None)
        with lun.lock:
            shutil.rmtree(lun.path, ignore_errors=True)

    def remove_lun(self, scsi_id: str) -> None:
        with self._lock:
            lun = self._luns.get(scsi_id)
            if lun is not None:
                self._drop_lun(lun)
                self._save()

    def get_lun(self, scsi_id: str) -> Lun:
        with self._lock:
            return self._luns[scsi_id]

    def luns(self, iqn: str | None = None) -> list[Lun]:
        """LUNs behind target ``iqn`` (``''``: HBA LUNs; None: all)."""
        with self._lock:
            out = [lun for lun in self._luns.values()
                   if iqn is None or lun.iqn == iqn]
            return sorted(out, key=lambda x: (x.iqn, x.lun_id, x.scsi_id))

    def resize_lun(self, scsi_id: str, size_bytes: int) -> None:
        with self._lock:
            lun = self._luns[scsi_id]
            if size_bytes < lun.size_bytes:
                raise ValueError('a LUN can only grow')
            lun.size_bytes = int(size_bytes)
            self._save()

    def set_lun_access(self, scsi_id: str,
                       initiators: set[str] | None) -> None:
        with self._lock:
            self._luns[scsi_id].initiators = (None if initiators is None
                                              else set(initiators))
            self._save()

    # -- data ------------------------------------------------------------------
    def copy_tree(self, src_dir: str, dst_dir: str) -> None:
        """Replace ``dst_dir`` with a sparse copy of ``src_dir``."""
        tmp = dst_dir.rstrip('/') + '.tree-tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for dirpath, _dirnames, filenames in os.walk(src_dir):
            rel = os.path.relpath(dirpath, src_dir)
            target = tmp if rel == '.' else os.path.join(tmp, rel)
            os.makedirs(target, exist_ok=True)
            for name in filenames:
                if name.endswith('.copy-tmp'):
                    continue
                sparse_copy(os.path.join(dirpath, name),
                            os.path.join(target, name))
        old = dst_dir.rstrip('/') + '.tree-old'
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(dst_dir):
            os.rename(dst_dir, old)
        os.rename(tmp, dst_dir)
        shutil.rmtree(old, ignore_errors=True)

    # -- NFS ---------------------------------------------------------------------
    def add_nfs_export(self, server: str, path: str, size_bytes: int) -> str:
        """Export ``path`` from NFS server ``server``; return its directory."""
        with self._lock:
            key = (server, path)
            if key in self._exports:
                return self._exports[key].directory
            directory = os.path.join(self.root_dir, 'nfs', _sanitize(server),
                                     _sanitize(path))
            os.makedirs(directory, exist_ok=True)
            self._exports[key] = NfsExport(server, path, int(size_bytes),
                                           directory)
            self._save()
            return directory

    def nfs_exports(self, server: str | None = None) -> list[NfsExport]:
        with self._lock:
            return [e for e in self._exports.values()
                    if server is None or e.server == server]

    def get_nfs_export(self, server: str, path: str) -> NfsExport:
        """The export ``server:path``; FabricError if unreachable/absent."""
        with self._lock:
            if not self.nfs_exports(server):
                raise FabricError('nfs-server',
                                  'no NFS service on %s' % server)
            exp = self._exports.get((server, path.rstrip('/') or '/'))
            if exp is None:
                exp = self._exports.get((server, path))
            if exp is None:
                raise FabricError('nfs-path', '%s:%s is not exported'
                                  % (server, path))
            return exp

    # -- local disks ---------------------------------------------------------------
    def add_local_disk(self, host_uuid: str, device: str,
                       size_bytes: int) -> str:
        """Give host ``host_uuid`` a local block device; return its dir."""
        with self._lock:
            key = (host_uuid, device)
            if key in self._local:
                return self._local[key][0]
            directory = os.path.join(self.root_dir, 'local',
                                     _sanitize(host_uuid), _sanitize(device))
            os.makedirs(directory, exist_ok=True)
            self._local[key] = (directory, int(size_bytes))
            self._save()
            return directory

    def get_local_disk(self, host_uuid: str, device: str) -> tuple[str, int]:
        """``(directory, size_bytes)`` of a host's disk; FabricError if none."""
        with self._lock:
            try:
                return self._local[(host_uuid, device)]
            except KeyError:
                raise FabricError('no-device', 'no device %s on host %s'
                                  % (device, host_uuid)) from None

    def local_disks(self, host_uuid: str) -> dict[str, int]:
        with self._lock:
            return {dev: size for (h, dev), (_d, size) in self._local.items()
                    if h == host_uuid}

    # -- arrays ------------------------------------------------------------------
    def add_array(self, kind: str, address: str, username: str,
                  password: str, pools: dict[str, int],
                  iqn: str | None = None) -> Array:
        """Register a storage array's management endpoint at ``address``.

        It also becomes an iSCSI target (``iqn``) on port 3260, behind
        which the array's volumes appear as LUNs.
        """
        with self._lock:
            if iqn is None:
                iqn = 'iqn.1992-08.com.%s:sim.%s' % (kind, _sanitize(address))
            directory = os.path.join(self.root_dir, 'arrays',
                                     _sanitize(address))
            os.makedirs(directory, exist_ok=True)
            arr = Array(kind, address, username, password, dict(pools), iqn,
                        directory)
            self._arrays[address] = arr
            if iqn not in self._targets:
                self._targets[iqn] = Target(address, iqn, 3260, None)
            self._save()
            return arr

    def get_array(self, address: str) -> Array:
        with self._lock:
            return self._arrays[address]

    def arrays(self) -> list[Array]:
        with self._lock:
            return list(self._arrays.values())

    def describe(self) -> dict[str, Any]:
        """Everything in the registry, as plain data."""
        with self._lock:
            return {
                'root_dir': self.root_dir,
                'targets': [t.to_dict() for t in self._targets.values()],
                'luns': [lun.to_dict() for lun in self.luns()],
                'exports': [e.to_dict() for e in self._exports.values()],
                'local_disks': [{'host': h, 'device': dev, 'size_bytes': s,
                                 'directory': d}
                                for (h, dev), (d, s) in self._local.items()],
                'arrays': [a.to_dict() for a in self._arrays.values()],
            }
