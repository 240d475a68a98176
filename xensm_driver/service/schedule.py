"""Scheduled snapshots with retention: ``xensm schedule``.

A schedule snapshots one target (a volume, or a group of volumes) once per
period and keeps the newest ``keep`` of the snapshots it made. ``xensm
schedule run`` takes what is due now (run it from cron or a systemd timer);
``--forever`` keeps running until SIGTERM.

The rules, and where each is kept:

* **Periods, not timers.** Period ``n`` of a schedule is ``[anchor + n *
  every, anchor + (n + 1) * every)`` (the anchor is the Unix epoch, so
  ``--every 1h`` periods start on the hour, UTC). A run takes the current
  period's snapshot if no run took it: running twice, or from cron every
  minute, takes one snapshot per period. Runs missed while nothing ran
  (host down, timer stopped) are not made up: the next run takes one
  catch-up snapshot for the current period and says how many it missed.
* **One claim per period.** The run inserts the ``(schedule, period)`` row
  of :class:`~xensm_driver.service.models.ScheduleRun` in the transaction
  that reads the schedule (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR
  UPDATE`` on PostgreSQL and MySQL, and a unique key on both columns), so
  hosts sharing one inventory take a period's snapshot once between them.
  A failed snapshot removes the row: the next run tries the period again.
* **Retention deletes only what the schedule made**, oldest period first,
  down to ``keep``, after the new snapshot exists (a failed run never
  leaves fewer than ``keep``). A snapshot deleted by hand just stops
  counting.
* **The back end's limit** (the VHD chain on SM SRs,
  ``xensm_snapshot_chain_limit``; SolidFire's snapshots per volume,
  ``xensm_solidfire_snapshot_limit``): ``--keep`` must leave room for the
  one snapshot taken before the oldest goes, and when the back end still
  refuses (other snapshots of the volume fill it) the run deletes the
  schedule's oldest snapshot and tries once more rather than fail. On a VHD
  SR the chain shortens only when the SR's garbage collector has coalesced
  the deleted snapshot's base copy, in the background: the retry may be
  refused again, and the next run takes the period.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from xensm_driver import exception
from xensm_driver.service import inventory as inventory_mod
from xensm_driver.service.inventory import GONE
from xensm_driver.service.inventory import NotInInventory
from xensm_driver.service.inventory import Refused
from xensm_driver.service.inventory import new_id
from xensm_driver.service.inventory import this_owner
from xensm_driver.service.manager import check_name
from xensm_driver.service.models import Group
from xensm_driver.service.models import GroupSnapshot
from xensm_driver.service.models import Schedule
from xensm_driver.service.models import ScheduleRun
from xensm_driver.service.models import Snapshot
from xensm_driver.service.models import Volume
from xensm_driver.service.models import utcnow

LOG = logging.getLogger(__name__)

Clock = Callable[[], datetime.datetime]

EPOCH = datetime.datetime(1970, 1, 1)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: The shortest and longest period a schedule may have.
EVERY_MIN_S = 60
EVERY_MAX_S = 366 * 86400
#: The most snapshots a schedule keeps when the back end sets no limit.
KEEP_MAX = 1000
#: A run whose process may still be alive (on another host, where this one
#: cannot tell) holds its schedule this long; after it, another run may
#: take the schedule's next period.
RUN_LEASE = datetime.timedelta(hours=1)
#: ``--forever`` looks for new schedules at least this often (seconds).
POLL_S = 60.0

_DURATION = re.compile(r"(\d+)([smhdw])")


# -- the arithmetic (pure) -----------------------------------------------------

def parse_duration(text: str) -> int:
    """Seconds in ``15m``, ``1h``, ``1d``, ``1h30m`` (units s, m, h, d, w).

    InvalidInput, naming the value, for anything else or a period shorter
    than a minute or longer than a year.
    """
    value = (text or "").strip().lower()
    parts = _DURATION.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise exception.InvalidInput(
            reason="--every %r is not a duration: give a number and a unit, e.g. 15m, "
                   "1h, 1d, 1h30m (units s, m, h, d, w)" % text)
    seconds = sum(int(n) * UNITS[u] for n, u in parts)
    if seconds < EVERY_MIN_S:
        raise exception.InvalidInput(
            reason="--every %s is shorter than a minute; a schedule snapshots at most "
                   "once a minute" % text)
    if seconds > EVERY_MAX_S:
        raise exception.InvalidInput(
            reason="--every %s is longer than a year (366d)" % text)
    return seconds


def duration_text(seconds: int) -> str:
    """``3600`` -> ``1h``; ``5400`` -> ``1h30m`` (the inverse of parse_duration)."""
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        n, seconds = divmod(seconds, UNITS[unit])
        if n:
            out.append("%d%s" % (n, unit))
    return "".join(out) or "0s"


def check_keep(keep: int, limit: int | None, what: str) -> int:
    """``keep``, or InvalidInput when it is not 1.. or leaves the back end
    (holding at most ``limit`` snapshots of a volume) no room to take the
    next snapshot before retention deletes the oldest."""
    if keep < 1:
        raise exception.InvalidInput(reason="--keep must be at least 1, not %d" % keep)
    if limit is not None and keep >= limit:
        raise exception.InvalidInput(
            reason="--keep %d leaves no room on %s: it holds at most %d snapshots of a "
                   "volume, and a run takes the new snapshot before it deletes the "
                   "oldest; use --keep %d or less" % (keep, what, limit, limit - 1))
    if keep > KEEP_MAX:
        raise exception.InvalidInput(reason="--keep is at most %d" % KEEP_MAX)
    return keep


def period_of(anchor: datetime.datetime, every_s: int, now: datetime.datetime) -> int:
    """The period ``now`` falls in (negative before the anchor)."""
    micros = (now - anchor) // datetime.timedelta(microseconds=1)
    return micros // (every_s * 1_000_000)


def period_start(anchor: datetime.datetime, every_s: int, period: int) -> datetime.datetime:
    return anchor + datetime.timedelta(seconds=every_s * period)


def due(last_period: int | None, current: int) -> bool:
    """Whether a run now takes a snapshot: the current period is not taken."""
    return current >= 0 and (last_period is None or last_period < current)


def missed(last_period: int | None, current: int) -> int:
    """Periods between the last taken and the current one (not made up)."""
    if last_period is None:
        return 0
    return max(0, current - last_period - 1)


def to_prune(live_periods: list[int], keep: int) -> list[int]:
    """Which of the schedule's live snapshots (by period) retention deletes:
    the oldest, down to ``keep``."""
    ordered = sorted(live_periods)
    return ordered[:max(0, len(ordered) - keep)]


# -- targets ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TargetKind:
    """How a schedule snapshots one kind of target, and deletes what it made.

    A new kind (``vm``) is one more entry in :data:`TARGETS`.
    """

    model: type[Any]
    #: ``take(manager, target_id, name)`` -> the id of what was made.
    take: Callable[[Any, str, str], str]
    #: ``delete(manager, made_id)``; an object already gone is done.
    delete: Callable[[Any, str], None]
    #: ``live(manager, made_id)``: whether it still exists for the user.
    live: Callable[[Any, str], bool]
    #: ``volumes(manager, target_id)``: the volumes whose snapshots it makes.
    volumes: Callable[[Any, str], list[Volume]]
    #: ``failed(manager, target_id, name)``: the ids of what a failed take
    #: of this name left recorded in error (deleted before the period is freed).
    failed: Callable[[Any, str, str], list[str]]
    #: ``made(manager, target_id, name)``: the ids of what a take of this
    #: name made and recorded available (a run killed before it said so).
    made: Callable[[Any, str, str], list[str]]


def _take_volume(mgr: Any, target_id: str, name: str) -> str:
    return str(mgr.create_snapshot(target_id, name=name).id)


def _delete_snapshot(mgr: Any, made_id: str) -> None:
    mgr.delete_snapshot(made_id)


def _snapshot_live(mgr: Any, made_id: str) -> bool:
    try:
        return mgr.inventory.get(Snapshot, made_id).status not in GONE
    except NotInInventory:
        return False


def _take_group(mgr: Any, target_id: str, name: str) -> str:
    gsnap, _snaps = mgr.snapshot_group(target_id, name=name)
    return str(gsnap.id)


def _delete_group_snapshot(mgr: Any, made_id: str) -> None:
    gsnap = mgr.inventory.get(GroupSnapshot, made_id)
    if gsnap.status in GONE:
        return
    # The manager's own helper: member snapshots, then the array's group
    # snapshot where there is one, then the record.
    mgr._delete_group_snapshot(mgr.driver(gsnap.backend), gsnap)


def _group_snapshot_live(mgr: Any, made_id: str) -> bool:
    try:
        return mgr.inventory.get(GroupSnapshot, made_id).status not in GONE
    except NotInInventory:
        return False


def _failed_snapshots(mgr: Any, target_id: str, name: str) -> list[str]:
    return [s.id for s in mgr.inventory.snapshots(volume_id=target_id)
            if s.name == name and s.status.startswith("error")]


def _failed_group_snapshots(mgr: Any, target_id: str, name: str) -> list[str]:
    return [g.id for g in mgr.inventory.group_snapshots(target_id)
            if g.name == name and g.status.startswith("error")]


def _made_snapshots(mgr: Any, target_id: str, name: str) -> list[str]:
    return [s.id for s in mgr.inventory.snapshots(volume_id=target_id)
            if s.name == name and s.status == "available"]


def _made_group_snapshots(mgr: Any, target_id: str, name: str) -> list[str]:
    return [g.id for g in mgr.inventory.group_snapshots(target_id)
            if g.name == name and g.status == "available"]


TARGETS: dict[str, TargetKind] = {
    "volume": TargetKind(Volume, _take_volume, _delete_snapshot, _snapshot_live,
                         lambda mgr, i: [mgr.inventory.get(Volume, i)], _failed_snapshots,
                         _made_snapshots),
    "group": TargetKind(Group, _take_group, _delete_group_snapshot, _group_snapshot_live,
                        lambda mgr, i: mgr.inventory.volumes(group_id=i),
                        _failed_group_snapshots, _made_group_snapshots),
}


def limit_refusal(exc: BaseException) -> bool:
    """Whether the back end refused a snapshot because the volume is full of
    them: xensm's own check (both families), XAPI's SM error 109, Element's
    ``xMaxSnapshotsPerVolumeExceeded``."""
    if isinstance(exc, exception.SnapshotLimitReached | exception.SnapshotChainTooLong):
        return True
    return (isinstance(exc, exception.ArrayLimitExceeded)
            and getattr(exc, "name", "") == "xMaxSnapshotsPerVolumeExceeded")


# -- results -----------------------------------------------------------------------

@dataclasses.dataclass
class RunResult:
    """What one run did with one schedule."""

    schedule_id: str
    name: str
    #: ``taken``, ``not due``, ``running elsewhere``, ``failed``.
    action: str
    period: int | None = None
    missed: int = 0
    made_id: str | None = None
    pruned: list[str] = dataclasses.field(default_factory=list)
    #: What went wrong: the snapshot (``failed``) or a retention delete.
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- the scheduler -----------------------------------------------------------------

class Scheduler:
    """Schedules of one :class:`~xensm_driver.service.manager.Manager`.

    ``clock`` says what time it is (UTC, naive): tests pass a fake one.
    """

    def __init__(self, manager: Any, clock: Clock = utcnow) -> None:
        self.mgr = manager
        self.clock = clock

    @property
    def inventory(self) -> inventory_mod.Inventory:
        inv: inventory_mod.Inventory = self.mgr.inventory
        return inv

    # -- create, list, delete -----------------------------------------------------

    def resolve_target(self, ref: str, kind: str | None = None) -> tuple[str, Any]:
        """``(kind, record)`` that ``ref`` names: a volume or a group (``kind``
        to say which when a name is both)."""
        kinds = [kind] if kind else list(TARGETS)
        found: list[tuple[str, Any]] = []
        for k in kinds:
            if k not in TARGETS:
                raise exception.InvalidInput(reason="a schedule's target is a %s, not a %s"
                                                    % (" or a ".join(TARGETS), k))
            try:
                found.append((k, self.inventory.resolve(TARGETS[k].model, ref)))
            except NotInInventory:
                continue
        if not found:
            raise NotInInventory(kind=" or ".join(kinds).capitalize(), name=ref)
        if len(found) > 1:
            raise exception.InvalidInput(
                reason="%r names both %s; say which with --volume or --group" % (
                    ref, " and ".join("%s %s" % (k, r.id) for k, r in found)))
        return found[0]

    def snapshot_limit(self, kind: str, record: Any) -> int | None:
        """The most snapshots a volume of the target's back end may hold."""
        backend = self.mgr.driver(record.backend).backend
        limit: int | None = backend.snapshot_limit()
        return limit

    def create(self, target: str, every: str, keep: int, name: str = "",
               kind: str | None = None) -> Schedule:
        """A new schedule; validated (duration, keep against the back end's
        limit, a live target) before anything is recorded."""
        name = check_name(name, "schedule")
        every_s = parse_duration(every)
        kind, record = self.resolve_target(target, kind)
        if record.status in GONE:
            raise Refused(reason="%s %s is %s" % (kind, record.id, record.status))
        limit = self.snapshot_limit(kind, record)
        check_keep(keep, limit, "back end %s" % record.backend)
        if name and any(s.name == name for s in self.schedules()):
            raise Refused(reason="a schedule named %r exists; names find schedules, so "
                                 "pick another" % name)
        sched = Schedule(id=new_id(), name=name, status="active", backend=record.backend,
                         target_kind=kind, target_id=record.id, every_s=every_s,
                         keep=keep, anchor_at=EPOCH, created_at=self.clock())
        return self.inventory.add(sched)

    def schedules(self, include_gone: bool = False) -> list[Schedule]:
        query = sa.select(Schedule).order_by(Schedule.created_at, Schedule.id)
        if not include_gone:
            query = query.where(Schedule.status.not_in(GONE))
        with self.inventory.session() as sess:
            return list(sess.scalars(query))

    def schedule(self, ref: str, include_gone: bool = False) -> Schedule:
        return self.inventory.resolve(Schedule, ref, include_gone=include_gone)

    def runs(self, schedule_id: str) -> list[ScheduleRun]:
        with self.inventory.session() as sess:
            return list(sess.scalars(sa.select(ScheduleRun).where(
                ScheduleRun.schedule_id == schedule_id).order_by(ScheduleRun.period)))

    def live_made(self, sched: Schedule) -> list[ScheduleRun]:
        """The schedule's runs whose snapshot still exists, oldest first."""
        target = TARGETS[sched.target_kind]
        return [r for r in self.runs(sched.id)
                if r.status == "taken" and r.made_id and target.live(self.mgr, r.made_id)]

    def delete(self, ref: str, delete_snapshots: bool = False) -> Schedule:
        """Stop a schedule. Its snapshots stay (they are ordinary snapshots
        now) unless ``delete_snapshots``."""
        sched = self.schedule(ref)
        self.inventory.update(Schedule, sched.id, status="deleted", deleted_at=self.clock())
        if delete_snapshots:
            target = TARGETS[sched.target_kind]
            for run in self.live_made(sched):
                assert run.made_id is not None
                target.delete(self.mgr, run.made_id)
                self._mark_pruned(run.id)
        return self.inventory.get(Schedule, sched.id)

    # -- running ----------------------------------------------------------------------

    def run_due(self, refs: list[str] | None = None) -> list[RunResult]:
        """Take every due snapshot now (of the schedules ``refs`` name, or all)."""
        scheds = ([self.schedule(r) for r in refs] if refs else self.schedules())
        results = []
        for sched in scheds:
            try:
                results.append(self.run_one(sched))
            except (exception.XensmError, sa.exc.SQLAlchemyError) as exc:
                # One schedule's trouble (its inventory row, its back end
                # unreachable) does not stop the others.
                LOG.error("Schedule %s: %s", sched.id, _reason(exc))
                results.append(RunResult(sched.id, sched.name, "failed", error=_reason(exc)))
        return results

    def next_due_of(self, sched: Schedule) -> datetime.datetime:
        """When the schedule is next due (now, if it is)."""
        now = self.clock()
        current = period_of(sched.anchor_at, sched.every_s, now)
        if due(self._last_period(sched.id), current):
            return now
        return period_start(sched.anchor_at, sched.every_s, max(current, -1) + 1)

    def next_due(self) -> datetime.datetime | None:
        """When the earliest active schedule is next due (now if one is)."""
        times = [self.next_due_of(s) for s in self.schedules()]
        return min(times) if times else None

    def _last_period(self, schedule_id: str) -> int | None:
        with self.inventory.session() as sess:
            last: int | None = sess.scalar(sa.select(sa.func.max(ScheduleRun.period)).where(
                ScheduleRun.schedule_id == schedule_id))
        return last

    def _claim(self, schedule_id: str, now: datetime.datetime
               ) -> tuple[str, Schedule | None, ScheduleRun | None]:
        """Claim the current period of a schedule: ``("claimed", schedule,
        run)``, or why not (``not due``, ``running elsewhere``, ``gone``).

        One transaction: the schedule's row locked, the periods read, the
        new period's row inserted (its unique key refusing a second one)."""
        try:
            with self.inventory.session() as sess:
                sched = sess.get(Schedule, schedule_id, with_for_update=True)
                if sched is None or sched.status != "active":
                    return "gone", None, None
                current = period_of(sched.anchor_at, sched.every_s, now)
                last = sess.scalar(sa.select(sa.func.max(ScheduleRun.period)).where(
                    ScheduleRun.schedule_id == schedule_id))
                if not due(last, current):
                    return "not due", sched, None
                if (sched.owner and sched.run_started_at is not None
                        and inventory_mod.owner_alive(sched.owner) is not False
                        and now - sched.run_started_at < RUN_LEASE):
                    return "running elsewhere", sched, None
                run = ScheduleRun(id=new_id(), schedule_id=schedule_id, period=current,
                                  status="taking", owner=this_owner(),
                                  missed=missed(last, current), created_at=now)
                sess.add(run)
                sched.owner, sched.run_started_at = this_owner(), now
        except sa.exc.IntegrityError:
            # Another process inserted this period between our read and write
            # (only possible where the row lock is not exclusive): it is theirs.
            return "not due", None, None
        return "claimed", sched, run

    def target_gone(self, sched: Schedule) -> str | None:
        """Why the schedule's target can no longer be snapshotted, or None."""
        try:
            record = self.inventory.get(TARGETS[sched.target_kind].model, sched.target_id)
        except NotInInventory:
            return "%s %s is not in the inventory" % (sched.target_kind, sched.target_id)
        if record.status in GONE:
            return ("%s %s is %s; delete the schedule ('xensm schedule delete %s')"
                    % (sched.target_kind, sched.target_id, record.status, sched.id))
        return None

    def run_one(self, sched: Schedule) -> RunResult:
        """Take the schedule's snapshot if due, then apply retention."""
        gone = self.target_gone(sched)
        if gone is not None:
            # Nothing claimed: the period stays free, and each run says so.
            return RunResult(sched.id, sched.name, "failed", error=gone)
        now = self.clock()
        state, claimed, run = self._claim(sched.id, now)
        result = RunResult(sched.id, sched.name, state)
        if state != "claimed":
            return result
        assert claimed is not None and run is not None
        sched = claimed
        result.period, result.missed = run.period, run.missed
        target = TARGETS[sched.target_kind]
        name = self.snapshot_name(sched, run.period)
        self._finish_interrupted(sched, target, now)
        try:
            made = self._take(sched, target, name, result)
        except BaseException as exc:
            result.action, result.error = "failed", _reason(exc)
            if isinstance(exc, Exception):
                self._clean_failed(sched, target, name)
            self._release(sched.id, run.id, taken=None, error=result.error)
            if not isinstance(exc, Exception):
                raise
            LOG.error("Schedule %s: no snapshot for period %d: %s", sched.id, run.period,
                      result.error)
            return result
        result.action, result.made_id = "taken", made
        self._release(sched.id, run.id, taken=made, error=None)
        self._prune(sched, target, result)
        return result

    @staticmethod
    def snapshot_name(sched: Schedule, period: int) -> str:
        """The name of a period's snapshot: the schedule's name (or id) and
        the period's start, so a run can find what an interrupted one made."""
        return "%s-%s" % (sched.name or "schedule-%s" % sched.id[:8],
                          period_start(sched.anchor_at, sched.every_s,
                                       period).strftime("%Y%m%dT%H%MZ"))

    def _finish_interrupted(self, sched: Schedule, target: TargetKind,
                            now: datetime.datetime) -> None:
        """Settle the periods a killed run left ``taking``: what it made
        (found by the period's name) becomes the schedule's, so retention
        counts and deletes it; a period with nothing made is forgotten. A
        run on another host counts as killed once its lease is over."""
        for run in self.runs(sched.id):
            if run.status != "taking" or run.owner == this_owner():
                continue
            alive = inventory_mod.owner_alive(run.owner)
            if alive or (alive is None and now - run.created_at < RUN_LEASE):
                continue
            made = target.made(self.mgr, sched.target_id,
                               self.snapshot_name(sched, run.period))
            with self.inventory.session() as sess:
                row = sess.get(ScheduleRun, run.id, with_for_update=True)
                if row is None or row.status != "taking":
                    continue
                if made:
                    row.status, row.made_id, row.owner = "taken", made[0], None
                else:
                    sess.delete(row)
            LOG.warning("Schedule %s: a run of period %d by %s was interrupted; %s",
                        sched.id, run.period, run.owner,
                        "adopted %s" % made[0] if made else "it made nothing")

    def _take(self, sched: Schedule, target: TargetKind, name: str,
              result: RunResult) -> str:
        """Take the snapshot; once, when the back end says the volume is
        full of snapshots, delete the schedule's oldest first and retry."""
        try:
            return target.take(self.mgr, sched.target_id, name)
        except Exception as exc:
            if not limit_refusal(exc):
                raise
            oldest = self.live_made(sched)
            if not oldest:
                raise
            LOG.warning("Schedule %s: %s; deleting its oldest snapshot %s to make room",
                        sched.id, _reason(exc), oldest[0].made_id)
            assert oldest[0].made_id is not None
            target.delete(self.mgr, oldest[0].made_id)
            self._mark_pruned(oldest[0].id)
            result.pruned.append(oldest[0].made_id)
        try:
            return target.take(self.mgr, sched.target_id, name)
        except Exception as exc:
            if limit_refusal(exc):
                raise Refused(reason="%s; the schedule deleted its oldest snapshot to make "
                                     "room, but the back end is still full (on a VHD SR "
                                     "the chain shortens when the SR's garbage collector "
                                     "has coalesced, in the background): the next run "
                                     "takes this period" % _reason(exc)) from None
            raise

    def _clean_failed(self, sched: Schedule, target: TargetKind, name: str) -> None:
        """Delete what the failed take left recorded in error (the manager
        keeps such a record for reconcile; this run knows it is its own, by
        the name only this schedule's period gives), so no stray snapshot
        outlives the run. One that will not go is logged; reconcile finds it."""
        for made_id in target.failed(self.mgr, sched.target_id, name):
            try:
                target.delete(self.mgr, made_id)
            except exception.XensmError as exc:
                LOG.error("Schedule %s: could not delete %s left by its failed run: %s",
                          sched.id, made_id, _reason(exc))

    def _release(self, schedule_id: str, run_id: str, *, taken: str | None,
                 error: str | None) -> None:
        """Record the run's outcome: its snapshot, or (failed) its period
        freed for the next run; the schedule no longer running."""
        with self.inventory.session() as sess:
            sched = sess.get(Schedule, schedule_id, with_for_update=True)
            run = sess.get(ScheduleRun, run_id)
            if run is not None:
                if taken is None:
                    sess.delete(run)
                else:
                    run.status, run.made_id = "taken", taken
            if sched is not None and sched.owner == this_owner():
                sched.owner, sched.run_started_at = None, None
            if sched is not None:
                sched.last_error = error

    def _mark_pruned(self, run_id: str) -> None:
        with self.inventory.session() as sess:
            run = sess.get(ScheduleRun, run_id)
            if run is not None:
                run.status, run.pruned_at = "pruned", self.clock()

    def _prune(self, sched: Schedule, target: TargetKind, result: RunResult) -> None:
        """Delete the schedule's oldest snapshots down to ``keep``. A delete
        that fails is reported and retried by the next run."""
        live = self.live_made(sched)
        by_period = {r.period: r for r in live}
        for period in to_prune(list(by_period), sched.keep):
            run = by_period[period]
            assert run.made_id is not None
            try:
                target.delete(self.mgr, run.made_id)
            except exception.XensmError as exc:
                result.error = "retention could not delete %s: %s" % (run.made_id,
                                                                      _reason(exc))
                LOG.error("Schedule %s: %s", sched.id, result.error)
                self.inventory.update(Schedule, sched.id, last_error=result.error)
                continue
            self._mark_pruned(run.id)
            result.pruned.append(run.made_id)

    def forever(self, stop: threading.Event, report: Callable[[list[RunResult]], None],
                poll_s: float = POLL_S) -> None:
        """Run what is due, wait until the next is due (at most ``poll_s``, to
        see schedules made meanwhile), until ``stop`` is set (SIGTERM). A run
        in progress finishes first."""
        while not stop.is_set():
            try:
                report(self.run_due())
                soonest = self.next_due()
            except (exception.XensmError, sa.exc.SQLAlchemyError) as exc:
                # The inventory unreachable for a while: try again next poll.
                LOG.error("Scheduled snapshots: %s; trying again in %.0f s",
                          _reason(exc), poll_s)
                soonest = None
            delay = poll_s
            if soonest is not None:
                delay = min(poll_s, max(1.0, (soonest - self.clock()).total_seconds()))
            stop.wait(delay)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (text or type(exc).__name__)[:1000]
