"""A SolidFire Element API simulator on loopback.

``POST /json-rpc/<version>`` takes ``{"method", "params", "id"}`` with HTTP
Basic auth (401 on bad credentials) and answers ``{"id", "result"}`` or, as
Element does, an error *inside an HTTP 200 body*:
``{"id", "error": {"name", "code": 500, "message"}}``.

Storage is real: every Element volume is an iSCSI target (its IQN) with one
LUN 0 on the shared :class:`~.fabric.Fabric`, at the SVIP, port 3260. So an
``lvmoiscsi`` SR the XAPI simulator creates on that LUN writes into the LUN's
backing directory, and

- a snapshot is a copy of that directory (taken under the LUN's lock),
- ``RollbackToSnapshot`` copies it back -- SR metadata included,
- ``CloneVolume`` gives a new LUN whose directory is a copy of the source's
  (or a snapshot's) -- so the clone carries its source's SR identity, which is
  the real resign problem.

Identity, as Element builds it (see ``docs/`` in the reference notes):

- ``iqn = iqn.2010-01.com.solidfire:<uniqueID>.<lower-cased name>.<volumeID>``
- ``scsiNAADeviceID = 6f47acc1 00000000 <hex(uniqueID chars)> <volumeID %08x>``
- ``scsiEUIDeviceID = <hex(uniqueID chars)> <volumeID %08x> f47acc01 00000000``
- the fabric LUN's ``scsi_id`` is ``"3" + scsiNAADeviceID``: XenServer's
  SCSIid is ``scsi_id -g`` output, whose first digit is the page-0x83
  designator type, 3 for an NAA name -- so the SR's ``SCSIid`` is what
  ``/dev/disk/by-id/scsi-3<naa>`` would show on a real host.

Access: a volume in no volume access group (VAG) is reached with CHAP, the
account's ``(username, initiatorSecret)``, by any initiator; a volume in one
or more VAGs is reached, without CHAP, by exactly their initiators. A deleted
or ``locked`` volume is reached by nobody. (Element also still admits a CHAP
login from outside the VAGs; the fabric cannot express "VAG or CHAP", so the
simulator is stricter there.)

Sizes are rounded up to whole MiB, as Element does (``totalSize`` 1e9 comes
back as 1000341504).

Control plane (JSON, no auth), also reachable from another process through
:class:`ElementControl`:

- ``GET /sim/calls`` -> ``{"calls": {method: n}}``; ``POST /sim/calls/reset``
- ``POST /sim/faults`` ``{"method", "error_name", "nth", "times",
  "drop_after", "error_after", "latency", "code", "message"}``: counted from
  the moment it is added, calls ``nth .. nth+times-1`` of ``method`` (``"*"``:
  any method; ``times`` null: every call from ``nth`` on) sleep ``latency``
  seconds (the lock is not held), then answer ``error_name`` without
  executing -- or, with ``error_after``, execute and then answer
  ``error_name`` (a transient error such as ``xDBConnectionLoss`` arriving
  after the cluster database applied the change: whether Element can do
  that is not documented, ZooKeeper's CONNECTIONLOSS can) -- or execute and
  close the connection without answering (``drop_after``: the lost
  response). ``method = "async:CloneVolume"`` makes the nth clone *job* end in
  ``error_name`` (``GetAsyncResult`` reports it; the clone volume is removed).
- ``GET /sim/faults``; ``POST /sim/faults/clear``
- ``POST /sim/config`` ``{"clone_seconds": s, "purge_seconds": s}``: how
  long a clone job runs (its volume is ``init`` meanwhile); how long a
  deleted volume waits before it is purged (Element's cleanup interval,
  about 8 h by default; 0: at the next call). Also a constructor argument.
- ``GET /sim/dump``: the whole state.

Not modelled: QoS enforcement, replication and pairing, virtual volumes,
snapshot branches (``CreateSnapshot.snapshotID``), ``readOnly`` access (it
behaves as ``readWrite``), snapshot expiration, checksums (a placeholder),
rollback shrinking a grown volume (the fabric only grows LUNs), space
limits (use fault injection for ``xInsufficientSpace``), compression and
deduplication (GetClusterCapacity's ``uniqueBlocks`` equal its
``nonZeroBlocks`` and ``uniqueBlocksUsedSpace`` the bytes written, so both
ratios are 1). Error names not
seen in public code are marked "(unverified)" where they are raised.

This module imports only the standard library and :mod:`.fabric`.
"""

from __future__ import annotations

import base64
import copy
import datetime
import hmac
import http.server
import json
import logging
import os
import secrets
import shutil
import socket
import string
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from .fabric import Fabric
from .fabric import allocated_bytes

__all__ = ['ElementSimulator', 'ElementControl', 'scsi_id_for_naa', 'DEFAULT_LIMITS']

LOG = logging.getLogger(__name__)

MIB = 1024 * 1024
BLOCK = 4096
#: Lowest and highest API version accepted on ``/json-rpc/<version>``.
API_VERSION_RANGE = ((1, 0), (12, 8))
#: Methods that exist only from an API version on (others: from 1.0).
METHOD_MIN_VERSION = {
    'CreateSnapshot': (6, 0), 'DeleteSnapshot': (6, 0),
    'ListSnapshots': (6, 0), 'RollbackToSnapshot': (6, 0),
    'CreateGroupSnapshot': (7, 0), 'DeleteGroupSnapshot': (7, 0),
    'ListGroupSnapshots': (7, 0), 'RollbackToGroupSnapshot': (7, 0),
    'ListVolumes': (8, 0),
}

DEFAULT_LIMITS: dict[str, int] = {
    'accountCountMax': 5000,
    'accountNameLengthMax': 64,
    'accountNameLengthMin': 1,
    'cloneJobsPerVolumeMax': 2,
    'initiatorNameLengthMax': 224,
    'initiatorsPerVolumeAccessGroupCountMax': 64,
    'secretLengthMax': 16,
    'secretLengthMin': 12,
    'snapshotNameLengthMax': 64,
    'snapshotsPerVolumeMax': 32,
    'volumeAccessGroupCountMax': 1000,
    'volumeAccessGroupNameLengthMax': 64,
    'volumeAccessGroupNameLengthMin': 1,
    'volumeAccessGroupsPerInitiatorCountMax': 1,
    'volumeAccessGroupsPerVolumeCountMax': 4,
    'volumeBurstIOPSMax': 100000,
    'volumeBurstIOPSMin': 100,
    'volumeCountMax': 4000,
    'volumeMaxIOPSMax': 100000,
    'volumeMaxIOPSMin': 100,
    'volumeMinIOPSMax': 15000,
    'volumeMinIOPSMin': 50,
    'volumeNameLengthMax': 64,
    'volumeNameLengthMin': 1,
    'volumeSizeMax': 17592186044416,
    'volumeSizeMin': 1000000000,
    'volumesPerAccountCountMax': 2000,
    'volumesPerGroupSnapshotMax': 32,
    'volumesPerVolumeAccessGroupCountMax': 2000,
}

QOS_DEFAULT = {'minIOPS': 50, 'maxIOPS': 15000, 'burstIOPS': 15000, 'burstTime': 60}
QOS_CURVE = {'4096': 100, '8192': 160, '16384': 270, '32768': 500, '65536': 1000,
             '131072': 1950, '262144': 3900, '524288': 7600, '1048576': 15000}
#: Element's default cleanup interval: a deleted volume is purged this long
#: after DeleteVolume (Element API guide, DeleteVolume).
PURGE_SECONDS = 8 * 3600.0
ACCESS_MODES = ('readWrite', 'readOnly', 'locked', 'replicationTarget')
VENDOR = 'SolidFir'
ISCSI_PORT = 3260
_SECRET_CHARS = string.ascii_letters + string.digits
_DROP = object()


def scsi_id_for_naa(naa: str) -> str:
    """XenServer's SCSIid for a LUN whose NAA identifier is ``naa``."""
    return '3' + naa


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def _later(seconds: float) -> str:
    t = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return t.strftime('%Y-%m-%dT%H:%M:%SZ')


