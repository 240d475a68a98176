"""The SQL inventory: what the service has asked the driver to make, and what came of it.

The driver is the one authority over storage; the inventory records what the
driver returned. Every change is its own short transaction, committed before
the next storage call, so a process killed at any point leaves a record that
says what it was doing (status ``creating``, ``deleting``, ... with its
``owner``), never a half-written one.

The database is any SQLAlchemy URL: SQLite by default (under the user's state
directory), PostgreSQL or MySQL for several hosts sharing one inventory. The
schema is versioned in ``xensm_schema``; opening an older inventory runs the
steps in :data:`MIGRATIONS`, opening a newer one is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import uuid as uuidlib
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import orm
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.engine import make_url

from xensm_driver import exception
from xensm_driver.service import models
from xensm_driver.service.models import Backend
from xensm_driver.service.models import Group
from xensm_driver.service.models import GroupSnapshot
from xensm_driver.service.models import Record
from xensm_driver.service.models import Snapshot
from xensm_driver.service.models import Volume


def _mysql_microseconds(conn: Connection) -> None:
    """Version 2: MySQL's DATETIME columns keep microseconds (else records made
    in one second list in id order, not creation order). Nothing elsewhere."""
    if conn.dialect.name not in ("mysql", "mariadb"):
        return
    present = set(sa.inspect(conn).get_table_names())
    for table in models.Base.metadata.sorted_tables:
        if table.name not in present:
            continue        # made by a later step, with microseconds already
        for column in table.columns:
            if isinstance(column.type, sa.DateTime):
                conn.execute(sa.text("ALTER TABLE %s MODIFY %s DATETIME(6) %s" % (
                    table.name, column.name, "NULL" if column.nullable else "NOT NULL")))


def _schedules(conn: Connection) -> None:
    """Version 3: snapshot schedules, two new tables; nothing else changes."""
    for model in (models.Schedule, models.ScheduleRun):
        model.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]


def _vm_snapshots(conn: Connection) -> None:
    """Version 4: VM snapshots -- the vm_snapshots table, and on snapshots
    the VM snapshot a snapshot belongs to and where the VM held its volume."""
    models.VMSnapshot.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]
    present = {c["name"] for c in sa.inspect(conn).get_columns("snapshots")}
    for column, ddl in (("vm_snapshot_id", "VARCHAR(36)"), ("vm_userdevice", "VARCHAR(16)")):
        if column not in present:
            conn.execute(sa.text("ALTER TABLE snapshots ADD COLUMN %s %s" % (column, ddl)))
    if "ix_snapshots_vm_snapshot_id" not in {
            i["name"] for i in sa.inspect(conn).get_indexes("snapshots")}:
        conn.execute(sa.text("CREATE INDEX ix_snapshots_vm_snapshot_id "
                             "ON snapshots (vm_snapshot_id)"))


def _backups_table(conn: Connection) -> None:
    """Version 5: the backups table (service/backup.py)."""
    models.Backup.__table__.create(conn, checkfirst=True)   # type: ignore[attr-defined]


#: ``MIGRATIONS[n](connection)`` brings a version ``n - 1`` inventory to
#: version ``n`` (inside the same transaction that records ``n``); a release
#: that changes a table adds a step here and bumps models.SCHEMA_VERSION.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _mysql_microseconds,
                                                       3: _schedules, 4: _vm_snapshots,
                                                       5: _backups_table}

#: Busy states: a verb is running on the object (or its process died).
BUSY = frozenset({"creating", "deleting", "extending", "reverting", "uploading",
                  "downloading", "managing", "unmanaging", "snapshotting", "cloning",
                  "restoring", "updating", "migrating",
                  "backing-up"})
#: Busy states of an object a verb only reads (a volume being snapshotted or
#: cloned, a snapshot a volume is made from or reverted to): nothing else may
#: change it meanwhile, and when the process dies it is as it was, available.
READING = frozenset({"snapshotting", "cloning", "restoring", "backing-up"})
#: Objects in these states are gone from the user's point of view.
GONE = frozenset({"deleted", "unmanaged"})

R = TypeVar("R", bound=Record)


class InventoryError(exception.XensmError):
    message = "Inventory %(url)s: %(reason)s"


class NotInInventory(exception.NotFound):
    """No object (or no unique one) answers to the reference given."""

    message = "%(kind)s %(name)s is not in the inventory."


class Refused(exception.XensmError):
    """The service refuses a request that would do damage, and says why."""

    message = "Refused: %(reason)s"


class NoInventory(InventoryError):
    """Nothing was ever recorded at this URL (a read-only command never creates one)."""

    message = ("No xensm inventory at %(url)s: nothing has been recorded there (is "
               "--db-url or [xensm] db_url right?). 'xensm volume create' or 'xensm "
               "volume manage' starts one.")


def default_url() -> str:
    """SQLite under ``$XDG_STATE_HOME/xensm/`` (``~/.local/state/xensm/``)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return "sqlite:///" + os.path.join(state, "xensm", "inventory.sqlite")


