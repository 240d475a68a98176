"""Backups of volumes and snapshots to object stores (Swift, S3), full and incremental.

The engine (:class:`Engine`) works on what it is handed: the back end's
typed XAPI calls (:class:`~xensm_driver.xapi.storage.Storage`), its session
pool (for the data path) and an :class:`~xensm_driver.arrays.objectstore.
ObjectStore`. :class:`Backups` records each step in the inventory and is
what ``xensm backup ...`` calls.

How a backup is made
--------------------

1. A backup of a volume first takes a snapshot of it, with changed-block
   tracking (CBT) turned on for the volume (``VDI.enable_cbt``): the snapshot
   carries a CBT log (xapi-project/sm ``VDI._cbt_snapshot``). A backup of a
   named snapshot reads that snapshot.
2. The snapshot is read through XAPI's NBD server (``VDI.get_nbd_info``;
   :mod:`xensm_driver.xapi.nbd`) in chunks of ``chunk_size`` bytes (a
   multiple of CBT's 64 KiB). A full backup reads every chunk; an
   incremental one asks ``VDI.list_changed_blocks(base, snapshot)`` and reads
   only the chunks holding a changed 64 KiB block, so what it costs grows
   with the bytes changed, not with the volume's size. XAPI's HTTP export
   has no ranges: it would cost the whole volume every time.
3. Each chunk that is not all zeros goes to the store as
   ``<prefix><backup id>/<chunk number>``, with its sha256 in the manifest,
   ``workers`` uploads at a time; at most ``2 x workers`` chunks are in
   memory, whatever the volume's size. The manifest
   (``<prefix><backup id>/manifest.json``) goes last: it lists the chunks
   this backup holds (a changed chunk that became zeros is listed as
   ``zero``), its size, chunk size, parent and whole chain.
4. The snapshot's data is destroyed and its CBT log kept
   (``VDI.data_destroy``: a ``cbt_metadata`` VDI costs no data): the next
   incremental backup of the volume starts from it. Only the latest backup
   of a volume keeps one; the one before it is destroyed.

A restore reads the chain's manifests from the store, takes each chunk from
the newest backup that holds it, checks its sha256 before anything is
written, and writes through XAPI's chunked raw import (only the chunks
sent are written: a new volume receives only the chunks that are not
zeros; an existing one all of them).

A failure (XAPI, the store, the NBD stream) removes what the attempt made:
the objects uploaded so far, the snapshot; the record says ``error`` and
why. A process killed halfway leaves a ``creating`` record of a dead
process: the next ``backup create`` of that volume (or ``backup delete`` of
it) removes its objects and its snapshot (found by the uuid recorded, or by
the making marker XAPI copied onto it).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import math
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

import sqlalchemy as sa
from oslo_config import cfg

from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.arrays import objectstore
from xensm_driver.service import inventory as inventory_mod
from xensm_driver.service.inventory import Refused
from xensm_driver.service.inventory import new_id
from xensm_driver.service.inventory import this_owner
from xensm_driver.service.models import Backup
from xensm_driver.service.models import Snapshot
from xensm_driver.service.models import Volume
from xensm_driver.service.models import utcnow

if TYPE_CHECKING:
    from xensm_driver.service.manager import Manager

LOG = logging.getLogger(__name__)

#: XAPI's CBT block (sm ``VDI.py`` CBT_BLOCK_SIZE).
CBT_BLOCK = 64 * 1024
MANIFEST = "manifest.json"
FORMAT = 1
#: Section name prefix of a backup target in the ini file.
SECTION_PREFIX = "backup:"

#: ``progress(bytes_done, bytes_total)``
Progress = Callable[[int, int], None]

target_opts = [
    cfg.StrOpt("type", choices=objectstore.TYPES, help="swift or s3"),
    cfg.StrOpt("auth_url", help="Swift: the auth URL (v1: http://proxy:8080/auth/v1.0)"),
    cfg.StrOpt("auth_version", default="1", help="Swift: auth version (1, 2.0 or 3)"),
    cfg.StrOpt("user", help="Swift: the user (tempauth: account:user)"),
    cfg.StrOpt("key", secret=True, help="Swift: the user's key (password)"),
    cfg.StrOpt("container", help="Swift: the container backups go to (made if absent)"),
    cfg.StrOpt("endpoint", help="S3: the endpoint URL"),
    cfg.StrOpt("access_key", help="S3: the access key id"),
    cfg.StrOpt("secret_key", secret=True, help="S3: the secret access key"),
    cfg.StrOpt("bucket", help="S3: the bucket backups go to (made if absent)"),
    cfg.StrOpt("region", default="us-east-1", help="S3: the region"),
    cfg.StrOpt("prefix", default="xensm-backups/",
               help="Object name prefix: a backup's objects are <prefix><backup id>/..."),
    cfg.IntOpt("chunk_size_kib", default=4096, min=64, max=64 * 1024,
               help="Chunk (object) size in KiB, a multiple of 64 (XAPI's changed-block "
                    "size): an incremental backup moves each chunk holding a changed "
                    "64 KiB block"),
    cfg.IntOpt("workers", default=4, min=1, max=64,
               help="Chunks uploaded (or downloaded for a restore) at once"),
    cfg.FloatOpt("timeout", default=60.0, min=1.0, help="Seconds per object store request"),
]


@dataclass
class Target:
    """A ``[backup:NAME]`` section. Secrets stay in the section's options and
    never reach the inventory, a log line or an exception."""

    name: str
    type: str
    container: str
    url: str
    prefix: str
    chunk_size: int
    workers: int
    _group: Any

    def store(self, container: str | None = None) -> objectstore.ObjectStore:
        """The target's store; ``container``: the one a backup was recorded in."""
        g = self._group
        try:
            if self.type == "swift":
                return objectstore.SwiftStore(g.auth_url, g.user, g.key,
                                              container or g.container,
                                              auth_version=g.auth_version, timeout=g.timeout)
            return objectstore.S3Store(g.endpoint, g.access_key, g.secret_key,
                                       container or g.bucket, region=g.region,
                                       timeout=g.timeout)
        except ImportError as exc:
            raise exception.ConfigError(
                option="[%s%s] type" % (SECTION_PREFIX, self.name),
                reason="%s is not installed (pip install 'xensm-driver[backup]')"
                       % exc.name) from None