def _round_mib(size: int) -> int:
    return -(-size // MIB) * MIB


def _version(text: str) -> tuple[int, int] | None:
    try:
        major, minor = text.split('.')
        return int(major), int(minor)
    except ValueError:
        return None


class ElementFault(Exception):
    """An Element error answer: ``name``, ``code`` and ``message``."""

    def __init__(self, name: str, message: str, code: int = 500) -> None:
        super().__init__('%s: %s' % (name, message))
        self.name = name
        self.message = message
        self.code = code

    def to_dict(self) -> dict[str, Any]:
        return {'name': self.name, 'code': self.code, 'message': self.message}


# -- state ---------------------------------------------------------------------

@dataclass
class _Account:
    id: int
    username: str
    initiator_secret: str
    target_secret: str
    attributes: dict[str, Any]
    enable_chap: bool = True


@dataclass
class _Volume:
    id: int
    name: str
    account_id: int
    total_size: int
    enable512e: bool
    access: str
    qos: dict[str, Any]
    attributes: dict[str, Any]
    iqn: str
    naa: str
    eui: str
    scsi_id: str
    uuid: str
    create_time: str
    status: str = 'active'
    delete_time: str = ''
    purge_time: str = ''
    purge_at: float = 0.0           # time.monotonic() of the automatic purge


@dataclass
class _Snapshot:
    id: int
    volume_id: int
    name: str
    total_size: int
    create_time: str
    attributes: dict[str, Any]
    path: str
    uuid: str
    group_id: int = 0
    group_uuid: str = ''
    expiration_time: str | None = None
    enable_remote_replication: bool = False


@dataclass
class _GroupSnapshot:
    id: int
    name: str
    create_time: str
    attributes: dict[str, Any]
    uuid: str
    members: list[int] = field(default_factory=list)


@dataclass
class _Vag:
    id: int
    name: str
    initiators: list[str]
    volumes: list[int]
    attributes: dict[str, Any]
    deleted_volumes: list[int] = field(default_factory=list)


@dataclass
class _Job:
    handle: int
    result_type: str
    source_id: int
    volume_id: int
    create_time: str
    done_at: float
    error: dict[str, Any] | None = None
    finished: bool = False
    last_update: str = ''


@dataclass
class _Fault:
    id: int
    method: str
    error_name: str | None
    nth: int
    times: int | None
    drop_after: bool
    latency: float | None
    code: int
    message: str | None
    seen: int = 0
    fired: int = 0
    error_after: bool = False

    def hit(self) -> bool:
        self.seen += 1
        if self.seen < self.nth:
            return False
        if self.times is not None and self.seen >= self.nth + self.times:
            return False
        self.fired += 1
        return True

    def to_dict(self) -> dict[str, Any]:
        return {'id': self.id, 'method': self.method, 'error_name': self.error_name,
                'nth': self.nth, 'times': self.times, 'drop_after': self.drop_after,
                'latency': self.latency, 'code': self.code, 'message': self.message,
                'seen': self.seen, 'fired': self.fired, 'error_after': self.error_after}


class _Params:
    """Typed access to a request's params; remembers which were read."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.used: set[str] = set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None,
            required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.raw or self.raw[key] is None:
            if required:
                raise ElementFault('xMissingParameter', 'Missing member=[%s]' % key)
            return default
        value = self.raw[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (
            isinstance(value, bool) and bool not in kinds)
        if not ok:
            raise ElementFault('xInvalidParameter',
                               'Invalid type for member=[%s]: %r' % (key, value))
        return value

    def integer(self, key: str, default: int | None = None, required: bool = False) -> Any:
        return self.get(key, int, default, required)

    def ints(self, key: str, required: bool = False) -> list[int] | None:
        values = self.get(key, list, None, required)
        if values is not None and not all(
                isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ElementFault('xInvalidParameter',
                               'Invalid type for member=[%s]: expected integers' % key)
        return values

    def strs(self, key: str, required: bool = False) -> list[str] | None:
        values = self.get(key, list, None, required)
        if values is not None and not all(isinstance(v, str) for v in values):
            raise ElementFault('xInvalidParameter',
                               'Invalid type for member=[%s]: expected strings' % key)
        return values

    def unused(self) -> dict[str, Any]:
        return {k: v for k, v in self.raw.items() if k not in self.used}


# -- the cluster -------------------------------------------------------------------

class _Cluster:
    """Element state and methods; no HTTP here. All under ``self.lock``."""

    def __init__(self, fabric: Fabric, *, cluster_name: str, svip: str, mvip: str,
                 unique_id: str, data_dir: str, limits: dict[str, int],
                 capacity_bytes: int, purge_seconds: float) -> None:
        self.fabric = fabric
        self.cluster_name = cluster_name
        self.svip = svip
        self.mvip = mvip
        self.unique_id = unique_id
        self.cluster_uuid = str(uuidlib.uuid4())
        self.data_dir = data_dir
        self.limits = limits
        self.capacity_bytes = capacity_bytes
        self.clone_seconds = 0.0
        self.purge_seconds = purge_seconds
        self.lock = threading.RLock()
        self.accounts: dict[int, _Account] = {}
        self.volumes: dict[int, _Volume] = {}
        self.snapshots: dict[int, _Snapshot] = {}
        self.groups: dict[int, _GroupSnapshot] = {}
        self.vags: dict[int, _Vag] = {}
        self.jobs: dict[int, _Job] = {}
        self.calls: dict[str, int] = {}
        self.faults: list[_Fault] = []
        self._next: dict[str, int] = {}
        self.methods: dict[str, Callable[[_Params], dict[str, Any]]] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith('_m_')}

    def new_id(self, kind: str) -> int:
        self._next[kind] = self._next.get(kind, 0) + 1
        return self._next[kind]

    # -- lookups ----------------------------------------------------------------

    def volume(self, volume_id: int, *, deleted_ok: bool = False) -> _Volume:
        vol = self.volumes.get(volume_id)
        if vol is None or (vol.status == 'deleted' and not deleted_ok):
            raise ElementFault('xVolumeIDDoesNotExist',
                               'VolumeID %s does not exist.' % volume_id)
        return vol

    def account(self, account_id: int) -> _Account:
        acct = self.accounts.get(account_id)
        if acct is None:
            raise ElementFault('xAccountIDDoesNotExist', 'Illegal AccountID %s' % account_id)
        return acct

    def snapshot(self, snapshot_id: int) -> _Snapshot:
        snap = self.snapshots.get(snapshot_id)
        if snap is None:
            raise ElementFault('xSnapshotIDDoesNotExist',
                               'SnapshotID %s does not exist.' % snapshot_id)
        return snap

    def vag(self, vag_id: int) -> _Vag:
        vag = self.vags.get(vag_id)
        if vag is None:
            raise ElementFault('xVolumeAccessGroupIDDoesNotExist',
                               'VolumeAccessGroupID %s does not exist.' % vag_id)
        return vag

    def group(self, group_id: int) -> _GroupSnapshot:
        grp = self.groups.get(group_id)
        if grp is None:
            # (unverified) name, following the *IDDoesNotExist pattern.
            raise ElementFault('xGroupSnapshotIDDoesNotExist',
                               'GroupSnapshotID %s does not exist.' % group_id)
        return grp

    def lun_path(self, vol: _Volume) -> str:
        return self.fabric.get_lun(vol.scsi_id).path

    # -- checks -----------------------------------------------------------------

    def check_name(self, what: str, name: str, lo: str, hi: str) -> None:
        if not self.limits[lo] <= len(name) <= self.limits[hi]:
            raise ElementFault('xInvalidParameter', '%s name must be %d to %d characters, '
                               'not %d' % (what, self.limits[lo], self.limits[hi], len(name)))

    def check_size(self, size: int) -> int:
        if size < self.limits['volumeSizeMin'] or size > self.limits['volumeSizeMax']:
            # (unverified) name.
            raise ElementFault('xInvalidParameter', 'totalSize %d is outside %d..%d' % (
                size, self.limits['volumeSizeMin'], self.limits['volumeSizeMax']))
        return _round_mib(size)

    def check_attributes(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(attrs)) >= 1000:
            raise ElementFault('xInvalidParameter', 'attributes must be under 1000 bytes '
                               'of JSON')
        return copy.deepcopy(attrs)

    def check_qos(self, qos: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key in ('minIOPS', 'maxIOPS', 'burstIOPS', 'burstTime'):
            if qos.get(key) is not None:
                if not isinstance(qos[key], int) or isinstance(qos[key], bool):
                    raise ElementFault('xInvalidParameter', 'qos.%s must be an integer' % key)
                out[key] = qos[key]
        lim = self.limits
        if not (lim['volumeMinIOPSMin'] <= out['minIOPS'] <= lim['volumeMinIOPSMax']
                and lim['volumeMaxIOPSMin'] <= out['maxIOPS'] <= lim['volumeMaxIOPSMax']
                and lim['volumeBurstIOPSMin'] <= out['burstIOPS'] <= lim['volumeBurstIOPSMax']
                and out['minIOPS'] <= out['maxIOPS'] <= out['burstIOPS']):
            raise ElementFault('xInvalidParameter', 'invalid QoS %s' % out)
        return out

    def snapshot_count(self, volume_id: int) -> int:
        return sum(1 for s in self.snapshots.values() if s.volume_id == volume_id)

    def check_snapshot_room(self, volume_id: int, extra: int = 1) -> None:
        if self.snapshot_count(volume_id) + extra > self.limits['snapshotsPerVolumeMax']:
            raise ElementFault('xMaxSnapshotsPerVolumeExceeded',
                               'Volume %d already has the maximum of %d snapshots.' % (
                                   volume_id, self.limits['snapshotsPerVolumeMax']))

    def check_access(self, access: str) -> str:
        if access not in ACCESS_MODES:
            raise ElementFault('xUnrecognizedEnumString', access)
        return access

    # -- async jobs -----------------------------------------------------------------

    def tick(self) -> None:
        """Finish every job, and purge every deleted volume, whose time has come."""
        now = time.monotonic()
        # Element API guide, DeleteVolume / PurgeDeletedVolume: a deleted
        # volume is purged automatically after the cleanup interval (about
        # 8 h by default), and its snapshots go with it.
        for due in [v for v in self.volumes.values()
                    if v.status == 'deleted' and v.purge_at <= now]:
            self.drop_volume(due)
        for job in self.jobs.values():
            if job.finished or job.done_at > now:
                continue
            job.finished = True
            job.last_update = _now()
            vol = self.volumes.get(job.volume_id)
            if job.error is not None:
                if vol is not None:
                    self.drop_volume(vol)
            elif vol is not None and vol.status == 'init':
                vol.status = 'active'

    # -- fabric ---------------------------------------------------------------------

    def apply_access(self, vol: _Volume) -> None:
        """Make the fabric's target/LUN access match the volume's state."""
        acct = self.accounts[vol.account_id]
        in_vags = [g for g in self.vags.values() if vol.id in g.volumes]
        chap: tuple[str, str] | None
        initiators: set[str] | None
        if vol.status == 'deleted' or vol.access == 'locked':
            chap, initiators = None, set()
        elif in_vags:
            chap, initiators = None, {i for g in in_vags for i in g.initiators}
        elif acct.enable_chap:
            chap, initiators = (acct.username, acct.initiator_secret), None
        else:
            chap, initiators = None, set()
        self.fabric.set_target_chap(vol.iqn, chap)
        self.fabric.set_lun_access(vol.scsi_id, initiators)

    def make_volume(self, name: str, account_id: int, total_size: int, enable512e: bool,
                    access: str, qos: dict[str, Any], attributes: dict[str, Any],
                    status: str = 'active') -> _Volume:
        acct = self.account(account_id)
        live = [v for v in self.volumes.values()]
        if len(live) >= self.limits['volumeCountMax']:
            raise ElementFault('xExceededLimit', 'volumeCountMax (%d) reached'
                               % self.limits['volumeCountMax'])
        if sum(1 for v in live if v.account_id == account_id) >= \
                self.limits['volumesPerAccountCountMax']:
            raise ElementFault('xExceededLimit', 'volumesPerAccountCountMax (%d) reached '
                               'for account %d' % (self.limits['volumesPerAccountCountMax'],
                                                   account_id))
        vid = self.new_id('volume')
        uid_hex = self.unique_id.encode('ascii').hex()
        naa = '6f47acc1' + '00000000' + uid_hex + '%08x' % vid
        eui = uid_hex + '%08x' % vid + 'f47acc01' + '00000000'
        iqn = 'iqn.2010-01.com.solidfire:%s.%s.%d' % (self.unique_id, name.lower(), vid)
        vol = _Volume(id=vid, name=name, account_id=acct.id, total_size=total_size,
                      enable512e=enable512e, access=access, qos=qos, attributes=attributes,
                      iqn=iqn, naa=naa, eui=eui, scsi_id=scsi_id_for_naa(naa),
                      uuid=str(uuidlib.uuid4()), create_time=_now(), status=status)
        self.fabric.add_target(self.svip, iqn, ISCSI_PORT, None)
        try:
            self.fabric.add_lun(iqn, total_size, scsi_id=vol.scsi_id, lun_id=0,
                                vendor=VENDOR)
        except Exception:
            self.fabric.remove_target(iqn)
            raise
        self.volumes[vid] = vol
        self.apply_access(vol)
        return vol

    def drop_volume(self, vol: _Volume) -> None:
        """Purge: the LUN, its target, its snapshots and every reference go."""
        for snap in [s for s in self.snapshots.values() if s.volume_id == vol.id]:
            self.drop_snapshot(snap)
        for vag in self.vags.values():
            for lst in (vag.volumes, vag.deleted_volumes):
                if vol.id in lst:
                    lst.remove(vol.id)
        self.fabric.remove_target(vol.iqn)
        self.volumes.pop(vol.id, None)

    def drop_snapshot(self, snap: _Snapshot) -> None:
        shutil.rmtree(snap.path, ignore_errors=True)
        self.snapshots.pop(snap.id, None)
        grp = self.groups.get(snap.group_id)
        if grp is not None and snap.id in grp.members:
            grp.members.remove(snap.id)
            if not grp.members:
                self.groups.pop(grp.id, None)

    def take_snapshot(self, vol: _Volume, name: str, attributes: dict[str, Any],
                      group: _GroupSnapshot | None = None,
                      expiration_time: str | None = None,
                      remote: bool = False) -> _Snapshot:
        """Copy the volume's LUN directory; the caller holds the LUN lock."""
        sid = self.new_id('snapshot')
        path = os.path.join(self.data_dir, 'snapshots', str(sid))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.fabric.copy_tree(self.lun_path(vol), path)
        snap = _Snapshot(id=sid, volume_id=vol.id, name=name, total_size=vol.total_size,
                         create_time=_now(), attributes=attributes, path=path,
                         uuid=str(uuidlib.uuid4()), expiration_time=expiration_time,
                         enable_remote_replication=remote)
        if group is not None:
            snap.group_id = group.id
            snap.group_uuid = group.uuid
            group.members.append(sid)
        self.snapshots[sid] = snap
        return snap

    def rollback(self, vol: _Volume, snap: _Snapshot) -> None:
        """Copy the snapshot back over the LUN; the caller holds the LUN lock."""
        self.fabric.copy_tree(snap.path, self.lun_path(vol))
        # The fabric only grows LUNs: a volume grown since the snapshot keeps
        # its size (not modelled: Element's size restore).

    # -- views ----------------------------------------------------------------------

    def volume_dict(self, vol: _Volume) -> dict[str, Any]:
        vag_ids = sorted(g.id for g in self.vags.values()
                         if vol.id in g.volumes or vol.id in g.deleted_volumes)
        qos = dict(vol.qos)
        qos['curve'] = dict(QOS_CURVE)
        return {
            'volumeID': vol.id, 'name': vol.name, 'accountID': vol.account_id,
            'createTime': vol.create_time, 'status': vol.status, 'access': vol.access,
            'enable512e': vol.enable512e, 'totalSize': vol.total_size,
            'blockSize': BLOCK, 'iqn': vol.iqn, 'scsiNAADeviceID': vol.naa,
            'scsiEUIDeviceID': vol.eui, 'volumeUUID': vol.uuid,
            'volumeConsistencyGroupUUID': vol.uuid, 'qos': qos, 'qosPolicyID': None,
            'attributes': copy.deepcopy(vol.attributes),
            'volumeAccessGroups': vag_ids, 'volumePairs': [], 'sliceCount': 1,
            'deleteTime': vol.delete_time, 'purgeTime': vol.purge_time,
            'virtualVolumeID': None, 'lastAccessTime': None, 'lastAccessTimeIO': None,
        }

    def account_dict(self, acct: _Account) -> dict[str, Any]:
        return {
            'accountID': acct.id, 'username': acct.username, 'status': 'active',
            'volumes': sorted(v.id for v in self.volumes.values()
                              if v.account_id == acct.id),
            'initiatorSecret': acct.initiator_secret, 'targetSecret': acct.target_secret,
            'attributes': copy.deepcopy(acct.attributes), 'enableChap': acct.enable_chap,
            'storageContainerID': '00000000-0000-0000-0000-000000000000',
        }

    def snapshot_dict(self, snap: _Snapshot) -> dict[str, Any]:
        vol = self.volumes.get(snap.volume_id)
        return {
            'snapshotID': snap.id, 'volumeID': snap.volume_id, 'name': snap.name,
            'volumeName': vol.name if vol else '', 'totalSize': snap.total_size,
            'createTime': snap.create_time, 'instanceCreateTime': snap.create_time,
            'attributes': copy.deepcopy(snap.attributes), 'groupID': snap.group_id,
            'groupSnapshotUUID': snap.group_uuid or '00000000-0000-0000-0000-000000000000',
            'snapshotUUID': snap.uuid, 'status': 'done',
            'checksum': '0x' + snap.uuid.replace('-', '')[:16],
            'expirationTime': snap.expiration_time, 'expirationReason': 'None',
            'enableRemoteReplication': snap.enable_remote_replication,
            'remoteStatuses': [], 'snapMirrorLabel': '',
        }

    def group_dict(self, grp: _GroupSnapshot) -> dict[str, Any]:
        return {
            'groupSnapshotID': grp.id, 'groupSnapshotUUID': grp.uuid, 'name': grp.name,
            'createTime': grp.create_time, 'status': 'done',
            'attributes': copy.deepcopy(grp.attributes),
            'members': [self.snapshot_dict(self.snapshots[s]) for s in grp.members],
            'enableRemoteReplication': False, 'remoteStatuses': [],
        }

    def vag_dict(self, vag: _Vag) -> dict[str, Any]:
        return {
            'volumeAccessGroupID': vag.id, 'name': vag.name,
            'initiators': list(vag.initiators),
            'initiatorIDs': list(range(1, len(vag.initiators) + 1)),
            'volumes': list(vag.volumes), 'deletedVolumes': list(vag.deleted_volumes),
            'attributes': copy.deepcopy(vag.attributes),
        }

    def members(self, grp: _GroupSnapshot) -> list[dict[str, Any]]:
        out = []
        for sid in grp.members:
            snap = self.snapshots[sid]
            out.append({'volumeID': snap.volume_id, 'snapshotID': snap.id,
                        'snapshotUUID': snap.uuid,
                        'checksum': self.snapshot_dict(snap)['checksum']})
        return out

    def dump(self) -> dict[str, Any]:
        luns = {lun.scsi_id: lun.to_dict() for lun in self.fabric.luns()}
        volumes = []
        for vol in sorted(self.volumes.values(), key=lambda v: v.id):
            d = self.volume_dict(vol)
            d['lun'] = luns.get(vol.scsi_id)
            volumes.append(d)
        return {
            'cluster': {'name': self.cluster_name, 'uniqueID': self.unique_id,
                        'uuid': self.cluster_uuid, 'mvip': self.mvip, 'svip': self.svip,
                        'dataDir': self.data_dir, 'cloneSeconds': self.clone_seconds},
            'accounts': [self.account_dict(a) for a in self.accounts.values()],
            'volumes': volumes,
            'snapshots': [dict(self.snapshot_dict(s), path=s.path)
                          for s in sorted(self.snapshots.values(), key=lambda s: s.id)],
            'groupSnapshots': [self.group_dict(g) for g in self.groups.values()],
            'volumeAccessGroups': [self.vag_dict(g) for g in self.vags.values()],
            'asyncResults': [{'asyncHandle': j.handle, 'resultType': j.result_type,
                              'finished': j.finished, 'error': j.error}
                             for j in self.jobs.values()],
            'calls': dict(self.calls),
            'faults': [f.to_dict() for f in self.faults],
        }

    def list_volumes(self, vols: list[_Volume], start: int | None,
                     limit: int | None) -> dict[str, Any]:
        vols = sorted(vols, key=lambda v: v.id)
        if start is not None:
            vols = [v for v in vols if v.id >= start]
        if limit:
            vols = vols[:limit]
        return {'volumes': [self.volume_dict(v) for v in vols]}

    # == Element methods ===========================================================
    # Each takes _Params and returns the result dict or raises ElementFault.

    # -- accounts --------------------------------------------------------------------

    def _m_AddAccount(self, p: _Params) -> dict[str, Any]:
        username = p.get('username', str, required=True)
        self.check_name('Account', username, 'accountNameLengthMin', 'accountNameLengthMax')
        if any(a.username == username for a in self.accounts.values()):
            raise ElementFault('xDuplicateUsername', 'Account %s already exists.' % username)
        if len(self.accounts) >= self.limits['accountCountMax']:
            raise ElementFault('xExceededLimit', 'accountCountMax reached')
        secrets_ = []
        for key in ('initiatorSecret', 'targetSecret'):
            value = p.get(key, str)
            if value is None:
                value = ''.join(secrets.choice(_SECRET_CHARS) for _ in range(12))
            elif not (self.limits['secretLengthMin'] <= len(value)
                      <= self.limits['secretLengthMax']):
                raise ElementFault('xInvalidParameter', '%s must be %d to %d characters' % (
                    key, self.limits['secretLengthMin'], self.limits['secretLengthMax']))
            secrets_.append(value)
        acct = _Account(id=self.new_id('account'), username=username,
                        initiator_secret=secrets_[0], target_secret=secrets_[1],
                        attributes=self.check_attributes(p.get('attributes', dict, {})),
                        enable_chap=p.get('enableChap', bool, True))
        self.accounts[acct.id] = acct
        return {'accountID': acct.id, 'account': self.account_dict(acct)}

    def _m_GetAccountByName(self, p: _Params) -> dict[str, Any]:
        username = p.get('username', str, required=True)
        for acct in self.accounts.values():
            if acct.username == username:
                return {'account': self.account_dict(acct)}
        raise ElementFault('xUnknownAccount', 'Unknown account %s' % username)

    def _m_GetAccountByID(self, p: _Params) -> dict[str, Any]:
        return {'account': self.account_dict(self.account(p.integer('accountID', required=True)))}

    def _m_ListAccounts(self, p: _Params) -> dict[str, Any]:
        # Element API guide, ListAccounts: startAccountID, limit -> accounts[].
        accts = sorted(self.accounts.values(), key=lambda a: a.id)
        start = p.integer('startAccountID')
        if start is not None:
            accts = [a for a in accts if a.id >= start]
        limit = p.integer('limit')
        if limit:
            accts = accts[:limit]
        p.used.add('includeStorageContainers')
        return {'accounts': [self.account_dict(a) for a in accts]}

    def _m_ModifyAccount(self, p: _Params) -> dict[str, Any]:
        # Element API guide, ModifyAccount: accountID, then any of username,
        # status, initiatorSecret, targetSecret, attributes, enableChap ->
        # account. A changed secret takes effect at the next iSCSI login.
        # Everything is checked before anything changes.
        acct = self.account(p.integer('accountID', required=True))
        username = p.get('username', str)
        if username is not None:
            self.check_name('Account', username, 'accountNameLengthMin',
                            'accountNameLengthMax')
            if any(a.username == username and a is not acct
                   for a in self.accounts.values()):
                raise ElementFault('xDuplicateUsername',
                                   'Account %s already exists.' % username)
        new_secrets: dict[str, str] = {}
        for key in ('initiatorSecret', 'targetSecret'):
            value = p.get(key, str)
            if value is None:
                continue
            if not (self.limits['secretLengthMin'] <= len(value)
                    <= self.limits['secretLengthMax']):
                raise ElementFault('xInvalidParameter', '%s must be %d to %d characters' % (
                    key, self.limits['secretLengthMin'], self.limits['secretLengthMax']))
            new_secrets[key] = value
        attributes = p.get('attributes', dict)
        attributes = self.check_attributes(attributes) if attributes is not None else None
        enable_chap = p.get('enableChap', bool)
        status = p.get('status', str)
        if status is not None and status not in ('active', 'locked'):
            raise ElementFault('xUnrecognizedEnumString', status)
        if username is not None:
            acct.username = username
        acct.initiator_secret = new_secrets.get('initiatorSecret', acct.initiator_secret)
        acct.target_secret = new_secrets.get('targetSecret', acct.target_secret)
        if attributes is not None:
            acct.attributes = attributes
        if enable_chap is not None:
            acct.enable_chap = enable_chap
        for vol in self.volumes.values():
            if vol.account_id == acct.id:
                self.apply_access(vol)
        return {'account': self.account_dict(acct)}

    # -- volumes ---------------------------------------------------------------------

    def _m_CreateVolume(self, p: _Params) -> dict[str, Any]:
        name = p.get('name', str, required=True)
        self.check_name('Volume', name, 'volumeNameLengthMin', 'volumeNameLengthMax')
        account_id = p.integer('accountID', required=True)
        size = self.check_size(p.integer('totalSize', required=True))
        self.account(account_id)
        qos = self.check_qos(p.get('qos', dict, {}), QOS_DEFAULT)
        attributes = self.check_attributes(p.get('attributes', dict, {}))
        access = self.check_access(p.get('access', str, 'readWrite'))
        for accepted in ('sliceCount', 'qosPolicyID', 'associateWithQoSPolicy',
                         'fifoSize', 'minFifoSize', 'dedupe'):
            p.used.add(accepted)
        vol = self.make_volume(name, account_id, size, p.get('enable512e', bool, False),
                               access, qos, attributes)
        return {'volumeID': vol.id, 'volume': self.volume_dict(vol), 'curve': dict(QOS_CURVE)}

    def _m_DeleteVolume(self, p: _Params) -> dict[str, Any]:
        vol = self.volume(p.integer('volumeID', required=True))
        vol.status = 'deleted'
        vol.delete_time = _now()
        vol.purge_time = _later(self.purge_seconds)
        vol.purge_at = time.monotonic() + self.purge_seconds
        for vag in self.vags.values():
            if vol.id in vag.volumes:
                vag.volumes.remove(vol.id)
                vag.deleted_volumes.append(vol.id)
        self.apply_access(vol)
        return {'volume': self.volume_dict(vol)}

    def _m_RestoreDeletedVolume(self, p: _Params) -> dict[str, Any]:
        vol = self.volume(p.integer('volumeID', required=True), deleted_ok=True)
        if vol.status != 'deleted':
            # (unverified) name.
            raise ElementFault('xInvalidParameter', 'Volume %d is not deleted.' % vol.id)
        vol.status = 'active'
        vol.delete_time = vol.purge_time = ''
        for vag in self.vags.values():
            if vol.id in vag.deleted_volumes:
                vag.deleted_volumes.remove(vol.id)
                vag.volumes.append(vol.id)
        self.apply_access(vol)
        return {}

    def _m_PurgeDeletedVolume(self, p: _Params) -> dict[str, Any]:
        vol = self.volume(p.integer('volumeID', required=True), deleted_ok=True)
        if vol.status != 'deleted':
            # (unverified) name.
            raise ElementFault('xInvalidParameter', 'Volume %d must be deleted before it '
                               'is purged.' % vol.id)
        self.drop_volume(vol)
        return {}

    def _m_ListVolumes(self, p: _Params) -> dict[str, Any]:
        vols = list(self.volumes.values())
        status = p.get('volumeStatus', str)
        if status is not None:
            if status not in ('creating', 'snapshotting', 'active', 'deleted', 'init'):
                raise ElementFault('xUnrecognizedEnumString', status)
            vols = [v for v in vols if v.status == status]
        accounts = p.ints('accounts')
        if accounts is not None:
            vols = [v for v in vols if v.account_id in accounts]
        ids = p.ints('volumeIDs')
        if ids is not None:
            vols = [v for v in vols if v.id in ids]
        name = p.get('volumeName', str)
        if name is not None:
            vols = [v for v in vols if v.name == name]
        if p.get('isPaired', bool) is True:
            vols = []
        p.used.add('includeVirtualVolumes')
        return self.list_volumes(vols, p.integer('startVolumeID'), p.integer('limit'))

    def _m_ListActiveVolumes(self, p: _Params) -> dict[str, Any]:
        p.used.add('includeVirtualVolumes')
        vols = [v for v in self.volumes.values() if v.status == 'active']
        return self.list_volumes(vols, p.integer('startVolumeID'), p.integer('limit'))

    def _m_ListVolumesForAccount(self, p: _Params) -> dict[str, Any]:
        acct = self.account(p.integer('accountID', required=True))
        p.used.add('includeVirtualVolumes')
        vols = [v for v in self.volumes.values() if v.account_id == acct.id]
        return self.list_volumes(vols, p.integer('startVolumeID'), p.integer('limit'))

    def _m_ModifyVolume(self, p: _Params) -> dict[str, Any]:
        vol = self.volume(p.integer('volumeID', required=True))
        size = p.integer('totalSize')
        access = p.get('access', str)
        qos = p.get('qos', dict)
        attributes = p.get('attributes', dict)
        account_id = p.integer('accountID')
        # Validate everything before changing anything.
        new_size = None
        if size is not None:
            if size < vol.total_size:
                raise ElementFault('xVolumeShrinkProhibited',
                                   'Lowering a volume size is not allowed.')
            new_size = self.check_size(size)
        if access is not None:
            self.check_access(access)
        new_qos = self.check_qos(qos, vol.qos) if qos is not None else None
        new_attrs = self.check_attributes(attributes) if attributes is not None else None
        if account_id is not None:
            self.account(account_id)
        for accepted in ('qosPolicyID', 'associateWithQoSPolicy', 'setCreateTime',
                         'createTime', 'fifoSize', 'minFifoSize'):
            p.used.add(accepted)
        if new_size is not None and new_size != vol.total_size:
            self.fabric.resize_lun(vol.scsi_id, new_size)
            vol.total_size = new_size
        if access is not None:
            vol.access = access
        if new_qos is not None:
            vol.qos = new_qos
        if new_attrs is not None:
            vol.attributes = new_attrs
        if account_id is not None:
            vol.account_id = account_id
        self.apply_access(vol)
        return {'volume': self.volume_dict(vol)}

    def _m_CloneVolume(self, p: _Params) -> dict[str, Any]:
        src = self.volume(p.integer('volumeID', required=True))
        name = p.get('name', str, required=True)
        self.check_name('Volume', name, 'volumeNameLengthMin', 'volumeNameLengthMax')
        snap = None
        snapshot_id = p.integer('snapshotID')
        if snapshot_id is not None:
            snap = self.snapshot(snapshot_id)
            if snap.volume_id != src.id:
                raise ElementFault('xSnapshotIDDoesNotExist', 'SnapshotID %d is not a '
                                   'snapshot of volume %d.' % (snapshot_id, src.id))
        account_id = p.integer('newAccountID', src.account_id)
        self.account(account_id)
        base_size = snap.total_size if snap else src.total_size
        new_size = p.integer('newSize')
        size = base_size
        if new_size is not None:
            if new_size < base_size:
                raise ElementFault('xInvalidParameter', 'newSize %d is smaller than the '
                                   'source (%d)' % (new_size, base_size))
            size = self.check_size(new_size)
        access = self.check_access(p.get('access', str, src.access))
        attributes = p.get('attributes', dict)
        attributes = (self.check_attributes(attributes) if attributes is not None
                      else copy.deepcopy(src.attributes))
        enable512e = p.get('enable512e', bool, src.enable512e)
        p.used.update(('enableSnapMirrorReplication', 'qosPolicyID'))
        running = sum(1 for j in self.jobs.values()
                      if j.source_id == src.id and not j.finished)
        if running >= self.limits['cloneJobsPerVolumeMax']:
            raise ElementFault('xMaxClonesPerVolumeExceeded', 'Volume %d already has %d '
                               'clone jobs running.' % (src.id, running))
        job_error = self.take_async_fault('CloneVolume')
        status = 'init' if self.clone_seconds > 0 or job_error else 'active'
        clone = self.make_volume(name, account_id, size, enable512e, access,
                                 dict(src.qos), attributes, status=status)
        new_lun = self.fabric.get_lun(clone.scsi_id)
        if snap is not None:
            self.fabric.copy_tree(snap.path, new_lun.path)
        else:
            src_lun = self.fabric.get_lun(src.scsi_id)
            with src_lun.lock:
                self.fabric.copy_tree(src_lun.path, new_lun.path)
        handle = self.new_id('async')
        now = _now()
        job = _Job(handle=handle, result_type='Clone', source_id=src.id,
                   volume_id=clone.id, create_time=now, last_update=now,
                   done_at=time.monotonic() + self.clone_seconds, error=job_error)
        self.jobs[handle] = job
        result = {'volumeID': clone.id, 'cloneID': handle, 'asyncHandle': handle,
                  'volume': self.volume_dict(clone), 'curve': dict(QOS_CURVE)}
        self.tick()
        return result

    def take_async_fault(self, method: str) -> dict[str, Any] | None:
        for fault in self.faults:
            if fault.method == 'async:' + method and fault.hit():
                return ElementFault(fault.error_name or 'xSnapshotFailed',
                                    fault.message or 'injected job failure',
                                    fault.code).to_dict()
        return None

    def _m_GetAsyncResult(self, p: _Params) -> dict[str, Any]:
        handle = p.integer('asyncHandle', required=True)
        keep = p.get('keepResult', bool, False)
        job = self.jobs.get(handle)
        if job is None:
            raise ElementFault('xDBNoSuchPath', 'DBClient operation requested on a '
                               'non-existent path at [/asyncresults/%d]' % handle)
        out: dict[str, Any] = {
            'resultType': job.result_type, 'createTime': job.create_time,
            'lastUpdateTime': job.last_update,
            'details': {'volumeID': job.volume_id, 'cloneID': job.handle},
        }
        if not job.finished:
            out['status'] = 'running'
            return out
        out['status'] = 'complete'
        if job.error is not None:
            out['error'] = dict(job.error)
        else:
            out['result'] = {'cloneID': job.handle, 'volumeID': job.volume_id,
                             'message': 'Clone complete.'}
        if not keep:
            del self.jobs[handle]
        return out

    # -- snapshots ------------------------------------------------------------------------

    def _snapshot_params(self, p: _Params, default_name: str
                         ) -> tuple[str, dict[str, Any], str | None]:
        name = p.get('name', str, default_name)
        if not 1 <= len(name) <= self.limits['snapshotNameLengthMax']:
            raise ElementFault('xInvalidParameter', 'snapshot name must be 1 to %d '
                               'characters' % self.limits['snapshotNameLengthMax'])
        attributes = self.check_attributes(p.get('attributes', dict, {}))
        expiration = p.get('expirationTime', str)
        retention = p.get('retention', str)
        if retention is not None and expiration is None:
            try:
                h, m, s = (int(x) for x in retention.split(':'))
            except ValueError:
                raise ElementFault('xInvalidParameter', 'retention must be HH:MM:SS') from None
            expiration = _later(h * 3600 + m * 60 + s)
        p.used.update(('ensureSerialCreation', 'snapMirrorLabel'))
        return name, attributes, expiration

    def _m_CreateSnapshot(self, p: _Params) -> dict[str, Any]:
        vol = self.volume(p.integer('volumeID', required=True))
        if p.integer('snapshotID') is not None:
            raise ElementFault('xInvalidParameter', 'snapshot branches (snapshotID) are not '
                               'modelled by the simulator')
        name, attributes, expiration = self._snapshot_params(p, _now())
        remote = p.get('enableRemoteReplication', bool, False)
        self.check_snapshot_room(vol.id)
        with self.fabric.get_lun(vol.scsi_id).lock:
            snap = self.take_snapshot(vol, name, attributes, expiration_time=expiration,
                                      remote=remote)
        d = self.snapshot_dict(snap)
        return {'snapshotID': snap.id, 'checksum': d['checksum'], 'snapshot': d}

    def _m_DeleteSnapshot(self, p: _Params) -> dict[str, Any]:
        self.drop_snapshot(self.snapshot(p.integer('snapshotID', required=True)))
        return {}

    def _m_ListSnapshots(self, p: _Params) -> dict[str, Any]:
        snaps = sorted(self.snapshots.values(), key=lambda s: s.id)
        volume_id = p.integer('volumeID')
        if volume_id is not None:
            self.volume(volume_id, deleted_ok=True)
            snaps = [s for s in snaps if s.volume_id == volume_id]
        snapshot_id = p.integer('snapshotID')
        if snapshot_id is not None:
            snaps = [s for s in snaps if s.id == snapshot_id]
        return {'snapshots': [self.snapshot_dict(s) for s in snaps]}

    def _m_RollbackToSnapshot(self, p: _Params) -> dict[str, Any]:
        vol = self.volume(p.integer('volumeID', required=True))
        snap = self.snapshot(p.integer('snapshotID', required=True))
        save = p.get('saveCurrentState', bool, required=True)
        if snap.volume_id != vol.id:
            raise ElementFault('xSnapshotIDDoesNotExist', 'SnapshotID %d is not a snapshot '
                               'of volume %d.' % (snap.id, vol.id))
        name, attributes, _exp = self._snapshot_params(p, _now())
        if save:
            self.check_snapshot_room(vol.id)
        saved = None
        with self.fabric.get_lun(vol.scsi_id).lock:
            if save:
                saved = self.take_snapshot(vol, name, attributes)
            self.rollback(vol, snap)
        if saved is None:
            return {'snapshotID': None, 'snapshot': None, 'checksum': None}
        d = self.snapshot_dict(saved)
        return {'snapshotID': saved.id, 'snapshot': d, 'checksum': d['checksum']}

    # -- group snapshots ------------------------------------------------------------------

    def _group_volumes(self, ids: list[int]) -> list[_Volume]:
        if not ids:
            raise ElementFault('xInvalidParameter', 'volumes must not be empty')
        if len(set(ids)) != len(ids):
            raise ElementFault('xInvalidParameter', 'volumes lists a volume twice')
        if len(ids) > self.limits['volumesPerGroupSnapshotMax']:
            raise ElementFault('xExceededLimit', 'volumesPerGroupSnapshotMax (%d) exceeded'
                               % self.limits['volumesPerGroupSnapshotMax'])
        return [self.volume(i) for i in ids]

    def snapshot_group(self, vols: list[_Volume], name: str,
                       attributes: dict[str, Any], expiration: str | None) -> _GroupSnapshot:
        """Snapshot all ``vols`` while holding every one of their LUN locks."""
        for vol in vols:
            self.check_snapshot_room(vol.id)
        grp = _GroupSnapshot(id=self.new_id('group'), name=name, create_time=_now(),
                             attributes=attributes, uuid=str(uuidlib.uuid4()))
        locks = [self.fabric.get_lun(v.scsi_id).lock for v in sorted(vols, key=lambda v: v.id)]
        for lock in locks:
            lock.acquire()
        try:
            for vol in vols:
                self.take_snapshot(vol, name, copy.deepcopy(attributes), group=grp,
                                   expiration_time=expiration)
        finally:
            for lock in reversed(locks):
                lock.release()
        self.groups[grp.id] = grp
        return grp

    def _m_CreateGroupSnapshot(self, p: _Params) -> dict[str, Any]:
        vols = self._group_volumes(p.ints('volumes', required=True) or [])
        name, attributes, expiration = self._snapshot_params(p, _now())
        p.used.add('enableRemoteReplication')
        grp = self.snapshot_group(vols, name, attributes, expiration)
        return {'groupSnapshotID': grp.id, 'groupSnapshotUUID': grp.uuid,
                'members': self.members(grp), 'groupSnapshot': self.group_dict(grp)}

    def _m_DeleteGroupSnapshot(self, p: _Params) -> dict[str, Any]:
        grp = self.group(p.integer('groupSnapshotID', required=True))
        save = p.get('saveMembers', bool, False)
        for sid in list(grp.members):
            snap = self.snapshots[sid]
            if save:
                snap.group_id, snap.group_uuid = 0, ''
            else:
                self.drop_snapshot(snap)
        self.groups.pop(grp.id, None)
        return {}

    def _m_ListGroupSnapshots(self, p: _Params) -> dict[str, Any]:
        groups = sorted(self.groups.values(), key=lambda g: g.id)
        gid = p.integer('groupSnapshotID')
        if gid is not None:
            groups = [g for g in groups if g.id == gid]
        vol_ids = p.ints('volumes')
        if vol_ids is not None:
            groups = [g for g in groups
                      if any(self.snapshots[s].volume_id in vol_ids for s in g.members)]
        return {'groupSnapshots': [self.group_dict(g) for g in groups]}

    def _m_RollbackToGroupSnapshot(self, p: _Params) -> dict[str, Any]:
        grp = self.group(p.integer('groupSnapshotID', required=True))
        save = p.get('saveCurrentState', bool, required=True)
        name, attributes, _exp = self._snapshot_params(p, _now())
        pairs = [(self.volume(self.snapshots[s].volume_id), self.snapshots[s])
                 for s in grp.members]
        saved = None
        if save:
            saved = self.snapshot_group([v for v, _s in pairs], name, attributes, None)
        locks = [self.fabric.get_lun(v.scsi_id).lock
                 for v, _s in sorted(pairs, key=lambda vs: vs[0].id)]
        for lock in locks:
            lock.acquire()
        try:
            for vol, snap in pairs:
                self.rollback(vol, snap)
        finally:
            for lock in reversed(locks):
                lock.release()
        if saved is None:
            return {}
        return {'groupSnapshotID': saved.id, 'groupSnapshotUUID': saved.uuid,
                'members': self.members(saved), 'groupSnapshot': self.group_dict(saved)}

    # -- cluster ---------------------------------------------------------------------------

    def _m_GetClusterCapacity(self, p: _Params) -> dict[str, Any]:
        provisioned = sum(v.total_size for v in self.volumes.values())
        used = 0
        for vol in self.volumes.values():
            try:
                root = self.lun_path(vol)
            except KeyError:
                continue
            for dirpath, _dirs, files in os.walk(root):
                used += sum(allocated_bytes(os.path.join(dirpath, f)) for f in files)
        max_used = self.capacity_bytes
        max_prov = self.capacity_bytes // 2
        non_zero = -(-used // BLOCK)
        return {'clusterCapacity': {
            'maxUsedSpace': max_used, 'usedSpace': used,
            'maxProvisionedSpace': max_prov, 'provisionedSpace': provisioned,
            'maxOverProvisionableSpace': max_prov * 5,
            'activeBlockSpace': used, 'uniqueBlocksUsedSpace': used,
            'nonZeroBlocks': non_zero, 'zeroBlocks': max(provisioned // BLOCK - non_zero, 0),
            'uniqueBlocks': non_zero, 'snapshotNonZeroBlocks': 0,
            'usedMetadataSpace': 0, 'usedMetadataSpaceInSnapshots': 0,
            'maxUsedMetadataSpace': max_used // 10,
            'activeSessions': 0, 'currentIOPS': 0, 'averageIOPS': 0, 'peakIOPS': 0,
            'maxIOPS': 200000, 'peakActiveSessions': 0, 'totalOps': 0,
            'timestamp': _now(),
        }}

    def _m_GetClusterInfo(self, p: _Params) -> dict[str, Any]:
        return {'clusterInfo': {
            'name': self.cluster_name, 'mvip': self.mvip, 'svip': self.svip,
            'uniqueID': self.unique_id, 'uuid': self.cluster_uuid, 'repCount': 2,
            'encryptionAtRestState': 'disabled', 'attributes': {},
            'ensemble': [self.mvip], 'mvipNodeID': 1, 'svipNodeID': 1,
        }}

    def _m_GetLimits(self, p: _Params) -> dict[str, Any]:
        return dict(self.limits)

    # -- volume access groups ---------------------------------------------------------------

    def check_initiators(self, vag: _Vag | None, initiators: list[str]) -> list[str]:
        """Validate initiators joining ``vag``; return them without repeats."""
        out: list[str] = []
        for ini in initiators:
            if not ini or len(ini) > self.limits['initiatorNameLengthMax'] or not (
                    ini.startswith(('iqn.', 'eui.', 'naa.'))
                    or all(c in string.hexdigits + ':' for c in ini)):
                raise ElementFault('xInvalidParameter', 'invalid initiator name %r' % ini)
            if ini in out:
                continue
            if vag is not None and ini in vag.initiators:
                raise ElementFault('xAlreadyInVolumeAccessGroup', 'Initiator %s is already '
                                   'in volume access group %d.' % (ini, vag.id))
            elsewhere = [g.id for g in self.vags.values()
                         if g is not vag and ini in g.initiators]
            if len(elsewhere) >= self.limits['volumeAccessGroupsPerInitiatorCountMax']:
                raise ElementFault('xExceededLimit', 'Initiator %s is already in volume '
                                   'access group %s; volumeAccessGroupsPerInitiatorCountMax '
                                   'is %d.' % (ini, elsewhere[0], self.limits[
                                       'volumeAccessGroupsPerInitiatorCountMax']))
            out.append(ini)
        have = len(vag.initiators) if vag is not None else 0
        if have + len(out) > self.limits['initiatorsPerVolumeAccessGroupCountMax']:
            raise ElementFault('xExceededLimit', 'initiatorsPerVolumeAccessGroupCountMax '
                               '(%d) exceeded' % self.limits[
                                   'initiatorsPerVolumeAccessGroupCountMax'])
        return out

    def check_vag_volumes(self, vag: _Vag | None, ids: list[int]) -> list[_Volume]:
        out: list[_Volume] = []
        for vid in ids:
            vol = self.volume(vid)
            if vol in out:
                continue
            if vag is not None and vid in vag.volumes:
                raise ElementFault('xAlreadyInVolumeAccessGroup', 'Volume %d is already in '
                                   'volume access group %d.' % (vid, vag.id))
            count = sum(1 for g in self.vags.values() if vid in g.volumes)
            if count >= self.limits['volumeAccessGroupsPerVolumeCountMax']:
                raise ElementFault('xExceededLimit', 'Volume %d is already in %d volume '
                                   'access groups.' % (vid, count))
            out.append(vol)
        have = len(vag.volumes) if vag is not None else 0
        if have + len(out) > self.limits['volumesPerVolumeAccessGroupCountMax']:
            raise ElementFault('xExceededLimit', 'volumesPerVolumeAccessGroupCountMax '
                               'exceeded')
        return out

    def _m_CreateVolumeAccessGroup(self, p: _Params) -> dict[str, Any]:
        name = p.get('name', str, required=True)
        self.check_name('Volume access group', name, 'volumeAccessGroupNameLengthMin',
                        'volumeAccessGroupNameLengthMax')
        if len(self.vags) >= self.limits['volumeAccessGroupCountMax']:
            raise ElementFault('xExceededLimit', 'volumeAccessGroupCountMax (%d) reached'
                               % self.limits['volumeAccessGroupCountMax'])
        initiators = self.check_initiators(None, p.strs('initiators') or [])
        vols = self.check_vag_volumes(None, p.ints('volumes') or [])
        attributes = self.check_attributes(p.get('attributes', dict, {}))
        p.used.update(('virtualNetworkID', 'virtualNetworkTags'))
        vag = _Vag(id=self.new_id('vag'), name=name, initiators=initiators,
                   volumes=[v.id for v in vols], attributes=attributes)
        self.vags[vag.id] = vag
        for vol in vols:
            self.apply_access(vol)
        return {'volumeAccessGroupID': vag.id, 'volumeAccessGroup': self.vag_dict(vag)}

    def _refresh(self, vag: _Vag) -> None:
        for vid in vag.volumes + vag.deleted_volumes:
            self.apply_access(self.volumes[vid])

    def _m_AddInitiatorsToVolumeAccessGroup(self, p: _Params) -> dict[str, Any]:
        vag = self.vag(p.integer('volumeAccessGroupID', required=True))
        vag.initiators.extend(self.check_initiators(vag, p.strs('initiators', True) or []))
        self._refresh(vag)
        return {'volumeAccessGroup': self.vag_dict(vag)}

    def _m_RemoveInitiatorsFromVolumeAccessGroup(self, p: _Params) -> dict[str, Any]:
        vag = self.vag(p.integer('volumeAccessGroupID', required=True))
        initiators = p.strs('initiators', True) or []
        p.used.add('deleteOrphanInitiators')
        for ini in initiators:
            if ini not in vag.initiators:
                raise ElementFault('xNotInVolumeAccessGroup', 'Initiator %s is not in '
                                   'volume access group %d.' % (ini, vag.id))
        vag.initiators = [i for i in vag.initiators if i not in initiators]
        self._refresh(vag)
        return {'volumeAccessGroup': self.vag_dict(vag)}

    def _m_AddVolumesToVolumeAccessGroup(self, p: _Params) -> dict[str, Any]:
        vag = self.vag(p.integer('volumeAccessGroupID', required=True))
        vols = self.check_vag_volumes(vag, p.ints('volumes', True) or [])
        vag.volumes.extend(v.id for v in vols)
        for vol in vols:
            self.apply_access(vol)
        return {'volumeAccessGroup': self.vag_dict(vag)}

    def _m_RemoveVolumesFromVolumeAccessGroup(self, p: _Params) -> dict[str, Any]:
        vag = self.vag(p.integer('volumeAccessGroupID', required=True))
        ids = p.ints('volumes', True) or []
        for vid in ids:
            if vid not in vag.volumes and vid not in vag.deleted_volumes:
                raise ElementFault('xNotInVolumeAccessGroup', 'Volume %d is not in volume '
                                   'access group %d.' % (vid, vag.id))
        vag.volumes = [v for v in vag.volumes if v not in ids]
        vag.deleted_volumes = [v for v in vag.deleted_volumes if v not in ids]
        for vid in ids:
            self.apply_access(self.volumes[vid])
        return {'volumeAccessGroup': self.vag_dict(vag)}

    def _m_ListVolumeAccessGroups(self, p: _Params) -> dict[str, Any]:
        vags = sorted(self.vags.values(), key=lambda g: g.id)
        wanted = p.ints('volumeAccessGroups')
        out: dict[str, Any] = {}
        if wanted is not None:
            out['volumeAccessGroupsNotFound'] = [i for i in wanted if i not in self.vags]
            vags = [g for g in vags if g.id in wanted]
        start = p.integer('startVolumeAccessGroupID')
        if start is not None:
            vags = [g for g in vags if g.id >= start]
        limit = p.integer('limit')
        if limit:
            vags = vags[:limit]
        out['volumeAccessGroups'] = [self.vag_dict(g) for g in vags]
        return out

    def _m_DeleteVolumeAccessGroup(self, p: _Params) -> dict[str, Any]:
        vag = self.vag(p.integer('volumeAccessGroupID', required=True))
        p.used.update(('deleteOrphanInitiators', 'force'))
        del self.vags[vag.id]
        for vid in vag.volumes + vag.deleted_volumes:
            self.apply_access(self.volumes[vid])
        return {}

    # == dispatch ===================================================================

    def begin(self, method: str) -> tuple[float, ElementFault | None, bool, bool]:
        """Count a call and decide its faults: (latency, error, drop_after,
        error_after)."""
        with self.lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            latency, error, drop, after = 0.0, None, False, False
            for fault in self.faults:
                if fault.method not in (method, '*') or not fault.hit():
                    continue
                latency += fault.latency or 0.0
                if fault.error_name and error is None:
                    error = ElementFault(fault.error_name, fault.message or
                                         'Injected fault on %s' % method, fault.code)
                    after = fault.error_after
                drop = drop or fault.drop_after
            return latency, error, drop, after

    def execute(self, method: str, version: tuple[int, int],
                params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run one method: (result, unusedParameters); raises ElementFault."""
        fn = self.methods.get(method)
        if fn is None or version < METHOD_MIN_VERSION.get(method, (1, 0)):
            raise ElementFault('xUnknownAPIMethod', 'Unknown method=%s for API version '
                               '%d.%d' % (method, *version))
        p = _Params(params)
        with self.lock:
            self.tick()
            result = fn(p)
            self.tick()
        return result, p.unused()

    def add_fault(self, spec: dict[str, Any]) -> _Fault:
        method = spec.get('method')
        if not isinstance(method, str) or not method:
            raise ValueError('fault needs a method name')
        nth = int(spec.get('nth', 1))
        times = spec.get('times', 1)
        if nth < 1 or (times is not None and int(times) < 1):
            raise ValueError('nth and times must be at least 1')
        if not (spec.get('error_name') or spec.get('drop_after') or spec.get('latency')):
            raise ValueError('a fault needs error_name, drop_after or latency')
        with self.lock:
            fault = _Fault(id=self.new_id('fault'), method=method,
                           error_name=spec.get('error_name'), nth=nth,
                           times=None if times is None else int(times),
                           drop_after=bool(spec.get('drop_after')),
                           error_after=bool(spec.get('error_after')),
                           latency=None if spec.get('latency') is None
                           else float(spec['latency']),
                           code=int(spec.get('code', 500)), message=spec.get('message'))
            self.faults.append(fault)
            return fault


# -- HTTP -------------------------------------------------------------------------------

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: ElementSimulator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut every open (keep-alive) connection, as a cluster going down would."""
        with self._conns_lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    # Headers and body leave in two writes; without TCP_NODELAY every
    # keep-alive request waits out a delayed ACK (40 ms).
    disable_nagle_algorithm = True
    server: _Server
    server_version = 'xensm-sim-solidfire'

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug('%s %s', self.address_string(), format % args)

    def _body(self) -> bytes | None:
        length = self.headers.get('Content-Length')
        if length is None:
            self._send(411, {'error': 'Content-Length required'})
            return None
        return self.rfile.read(int(length))

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            # The client gave up (a latency fault beyond its timeout).
            self.close_connection = True

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith('/sim/'):
            self._control('GET', path, b'')
        else:
            self._send(405 if path.startswith('/json-rpc/') else 404,
                       {'error': 'not found'})

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        body = self._body()
        if body is None:
            return
        if path.startswith('/json-rpc/'):
            self._rpc(path[len('/json-rpc/'):].strip('/'), body)
        elif path.startswith('/sim/'):
            self._control('POST', path, body)
        else:
            self._send(404, {'error': 'not found'})

    def _control(self, verb: str, path: str, body: bytes) -> None:
        try:
            spec = json.loads(body) if body else {}
            status, payload = self.server.sim.control_request(verb, path, spec)
        except (ValueError, TypeError) as exc:
            status, payload = 400, {'error': str(exc)}
        self._send(status, payload)

    def _rpc(self, version_text: str, body: bytes) -> None:
        sim = self.server.sim
        if not sim.authorized(self.headers.get('Authorization')):
            self._send(401, {'error': 'Unauthorized'},
                       {'WWW-Authenticate': 'Basic realm="SolidFire"'})
            return
        req_id: Any = None
        try:
            try:
                request = json.loads(body)
            except ValueError:
                # (unverified) name.
                raise ElementFault('xInvalidJSON', 'request body is not JSON') from None
            if not isinstance(request, dict):
                raise ElementFault('xInvalidJSON', 'request must be a JSON object')
            req_id = request.get('id')
            method = request.get('method')
            if not isinstance(method, str) or not method:
                raise ElementFault('xMissingParameter', 'Missing member=[method]')
            params = request.get('params') or {}
            if not isinstance(params, dict):
                raise ElementFault('xInvalidParameter', 'params must be an object')
            version = _version(version_text)
            if version is None or not API_VERSION_RANGE[0] <= version <= API_VERSION_RANGE[1]:
                # (unverified) name.
                raise ElementFault('xUnknownAPIVersion', 'Unknown API version %s'
                                   % version_text)
            latency, error, drop, error_after = sim.cluster.begin(method)
            if latency:
                time.sleep(latency)
            if error is not None and not error_after:
                raise error
            try:
                result, unused = sim.cluster.execute(method, version, params)
            except ElementFault:
                if drop:
                    self._drop(method)
                    return
                raise
            if drop:
                self._drop(method)
                return
            if error is not None:
                raise error
        except ElementFault as fault:
            LOG.debug('Element simulator answers %s', fault.name)
            self._send(200, {'id': req_id, 'error': fault.to_dict()})
            return
        answer: dict[str, Any] = {'id': req_id, 'result': result}
        if unused:
            answer['unusedParameters'] = unused
        self._send(200, answer)

    def _drop(self, method: str) -> None:
        LOG.debug('Element simulator drops the answer to %s', method)
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# -- public API ----------------------------------------------------------------------------

class ElementSimulator:
    """A SolidFire cluster on loopback, its volumes LUNs on ``fabric``.

    ``url`` is the MVIP (``http://host:port``), ``svip`` the iSCSI portal
    address of its targets, ``control`` the control-plane client. State lives
    on the instance and survives ``stop()``/``start()`` (same port), which is
    how a test makes the array unreachable for a while.
    """

    def __init__(self, fabric: Fabric, host: str = '127.0.0.1', port: int = 0,
                 username: str = 'admin', password: str = 'admin',
                 cluster_name: str = 'xensm-sim-sf', svip: str = '127.0.0.1',
                 unique_id: str | None = None, *, data_dir: str | None = None,
                 limits: dict[str, int] | None = None,
                 capacity_bytes: int = 20 * 1024 ** 4,
                 purge_seconds: float = PURGE_SECONDS) -> None:
        if unique_id is None:
            unique_id = ''.join(secrets.choice(string.ascii_lowercase + string.digits)
                                for _ in range(4))
        if len(unique_id) != 4 or not unique_id.isascii() or not unique_id.isalnum():
            raise ValueError('unique_id must be 4 ASCII letters or digits')
        self.fabric = fabric
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.svip = svip
        self.unique_id = unique_id
        if data_dir is None:
            data_dir = os.path.join(fabric.root_dir, 'solidfire',
                                    '%s-%s' % (unique_id, uuidlib.uuid4().hex[:8]))
        os.makedirs(data_dir, exist_ok=True)
        self.cluster = _Cluster(fabric, cluster_name=cluster_name, svip=svip, mvip=host,
                                unique_id=unique_id, data_dir=data_dir,
                                limits=dict(DEFAULT_LIMITS, **(limits or {})),
                                capacity_bytes=capacity_bytes,
                                purge_seconds=purge_seconds)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> ElementSimulator:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.sim = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        name='element-sim-%d' % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if thread is not None:
            thread.join(timeout=10)

    def __enter__(self) -> ElementSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = '[%s]' % self.host if ':' in self.host else self.host
        return 'http://%s:%d' % (host, self.port)

    @property
    def control(self) -> ElementControl:
        return ElementControl(self.url)

    @property
    def data_dir(self) -> str:
        return self.cluster.data_dir

    # -- used by the handler --------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith('Basic '):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(':')
        except ValueError:
            return False
        return (hmac.compare_digest(user, self.username)
                and hmac.compare_digest(password, self._password))

    def control_request(self, verb: str, path: str, spec: dict[str, Any]
                        ) -> tuple[int, dict[str, Any]]:
        c = self.cluster
        route = (verb, path.rstrip('/'))
        if route == ('GET', '/sim/calls'):
            with c.lock:
                return 200, {'calls': dict(c.calls)}
        if route == ('POST', '/sim/calls/reset'):
            with c.lock:
                c.calls.clear()
            return 200, {}
        if route == ('GET', '/sim/faults'):
            with c.lock:
                return 200, {'faults': [f.to_dict() for f in c.faults]}
        if route == ('POST', '/sim/faults'):
            return 200, {'fault': c.add_fault(spec).to_dict()}
        if route == ('POST', '/sim/faults/clear'):
            with c.lock:
                c.faults.clear()
            return 200, {}
        if route == ('POST', '/sim/config'):
            with c.lock:
                if 'clone_seconds' in spec:
                    c.clone_seconds = float(spec['clone_seconds'])
                if 'purge_seconds' in spec:
                    c.purge_seconds = float(spec['purge_seconds'])
                return 200, {'clone_seconds': c.clone_seconds,
                             'purge_seconds': c.purge_seconds}
        if route == ('GET', '/sim/dump'):
            with c.lock:
                c.tick()
                return 200, c.dump()
        return 404, {'error': 'no control route %s %s' % route}


class ElementControl:
    """Client of a simulator's ``/sim/...`` routes (works across processes)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip('/')
        self.timeout = timeout

    def _request(self, verb: str, path: str, payload: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
        data = None if verb == 'GET' else json.dumps(payload or {}).encode()
        req = urllib.request.Request(self.url + path, data=data, method=verb,
                                     headers={'Content-Type': 'application/json'})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                answer: dict[str, Any] = json.loads(resp.read() or b'{}')
                return answer
        except urllib.error.HTTPError as exc:
            raise RuntimeError('simulator control %s %s failed: %s %s' % (
                verb, path, exc.code, exc.read().decode(errors='replace'))) from None

    def calls(self) -> dict[str, int]:
        """Calls per method since the start or the last reset."""
        return dict(self._request('GET', '/sim/calls')['calls'])

    def reset_calls(self) -> None:
        self._request('POST', '/sim/calls/reset')

    def inject_fault(self, method: str, error_name: str | None = None, nth: int = 1,
                     times: int | None = 1, drop_after: bool = False,
                     latency: float | None = None, *, code: int = 500,
                     message: str | None = None, error_after: bool = False
                     ) -> dict[str, Any]:
        """Make calls ``nth..nth+times-1`` of ``method`` (from now) misbehave.

        ``error_name``: answer that Element error without executing;
        ``drop_after``: execute, then close the connection unanswered;
        ``latency``: sleep that long first. ``times=None``: forever.
        ``error_after``: execute, then answer ``error_name``.
        """
        return dict(self._request('POST', '/sim/faults', {
            'method': method, 'error_name': error_name, 'nth': nth, 'times': times,
            'drop_after': drop_after, 'latency': latency, 'code': code,
            'message': message, 'error_after': error_after})['fault'])

    def faults(self) -> list[dict[str, Any]]:
        return list(self._request('GET', '/sim/faults')['faults'])

    def clear_faults(self) -> None:
        self._request('POST', '/sim/faults/clear')

    def configure(self, *, clone_seconds: float | None = None,
                  purge_seconds: float | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if clone_seconds is not None:
            spec['clone_seconds'] = clone_seconds
        if purge_seconds is not None:
            spec['purge_seconds'] = purge_seconds
        return self._request('POST', '/sim/config', spec)

    def dump(self) -> dict[str, Any]:
        """The whole simulator state (volumes carry their fabric ``lun``)."""
        return self._request('GET', '/sim/dump')
