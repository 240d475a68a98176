"""The inventory's tables: back ends, volumes, snapshots, groups, and their hierarchy.

One row per object, kept after the object is deleted: its row says
``status = 'deleted'`` with ``deleted_at`` set, so the hierarchy (a clone's
source snapshot, a snapshot's volume) stays whole and ``reconcile`` can tell
"deleted here" from "never known". (Only a create the driver refused, which
made nothing, removes its row.)

While a verb runs, the object's ``status`` is the verb's busy state
(``creating``, ``deleting``, ...) and ``owner`` names the process doing it
(``host:pid``), so a record left behind by a killed process can be told from
one still being worked on.

``xensm_schema`` holds the schema version (see ``inventory.MIGRATIONS``).
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

#: The schema this code writes. Bump it and add a step to
#: ``inventory.MIGRATIONS`` when a table changes. 2: times with microseconds
#: on MySQL (its DATETIME keeps whole seconds unless told). 3: snapshot
#: schedules (the ``schedules`` and ``schedule_runs`` tables, nothing else).
#: 4: VM snapshots (the vm_snapshots table, snapshots.vm_snapshot_id).
#: 5: the backups table.
SCHEMA_VERSION = 5

ID = String(36)
#: A UTC time to the microsecond on every database (records list in
#: creation order).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> datetime.datetime:
    """Now, in UTC, without tzinfo (SQLite keeps no zone; every row is UTC).

    Microseconds are kept: records are listed in creation order.
    """
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Record:
    """Columns every volume-like object has, and a plain-dict view."""

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), default="", index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    status_reason: Mapped[str | None] = mapped_column(String(1024), default=None)
    owner: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow,
                                                          onupdate=utcnow)
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(Timestamp, default=None)

    def to_dict(self) -> dict[str, Any]:
        table = getattr(self, "__table__")  # noqa: B009 - set by the declarative base
        out: dict[str, Any] = {}
        for column in table.columns:
            value = getattr(self, column.key)
            if isinstance(value, datetime.datetime):
                value = value.strftime("%Y-%m-%dT%H:%M:%SZ")
            out[column.key] = value
        return out


class SchemaVersion(Base):
    __tablename__ = "xensm_schema"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)


class Backend(Base):
    """A back-end section of the ini file, as last loaded."""

    __tablename__ = "backends"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    sr_type: Mapped[str] = mapped_column(String(32))
    sr_uuid: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow,
                                                          onupdate=utcnow)


class Group(Record, Base):
    """A generic group of volumes (Cinder's groups): members are volumes.group_id."""

    __tablename__ = "groups"

    backend: Mapped[str] = mapped_column(ForeignKey("backends.name"), index=True)


class GroupSnapshot(Record, Base):
    """A snapshot of every member of a group; its snapshots point here."""

    __tablename__ = "group_snapshots"

    backend: Mapped[str] = mapped_column(ForeignKey("backends.name"), index=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id"), index=True)
    #: The array's id for a consistent group snapshot (None when generic).
    provider_id: Mapped[str | None] = mapped_column(String(255), default=None)


class Volume(Record, Base):
    __tablename__ = "volumes"

    backend: Mapped[str] = mapped_column(ForeignKey("backends.name"), index=True)
    size_gb: Mapped[int] = mapped_column(Integer)
    provider_id: Mapped[str | None] = mapped_column(String(255), default=None)
    provider_location: Mapped[str | None] = mapped_column(String(255), default=None)
    #: Where the volume came from: a clone of a volume, or made from a snapshot.
    source_volume_id: Mapped[str | None] = mapped_column(
        ForeignKey("volumes.id"), default=None, index=True)
    source_snapshot_id: Mapped[str | None] = mapped_column(
        ForeignKey("snapshots.id", use_alter=True, name="fk_volumes_source_snapshot"),
        default=None, index=True)
    group_id: Mapped[str | None] = mapped_column(ForeignKey("groups.id"), default=None,
                                                 index=True)


class Snapshot(Record, Base):
    __tablename__ = "snapshots"

    backend: Mapped[str] = mapped_column(ForeignKey("backends.name"), index=True)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id"), index=True)
    volume_size_gb: Mapped[int] = mapped_column(Integer)
    provider_id: Mapped[str | None] = mapped_column(String(255), default=None)
    provider_location: Mapped[str | None] = mapped_column(String(255), default=None)
    group_snapshot_id: Mapped[str | None] = mapped_column(
        ForeignKey("group_snapshots.id"), default=None, index=True)
    #: The VM snapshot it is a member of (no foreign key: a column added to
    #: an existing table by migration 3, which SQLite cannot constrain).
    vm_snapshot_id: Mapped[str | None] = mapped_column(String(36), default=None,
                                                       index=True)
    #: Where the VM held the volume when the VM snapshot was taken.
    vm_userdevice: Mapped[str | None] = mapped_column(String(16), default=None)


class VMSnapshot(Record, Base):
    """A snapshot of every xensm volume a VM holds; its snapshots point here.

    Each back end snapshots its share of the volumes as consistently as it
    can (``consistency`` says how, per back end: ``array``,
    ``paused-vms`` or ``none``). ``skipped`` lists the VM's disks that are
    no xensm volume (space-separated VDI uuids): not in the snapshot.
    """

    __tablename__ = "vm_snapshots"

    vm_uuid: Mapped[str] = mapped_column(String(36), index=True)
    vm_name: Mapped[str] = mapped_column(String(255), default="")
    consistency: Mapped[str] = mapped_column(String(255), default="")
    skipped: Mapped[str] = mapped_column(String(1024), default="")


class Schedule(Record, Base):
    """Snapshots of one target (a volume or a group) every ``every_s``
    seconds, the newest ``keep`` of them kept.

    Periods are counted from ``anchor_at``: period ``n`` is
    ``[anchor + n * every, anchor + (n + 1) * every)``. Which periods were
    taken is in :class:`ScheduleRun`; a run in progress names its process in
    ``owner`` (``status`` stays ``active``: a run never blocks a delete of
    the schedule). ``status`` is ``active`` or ``deleted``.
    """

    __tablename__ = "schedules"

    backend: Mapped[str] = mapped_column(ForeignKey("backends.name"), index=True)
    #: ``volume`` or ``group`` (``vm`` when VM snapshots exist).
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(ID, index=True)
    every_s: Mapped[int] = mapped_column(Integer)
    keep: Mapped[int] = mapped_column(Integer)
    anchor_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)
    #: When the run in progress (``owner``) started; None when none runs.
    run_started_at: Mapped[datetime.datetime | None] = mapped_column(Timestamp,
                                                                      default=None)
    #: The last run's failure, for ``schedule list`` (None after a success).
    last_error: Mapped[str | None] = mapped_column(String(1024), default=None)


class ScheduleRun(Base):
    """One period of a schedule, claimed by the run that takes its snapshot.

    ``(schedule_id, period)`` is unique: the row is inserted, in the same
    transaction that reads the schedule, before the snapshot is taken, so
    two processes (on one host or several sharing the inventory) can never
    both take a period's snapshot. ``status``: ``taking`` (the run is at
    it), ``taken`` (``made_id`` set),
    ``pruned`` (deleted by retention). A failed attempt removes its row, so
    the next run retries the period.
    """

    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "period",
                                       name="uq_schedule_runs_period"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id"), index=True)
    period: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(255), default=None)
    #: Periods skipped before this one (runs missed while nothing ran).
    missed: Mapped[int] = mapped_column(Integer, default=0)
    #: What the run made: a snapshot's id for a volume schedule, a group
    #: snapshot's for a group (the schedule's ``target_kind`` says which; a
    #: plain id, so a new kind of target needs no new column).
    made_id: Mapped[str | None] = mapped_column(ID, default=None, index=True)
    created_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)
    pruned_at: Mapped[datetime.datetime | None] = mapped_column(Timestamp, default=None)

    def to_dict(self) -> dict[str, Any]:
        return Record.to_dict(self)  # type: ignore[arg-type]


