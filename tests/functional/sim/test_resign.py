"""The ReLVHDoISCSISR pack (relvmoiscsi): resigning a copied LUN.

A LUN copied on an array carries its source's SR uuid, so it cannot be
introduced next to the source; resigning gives it its own identity. Driven
through the real XenAPI SDK.
"""

from __future__ import annotations

import XenAPI

from tests.functional import base
from xensm_driver.sim.storage import RESIGNED


class TestResign(base.SimTestCase):

    SIM_KWARGS = {"supplemental_packs": ["relvmoiscsi"]}

    def setUp(self) -> None:
        super().setUp()
        self.session = XenAPI.Session(self.sim.url)
        self.session.login_with_password("root", base.PASSWORD, "1.0", "test")
        self.addCleanup(self.session.xenapi.session.logout)
        self.x = self.session.xenapi
        iscsi = self.sim.topology["iscsi"]
        self.dc = {"target": iscsi["target"], "targetIQN": iscsi["targetIQN"]}
        self.src_lun, self.copy_lun = (lun["SCSIid"] for lun in iscsi["luns"][:2])
        self.host = self.x.host.get_all()[0]

    def dc_for(self, scsi_id: str, **extra: str) -> dict[str, str]:
        return dict(self.dc, SCSIid=scsi_id, **extra)

    def probe_uuids(self, scsi_id: str) -> str:
        return self.x.SR.probe(self.host, self.dc_for(scsi_id), "lvmoiscsi", {})

    def test_copied_lun_is_resigned_and_introduced_beside_its_source(self) -> None:
        sr = self.x.SR.create(self.host, self.dc_for(self.src_lun), "0", "src", "",
                              "lvmoiscsi", "user", True, {})
        src_uuid = self.x.SR.get_uuid(sr)
        vdi = self.x.VDI.create({"SR": sr, "virtual_size": str(base.GiB), "type": "user",
                                 "sharable": False, "read_only": False,
                                 "other_config": {}, "name_label": "disk"})
        self.x.VDI.snapshot(vdi, {})
        vdi_uuid = self.x.VDI.get_uuid(vdi)
        self.control.copy_lun(self.src_lun, self.copy_lun)

        # The copy carries the source's identity: the resign problem.
        self.assertIn(src_uuid, self.probe_uuids(self.copy_lun))
        err = self.assertRaises(XenAPI.Failure, self.x.SR.introduce, src_uuid, "copy",
                                "", "lvmoiscsi", "user", True, {})
        self.assertEqual(["SR_UUID_EXISTS", src_uuid], err.details)

        # Resigning answers with the pack's deliberate failure ...
        err = self.assertRaises(XenAPI.Failure, self.x.SR.create, self.host,
                                self.dc_for(self.copy_lun, resign="true"), "0", "r", "",
                                "relvmoiscsi", "user", True, {})
        self.assertIn(RESIGNED, err.details)
        # ... and leaves the LUN with an identity of its own.
        probed = self.probe_uuids(self.copy_lun)
        self.assertNotIn(src_uuid, probed)
        new_uuid = probed.split("<UUID>")[1].split("</UUID>")[0].strip()
        new_sr = self.x.SR.introduce(new_uuid, "copy", "", "lvmoiscsi", "user", True, {})
        pbd = self.x.PBD.create({"host": self.host, "SR": new_sr,
                                 "device_config": self.dc_for(self.copy_lun),
                                 "other_config": {}})
        self.x.PBD.plug(pbd)
        self.x.SR.scan(new_sr)
        records = [self.x.VDI.get_record(v) for v in self.x.SR.get_VDIs(new_sr)]
        leaves = [r for r in records if r["managed"]]
        self.assertEqual(["disk"], [r["name_label"] for r in leaves])   # snapshot dropped
        self.assertNotIn(vdi_uuid, [r["uuid"] for r in records])         # new identities
        self.assertEqual([False], [r["is_a_snapshot"] for r in leaves])

    def test_a_lun_in_use_is_never_resigned(self) -> None:
        self.x.SR.create(self.host, self.dc_for(self.src_lun), "0", "src", "",
                         "lvmoiscsi", "user", True, {})
        err = self.assertRaises(XenAPI.Failure, self.x.SR.create, self.host,
                                self.dc_for(self.src_lun, resign="true"), "0", "r", "",
                                "relvmoiscsi", "user", True, {})
        self.assertEqual("SR_DEVICE_IN_USE", err.details[0])

    def test_resign_requires_the_flag(self) -> None:
        err = self.assertRaises(XenAPI.Failure, self.x.SR.create, self.host,
                                self.dc_for(self.copy_lun), "0", "r", "",
                                "relvmoiscsi", "user", True, {})
        self.assertEqual("SR_BACKEND_FAILURE_1", err.details[0])


class TestWithoutThePack(base.SimTestCase):

    def test_stock_pool_has_no_relvmoiscsi(self) -> None:
        session = XenAPI.Session(self.sim.url)
        session.login_with_password("root", base.PASSWORD, "1.0", "test")
        self.addCleanup(session.xenapi.session.logout)
        self.assertEqual({}, session.xenapi.SM.get_all_records_where(
            'field "type"="relvmoiscsi"'))