def display_url(url: str) -> str:
    """The URL with any password masked, for messages and ``xensm check``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown without its userinfo
        return url.split("@")[-1]


#: Overrides the host name in owners (``host:pid``); hosts sharing an
#: inventory need distinct ones (containers may all be called the same).
HOST_ENV = "XENSM_HOST"


def host_name() -> str:
    """This host as owners name it: ``$XENSM_HOST``, else the hostname."""
    return os.environ.get(HOST_ENV, "").strip() or socket.gethostname()


def this_owner() -> str:
    """How a busy record names the process working on it."""
    return "%s:%d" % (host_name(), os.getpid())


def owner_alive(owner: str | None) -> bool | None:
    """Whether the owning process runs: True/False on this host, None elsewhere
    (see :func:`owner_alive_of`, which can tell for another host too)."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != host_name():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def new_id() -> str:
    return str(uuidlib.uuid4())


class Inventory:
    """Volumes, snapshots and groups recorded in SQL."""

    def __init__(self, url: str | None = None, *, create: bool = True) -> None:
        """Open the inventory at ``url`` (default: :func:`default_url`).

        Without ``create``, a URL where no inventory was ever made raises
        :class:`NoInventory` and nothing is written there (not even an
        SQLite file). The default URL's directory is made when creating; a
        given URL's never is, so a mistyped path fails rather than starting
        an empty inventory somewhere new.
        """
        self.url = url or default_url()
        self.display_url = display_url(self.url)
        try:
            parsed = make_url(self.url)
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises ArgumentError and others
            raise InventoryError(url=self.display_url,
                                 reason="not a database URL (%s)" % exc) from None
        kwargs: dict[str, Any] = {}
        sqlite = parsed.get_backend_name() == "sqlite"
        if sqlite:
            database = parsed.database
            if database and database != ":memory:":
                path = Path(database).expanduser()
                if not path.exists():
                    if not create:
                        raise NoInventory(url=self.display_url)
                    if url is None:
                        path.parent.mkdir(parents=True, exist_ok=True)
            # Several xensm processes may share the file: wait for a lock
            # rather than fail at once.
            kwargs["connect_args"] = {"timeout": 30}
        try:
            self.engine: Engine = sa.create_engine(self.url, **kwargs)
        except Exception as exc:  # noqa: BLE001 - e.g. a missing DBAPI module
            raise InventoryError(url=self.display_url, reason=str(exc)) from None
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        self._sessions = orm.sessionmaker(self.engine, expire_on_commit=False)
        self.schema_version = self._open(create)
        #: This process's liveness lock on the server (taken before its
        #: first claim); None on SQLite, where pids on this host tell.
        self.liveness: Liveness | None = None
        if not sqlite:
            self.liveness = Liveness.of(self.url, self.engine.dialect.name)
            event.listen(self._sessions, "loaded_as_persistent", self._probe_owner)

    def close(self) -> None:
        if self.liveness is not None:
            self.liveness.release()
            self.liveness = None
        self.engine.dispose()

    def _announce(self) -> None:
        """Hold this process's liveness lock before naming it as an owner."""
        if self.liveness is not None:
            try:
                self.liveness.hold()
            except sa.exc.SQLAlchemyError as exc:
                raise InventoryError(url=self.display_url,
                                     reason="cannot take this process's liveness lock (%s)"
                                            % str(exc).strip().splitlines()[0]) from None

    def _probe_owner(self, sess: orm.Session, obj: Any) -> None:
        """As a busy record owned on another host loads: is its process alive?"""
        owner = getattr(obj, "owner", None)
        if (self.liveness is None or getattr(obj, "status", None) not in BUSY or not owner
                or owner_alive(owner) is not None):
            return
        with self.engine.connect() as conn:
            setattr(obj, PROBED, self.liveness.held_by(conn, owner))

    # -- schema ---------------------------------------------------------------

    def _open(self, create: bool) -> int:
        """Make or migrate the schema under the schema lock (see :func:`_schema_lock`):
        hosts starting at once on an empty database make it once."""
        try:
            with self.engine.connect() as conn, _schema_lock(conn, self.display_url), \
                    conn.begin():
                tables = set(sa.inspect(conn).get_table_names())
                if models.SchemaVersion.__tablename__ not in tables:
                    if tables & set(models.Base.metadata.tables):
                        raise InventoryError(
                            url=self.display_url,
                            reason="it has xensm tables but no schema version; "
                                   "it was not made by xensm")
                    if not create:
                        raise NoInventory(url=self.display_url)
                    models.Base.metadata.create_all(conn)
                    conn.execute(sa.insert(models.SchemaVersion).values(
                        id=1, version=models.SCHEMA_VERSION, updated_at=models.utcnow()))
                    return models.SCHEMA_VERSION
                return self._migrate(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise InventoryError(url=self.display_url,
                                 reason=str(exc).splitlines()[0]) from None

    @property
    def sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def _migrate(self, conn: Connection) -> int:
        version = conn.execute(sa.select(models.SchemaVersion.version)).scalar_one()
        if version > models.SCHEMA_VERSION:
            raise InventoryError(
                url=self.display_url,
                reason="its schema version %d is newer than this xensm's (%d); upgrade "
                       "xensm-driver" % (version, models.SCHEMA_VERSION))
        for step in range(version + 1, models.SCHEMA_VERSION + 1):
            migrate = MIGRATIONS.get(step)
            if migrate is None:
                raise InventoryError(
                    url=self.display_url,
                    reason="no migration from schema version %d to %d" % (step - 1, step))
            migrate(conn)
            conn.execute(sa.update(models.SchemaVersion).values(
                version=step, updated_at=models.utcnow()))
        return models.SCHEMA_VERSION

    # -- sessions -------------------------------------------------------------

    @contextlib.contextmanager
    def session(self) -> Iterator[orm.Session]:
        """One transaction, committed on exit.

        On SQLite every transaction is ``BEGIN IMMEDIATE`` (the write lock
        from its first statement: pysqlite would otherwise begin only at the
        first write, after a claim's read); on PostgreSQL and MySQL the
        reads that decide a change lock their rows (``SELECT ... FOR
        UPDATE``). Either way a read-check-write is atomic across processes.
        """
        try:
            with self._sessions.begin() as sess:
                yield sess
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            # The server went away, a lock wait timed out, a deadlock: say
            # which inventory, in one line, rather than a traceback.
            raise InventoryError(url=self.display_url,
                                 reason=str(exc.orig or exc).strip().splitlines()[0]
                                 ) from None

    # -- back ends ------------------------------------------------------------

    def record_backend(self, name: str, sr_type: str, sr_uuid: str | None) -> None:
        for attempt in (1, 2):
            try:
                with self.session() as sess:
                    row = sess.get(Backend, name)
                    if row is None:
                        sess.add(Backend(name=name, sr_type=sr_type, sr_uuid=sr_uuid))
                    elif (row.sr_type, row.sr_uuid) != (sr_type, sr_uuid):
                        row.sr_type, row.sr_uuid = sr_type, sr_uuid
                return
            except sa.exc.IntegrityError:
                # Another host inserted the row at the same instant (no row
                # to lock yet): read it again, now it is there.
                if attempt == 2:
                    raise

    def backends(self) -> list[Backend]:
        with self.session() as sess:
            return list(sess.scalars(sa.select(Backend).order_by(Backend.name)))

    def backend(self, name: str) -> Backend | None:
        """The back end as last recorded by a verb that made something, or None."""
        with self.session() as sess:
            return sess.get(Backend, name)

    # -- generic record access ------------------------------------------------

    def add(self, obj: R) -> R:
        """Insert a new record (its own transaction)."""
        if obj.owner == this_owner():
            self._announce()
        with self.session() as sess:
            sess.add(obj)
        return obj

    def get(self, cls: type[R], obj_id: str) -> R:
        with self.session() as sess:
            obj = sess.get(cls, obj_id)
        if obj is None:
            raise NotInInventory(kind=_kind(cls), name=obj_id)
        return obj

    def update(self, cls: type[R], obj_id: str, **fields: Any) -> R:
        """Set fields of one record (its own transaction); returns it."""
        with self.session() as sess:
            obj = sess.get(cls, obj_id, with_for_update=True)
            if obj is None:
                raise NotInInventory(kind=_kind(cls), name=obj_id)
            for key, value in fields.items():
                setattr(obj, key, value)
        return obj

    def remove(self, cls: type[R], obj_id: str) -> None:
        """Drop a record that never stood for anything (a create the driver refused)."""
        with self.session() as sess:
            obj = sess.get(cls, obj_id)
            if obj is not None:
                sess.delete(obj)

    def claim(self, cls: type[R], obj_id: str, busy: str, allowed: frozenset[str],
              check: Callable[[orm.Session, R], None] | None = None) -> R:
        """Move a record to ``busy`` if its status allows; returns it as it was.

        The check and the change are one transaction (``BEGIN IMMEDIATE`` on
        SQLite, a row lock on PostgreSQL and MySQL), so two processes cannot
        both start a verb on the same object. A busy record whose owner died
        counts as ``error`` (``available`` if its verb only read it).
        ``check(session, record)`` runs inside that transaction and may
        raise to refuse (e.g. "it has snapshots", read at the same instant).
        """
        self._announce()
        with self.session() as sess:
            obj = sess.get(cls, obj_id, with_for_update=True)
            if obj is None:
                raise NotInInventory(kind=_kind(cls), name=obj_id)
            before = _detached_copy(obj)
            status = effective_status(obj)
            if status not in allowed:
                raise Refused(reason="%s %s is %s%s; it must be %s" % (
                    _kind(cls), obj.id, status, owner_note(obj),
                    " or ".join(sorted(allowed))))
            if check is not None:
                check(sess, obj)
            obj.status, obj.owner, obj.status_reason = busy, this_owner(), None
        before.status = status
        return before

    def release(self, cls: type[R], obj_id: str, busy: str, status: str) -> None:
        """Put back ``status`` on a record this process claimed as ``busy``.

        Only if it still is (a reset-state meanwhile wins).
        """
        with self.session() as sess:
            obj = sess.get(cls, obj_id, with_for_update=True)
            if obj is not None and (obj.status, obj.owner) == (busy, this_owner()):
                obj.status, obj.owner = status, None

    # -- lookups --------------------------------------------------------------

    def resolve(self, cls: type[R], ref: str, *, include_gone: bool = False) -> R:
        """The object ``ref`` names: its id, its name, or a unique id prefix."""
        ref = ref.strip()
        with self.session() as sess:
            obj = sess.get(cls, ref)
            if obj is not None:
                return obj
            # Live objects first; deleted ones only when asked and nothing live matches.
            for live in ([cls.status.not_in(GONE)]
                         + ([cls.status.in_(GONE)] if include_gone else [])):
                named = list(sess.scalars(sa.select(cls).where(cls.name == ref, live)))
                if len(named) == 1:
                    return named[0]
                if len(named) > 1:
                    raise NotInInventory(
                        "%d %ss are named %r (%s); use the id" % (
                            len(named), _kind(cls), ref, ", ".join(o.id for o in named)))
                if len(ref) < 4:
                    continue
                prefixed = list(sess.scalars(sa.select(cls).where(
                    cls.id.startswith(ref, autoescape=True), live)))
                if len(prefixed) == 1:
                    return prefixed[0]
                if len(prefixed) > 1:
                    raise NotInInventory("%r matches %d %s ids; give more of it" % (
                        ref, len(prefixed), _kind(cls)))
        raise NotInInventory(kind=_kind(cls).capitalize(), name=ref)

    def volumes(self, *, backend: str | None = None, include_gone: bool = False,
                group_id: str | None = None) -> list[Volume]:
        query = sa.select(Volume).order_by(Volume.created_at, Volume.id)
        if backend:
            query = query.where(Volume.backend == backend)
        if group_id:
            query = query.where(Volume.group_id == group_id)
        if not include_gone:
            query = query.where(Volume.status.not_in(GONE))
        with self.session() as sess:
            return list(sess.scalars(query))

    def snapshots(self, *, volume_id: str | None = None, backend: str | None = None,
                  include_gone: bool = False,
                  group_snapshot_id: str | None = None) -> list[Snapshot]:
        query = sa.select(Snapshot).order_by(Snapshot.created_at, Snapshot.id)
        if volume_id:
            query = query.where(Snapshot.volume_id == volume_id)
        if backend:
            query = query.where(Snapshot.backend == backend)
        if group_snapshot_id:
            query = query.where(Snapshot.group_snapshot_id == group_snapshot_id)
        if not include_gone:
            query = query.where(Snapshot.status.not_in(GONE))
        with self.session() as sess:
            return list(sess.scalars(query))

    def groups(self, *, backend: str | None = None, include_gone: bool = False) -> list[Group]:
        query = sa.select(Group).order_by(Group.created_at, Group.id)
        if backend:
            query = query.where(Group.backend == backend)
        if not include_gone:
            query = query.where(Group.status.not_in(GONE))
        with self.session() as sess:
            return list(sess.scalars(query))

    def vm_snapshots(self, *, vm_uuid: str | None = None,
                     include_gone: bool = False) -> list[models.VMSnapshot]:
        query = sa.select(models.VMSnapshot).order_by(models.VMSnapshot.created_at,
                                                       models.VMSnapshot.id)
        if vm_uuid:
            query = query.where(models.VMSnapshot.vm_uuid == vm_uuid)
        if not include_gone:
            query = query.where(models.VMSnapshot.status.not_in(GONE))
        with self.session() as sess:
            return list(sess.scalars(query))

    def vm_snapshot_members(self, vm_snapshot_id: str,
                            include_gone: bool = False) -> list[Snapshot]:
        query = sa.select(Snapshot).where(Snapshot.vm_snapshot_id == vm_snapshot_id).order_by(
            Snapshot.vm_userdevice, Snapshot.id)
        if not include_gone:
            query = query.where(Snapshot.status.not_in(GONE))
        with self.session() as sess:
            return list(sess.scalars(query))

    def volume_by_provider_id(self, provider_id: str) -> Volume | None:
        """The live volume recorded with this VDI uuid, if any."""
        with self.session() as sess:
            return sess.scalars(sa.select(Volume).where(
                Volume.provider_id == provider_id, Volume.status.not_in(GONE))).first()

    def group_snapshots(self, group_id: str, *,
                        include_gone: bool = False) -> list[GroupSnapshot]:
        query = sa.select(GroupSnapshot).where(GroupSnapshot.group_id == group_id).order_by(
            GroupSnapshot.created_at, GroupSnapshot.id)
        if not include_gone:
            query = query.where(GroupSnapshot.status.not_in(GONE))
        with self.session() as sess:
            return list(sess.scalars(query))

    def dependents(self, volume_id: str) -> dict[str, list[Record]]:
        """What hangs off a volume: its live snapshots and live clones."""
        with self.session() as sess:
            snaps = list(sess.scalars(sa.select(Snapshot).where(
                Snapshot.volume_id == volume_id, Snapshot.status.not_in(GONE))))
            clones = list(sess.scalars(sa.select(Volume).where(
                Volume.source_volume_id == volume_id, Volume.status.not_in(GONE))))
        return {"snapshots": list(snaps), "clones": list(clones)}

    def volumes_from_snapshot(self, snapshot_id: str) -> list[Volume]:
        with self.session() as sess:
            return list(sess.scalars(sa.select(Volume).where(
                Volume.source_snapshot_id == snapshot_id, Volume.status.not_in(GONE))))

    def holder_of(self, vdi_uuid: str, but: str) -> str | None:
        """Which live volume or snapshot (other than ``but``) records
        ``vdi_uuid`` as its VDI, if any."""
        with self.session() as sess:
            for kind, cls in (("volume", Volume), ("snapshot", Snapshot)):
                found = sess.execute(sa.select(cls.id, cls.status).where(
                    cls.provider_id == vdi_uuid, cls.id != but,
                    cls.status.not_in(GONE))).first()
                if found is not None:
                    return "%s %s (%s)" % (kind, found[0], found[1])
        return None

    def counts(self, backend: str | None = None) -> dict[str, Any]:
        """Live volumes and snapshots, and the GiB given to those not in error."""
        vols = self.volumes(backend=backend)
        snaps = self.snapshots(backend=backend)
        return {"volumes": len(vols), "snapshots": len(snaps),
                "volume_gb": sum(v.size_gb for v in vols if not v.status.startswith("error")),
                "by_status": _by_status([*vols, *snaps])}

    # -- hierarchy ------------------------------------------------------------

    def tree(self, volume_id: str, *, include_gone: bool = False) -> dict[str, Any]:
        """The volume with its snapshots, and the volumes made from each, nested.

        ``{"kind", "record", "children": [...]}``; a clone of the volume
        itself (not of one of its snapshots) is a child of the volume.
        """
        volumes = {v.id: v for v in self.volumes(include_gone=True)}
        snapshots = self.snapshots(include_gone=True)

        def visible(obj: Record) -> bool:
            return include_gone or obj.status not in GONE

        def volume_node(vol: Volume, seen: set[str]) -> dict[str, Any]:
            seen = seen | {vol.id}
            children: list[dict[str, Any]] = []
            for snap in snapshots:
                if snap.volume_id == vol.id and visible(snap):
                    children.append(snapshot_node(snap, seen))
            for other in volumes.values():
                if (other.source_volume_id == vol.id and other.id not in seen
                        and visible(other)):
                    children.append(volume_node(other, seen))
            children.sort(key=lambda n: (n["record"].created_at, n["record"].id))
            return {"kind": "volume", "record": vol, "children": children}

        def snapshot_node(snap: Snapshot, seen: set[str]) -> dict[str, Any]:
            clones = [volume_node(v, seen) for v in volumes.values()
                      if v.source_snapshot_id == snap.id and v.id not in seen
                      and visible(v)]
            clones.sort(key=lambda n: (n["record"].created_at, n["record"].id))
            return {"kind": "snapshot", "record": snap, "children": clones}

        if volume_id not in volumes:
            raise NotInInventory(kind="Volume", name=volume_id)
        return volume_node(volumes[volume_id], set())

    def lineage(self, volume_id: str) -> list[Record]:
        """Where a volume came from, nearest first: snapshots and volumes up to a root."""
        chain: list[Record] = []
        seen: set[str] = set()
        vol = self.get(Volume, volume_id)
        while vol.id not in seen:
            seen.add(vol.id)
            if vol.source_snapshot_id:
                snap = self.get(Snapshot, vol.source_snapshot_id)
                chain.append(snap)
                vol = self.get(Volume, snap.volume_id)
            elif vol.source_volume_id:
                vol = self.get(Volume, vol.source_volume_id)
            else:
                break
            chain.append(vol)
        return chain


#: The attribute an inventory on a database server sets on a busy record
#: owned on another host, as it loads it: whether that process still holds
#: its liveness lock (see :class:`Liveness`).
PROBED = "_xensm_owner_alive"


def owner_alive_of(obj: Record) -> bool | None:
    """Whether the process named in the record's ``owner`` runs.

    On this host, by its pid. On another host, what the database server
    said when the record was read (its liveness lock held or not), where
    the inventory is on PostgreSQL or MySQL; None (unknown) on SQLite.
    """
    probed: bool | None = getattr(obj, PROBED, None)
    if probed is not None:
        return probed
    return owner_alive(obj.owner)


def effective_status(obj: Record) -> str:
    """The record's status, with a busy state whose process died read as ``error``
    (``available`` when that process only read the object)."""
    if obj.status in BUSY and owner_alive_of(obj) is False:
        return "available" if obj.status in READING else "error"
    return obj.status


def interrupted(obj: Record) -> bool:
    """A busy record whose process is gone (killed in the middle of a verb)."""
    return obj.status in BUSY and owner_alive_of(obj) is False


def owner_note(obj: Record) -> str:
    if obj.status in BUSY:
        alive = owner_alive_of(obj)
        if alive is False:
            return " (interrupted: process %s is gone while it was %s)" % (
                obj.owner, obj.status)
        return " (process %s is %s it)" % (obj.owner, obj.status)
    if obj.status_reason and obj.status.startswith("error"):
        return " (%s)" % obj.status_reason
    return ""


def _kind(cls: type[Record]) -> str:
    for kind, model in models.KINDS.items():
        if model is cls:
            return kind
    return cls.__name__.lower()


def _detached_copy(obj: R) -> R:
    copy = type(obj)()
    for column in obj.__table__.columns:  # type: ignore[attr-defined]
        setattr(copy, column.key, getattr(obj, column.key))
    if hasattr(obj, PROBED):
        setattr(copy, PROBED, getattr(obj, PROBED))
    return copy


def _by_status(objs: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for obj in objs:
        out[obj.status] = out.get(obj.status, 0) + 1
    return dict(sorted(out.items()))


class Liveness:
    """A process's liveness lock on a database server: held while it may own records.

    A record names the process working on it (``host:pid``). On this host
    the pid tells whether it still runs; a host sharing the inventory cannot
    see that pid, so each process holds a lock on the server, on a
    connection of its own, from before its first claim until it closes the
    inventory: a PostgreSQL advisory lock (scoped to the database), or a
    MySQL/MariaDB ``GET_LOCK`` named after the database and the owner. A
    process that dies loses its connection and with it the lock: at once
    when it is killed (its socket closes), after TCP keepalive when its
    host vanished. Another host reads whether the lock is held without
    taking it (``pg_locks``, ``IS_USED_LOCK``).

    One per URL per process, shared by the process's inventories on it.
    """

    _held: dict[str, Liveness] = {}
    _guard = threading.Lock()

    def __init__(self, url: str, dialect: str) -> None:
        self.url, self.dialect = url, dialect
        self.users = 0
        self.owner = ""
        self._engine: Engine | None = None
        self._conn: Connection | None = None

    @classmethod
    def of(cls, url: str, dialect: str) -> Liveness:
        with cls._guard:
            live = cls._held.get(url)
            if live is None:
                live = cls._held[url] = cls(url, dialect)
            live.users += 1
            return live

    def release(self) -> None:
        with self._guard:
            self.users -= 1
            if self.users > 0:
                return
            self._held.pop(self.url, None)
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def hold(self) -> None:
        """Take the lock if not held (again, if the server lost it: a restart)."""
        with self._guard:
            owner = this_owner()
            if self._conn is not None and owner == self.owner:
                try:
                    if self._held_here(self._conn):
                        return
                except sa.exc.SQLAlchemyError:
                    pass
            self._drop()
            self._engine = sa.create_engine(self.url, poolclass=pool.NullPool)
            conn = self._engine.connect()
            if self.dialect == "postgresql":
                # Another holder of this owner's lock can only be a process
                # of the same name just gone: wait for the server to see it.
                conn.execute(sa.text("SET lock_timeout = '10s'"))
                conn.execute(sa.text("SELECT pg_advisory_lock(:key)"),
                             {"key": _owner_key(owner)})
            else:
                got = conn.execute(sa.text("SELECT GET_LOCK(%s, 10)" % _OWNER_LOCK),
                                   {"owner": owner}).scalar()
                if got != 1:
                    conn.close()
                    raise InventoryError(url=display_url(self.url),
                                         reason="another process holds the liveness lock "
                                                "of owner %s" % owner)
            conn.commit()
            self._conn, self.owner = conn, owner

    def _held_here(self, conn: Connection) -> bool:
        """Whether this connection still holds the lock (one round trip)."""
        if self.dialect == "postgresql":
            key = _owner_key(self.owner) & 0xFFFFFFFFFFFFFFFF
            held = conn.execute(sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND pid = pg_backend_pid() AND classid::text::bigint = :hi "
                "AND objid::text::bigint = :lo AND objsubid = 1)"),
                {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalar()
        else:
            held = conn.execute(sa.text("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()"
                                        % _OWNER_LOCK), {"owner": self.owner}).scalar()
        conn.commit()
        return bool(held)

    def held_by(self, conn: Connection, owner: str) -> bool:
        """Whether the process ``owner`` names holds its lock (read, not taken)."""
        if self.dialect == "postgresql":
            key = _owner_key(owner) & 0xFFFFFFFFFFFFFFFF
            held = conn.execute(sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND database = (SELECT oid FROM pg_database WHERE "
                "datname = current_database()) AND classid::text::bigint = :hi "
                "AND objid::text::bigint = :lo AND objsubid = 1)"),
                {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalar()
        else:
            held = conn.execute(sa.text("SELECT IS_USED_LOCK(%s) IS NOT NULL" % _OWNER_LOCK),
                                {"owner": owner}).scalar()
        return bool(held)


def _owner_key(owner: str) -> int:
    """The PostgreSQL advisory lock key (a signed 64-bit integer) of an owner."""
    digest = hashlib.sha256(("xensm-owner:" + owner).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


#: SQL for the MySQL lock name of ``:owner`` in this database: at most 64
#: characters, and server-wide, so the database is part of it.
_OWNER_LOCK = "CONCAT('xensm:', SHA1(CONCAT(DATABASE(), ':', :owner)))"


#: How long a host waits for another that is making or migrating the schema.
SCHEMA_LOCK_TIMEOUT = 60


@contextlib.contextmanager
def _schema_lock(conn: Connection, shown: str) -> Iterator[None]:
    """Hold the database's xensm schema lock (one host makes or migrates it).

    PostgreSQL: an advisory lock (scoped to the database); MySQL/MariaDB:
    ``GET_LOCK`` named after the database, released explicitly (it belongs to
    the connection, which goes back to the pool). SQLite needs none: its
    ``BEGIN IMMEDIATE`` already serialises.
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.rollback()
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"),
                         {"key": SCHEMA_LOCK_KEY})
            conn.commit()
    elif dialect in ("mysql", "mariadb"):
        name = "CONCAT('xensm_schema:', DATABASE())"
        got = conn.execute(sa.text("SELECT GET_LOCK(%s, :wait)" % name),
                           {"wait": SCHEMA_LOCK_TIMEOUT}).scalar()
        conn.commit()
        if got != 1:
            raise InventoryError(url=shown, reason="another host held the schema lock "
                                 "for %d s (making or upgrading the inventory); try again"
                                 % SCHEMA_LOCK_TIMEOUT)
        try:
            yield
        finally:
            conn.rollback()
            conn.execute(sa.text("SELECT RELEASE_LOCK(%s)" % name))
            conn.commit()
    else:
        yield


#: PostgreSQL advisory lock key of the schema lock ("xensm" in ASCII).
SCHEMA_LOCK_KEY = 0x78656E736D


def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
    # pysqlite's own transaction handling off: _sqlite_begin_immediate begins.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(conn: Connection) -> None:
    """Every SQLite transaction takes the write lock at once (see Inventory.session)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")
