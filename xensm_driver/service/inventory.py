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
import os
import socket
import uuid as uuidlib
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import orm
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
    for table in models.Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, sa.DateTime):
                conn.execute(sa.text("ALTER TABLE %s MODIFY %s DATETIME(6) %s" % (
                    table.name, column.name, "NULL" if column.nullable else "NOT NULL")))


def _backups_table(conn: Connection) -> None:
    """Version 3: the backups table (service/backup.py)."""
    models.Backup.__table__.create(conn, checkfirst=True)   # type: ignore[attr-defined]


#: ``MIGRATIONS[n](connection)`` brings a version ``n - 1`` inventory to
#: version ``n`` (inside the same transaction that records ``n``); a release
#: that changes a table adds a step here and bumps models.SCHEMA_VERSION.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _mysql_microseconds,
                                                       3: _backups_table}

#: Busy states: a verb is running on the object (or its process died).
BUSY = frozenset({"creating", "deleting", "extending", "reverting", "uploading",
                  "downloading", "managing", "unmanaging", "snapshotting", "cloning",
                  "restoring", "backing-up"})
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


def this_owner() -> str:
    """How a busy record names the process working on it."""
    return "%s:%d" % (socket.gethostname(), os.getpid())


def owner_alive(owner: str | None) -> bool | None:
    """Whether the owning process runs: True/False on this host, None elsewhere."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
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

    def close(self) -> None:
        self.engine.dispose()

    # -- schema ---------------------------------------------------------------

    def _open(self, create: bool) -> int:
        try:
            with self.engine.begin() as conn:
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
        with self._sessions.begin() as sess:
            yield sess

    # -- back ends ------------------------------------------------------------

    def record_backend(self, name: str, sr_type: str, sr_uuid: str | None) -> None:
        with self.session() as sess:
            row = sess.get(Backend, name)
            if row is None:
                sess.add(Backend(name=name, sr_type=sr_type, sr_uuid=sr_uuid))
            elif (row.sr_type, row.sr_uuid) != (sr_type, sr_uuid):
                row.sr_type, row.sr_uuid = sr_type, sr_uuid

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


def effective_status(obj: Record) -> str:
    """The record's status, with a busy state whose process died read as ``error``
    (``available`` when that process only read the object)."""
    if obj.status in BUSY and owner_alive(obj.owner) is False:
        return "available" if obj.status in READING else "error"
    return obj.status


def interrupted(obj: Record) -> bool:
    """A busy record whose process is gone (killed in the middle of a verb)."""
    return obj.status in BUSY and owner_alive(obj.owner) is False


def owner_note(obj: Record) -> str:
    if obj.status in BUSY:
        alive = owner_alive(obj.owner)
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
    return copy


def _by_status(objs: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for obj in objs:
        out[obj.status] = out.get(obj.status, 0) + 1
    return dict(sorted(out.items()))


def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
    # pysqlite's own transaction handling off: _sqlite_begin_immediate begins.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(conn: Connection) -> None:
    """Every SQLite transaction takes the write lock at once (see Inventory.session)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")