def load_targets(conf: cfg.ConfigOpts) -> dict[str, Target]:
    """Every ``[backup:NAME]`` section, checked (ConfigError naming the option)."""
    targets = {}
    for section in conf.list_all_sections():
        if not section.startswith(SECTION_PREFIX):
            continue
        name = section[len(SECTION_PREFIX):].strip()
        try:
            conf.register_opts(target_opts, group=section)
        except cfg.DuplicateOptError:
            pass
        try:
            g = conf[section]
            kind = g.type
        except (cfg.ConfigFileValueError, ValueError) as exc:
            raise exception.ConfigError(option="[%s]" % section,
                                        reason=str(exc).splitlines()[0]) from None
        need = {"swift": ("auth_url", "user", "key", "container"),
                "s3": ("endpoint", "access_key", "secret_key", "bucket")}
        if kind not in need:
            raise exception.ConfigError(option="[%s] type" % section,
                                        reason="set type = swift or type = s3")
        for opt in need[kind]:
            if not getattr(g, opt):
                raise exception.ConfigError(option="[%s] %s" % (section, opt),
                                            reason="a %s target needs it" % kind)
        if g.chunk_size_kib % 64:
            raise exception.ConfigError(
                option="[%s] chunk_size_kib" % section,
                reason="%d is not a multiple of 64 (XAPI tracks changes in 64 KiB blocks)"
                       % g.chunk_size_kib)
        targets[name] = Target(
            name=name, type=kind, container=g.container if kind == "swift" else g.bucket,
            url=g.auth_url if kind == "swift" else g.endpoint, prefix=g.prefix,
            chunk_size=g.chunk_size_kib * 1024, workers=g.workers, _group=g)
    return targets


