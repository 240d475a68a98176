"""The engine every flow runs on: taskflow, lean.

A flow here lives and dies in one call: nothing resumes it from a logbook.
So the engine keeps no persistence (``_Unpersisted``) and a verb's compiled
engine is reused for its next run (:class:`Verb`). Both were most of the
driver's own CPU (issue 15): taskflow's in-memory backend copies every atom
state change into a path-based store under a lock, and each run compiled,
prepared and validated a fresh flow.

Two traps in taskflow's source shape the reuse:

- an engine's tasks must not run in two engines at once (the task's
  notifier deregisters its listeners by index), so an engine serves one run
  at a time and concurrent runs of a verb get engines of their own;
- an engine is reused only after a success: ``reset()`` keeps the failure
  cache of a failed run (``Storage._failures`` is cleared per atom only when
  its state changes), so a failed engine is dropped.

And a run's storage does without what only a persisted, shared flow needs
(:class:`_LeanStorage`): no reader-writer lock (one run per engine, in one
thread), no retrying save through a backend connection, no defensive copy
of each atom detail before its update.

This relies on taskflow internals (``Storage._with_connection``,
``_save_atom_detail``, ``_save_flow_detail``, ``_atomdetail_by_name``,
``_fetch_flowdetail``, ``_lock``; ``ActionEngine.reset`` and ``storage``),
so the version is pinned in requirements.txt and
``tests/unit/flows/test_engine.py`` fails when they change.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import uuid as uuidlib
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

from oslo_log import log as logging
from taskflow import storage as taskflow_storage
from taskflow import task
from taskflow.engines.action_engine import engine as action_engine
from taskflow.persistence import base as persistence_base
from taskflow.persistence import models as persistence_models
from taskflow.types import failure

from xensm_driver import exception

if TYPE_CHECKING:
    from taskflow.engines.base import Engine
    from taskflow.flow import Flow

LOG = logging.getLogger(__name__)
T = TypeVar("T")

#: Errors that mean the object is already gone.
GONE = (exception.HandleInvalid, exception.UuidInvalid)

#: Idle engines kept per verb: more concurrent runs than this build more.
IDLE_ENGINES = 16


def run(flow: Flow, **store: Any) -> dict[str, Any]:
    """Run ``flow`` once with ``store``; return the whole result store. For
    flows built per call (their shape depends on the call); a verb whose flow
    is always the same runs through :class:`Verb`."""
    return _load(flow, store).run_and_fetch()


class Verb:
    """A flow that is the same on every call, run on reused engines.

    ``build`` makes the flow; each run takes an idle engine (or loads one),
    injects the run's store, runs it, and gives the engine back after a
    success. The store must name the same keys on every run, so that no
    value of an earlier run is left for a task to read.
    """

    def __init__(self, build: Callable[[], Flow]) -> None:
        self.build = build
        self.name = build.__name__
        self._idle: collections.deque[_Engine] = collections.deque()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "Verb(%s)" % self.name

    def flow(self) -> Flow:
        """A fresh flow of this verb (to read its shape)."""
        return self.build()

    def run(self, **store: Any) -> dict[str, Any]:
        with self._lock:
            engine = self._idle.pop() if self._idle else None
        if engine is None or engine.keys != frozenset(store):
            engine = _load(self.build(), store)
        else:
            engine.renew(store)
        result = engine.run_and_fetch()
        # Only after a success (see the module's docstring).
        with self._lock:
            if len(self._idle) < IDLE_ENGINES:
                self._idle.append(engine)
        return result


class _Engine:
    """A loaded serial engine and the store keys it was loaded with."""

    def __init__(self, engine: Engine, keys: frozenset[str]) -> None:
        self.engine = engine
        self.keys = keys

    def renew(self, store: dict[str, Any]) -> None:
        self.engine.reset()
        self.engine.storage.inject(store)

    def run_and_fetch(self) -> dict[str, Any]:
        self.engine.run()
        return self.engine.storage.fetch_all()


def _load(flow: Flow, store: dict[str, Any]) -> _Engine:
    # A flow detail of its own and no logbook: nothing to save it in, and
    # taskflow warns about a missing logbook on every run otherwise.
    detail = persistence_models.FlowDetail(flow.name, str(uuidlib.uuid4()))
    engine = _LeanEngine(flow, detail, _UNPERSISTED, {"gather_statistics": False})
    engine.storage.inject(store)
    return _Engine(engine, frozenset(store))


class _NoLock:
    """Storage's reader-writer lock, for storage only one thread uses."""

    _held = contextlib.nullcontext()

    def read_lock(self) -> contextlib.nullcontext[None]:
        return self._held

    def write_lock(self) -> contextlib.nullcontext[None]:
        return self._held