class Backup(Record, Base):
    """A backup of a volume (through a snapshot of it) in an object store.

    Its objects are ``<prefix><id>/manifest.json`` and one object per
    stored chunk beside it. ``parent_id`` is the backup an incremental one
    builds on (None for a full backup): the chain is followed through it,
    and a backup that is some other live backup's parent is not deleted.
    ``cbt_vdi_uuid`` is the VDI whose changed-block tracking log the next
    incremental backup starts from (a snapshot whose data was destroyed:
    type cbt_metadata; or, for a backup of a snapshot, that snapshot's VDI,
    ``cbt_vdi_owned`` false: not the backup's to destroy).
    """

    __tablename__ = "backups"

    backend: Mapped[str] = mapped_column(ForeignKey("backends.name"), index=True)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id"), index=True)
    #: The snapshot backed up, when one was named (else the backup made its own).
    snapshot_id: Mapped[str | None] = mapped_column(ForeignKey("snapshots.id"), default=None,
                                                    index=True)
    target: Mapped[str] = mapped_column(String(255))
    container: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("backups.id"), default=None,
                                                  index=True)
    incremental: Mapped[bool] = mapped_column(Boolean, default=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    chunk_size: Mapped[int] = mapped_column(Integer, default=0)
    #: The VDI read (the backup's own snapshot, or the named snapshot's).
    source_vdi_uuid: Mapped[str | None] = mapped_column(String(36), default=None)
    cbt_vdi_uuid: Mapped[str | None] = mapped_column(String(36), default=None)
    cbt_vdi_owned: Mapped[bool] = mapped_column(Boolean, default=True)
    #: What it cost: bytes read through XAPI, bytes put in the store, chunks
    #: stored, and (incremental) the 64 KiB blocks XAPI said changed.
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_stored: Mapped[int] = mapped_column(BigInteger, default=0)
    chunks_stored: Mapped[int] = mapped_column(Integer, default=0)
    changed_blocks: Mapped[int | None] = mapped_column(BigInteger, default=None)


#: Object kinds by the name the CLI and messages use.
KINDS: dict[str, type[Record]] = {
    "volume": Volume, "snapshot": Snapshot, "group": Group, "group snapshot": GroupSnapshot,
    "schedule": Schedule,
    "VM snapshot": VMSnapshot,
    "backup": Backup,
}
