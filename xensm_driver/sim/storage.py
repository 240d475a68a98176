"""SR types: SM records, device_config rules, where an SR lives, space maths.

Each SR type is a :class:`Backend` (the simulator's model of one SM plugin):
its SM record (capabilities, configuration keys), how it validates
``device_config`` and which error it raises for a missing or wrong key, how
it finds its storage on the :class:`~.fabric.Fabric` (NFS export, local
disk, iSCSI LUN after a login, HBA LUN, array endpoint) and what ``SR.probe``
answers.

On storage an SR is a directory holding ``sr.json`` (its uuid and type) and,
per VDI, ``<uuid>.json`` (the metadata the SM keeps in VHD headers or the
SR's metadata volume: size, VHD parent, hidden flag, allocated blocks...)
and ``<uuid>.raw`` (the VDI's content, a sparse file).  LUN-per-VDI types
keep a VDI's content on its own LUN instead.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from xml.dom import minidom

from .errors import sm_error
from .fabric import Array
from .fabric import Fabric
from .fabric import FabricError
from .fabric import Lun
from .wire import XapiError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
VHD_BLOCK = 2 * MiB
VHD_MAX = 2040 * GiB
LV_INCREMENT = 4 * MiB
MSIZE = 2 * 1024 * GiB      # LVHD preallocates VHD metadata for 2 TiB
MAX_CHAIN_SIZE = 30
LVM_MGT_LV = 4 * MiB        # the SR's management volume on LVM types
#: sm ``LVHDSR._expand_size`` resizes the PV only when the device is at least
#: this much larger than the volume group (``resizethreshold``).
VG_GROW_THRESHOLD = 100 * MiB
LVHD_JOURNAL = 4 * MiB      # sm journaler.py Journaler.LV_SIZE


def roundup(n: int, unit: int) -> int:
    return ((n + unit - 1) // unit) * unit


def vhd_overhead_empty(virtual_size: int) -> int:
    """``vhdutil.calcOverheadEmpty``: footer, header, BAT and BATmap."""
    size_mb = virtual_size // MiB
    overhead = 3 * 1024
    overhead += (size_mb // 2) * 4
    overhead = roundup(overhead, 512)
    overhead += (size_mb // 2) // 8
    return roundup(overhead, 4096)


def vhd_overhead_bitmap(virtual_size: int) -> int:
    """``vhdutil.calcOverheadBitmap``: one 4 KiB bitmap per block."""
    return roundup(virtual_size, VHD_BLOCK) // VHD_BLOCK * 4096


def lv_size(n: int) -> int:
    return roundup(n, LV_INCREMENT)


def lvhd_inflated(virtual_size: int) -> int:
    """``lvhdutil.calcSizeVHDLV``: a fully inflated LVHD leaf's LV."""
    return lv_size(virtual_size + vhd_overhead_empty(MSIZE) +
                   vhd_overhead_bitmap(virtual_size))


def lvhd_thin() -> int:
    """sm ``LVHDVDI._snapshot``'s ``thinpr``: an empty VHD's LV."""
    return roundup(vhd_overhead_empty(MSIZE), LV_INCREMENT)


def lvhd_deflated(blocks: int) -> int:
    """An LVHD volume deflated to its VHD's physical size."""
    return lv_size(vhd_overhead_empty(MSIZE) + blocks * (VHD_BLOCK + 512)
                   + 512)