class _LeanStorage(taskflow_storage.Storage):
    """taskflow's Storage for a flow that lives and dies in one call.

    Its records stay in memory, read and written by the one thread running
    the engine: an update is made in place, where taskflow copies the atom
    detail, saves the copy through a backend connection under a retry and
    merges it back -- all for a backend that keeps nothing.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = _NoLock()

    def _with_connection(self, functor: Callable[..., Any], *args: Any,
                         **kwargs: Any) -> Any:
        return functor(None, *args, **kwargs)

    def _save_atom_detail(self, conn: Any, original: Any, detail: Any) -> Any:
        if detail is not original:
            original.update(detail)
        return original

    _save_flow_detail = _save_atom_detail

    def _atomdetail_by_name(self, atom_name: str, expected_type: Any = None,
                            clone: bool = False) -> tuple[Any, Any]:
        source, _ = super()._atomdetail_by_name(atom_name, expected_type=expected_type)
        return source, source

    def _fetch_flowdetail(self, clone: bool = False) -> tuple[Any, Any]:
        return self._flowdetail, self._flowdetail


class _LeanEngine(action_engine.SerialActionEngine):
    """The serial engine on :class:`_LeanStorage`."""

    @property
    def storage(self) -> _LeanStorage:
        try:
            return self.__dict__["_xensm_storage"]
        except KeyError:
            pass

        def scope_fetcher(atom_name: str) -> Any:
            return self._runtime.fetch_scopes_for(atom_name) if self._compiled else None

        made = self.__dict__["_xensm_storage"] = _LeanStorage(
            self._flow_detail, backend=self._backend, scope_fetcher=scope_fetcher)
        return made


class _Unpersisted(persistence_base.Backend, persistence_base.Connection):
    """A taskflow persistence backend that keeps nothing.

    taskflow's default in-memory backend copies every atom state change
    into a path-based store under a lock. Handing each update straight back
    keeps the engine's own records (in its Storage) and drops the copy.
    """

    def __init__(self) -> None:
        persistence_base.Backend.__init__(self, {})

    # Backend
    def get_connection(self) -> _Unpersisted:
        return self

    def close(self) -> None:
        return None

    # Connection
    @property
    def backend(self) -> _Unpersisted:
        return self

    def upgrade(self) -> None:
        return None

    def validate(self) -> None:
        return None

    def clear_all(self) -> None:
        return None

    def update_atom_details(self, atom_detail: Any) -> Any:
        return atom_detail

    def update_flow_details(self, flow_detail: Any, ignore_missing: bool = False) -> Any:
        return flow_detail

    def save_logbook(self, book: Any) -> Any:
        return book

    def destroy_logbook(self, book_uuid: str) -> None:
        return None

    def _nothing(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("flows are not persisted; nothing can be read back")

    get_logbook = get_logbooks = get_flows_for_book = _nothing
    get_flow_details = get_atom_details = get_atoms_for_flow = _nothing


_UNPERSISTED = _Unpersisted()


class XensmTask(task.Task):
    """A task named after its class, so flow errors name the step.

    Tasks may keep what one run learned on ``self`` (an engine serves one
    run at a time), but must set it afresh at the start of ``execute``: an
    engine is reused for the verb's next run.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", type(self).__name__)
        super().__init__(**kwargs)


def failed(result: Any) -> bool:
    """Whether a task's ``result`` (as revert gets it) is its own failure."""
    return isinstance(result, failure.Failure)


def undo(what: str, fn: Callable[..., Any], *args: Any) -> None:
    """Run one step of a revert; never let it stop the others.

    taskflow stops reverting at the first revert that raises and the
    original failure is lost behind it. So "already gone" counts as done,
    and anything else is logged as left behind -- tagged objects show up in
    ``xensm reconcile`` -- while the rest of the flow still reverts.
    """
    try:
        fn(*args)
    except GONE:
        return
    except exception.XensmError as exc:
        LOG.error("Could not undo %s: %s. It is left behind; 'xensm reconcile' "
                  "reports tagged leftovers.", what, exc)


def answer_or_lookup(call: Callable[[], T], lookup: Callable[[], T | None]) -> T:
    """``call()``'s answer -- or, when the answer was lost after the request
    went out (the call may have been carried out), what ``lookup()`` finds
    of its effect. Nothing found: the lost answer's error is raised, and the
    outcome stays unknown (:func:`unknown`). A call that never went out is
    never looked for."""
    try:
        return call()
    except (exception.XapiConnectionError, exception.ArrayConnectionError) as exc:
        if not unknown(exc):
            raise
        LOG.warning("%s; looking for what it did.", exc)
        found = lookup()
        if found is None:
            raise
        return found


def outcome_unknown(flow_failures: Any) -> bool:
    """Whether a failure of this flow may still be carried out by XAPI (or
    the back end's array)."""
    return any(fail.exception is not None and unknown(fail.exception)
               for fail in (flow_failures or {}).values())


def unknown(exc: BaseException) -> bool:
    """Whether the call that raised ``exc`` may still be carried out: one
    whose request went out (a timeout after sending, a connection lost
    after it) -- not one that never left (a connect timeout, an exhausted
    session pool) -- or a task that outlived its deadline."""
    if isinstance(exc, exception.TaskTimeout):
        return True
    if isinstance(exc, exception.XapiConnectionError):
        return bool(exc.sent)
    if isinstance(exc, exception.ArrayConnectionError):
        return bool(exc.kwargs.get("sent"))
    return False
