"""Changed-block tracking and the NBD read path of the simulator."""

from __future__ import annotations

import base64
import os
import struct
import threading
from typing import Any

import requests

from tests.functional.sim import base
from xensm_driver import exception
from xensm_driver.xapi import nbd

KiB64 = 64 * 1024


def blocks_of(bitmap_b64: str) -> list[int]:
    """Block numbers set in a list_changed_blocks answer (MSB first)."""
    raw = base64.b64decode(bitmap_b64)
    return [i for i in range(len(raw) * 8) if raw[i >> 3] & (0x80 >> (i & 7))]


class CbtTest(base.SimTestCase):
    srs = ('nfs', 'lvmoiscsi')

    def write_at(self, vdi: str, offset: int, data: bytes) -> None:
        """One chunked import writing ``data`` at ``offset``."""
        task = self.x.task.create('import', '')
        body = struct.pack('<QI', offset, len(data)) + data + struct.pack('<QI', 0, 0)
        r = requests.put(self.sim.url + '/import_raw_vdi',
                         params={'session_id': self.session._session, 'vdi': vdi,
                                 'task_id': task, 'chunked': 'true'},
                         data=body, timeout=30)
        self.assertEqual(200, r.status_code)
        rec = self.wait_task(task)
        self.assertEqual('success', rec['status'], rec['error_info'])

    def cbt_vdi(self, sr_type: str = 'nfs', size: int = 16 * base.MiB) -> str:
        vdi = self.vdi(self.sr(sr_type), size)
        self.x.VDI.enable_cbt(vdi)
        self.assertTrue(self.x.VDI.get_cbt_enabled(vdi))
        return vdi

    def test_changed_blocks_between_snapshots(self) -> None:
        for sr_type in self.srs:
            vdi = self.cbt_vdi(sr_type)
            self.write_at(vdi, 0, b'a' * 100)
            s1 = self.x.VDI.snapshot(vdi)
            self.assertTrue(self.x.VDI.get_cbt_enabled(s1))
            self.write_at(vdi, 3 * KiB64 + 10, b'b' * (KiB64 + 1))   # blocks 3, 4
            self.write_at(vdi, 200 * KiB64, b'c')                    # block 200
            s2 = self.x.VDI.snapshot(vdi)
            self.write_at(vdi, 7 * KiB64, b'd')                      # block 7
            s3 = self.x.VDI.snapshot(vdi)
            got = self.x.VDI.list_changed_blocks(s1, s2)
            self.assertEqual([3, 4, 200], blocks_of(got), sr_type)
            # 16 MiB = 256 blocks = 32 bytes of bitmap
            self.assertEqual(32, len(base64.b64decode(got)))
            self.assertEqual([3, 4, 7, 200], blocks_of(self.x.VDI.list_changed_blocks(s1, s3)))
            self.assertEqual([7], blocks_of(self.x.VDI.list_changed_blocks(s2, s3)))
            # the leaf's own log: nothing since s3
            self.assertEqual([], blocks_of(self.x.VDI.list_changed_blocks(s3, vdi)))
            self.assertFailure(['SR_BACKEND_FAILURE_460'],
                               self.x.VDI.list_changed_blocks, s3, s1)
            # sm VDI.delete coalesces a deleted log into its child
            self.x.VDI.destroy(s2)
            self.assertEqual([3, 4, 7, 200],
                             blocks_of(self.x.VDI.list_changed_blocks(s1, s3)))

    def test_data_destroy_keeps_the_log(self) -> None:
        vdi = self.cbt_vdi()
        s1 = self.x.VDI.snapshot(vdi)
        self.assertFailure(['OPERATION_NOT_ALLOWED'], self.x.VDI.data_destroy, vdi)
        self.x.VDI.data_destroy(s1)
        self.assertEqual('cbt_metadata', self.x.VDI.get_type(s1))
        self.assertEqual('0', self.x.VDI.get_physical_utilisation(s1))
        self.write_at(vdi, KiB64, b'x')
        s2 = self.x.VDI.snapshot(vdi)
        self.assertEqual([1], blocks_of(self.x.VDI.list_changed_blocks(s1, s2)))
        for call in (self.x.VDI.snapshot, self.x.VDI.clone, self.x.VDI.get_nbd_info):
            self.assertFailure(['VDI_INCOMPATIBLE_TYPE'], call, s1)
        self.x.VDI.data_destroy(s1)         # again: nothing to do
        self.x.VDI.destroy(s1)
        # a snapshot of a VDI without CBT has no metadata to keep
        plain = self.vdi(self.sr('nfs'), base.MiB)
        snap = self.x.VDI.snapshot(plain)
        self.assertFailure(['VDI_NO_CBT_METADATA'], self.x.VDI.data_destroy, snap)
        self.assertFailure(['OPERATION_NOT_ALLOWED'], self.x.VDI.enable_cbt, snap)

    def test_data_destroy_waits_for_vbds_to_go(self) -> None:
        # xapi_vdi.ml: data_destroy first waits (4 s) for the VDI's VBDs to
        # be unplugged and destroyed (e.g. xapi-nbd's, after a backup read).
        vdi = self.cbt_vdi()
        snap = self.x.VDI.snapshot(vdi)
        vbd = self.attach(snap, mode='RO')
        result: list[Any] = []
        session = self.login()
        worker = threading.Thread(target=lambda: result.append(
            session.xenapi.VDI.data_destroy(snap)))
        # the unplug comes late, so data_destroy finds the VBD there first
        self.ctl.inject_fault('VBD.unplug', latency=0.5)
        worker.start()
        self.x.VBD.unplug(vbd)
        self.x.VBD.destroy(vbd)
        worker.join(30)
        self.assertEqual([''], result)
        self.assertEqual('cbt_metadata', self.x.VDI.get_type(snap))

    def test_nbd_reads_ranges(self) -> None:
        vdi = self.cbt_vdi(size=64 * base.MiB)
        data = os.urandom(3 * KiB64)
        self.write_at(vdi, 5 * KiB64, data)
        infos = self.x.VDI.get_nbd_info(vdi)
        self.assertEqual(1, len(infos))
        self.assertTrue(infos[0]['exportname'].startswith(
            '/%s?session_id=' % self.x.VDI.get_uuid(vdi)))
        self.ctl.reset_calls()
        with nbd.open_reader(infos, vdi) as reader:
            self.assertEqual(64 * base.MiB, reader.size)
            self.assertEqual(data[KiB64:2 * KiB64], reader.read(6 * KiB64, KiB64))
            self.assertEqual(bytes(KiB64), reader.read(0, KiB64))
            # a read larger than one NBD request is split
            big = reader.read(0, nbd.MAX_REQUEST + 8 * KiB64)
            self.assertEqual(data, big[5 * KiB64:8 * KiB64])
            self.assertEqual(nbd.MAX_REQUEST + 8 * KiB64, len(big))
            # xapi-nbd holds a read-only VBD in dom0 meanwhile
            self.assertEqual(['RO'], [self.x.VBD.get_mode(v) for v in self.x.VDI.get_VBDs(vdi)])
        self.assertEqual(1, self.ctl.calls().get('nbd:export'))
        self.assertEqual([], self.x.VDI.get_VBDs(vdi))

    def test_nbd_faults(self) -> None:
        vdi = self.cbt_vdi()
        infos = self.x.VDI.get_nbd_info(vdi)
        self.ctl.inject_fault('nbd:export', after_bytes=KiB64 + 100)
        with nbd.open_reader(infos, vdi) as reader:
            reader.read(0, KiB64)
            exc = self.assertRaises(exception.TransferError, reader.read, KiB64, KiB64)
            self.assertIn('after 100 of', str(exc))
        self.ctl.inject_fault('nbd:export', drop='before')
        self.assertRaises(exception.TransferError, nbd.open_reader(infos, vdi).__enter__)
        # a session that ended cannot read
        bad = [dict(infos[0], exportname='/%s?session_id=OpaqueRef:nope'
                    % self.x.VDI.get_uuid(vdi))]
        exc = self.assertRaises(exception.TransferError, nbd.open_reader(bad, vdi).__enter__)
        self.assertIn('refused export', str(exc))
