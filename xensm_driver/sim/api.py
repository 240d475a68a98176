"""The XAPI object model and its calls: the heart of the simulator.

One :class:`Xapi` holds all state of one simulated pool behind one lock
(``self.lock``, with ``self.cond`` for waiting).  Every call runs under the
lock except the parts that move data (snapshot, clone and copy copy VDI
files outside it, after marking the VDIs busy) and the parts that sleep
(authentication-failure delay, ``event.from``).  Conflicting operations on
one VDI, and the SR operation that VDI create/destroy/snapshot/clone/resize
also hold, queue behind each other as xapi's internal retry makes them do;
the coalescer runs in a background worker (:meth:`Xapi.gc_worker`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid as uuidlib
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import storage
from . import where
from .cbt import CbtLogs
from .db import Database
from .db import save_tables
from .errors import sm_error
from .fabric import Fabric
from .fabric import data_extents
from .fabric import sparse_copy
from .schema import CLASSES
from .schema import NAMED
from .schema import PUBLIC
from .schema import REVERSE
from .storage import BACKENDS
from .storage import PACKS
from .storage import RESIGNED
from .storage import VHD_BLOCK
from .storage import Backend
from .storage import Ctx
from .storage import Place
from .storage import ReLvmoIscsiBackend
from .wire import NULL_REF
from .wire import XapiError
from .wire import epoch_stamp
from .wire import now_stamp
from .wire import value_xml

LOG = logging.getLogger(__name__)

SESSION_IDLE_TIMEOUT = 24 * 3600.0
TASK_FINISHED_TTL = 65 * 60.0
TASK_PENDING_TTL = 24 * 3600.0
BUSY_TIMEOUT = 600.0        # how long a VDI operation queues behind another
ARRAY_ROUND = 1024 * 1024   # netapp/equal LUN sizes are whole MiB
DATA_DESTROY_VBD_WAIT = 4.0  # xapi_vdi.ml: data_destroy = _data_destroy ~timeout:4

_SR_OPS = {'VDI_CREATE': ['vdi_create'], 'VDI_DELETE': ['vdi_destroy'],
           'VDI_RESIZE': ['vdi_resize'], 'VDI_INTRODUCE': ['vdi_introduce'],
           'VDI_SNAPSHOT': ['vdi_snapshot'], 'VDI_CLONE': ['vdi_clone'],
           'VDI_MIRROR': ['vdi_mirror'], 'SR_UPDATE': ['update'],
           'VDI_RESET_ON_BOOT': ['vdi_set_on_boot'],
           'VDI_CONFIG_CBT': ['vdi_enable_cbt', 'vdi_disable_cbt',
                              'vdi_data_destroy', 'vdi_list_changed_blocks']}
_VDI_OPS = {'VDI_DELETE': ['destroy'], 'VDI_SNAPSHOT': ['snapshot'],
            'VDI_CLONE': ['clone'], 'VDI_RESIZE': ['resize'],
            'VDI_MIRROR': ['mirror'], 'VDI_UPDATE': ['update'],
            'VDI_RESET_ON_BOOT': ['set_on_boot'],
            'VDI_GENERATE_CONFIG': ['generate_config'],
            'VDI_CONFIG_CBT': ['enable_cbt', 'disable_cbt',
                               'list_changed_blocks', 'data_destroy']}


@dataclass
class Method:
    name: str
    func: Callable[..., Any]
    params: list[tuple[str, str]]     # (name, type), session excluded
    optional: int = 0                 # trailing params that may be omitted
    needs_session: bool = True
    async_ok: bool = True
    locked: bool = True


@dataclass
class Attachment:
    """An SR whose storage is reachable (some PBD plugged)."""

    backend: Backend
    place: Place
    directory: str | None


@dataclass
class SessionInfo:
    username: str
    originator: str
    created: float
    last_active: float


def _pspec(text: str) -> tuple[str, str]:
    pname, _, ptype = text.partition(':')
    return (pname, ptype)


def api(name: str, params: str = '', optional: int = 0, *,
        session: bool = True, async_ok: bool = True,
        locked: bool = True) -> Callable[[Callable[..., Any]],
                                         Callable[..., Any]]:
    """Declare a method as XAPI call ``name`` with typed parameters."""
    spec = [_pspec(p) for p in params.split()]

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn._xapi = Method(name, fn, spec, optional,  # type: ignore[attr-defined]
                          session, async_ok, locked)
        return fn
    return deco


class Xapi:
    """State and calls of one simulated pool."""

    def __init__(self, fabric: Fabric, username: str, password: str,
                 auth_failure_delay: float = 5.0,
                 max_sessions_per_user: int = 500,
                 state_file: str | None = None,
                 packs: tuple[str, ...] = (),
                 absent_sm_types: tuple[str, ...] = ()) -> None:
        self.fabric = fabric
        # The SR types this pool's SM offers: stock ones plus any
        # supplemental pack installed on it, less those left out (netapp
        # and equal were StorageLink adapters of XenServer 5.6-6.0: a
        # current pool has no SM record for them and SR.create answers
        # SR_UNKNOWN_DRIVER, xen-api xapi_sr.ml via Sm.sm_of_type).
        self.backends: dict[str, Backend] = {
            t: b for t, b in BACKENDS.items() if t not in absent_sm_types}
        for pack in packs:
            if pack not in PACKS:
                raise ValueError('unknown supplemental pack %r (known: %s)'
                                 % (pack, ', '.join(sorted(PACKS))))
            self.backends[pack] = PACKS[pack]
        self.username = username
        self.password = password
        self.auth_failure_delay = auth_failure_delay
        self.max_sessions = max_sessions_per_user
        self.state_file = state_file
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.db = Database()
        self.sessions: dict[str, SessionInfo] = {}
        self.task_times: dict[str, float] = {}
        # The session each task was made in (a session with a pending task
        # survives the session GC).
        self.task_session: dict[str, str] = {}
        # Tasks whose operation is still running (an Async call, a transfer):
        # cancelling one only asks it to stop; it ends when the work does.
        self.task_work: set[str] = set()
        self.busy: dict[str, str] = {}
        self.sr_busy: dict[str, str] = {}   # SR ref -> its running operation
        self.rows: dict[str, int] = {}      # rows scanned, by call name
        self.attached: dict[str, Attachment] = {}
        self.space: dict[str, list[int]] = {}
        self.vhd_children: dict[str, dict[str, None]] = {}
        # Changed-block tracking logs by VDI uuid (sim/cbt.py).
        self.cbt = CbtLogs()
        # Where the pool's NBD server listens (set by the Simulator).
        self.nbd_address: tuple[str, int] | None = None
        self.gc_paused = False
        # SRs whose coalescer was kicked and has not run yet (sm _kickGC).
        self.gc_pending: set[str] = set()
        self.gc_delay = 0.0
        # Called with the dotted name of a call an async task runs; returns
        # a faults.Fault (or None) so injected faults reach Async.* too.
        self.fault_hook: Callable[[str], Any] | None = None
        self.master_address = '127.0.0.1'
        self.guest_writes = 0     # guest_write's sequence numbers
        self.ctx = Ctx(fabric, self._secret_value, self._sr_uuid_in_use)
        self.methods: dict[str, Method] = {}
        for attr in dir(self):
            m = getattr(getattr(self, attr), '_xapi', None)
            if isinstance(m, Method):
                self.methods[m.name] = Method(
                    m.name, getattr(self, attr), m.params, m.optional,
                    m.needs_session, m.async_ok, m.locked)
        self._register_generic()

    # ==================================================================
    # Bootstrap and persistence
    # ==================================================================
    def bootstrap(self, hosts: list[dict[str, str]]) -> None:
        """Create the pool, hosts, control domains and SM records."""
        with self.lock:
            loaded = bool(self.state_file and
                          self.db.load(self.state_file))
            if not loaded:
                href = []
                for i, h in enumerate(hosts):
                    ref = self.db.create('host', {
                        'uuid': h['uuid'], 'name_label': h['name_label'],
                        'hostname': h['name_label'], 'address': h['address'],
                        'iscsi_iqn': h['iscsi_iqn'],
                        'other_config': {'iscsi_iqn': h['iscsi_iqn'],
                                         'agent_start_time': str(time.time())},
                        'software_version': {
                            'product_version': '8.4.0',
                            'product_brand': 'XCP-ng', 'platform_name': 'XCP',
                            'platform_version': '3.4.0', 'xapi': '26.21',
                            'build_number': 'xensm-sim',
                            'hostname': h['name_label']},
                        'API_version_vendor_implementation': {},
                        'virtual_hardware_platform_versions': ['0', '1', '2'],
                        'capabilities': ['xen-3.0-x86_64', 'hvm-3.0-x86_64'],
                    })
                    vm = self.db.create('VM', {
                        'name_label': 'Control domain on host: %s'
                                      % h['name_label'],
                        'is_control_domain': True, 'power_state': 'Running',
                        'resident_on': ref, 'domid': 0,
                        'memory_static_max': 4 * storage.GiB,
                        'memory_target': 4 * storage.GiB})
                    self.db.update('host', ref, control_domain=vm)
                    href.append(ref)
                    if i == 0:
                        self.master_address = h['address']
                self.db.create('pool', {'master': href[0],
                                        'name_label': ''})
            else:
                for h, rec in zip(hosts, self._hosts_in_order(), strict=False):
                    self.db.update('host', rec, address=h['address'])
                master = self._master()
                self.master_address = self.db.get('host', master)['address']
            existing = {r['type'] for r in self.db.tables['SM'].values()}
            for t, be in self.backends.items():
                if t in existing:
                    continue
                self.db.create('SM', {
                    'name_label': be.sm.name_label,
                    'name_description': be.sm.description, 'type': t,
                    'vendor': be.sm.vendor,
                    'copyright': '(C) 2008 Citrix Systems Inc',
                    'version': '1.0', 'required_api_version': '1.0',
                    'configuration': dict(be.sm.configuration),
                    'capabilities': list(be.sm.capabilities),
                    'features': be.sm.features(),
                    'driver_filename': be.sm.driver,
                    'supported_image_formats': list(be.sm.image_formats)})
            if loaded:
                self._reattach_all()

    def _hosts_in_order(self) -> list[str]:
        master = self._master()
        others = sorted((r for r in self.db.tables['host'] if r != master),
                        key=lambda r: self.db.tables['host'][r]['address'])
        return [master] + others

    def _master(self) -> str:
        pool = next(iter(self.db.tables['pool'].values()))
        master: str = pool['master']
        return master

    def _reattach_all(self) -> None:
        for sr in list(self.db.tables['SR']):
            self._rebuild_vhd_index(sr)
            self._recompute_space(sr)
        for pbd, rec in list(self.db.tables['PBD'].items()):
            if rec['currently_attached']:
                try:
                    self._attach(pbd)
                except XapiError as exc:
                    LOG.warning('PBD %s did not re-attach: %s', pbd, exc)
                    self.db.update('PBD', pbd, currently_attached=False)

    def save_if_dirty(self) -> None:
        """Write the database to the state file if it changed."""
        if not self.state_file:
            return
        with self.lock:
            if not self.db.dirty:
                return
            tables = self.db.snapshot_tables()
            self.db.dirty = False
        save_tables(tables, self.state_file)

    # ==================================================================
    # Dispatch
    # ==================================================================
    def dispatch(self, name: str, wire_name: str, args: tuple[Any, ...],
                 host_ref: str | None = None) -> Any:
        """Run call ``name``; returns its value or raises XapiError."""
        is_async = name.startswith('Async.')
        base = name[6:] if is_async else name
        method = self.methods.get(base)
        if method is None:
            raise XapiError('MESSAGE_METHOD_UNKNOWN', wire_name)
        nsess = 1 if method.needs_session else 0
        total = len(method.params)
        if not (total - method.optional <= len(args) - nsess <= total):
            raise XapiError('MESSAGE_PARAMETER_COUNT_MISMATCH', wire_name,
                            total, max(len(args) - nsess, 0))
        if is_async and not method.async_ok:
            raise XapiError('Fault', 'No async mode for this operation '
                            '(rpc: %s)' % base)
        if method.name == 'session.login_with_password':
            return self.login(args, host_ref)
        session = args[0] if nsess else None
        if session is not None:
            self._check_session(session)
        values = self._decode(method, args[nsess:])
        if is_async:
            return self._spawn_task(method, session, values)
        self._count_rows(method.name)
        return self._run(method, session, values)

    #: Lookups that read every row of their class's table: xen-api
    #: db_cache_impl.ml answers get_all_records_where (and get_all_records,
    #: get_all) by filtering the whole table, and get_by_name_label by a
    #: scan too; only get_by_uuid and per-ref reads use an index.
    SCANS = ('get_all_records_where', 'get_all_records', 'get_all',
             'get_by_name_label')
    INDEXED = ('get_by_uuid', 'get_record')

    def _count_rows(self, name: str) -> None:
        """Add what call ``name`` reads on a real pool to the rows counter."""
        cls, _, msg = name.partition('.')
        if msg in self.SCANS and cls in self.db.tables:
            rows = len(self.db.tables[cls])
        elif msg in self.INDEXED:
            rows = 1
        else:
            return
        with self.lock:
            self.rows[name] = self.rows.get(name, 0) + rows

    def rows_scanned(self) -> dict[str, int]:
        """Database rows each lookup verb has read, by dotted name."""
        with self.lock:
            return dict(self.rows)

    def reset_rows(self) -> None:
        with self.lock:
            self.rows.clear()

    def _run(self, method: Method, session: Any, values: list[Any]) -> Any:
        call_args = ([session] if method.needs_session else []) + values
        if method.locked:
            with self.lock:
                gen = self.db.gen
                try:
                    return method.func(*call_args)
                finally:
                    if self.db.gen != gen:
                        self.cond.notify_all()     # wake event.from
        try:
            return method.func(*call_args)
        finally:
            with self.lock:
                self.cond.notify_all()

    def _decode(self, method: Method, args: tuple[Any, ...]) -> list[Any]:
        out = []
        for (pname, ptype), value in zip(method.params, args, strict=False):
            out.append(self._decode_one(pname, ptype, value))
        return out

    def _decode_one(self, pname: str, ptype: str, value: Any) -> Any:
        if ptype.startswith('ref:'):
            if not isinstance(value, str):
                raise XapiError('FIELD_TYPE_ERROR', pname)
            return value        # validated by the call (HANDLE_INVALID)
        if ptype == 'int':
            try:
                if isinstance(value, bool):
                    raise ValueError
                return int(value)
            except (TypeError, ValueError):
                raise XapiError('FIELD_TYPE_ERROR', pname) from None
        if ptype == 'float':
            try:
                return float(value)
            except (TypeError, ValueError):
                raise XapiError('FIELD_TYPE_ERROR', pname) from None
        if ptype == 'bool':
            if not isinstance(value, bool):
                raise XapiError('FIELD_TYPE_ERROR', pname)
            return value
        if ptype in ('map', 'record'):
            if not isinstance(value, dict):
                raise XapiError('FIELD_TYPE_ERROR', pname)
            return value
        if ptype == 'map_ss':
            if not isinstance(value, dict):
                raise XapiError('FIELD_TYPE_ERROR', pname)
            return {str(k): str(v) for k, v in value.items()}
        if ptype == 'set':
            if not isinstance(value, list):
                raise XapiError('FIELD_TYPE_ERROR', pname)
            return value
        if ptype == 'str':
            if isinstance(value, (dict, list)):
                raise XapiError('FIELD_TYPE_ERROR', pname)
            return value if isinstance(value, str) else str(value)
        return value

    # ==================================================================
    # Sessions
    # ==================================================================
    def login(self, args: tuple[Any, ...], host_ref: str | None) -> str:
        uname, pwd = str(args[0]), str(args[1])
        originator = str(args[3]) if len(args) > 3 else ''
        with self.lock:
            master = self._master()
            if host_ref is not None and host_ref != master:
                raise XapiError('HOST_IS_SLAVE', self.master_address)
        if uname != self.username or pwd != self.password:
            time.sleep(self.auth_failure_delay)
            raise XapiError('SESSION_AUTHENTICATION_FAILED', uname,
                            'Authentication failure')
        with self.lock:
            now = time.monotonic()
            ref = self.db.create('session', {
                'this_host': master, 'last_active': now_stamp(),
                'validation_time': now_stamp(), 'auth_user_name': uname,
                'originator': originator, 'is_local_superuser': True})
            self.sessions[ref] = SessionInfo(uname, originator, now, now)
            return ref

    def gc_sessions(self) -> int:
        """The periodic session GC; returns how many sessions it ended.

        xen-api ``db_gc_util.ml`` ``timeout_sessions``: sessions of root
        (or of no user name) are grouped by originator, other users' by
        user name, and each group is capped (``max_sessions_per_originator``
        / ``max_sessions_per_user_name``, 500 each): past the cap the least
        recently active go (``timeout_sessions_common``), as does a session
        idle beyond the inactive timeout. A session with a task still
        pending is never disposable. (Root sessions with no originator
        form one group here, capped like the others; xapi caps that group
        with its global ``max_sessions``.) Nothing is capped at login: a client
        may hold more sessions than the cap until the GC next runs.
        """
        with self.lock:
            pending = {self.task_session.get(t) for t, rec in
                       self.db.tables['task'].items()
                       if rec['status'] == 'pending'}
            now = time.monotonic()
            groups: dict[tuple[str, str], list[tuple[float, str]]] = {}
            ended = 0
            for ref, info in list(self.sessions.items()):
                if ref in pending:
                    continue
                if now - info.last_active > SESSION_IDLE_TIMEOUT:
                    self._drop_session(ref)
                    ended += 1
                    continue
                key = (('originator', info.originator)
                       if info.username in ('', 'root')
                       else ('username', info.username))
                groups.setdefault(key, []).append((info.last_active, ref))
            for members in groups.values():
                excess = len(members) - self.max_sessions
                for _t, ref in sorted(members)[:max(excess, 0)]:
                    self._drop_session(ref)
                    ended += 1
            return ended

    def _drop_session(self, ref: str) -> None:
        self.sessions.pop(ref, None)
        if self.db.exists('session', ref):
            self.db.destroy('session', ref)

    def _check_session(self, ref: Any) -> None:
        with self.lock:
            info = self.sessions.get(ref) if isinstance(ref, str) else None
            now = time.monotonic()
            if info is None:
                raise XapiError('SESSION_INVALID', ref)
            if now - info.last_active > SESSION_IDLE_TIMEOUT:
                self._drop_session(ref)
                raise XapiError('SESSION_INVALID', ref)
            info.last_active = now

    def session_valid(self, ref: str) -> bool:
        try:
            self._check_session(ref)
        except XapiError:
            return False
        return True

    def expire_sessions(self, ref: str | None = None) -> int:
        with self.lock:
            refs = [ref] if ref else list(self.sessions)
            n = 0
            for r in refs:
                if r in self.sessions:
                    self._drop_session(r)
                    n += 1
            return n

    @api('session.login_with_password', 'uname:str pwd:str version:str '
         'originator:str', 2, session=False, async_ok=False)
    def _login_placeholder(self, *args: Any) -> str:   # dispatched specially
        raise AssertionError('unreachable')

    @api('session.logout', async_ok=False)
    def session_logout(self, s: str) -> str:
        self._drop_session(s)
        return ''

    @api('session.get_this_host', 'self:ref:session', async_ok=False)
    def session_get_this_host(self, s: str, ref: str) -> str:
        host: str = self.db.get('session', ref)['this_host']
        return host

    # ==================================================================
    # Generic per-class calls
    # ==================================================================
    def _register_generic(self) -> None:
        for cls in PUBLIC:
            self._reg(cls, 'get_record', 'self:ref:' + cls,
                      lambda s, r, c=cls: self.db.render(c, r))
            self._reg(cls, 'get_by_uuid', 'uuid:str',
                      lambda s, u, c=cls: self.db.ref_of_uuid(c, u))
            self._reg(cls, 'get_all', '',
                      lambda s, c=cls: list(self.db.tables[c]))
            self._reg(cls, 'get_all_records', '',
                      lambda s, c=cls: {r: self.db.render(c, r)
                                        for r in self.db.tables[c]})
            self._reg(cls, 'get_all_records_where', 'expr:str',
                      lambda s, e, c=cls: self.records_where(c, e))
            if cls in NAMED:
                self._reg(cls, 'get_by_name_label', 'label:str',
                          lambda s, n, c=cls: [
                              r for r, v in self.db.tables[c].items()
                              if v['name_label'] == n])
            for fname, spec in CLASSES[cls].items():
                self._reg(cls, 'get_' + fname, 'self:ref:' + cls,
                          lambda s, r, c=cls, f=fname:
                          self.db.render(c, r)[f]
                          if (c, f) in REVERSE else self.db.get(c, r)[f])
                if not spec.rw:
                    continue
                if 'set_' + fname not in self._special_setters(cls):
                    ptype = self._ptype(spec.type)
                    self._reg(cls, 'set_' + fname,
                              'self:ref:%s value:%s' % (cls, ptype),
                              lambda s, r, v, c=cls, f=fname:
                              self._set_field(c, r, f, v))
                if spec.type == 'map':
                    self._reg(cls, 'add_to_' + fname,
                              'self:ref:%s key:str value:str' % cls,
                              lambda s, r, k, v, c=cls, f=fname:
                              self._map_add(c, r, f, k, v))
                    self._reg(cls, 'remove_from_' + fname,
                              'self:ref:%s key:str' % cls,
                              lambda s, r, k, c=cls, f=fname:
                              self._map_remove(c, r, f, k))
                if fname == 'tags':
                    self._reg(cls, 'add_tags', 'self:ref:%s value:str' % cls,
                              lambda s, r, v, c=cls: self._tags(c, r, v, 1))
                    self._reg(cls, 'remove_tags',
                              'self:ref:%s value:str' % cls,
                              lambda s, r, v, c=cls: self._tags(c, r, v, 0))

    def _special_setters(self, cls: str) -> set[str]:
        return {name.split('.', 1)[1] for name in self.methods
                if name.startswith(cls + '.set_')}

    @staticmethod
    def _ptype(t: str) -> str:
        if t == 'map':
            return 'map_ss'
        if t in ('int', 'float', 'bool') or t.startswith('ref:'):
            return t
        if t == 'set':
            return 'set'
        if t == 'datetime':
            return 'any'
        return 'str'

    def _reg(self, cls: str, msg: str, params: str,
             fn: Callable[..., Any]) -> None:
        name = '%s.%s' % (cls, msg)
        if name in self.methods:
            return
        spec = [_pspec(p) for p in params.split()]
        self.methods[name] = Method(name, fn, spec, 0, True, False, True)

    def records_where(self, cls: str, expr_text: str) -> dict[str, Any]:
        expr = where.parse(expr_text)
        known = set(CLASSES[cls]) | {'ref'}
        for f in where.fields_of(expr):
            if f not in known:
                raise XapiError('INTERNAL_ERROR',
                                'Db_exn.DBCache_NotFound("missing field", '
                                '"%s", "")' % f)
        pred = where.compile_expr(expr)
        candidates: Any = self.db.tables[cls]
        for f, v in where.equalities(expr):
            if (cls, f) in self.db.index:
                candidates = list(self.db.index[(cls, f)].get(v, ()))
                break
            if f == 'uuid':
                r = self.db.by_uuid[cls].get(v)
                candidates = [r] if r else []
                break
        out = {}
        for ref in candidates:
            rec = self.db.render(cls, ref)
            if pred(rec):
                out[ref] = rec
        return out

    def _set_field(self, cls: str, ref: str, field: str, value: Any) -> str:
        self.db.get(cls, ref)
        ftype = CLASSES[cls][field].type
        if ftype.startswith('ref:') and value != NULL_REF:
            self.db.get(ftype[4:], value)
        if cls == 'VDI':
            self._vdi_update(ref, **{field: value})
            self._vdi_meta_sync(ref)
        else:
            self.db.update(cls, ref, **{field: value})
        return ''

    def _map_add(self, cls: str, ref: str, field: str, key: str,
                 value: str) -> str:
        rec = self.db.get(cls, ref)
        if key in rec[field]:
            raise XapiError('MAP_DUPLICATE_KEY', cls, field, rec['uuid'], key)
        self._map_set(cls, ref, field, {**rec[field], key: value})
        return ''

    def _map_set(self, cls: str, ref: str, field: str,
                 value: dict[str, str]) -> None:
        # A VDI's map goes through the same path as its setters, so the
        # SR's copy of the VDI's metadata follows.
        if cls == 'VDI':
            self._vdi_update(ref, **{field: value})
            self._vdi_meta_sync(ref)
        else:
            self.db.update(cls, ref, **{field: value})

    def _map_remove(self, cls: str, ref: str, field: str, key: str) -> str:
        rec = self.db.get(cls, ref)
        if key in rec[field]:
            new = dict(rec[field])
            del new[key]
            self._map_set(cls, ref, field, new)
        return ''

    def _tags(self, cls: str, ref: str, value: str, add: int) -> str:
        rec = self.db.get(cls, ref)
        tags = list(rec['tags'])
        if add and value not in tags:
            tags.append(value)
        elif not add and value in tags:
            tags.remove(value)
        self.db.update(cls, ref, tags=tags)
        return ''

    # ==================================================================
    # Tasks
    # ==================================================================
    def _new_task(self, label: str, description: str = '',
                  session: str | None = None) -> str:
        self._gc_tasks()
        ref = self.db.create('task', {
            'name_label': label, 'name_description': description,
            'created': now_stamp(), 'finished': epoch_stamp(),
            'status': 'pending', 'resident_on': self._master(),
            'allowed_operations': ['cancel', 'destroy'], 'progress': 0.0})
        self.task_times[ref] = time.monotonic()
        if session:
            self.task_session[ref] = session
        return ref

    def _gc_tasks(self) -> None:
        now = time.monotonic()
        for ref, t0 in list(self.task_times.items()):
            rec = self.db.tables['task'].get(ref)
            if rec is None:
                self.task_times.pop(ref, None)
                self.task_session.pop(ref, None)
                continue
            ttl = (TASK_PENDING_TTL if rec['status'] == 'pending'
                   else TASK_FINISHED_TTL)
            if now - t0 > ttl:
                self.db.destroy('task', ref)
                self.task_times.pop(ref, None)
                self.task_session.pop(ref, None)

    def task_done(self, ref: str, result: Any = None,
                  error: list[str] | None = None) -> None:
        """Record a task's outcome (caller holds the lock)."""
        if not self.db.exists('task', ref):
            return
        status = self.db.get('task', ref)['status']
        if status == 'cancelling':
            # The work has wound down: now the task is cancelled.
            self.db.update('task', ref, status='cancelled', progress=1.0,
                           finished=now_stamp(), allowed_operations=[],
                           error_info=['TASK_CANCELLED', ref])
            self.task_times[ref] = time.monotonic()
            self.cond.notify_all()
            return
        if status != 'pending':
            return
        if error is None:
            self.db.update('task', ref, status='success', progress=1.0,
                           finished=now_stamp(), allowed_operations=[],
                           result='' if result is None
                           else value_xml(result))
        else:
            self.db.update('task', ref, status='failure', progress=1.0,
                           finished=now_stamp(), allowed_operations=[],
                           error_info=[str(x) for x in error])
        self.task_times[ref] = time.monotonic()
        self.cond.notify_all()

    def _spawn_task(self, method: Method, session: Any,
                    values: list[Any]) -> str:
        with self.lock:
            task = self._new_task('Async.' + method.name, '', session)
            self.task_work.add(task)

        def work() -> None:
            fault = self.fault_hook(method.name) if self.fault_hook else None
            if fault is not None and fault.latency:
                time.sleep(fault.latency)
            try:
                if fault is not None and fault.error:
                    raise XapiError.from_list(fault.error)
                result = self._run(method, session, values)
                err = None
            except XapiError as exc:
                result, err = None, exc.details
            except Exception as exc:  # noqa: BLE001 - becomes the task error
                LOG.exception('task %s failed', method.name)
                result, err = None, ['INTERNAL_ERROR', str(exc)]
            if fault is not None and fault.hang:
                time.sleep(fault.hang)      # the task stays pending
            with self.lock:
                self.task_work.discard(task)
                self.task_done(task, result, err)
        threading.Thread(target=work, name='task-' + method.name,
                         daemon=True).start()
        return task

    @api('task.create', 'label:str description:str', async_ok=False)
    def task_create(self, s: str, label: str, description: str) -> str:
        return self._new_task(label, description, s)

    @api('task.destroy', 'self:ref:task', async_ok=False)
    def task_destroy(self, s: str, ref: str) -> str:
        self.db.get('task', ref)
        self.db.destroy('task', ref)
        self.task_times.pop(ref, None)
        self.task_session.pop(ref, None)
        return ''

    @api('task.cancel', 'self:ref:task', async_ok=False)
    def task_cancel(self, s: str, ref: str) -> str:
        rec = self.db.get('task', ref)
        if rec['status'] != 'pending':
            raise XapiError('OPERATION_NOT_ALLOWED',
                            'task is not pending: %s' % rec['status'])
        if ref in self.task_work:
            # XAPI asks the operation to stop; the task reads 'cancelling'
            # until it has wound down and released what it holds.
            self.db.update('task', ref, status='cancelling',
                           allowed_operations=[])
        else:
            self.db.update('task', ref, status='cancelled',
                           finished=now_stamp(),
                           error_info=['TASK_CANCELLED', ref])
        self.cond.notify_all()
        return ''

    # ==================================================================
    # event.from
    # ==================================================================
    @api('event.from', 'classes:set token:str timeout:float',
         async_ok=False, locked=False)
    def event_from(self, s: str, classes: list[str], token: str,
                   timeout: float) -> dict[str, Any]:
        try:
            since = int(token) if token else 0
        except ValueError:
            raise XapiError('EVENT_FROM_TOKEN_PARSE_FAILURE', token) from None
        subs: dict[str, set[str] | None] = {}
        lower = {c.lower(): c for c in PUBLIC}
        for c in classes:
            name, _, ref = str(c).partition('/')
            if name == '*':
                for lc in lower:
                    subs[lc] = None
                continue
            if name.lower() not in lower:
                raise XapiError('EVENT_SUBSCRIPTION_PARSE_FAILURE', c)
            if ref:
                cur = subs.get(name.lower(), set())
                if cur is not None:
                    cur.add(ref)
                    subs[name.lower()] = cur
            else:
                subs[name.lower()] = None
        deadline = time.monotonic() + max(0.0, min(float(timeout), 3600.0))
        with self.lock:
            while True:
                events = self._events_since(since, subs, lower)
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    break
                self.cond.wait(min(remaining, 1.0))
            counts = {lower[lc]: len(self.db.tables[lower[lc]])
                      for lc in subs}
            return {'events': events, 'valid_ref_counts': counts,
                    'token': '%020d' % self.db.gen}

    def _events_since(self, since: int, subs: dict[str, set[str] | None],
                      lower: dict[str, str]) -> list[dict[str, Any]]:
        def wanted(cls: str, ref: str) -> bool:
            if cls.lower() not in subs:
                return False
            refs = subs[cls.lower()]
            return refs is None or ref in refs
        out: list[dict[str, Any]] = []
        for (cls, ref), gen in reversed(self.db.changes.items()):
            if gen <= since:
                break
            if not wanted(cls, ref):
                continue
            op = 'add' if self.db.created.get((cls, ref), 0) > since else 'mod'
            out.append({'id': str(gen), 'timestamp': '%.6f' % time.time(),
                        'class': cls.lower(), 'operation': op, 'ref': ref,
                        'snapshot': self.db.render(cls, ref)})
        for gen, cls, ref, snap in reversed(self.db.deleted):
            if gen <= since:
                break
            if wanted(cls, ref):
                out.append({'id': str(gen), 'timestamp': '%.6f' % time.time(),
                            'class': cls.lower(), 'operation': 'del',
                            'ref': ref, 'snapshot': snap})
        out.sort(key=lambda e: int(str(e['id'])))
        return out

    @api('event.get_current_id', async_ok=False)
    def event_get_current_id(self, s: str) -> int:
        return self.db.gen

    # ==================================================================
    # secret
    # ==================================================================
    @api('secret.create', 'args:record', async_ok=False)
    def secret_create(self, s: str, rec: dict[str, Any]) -> str:
        if 'value' not in rec:
            raise XapiError('INTERNAL_ERROR', 'Field value missing')
        return self.db.create('secret', {
            'value': str(rec['value']),
            'other_config': dict(rec.get('other_config', {}))})

    @api('secret.destroy', 'self:ref:secret', async_ok=False)
    def secret_destroy(self, s: str, ref: str) -> str:
        self.db.get('secret', ref)
        self.db.destroy('secret', ref)
        return ''

    def _secret_value(self, uuid: str) -> str:
        ref = self.db.ref_of_uuid('secret', uuid)
        value: str = self.db.get('secret', ref)['value']
        return value

    def _move_passwords(self, dc: dict[str, str]) -> dict[str, str]:
        """device_config ``*password`` keys become ``*password_secret``."""
        out = {}
        for k, v in dc.items():
            if k.endswith('password'):
                ref = self.db.create('secret', {'value': v})
                out[k + '_secret'] = self.db.get('secret', ref)['uuid']
            else:
                out[k] = v
        return out

    def _forget_secrets(self, dc: dict[str, str]) -> None:
        """Destroy a PBD's own copies of its secrets (xen-api
        ``xapi_secret.ml`` ``clean_out_passwds``, from ``PBD.destroy`` and
        ``SR.forget``/``destroy``): never the secret a caller passed in,
        since every PBD got a copy of that (:meth:`_copy_secrets`)."""
        for k, v in dc.items():
            if k.endswith('password_secret'):
                ref = self.db.by_uuid['secret'].get(v)
                if ref:
                    self.db.destroy('secret', ref)

    # ==================================================================
    # SR
    # ==================================================================
    def _backend(self, sr_type: str) -> Backend:
        be = self.backends.get(sr_type)
        if be is None:
            raise XapiError('SR_UNKNOWN_DRIVER', sr_type)
        return be

    def _att(self, sr: str) -> Attachment:
        self.db.get('SR', sr)
        att = self.attached.get(sr)
        if att is None:
            raise XapiError('SR_NO_PBDS', sr)
        return att

    def _need(self, sr: str, be: Backend, cap: str) -> None:
        if cap not in be.sm.features():
            raise XapiError('SR_OPERATION_NOT_SUPPORTED', sr)

    def _sr_uuid_in_use(self, sr_uuid: str) -> bool:
        ref = self.db.by_uuid['SR'].get(sr_uuid)
        return bool(ref and ref in self.attached)

    def _sr_allowed_ops(self, be: Backend) -> list[str]:
        ops = ['forget', 'scan', 'plug', 'unplug', 'destroy', 'pbd_create',
               'pbd_destroy']
        for cap in be.sm.features():
            ops += _SR_OPS.get(cap, [])
        return ops

    def _vdi_allowed_ops(self, be: Backend, managed: bool) -> list[str]:
        if not managed:
            return ['copy', 'forget', 'generate_config']
        ops = ['copy', 'forget', 'force_unlock']
        for cap in be.sm.features():
            ops += _VDI_OPS.get(cap, [])
        return ops

    @api('SR.get_supported_types', async_ok=False)
    def sr_get_supported_types(self, s: str) -> list[str]:
        return sorted(self.backends)

    @api('SR.create', 'host:ref:host device_config:map_ss physical_size:int '
         'name_label:str name_description:str type:str content_type:str '
         'shared:bool sm_config:map_ss', 1, locked=False)
    def sr_create(self, s: str, host: str, dc: dict[str, str], size: int,
                  name_label: str, name_description: str, sr_type: str,
                  content_type: str, shared: bool,
                  sm_config: dict[str, str] | None = None) -> str:
        with self.lock:
            host_rec = self.db.get('host', host)
            be = self._backend(sr_type)
            given = dc
            dc = self._move_passwords(dc)
            # Secrets made here from plain passwords, not the caller's.
            moved = {k: v for k, v in dc.items() if k not in given}
            try:
                be.validate(self.ctx, dc, create=True)
                if sr_type == 'equal':
                    storage.check_equal_sm_config(sm_config or {})
                place = be.locate(self.ctx, dc, host_rec)
                if isinstance(be, ReLvmoIscsiBackend):
                    self._resign(be, dc, host_rec, place)
                sr_uuid = str(uuidlib.uuid4())
                sr_dir = be.sr_dir(place, sr_uuid)
                for found in be.found_srs(place):
                    if be.fmt == 'lvhd' and self._sr_uuid_in_use(found):
                        raise sm_error(16)
                if sr_dir:
                    be.format(place, sr_dir, sr_uuid)
            except XapiError:
                self._forget_secrets(moved)
                raise
            smc = dict(sm_config or {})
            if be.fmt == 'lvhd':
                smc.setdefault('allocation', 'thick')
                smc.setdefault('use_vhd', 'true')
                if place.lun is not None:
                    smc.setdefault('devserial', 'scsi-' + place.lun.scsi_id)
            if sr_type == 'netapp':
                smc.setdefault('FlexVols', dc.get('FlexVols', '8'))
            sr = self.db.create('SR', {
                'uuid': sr_uuid, 'name_label': name_label,
                'name_description': name_description, 'type': sr_type,
                'content_type': content_type, 'shared': bool(shared),
                'sm_config': smc, 'physical_size': place.capacity,
                'allowed_operations': self._sr_allowed_ops(be),
                'other_config': {}})
            self.space[sr] = [0, 0]
            if be.fmt == 'lvhd':
                self.space[sr][0] = storage.LVM_MGT_LV
            targets = (self._hosts_in_order() if shared else [host])
            pbds = []
            for h in targets:
                pbds.append(self.db.create('PBD', {
                    'host': h, 'SR': sr,
                    'device_config': self._copy_secrets(dc)}))
            self._forget_secrets(moved)
            # xen-api xapi_sr.ml create: once the SM made the SR, every PBD
            # gets an Async.PBD.plug and Tasks.wait_for_all waits for them
            # without reading their results: a host that cannot plug keeps
            # its PBD unplugged and SR.create still returns the SR.
            for pbd in pbds:
                try:
                    self._plug(pbd)
                except XapiError as exc:
                    LOG.info('SR.create %s: PBD %s did not plug: %s',
                             name_label, pbd, exc.details)
            self._refresh_sr(sr)
            return sr

    def _resign(self, be: ReLvmoIscsiBackend, dc: dict[str, str],
                host_rec: dict[str, Any], place: Place) -> None:
        """relvmoiscsi's create: resign the LUN, then fail as the pack does."""
        for att in self.attached.values():
            if att.place.lun is not None and place.lun is not None \
                    and att.place.lun.scsi_id == place.lun.scsi_id:
                raise sm_error(16)      # never rewrite a LUN that is in use
        be.resign(self.ctx, dc, host_rec)
        # The pack's error code is not documented; its text is (unverified).
        raise XapiError('SR_BACKEND_FAILURE_1', '', RESIGNED, '')

    def _copy_secrets(self, dc: dict[str, str]) -> dict[str, str]:
        """device_config with each ``*password_secret`` a fresh copy.

        xen-api ``xapi_pbd.ml`` ``create_common`` calls
        ``Xapi_secret.duplicate_passwds`` so that every PBD (the master's
        included) holds its own secret; the caller keeps and owns its own.
        """
        out = {}
        for k, v in dc.items():
            if k.endswith('password_secret') and \
                    v in self.db.by_uuid['secret']:
                val = self._secret_value(v)
                ref = self.db.create('secret', {'value': val})
                out[k] = self.db.get('secret', ref)['uuid']
            else:
                out[k] = v
        return out

    @api('SR.introduce', 'uuid:str name_label:str name_description:str '
         'type:str content_type:str shared:bool sm_config:map_ss', 1)
    def sr_introduce(self, s: str, uuid: str, name_label: str,
                     name_description: str, sr_type: str, content_type: str,
                     shared: bool, sm_config: dict[str, str] | None = None
                     ) -> str:
        be = self._backend(sr_type)
        if uuid and uuid in self.db.by_uuid['SR']:
            raise XapiError('SR_UUID_EXISTS', uuid)
        sr = self.db.create('SR', {
            'uuid': uuid or str(uuidlib.uuid4()), 'name_label': name_label,
            'name_description': name_description, 'type': sr_type,
            'content_type': content_type, 'shared': bool(shared),
            'sm_config': dict(sm_config or {}), 'physical_size': -1,
            'physical_utilisation': -1, 'virtual_allocation': -1,
            'allowed_operations': self._sr_allowed_ops(be)})
        self.space[sr] = [0, 0]
        return sr

    def _sr_forget_records(self, sr: str) -> None:
        for pbd in self.db.children('PBD', 'SR', sr):
            self._forget_secrets(self.db.get('PBD', pbd)['device_config'])
            self.db.destroy('PBD', pbd)
        for vdi in self.db.children('VDI', 'SR', sr):
            self._vdi_forget_record(vdi)
        self.attached.pop(sr, None)
        self.space.pop(sr, None)
        self.db.destroy('SR', sr)

    @api('SR.forget', 'sr:ref:SR')
    def sr_forget(self, s: str, sr: str) -> str:
        self.db.get('SR', sr)
        if any(self.db.get('PBD', p)['currently_attached']
               for p in self.db.children('PBD', 'SR', sr)):
            raise XapiError('SR_HAS_PBD', sr)
        self._sr_forget_records(sr)
        return ''

    @api('SR.destroy', 'sr:ref:SR')
    def sr_destroy(self, s: str, sr: str) -> str:
        rec = self.db.get('SR', sr)
        pbds = self.db.children('PBD', 'SR', sr)
        if any(self.db.get('PBD', p)['currently_attached'] for p in pbds):
            raise XapiError('SR_HAS_PBD', sr)
        if not pbds:
            raise XapiError('SR_NO_PBDS', sr)
        for vdi in self.db.children('VDI', 'SR', sr):
            v = self.db.get('VDI', vdi)
            if v['managed'] and v['type'] != 'rrd':
                raise XapiError('SR_NOT_EMPTY')
        if rec['other_config'].get('indestructible') == 'true':
            raise XapiError('SR_INDESTRUCTIBLE', sr)
        be = self._backend(rec['type'])
        pbd = self.db.get('PBD', pbds[0])
        place = be.locate(self.ctx, pbd['device_config'],
                          self.db.get('host', pbd['host']))
        sr_dir = be.sr_dir(place, rec['uuid'])
        if be.fmt == 'array' and sr_dir:
            for vdi in self.db.children('VDI', 'SR', sr):
                self._array_drop_lun(sr_dir, self.db.get('VDI', vdi)['uuid'])
        be.wipe(self.ctx, place, sr_dir)
        self._sr_forget_records(sr)
        return ''

    @api('SR.scan', 'sr:ref:SR')
    def sr_scan(self, s: str, sr: str) -> str:
        att = self._att(sr)
        # sm LVHDSR.scan: _refresh_size, then _expand_size grows the VG.
        self._resize(sr, att, grow=True)
        self._scan(sr, att)
        self._kick_gc(sr)       # sm FileSR.scan and LVHDSR.scan: _kickGC
        return ''

    @api('SR.update', 'sr:ref:SR')
    def sr_update(self, s: str, sr: str) -> str:
        att = self._att(sr)
        # sm LVHDSR.update -> _updateStats only re-reads the VG's stats.
        self._resize(sr, att, grow=False)
        self._refresh_sr(sr)
        return ''

    def _resize(self, sr: str, att: Attachment, *, grow: bool) -> None:
        """Find the SR's storage again and take its size as the SM reports
        it (see :meth:`storage.Backend.sr_size`)."""
        pbd = self._plugged_pbds(sr)[0]
        rec = self.db.get('PBD', pbd)
        place = att.backend.locate(self.ctx, rec['device_config'],
                                   self.db.get('host', rec['host']))
        place.capacity = att.backend.sr_size(place, att.directory, grow=grow)
        att.place = place

    @api('SR.probe', 'host:ref:host device_config:map_ss type:str '
         'sm_config:map_ss', 1)
    def sr_probe(self, s: str, host: str, dc: dict[str, str], sr_type: str,
                 sm_config: dict[str, str] | None = None) -> str:
        host_rec = self.db.get('host', host)
        be = self._backend(sr_type)
        return be.probe(self.ctx, dc, host_rec)

    @api('SR.probe_ext', 'host:ref:host device_config:map_ss type:str '
         'sm_config:map_ss')
    def sr_probe_ext(self, s: str, host: str, dc: dict[str, str],
                     sr_type: str, sm_config: dict[str, str]) -> Any:
        self.db.get('host', host)
        self._backend(sr_type)
        raise XapiError('SR_OPERATION_NOT_SUPPORTED')

    @api('SR.set_name_label', 'sr:ref:SR value:str')
    def sr_set_name_label(self, s: str, sr: str, value: str) -> str:
        self.db.update('SR', sr, name_label=value)
        return ''

    @api('SR.set_name_description', 'sr:ref:SR value:str')
    def sr_set_name_description(self, s: str, sr: str, value: str) -> str:
        self.db.update('SR', sr, name_description=value)
        return ''

    def _plugged_pbds(self, sr: str) -> list[str]:
        return [p for p in self.db.children('PBD', 'SR', sr)
                if self.db.get('PBD', p)['currently_attached']]

    def _refresh_sr(self, sr: str) -> None:
        """Write the space counters into the SR record."""
        att = self.attached.get(sr)
        phys, virt = self.space.get(sr, [0, 0])
        changes: dict[str, Any] = {'physical_utilisation': phys,
                                   'virtual_allocation': virt}
        if att is not None:
            cap = att.place.capacity
            if att.backend.fmt == 'lun':
                cap = sum(lun.size_bytes for lun in att.place.luns)
            changes['physical_size'] = cap
        rec = self.db.get('SR', sr)
        if any(rec[k] != v for k, v in changes.items()):
            self.db.update('SR', sr, **changes)

    def _recompute_space(self, sr: str) -> None:
        rec = self.db.get('SR', sr)
        be = self.backends.get(rec['type'])
        total = [storage.LVM_MGT_LV if be and be.fmt == 'lvhd' else 0, 0]
        for vdi in self.db.children('VDI', 'SR', sr):
            p, v = self._contrib(self.db.get('VDI', vdi), be)
            total[0] += p
            total[1] += v
        self.space[sr] = total

    # ==================================================================
    # PBD
    # ==================================================================
    @api('PBD.create', 'args:record')
    def pbd_create(self, s: str, rec: dict[str, Any]) -> str:
        for key in ('host', 'SR', 'device_config'):
            if key not in rec:
                raise XapiError('INTERNAL_ERROR', 'Field %s missing' % key)
        host, sr = str(rec['host']), str(rec['SR'])
        self.db.get('host', host)
        self.db.get('SR', sr)
        dc = {str(k): str(v) for k, v in rec['device_config'].items()}
        if 'SRmaster' in dc:
            raise XapiError('VALUE_NOT_SUPPORTED', 'device_config',
                            'SRmaster', 'This key is for internal use only')
        for p in self.db.children('PBD', 'SR', sr):
            if self.db.get('PBD', p)['host'] == host:
                raise XapiError('PBD_EXISTS', sr, host, p)
        moved = self._move_passwords(dc)
        config = self._copy_secrets(moved)
        self._forget_secrets({k: v for k, v in moved.items() if k not in dc})
        return self.db.create('PBD', {
            'host': host, 'SR': sr, 'device_config': config,
            'other_config': dict(rec.get('other_config', {}))})

    @api('PBD.destroy', 'self:ref:PBD')
    def pbd_destroy(self, s: str, pbd: str) -> str:
        rec = self.db.get('PBD', pbd)
        if rec['currently_attached']:
            raise XapiError('OPERATION_NOT_ALLOWED',
                            'PBD is currently attached')
        self._forget_secrets(rec['device_config'])
        self.db.destroy('PBD', pbd)
        return ''

    @api('PBD.plug', 'self:ref:PBD')
    def pbd_plug(self, s: str, pbd: str) -> str:
        self._plug(pbd)
        self._refresh_sr(self.db.get('PBD', pbd)['SR'])
        return ''

    def _plug(self, pbd: str) -> None:
        rec = self.db.get('PBD', pbd)
        if rec['currently_attached']:
            return
        sr = rec['SR']
        sr_rec = self.db.get('SR', sr)
        if not sr_rec['shared']:
            for p in self._plugged_pbds(sr):
                if self.db.get('PBD', p)['host'] != rec['host']:
                    raise XapiError('SR_NOT_SHARABLE', sr, rec['host'])
        self._attach(pbd)
        self.db.update('PBD', pbd, currently_attached=True)

    def _attach(self, pbd: str) -> None:
        rec = self.db.get('PBD', pbd)
        sr = rec['SR']
        sr_rec = self.db.get('SR', sr)
        be = self._backend(sr_rec['type'])
        host = self.db.get('host', rec['host'])
        place = be.locate(self.ctx, rec['device_config'], host)
        sr_dir = be.sr_dir(place, sr_rec['uuid'])
        if be.fmt != 'lun':
            meta = storage.read_sr_meta(sr_dir)
            if meta is None or meta.get('uuid') != sr_rec['uuid']:
                raise sm_error(47, 'no SR %s found on the device'
                               % sr_rec['uuid'])
        # sm LVHDSR.attach grows the VG into a grown device on the master only.
        on_master = rec['host'] == self._master()
        place.capacity = be.sr_size(place, sr_dir, grow=on_master)
        if sr not in self.attached:
            self.attached[sr] = Attachment(be, place, sr_dir)
            if sr_rec['physical_size'] == -1:
                self._recompute_space(sr)
        elif on_master:
            self.attached[sr].place = place

    @api('PBD.unplug', 'self:ref:PBD')
    def pbd_unplug(self, s: str, pbd: str) -> str:
        rec = self.db.get('PBD', pbd)
        if not rec['currently_attached']:
            return ''
        sr = rec['SR']
        in_use = []
        for vdi in self.db.children('VDI', 'SR', sr):
            for vbd in self.db.children('VBD', 'VDI', vdi):
                v = self.db.get('VBD', vbd)
                if not v['currently_attached']:
                    continue
                vm = self.db.tables['VM'].get(v['VM'])
                if vm and vm['resident_on'] == rec['host']:
                    in_use.append(vdi)
        if in_use:
            raise XapiError('VDI_IN_USE', *in_use)
        self.db.update('PBD', pbd, currently_attached=False)
        if not self._plugged_pbds(sr):
            self.attached.pop(sr, None)
        return ''

    @api('PBD.set_device_config', 'self:ref:PBD value:map_ss')
    def pbd_set_device_config(self, s: str, pbd: str,
                              value: dict[str, str]) -> str:
        self.db.update('PBD', pbd, device_config=dict(value))
        return ''

    # ==================================================================
    # VDI bookkeeping
    # ==================================================================
    def _contrib(self, rec: dict[str, Any], be: Backend | None
                 ) -> tuple[int, int]:
        # SR.virtual_allocation counts every VDI that is not hidden, snapshots
        # included, at its virtual size (sm FileSR._loadvdis: ``if not
        # vdi.hidden: self.virtual_allocation += vdi.size``); base copies
        # (hidden, managed=false) do not count.
        if be is not None and be.fmt == 'lun':
            if not rec['managed']:
                return (0, 0)
            return (rec['virtual_size'], rec['virtual_size'])
        return (rec['physical_utilisation'],
                rec['virtual_size'] if rec['managed'] else 0)

    def _sr_backend(self, sr: str) -> Backend | None:
        return self.backends.get(self.db.get('SR', sr)['type'])

    def _vdi_create(self, fields: dict[str, Any]) -> str:
        ref = self.db.create('VDI', fields)
        rec = self.db.get('VDI', ref)
        sr = rec['SR']
        p, v = self._contrib(rec, self._sr_backend(sr))
        acc = self.space.setdefault(sr, [0, 0])
        acc[0] += p
        acc[1] += v
        parent = rec['sm_config'].get('vhd-parent')
        if parent:
            self.vhd_children.setdefault(parent, {})[rec['uuid']] = None
        self._refresh_sr(sr)
        return ref

    def _vdi_update(self, ref: str, **changes: Any) -> None:
        rec = self.db.get('VDI', ref)
        sr = rec['SR']
        be = self._sr_backend(sr)
        p0, v0 = self._contrib(rec, be)
        old_parent = rec['sm_config'].get('vhd-parent')
        self.db.update('VDI', ref, **changes)
        p1, v1 = self._contrib(rec, be)
        acc = self.space.setdefault(sr, [0, 0])
        acc[0] += p1 - p0
        acc[1] += v1 - v0
        new_parent = rec['sm_config'].get('vhd-parent')
        if old_parent != new_parent:
            if old_parent:
                self.vhd_children.get(old_parent, {}).pop(rec['uuid'], None)
            if new_parent:
                self.vhd_children.setdefault(new_parent, {})[
                    rec['uuid']] = None
        if (p0, v0) != (p1, v1):
            self._refresh_sr(sr)

    def _vdi_forget_record(self, ref: str) -> None:
        rec = self.db.get('VDI', ref)
        sr = rec['SR']
        for vbd in self.db.children('VBD', 'VDI', ref):
            self.db.destroy('VBD', vbd)
        p, v = self._contrib(rec, self._sr_backend(sr)) \
            if self.db.exists('SR', sr) else (0, 0)
        self.db.destroy('VDI', ref)
        parent = rec['sm_config'].get('vhd-parent')
        if parent:
            self.vhd_children.get(parent, {}).pop(rec['uuid'], None)
        if sr in self.space:
            self.space[sr][0] -= p
            self.space[sr][1] -= v
            self._refresh_sr(sr)

    def _rebuild_vhd_index(self, sr: str) -> None:
        for vdi in self.db.children('VDI', 'SR', sr):
            rec = self.db.get('VDI', vdi)
            parent = rec['sm_config'].get('vhd-parent')
            if parent:
                self.vhd_children.setdefault(parent, {})[rec['uuid']] = None

    def _vdi_by_uuid(self, uuid: str) -> str | None:
        return self.db.by_uuid['VDI'].get(uuid)

    def _depth(self, rec: dict[str, Any]) -> int:
        depth = 1
        parent = rec['sm_config'].get('vhd-parent')
        while parent:
            depth += 1
            ref = self._vdi_by_uuid(parent)
            if ref is None:
                break
            parent = self.db.get('VDI', ref)['sm_config'].get('vhd-parent')
        return depth

    # -- VDI storage metadata and data files ------------------------------------
    def _meta_path(self, att: Attachment, uuid: str) -> str:
        assert att.directory
        return os.path.join(att.directory, uuid + '.json')

    def _meta_read(self, att: Attachment, uuid: str) -> dict[str, Any]:
        try:
            with open(self._meta_path(att, uuid)) as f:
                data: dict[str, Any] = json.load(f)
                return data
        except (FileNotFoundError, ValueError):
            return {}

    def _meta_write(self, att: Attachment, uuid: str,
                    **fields: Any) -> None:
        if att.backend.fmt == 'lun' or not att.directory:
            return
        meta = self._meta_read(att, uuid)
        meta.update(fields)
        storage.write_json(self._meta_path(att, uuid), meta)

    def _vdi_meta_sync(self, ref: str) -> None:
        """Mirror the record fields an SM keeps into the VDI's metadata."""
        rec = self.db.get('VDI', ref)
        att = self.attached.get(rec['SR'])
        if att is None or att.backend.fmt == 'lun':
            return
        self._meta_write(att, rec['uuid'], **self._meta_fields(rec))

    def _meta_fields(self, rec: dict[str, Any]) -> dict[str, Any]:
        snap_of = ''
        if rec['snapshot_of'] in self.db.tables['VDI']:
            snap_of = self.db.tables['VDI'][rec['snapshot_of']]['uuid']
        return {'vsize': rec['virtual_size'],
                'parent': rec['sm_config'].get('vhd-parent', ''),
                'hidden': not rec['managed'],
                'name_label': rec['name_label'],
                'name_description': rec['name_description'],
                'type': rec['type'], 'read_only': rec['read_only'],
                'sharable': rec['sharable'],
                'is_a_snapshot': rec['is_a_snapshot'],
                'snapshot_time': rec['snapshot_time'].value,
                'snapshot_of': snap_of}

    def _data_path(self, rec: dict[str, Any], att: Attachment) -> str:
        be = att.backend
        if be.fmt in ('vhd', 'lvhd'):
            assert att.directory
            return os.path.join(att.directory, rec['uuid'] + '.raw')
        if be.fmt == 'lun':
            lun = self.fabric.get_lun(rec['location'])
            return self._lun_file(lun.path, lun.size_bytes)
        meta = self._meta_read(att, rec['uuid'])
        lun = self.fabric.get_lun(meta['scsi_id'])
        return self._lun_file(lun.path, lun.size_bytes)

    @staticmethod
    def _lun_file(directory: str, size: int) -> str:
        path = os.path.join(directory, 'lun.raw')
        if not os.path.exists(path):
            with open(path, 'ab') as f:
                f.truncate(size)
        return path

    def data_file(self, vdi: str) -> str:
        rec = self.db.get('VDI', vdi)
        return self._data_path(rec, self._att(rec['SR']))

    def _phys(self, be: Backend, vsize: int, blocks: list[list[int]],
              lv: int | None = None, thick: bool = False) -> int:
        """A VDI's ``physical_utilisation``: on file SRs the VHD file's size
        (sm ``FileVDI.load``: ``vhdInfo.sizePhys``, else ``os.stat(path)
        .st_size``), so a base copy holds the blocks written before its
        snapshot and a new leaf only its headers; on LVHD the LV's size
        (inflated leaves, deflated snapshots and base copies)."""
        n = storage.runs_count(blocks)
        if be.fmt == 'vhd':
            return storage.vhd_file_size(vsize, n)
        if be.fmt == 'lvhd':
            return lv if lv is not None else storage.lvhd_inflated(vsize)
        if be.fmt == 'lun' or thick:
            return vsize
        return min(vsize, n * VHD_BLOCK)

    # -- queueing behind other operations -------------------------------------
    def _claim(self, refs: list[str], op: str) -> None:
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            busy = [r for r in refs if r in self.busy]
            if not busy:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise XapiError('OTHER_OPERATION_IN_PROGRESS', 'VDI', busy[0],
                                self.busy[busy[0]])
            self.cond.wait(min(remaining, 1.0))
        for r in refs:
            self.busy[r] = op
            if self.db.exists('VDI', r):
                self.db.update('VDI', r, current_operations={
                    'OpaqueRef:' + str(uuidlib.uuid4()): op})

    def _release(self, refs: list[str]) -> None:
        for r in refs:
            self.busy.pop(r, None)
            if self.db.exists('VDI', r):
                self.db.update('VDI', r, current_operations={})
        self.cond.notify_all()

    # xen-api message_forwarding.ml runs VDI.create/destroy/snapshot/clone/
    # resize inside SR.with_sr_marked: each also holds an SR operation, and
    # xapi_sr_operations.ml lets only ``plug`` run beside one. A conflicting
    # call is retried inside XAPI (OTHER_OPERATION_IN_PROGRESS, helpers.ml
    # retry policy) rather than failed, so here it queues; it fails only
    # after BUSY_TIMEOUT.
    def _claim_sr(self, sr: str, op: str) -> None:
        deadline = time.monotonic() + BUSY_TIMEOUT
        while sr in self.sr_busy:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise XapiError('OTHER_OPERATION_IN_PROGRESS', 'SR', sr,
                                self.sr_busy[sr])
            self.cond.wait(min(remaining, 1.0))
        self.sr_busy[sr] = op
        if self.db.exists('SR', sr):
            self.db.update('SR', sr, current_operations={
                'OpaqueRef:' + str(uuidlib.uuid4()): op})

    def _release_sr(self, sr: str) -> None:
        self.sr_busy.pop(sr, None)
        if self.db.exists('SR', sr):
            self.db.update('SR', sr, current_operations={})
        self.cond.notify_all()

    def _in_use(self, vdi: str) -> bool:
        for vbd in self.db.children('VBD', 'VDI', vdi):
            v = self.db.get('VBD', vbd)
            if v['currently_attached'] or v.get('reserved'):
                return True
        return False

    # ==================================================================
    # VDI calls
    # ==================================================================
    def _round_size(self, sr: str, be: Backend, size: int) -> int:
        if size < 0:
            raise sm_error(79)
        if be.fmt in ('vhd', 'lvhd'):
            size = max(storage.roundup(size, VHD_BLOCK), VHD_BLOCK)
            if size > storage.VHD_MAX:
                raise sm_error(79)
            return size
        if be.fmt == 'array':
            return max(storage.roundup(size, ARRAY_ROUND), ARRAY_ROUND)
        return size

    def _free(self, sr: str, att: Attachment) -> int:
        return att.place.capacity - self.space.get(sr, [0, 0])[0]

    @api('VDI.create', 'args:record')
    def vdi_create(self, s: str, rec: dict[str, Any]) -> str:
        sr = str(rec.get('SR', ''))
        if sr not in self.db.tables['SR']:
            return self._vdi_create_call(rec)
        self._claim_sr(sr, 'vdi_create')
        try:
            return self._vdi_create_call(rec)
        finally:
            self._release_sr(sr)

    def _vdi_create_call(self, rec: dict[str, Any]) -> str:
        for key in ('SR', 'virtual_size', 'type', 'sharable', 'read_only',
                    'other_config'):
            if key not in rec:
                raise XapiError('INTERNAL_ERROR', 'Field %s missing' % key)
        sr = str(rec['SR'])
        self.db.get('SR', sr)
        size = self._decode_one('virtual_size', 'int', rec['virtual_size'])
        vtype = str(rec['type'])
        if vtype == 'cbt_metadata':
            raise XapiError('VDI_INCOMPATIBLE_TYPE', '', vtype)
        if vtype not in ('system', 'user', 'ephemeral', 'suspend',
                         'crashdump', 'ha_statefile', 'metadata', 'redo_log',
                         'rrd', 'pvs_cache'):
            raise XapiError('FIELD_TYPE_ERROR', 'type')
        att = self._att(sr)
        be = att.backend
        self._need(sr, be, 'VDI_CREATE')
        fields = {
            'name_label': str(rec.get('name_label', '')),
            'name_description': str(rec.get('name_description', '')),
            'type': vtype,
            'sharable': self._decode_one('sharable', 'bool', rec['sharable']),
            'read_only': self._decode_one('read_only', 'bool',
                                          rec['read_only']),
            'other_config': {str(k): str(v) for k, v in
                             rec['other_config'].items()},
            'xenstore_data': {str(k): str(v) for k, v in
                              rec.get('xenstore_data', {}).items()},
            'tags': [str(t) for t in rec.get('tags', [])],
        }
        user_smc = {str(k): str(v) for k, v in rec.get('sm_config',
                                                       {}).items()}
        if be.fmt == 'lun':
            return self._lun_claim(sr, att, size, fields, user_smc)
        size = self._round_size(sr, be, size)
        vdi_uuid = str(uuidlib.uuid4())
        if be.fmt == 'lvhd':
            need = storage.lvhd_inflated(size)
            if need > self._free(sr, att):
                raise sm_error(44)
            phys = need
            smc = {'vdi_type': 'vhd'}
            meta: dict[str, Any] = {'lv': need, 'blocks': []}
        elif be.fmt == 'vhd':
            phys = storage.vhd_file_size(size, 0)
            smc = {'vdi_type': 'vhd'}
            meta = {'blocks': []}
        else:
            if be.type == 'equal':
                storage.check_equal_sm_config(user_smc)
            thick = (user_smc.get('allocation', 'thin' if be.thin else 'thick')
                     == 'thick')
            if thick and size > self._free(sr, att):
                raise sm_error(44)
            phys = size if thick else 0
            lun = self._array_new_lun(att, size)
            smc = {'SCSIid': lun.scsi_id, 'LUNid': str(lun.lun_id),
                   'allocation': 'thick' if thick else 'thin'}
            meta = {'scsi_id': lun.scsi_id, 'thick': thick, 'blocks': []}
        smc.update(user_smc)
        if be.fmt in ('vhd', 'lvhd'):
            path = os.path.join(att.directory or '', vdi_uuid + '.raw')
            with open(path, 'wb') as f:
                f.truncate(size)
        fields.update({
            'uuid': vdi_uuid, 'SR': sr, 'virtual_size': size,
            'physical_utilisation': phys, 'location': vdi_uuid,
            'sm_config': smc, 'managed': True,
            'allowed_operations': self._vdi_allowed_ops(be, True)})
        ref = self._vdi_create(fields)
        meta.update(self._meta_fields(self.db.get('VDI', ref)))
        storage.write_json(self._meta_path(att, vdi_uuid), meta)
        return ref

    def _array_new_lun(self, att: Attachment, size: int) -> Any:
        arr = att.place.array
        assert arr is not None
        lun_id = len(self.fabric.luns(arr.iqn))
        lun = self.fabric.add_lun(arr.iqn, size, lun_id=lun_id,
                                  vendor=arr.kind.upper())
        self._lun_file(lun.path, size)
        return lun

    def _array_drop_lun(self, sr_dir: str, vdi_uuid: str) -> None:
        try:
            with open(os.path.join(sr_dir, vdi_uuid + '.json')) as f:
                scsi_id = json.load(f).get('scsi_id')
        except (OSError, ValueError):
            return
        if scsi_id:
            self.fabric.remove_lun(scsi_id)

    def _lun_claim(self, sr: str, att: Attachment, size: int,
                   fields: dict[str, Any], smc: dict[str, str]) -> str:
        self._scan(sr, att)
        best = None
        for vdi in self.db.children('VDI', 'SR', sr):
            rec = self.db.get('VDI', vdi)
            if rec['managed'] or rec['virtual_size'] < size:
                continue
            if best is None or rec['virtual_size'] < best[0]:
                best = (rec['virtual_size'], vdi)
        if best is None:
            raise sm_error(44)
        ref = best[1]
        rec = self.db.get('VDI', ref)
        self._vdi_update(ref, managed=True, **fields,
                         sm_config={**rec['sm_config'], **smc},
                         allowed_operations=self._vdi_allowed_ops(
                             att.backend, True))
        return ref

    @api('VDI.destroy', 'self:ref:VDI', locked=False)
    def vdi_destroy(self, s: str, vdi: str) -> str:
        with self.lock:
            rec = self.db.get('VDI', vdi)
            if self._in_use(vdi):
                raise XapiError('VDI_IN_USE', vdi, 'destroy')
            if not rec['managed']:
                raise XapiError('VDI_NOT_MANAGED', vdi)
            sr = rec['SR']
            att = self._att(sr)
            self._need(sr, att.backend, 'VDI_DELETE')
            self._claim([vdi], 'destroy')
            try:
                self._claim_sr(sr, 'vdi_destroy')
                try:
                    rec = self.db.get('VDI', vdi)
                    if self._in_use(vdi):
                        raise XapiError('VDI_IN_USE', vdi, 'destroy')
                    self._destroy_storage(vdi, rec, att)
                finally:
                    self._release_sr(sr)
            finally:
                self._release([vdi])
        return ''

    def _destroy_storage(self, vdi: str, rec: dict[str, Any],
                         att: Attachment) -> None:
        be = att.backend
        sr = rec['SR']
        # sm VDI.delete: the CBT log's neighbours are relinked and its
        # bitmap coalesced into its child's (sim/cbt.py).
        self.cbt.delete(rec['uuid'])
        if be.fmt == 'lun':
            for vbd in self.db.children('VBD', 'VDI', vdi):
                self.db.destroy('VBD', vbd)
            self._vdi_update(vdi, managed=False, name_label='',
                             name_description='', other_config={},
                             allowed_operations=self._vdi_allowed_ops(
                                 be, False))
            return
        if be.fmt == 'array':
            assert att.directory
            self._array_drop_lun(att.directory, rec['uuid'])
        self._remove_files(att, rec['uuid'])
        self._vdi_forget_record(vdi)
        # sm FileVDI.delete / LVHDVDI.delete end with _kickGC: the
        # coalescer runs later in the background (cleanup.py), so base
        # copies outlive VDI.destroy for a while.
        self._kick_gc(sr)

    def _remove_files(self, att: Attachment, uuid: str) -> None:
        if not att.directory:
            return
        for ext in ('.raw', '.json'):
            try:
                os.unlink(os.path.join(att.directory, uuid + ext))
            except FileNotFoundError:
                pass

    # -- the coalescer (sm cleanup.py), in the background --------------------
    def _kick_gc(self, sr: str) -> None:
        """sm ``SR._kickGC``: ask the background coalescer to look at ``sr``."""
        self.gc_pending.add(sr)
        self.cond.notify_all()

    def gc_worker(self, stopping: threading.Event) -> None:
        """The coalescer: runs kicked SRs' GC until ``stopping`` is set."""
        with self.lock:
            while not stopping.is_set():
                ready = [] if self.gc_paused else sorted(self.gc_pending)
                if not ready:
                    self.cond.wait(0.5)
                    continue
                until = time.monotonic() + self.gc_delay
                while not stopping.is_set():
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(left)
                if self.gc_paused or stopping.is_set():
                    continue
                for sr in ready:
                    if self._gc_sr(sr):
                        self.gc_pending.discard(sr)
                self.cond.notify_all()
                if self.gc_pending & set(ready):
                    self.cond.wait(0.05)      # a VDI is busy: retry soon

    def wait_gc(self, timeout: float) -> int:
        """Wait until the coalescer has nothing left to do (or is held);
        return how many SRs still wait for it."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.gc_pending and not self.gc_paused:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(min(remaining, 0.5))
            return len(self.gc_pending)

    def _gc_sr(self, sr: str) -> bool:
        """Coalesce what ``sr`` allows now; False if a busy VDI blocked it."""
        if not self.db.exists('SR', sr) or sr not in self.attached:
            return True
        done = True
        bases = [self.db.get('VDI', v)['uuid']
                 for v in self.db.children('VDI', 'SR', sr)
                 if not self.db.get('VDI', v)['managed']]
        for b in bases:
            if self._vdi_by_uuid(b):
                done = self._gc(sr, b) and done
        return done

    def _gc(self, sr: str, base_uuid: str) -> bool:
        """Coalesce: drop base copies left with no or one child.

        Returns False when a VDI it would touch is busy (try again later).
        """
        sr_rec = self.db.get('SR', sr)
        if self.gc_paused or sr_rec['other_config'].get('coalesce') == 'false':
            return True
        att = self.attached.get(sr)
        if att is None or att.backend.fmt not in ('vhd', 'lvhd'):
            return True
        while base_uuid:
            base = self._vdi_by_uuid(base_uuid)
            if base is None:
                return True
            brec = self.db.get('VDI', base)
            if brec['managed'] or brec['SR'] != sr:
                return True
            kids = list(self.vhd_children.get(base_uuid, {}))
            grand = brec['sm_config'].get('vhd-parent', '')
            if len(kids) > 1:
                return True
            if base in self.busy or any(
                    self._vdi_by_uuid(k) in self.busy for k in kids):
                return False
            bmeta = self._meta_read(att, base_uuid)
            if len(kids) == 1:
                child = self._vdi_by_uuid(kids[0])
                if child is None:
                    return True
                crec = self.db.get('VDI', child)
                cmeta = self._meta_read(att, kids[0])
                blocks = storage.runs_union(bmeta.get('blocks', []),
                                            cmeta.get('blocks', []))
                smc = dict(crec['sm_config'])
                if grand:
                    smc['vhd-parent'] = grand
                else:
                    smc.pop('vhd-parent', None)
                lv = cmeta.get('lv')
                if att.backend.fmt == 'lvhd' and lv is not None and (
                        not crec['managed'] or
                        lv < storage.lvhd_inflated(crec['virtual_size'])):
                    lv = storage.lvhd_deflated(storage.runs_count(blocks))
                phys = self._phys(att.backend, crec['virtual_size'], blocks,
                                  lv)
                self._meta_write(att, kids[0], blocks=blocks, lv=lv,
                                 parent=grand)
                self._vdi_update(child, sm_config=smc,
                                 physical_utilisation=phys)
                self._vdi_meta_sync(child)
            self._remove_files(att, base_uuid)
            self._vdi_forget_record(base)
            if len(kids) == 1:
                return True
            base_uuid = grand
        return True

    @api('VDI.forget', 'self:ref:VDI')
    def vdi_forget(self, s: str, vdi: str) -> str:
        self.db.get('VDI', vdi)
        self._vdi_forget_record(vdi)
        return ''

    @api('VDI.snapshot', 'vdi:ref:VDI driver_params:map_ss', 1, locked=False)
    def vdi_snapshot(self, s: str, vdi: str,
                     driver_params: dict[str, str] | None = None) -> str:
        return self._snapshot(vdi, clone=False)

    @api('VDI.clone', 'vdi:ref:VDI driver_params:map_ss', 1, locked=False)
    def vdi_clone(self, s: str, vdi: str,
                  driver_params: dict[str, str] | None = None) -> str:
        return self._snapshot(vdi, clone=True)

    def _snapshot(self, vdi: str, clone: bool) -> str:
        op = 'clone' if clone else 'snapshot'
        with self.lock:
            rec = self.db.get('VDI', vdi)
            sr = rec['SR']
            att = self._att(sr)
            be = att.backend
            self._need(sr, be, 'VDI_CLONE' if clone else 'VDI_SNAPSHOT')
            if not rec['managed']:
                raise XapiError('VDI_NOT_MANAGED', vdi)
            self._not_cbt_metadata(vdi, rec)
            if not clone and rec['sharable']:
                raise XapiError('VDI_IS_SHARABLE', vdi)
            if rec['on_boot'] == 'reset':
                raise XapiError('VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION')
            self._claim([vdi], op)
            try:
                self._claim_sr(sr, 'vdi_' + op)
            except XapiError:
                self._release([vdi])
                raise
        try:
            with self.lock:
                rec = dict(self.db.get('VDI', vdi))
                att = self._att(sr)
                plan = self._snapshot_plan(vdi, rec, att, clone)
            src = self._data_path(rec, att)
            for dst in plan['copies']:
                sparse_copy(src, dst)
            with self.lock:
                if not self.db.exists('VDI', vdi) or sr not in self.attached:
                    for dst in plan['copies']:
                        self._unlink(dst)
                    raise XapiError('HANDLE_INVALID', 'VDI', vdi)
                return self._snapshot_commit(vdi, att, clone, plan)
        finally:
            with self.lock:
                self._release_sr(sr)
                self._release([vdi])

    @staticmethod
    def _unlink(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def _snapshot_plan(self, vdi: str, rec: dict[str, Any], att: Attachment,
                       clone: bool) -> dict[str, Any]:
        be = att.backend
        sr = rec['SR']
        vs = rec['virtual_size']
        plan: dict[str, Any] = {'snap_uuid': str(uuidlib.uuid4())}
        if be.fmt in ('vhd', 'lvhd'):
            if self._depth(rec) >= storage.MAX_CHAIN_SIZE:
                raise sm_error(109)
            if be.fmt == 'lvhd':
                self._lvhd_snapshot_space(rec, att, clone, plan)
            plan['base_uuid'] = str(uuidlib.uuid4())
            assert att.directory
            plan['copies'] = [
                os.path.join(att.directory, plan['base_uuid'] + '.raw'),
                os.path.join(att.directory, plan['snap_uuid'] + '.raw')]
        else:
            if be.type == 'equal' and not clone and rec['is_a_snapshot']:
                raise sm_error(168)
            meta = self._meta_read(att, rec['uuid'])
            thick = bool(meta.get('thick')) and clone and be.type != 'equal'
            if thick and vs > self._free(sr, att):
                raise sm_error(44)
            lun = self._array_new_lun(att, vs)
            plan['lun'] = lun
            plan['thick'] = thick
            plan['copies'] = [os.path.join(lun.path, 'lun.raw')]
        return plan

    def _lvhd_snapshot_space(self, rec: dict[str, Any], att: Attachment,
                             clone: bool, plan: dict[str, Any]) -> None:
        """Size the new LVs of an LVHD snapshot or clone; refuse (44) if
        the SR lacks the room.

        sm ``LVHDVDI._snapshot`` (thick SR, VDI detached): the leaf that
        keeps the VDI's identity is full size unless the VDI is itself a
        snapshot (cloning a snapshot leaves it thin); the new VDI is thin
        for a snapshot and full for a clone. The room needed is both
        plus two journal LVs, minus what deflating the old leaf into the
        base copy frees, so an unwritten thick VDI's snapshot costs tens
        of MiB, not a second full leaf.
        """
        vs = rec['virtual_size']
        meta = self._meta_read(att, rec['uuid'])
        full = storage.lvhd_inflated(vs)
        thin = storage.lvhd_thin()
        leaf_lv = thin if rec['is_a_snapshot'] else full
        snap_lv = full if clone else thin
        now_lv = meta.get('lv') or full
        base_lv = storage.lvhd_deflated(
            storage.runs_count(meta.get('blocks', [])))
        need = (leaf_lv + snap_lv + 2 * storage.LVHD_JOURNAL
                - (now_lv - base_lv))
        if need > self._free(rec['SR'], att):
            raise sm_error(44)
        plan['leaf_lv'] = leaf_lv
        plan['snap_lv'] = snap_lv

    def _empty_differencing(self, rec: dict[str, Any],
                            att: Attachment) -> bool:
        """A leaf with a VHD parent and no block of its own."""
        return bool(rec['sm_config'].get('vhd-parent')) and not \
            self._meta_read(att, rec['uuid']).get('blocks')

    def _snapshot_commit(self, vdi: str, att: Attachment, clone: bool,
                         plan: dict[str, Any]) -> str:
        be = att.backend
        rec = self.db.get('VDI', vdi)
        sr = rec['SR']
        vs = rec['virtual_size']
        meta = self._meta_read(att, rec['uuid'])
        common = {
            'SR': sr, 'virtual_size': vs, 'type': rec['type'],
            'name_label': rec['name_label'],
            'name_description': rec['name_description'],
            'sharable': rec['sharable'], 'read_only': False,
            'other_config': dict(rec['other_config']),
            'xenstore_data': dict(rec['xenstore_data']),
            'tags': list(rec['tags']), 'on_boot': rec['on_boot'],
            'allow_caching': rec['allow_caching'], 'managed': True,
            'cbt_enabled': rec['cbt_enabled'] and not clone,
            'allowed_operations': self._vdi_allowed_ops(be, True),
            'is_a_snapshot': not clone,
            'snapshot_of': NULL_REF if clone else vdi,
            'snapshot_time': epoch_stamp() if clone else now_stamp(),
        }
        snap_uuid = plan['snap_uuid']
        if be.fmt in ('vhd', 'lvhd') and self._empty_differencing(rec, att):
            # blktap vhd-util-snapshot.c vhd_util_find_snapshot_target (sm's
            # FileSR._snapshot and LVHDSR._finishSnapshot call it without
            # -e): a differencing leaf with no block written is skipped; the
            # new VHDs link to its parent and no base copy is made, so
            # unwritten snapshots share one base copy. Decided here, under
            # the lock, as the coalescer may have changed the chain.
            self._unlink(plan['copies'][0])
            leaf_lv = plan.get('leaf_lv')
            if leaf_lv is not None and leaf_lv != meta.get('lv'):
                self._meta_write(att, rec['uuid'], lv=leaf_lv)
                self._vdi_update(vdi, physical_utilisation=self._phys(
                    be, vs, [], leaf_lv))
            snap = self._vdi_create(dict(
                common, uuid=snap_uuid, location=snap_uuid,
                sm_config={'vdi_type': 'vhd', 'vhd-parent':
                           rec['sm_config']['vhd-parent']},
                physical_utilisation=self._phys(be, vs, [],
                                                plan.get('snap_lv'))))
            self._meta_write(att, snap_uuid, blocks=[],
                             lv=plan.get('snap_lv'))
        elif be.fmt in ('vhd', 'lvhd'):
            base_uuid = plan['base_uuid']
            old_parent = rec['sm_config'].get('vhd-parent', '')
            blocks = meta.get('blocks', [])
            base_lv = storage.lvhd_deflated(storage.runs_count(blocks))
            base_smc = {'vdi_type': 'vhd'}
            if old_parent:
                base_smc['vhd-parent'] = old_parent
            self._meta_write(att, base_uuid, blocks=blocks, lv=base_lv)
            base = self._vdi_create({
                'uuid': base_uuid, 'SR': sr, 'virtual_size': vs,
                'type': rec['type'], 'name_label': 'base copy',
                'read_only': True, 'managed': False, 'location': base_uuid,
                'sm_config': base_smc,
                'physical_utilisation': self._phys(be, vs, blocks, base_lv),
                'allowed_operations': self._vdi_allowed_ops(be, False)})
            self._vdi_meta_sync(base)
            leaf_lv = plan.get('leaf_lv', storage.lvhd_inflated(vs))
            self._meta_write(att, rec['uuid'], blocks=[], lv=leaf_lv)
            self._vdi_update(vdi, sm_config={**rec['sm_config'],
                                             'vhd-parent': base_uuid},
                             physical_utilisation=self._phys(be, vs, [],
                                                             leaf_lv))
            self._vdi_meta_sync(vdi)
            snap_lv = plan.get('snap_lv')
            self._meta_write(att, snap_uuid, blocks=[], lv=snap_lv)
            snap = self._vdi_create(dict(
                common, uuid=snap_uuid, location=snap_uuid,
                sm_config={'vdi_type': 'vhd', 'vhd-parent': base_uuid},
                physical_utilisation=self._phys(be, vs, [], snap_lv)))
        else:
            lun = plan['lun']
            thick = plan['thick']
            self._meta_write(att, snap_uuid, scsi_id=lun.scsi_id,
                             thick=thick, blocks=[])
            snap = self._vdi_create(dict(
                common, uuid=snap_uuid, location=snap_uuid,
                sm_config={'SCSIid': lun.scsi_id, 'LUNid': str(lun.lun_id),
                           'allocation': 'thick' if thick else 'thin'},
                physical_utilisation=self._phys(be, vs, [], thick=thick)))
        self._vdi_meta_sync(snap)
        if rec['cbt_enabled'] and not clone:
            # sm VDI._cbt_snapshot: the leaf's log becomes the snapshot's.
            self.cbt.snapshot(rec['uuid'], snap_uuid)
        return snap

    @api('VDI.copy', 'vdi:ref:VDI sr:ref:SR base_vdi:ref:VDI '
         'into_vdi:ref:VDI', 2, locked=False)
    def vdi_copy(self, s: str, vdi: str, sr: str, base_vdi: str = NULL_REF,
                 into_vdi: str = NULL_REF) -> str:
        with self.lock:
            src = self.db.get('VDI', vdi)
            self._att(src['SR'])
            self._not_cbt_metadata(vdi, src)
            if base_vdi != NULL_REF:
                self.db.get('VDI', base_vdi)
            # xen-api xapi_vdi.ml check_operation_error (run by
            # message_forwarding.ml before the copy): a copy may read a VDI
            # attached read-only, never one a VM holds read-write
            # (blocked_by_attach: VDI_IN_USE [vdi, "copy"]).
            if any(self.db.get('VBD', b)['currently_attached']
                   and self.db.get('VBD', b)['mode'] == 'RW'
                   for b in self.db.children('VBD', 'VDI', vdi)):
                raise XapiError('VDI_IN_USE', vdi, 'copy')
            if into_vdi != NULL_REF:
                dst = self.db.get('VDI', into_vdi)
                self._att(dst['SR'])
                if dst['read_only']:
                    raise XapiError('VDI_READONLY', into_vdi)
                if dst['virtual_size'] < src['virtual_size']:
                    raise XapiError('VDI_TOO_SMALL', into_vdi,
                                    src['virtual_size'])
                target = into_vdi
                created = False
            else:
                self.db.get('SR', sr)
                target = self.vdi_create(s, {
                    'SR': sr, 'virtual_size': src['virtual_size'],
                    'type': src['type'], 'sharable': src['sharable'],
                    'read_only': False,
                    'other_config': dict(src['other_config']),
                    'name_label': src['name_label'],
                    'name_description': src['name_description'],
                    'tags': list(src['tags']), 'sm_config': {}})
                created = True
            # The source is read, not locked (xen-api xapi_vdi.ml copy
            # attaches it read-only in dom0, sm_fs_ops.ml copy_vdi): other
            # readers run beside the copy, and destroying the source is
            # VDI_IN_USE at once. Only a running exclusive operation on it
            # (snapshot, resize...) is waited for. The destination is held.
            refs = [target]
            reader = ''
            try:
                if target != vdi:
                    self._claim([vdi], 'copy')
                    self._release([vdi])
                    dom0 = self.db.get('host', self._master())[
                        'control_domain']
                    reader = self.db.create('VBD', {
                        'VM': dom0, 'VDI': vdi, 'mode': 'RO',
                        'userdevice': self._free_userdevice(dom0),
                        'currently_attached': True, 'device': 'xvdy',
                        'other_config': {'copy_to': target}})
                self._claim(refs, 'copy')
            except XapiError:
                if reader:
                    self.db.destroy('VBD', reader)
                if created:
                    self._destroy_created(target)
                raise
        try:
            with self.lock:
                src = self.db.get('VDI', vdi)
                src_path = self._data_path(src, self._att(src['SR']))
                dst_rec = self.db.get('VDI', target)
                dst_att = self._att(dst_rec['SR'])
                dst_path = self._data_path(dst_rec, dst_att)
                vsize = src['virtual_size']
            written: list[tuple[int, int]] = []
            blocks = self._copy_data(src_path, dst_path, vsize, written)
            with self.lock:
                self._record_blocks(target, blocks, replace=created)
                self.cbt_mark(target, written)
            return target
        except Exception:
            if created:
                with self.lock:
                    self.busy.pop(target, None)
                    self._destroy_created(target)
            raise
        finally:
            with self.lock:
                if reader and self.db.exists('VBD', reader):
                    self.db.destroy('VBD', reader)
                self._release(refs)

    def _destroy_created(self, vdi: str) -> None:
        if not self.db.exists('VDI', vdi):
            return
        rec = self.db.get('VDI', vdi)
        att = self.attached.get(rec['SR'])
        if att is not None:
            self._destroy_storage(vdi, rec, att)
        else:
            self._vdi_forget_record(vdi)

    @staticmethod
    def _copy_data(src: str, dst: str, size: int,
                   written: list[tuple[int, int]] | None = None
                   ) -> list[list[int]]:
        """Copy ``size`` bytes sparsely; return the 2 MiB blocks written
        (and add the byte extents written to ``written``)."""
        blocks: list[list[int]] = []
        with open(src, 'rb') as fs, open(dst, 'r+b') as fd:
            sfd, dfd = fs.fileno(), fd.fileno()
            for off, length in data_extents(sfd, size):
                end = min(off + length, size)
                pos = off
                while pos < end:
                    chunk = os.pread(sfd, min(1 << 20, end - pos), pos)
                    if not chunk:
                        break
                    os.pwrite(dfd, chunk, pos)
                    pos += len(chunk)
                if end > off:
                    if written is not None:
                        written.append((off, end - off))
                    blocks = storage.runs_add(blocks, off // VHD_BLOCK,
                                              (end - 1) // VHD_BLOCK + 1)
        return blocks

    def _record_blocks(self, vdi: str, blocks: list[list[int]],
                       replace: bool = False) -> None:
        """Note that ``blocks`` of ``vdi`` were written; update its size."""
        if not self.db.exists('VDI', vdi):
            return
        rec = self.db.get('VDI', vdi)
        att = self.attached.get(rec['SR'])
        if att is None or att.backend.fmt == 'lun':
            return
        meta = self._meta_read(att, rec['uuid'])
        vs = rec['virtual_size']
        limit = storage.roundup(vs, VHD_BLOCK) // VHD_BLOCK
        new = storage.runs_clip(
            blocks if replace else storage.runs_union(meta.get('blocks', []),
                                                      blocks), limit)
        lv = meta.get('lv')
        if att.backend.fmt == 'lvhd' and lv is not None and \
                lv < storage.lvhd_inflated(vs):
            lv = max(lv, storage.lvhd_deflated(storage.runs_count(new)))
        self._meta_write(att, rec['uuid'], blocks=new, lv=lv)
        phys = self._phys(att.backend, vs, new, lv,
                          thick=bool(meta.get('thick')))
        if phys != rec['physical_utilisation']:
            self._vdi_update(vdi, physical_utilisation=phys)
            self._vdi_meta_sync(vdi)

    @api('VDI.resize', 'vdi:ref:VDI size:int')
    def vdi_resize(self, s: str, vdi: str, size: int) -> str:
        rec = self.db.get('VDI', vdi)
        sr = rec['SR']
        att = self._att(sr)
        be = att.backend
        self._need(sr, be, 'VDI_RESIZE')
        if self._in_use(vdi):
            raise XapiError('VDI_IN_USE', vdi, 'resize')
        if not rec['managed']:
            raise XapiError('VDI_NOT_MANAGED', vdi)
        self._not_cbt_metadata(vdi, rec)
        self._claim([vdi], 'resize')
        try:
            self._claim_sr(sr, 'vdi_resize')
        except XapiError:
            self._release([vdi])
            raise
        try:
            rec = self.db.get('VDI', vdi)
            new = self._round_size(sr, be, size)
            old = rec['virtual_size']
            if new < old:
                raise sm_error(79, 'shrinking not allowed')
            if new == old:
                return ''
            meta = self._meta_read(att, rec['uuid'])
            lv = meta.get('lv')
            if be.fmt == 'lvhd':
                if lv is not None and lv >= storage.lvhd_inflated(old):
                    delta = storage.lvhd_inflated(new) - lv
                    if delta > self._free(sr, att):
                        raise sm_error(44)
                    lv = storage.lvhd_inflated(new)
            elif be.fmt == 'array':
                if meta.get('thick') and new - old > self._free(sr, att):
                    raise sm_error(44)
                self.fabric.resize_lun(meta['scsi_id'], new)
            with open(self._data_path(rec, att), 'r+b') as f:
                f.truncate(new)
            blocks = meta.get('blocks', [])
            self._meta_write(att, rec['uuid'], lv=lv, vsize=new)
            self.cbt.resize(rec['uuid'], new)     # sm VDI.resize_cbt
            self._vdi_update(vdi, virtual_size=new,
                             physical_utilisation=self._phys(
                                 be, new, blocks, lv,
                                 thick=bool(meta.get('thick'))))
            self._vdi_meta_sync(vdi)
        finally:
            self._release_sr(sr)
            self._release([vdi])
        return ''

    @api('VDI.resize_online', 'vdi:ref:VDI size:int')
    def vdi_resize_online(self, s: str, vdi: str, size: int) -> str:
        rec = self.db.get('VDI', vdi)
        att = self._att(rec['SR'])
        self._need(rec['SR'], att.backend, 'VDI_RESIZE_ONLINE')
        raise AssertionError('no SR type has VDI_RESIZE_ONLINE')

    @api('VDI.set_name_label', 'self:ref:VDI value:str')
    def vdi_set_name_label(self, s: str, vdi: str, value: str) -> str:
        rec = self.db.get('VDI', vdi)
        self._att(rec['SR'])
        self._vdi_update(vdi, name_label=value)
        self._vdi_meta_sync(vdi)
        return ''

    @api('VDI.set_name_description', 'self:ref:VDI value:str')
    def vdi_set_name_description(self, s: str, vdi: str, value: str) -> str:
        rec = self.db.get('VDI', vdi)
        self._att(rec['SR'])
        self._vdi_update(vdi, name_description=value)
        self._vdi_meta_sync(vdi)
        return ''

    @api('VDI.set_on_boot', 'self:ref:VDI value:str')
    def vdi_set_on_boot(self, s: str, vdi: str, value: str) -> str:
        rec = self.db.get('VDI', vdi)
        att = self._att(rec['SR'])
        self._need(rec['SR'], att.backend, 'VDI_RESET_ON_BOOT')
        if value not in ('persist', 'reset'):
            raise XapiError('FIELD_TYPE_ERROR', 'value')
        self._vdi_update(vdi, on_boot=value)
        return ''

    @api('VDI.enable_cbt', 'self:ref:VDI')
    def vdi_enable_cbt(self, s: str, vdi: str) -> str:
        return self._set_cbt(vdi, True)

    @api('VDI.disable_cbt', 'self:ref:VDI')
    def vdi_disable_cbt(self, s: str, vdi: str) -> str:
        return self._set_cbt(vdi, False)

    def _set_cbt(self, vdi: str, enabled: bool) -> str:
        # xen-api xapi_vdi.ml check_operation_error (`enable_cbt |
        # `disable_cbt) and change_cbt_status: refused on snapshots and on
        # types other than user/system (cbt_metadata included) and with
        # on_boot=reset; a no-op when already so. sm VDI._enable_cbt /
        # _disable_cbt make or delete the log (sim/cbt.py).
        rec = self.db.get('VDI', vdi)
        att = self._att(rec['SR'])
        self._need(rec['SR'], att.backend, 'VDI_CONFIG_CBT')
        if rec['is_a_snapshot']:
            raise XapiError('OPERATION_NOT_ALLOWED',
                            'VDI is a snapshot: %s' % vdi)
        if rec['type'] not in ('user', 'system'):
            raise XapiError('VDI_INCOMPATIBLE_TYPE', vdi, rec['type'])
        if rec['on_boot'] == 'reset':
            raise XapiError('VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION')
        if rec['cbt_enabled'] != enabled:
            if enabled:
                self.cbt.enable(rec['uuid'], rec['virtual_size'])
            else:
                self.cbt.disable(rec['uuid'])
            self._vdi_update(vdi, cbt_enabled=enabled)
        return ''

    def _not_cbt_metadata(self, vdi: str, rec: dict[str, Any]) -> None:
        """xen-api xapi_vdi.ml check_operation_error
        (allowed_for_cbt_metadata_vdi): a VDI whose data was destroyed
        refuses clone, copy, snapshot, resize, CBT changes and reads."""
        if rec['type'] == 'cbt_metadata':
            raise XapiError('VDI_INCOMPATIBLE_TYPE', vdi, 'cbt_metadata')

    def cbt_mark(self, vdi: str, extents: list[tuple[int, int]]) -> None:
        """Note writes to ``vdi`` in its CBT log (tapdisk sets the bit of
        every 64 KiB block a write touches). Caller holds the lock."""
        rec = self.db.tables['VDI'].get(vdi)
        if rec is None or not rec['cbt_enabled']:
            return
        for off, length in extents:
            self.cbt.mark(rec['uuid'], off, length)

    @api('VDI.list_changed_blocks', 'vdi_from:ref:VDI vdi_to:ref:VDI')
    def vdi_list_changed_blocks(self, s: str, vdi_from: str,
                                vdi_to: str) -> str:
        """xen-api xapi_vdi.ml list_changed_blocks -> sm
        VDI.list_changed_blocks: base64 of the merged bitmap (sim/cbt.py);
        SR_BACKEND_FAILURE_460 for unrelated VDIs. Allowed on
        cbt_metadata VDIs and on VDIs attached (to snapshot VMs)."""
        src = self.db.get('VDI', vdi_from)
        dst = self.db.get('VDI', vdi_to)
        att = self._att(dst['SR'])
        self._need(dst['SR'], att.backend, 'VDI_CONFIG_CBT')
        return self.cbt.changed(src['uuid'], dst['uuid'])

    @api('VDI.data_destroy', 'self:ref:VDI')
    def vdi_data_destroy(self, s: str, vdi: str) -> str:
        """xen-api xapi_vdi.ml _data_destroy / check_operation_error
        (`data_destroy): only a snapshot with cbt_enabled
        (OPERATION_NOT_ALLOWED, VDI_NO_CBT_METADATA), not attached
        (VDI_IN_USE [vdi, "data_destroy"] once its VBDs did not go within
        4 s); the type becomes cbt_metadata and stays
        so. sm VDI.data_destroy -> delete(data_only=True): the data goes,
        the CBT log and its links stay; the record stays. Idempotent on a
        cbt_metadata VDI."""
        rec = self.db.get('VDI', vdi)
        if rec['type'] == 'cbt_metadata':
            return ''
        sr = rec['SR']
        att = self._att(sr)
        self._need(sr, att.backend, 'VDI_CONFIG_CBT')
        if not rec['is_a_snapshot']:
            raise XapiError('OPERATION_NOT_ALLOWED',
                            'VDI is not a snapshot: %s' % vdi)
        if not rec['cbt_enabled']:
            raise XapiError('VDI_NO_CBT_METADATA', vdi)
        # xapi_vdi.ml destroy_and_data_destroy_common: first wait (4 s,
        # data_destroy's timeout) for the VDI's VBDs to be unplugged and
        # destroyed, then refuse if one is still attached.
        deadline = time.monotonic() + DATA_DESTROY_VBD_WAIT
        while self._in_use(vdi) and time.monotonic() < deadline:
            self.cond.wait(max(0.0, deadline - time.monotonic()))
        if self._in_use(vdi):
            raise XapiError('VDI_IN_USE', vdi, 'data_destroy')
        self._claim([vdi], 'data_destroy')
        try:
            self._claim_sr(sr, 'vdi_destroy')
            try:
                path = self._data_path(rec, att)
                self._unlink(path)
                self._meta_write(att, rec['uuid'], blocks=[], lv=0)
                smc = {k: v for k, v in rec['sm_config'].items()
                       if k != 'vhd-parent'}
                self._vdi_update(vdi, type='cbt_metadata', sm_config=smc,
                                 physical_utilisation=0)
                self._vdi_meta_sync(vdi)
                # The base copy it shared may now coalesce (sm _kickGC).
                self._kick_gc(sr)
            finally:
                self._release_sr(sr)
        finally:
            self._release([vdi])
        return ''

    @api('VDI.get_nbd_info', 'self:ref:VDI')
    def vdi_get_nbd_info(self, s: str, vdi: str) -> list[dict[str, Any]]:
        """xen-api xapi_vdi.ml _get_nbd_info: one record per NBD address of
        each host that sees the SR; exportname ``/<uuid>?session_id=<ref>``
        of the calling session. The simulator has one NBD server for the
        pool, on loopback, plain (an ``insecure_nbd`` network: no cert);
        none running answers [] as a pool without an NBD network does."""
        rec = self.db.get('VDI', vdi)
        self._not_cbt_metadata(vdi, rec)
        self._att(rec['SR'])
        if self.nbd_address is None:
            return []
        host, port = self.nbd_address
        return [{'exportname': '/%s?session_id=%s' % (rec['uuid'], s),
                 'address': host, 'port': port, 'cert': '', 'subject': ''}]

    @api('VDI.update', 'vdi:ref:VDI')
    def vdi_update(self, s: str, vdi: str) -> str:
        rec = self.db.get('VDI', vdi)
        att = self._att(rec['SR'])
        self._record_blocks(vdi, [])
        del att
        return ''

    @api('VDI.introduce', 'uuid:str name_label:str name_description:str '
         'SR:ref:SR type:str sharable:bool read_only:bool other_config:map_ss '
         'location:str xenstore_data:map_ss sm_config:map_ss managed:bool '
         'virtual_size:int physical_utilisation:int metadata_of_pool:str '
         'is_a_snapshot:bool snapshot_time:any snapshot_of:ref:VDI')
    def vdi_introduce(self, s: str, uuid: str, name_label: str,
                      name_description: str, sr: str, vtype: str,
                      sharable: bool, read_only: bool,
                      other_config: dict[str, str], location: str,
                      xenstore_data: dict[str, str],
                      sm_config: dict[str, str], managed: bool,
                      virtual_size: int, physical_utilisation: int,
                      metadata_of_pool: str, is_a_snapshot: bool,
                      snapshot_time: Any, snapshot_of: str) -> str:
        self.db.get('SR', sr)
        att = self._att(sr)
        be = att.backend
        self._need(sr, be, 'VDI_INTRODUCE')
        if uuid:
            try:
                uuidlib.UUID(uuid)
            except ValueError:
                raise XapiError('UUID_INVALID', 'VDI', uuid) from None
            if uuid in self.db.by_uuid['VDI']:
                raise XapiError('UUID_INVALID', 'VDI', uuid)
        for vdi in self.db.children('VDI', 'SR', sr):
            if self.db.get('VDI', vdi)['location'] == location:
                raise XapiError('LOCATION_NOT_UNIQUE', sr, location)
        luns = {lun.scsi_id: lun for lun in att.place.luns}
        lun = luns.get(location)
        if lun is None:
            raise sm_error(46, 'no LUN with SCSIid %s' % location)
        if not isinstance(snapshot_time, xmlrpc.client.DateTime):
            snapshot_time = epoch_stamp()
        return self._vdi_create({
            'uuid': uuid or storage.lun_vdi_uuid(location),
            'name_label': name_label, 'name_description': name_description,
            'SR': sr, 'type': vtype, 'sharable': sharable,
            'read_only': read_only, 'other_config': other_config,
            'location': location, 'xenstore_data': xenstore_data,
            'sm_config': {**self._lun_smc(lun), **sm_config},
            'managed': managed, 'virtual_size': lun.size_bytes,
            'physical_utilisation': lun.size_bytes,
            'is_a_snapshot': is_a_snapshot, 'snapshot_time': snapshot_time,
            'snapshot_of': snapshot_of,
            'allowed_operations': self._vdi_allowed_ops(be, managed)})

    @staticmethod
    def _lun_smc(lun: Any) -> dict[str, str]:
        return {'LUNid': str(lun.lun_id), 'SCSIid': lun.scsi_id,
                'backend-kind': 'vbd'}

    # -- scan -------------------------------------------------------------------
    def _scan(self, sr: str, att: Attachment) -> None:
        be = att.backend
        if be.fmt == 'lun':
            self._scan_luns(sr, att)
            return
        assert att.directory
        on_disk: dict[str, dict[str, Any]] = {}
        for name in os.listdir(att.directory):
            if name.endswith('.json') and name != 'sr.json':
                uuid = name[:-5]
                meta = self._meta_read(att, uuid)
                if meta:
                    on_disk[uuid] = meta
        known = {self.db.get('VDI', v)['uuid']: v
                 for v in self.db.children('VDI', 'SR', sr)}
        for uuid, vdi in known.items():
            if uuid not in on_disk and vdi not in self.busy:
                self._vdi_forget_record(vdi)
        keep_names = 'SR_METADATA' in be.sm.features() or be.fmt == 'array'
        for uuid, meta in on_disk.items():
            smc = {'vdi_type': 'vhd'} if be.fmt != 'array' else {
                'SCSIid': meta.get('scsi_id', ''),
                'allocation': 'thick' if meta.get('thick') else 'thin'}
            if meta.get('parent'):
                smc['vhd-parent'] = meta['parent']
            vs = int(meta.get('vsize', 0))
            phys = self._phys(be, vs, meta.get('blocks', []), meta.get('lv'),
                              thick=bool(meta.get('thick')))
            managed = not meta.get('hidden', False)
            if uuid in known:
                vdi = known[uuid]
                rec = self.db.get('VDI', vdi)
                changes: dict[str, Any] = {k: v for k, v in (
                    ('virtual_size', vs), ('physical_utilisation', phys),
                    ('managed', managed)) if rec[k] != v}
                new_smc = dict(rec['sm_config'])
                new_smc.pop('vhd-parent', None)
                new_smc.update(smc)
                if new_smc != rec['sm_config']:
                    changes['sm_config'] = new_smc
                if changes:
                    self._vdi_update(vdi, **changes)
                continue
            if uuid in self.db.by_uuid['VDI']:
                LOG.warning('scan of %s: VDI %s already known in another SR',
                            sr, uuid)
                continue
            fields: dict[str, Any] = {
                'uuid': uuid, 'SR': sr, 'virtual_size': vs,
                'physical_utilisation': phys, 'managed': managed,
                'location': uuid, 'sm_config': smc,
                'read_only': bool(meta.get('read_only', not managed)),
                'allowed_operations': self._vdi_allowed_ops(be, managed)}
            if not managed:
                fields['name_label'] = 'base copy'
            elif keep_names:
                fields.update({
                    'name_label': meta.get('name_label', ''),
                    'name_description': meta.get('name_description', ''),
                    'type': meta.get('type', 'user'),
                    'sharable': bool(meta.get('sharable', False)),
                    'is_a_snapshot': bool(meta.get('is_a_snapshot', False))})
                if meta.get('snapshot_time'):
                    fields['snapshot_time'] = xmlrpc.client.DateTime(
                        meta['snapshot_time'])
                if meta.get('snapshot_of'):
                    ref = self._vdi_by_uuid(meta['snapshot_of'])
                    if ref:
                        fields['snapshot_of'] = ref
            self._vdi_create(fields)
        self._recompute_space(sr)
        self._refresh_sr(sr)

    def _scan_luns(self, sr: str, att: Attachment) -> None:
        pbd = self._plugged_pbds(sr)[0]
        prec = self.db.get('PBD', pbd)
        try:
            att.place = att.backend.locate(self.ctx, prec['device_config'],
                                           self.db.get('host', prec['host']))
        except XapiError:
            raise
        luns = {lun.scsi_id: lun for lun in att.place.luns}
        known = {self.db.get('VDI', v)['location']: v
                 for v in self.db.children('VDI', 'SR', sr)}
        for loc, vdi in known.items():
            if loc not in luns and vdi not in self.busy:
                self._vdi_forget_record(vdi)
        for scsi_id, lun in luns.items():
            if scsi_id in known:
                vdi = known[scsi_id]
                if self.db.get('VDI', vdi)['virtual_size'] != lun.size_bytes:
                    self._vdi_update(vdi, virtual_size=lun.size_bytes,
                                     physical_utilisation=lun.size_bytes)
                continue
            uuid = storage.lun_vdi_uuid(scsi_id)
            if uuid in self.db.by_uuid['VDI']:
                continue
            self._vdi_create({
                'uuid': uuid, 'SR': sr, 'virtual_size': lun.size_bytes,
                'physical_utilisation': lun.size_bytes, 'managed': False,
                'location': scsi_id, 'sm_config': self._lun_smc(lun),
                'allowed_operations': self._vdi_allowed_ops(att.backend,
                                                            False)})
        self._recompute_space(sr)
        self._refresh_sr(sr)

    # ==================================================================
    # Storage motion
    # ==================================================================
    @api('VDI.pool_migrate', 'vdi:ref:VDI sr:ref:SR options:map_ss',
         locked=False)
    def vdi_pool_migrate(self, s: str, vdi: str, sr: str,
                         options: dict[str, str]) -> str:
        """Move a VDI held by a VM to another SR of the pool; the new VDI.

        Refusals, in XAPI's order:
        - no VBD: VDI_NEEDS_VM_FOR_MIGRATE (xen-api message_forwarding.ml
          VDI.pool_migrate, before anything else);
        - a cbt_metadata VDI: VDI_INCOMPATIBLE_TYPE; changed-block tracking
          on: VDI_CBT_ENABLED (xapi_vm_migrate.ml vdi_pool_migrate);
        - either SR's SM lacking VDI_SNAPSHOT or VDI_MIRROR:
          SR_DOES_NOT_SUPPORT_MIGRATION [sr, missing] (xapi_vm_migrate.ml
          assert_can_migrate / assert_sr_support_operations; smint.ml lets
          VDI_MIRROR stand for VDI_MIRROR_IN).
        The destination SR equal to the source's moves nothing: it is left
        out of the mirror set (xapi_vm_migrate.ml is_sr_matching).

        The move (xapi_vm_migrate.ml migrate_send, intra-pool): SXM mirrors
        the VDI into a new VDI on the destination SR, made by SMAPI
        VDI.create from the source's vdi_info (storage_smapiv1_migrate.ml:
        name, description, type, sharable, virtual size -- no
        other_config), repoints the VM's VBD at it (intra_pool_vdi_remap,
        which copies only Xapi_globs.vdi_other_config_sync_keys,
        ``config-drive``) and destroys the source (post_mirror); a failure
        destroys the new VDI and leaves the source as it was. So the
        answer is a new ref, with a new uuid and none of the source's tags.

        Not modelled: the VM itself. The simulator's only VMs are control
        domains, so a dom0 VBD stands for a guest's (real XAPI refuses
        migrate_send on a control domain); the guest's writes during the
        mirror; the VM operation lock (migrate_send) and the licence check
        (assert_licensed_storage_motion).
        """
        with self.lock:
            src = self.db.get('VDI', vdi)
            self.db.get('SR', sr)
            vbds = self.db.children('VBD', 'VDI', vdi)
            if not vbds:
                raise XapiError('VDI_NEEDS_VM_FOR_MIGRATE', vdi)
            if src['type'] == 'cbt_metadata':
                raise XapiError('VDI_INCOMPATIBLE_TYPE', vdi, 'cbt_metadata')
            if src['cbt_enabled']:
                raise XapiError('VDI_CBT_ENABLED', vdi)
            if sr == src['SR']:
                return vdi
            for one in (src['SR'], sr):
                be = self._att(one).backend
                missing = [c for c in ('VDI_SNAPSHOT', 'VDI_MIRROR')
                           if c not in be.sm.capabilities]
                if missing:
                    raise XapiError('SR_DOES_NOT_SUPPORT_MIGRATION', one,
                                    ';'.join(missing))
            keep = {k: v for k, v in src['other_config'].items()
                    if k == 'config-drive'}
            target = self.vdi_create(s, {
                'SR': sr, 'virtual_size': src['virtual_size'],
                'type': src['type'], 'sharable': src['sharable'],
                'read_only': False, 'other_config': keep,
                'name_label': src['name_label'],
                'name_description': src['name_description'],
                'sm_config': {}})
            try:
                self._claim([vdi], 'mirror')
            except XapiError:
                self._destroy_created(target)
                raise
            self._claim([target], 'mirror')
        moved = False
        try:
            with self.lock:
                src = self.db.get('VDI', vdi)
                src_path = self._data_path(src, self._att(src['SR']))
                dst_rec = self.db.get('VDI', target)
                dst_path = self._data_path(dst_rec, self._att(sr))
                vsize = src['virtual_size']
            blocks = self._copy_data(src_path, dst_path, vsize)
            with self.lock:
                self._record_blocks(target, blocks, replace=True)
                for vbd in self.db.children('VBD', 'VDI', vdi):
                    self.db.update('VBD', vbd, VDI=target)
                moved = True
                self.busy.pop(vdi, None)
                rec = self.db.get('VDI', vdi)
                self._destroy_storage(vdi, rec, self._att(rec['SR']))
            return target
        except Exception:
            if not moved:
                with self.lock:
                    self.busy.pop(target, None)
                    self._destroy_created(target)
            raise
        finally:
            with self.lock:
                self._release([r for r in (vdi, target)
                               if self.db.exists('VDI', r)])

    # ==================================================================
    # VBD
    # ==================================================================
    @api('VBD.create', 'args:record')
    def vbd_create(self, s: str, rec: dict[str, Any]) -> str:
        for key in ('VM', 'VDI', 'userdevice', 'bootable', 'mode', 'type',
                    'empty', 'other_config', 'qos_algorithm_type',
                    'qos_algorithm_params'):
            if key not in rec:
                raise XapiError('INTERNAL_ERROR', 'Field %s missing' % key)
        vm = str(rec['VM'])
        self.db.get('VM', vm)
        vdi = str(rec['VDI'])
        empty = self._decode_one('empty', 'bool', rec['empty'])
        if not empty or vdi != NULL_REF:
            self.db.get('VDI', vdi)
        mode = str(rec['mode'])
        if mode not in ('RO', 'RW'):
            raise XapiError('FIELD_TYPE_ERROR', 'mode')
        vtype = str(rec['type'])
        if vtype not in ('Disk', 'CD', 'Floppy'):
            raise XapiError('FIELD_TYPE_ERROR', 'type')
        used = {self.db.get('VBD', b)['userdevice']
                for b in self.db.children('VBD', 'VM', vm)}
        dev = str(rec['userdevice'])
        if dev == 'autodetect':
            dev = self._free_userdevice(vm)
        elif dev in used:
            raise XapiError('DEVICE_ALREADY_EXISTS', dev)
        return self.db.create('VBD', {
            'VM': vm, 'VDI': vdi, 'userdevice': dev,
            'bootable': self._decode_one('bootable', 'bool', rec['bootable']),
            'mode': mode, 'type': vtype, 'empty': empty,
            'unpluggable': bool(rec.get('unpluggable', True)),
            'other_config': {str(k): str(v) for k, v in
                             rec['other_config'].items()},
            'qos_algorithm_type': str(rec['qos_algorithm_type']),
            'qos_algorithm_params': dict(rec['qos_algorithm_params']),
            'allowed_operations': ['attach', 'plug', 'unpause', 'pause']})

    def _free_userdevice(self, vm: str) -> str:
        used = {self.db.get('VBD', b)['userdevice']
                for b in self.db.children('VBD', 'VM', vm)}
        n = 0
        while str(n) in used:
            n += 1
        return str(n)

    @api('VBD.plug', 'self:ref:VBD')
    def vbd_plug(self, s: str, vbd: str) -> str:
        rec = self.db.get('VBD', vbd)
        vm = self.db.get('VM', rec['VM'])
        if vm['power_state'] != 'Running':
            raise XapiError('VM_BAD_POWER_STATE', rec['VM'], 'running',
                            vm['power_state'].lower())
        if rec['currently_attached']:
            raise XapiError('DEVICE_ALREADY_ATTACHED', vbd)
        if not rec['empty']:
            vdi = rec['VDI']
            vrec = self.db.get('VDI', vdi)
            sr = vrec['SR']
            plugged_here = [p for p in self._plugged_pbds(sr)
                            if self.db.get('PBD', p)['host']
                            == vm['resident_on']]
            if not plugged_here:
                raise XapiError('SR_NO_PBDS', sr)
            att = self._att(sr)
            if att.backend.fmt == 'lvhd' and rec['mode'] == 'RW':
                meta = self._meta_read(att, vrec['uuid'])
                full = storage.lvhd_inflated(vrec['virtual_size'])
                lv = meta.get('lv')
                if lv is not None and lv < full:
                    if full - lv > self._free(sr, att):
                        raise sm_error(44)
                    self._meta_write(att, vrec['uuid'], lv=full)
                    self._vdi_update(vdi, physical_utilisation=full)
        n = len([b for b in self.db.children('VBD', 'VM', rec['VM'])
                 if self.db.get('VBD', b)['currently_attached']])
        self.db.update('VBD', vbd, currently_attached=True,
                       device='xvd' + chr(ord('a') + n % 26),
                       allowed_operations=['unplug', 'unplug_force'])
        return ''

    @api('VBD.unplug', 'self:ref:VBD')
    def vbd_unplug(self, s: str, vbd: str) -> str:
        rec = self.db.get('VBD', vbd)
        if not rec['currently_attached']:
            raise XapiError('DEVICE_ALREADY_DETACHED', vbd)
        self.db.update('VBD', vbd, currently_attached=False, device='',
                       allowed_operations=['attach', 'plug'])
        return ''

    @api('VBD.unplug_force', 'self:ref:VBD')
    def vbd_unplug_force(self, s: str, vbd: str) -> str:
        return self.vbd_unplug(s, vbd)

    @api('VBD.destroy', 'self:ref:VBD')
    def vbd_destroy(self, s: str, vbd: str) -> str:
        rec = self.db.get('VBD', vbd)
        if rec['currently_attached']:
            raise XapiError('OPERATION_NOT_ALLOWED',
                            'VBD currently attached to an active VM')
        self.db.destroy('VBD', vbd)
        return ''

    # ==================================================================
    # VM: guests with power states, pause, snapshot and revert
    # ==================================================================
    # Which power state each operation needs is xen-api
    # xapi_vm_lifecycle.ml allowed_power_states; a call in another state
    # fails (report_power_state_error) with
    # VM_BAD_POWER_STATE [vm; expected states, lowercase, ", "-joined;
    # actual state, lowercase].
    _VM_STATES = {
        'start': ('Halted',), 'unpause': ('Paused',),
        'pause': ('Running',), 'clean_shutdown': ('Running',),
        'hard_shutdown': ('Paused', 'Suspended', 'Running'),
        'destroy': ('Halted', 'Suspended'),
    }

    def _vm_check(self, vm: str, op: str) -> dict[str, Any]:
        rec = self.db.get('VM', vm)
        if rec['is_control_domain'] and op != 'snapshot':
            # xapi_vm_lifecycle.ml check_operation_error: the control
            # domain refuses lifecycle operations (OPERATION_NOT_ALLOWED).
            raise XapiError('OPERATION_NOT_ALLOWED',
                            'This operation is not allowed on the control '
                            'domain')
        if rec['is_a_snapshot'] and op != 'revert':
            # check_snapshot: a snapshot allows only revert, clone, copy,
            # export, destroy... (VM_IS_SNAPSHOT [vm; op]).
            if op not in ('destroy',):
                raise XapiError('VM_IS_SNAPSHOT', vm, op)
        allowed = self._VM_STATES.get(op)
        if allowed and rec['power_state'] not in allowed:
            raise XapiError('VM_BAD_POWER_STATE', vm,
                            ', '.join(s.lower() for s in allowed),
                            rec['power_state'].lower())
        return rec

    @api('VM.create', 'args:record')
    def vm_create(self, s: str, rec: dict[str, Any]) -> str:
        # Real VM.create needs every field the datamodel marks required
        # (memory, VCPUs, boot settings, ...); the simulator takes any
        # subset and defaults the rest, as its guests run nothing.
        fields: dict[str, Any] = {'power_state': 'Halted'}
        for key in ('name_label', 'name_description'):
            if key in rec:
                fields[key] = str(rec[key])
        if 'other_config' in rec:
            fields['other_config'] = {str(k): str(v) for k, v in
                                      rec['other_config'].items()}
        fields['allowed_operations'] = ['start', 'snapshot', 'destroy']
        return self.db.create('VM', fields)

    @api('VM.start', 'vm:ref:VM start_paused:bool force:bool')
    def vm_start(self, s: str, vm: str, start_paused: bool,
                 force: bool) -> str:
        self._vm_check(vm, 'start')
        # xenops starts the domain with its disks: every VBD is plugged
        # (xapi_xenops.ml start; VBD.currently_attached follows xenopsd).
        vbds = self.db.children('VBD', 'VM', vm)
        for vbd in vbds:
            vrec = self.db.get('VBD', vbd)
            if not vrec['empty']:
                self.db.get('VDI', vrec['VDI'])
                sr = self.db.get('VDI', vrec['VDI'])['SR']
                if not self._plugged_pbds(sr):
                    raise XapiError('SR_NO_PBDS', sr)
        self.db.update('VM', vm, resident_on=self._master(),
                       power_state='Paused' if start_paused else 'Running',
                       domid=len(self.db.tables['VM']))
        for n, vbd in enumerate(sorted(vbds, key=lambda b: self.db.get(
                'VBD', b)['userdevice'])):
            self.db.update('VBD', vbd, currently_attached=True,
                           device='xvd' + chr(ord('a') + n % 26),
                           allowed_operations=['unplug', 'unplug_force'])
        return ''

    @api('VM.pause', 'vm:ref:VM')
    def vm_pause(self, s: str, vm: str) -> str:
        # xapi_vm.ml pause -> Xapi_xenops.pause: the domain stops running;
        # its disks stay attached and take no more I/O (guest_write waits).
        self._vm_check(vm, 'pause')
        self.db.update('VM', vm, power_state='Paused')
        return ''

    @api('VM.unpause', 'vm:ref:VM')
    def vm_unpause(self, s: str, vm: str) -> str:
        self._vm_check(vm, 'unpause')
        self.db.update('VM', vm, power_state='Running')
        return ''

    @api('VM.clean_shutdown', 'vm:ref:VM')
    def vm_clean_shutdown(self, s: str, vm: str) -> str:
        self._vm_check(vm, 'clean_shutdown')
        self._vm_halt(vm)
        return ''

    @api('VM.hard_shutdown', 'vm:ref:VM')
    def vm_hard_shutdown(self, s: str, vm: str) -> str:
        self._vm_check(vm, 'hard_shutdown')
        self._vm_halt(vm)
        return ''

    def _vm_halt(self, vm: str) -> None:
        for vbd in self.db.children('VBD', 'VM', vm):
            self.db.update('VBD', vbd, currently_attached=False, device='',
                           allowed_operations=['attach', 'plug'])
        self.db.update('VM', vm, power_state='Halted', domid=-1,
                       resident_on=NULL_REF)

    @api('VM.destroy', 'self:ref:VM')
    def vm_destroy(self, s: str, vm: str) -> str:
        # xapi_vm.ml destroy: the VM's VBDs go, its VDIs stay.
        self._vm_check(vm, 'destroy')
        for vbd in self.db.children('VBD', 'VM', vm):
            self.db.destroy('VBD', vbd)
        self.db.destroy('VM', vm)
        return ''

    def _vm_disks(self, vm: str) -> list[tuple[str, dict[str, Any]]]:
        """The VM's disk VBDs (not CDs, not empty), by userdevice."""
        out = []
        for vbd in self.db.children('VBD', 'VM', vm):
            rec = self.db.get('VBD', vbd)
            if rec['type'] == 'Disk' and not rec['empty'] and \
                    self.db.exists('VDI', rec['VDI']):
                out.append((vbd, rec))
        return sorted(out, key=lambda item: item[1]['userdevice'])

    @api('VM.snapshot', 'vm:ref:VM new_name:str ignore_vdis:set', 1,
         locked=False)
    def vm_snapshot(self, s: str, vm: str, new_name: str,
                    ignore_vdis: list[str] | None = None) -> str:
        """xen-api xapi_vm_snapshot.ml snapshot -> xapi_vm_clone.ml clone
        Disk_op_snapshot: safe_clone_disks snapshots the disks one after
        the other (Async.VDI.snapshot each; on a failure the ones made are
        destroyed), without pausing the domain -- each disk is only
        tap-paused for its own snapshot -- then copy_vm_record makes a
        Halted VM record with is_a_snapshot, snapshot_of, snapshot_time and
        VBDs on the snapshot VDIs."""
        with self.lock:
            rec = self._vm_check(vm, 'snapshot')
            disks = [(vbd, v) for vbd, v in self._vm_disks(vm)
                     if v['VDI'] not in (ignore_vdis or [])]
            power_state = rec['power_state']
        made: list[tuple[dict[str, Any], str]] = []
        try:
            for _vbd, vrec in disks:
                made.append((vrec, self._snapshot(vrec['VDI'], clone=False)))
        except XapiError:
            with self.lock:
                for _vrec, snap in made:
                    self._destroy_created(snap)
            raise
        with self.lock:
            if not self.db.exists('VM', vm):
                for _vrec, snap in made:
                    self._destroy_created(snap)
                raise XapiError('HANDLE_INVALID', 'VM', vm)
            rec = self.db.get('VM', vm)
            snap_vm = self.db.create('VM', {
                'name_label': new_name,
                'name_description': rec['name_description'],
                'other_config': dict(rec['other_config']),
                'power_state': 'Halted', 'is_a_snapshot': True,
                'is_a_template': True, 'snapshot_of': vm,
                'snapshot_time': now_stamp(),
                'snapshot_info': {'power-state-at-snapshot': power_state,
                                  'disk-snapshot-type': 'crash_consistent'},
                'allowed_operations': ['revert', 'destroy']})
            for vrec, snap in made:
                self.db.create('VBD', {
                    'VM': snap_vm, 'VDI': snap,
                    'userdevice': vrec['userdevice'],
                    'bootable': vrec['bootable'], 'mode': vrec['mode'],
                    'type': 'Disk', 'empty': False,
                    'other_config': dict(vrec['other_config']),
                    'allowed_operations': ['attach']})
            return snap_vm

    @api('VM.revert', 'snapshot:ref:VM', locked=False)
    def vm_revert(self, s: str, snapshot: str) -> str:
        """xen-api xapi_vm_snapshot.ml revert: revert_vbds clones each of
        the snapshot's disks (VDI.revert where the SM offers it, else
        clone_single_vdi Disk_op_clone), destroys the VM's VBDs and the
        disks the snapshot's disks are snapshots of (safe_destroy_vdi), and
        gives the VM VBDs on the clones, which get new uuids; then
        force_state_reset sets the VM to the snapshot's power state
        (Halted). The VM's VDIs must be detached: VDI.destroy of an
        attached VDI fails VDI_IN_USE; a failure resets the VM to Halted
        and raises VM_REVERT_FAILED [snapshot; vm] (SR_BACKEND_FAILURE_44
        and _109 pass through)."""
        with self.lock:
            srec = self.db.get('VM', snapshot)
            if not srec['is_a_snapshot']:
                raise XapiError('ONLY_REVERT_SNAPSHOT')
            vm = srec['snapshot_of']
            self.db.get('VM', vm)
            snap_disks = self._vm_disks(snapshot)
            targets = {self.db.get('VDI', v['VDI'])['snapshot_of']
                       for _b, v in snap_disks}
        clones: list[tuple[dict[str, Any], str]] = []
        try:
            for _vbd, vrec in snap_disks:
                clones.append((vrec, self._snapshot(vrec['VDI'], clone=True)))
            with self.lock:
                for _vbd, vrec in self._vm_disks(vm):
                    if vrec['currently_attached']:
                        raise XapiError('VDI_IN_USE', vrec['VDI'], 'destroy')
                for vbd, vrec in self._vm_disks(vm):
                    self.db.destroy('VBD', vbd)
                    if vrec['VDI'] in targets:
                        rec = self.db.get('VDI', vrec['VDI'])
                        self._destroy_storage(vrec['VDI'], rec,
                                              self._att(rec['SR']))
                for vrec, clone in clones:
                    self.db.create('VBD', {
                        'VM': vm, 'VDI': clone,
                        'userdevice': vrec['userdevice'],
                        'bootable': vrec['bootable'], 'mode': vrec['mode'],
                        'type': 'Disk', 'empty': False,
                        'other_config': dict(vrec['other_config']),
                        'allowed_operations': ['attach', 'plug']})
                    self.db.update('VDI', clone, snapshot_of=NULL_REF)
                self._vm_halt(vm)
        except XapiError as exc:
            with self.lock:
                for _vrec, clone in clones:
                    if self.db.exists('VDI', clone) and \
                            not self.db.children('VBD', 'VDI', clone):
                        self._destroy_created(clone)
                if self.db.exists('VM', vm):
                    self._vm_halt(vm)
            if exc.details[0] in ('SR_BACKEND_FAILURE_44',
                                  'SR_BACKEND_FAILURE_109',
                                  'VDI_INCOMPATIBLE_TYPE'):
                raise
            raise XapiError('VM_REVERT_FAILED', snapshot, vm) from exc
        return ''

    def guest_write(self, vm_uuid: str, vdi_uuid: str, offset: int,
                    data: bytes, timeout: float = 60.0) -> int:
        """A write by the guest ``vm_uuid`` to its disk ``vdi_uuid``: what
        tests use to prove a group snapshot consistent.

        The write goes through the VM: it waits while the VM is Paused (a
        paused domain issues no I/O: xenopsd pauses its vCPUs) and while
        its disk is being snapshotted or cloned (sm drivers/FileSR.py and
        LVHDSR.py VDI.snapshot tap_pause the attached VDI around
        ``_snapshot``, so one VDI's snapshot is atomic), then lands in the
        VDI's data at ``offset``. Fails VM_BAD_POWER_STATE when the VM is
        not running (halted while the write waited) and VDI_NOT_ATTACHED
        when the VM holds no attached VBD of that VDI (the simulator's
        own answer: a real guest cannot write a disk it lacks). Returns the
        sequence number of the write among all guest writes of the pool,
        which orders them.
        """
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                vm = self.db.ref_of_uuid('VM', vm_uuid)
                rec = self.db.get('VM', vm)
                vdi = self.db.ref_of_uuid('VDI', vdi_uuid)
                busy = self.busy.get(vdi) in ('snapshot', 'clone')
                if rec['power_state'] != 'Paused' and not busy:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise XapiError('TIMEOUT', 'guest write to VDI %s'
                                    % vdi_uuid)
                self.cond.wait(min(remaining, 0.5))
            if rec['power_state'] != 'Running':
                raise XapiError('VM_BAD_POWER_STATE', vm, 'running',
                                rec['power_state'].lower())
            held = [b for b in self.db.children('VBD', 'VDI', vdi)
                    if self.db.get('VBD', b)['VM'] == vm and
                    self.db.get('VBD', b)['currently_attached']]
            if not held:
                raise XapiError('VDI_NOT_ATTACHED', vdi)
            path = self.data_file(vdi)
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, data, offset)
            finally:
                os.close(fd)
            first = offset // VHD_BLOCK
            last = (offset + max(len(data), 1) - 1) // VHD_BLOCK
            self._record_blocks(vdi, [[first, last + 1]])
            self.guest_writes += 1
            return self.guest_writes

    # ==================================================================
    # The HTTP data path (called by the server, not over XML-RPC)
    # ==================================================================
    def transfer_begin(self, session: str, vdi_id: str, task_id: str | None,
                       op: str) -> tuple[str, str, str, int, str]:
        """Prepare an import/export: ``(task, vdi, vbd, size, path)``.

        Raises XapiError; the caller answers 401 for SESSION_INVALID.
        """
        self._check_session(session)
        with self.lock:
            if task_id:
                self.db.get('task', task_id)
                task = task_id
            else:
                task = self._new_task('VDI %s' % op, '', session)
            try:
                if vdi_id in self.db.tables['VDI']:
                    vdi = vdi_id
                elif vdi_id in self.db.by_uuid['VDI']:
                    vdi = self.db.by_uuid['VDI'][vdi_id]
                elif vdi_id.startswith('OpaqueRef:'):
                    raise XapiError('HANDLE_INVALID', 'VDI', vdi_id)
                else:
                    raise XapiError('UUID_INVALID', 'VDI', vdi_id)
                rec = self.db.get('VDI', vdi)
                att = self._att(rec['SR'])
                self._not_cbt_metadata(vdi, rec)
                self._claim([vdi], op)
                try:
                    path = self._data_path(rec, att)
                    dom0 = self.db.get('host', self._master())[
                        'control_domain']
                    vbd = self.db.create('VBD', {
                        'VM': dom0, 'VDI': vdi,
                        'userdevice': self._free_userdevice(dom0),
                        'mode': 'RW' if op == 'import' else 'RO',
                        'currently_attached': True, 'device': 'xvdz',
                        'other_config': {'task_id': task}})
                except Exception:
                    self._release([vdi])
                    raise
            except XapiError as exc:
                self.task_done(task, error=exc.details)
                raise
            self.task_work.add(task)
            return task, vdi, vbd, rec['virtual_size'], path

    def transfer_end(self, task: str, vdi: str, vbd: str,
                     blocks: list[list[int]] | None,
                     error: list[str] | None,
                     written: list[tuple[int, int]] | None = None) -> None:
        with self.lock:
            self.task_work.discard(task)
            if self.db.exists('VBD', vbd):
                self.db.destroy('VBD', vbd)
            self._release([vdi])
            # Written is written, whether the task failed or not: tapdisk
            # marked the blocks as they landed.
            self.cbt_mark(vdi, written or [])
            if blocks and error is None:
                self._record_blocks(vdi, blocks)
            self.task_done(task, vdi if error is None else None, error)

    # ==================================================================
    # Control-plane helpers
    # ==================================================================
    def dump(self) -> dict[str, Any]:
        with self.lock:
            return {cls: {ref: self.db.render(cls, ref)
                          for ref in self.db.tables[cls]}
                    for cls in PUBLIC}

    def set_gc_paused(self, paused: bool) -> None:
        """Hold the coalescer, or release it and let it catch up now."""
        with self.lock:
            self.gc_paused = paused
            if not paused:
                self.run_gc()

    def run_gc(self) -> None:
        """Coalesce every attached SR now (what the background GC would)."""
        with self.lock:
            for sr in list(self.attached):
                if self._gc_sr(sr):
                    self.gc_pending.discard(sr)
            self.cond.notify_all()

    def host_refs(self) -> list[str]:
        with self.lock:
            return self._hosts_in_order()

