"""The :class:`Simulator`: a pool of XAPI hosts on loopback.

The master listens on ``host:port`` (127.0.0.1 by default), each slave on
``127.0.0.(2+i)`` and the same port.  Storage lives on a
:class:`~.fabric.Fabric`; :attr:`Simulator.topology` describes the default
storage a client can point SRs at.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import ssl
import tempfile
import threading
import time
import uuid as uuidlib
from typing import Any

from . import storage
from .api import Xapi
from .control import SimControl
from .fabric import Fabric
from .faults import FaultBox
from .httpd import Server
from .nbd import NbdServer
from .solidfire import ElementSimulator
from .wire import XapiError

LOG = logging.getLogger(__name__)
GiB = storage.GiB
TiB = 1024 * GiB


def _scsi_id(n: int) -> str:
    return '36001405' + '%025d' % n


# The default storage network.  Addresses are loopback aliases nobody
# connects to: they only name the storage inside the fabric.
NFS: dict[str, Any] = {'server': '127.0.0.10', 'serverpath': '/export/xensm',
       'size': 1 * TiB}
ISCSI: dict[str, Any] = {'target': '127.0.0.11', 'port': '3260',
         'targetIQN': 'iqn.2026-01.local.xensm-sim:target0',
         'luns': [(0, _scsi_id(1), 100 * GiB), (1, _scsi_id(2), 100 * GiB),
                  (2, _scsi_id(3), 50 * GiB)]}
ISCSI_CHAP: dict[str, Any] = {'target': '127.0.0.11', 'port': '3260',
              'targetIQN': 'iqn.2026-01.local.xensm-sim:chap0',
              'chapuser': 'xensm', 'chappassword': 'xensm-chap-secret',
              'luns': [(0, _scsi_id(4), 100 * GiB)]}
RAW_ISCSI: dict[str, Any] = {'target': '127.0.0.14', 'port': '3260',
             'targetIQN': 'iqn.2026-01.local.xensm-sim:lunpervdi',
             'luns': [(i, _scsi_id(11 + i), s * GiB)
                      for i, s in enumerate((1, 2, 5, 10, 20))]}
HBA: dict[str, Any] = {'luns': [(0, _scsi_id(21), 100 * GiB), (1, _scsi_id(22), 100 * GiB)]}
LVM: dict[str, Any] = {'device': '/dev/sdb', 'size': 200 * GiB}
NETAPP: dict[str, Any] = {'target': '127.0.0.12', 'username': 'admin',
          'password': 'netapp-pass', 'aggregate': 'aggr1', 'size': 2 * TiB}
EQUAL: dict[str, Any] = {'target': '127.0.0.13', 'username': 'grpadmin',
         'password': 'eql-pass', 'storagepool': 'default', 'size': 2 * TiB}
SOLIDFIRE: dict[str, Any] = {'svip': '127.0.0.15', 'login': 'admin',
             'password': 'solidfire-pass'}


class Simulator:
    """A simulated XenServer pool serving XAPI on loopback.

    ``pool_hosts`` hosts (master included); ``srs`` SR types to pre-create
    on the default storage (named ``sim-<type>``); ``state_dir`` keeps the
    database and the fabric across restarts (default: memory and a
    temporary directory removed by :meth:`stop`); ``auth_failure_delay``
    is how long a failed login waits (xapi: 5 s); ``max_sessions_per_user``
    the cap per originator (root) or per user name beyond which the
    session GC, every ``session_gc_interval`` seconds, ends the least
    recently active sessions (``POST /sim/sessions/gc`` runs it now); TLS files
    make every host serve HTTPS; ``fabric`` shares a storage network with
    array simulators; ``latency`` is added to every XAPI call;
    ``data_idle_timeout`` is how long a data-path transfer may stall
    before its task fails with VDI_IO_ERROR; ``absent_sm_types`` are SR
    types this pool's SM lacks (``('netapp', 'equal')`` is every current
    pool: those were StorageLink adapters of XenServer 5.6-6.0);
    ``gc_delay`` is how long the background coalescer waits after a delete
    or scan kicks it (``POST /sim/gc/wait`` waits for it to finish).
    """

    def __init__(self, host: str = '127.0.0.1', port: int = 0,
                 pool_hosts: int = 2, username: str = 'root',
                 password: str = 'password', state_dir: str | None = None,
                 srs: tuple[str, ...] | list[str] = (),
                 auth_failure_delay: float = 5.0,
                 max_sessions_per_user: int = 500,
                 tls_certfile: str | None = None,
                 tls_keyfile: str | None = None,
                 fabric: Fabric | None = None, latency: float = 0.0,
                 data_idle_timeout: float = 5.0,
                 supplemental_packs: tuple[str, ...] | list[str] = (),
                 solidfire: bool = False,
                 absent_sm_types: tuple[str, ...] | list[str] = (),
                 session_gc_interval: float = 60.0,
                 gc_delay: float = 0.2) -> None:
        if pool_hosts < 1:
            raise ValueError('pool_hosts must be >= 1')
        self.bind_host = host
        self.requested_port = int(port)
        self.pool_hosts = int(pool_hosts)
        self.state_dir = state_dir
        self.srs = tuple(srs)
        self.tls = (tls_certfile, tls_keyfile) if tls_certfile else None
        # Seconds a data-path transfer may stall before its task fails.
        self.data_idle_timeout = float(data_idle_timeout)
        self.session_gc_interval = float(session_gc_interval)
        self._tmp: str | None = None
        if state_dir:
            os.makedirs(state_dir, exist_ok=True)
            root = state_dir
        else:
            self._tmp = tempfile.mkdtemp(prefix='xensm-sim-')
            root = self._tmp
        self.fabric = fabric or Fabric(os.path.join(root, 'fabric'))
        self.faults = FaultBox()
        self.faults.latency = float(latency)
        self.xapi = Xapi(self.fabric, username, password, auth_failure_delay,
                         max_sessions_per_user,
                         os.path.join(state_dir, 'xapi-db.json')
                         if state_dir else None,
                         packs=tuple(supplemental_packs),
                         absent_sm_types=tuple(absent_sm_types))
        # A SolidFire Element cluster on the same fabric: its volumes are
        # iSCSI LUNs that lvmoiscsi SRs of this pool can sit on.
        self.solidfire: ElementSimulator | None = None
        if solidfire:
            self.solidfire = ElementSimulator(
                self.fabric, host=host, username=SOLIDFIRE['login'],
                password=SOLIDFIRE['password'], svip=SOLIDFIRE['svip'],
                data_dir=os.path.join(root, 'solidfire'))
        self.xapi.fault_hook = self.faults.match
        self.xapi.gc_delay = float(gc_delay)
        self.topology: dict[str, Any] = {}
        self.port = 0
        self._servers: list[Server] = []
        self.nbd: NbdServer | None = None
        self._threads: list[threading.Thread] = []
        self._host_refs: list[str] = []
        self._stopping = threading.Event()
        self._started = False

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> Simulator:
        if self._started:
            return self
        self._bind()
        scheme = 'https' if self.tls else 'http'
        addrs = self._addresses()
        hosts = [{'uuid': str(uuidlib.uuid4()),
                  'name_label': 'sim-host-%d' % i, 'address': a,
                  'iscsi_iqn': 'iqn.2026-01.local.xensm-sim:host%d' % i}
                 for i, a in enumerate(addrs)]
        self.xapi.bootstrap(hosts)
        self.nbd = NbdServer(self.bind_host, self)
        self.nbd.start()
        self.xapi.nbd_address = (self.bind_host, self.nbd.port)
        self._host_refs = self.xapi.host_refs()
        if self.solidfire is not None:
            self.solidfire.start()
        self._build_topology(scheme)
        for sr_type in self.srs:
            self._default_sr(sr_type)
        for srv in self._servers:
            t = threading.Thread(target=srv.serve_forever,
                                 kwargs={'poll_interval': 0.05},
                                 name='xensm-sim-%s' % str(srv.server_address[0]),
                                 daemon=True)
            t.start()
            self._threads.append(t)
        if self.state_dir:
            t = threading.Thread(target=self._saver, name='xensm-sim-saver',
                                 daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self.xapi.gc_worker,
                             args=(self._stopping,), name='xensm-sim-coalesce',
                             daemon=True)
        t.start()
        self._threads.append(t)
        t = threading.Thread(target=self._session_gc,
                             name='xensm-sim-session-gc', daemon=True)
        t.start()
        self._threads.append(t)
        self._started = True
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self.solidfire is not None:
            self.solidfire.stop()
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        self._servers = []
        if self.nbd is not None:
            self.nbd.stop()
            self.nbd = None
            self.xapi.nbd_address = None
        if self._started and self.state_dir:
            self.xapi.save_if_dirty()
        self._started = False
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _saver(self) -> None:
        while not self._stopping.wait(0.5):
            try:
                self.xapi.save_if_dirty()
            except OSError:
                LOG.exception('could not save the simulator state')

    def _session_gc(self) -> None:
        # xapi's periodic database GC (db_gc.ml) ends excess sessions.
        while not self._stopping.wait(self.session_gc_interval):
            self.xapi.gc_sessions()

    def _addresses(self) -> list[str]:
        return [self.bind_host] + ['127.0.0.%d' % (2 + i)
                                   for i in range(self.pool_hosts - 1)]

    def _bind(self) -> None:
        addrs = self._addresses()
        for _attempt in range(50):
            servers: list[Server] = []
            try:
                port = self.requested_port
                for i, a in enumerate(addrs):
                    srv = Server((a, port), self, i)
                    servers.append(srv)
                    port = srv.server_address[1]
                self.port = port
                self._servers = servers
                break
            except OSError:
                for srv in servers:
                    srv.server_close()
                if self.requested_port:
                    raise
        else:
            raise OSError('could not bind the pool on one port')
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.tls[0]), self.tls[1])
            for srv in self._servers:
                srv.socket = ctx.wrap_socket(srv.socket, server_side=True)

    # -- addresses -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.host_urls[0]

    @property
    def host_urls(self) -> list[str]:
        scheme = 'https' if self.tls else 'http'
        return ['%s://%s:%d' % (scheme, a, self.port)
                for a in self._addresses()]

    @property
    def control(self) -> SimControl:
        return SimControl(self.url)

    def host_ref(self, index: int) -> str:
        return self._host_refs[index]

    # -- default storage -------------------------------------------------------------
    def _build_topology(self, scheme: str) -> None:
        fab = self.fabric
        existing = {lun.scsi_id for lun in fab.luns()}
        fab.add_nfs_export(NFS['server'], NFS['serverpath'], NFS['size'])
        for spec, chap in ((ISCSI, None), (ISCSI_CHAP, (
                ISCSI_CHAP['chapuser'], ISCSI_CHAP['chappassword'])),
                (RAW_ISCSI, None)):
            fab.add_target(spec['target'], spec['targetIQN'],
                           int(spec['port']), chap)
            for lun_id, scsi_id, size in spec['luns']:
                if scsi_id not in existing:
                    fab.add_lun(spec['targetIQN'], size, scsi_id=scsi_id,
                                lun_id=lun_id)
        for _lun_id, scsi_id, size in HBA['luns']:
            if scsi_id not in existing:
                fab.add_hba_lun(size, scsi_id=scsi_id)
        hosts = []
        with self.xapi.lock:
            for ref in self._host_refs:
                rec = self.xapi.db.get('host', ref)
                fab.add_local_disk(rec['uuid'], LVM['device'], LVM['size'])
                hosts.append({'uuid': rec['uuid'], 'ref': ref,
                              'name_label': rec['name_label'],
                              'address': rec['address'],
                              'url': '%s://%s:%d' % (scheme, rec['address'],
                                                     self.port),
                              'iscsi_iqn': rec['iscsi_iqn']})
        try:
            fab.get_array(NETAPP['target'])
        except KeyError:
            fab.add_array('netapp', NETAPP['target'], NETAPP['username'],
                          NETAPP['password'],
                          {NETAPP['aggregate']: NETAPP['size']})
        try:
            fab.get_array(EQUAL['target'])
        except KeyError:
            fab.add_array('equal', EQUAL['target'], EQUAL['username'],
                          EQUAL['password'],
                          {EQUAL['storagepool']: EQUAL['size']})

        def luns(spec: dict[str, Any]) -> list[dict[str, Any]]:
            return [{'SCSIid': s, 'LUNid': i, 'size': n}
                    for i, s, n in spec['luns']]

        def target(spec: dict[str, Any]) -> dict[str, Any]:
            return {'target': spec['target'], 'port': spec['port'],
                    'targetIQN': spec['targetIQN'], 'luns': luns(spec)}

        self.topology = {
            'nfs': {'server': NFS['server'], 'serverpath': NFS['serverpath'],
                    'size': NFS['size']},
            'iscsi': target(ISCSI),
            'iscsi_chap': dict(target(ISCSI_CHAP),
                               chapuser=ISCSI_CHAP['chapuser'],
                               chappassword=ISCSI_CHAP['chappassword']),
            'rawiscsi': target(RAW_ISCSI),
            'hba': {'luns': luns(HBA)},
            'lvm': {'device': LVM['device'], 'size': LVM['size']},
            'netapp': {k: NETAPP[k] for k in ('target', 'username',
                                              'password', 'aggregate',
                                              'size')},
            'equal': {k: EQUAL[k] for k in ('target', 'username', 'password',
                                            'storagepool', 'size')},
            'hosts': hosts,
            'supplemental_packs': sorted(set(self.xapi.backends)
                                         - set(storage.BACKENDS)),
            'username': self.xapi.username,
            'password': self.xapi.password,
        }

        if self.solidfire is not None:
            self.topology['solidfire'] = {
                'mvip': self.solidfire.url, 'svip': self.solidfire.svip,
                'login': SOLIDFIRE['login'], 'password': SOLIDFIRE['password']}

    def default_device_config(self, sr_type: str) -> dict[str, str]:
        """device_config for an SR of ``sr_type`` on the default storage."""
        t = self.topology
        if sr_type == 'nfs':
            return {'server': t['nfs']['server'],
                    'serverpath': t['nfs']['serverpath']}
        if sr_type == 'lvm':
            return {'device': t['lvm']['device']}
        if sr_type == 'lvmoiscsi':
            return {'target': t['iscsi']['target'],
                    'port': t['iscsi']['port'],
                    'targetIQN': t['iscsi']['targetIQN'],
                    'SCSIid': t['iscsi']['luns'][0]['SCSIid']}
        if sr_type == 'lvmohba':
            return {'SCSIid': t['hba']['luns'][0]['SCSIid']}
        if sr_type == 'iscsi':
            return {'target': t['rawiscsi']['target'],
                    'port': t['rawiscsi']['port'],
                    'targetIQN': t['rawiscsi']['targetIQN']}
        if sr_type == 'netapp':
            n = t['netapp']
            return {k: n[k] for k in ('target', 'username', 'password',
                                      'aggregate')}
        if sr_type == 'equal':
            e = t['equal']
            return {k: e[k] for k in ('target', 'username', 'password',
                                      'storagepool')}
        raise ValueError('no default storage for SR type %r' % sr_type)

    def _default_sr(self, sr_type: str) -> str:
        xapi = self.xapi
        label = 'sim-%s' % sr_type
        with xapi.lock:
            for ref, rec in xapi.db.tables['SR'].items():
                if rec['name_label'] == label:
                    return ref
        dc = self.default_device_config(sr_type)
        session = xapi.login((xapi.username, xapi.password), None)
        try:
            sr_ref: str = xapi.dispatch(
                'SR.create', 'SR.create',
                (session, self._host_refs[0], dc, '0', label,
                 'Created by xensm-sim', sr_type,
                 'user', sr_type != 'lvm', {}))
            if sr_type == 'iscsi':
                xapi.dispatch('SR.scan', 'SR.scan', (session, sr_ref))
            return sr_ref
        except XapiError as exc:
            raise RuntimeError('could not create the default %s SR: %s'
                               % (sr_type, exc.details)) from None
        finally:
            xapi.expire_sessions(session)

    # -- control plane ------------------------------------------------------------------
    def control_route(self, verb: str, path: str,
                      args: dict[str, Any]) -> Any:
        """Answer one control-plane request (see control.py for routes)."""
        fab = self.fabric
        xapi = self.xapi
        f = self.faults
        route = (verb, path.rstrip('/'))
        if route == ('GET', '/sim/health'):
            return {'ok': True, 'time': time.time()}
        if route == ('GET', '/sim/calls'):
            return f.calls()
        if route == ('GET', '/sim/rows'):
            return xapi.rows_scanned()
        if route in (('POST', '/sim/calls/reset'), ('DELETE', '/sim/calls')):
            f.reset_calls()
            xapi.reset_rows()
            return {}
        if route == ('GET', '/sim/faults'):
            return f.faults()
        if route == ('POST', '/sim/faults'):
            fault = f.inject(
                str(args['method']), args.get('error'),
                int(args.get('nth', 1)), int(args.get('times', 1)),
                _opt_float(args.get('latency')), args.get('drop'),
                _opt_float(args.get('hang')),
                None if args.get('after_bytes') is None
                else int(args['after_bytes']))
            return fault.to_dict()
        if route in (('POST', '/sim/faults/clear'), ('DELETE', '/sim/faults')):
            f.clear()
            return {}
        if route == ('POST', '/sim/latency'):
            f.latency = float(args.get('seconds', 0.0))
            return {'seconds': f.latency}
        if route == ('POST', '/sim/sessions/gc'):
            return {'ended': xapi.gc_sessions()}
        if route == ('POST', '/sim/sessions/expire'):
            return {'expired': xapi.expire_sessions(args.get('session_ref'))}
        if route == ('GET', '/sim/dump'):
            return xapi.dump()
        if route == ('GET', '/sim/topology'):
            return self.topology
        if route == ('POST', '/sim/gc'):
            xapi.set_gc_paused(bool(args.get('paused', False)))
            return {'paused': xapi.gc_paused}
        if route == ('POST', '/sim/gc/run'):
            xapi.run_gc()
            return {}
        if route == ('POST', '/sim/gc/wait'):
            return {'pending': xapi.wait_gc(float(args.get('timeout', 30.0)))}
        if route == ('POST', '/sim/vm/write'):
            seq = xapi.guest_write(
                str(args['vm_uuid']), str(args['vdi_uuid']),
                int(args.get('offset', 0)),
                base64.b64decode(str(args['data'])),
                float(args.get('timeout', 60.0)))
            return {'seq': seq}
        if route == ('POST', '/sim/state/save'):
            xapi.save_if_dirty()
            return {}
        if route == ('GET', '/sim/fabric'):
            return fab.describe()
        if route == ('POST', '/sim/fabric/targets'):
            chap = args.get('chap')
            fab.add_target(str(args['address']), str(args['iqn']),
                           int(args.get('port', 3260)),
                           tuple(chap) if chap else None)
            return fab.get_target(str(args['iqn'])).to_dict()
        if route == ('POST', '/sim/fabric/targets/remove'):
            fab.remove_target(str(args['iqn']))
            return {}
        if route == ('POST', '/sim/fabric/luns'):
            return fab.add_lun(str(args['iqn']), int(args['size_bytes']),
                               args.get('scsi_id'), int(args.get('lun_id', 0)),
                               str(args.get('vendor', 'XENSIM')),
                               args.get('serial')).to_dict()
        if route == ('POST', '/sim/fabric/luns/remove'):
            fab.remove_lun(str(args['scsi_id']))
            return {}
        if route == ('POST', '/sim/fabric/luns/resize'):
            fab.resize_lun(str(args['scsi_id']), int(args['size_bytes']))
            return fab.get_lun(str(args['scsi_id'])).to_dict()
        if route == ('POST', '/sim/fabric/luns/copy'):
            src = fab.get_lun(str(args['src_scsi_id']))
            dst = fab.get_lun(str(args['dst_scsi_id']))
            with src.lock, dst.lock:
                fab.copy_tree(src.path, dst.path)
            return dst.to_dict()
        if route == ('POST', '/sim/fabric/luns/access'):
            inits = args.get('initiators')
            fab.set_lun_access(str(args['scsi_id']),
                               None if inits is None else set(inits))
            return fab.get_lun(str(args['scsi_id'])).to_dict()
        if route == ('POST', '/sim/fabric/hba_luns'):
            return fab.add_hba_lun(int(args['size_bytes']),
                                   args.get('scsi_id')).to_dict()
        if route == ('POST', '/sim/fabric/nfs_exports'):
            return {'directory': fab.add_nfs_export(
                str(args['server']), str(args['path']),
                int(args['size_bytes']))}
        if route == ('POST', '/sim/fabric/local_disks'):
            return {'directory': fab.add_local_disk(
                str(args['host_uuid']), str(args['device']),
                int(args['size_bytes']))}
        raise KeyError('%s %s' % (verb, path))


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)