def vhd_file_size(virtual_size: int, blocks: int) -> int:
    """Size of a dynamic VHD file with ``blocks`` allocated 2 MiB blocks."""
    bat = roundup(4 * (roundup(virtual_size, VHD_BLOCK) // VHD_BLOCK), 512)
    return 512 + 1024 + bat + blocks * (512 + VHD_BLOCK) + 512


# -- block runs (which 2 MiB blocks a VHD layer holds) ---------------------
def runs_add(runs: list[list[int]], lo: int, hi: int) -> list[list[int]]:
    """Union of sorted ``[lo, hi)`` runs with one more run."""
    out: list[list[int]] = []
    placed = False
    for a, b in runs:
        if b < lo:
            out.append([a, b])
        elif a > hi:
            if not placed:
                out.append([lo, hi])
                placed = True
            out.append([a, b])
        else:
            lo, hi = min(a, lo), max(b, hi)
    if not placed:
        out.append([lo, hi])
    out.sort()
    return out


def runs_union(a: list[list[int]], b: list[list[int]]) -> list[list[int]]:
    out = [list(r) for r in a]
    for lo, hi in b:
        out = runs_add(out, lo, hi)
    return out


def runs_count(runs: list[list[int]]) -> int:
    return sum(b - a for a, b in runs)


def runs_clip(runs: list[list[int]], limit: int) -> list[list[int]]:
    return [[a, min(b, limit)] for a, b in runs if a < limit]


# -- SM records ----------------------------------------------------------------
VHD_FILE_CAPS = (
    'SR_PROBE', 'SR_UPDATE', 'SR_CACHING', 'VDI_CREATE', 'VDI_DELETE',
    'VDI_ATTACH', 'VDI_DETACH', 'VDI_UPDATE', 'VDI_CLONE', 'VDI_SNAPSHOT',
    'VDI_RESIZE', 'VDI_MIRROR', 'VDI_GENERATE_CONFIG', 'VDI_RESET_ON_BOOT/2',
    'ATOMIC_PAUSE', 'VDI_CONFIG_CBT', 'VDI_ACTIVATE', 'VDI_DEACTIVATE',
    'THIN_PROVISIONING', 'VDI_READ_CACHING')
LVHD_CAPS = (
    'SR_PROBE', 'SR_UPDATE', 'SR_TRIM', 'VDI_CREATE', 'VDI_DELETE',
    'VDI_ATTACH', 'VDI_DETACH', 'VDI_MIRROR', 'VDI_CLONE', 'VDI_SNAPSHOT',
    'VDI_RESIZE', 'ATOMIC_PAUSE', 'VDI_RESET_ON_BOOT/2', 'VDI_UPDATE',
    'VDI_CONFIG_CBT', 'VDI_ACTIVATE', 'VDI_DEACTIVATE')
LVHD_SHARED_CAPS = LVHD_CAPS + ('SR_METADATA', 'SR_CACHING')
LUN_CAPS = ('SR_PROBE', 'VDI_CREATE', 'VDI_DELETE', 'VDI_ATTACH',
            'VDI_DETACH', 'VDI_INTRODUCE')
ARRAY_CAPS = ('SR_PROBE', 'SR_UPDATE', 'VDI_CREATE', 'VDI_DELETE',
              'VDI_ATTACH', 'VDI_DETACH', 'VDI_CLONE', 'VDI_SNAPSHOT',
              'VDI_RESIZE', 'VDI_GENERATE_CONFIG', 'VDI_UPDATE')

CHAP_CONFIG = {
    'chapuser': 'The username to be used during CHAP authentication',
    'chappassword': 'The password to be used during CHAP authentication',
    'chappassword_secret': 'The secret (uuid) holding the CHAP password',
    'incoming_chapuser': 'The incoming username to be used during '
                         'bi-directional CHAP authentication (optional)',
    'incoming_chappassword': 'The incoming password to be used during '
                             'bi-directional CHAP authentication (optional)',
}


@dataclass
class SmInfo:
    name_label: str
    description: str
    driver: str
    capabilities: tuple[str, ...]
    configuration: dict[str, str]
    vendor: str = 'Citrix Systems Inc'
    image_formats: tuple[str, ...] = ('vhd',)

    def features(self) -> dict[str, str]:
        out = {}
        for cap in self.capabilities:
            name, _, version = cap.partition('/')
            out[name] = version or '1'
        return out


@dataclass
class Place:
    """Where an SR's storage was found for one host."""

    directory: str | None         # the SR's directory (None: LUN per VDI)
    capacity: int                 # physical_size
    lun: Lun | None = None
    luns: list[Lun] = field(default_factory=list)
    array: Array | None = None
    pool: str = ''
    target: str = ''
    target_iqn: str = ''


@dataclass
class Ctx:
    """What a backend needs from the simulator."""

    fabric: Fabric
    secret: Callable[[str], str]          # secret uuid -> value (raises)
    sr_in_use: Callable[[str], bool]      # sr uuid -> plugged in the pool


def _xml(root: str, items: list[tuple[str, list[tuple[str, str]]]]) -> str:
    doc = minidom.Document()
    top = doc.createElement(root)
    doc.appendChild(top)
    for tag, children in items:
        el = doc.createElement(tag)
        top.appendChild(el)
        for name, text in children:
            c = doc.createElement(name)
            c.appendChild(doc.createTextNode(str(text)))
            el.appendChild(c)
    return doc.toprettyxml()


def srlist_xml(uuids: list[str],
               extra: list[tuple[str, str]] | None = None) -> str:
    return _xml('SRlist', [('SR', [('UUID', u)] + list(extra or []))
                           for u in uuids])


def read_sr_meta(directory: str | None) -> dict[str, Any] | None:
    if not directory:
        return None
    try:
        with open(os.path.join(directory, 'sr.json')) as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (FileNotFoundError, ValueError):
        return None


def write_json(path: str, data: dict[str, Any]) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f)
    os.replace(tmp, path)


class Backend:
    """One SR type (the model of one SM plugin)."""

    type = ''
    fmt = ''            # 'vhd' (files), 'lvhd', 'lun' (LUN per VDI), 'array'
    thin = True
    sm: SmInfo

    def validate(self, ctx: Ctx, dc: dict[str, str], create: bool) -> None:
        """Refuse a device_config missing a required key."""

    def locate(self, ctx: Ctx, dc: dict[str, str],
               host: dict[str, Any]) -> Place:
        raise NotImplementedError

    def sr_dir(self, place: Place, sr_uuid: str) -> str | None:
        return place.directory

    def probe(self, ctx: Ctx, dc: dict[str, str],
              host: dict[str, Any]) -> str:
        self.validate(ctx, dc, create=False)
        place = self.locate(ctx, dc, host)
        meta = read_sr_meta(place.directory)
        return srlist_xml([meta['uuid']] if meta else [])

    def found_srs(self, place: Place) -> list[str]:
        meta = read_sr_meta(place.directory)
        return [meta['uuid']] if meta else []

    def format(self, place: Place, sr_dir: str, sr_uuid: str) -> None:
        """Make a fresh, empty SR in ``sr_dir`` (SR.create)."""
        if os.path.isdir(sr_dir):
            for name in os.listdir(sr_dir):
                p = os.path.join(sr_dir, name)
                if os.path.isdir(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    os.unlink(p)
        os.makedirs(sr_dir, exist_ok=True)
        write_json(os.path.join(sr_dir, 'sr.json'),
                   {'uuid': sr_uuid, 'type': self.type})

    def wipe(self, ctx: Ctx, place: Place, sr_dir: str | None) -> None:
        """Delete the SR from storage (SR.destroy)."""
        if sr_dir:
            shutil.rmtree(sr_dir, ignore_errors=True)

    def sr_size(self, place: Place, sr_dir: str | None, *, grow: bool) -> int:
        """The SR's ``physical_size`` as its SM reports it, ``place`` being
        where its storage was just found. ``grow``: the SM may first grow the
        SR into a larger device (``SR.scan``, ``PBD.plug`` on the master)."""
        return place.capacity


# -- nfs -----------------------------------------------------------------------------
class NfsBackend(Backend):
    type = 'nfs'
    fmt = 'vhd'
    thin = True
    sm = SmInfo('NFS VHD', 'SR plugin which stores disks as VHD files on a '
                'remote NFS filesystem', '/opt/xensource/sm/NFSSR',
                VHD_FILE_CAPS,
                {'server': 'hostname or IP address of NFS server',
                 'serverpath': 'path on remote server',
                 'nfsversion': 'for type=nfs, NFS protocol version - 3, 4, '
                               '4.0, 4.1 (optional)',
                 'options': 'the options to pass to the mount command',
                 'useUDP': 'use UDP protocol (optional)'})

    def validate(self, ctx: Ctx, dc: dict[str, str], create: bool) -> None:
        if not dc.get('server'):
            raise sm_error(102)
        if dc.get('nfsversion', '3') not in ('3', '4', '4.0', '4.1'):
            raise sm_error(72, 'nfsversion %s' % dc.get('nfsversion'))
        if not dc.get('serverpath'):
            raise sm_error(101)

    def locate(self, ctx: Ctx, dc: dict[str, str],
               host: dict[str, Any]) -> Place:
        try:
            exp = ctx.fabric.get_nfs_export(dc['server'], dc['serverpath'])
        except FabricError as exc:
            if exc.kind == 'nfs-server':
                raise sm_error(108, str(exc)) from None
            raise sm_error(73, 'mount.nfs: access denied by server while '
                           'mounting %s:%s' % (dc['server'],
                                               dc['serverpath'])) from None
        return Place(exp.directory, exp.size_bytes)

    def sr_dir(self, place: Place, sr_uuid: str) -> str | None:
        assert place.directory
        return os.path.join(place.directory, sr_uuid)

    def found_srs(self, place: Place) -> list[str]:
        assert place.directory
        out = []
        for name in sorted(os.listdir(place.directory)):
            meta = read_sr_meta(os.path.join(place.directory, name))
            if meta:
                out.append(meta['uuid'])
        return out

    def probe(self, ctx: Ctx, dc: dict[str, str],
              host: dict[str, Any]) -> str:
        if not dc.get('server'):
            raise sm_error(102)
        if not dc.get('serverpath'):
            exports = ctx.fabric.nfs_exports(dc['server'])
            if not exports:
                raise sm_error(108)
            xml = _xml('nfs-exports', [
                ('Export', [('Target', e.server), ('Path', e.path),
                            ('Accesslist', '*')]) for e in exports])
            raise sm_error(101, stderr=xml)
        place = self.locate(ctx, dc, host)
        return srlist_xml(self.found_srs(place))


# -- LVHD: a volume group on one device ----------------------------------------------
class LvhdBackend(Backend):
    """sm's LVHDSR family: VDIs are LVs in a volume group on one device, and
    the SR is as big as the volume group, which need not fill the device.

    The VG fills the device when the SR is made. After the device grows,
    ``SR.update`` (sm ``LVHDSR.update`` -> ``_updateStats``) only re-reads the
    VG's stats; ``SR.scan`` (``LVHDSR.scan``) and ``PBD.plug`` on the master
    (``LVHDSR.attach``) call ``_refresh_size`` and ``_expand_size``, which
    resizes the PV only when the device is at least
    :data:`VG_GROW_THRESHOLD` larger than the VG (sm drivers/LVHDSR.py). LVM
    keeps the VG's size on the PV; here it is ``vg_size`` in ``sr.json``.
    """

    fmt = 'lvhd'
    thin = False

    def format(self, place: Place, sr_dir: str, sr_uuid: str) -> None:
        super().format(place, sr_dir, sr_uuid)
        path = os.path.join(sr_dir, 'sr.json')
        write_json(path, dict(read_sr_meta(sr_dir) or {}, vg_size=place.capacity))

    def sr_size(self, place: Place, sr_dir: str | None, *, grow: bool) -> int:
        meta = read_sr_meta(sr_dir)
        if meta is None or sr_dir is None:
            return place.capacity
        vg_size = int(meta.get('vg_size', place.capacity))
        if grow and place.capacity >= vg_size + VG_GROW_THRESHOLD:
            vg_size = place.capacity
            write_json(os.path.join(sr_dir, 'sr.json'), dict(meta, vg_size=vg_size))
        return vg_size


# -- LVM on a local disk --------------------------------------------------------------
class LvmBackend(LvhdBackend):
    type = 'lvm'
    sm = SmInfo('Local LVHD', 'SR plugin which represents disks as VHD '
                'disks on Logical Volumes within a locally-attached Volume '
                'Group', '/opt/xensource/sm/LVMSR', LVHD_CAPS,
                {'device': 'local device path (required) (e.g. /dev/sda3)'})

    def validate(self, ctx: Ctx, dc: dict[str, str], create: bool) -> None:
        if not dc.get('device'):
            raise sm_error(90)

    def locate(self, ctx: Ctx, dc: dict[str, str],
               host: dict[str, Any]) -> Place:
        device = dc['device'].split(',')[0]
        try:
            directory, size = ctx.fabric.get_local_disk(host['uuid'], device)
        except FabricError:
            raise sm_error(91, 'path is %s' % device) from None
        return Place(directory, (size // LV_INCREMENT) * LV_INCREMENT)


# -- iSCSI --------------------------------------------------------------------------------
def _chap(ctx: Ctx, dc: dict[str, str], user_key: str = 'chapuser',
          pw_key: str = 'chappassword') -> tuple[str, str] | None:
    user = dc.get(user_key)
    if not user:
        return None
    if dc.get(pw_key + '_secret'):
        try:
            pw = ctx.secret(dc[pw_key + '_secret'])
        except XapiError:
            raise sm_error(20) from None
    else:
        pw = dc.get(pw_key, '')
    return (user, pw)


def _port(dc: dict[str, str]) -> int:
    try:
        port = int(dc.get('port', '3260'))
    except ValueError:
        raise sm_error(142) from None
    if not 0 < port < 65536:
        raise sm_error(142)
    return port


def _discover(ctx: Ctx, dc: dict[str, str]) -> tuple[str, int, list[Any]]:
    """Reach the portal in ``target`` (a comma list); (address, port, tgts)."""
    port = _port(dc)
    for address in [a.strip() for a in dc['target'].split(',') if a.strip()]:
        targets = ctx.fabric.targets(address, port)
        if targets:
            return address, port, targets
    raise sm_error(141)


def _iqn_xml(address: str, port: int, targets: list[Any]) -> str:
    items = []
    for i, t in enumerate(targets):
        items.append(('TGT', [('Index', str(i)), ('IPAddress', address),
                              ('Port', str(port)), ('TargetIQN', t.iqn)]))
    if len(targets) > 1:
        items.append(('TGT', [('Index', str(len(targets))),
                              ('IPAddress', address), ('Port', str(port)),
                              ('TargetIQN', '*')]))
    return _xml('iscsi-target-iqns', items)


def _lun_xml(luns: list[Lun]) -> str:
    return _xml('iscsi-target', [
        ('LUN', [('vendor', lun.vendor), ('serial', lun.serial),
                 ('LUNid', str(lun.lun_id)), ('size', str(lun.size_bytes)),
                 ('SCSIid', lun.scsi_id)]) for lun in luns])


def iscsi_login(ctx: Ctx, dc: dict[str, str],
                host: dict[str, Any]) -> tuple[str, int, str, list[Lun]]:
    """Discovery and login as BaseISCSI does; the LUNs this host sees."""
    if not dc.get('target'):
        raise sm_error(95)
    address, port, targets = _discover(ctx, dc)
    iqn = dc.get('targetIQN')
    if not iqn:
        raise sm_error(96, stderr=_iqn_xml(address, port, targets))
    wanted = [t for t in targets if iqn in ('*', t.iqn)]
    if not wanted:
        raise sm_error(96, stderr=_iqn_xml(address, port, targets))
    chap = _chap(ctx, dc)
    initiator = host.get('iscsi_iqn') or host.get('other_config', {}).get(
        'iscsi_iqn')
    luns: list[Lun] = []
    for t in wanted:
        try:
            luns += ctx.fabric.iscsi_login(address, port, t.iqn, initiator,
                                           chap)
        except FabricError as exc:
            if exc.kind in ('chap', 'access'):
                raise sm_error(68, str(exc)) from None
            raise sm_error(141, str(exc)) from None
    return address, port, iqn, luns


class LvmoIscsiBackend(LvhdBackend):
    type = 'lvmoiscsi'
    sm = SmInfo('LVHD over iSCSI', 'SR plugin which represents disks as '
                'Logical Volumes within a Volume Group created on an iSCSI '
                'LUN', '/opt/xensource/sm/LVMoISCSISR', LVHD_SHARED_CAPS,
                dict({'target': 'IP address or hostname of the iSCSI target',
                      'targetIQN': 'The IQN of the target LUN group to be '
                                   'attached',
                      'SCSIid': 'The scsi_id of the destination LUN',
                      'port': 'The network port number on which to query '
                              'the target',
                      'multihomed': 'Enable multi-homing to this target, '
                                    'true or false (optional, defaults to '
                                    'same value as host.other_config:'
                                    'multipathing)',
                      'usediscoverynumber': 'The specific iscsi record '
                                            'index to use. (optional)',
                      'allocation': 'Valid values are thick or thin '
                                    '(optional, defaults to thick)'},
                     **CHAP_CONFIG))

    def validate(self, ctx: Ctx, dc: dict[str, str], create: bool) -> None:
        if not dc.get('target'):
            raise sm_error(95)

    def _luns(self, ctx: Ctx, dc: dict[str, str],
              host: dict[str, Any]) -> tuple[str, str, list[Lun]]:
        address, _port_, iqn, luns = iscsi_login(ctx, dc, host)
        return address, iqn, luns

    def locate(self, ctx: Ctx, dc: dict[str, str],
               host: dict[str, Any]) -> Place:
        address, iqn, luns = self._luns(ctx, dc, host)
        scsi_id = dc.get('SCSIid')
        if not scsi_id:
            raise sm_error(107, stderr=_lun_xml(luns))
        match = [lun for lun in luns if lun.scsi_id == scsi_id]
        if not match:
            raise sm_error(107, stderr=_lun_xml(luns))
        lun = match[0]
        return Place(lun.path, (lun.size_bytes // LV_INCREMENT)
                     * LV_INCREMENT, lun=lun, target=address,
                     target_iqn=iqn)

    def probe(self, ctx: Ctx, dc: dict[str, str],
              host: dict[str, Any]) -> str:
        self.validate(ctx, dc, create=False)
        place = self.locate(ctx, dc, host)
        return srlist_xml(self.found_srs(place),
                          [('Target', place.target),
                           ('TargetIQN', place.target_iqn)])


class LvmoHbaBackend(LvmoIscsiBackend):
    type = 'lvmohba'
    sm = SmInfo('LVHD over FC', 'SR plugin which represents disks as VHDs '
                'on Logical Volumes within a Volume Group created on an HBA '
                'LUN, e.g. hardware-based iSCSI or FC support',
                '/opt/xensource/sm/LVMoHBASR', LVHD_SHARED_CAPS,
                {'SCSIid': 'The scsi_id of the destination LUN',
                 'allocation': 'Valid values are thick or thin (optional, '
                               'defaults to thick)'})

    def validate(self, ctx: Ctx, dc: dict[str, str], create: bool) -> None:
        pass

    def locate(self, ctx: Ctx, dc: dict[str, str],
               host: dict[str, Any]) -> Place:
        luns = ctx.fabric.luns('')
        scsi_id = dc.get('SCSIid')
        match = [lun for lun in luns if lun.scsi_id == scsi_id]
        if not scsi_id or not match:
            xml = _xml('Devlist', [
                ('BlockDevice', [('path', '/dev/disk/by-scsid/%s'
                                  % lun.scsi_id),
                                 ('numpaths', '1'), ('SCSIid', lun.scsi_id),
                                 ('vendor', lun.vendor),
                                 ('serial', lun.serial),
                                 ('size', str(lun.size_bytes)),
                                 ('adapter', '0'), ('channel', '0'),
                                 ('id', '0'), ('lun', str(lun.lun_id)),
                                 ('hba', 'fc')]) for lun in luns])
            raise sm_error(107, stderr=xml)
        lun = match[0]
        return Place(lun.path, (lun.size_bytes // LV_INCREMENT)
                     * LV_INCREMENT, lun=lun)

    def probe(self, ctx: Ctx, dc: dict[str, str],
              host: dict[str, Any]) -> str:
        place = self.locate(ctx, dc, host)
        return srlist_xml(self.found_srs(place))


class IscsiBackend(LvmoIscsiBackend):
    """RawISCSISR: every LUN of the target is a VDI (LUN per VDI)."""

    type = 'iscsi'
    fmt = 'lun'
    thin = False
    sm = SmInfo('iSCSI', 'Base ISCSI SR driver, provides a LUN-per-VDI. Does '
                'not support creation of VDIs but accesses existing LUNs on '
                'a target.', '/opt/xensource/sm/RawISCSISR', LUN_CAPS,
                dict({'target': 'IP address or hostname of the iSCSI target',
                      'targetIQN': 'The IQN of the target LUN group to be '
                                   'attached',
                      'port': 'The network port number on which to query '
                              'the target',
                      'multihomed': 'Enable multi-homing to this target',
                      'force_tapdisk': 'Force use of tapdisk, in preference '
                                       'to blkback'}, **CHAP_CONFIG),
                image_formats=())

    def locate(self, ctx: Ctx, dc: dict[str, str],
               host: dict[str, Any]) -> Place:
        address, iqn, luns = self._luns(ctx, dc, host)
        return Place(None, sum(lun.size_bytes for lun in luns), luns=luns,
                     target=address, target_iqn=iqn)

    def found_srs(self, place: Place) -> list[str]:
        return []

    def probe(self, ctx: Ctx, dc: dict[str, str],
              host: dict[str, Any]) -> str:
        place = self.locate(ctx, dc, host)
        return _lun_xml(place.luns)

    def format(self, place: Place, sr_dir: str, sr_uuid: str) -> None:
        pass

    # Every LUN of the target, as found: no volume group to grow.
    sr_size = Backend.sr_size


# -- arrays (netapp, equal) ----------------------------------------------------------
class ArrayBackend(Backend):
    fmt = 'array'
    codes: dict[str, int] = {}
    pool_key = ''

    def validate(self, ctx: Ctx, dc: dict[str, str], create: bool) -> None:
        for key in ('target', 'username', 'password'):
            if not dc.get(key) and not (key == 'password'
                                        and dc.get('password_secret')):
                raise sm_error(self.codes[key])
        if create and not dc.get(self.pool_key):
            raise sm_error(self.codes[self.pool_key])

    def _password(self, ctx: Ctx, dc: dict[str, str]) -> str:
        if dc.get('password_secret'):
            try:
                return ctx.secret(dc['password_secret'])
            except XapiError:
                raise sm_error(20) from None
        return dc.get('password', '')

    def connect(self, ctx: Ctx, dc: dict[str, str]) -> Array:
        try:
            arr = ctx.fabric.get_array(dc['target'])
        except KeyError:
            raise sm_error(self.codes['unreachable']) from None
        if arr.kind != self.type:
            raise sm_error(self.codes['unreachable'])
        if (dc.get('username') != arr.username
                or self._password(ctx, dc) != arr.password):
            raise sm_error(self.codes['auth'])
        return arr

    def locate(self, ctx: Ctx, dc: dict[str, str],
               host: dict[str, Any]) -> Place:
        self.validate(ctx, dc, create=False)
        arr = self.connect(ctx, dc)
        pool = dc.get(self.pool_key, '')
        if pool and pool not in arr.pools:
            raise sm_error(self.codes['badpool'],
                           '%s %s not found' % (self.pool_key, pool))
        if not pool:
            pool = next(iter(arr.pools))
        return Place(arr.directory, arr.pools[pool], array=arr, pool=pool)

    def sr_dir(self, place: Place, sr_uuid: str) -> str | None:
        assert place.directory
        return os.path.join(place.directory, sr_uuid)

    def found_srs(self, place: Place) -> list[str]:
        assert place.directory
        out = []
        for name in sorted(os.listdir(place.directory)):
            meta = read_sr_meta(os.path.join(place.directory, name))
            if meta and meta.get('type') == self.type:
                out.append(meta['uuid'])
        return out

    def probe(self, ctx: Ctx, dc: dict[str, str],
              host: dict[str, Any]) -> str:
        place = self.locate(ctx, dc, host)
        return srlist_xml(self.found_srs(place))

    def wipe(self, ctx: Ctx, place: Place, sr_dir: str | None) -> None:
        if sr_dir and os.path.isdir(sr_dir):
            for name in os.listdir(sr_dir):
                if name.endswith('.json') and name != 'sr.json':
                    try:
                        with open(os.path.join(sr_dir, name)) as f:
                            scsi_id = json.load(f).get('scsi_id')
                    except (OSError, ValueError):
                        continue
                    if scsi_id:
                        ctx.fabric.remove_lun(scsi_id)
        super().wipe(ctx, place, sr_dir)


class NetAppBackend(ArrayBackend):
    type = 'netapp'
    thin = False
    codes = {'target': 120, 'username': 121, 'password': 122,
             'aggregate': 123, 'unreachable': 124, 'auth': 125,
             'badpool': 123}
    pool_key = 'aggregate'
    sm = SmInfo('NetApp', 'SR plugin which represents disks as LUNs on a '
                'NetApp filer, using FlexVol snapshots and clones',
                '/opt/xensource/sm/NETAPPSR', ARRAY_CAPS,
                {'target': 'Hostname or IP address of the NetApp filer',
                 'port': 'The port to connect to (optional)',
                 'usehttps': 'Use HTTPS to talk to the filer (optional)',
                 'username': 'Username for the filer management API',
                 'password': 'Password for the filer management API',
                 'aggregate': 'The aggregate to create FlexVols in '
                              '(required for sr-create)',
                 'FlexVols': 'Number of FlexVols to create (1-32, default '
                             '8)',
                 'chapuser': 'CHAP username (optional)',
                 'chappassword': 'CHAP password (optional)',
                 'allocation': 'thick or thin (optional, default thick)',
                 'asis': 'Enable A-SIS deduplication (optional)'},
                vendor='NetApp', image_formats=())

    def validate(self, ctx: Ctx, dc: dict[str, str], create: bool) -> None:
        super().validate(ctx, dc, create)
        if 'FlexVols' in dc:
            try:
                n = int(dc['FlexVols'])
            except ValueError:
                raise sm_error(127, 'FlexVols must be 1-32') from None
            if not 1 <= n <= 32:
                raise sm_error(127, 'FlexVols must be 1-32')


class EqualBackend(ArrayBackend):
    type = 'equal'
    thin = True
    codes = {'target': 160, 'username': 161, 'password': 162,
             'storagepool': 163, 'unreachable': 173, 'auth': 169,
             'badpool': 172}
    pool_key = 'storagepool'
    sm = SmInfo('EqualLogic', 'SR plugin which represents disks as volumes '
                'on a Dell EqualLogic PS array, using array snapshots and '
                'clones', '/opt/xensource/sm/EQUALSR', ARRAY_CAPS,
                {'target': 'Group IP address of the EqualLogic array',
                 'username': 'Group administrator username',
                 'password': 'Group administrator password',
                 'storagepool': 'The storage pool to create volumes in',
                 'chapuser': 'CHAP username (optional)',
                 'chappassword': 'CHAP password (optional)',
                 'allocation': 'thin or thick (optional, default thin)',
                 'snap-reserve-percentage': 'Snapshot reserve, percent of '
                                            'the volume size (default 100)',
                 'snap-depletion': 'delete-oldest or volume-offline'},
                vendor='Dell', image_formats=())

    def validate(self, ctx: Ctx, dc: dict[str, str], create: bool) -> None:
        super().validate(ctx, dc, create)
        check_equal_sm_config(dc)


def check_equal_sm_config(cfg: dict[str, str]) -> None:
    if 'snap-reserve-percentage' in cfg:
        try:
            if int(cfg['snap-reserve-percentage']) < 0:
                raise ValueError
        except ValueError:
            raise sm_error(165) from None
    if cfg.get('snap-depletion', 'delete-oldest') not in ('delete-oldest',
                                                          'volume-offline'):
        raise sm_error(166)


# -- relvmoiscsi (CloudOps' ReLVHDoISCSISR supplemental pack) ----------------------
#: What the pack's create answers once it has resigned a LUN (it always fails,
#: on purpose: the caller then probes and introduces the SR as lvmoiscsi).
RESIGNED = ('The SR has been successfully resigned. Use the lvmoiscsi type '
            'to attach it')


class ReLvmoIscsiBackend(LvmoIscsiBackend):
    """``relvmoiscsi``: give a copied LUN its own identity.

    A LUN cloned on an array carries its source's SR uuid and VDI uuids, so
    it cannot be introduced next to the source (``SR_UUID_EXISTS``).
    ``SR.create`` of this type with ``resign=true`` regenerates the SR uuid
    and every VDI uuid on the LUN, deletes the snapshot VDIs, and then fails
    with :data:`RESIGNED`. Not part of stock XenServer: a pool has it only
    when the pack is installed (``Simulator(supplemental_packs=...)``).
    """

    type = 'relvmoiscsi'
    sm = SmInfo('ReLVHD over iSCSI', 'Resignature of LVHD SRs on cloned '
                'iSCSI LUNs', '/opt/xensource/sm/RELVMoISCSISR',
                ('SR_PROBE',),
                dict(LvmoIscsiBackend.sm.configuration,
                     resign='Must be true: regenerate the SR and VDI '
                            'identities on the LUN'),
                vendor='CloudOps')

    def resign(self, ctx: Ctx, dc: dict[str, str], host: dict[str, Any]) -> str:
        """Rewrite the identity of the SR on the LUN; returns the new uuid."""
        if dc.get('resign') != 'true':
            raise sm_error(1, opterr='resign=true is required')
        place = self.locate(ctx, dc, host)
        directory = place.directory or ''
        meta = read_sr_meta(directory)
        if meta is None:
            raise sm_error(47, opterr='no LVHD SR on LUN %s' % dc.get('SCSIid'))
        vdis = {}
        for name in os.listdir(directory):
            if name.endswith('.json') and name != 'sr.json':
                with open(os.path.join(directory, name)) as f:
                    vdis[name[:-5]] = json.load(f)
        doomed = {u for u, m in vdis.items() if m.get('is_a_snapshot')}
        new = {u: str(uuidlib.uuid4()) for u in vdis if u not in doomed}
        for old_uuid in vdis:
            for ext in ('.json', '.raw'):
                path = os.path.join(directory, old_uuid + ext)
                if old_uuid in doomed:
                    if os.path.exists(path):
                        os.unlink(path)
                elif ext == '.raw' and os.path.exists(path):
                    os.replace(path, os.path.join(directory, new[old_uuid] + ext))
        for old_uuid, new_uuid in new.items():
            m = vdis[old_uuid]
            m['parent'] = new.get(m.get('parent', ''), '')
            m['snapshot_of'] = new.get(m.get('snapshot_of', ''), '')
            write_json(os.path.join(directory, new_uuid + '.json'), m)
            os.unlink(os.path.join(directory, old_uuid + '.json'))
        sr_uuid = str(uuidlib.uuid4())
        write_json(os.path.join(directory, 'sr.json'),
                   dict(meta, uuid=sr_uuid, type='lvmoiscsi'))
        return sr_uuid


#: Types a pool has only when their supplemental pack is installed.
PACKS: dict[str, Backend] = {'relvmoiscsi': ReLvmoIscsiBackend()}


BACKENDS: dict[str, Backend] = {b.type: b for b in (
    NfsBackend(), LvmBackend(), LvmoIscsiBackend(), LvmoHbaBackend(),
    IscsiBackend(), NetAppBackend(), EqualBackend())}


def lun_vdi_uuid(scsi_id: str) -> str:
    """The VDI uuid LUN-per-VDI SRs derive from a LUN's SCSI id."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_OID, 'scsi:' + scsi_id))
