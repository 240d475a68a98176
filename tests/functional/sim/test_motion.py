"""Storage motion in the simulator: VDI.copy into another SR, VDI.pool_migrate."""

from __future__ import annotations

import requests

from tests.functional.sim.base import MiB
from tests.functional.sim.base import SimTestCase


class MotionTest(SimTestCase):
    srs = ('nfs', 'lvmoiscsi', 'netapp')

    def read(self, vdi: str, length: int) -> bytes:
        r = requests.get(self.sim.url + '/export_raw_vdi',
                         params={'session_id': self.session._session, 'vdi': vdi},
                         timeout=30, stream=True)
        self.assertEqual(200, r.status_code)
        out = b''
        for chunk in r.iter_content(1 << 16):
            out += chunk
            if len(out) >= length:
                break
        r.close()
        return out[:length]

    def test_copy_to_another_sr_keeps_name_tags_and_content(self) -> None:
        src = self.vdi(self.sr('nfs'), 8 * MiB, name='volume-a',
                       other_config={'xensm-volume-id': 'a', 'k': 'v'})
        self.write_block(src, b'hello' * 100)
        dst_sr = self.sr('lvmoiscsi')
        new = self.x.VDI.copy(src, dst_sr)
        rec = self.x.VDI.get_record(new)
        self.assertEqual(dst_sr, rec['SR'])
        self.assertEqual('volume-a', rec['name_label'])
        self.assertEqual({'xensm-volume-id': 'a', 'k': 'v'}, rec['other_config'])
        self.assertNotEqual(self.x.VDI.get_uuid(src), rec['uuid'])
        self.assertEqual(b'hello' * 100, self.read(new, 500))

    def test_copy_refuses_a_vdi_attached_read_write(self) -> None:
        sr = self.sr('nfs')
        src = self.vdi(sr, 8 * MiB)
        self.attach(src)
        before = set(self.x.VDI.get_all())
        self.assertFailure(['VDI_IN_USE', src, 'copy'], self.x.VDI.copy, src,
                           self.sr('lvmoiscsi'))
        self.assertEqual(before, set(self.x.VDI.get_all()))

    def test_pool_migrate_moves_an_attached_vdi(self) -> None:
        src = self.vdi(self.sr('nfs'), 8 * MiB, name='volume-a',
                       other_config={'xensm-volume-id': 'a', 'config-drive': 'x'})
        self.write_block(src, b'data' * 256)
        vbd = self.attach(src)
        src_uuid = self.x.VDI.get_uuid(src)
        dst_sr = self.sr('lvmoiscsi')
        new = self.x.VDI.pool_migrate(src, dst_sr, {})
        rec = self.x.VDI.get_record(new)
        self.assertEqual(dst_sr, rec['SR'])
        self.assertEqual('volume-a', rec['name_label'])
        # Only Xapi_globs.vdi_other_config_sync_keys follow the move.
        self.assertEqual({'config-drive': 'x'}, rec['other_config'])
        self.assertNotEqual(src_uuid, rec['uuid'])
        self.assertEqual(new, self.x.VBD.get_VDI(vbd))
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))
        self.assertFailure(['UUID_INVALID'], self.x.VDI.get_by_uuid, src_uuid)
        self.assertEqual(b'data' * 256, self.read(new, 1024))

    def test_pool_migrate_refusals(self) -> None:
        sr = self.sr('nfs')
        dst_sr = self.sr('lvmoiscsi')
        alone = self.vdi(sr, 8 * MiB)
        self.assertFailure(['VDI_NEEDS_VM_FOR_MIGRATE', alone],
                           self.x.VDI.pool_migrate, alone, dst_sr, {})
        tracked = self.vdi(sr, 8 * MiB)
        self.x.VDI.enable_cbt(tracked)
        self.attach(tracked)
        before = set(self.x.VDI.get_all())
        self.assertFailure(['VDI_CBT_ENABLED', tracked],
                           self.x.VDI.pool_migrate, tracked, dst_sr, {})
        self.assertEqual(before, set(self.x.VDI.get_all()))
        # The same SR moves nothing.
        plain = self.vdi(sr, 8 * MiB)
        self.attach(plain)
        self.assertEqual(plain, self.x.VDI.pool_migrate(plain, sr, {}))

    def test_pool_migrate_needs_vdi_mirror_on_both_srs(self) -> None:
        src = self.vdi(self.sr('nfs'), 8 * MiB)
        self.attach(src)
        netapp = self.sr('netapp')
        before = set(self.x.VDI.get_all())
        self.assertFailure(['SR_DOES_NOT_SUPPORT_MIGRATION', netapp],
                           self.x.VDI.pool_migrate, src, netapp, {})
        self.assertEqual(before, set(self.x.VDI.get_all()))