# -- manifests ------------------------------------------------------------------

def chunk_name(prefix: str, backup_id: str, index: int) -> str:
    return "%s%s/%08d" % (prefix, backup_id, index)


def manifest_name(prefix: str, backup_id: str) -> str:
    return "%s%s/%s" % (prefix, backup_id, MANIFEST)


def changed_chunks(bitmap: bytes, size: int, chunk_size: int) -> tuple[list[int], int]:
    """The chunks holding a block set in a CBT bitmap (block ``i`` at bit
    ``0x80 >> (i % 8)`` of byte ``i // 8``), and how many blocks are set."""
    per = chunk_size // CBT_BLOCK
    last = (size + CBT_BLOCK - 1) // CBT_BLOCK
    chunks: dict[int, None] = {}
    nblocks = 0
    for byte_index, byte in enumerate(bitmap):
        if not byte:
            continue
        for bit in range(8):
            if byte & (0x80 >> bit):
                block = byte_index * 8 + bit
                if block < last:
                    nblocks += 1
                    chunks[block // per] = None
    return list(chunks), nblocks


def is_zero(data: bytes) -> bool:
    return not any(data) if len(data) < 4096 else data.count(0) == len(data)


# -- the engine -----------------------------------------------------------------

@dataclass
class Written:
    """What writing one backup cost."""

    manifest: dict[str, Any]
    bytes_read: int
    bytes_stored: int
    chunks_stored: int
    changed_blocks: int | None


class Engine:
    """Backups over one back end's XAPI calls and one object store."""

    def __init__(self, access: Any, store: objectstore.ObjectStore, *,
                 prefix: str, chunk_size: int, workers: int,
                 progress: Progress | None = None) -> None:
        #: The back end's ``backup_access()``: the XAPI calls (xapi/backup.py).
        self.access = access
        self.store = store
        self.prefix = prefix
        self.chunk_size = chunk_size
        self.workers = workers
        self.progress = progress

    # -- writing a backup -----------------------------------------------------

    def write(self, backup_id: str, volume_id: str, source: Any, *,
              parent: dict[str, Any] | None, base: Any) -> Written:
        """Read ``source`` (all of it, or the chunks changed since the VDI
        ``base``) and store its chunks and manifest. On failure, every
        object this call stored is deleted before the error is raised."""
        size = source.virtual_size
        nchunks = max(1, math.ceil(size / self.chunk_size))
        changed_blocks: int | None = None
        if base is not None:
            bitmap = self.access.changed_blocks(base, source)
            indices, changed_blocks = changed_chunks(bitmap, size, self.chunk_size)
        else:
            indices = list(range(nchunks))
        manifest: dict[str, Any] = {
            "format": FORMAT, "backup_id": backup_id, "volume_id": volume_id,
            "created_at": utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "size_bytes": size,
            "chunk_size": self.chunk_size, "parent_id": parent["backup_id"] if parent else None,
            "chain": (parent["chain"] if parent else []) + [backup_id],
            "incremental": parent is not None, "chunks": {}}
        total = sum(self._length(i, size) for i in indices)
        read = stored = nstored = 0
        attempted: list[str] = []
        try:
            with concurrent.futures.ThreadPoolExecutor(
                    self.workers, thread_name_prefix="xensm-backup") as pool:
                pending: collections.deque[concurrent.futures.Future[None]] = \
                    collections.deque()
                try:
                    with self.access.reader(source) as reader:
                        for index in indices:
                            length = self._length(index, size)
                            data = reader.read(index * self.chunk_size, length)
                            read += length
                            if is_zero(data):
                                if parent is not None:
                                    manifest["chunks"][str(index)] = "zero"
                            else:
                                manifest["chunks"][str(index)] = \
                                    hashlib.sha256(data).hexdigest()
                                name = chunk_name(self.prefix, backup_id, index)
                                attempted.append(name)
                                pending.append(pool.submit(self.store.put, name, data))
                                stored += length
                                nstored += 1
                            del data
                            while len(pending) > 2 * self.workers or (
                                    pending and pending[0].done()):
                                pending.popleft().result()
                            if self.progress:
                                self.progress(read, total)
                    while pending:
                        pending.popleft().result()
                finally:
                    for f in pending:
                        f.cancel()
            attempted.append(manifest_name(self.prefix, backup_id))
            self.store.put(attempted[-1], json.dumps(manifest, sort_keys=True).encode())
        except BaseException:
            # By name first: a store's listing may lag behind its PUTs.
            for name in attempted:
                self.store.delete(name)
            self.delete_objects(backup_id)
            raise
        return Written(manifest, read, stored, nstored, changed_blocks)

    def _length(self, index: int, size: int) -> int:
        return max(0, min(self.chunk_size, size - index * self.chunk_size))

    # -- reading one back -----------------------------------------------------

    def manifest(self, backup_id: str) -> dict[str, Any]:
        data = self.store.get(manifest_name(self.prefix, backup_id))
        try:
            manifest: dict[str, Any] = json.loads(data)
        except ValueError:
            raise exception.BackupError(backup=backup_id,
                                        reason="its manifest is not JSON") from None
        if manifest.get("format") != FORMAT or manifest.get("backup_id") != backup_id:
            raise exception.BackupError(backup=backup_id,
                                        reason="its manifest is not of this backup")
        return manifest

    def restore(self, chain: list[dict[str, Any]], vdi_uuid: str, *, whole: bool) -> int:
        """Write the last backup of ``chain`` (oldest first) into the VDI.

        Every chunk is fetched (``workers`` at once, in order) and its sha256
        checked before it is sent; ``whole`` also sends the zero chunks (an
        existing volume's old content must go). Returns bytes written.
        """
        last = chain[-1]
        size, chunk_size = int(last["size_bytes"]), int(last["chunk_size"])
        holder: dict[int, tuple[str, str]] = {}
        for manifest in reversed(chain):
            if int(manifest["chunk_size"]) != chunk_size:
                raise exception.BackupError(
                    backup=last["backup_id"],
                    reason="backup %s of its chain has another chunk size"
                           % manifest["backup_id"])
            for key, digest in manifest["chunks"].items():
                holder.setdefault(int(key), (manifest["backup_id"], digest))
        nchunks = max(1, math.ceil(size / chunk_size))
        plan = []
        for index in range(nchunks):
            owner, digest = holder.get(index, ("", "zero"))
            if digest == "zero" and not whole:
                continue
            plan.append((index, owner, digest,
                         max(0, min(chunk_size, size - index * chunk_size))))
        planned = sum(length for *_x, length in plan)
        written = [0]

        def fetch(index: int, owner: str, digest: str, length: int) -> bytes:
            if digest == "zero":
                return bytes(length)
            data = self.store.get(chunk_name(self.prefix, owner, index))
            actual = hashlib.sha256(data).hexdigest()
            if actual != digest or len(data) != length:
                raise exception.BackupCorrupt(backup=last["backup_id"], chunk=index,
                                              holder=owner, expected=digest, actual=actual)
            return data

        def blocks() -> Iterator[tuple[int, bytes]]:
            with concurrent.futures.ThreadPoolExecutor(
                    self.workers, thread_name_prefix="xensm-restore") as pool:
                window: collections.deque[tuple[int, int, concurrent.futures.Future[bytes]]] \
                    = collections.deque()
                todo = iter(plan)
                try:
                    while True:
                        while len(window) < 2 * self.workers:
                            item = next(todo, None)
                            if item is None:
                                break
                            window.append((item[0], item[3], pool.submit(fetch, *item)))
                        if not window:
                            break
                        index, length, future = window.popleft()
                        data = future.result()
                        yield index * chunk_size, data
                        written[0] += length
                        if self.progress:
                            self.progress(written[0], planned)
                finally:
                    for *_x, f in window:
                        f.cancel()

        self.access.write_blocks(vdi_uuid, blocks(), count=len(plan), payload=planned)
        return written[0]

    def delete_objects(self, backup_id: str) -> int:
        """Delete every object under the backup's prefix; returns how many."""
        names = self.store.list("%s%s/" % (self.prefix, backup_id))
        # The manifest first: a half-deleted backup never looks whole.
        names.sort(key=lambda n: not n.endswith(MANIFEST))
        for name in names:
            self.store.delete(name)
        return len(names)


# -- the service verbs ----------------------------------------------------------

class Backups:
    """``xensm backup ...``: the engine's steps, recorded in the inventory."""

    def __init__(self, manager: Manager, progress: Progress | None = None) -> None:
        self.mgr = manager
        self.progress = progress
        self._targets: dict[str, Target] | None = None

    @property
    def inventory(self) -> inventory_mod.Inventory:
        return self.mgr.inventory

    def targets(self) -> dict[str, Target]:
        if self._targets is None:
            self._targets = load_targets(self.mgr.conf)
        return self._targets

    def target(self, name: str) -> Target:
        targets = self.targets()
        if name not in targets:
            raise exception.ConfigError(
                option="--target %s" % name,
                reason="no [%s%s] section; configured: %s" % (
                    SECTION_PREFIX, name, ", ".join(sorted(targets)) or "none"))
        return targets[name]

    def _access(self, backend: str) -> Any:
        """The back end's XAPI calls for backups (refused without an SR of its own)."""
        return self.mgr.driver(backend).backend.backup_access()

    def _engine(self, backend: str, target: Target) -> Engine:
        return Engine(self._access(backend), target.store(), prefix=target.prefix,
                      chunk_size=target.chunk_size, workers=target.workers,
                      progress=self.progress)

    def _engine_for(self, b: Backup, backend: str | None = None) -> Engine:
        """An engine on the container, prefix and chunk size ``b`` was made
        with (the target's section may have changed since), over the SR of
        ``backend`` (default: the backup's)."""
        tgt = self.target(b.target)
        return Engine(self._access(backend or b.backend), tgt.store(b.container),
                      prefix=b.prefix,
                      chunk_size=b.chunk_size or tgt.chunk_size, workers=tgt.workers,
                      progress=self.progress)

    def get(self, ref: str, include_gone: bool = False) -> Backup:
        return self.inventory.resolve(Backup, ref, include_gone=include_gone)

    def all(self, volume: str | None = None, include_gone: bool = False) -> list[Backup]:
        vol_id = self.mgr.volume(volume, include_gone=True).id if volume else None
        query = sa.select(Backup).order_by(Backup.created_at)
        if vol_id is not None:
            query = query.where(Backup.volume_id == vol_id)
        if not include_gone:
            query = query.where(Backup.status.not_in(inventory_mod.GONE))
        with self.inventory.session() as sess:
            return list(sess.scalars(query))

    def chain(self, b: Backup) -> list[Backup]:
        """The backup and its ancestors, oldest first."""
        chain = [b]
        while chain[0].parent_id:
            chain.insert(0, self.inventory.get(Backup, chain[0].parent_id))
        return chain

    def dependents(self, b: Backup) -> list[Backup]:
        return [x for x in self.all() if x.parent_id == b.id]

    # -- create ---------------------------------------------------------------

    def create(self, volume: str | None = None, snapshot: str | None = None, *,
               target: str, incremental: bool = False, name: str = "") -> Backup:
        """Back a volume up (through a snapshot this makes) or a snapshot."""
        from xensm_driver.service.manager import check_name
        name = check_name(name, "backup")
        tgt = self.target(target)
        if bool(volume) == bool(snapshot):
            raise exception.InvalidInput(reason="name a volume or a --snapshot, not both")
        snap: Snapshot | None = None
        if snapshot:
            snap = self.mgr.snapshot(snapshot)
            vol = self.inventory.get(Volume, snap.volume_id)
        else:
            assert volume is not None
            vol = self.mgr.volume(volume)
        engine = self._engine(vol.backend, tgt)
        self._finish_interrupted(vol.id)
        parent = base = None
        if incremental:
            parent = self._base(vol, tgt)
            base = engine.access.vdi(parent.cbt_vdi_uuid)
            if base is None:
                raise Refused(reason="the changed-block record of backup %s (VDI %s) is "
                                     "gone; make a full backup (leave out --incremental)"
                                     % (parent.id, parent.cbt_vdi_uuid))
            engine.chunk_size = parent.chunk_size
        engine.store.ensure()
        b = Backup(id=new_id(), backend=vol.backend, volume_id=vol.id, name=name,
                   snapshot_id=snap.id if snap else None, target=tgt.name,
                   container=tgt.container, prefix=tgt.prefix,
                   parent_id=parent.id if parent else None, incremental=bool(parent),
                   chunk_size=engine.chunk_size, status="creating", owner=this_owner(),
                   cbt_vdi_owned=snap is None)
        self.inventory.add(b)
        access = engine.access
        try:
            if snap is not None:
                with self.mgr._reading(Snapshot, snap.id, "backing-up") as snap:
                    source = self._vdi(engine, snap.provider_id, "snapshot", snap.id)
                    written = self._write(engine, b, vol, source, parent, base)
                anchor = source.uuid if source.cbt_enabled else None
            else:
                with self.mgr._reading(Volume, vol.id, "backing-up") as vol:
                    vol_vdi = self._vdi(engine, vol.provider_id, "volume", vol.id)
                    made = access.take_snapshot(
                        vol_vdi, b.id,
                        lambda uuid: self.inventory.update(Backup, b.id, source_vdi_uuid=uuid))
                source = made
                written = self._write(engine, b, vol, source, parent, base)
                access.keep_cbt_only(made)
                anchor = made.uuid
        except BaseException as exc:
            self._undo(engine, b, vol.provider_id, exc)
            raise
        done = self.inventory.update(
            Backup, b.id, status="available", owner=None, status_reason=None,
            source_vdi_uuid=source.uuid, cbt_vdi_uuid=anchor, size_bytes=source.virtual_size,
            bytes_read=written.bytes_read, bytes_stored=written.bytes_stored,
            chunks_stored=written.chunks_stored, changed_blocks=written.changed_blocks)
        self._drop_older_anchors(engine, done)
        return done

    def _write(self, engine: Engine, b: Backup, vol: Volume, source: Any,
               parent: Backup | None, base: Any) -> Written:
        parent_manifest = None
        if parent is not None:
            if not source.cbt_enabled:
                raise Refused(reason="snapshot VDI %s has no changed-block tracking (it was "
                                     "taken before tracking was on); make a full backup"
                                     % source.uuid)
            parent_manifest = engine.manifest(parent.id)
        try:
            return engine.write(b.id, vol.id, source, parent=parent_manifest, base=base)
        except exception.XapiError as exc:
            if parent is not None and exc.code == "SR_BACKEND_FAILURE_460":
                raise Refused(reason="XAPI cannot tell what changed since backup %s (its "
                                     "changed-block chain was broken: a revert, a migration "
                                     "or tracking turned off); make a full backup"
                                     % parent.id) from None
            raise

    def _base(self, vol: Volume, tgt: Target) -> Backup:
        live = [b for b in self.all(vol.id) if b.status == "available"]
        if not live:
            raise Refused(reason="volume %s has no backup yet; the first one is full "
                                 "(leave out --incremental)" % vol.id)
        latest = live[-1]
        if latest.target != tgt.name:
            raise Refused(reason="the latest backup of volume %s (%s) is on target %s; an "
                                 "incremental backup builds on it, so make it to %s, or make "
                                 "a full backup to %s" % (vol.id, latest.id, latest.target,
                                                          latest.target, tgt.name))
        if (latest.container, latest.prefix) != (tgt.container, tgt.prefix):
            raise Refused(reason="the latest backup of volume %s (%s) is in %s/%s, and target "
                                 "%s now names %s/%s; a chain stays in one place, so make a "
                                 "full backup" % (vol.id, latest.id, latest.container,
                                                  latest.prefix, tgt.name, tgt.container,
                                                  tgt.prefix))
        if not latest.cbt_vdi_uuid:
            raise Refused(reason="backup %s kept no changed-block record; make a full backup"
                                 % latest.id)
        return latest

    @staticmethod
    def _vdi(engine: Engine, vdi_uuid: str | None, kind: str, obj_id: str) -> Any:
        vdi = engine.access.vdi(vdi_uuid)
        if vdi is None:
            raise exception.NotFound(kind="The VDI of %s" % kind, name=obj_id)
        return vdi

    def _undo(self, engine: Engine, b: Backup, volume_vdi_uuid: str | None,
              exc: BaseException) -> None:
        """Remove what a failed backup made; the record says error and why."""
        left = []
        try:
            engine.delete_objects(b.id)
        except exception.XensmError as e:
            left.append("its objects (%s)" % e)
        if b.cbt_vdi_owned:
            fresh = self.inventory.get(Backup, b.id)
            try:
                engine.access.drop_snapshot(b.id, volume_vdi_uuid, fresh.source_vdi_uuid)
            except exception.XensmError as e:
                left.append("its snapshot (%s)" % e)
        from xensm_driver.service.manager import REFUSALS
        from xensm_driver.service.manager import reason
        if not left and isinstance(exc, REFUSALS):
            self.inventory.remove(Backup, b.id)     # refused: nothing to record
        elif left:
            self.inventory.update(Backup, b.id, status="error", owner=None,
                                  status_reason="%s; left behind: %s (backup delete removes "
                                                "them)" % (reason(exc), ", ".join(left)))
        else:
            self.inventory.update(Backup, b.id, status="error", owner=None,
                                  status_reason="%s; nothing of it was kept" % reason(exc))

    def _drop_older_anchors(self, engine: Engine, done: Backup) -> None:
        """Only the latest backup of a volume keeps a changed-block record."""
        for old in self.all(done.volume_id):
            if old.id == done.id or not old.cbt_vdi_uuid:
                continue
            if old.cbt_vdi_owned:
                engine.access.destroy_tagged(old.cbt_vdi_uuid, old.id)
            self.inventory.update(Backup, old.id, cbt_vdi_uuid=None)

    def volume_deleted(self, volume_id: str) -> None:
        """A deleted volume's backups stay restorable; the changed-block
        records they kept on its SR go (no incremental can follow). 1-2
        calls per backup that kept one."""
        kept = [b for b in self.all(volume_id) if b.cbt_vdi_uuid]
        if not kept:
            return
        access = self._access(self.inventory.get(Volume, volume_id).backend)
        for b in kept:
            if b.cbt_vdi_owned and b.cbt_vdi_uuid:
                access.destroy_tagged(b.cbt_vdi_uuid, b.id)
            self.inventory.update(Backup, b.id, cbt_vdi_uuid=None)

    def _finish_interrupted(self, volume_id: str) -> None:
        """Clean up after backups of this volume whose process died."""
        for b in self.all(volume_id):
            if b.status == "creating" and inventory_mod.interrupted(b):
                LOG.info("Removing what interrupted backup %s left", b.id)
                self._remove(b, "interrupted: process %s is gone; its objects and "
                                "snapshot were removed" % b.owner)

    # -- delete ---------------------------------------------------------------

    def delete(self, ref: str) -> Backup:
        b = self.get(ref)
        deps = self.dependents(b)
        if deps:
            raise Refused(reason="backup %s is the base of %s %s; an incremental backup "
                                 "needs every backup before it. Delete %s first"
                          % (b.id, "incremental backup" if len(deps) == 1 else
                             "%d incremental backups" % len(deps),
                             ", ".join(d.id for d in deps),
                             "it" if len(deps) == 1 else "them"))
        if b.status == "creating" and not inventory_mod.interrupted(b):
            raise Refused(reason="backup %s is being made by process %s" % (b.id, b.owner))

        def no_dependents(sess: Any, obj: Backup) -> None:
            import sqlalchemy as sa
            n = sess.scalar(sa.select(sa.func.count()).select_from(Backup).where(
                Backup.parent_id == obj.id, Backup.status.not_in(inventory_mod.GONE)))
            if n:
                raise Refused(reason="backup %s became the base of another backup" % obj.id)

        self.inventory.claim(Backup, b.id, "deleting",
                             frozenset({"available", "error", "creating", "error_deleting"}),
                             no_dependents)
        return self._remove(b, None)

    def _remove(self, b: Backup, why: str | None) -> Backup:
        engine = self._engine_for(b)
        try:
            engine.delete_objects(b.id)
            if b.cbt_vdi_owned:
                vol = self.inventory.get(Volume, b.volume_id)
                engine.access.drop_snapshot(
                    b.id, vol.provider_id if vol.status not in inventory_mod.GONE else None,
                    b.source_vdi_uuid)
        except BaseException as exc:
            from xensm_driver.service.manager import reason
            self.inventory.update(Backup, b.id, status="error_deleting", owner=None,
                                  status_reason=reason(exc))
            raise
        return self.inventory.update(Backup, b.id, status="deleted", owner=None,
                                     status_reason=why, deleted_at=utcnow(),
                                     cbt_vdi_uuid=None)

    # -- restore --------------------------------------------------------------

    def restore(self, ref: str, *, volume: str | None = None, name: str = "",
                backend: str | None = None) -> Volume:
        """Restore into a new volume, or over an existing detached ``volume``."""
        b = self.get(ref)
        if b.status != "available":
            raise Refused(reason="backup %s is %s%s; only an available backup restores"
                                 % (b.id, b.status, inventory_mod.owner_note(b)))
        chain = self.chain(b)
        for link in chain:
            if link.status in inventory_mod.GONE:
                raise exception.BackupError(backup=b.id,
                                            reason="backup %s of its chain is deleted" % link.id)
        engine = self._engine_for(b)
        manifests = [engine.manifest(link.id) for link in chain]
        if [m["backup_id"] for m in manifests] != manifests[-1]["chain"]:
            raise exception.BackupError(
                backup=b.id, reason="its manifest's chain %s is not the inventory's %s"
                % (manifests[-1]["chain"], [link.id for link in chain]))
        size = int(manifests[-1]["size_bytes"])
        size_gb = max(1, math.ceil(size / identity.GiB))
        with self.mgr._reading(Backup, b.id, "restoring"):
            if volume:
                vol = self.mgr.volume(volume)
                if vol.size_gb * identity.GiB < size:
                    raise Refused(reason="backup %s holds %d bytes; volume %s is %d GiB"
                                         % (b.id, size, vol.id, vol.size_gb))
                drv = self.mgr.driver(vol.backend)
                self.mgr._check_detached(drv, vol, "restore over it")
                vdi_uuid = self.mgr._vdi_uuid(vol)
                restore_engine = self._engine_for(b, vol.backend)
                self.mgr._act(Volume, vol.id, "uploading", frozenset({"available", "error"}),
                              lambda v: restore_engine.restore(manifests, vdi_uuid, whole=True))
                return self.inventory.get(Volume, vol.id)
            vol = self.mgr.create_volume(size_gb, name=name or "restore-%s" % b.id[:8],
                                         backend=backend or b.backend)
            restore_engine = self._engine_for(b, vol.backend)
            try:
                self.mgr._act(Volume, vol.id, "uploading", frozenset({"available"}),
                              lambda v: restore_engine.restore(
                                  manifests, self.mgr._vdi_uuid(v), whole=False))
            except BaseException:
                with contextlib.suppress(exception.XensmError):
                    self.mgr.delete_volume(vol.id)
                raise
            return self.inventory.get(Volume, vol.id)
