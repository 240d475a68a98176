"""xensm volume migrate: between an nfs and an lvmoiscsi back end of one pool."""

from __future__ import annotations

import io
import os
from typing import Any

from tests.functional import base
from tests.functional.test_cli import INJECTED
from tests.functional.test_cli import CliTestCase
from xensm_driver import driver as driver_mod
from xensm_driver import identity
from xensm_driver.cmd import xensm

DATA = base.pattern("migrate", 3 * base.MiB + 17)


class TestVolumeMigrate(CliTestCase):

    def setUp(self) -> None:
        super().setUp()
        self.conf = self.write_config(
            base.backend_ini(self.sim, "nfs", section="xs-nfs") + "\n"
            + base.backend_ini(self.sim, "lvmoiscsi", section="xs-iscsi"))

    def driver(self, section: str, sr_type: str) -> driver_mod.XenAPISMDriver:
        drv = driver_mod.XenAPISMDriver(configuration=base.configuration(
            base.backend_ini(self.sim, sr_type, section=section), section))
        drv.do_setup(None)
        self.addCleanup(drv.close)
        return drv

    def make(self) -> dict[str, Any]:
        vol = self.j("volume", "create", "--size", "1", "--name", "web", "--backend", "xs-nfs")
        self.xensm("volume", "upload", "web", self.file("data.img", DATA))
        return vol

    def test_migrate_detached_and_back(self) -> None:
        vol = self.make()
        moved = self.j("volume", "migrate", "web", "--to", "xs-iscsi")
        self.assertEqual((vol["id"], "xs-iscsi", "available"),
                         (moved["id"], moved["backend"], moved["status"]))
        self.assertNotEqual(vol["provider_id"], moved["provider_id"])
        iscsi = self.driver("xs-iscsi", "lvmoiscsi")
        vdi = iscsi.backend.storage.vdi_by_uuid(moved["provider_id"])
        self.assertEqual((iscsi.backend.sr_ref, "volume-%s" % vol["id"], vol["id"]),
                         (vdi.sr, vdi.name_label, vdi.other_config[identity.VOLUME_TAG]))
        self.assertEqual(DATA, self.content("web", len(DATA)))
        # Verbs follow the volume to its new back end.
        self.j("snapshot", "create", "web", "--name", "s")
        self.xensm("snapshot", "delete", "s")
        back = self.j("volume", "migrate", "web", "--to", "xs-nfs")
        self.assertEqual("xs-nfs", back["backend"])
        self.assertEqual(DATA, self.content("web", len(DATA)))
        self.xensm("reconcile", "--backend", "xs-nfs")
        self.xensm("reconcile", "--backend", "xs-iscsi")
        self.xensm("volume", "delete", "web")

    def test_migrate_attached(self) -> None:
        vol = self.make()
        nfs = self.driver("xs-nfs", "nfs")
        vbd = base.attach_to_dom0(nfs.pool, nfs.backend.storage.vdi_by_uuid(
            vol["provider_id"]).ref)
        moved = self.j("volume", "migrate", "web", "--to", "xs-iscsi")
        self.assertEqual("xs-iscsi", moved["backend"])
        new = nfs.backend.storage.vdi_by_uuid(moved["provider_id"])
        self.assertEqual(new.ref, nfs.backend.storage.vbd_vdi(vbd))
        self.assertEqual(DATA, self.content("web", len(DATA)))

    def test_refusals_change_nothing(self) -> None:
        self.make()
        self.assertIn("already", self.xensm("volume", "migrate", "web", "--to", "xs-nfs",
                                            expect=5).err)
        self.j("snapshot", "create", "web", "--name", "s")
        err = self.xensm("volume", "migrate", "web", "--to", "xs-iscsi", expect=5).err
        self.assertIn("snapshot", err)
        self.xensm("volume", "migrate", "web", "--to", "nowhere", expect=3)
        shown = self.j("volume", "show", "web")
        self.assertEqual(("xs-nfs", "available"), (shown["backend"], shown["status"]))
        self.assertEqual(DATA, self.content("web", len(DATA)))

    def test_a_failed_move_is_recorded_and_the_volume_stays(self) -> None:
        vol = self.make()
        self.control.inject_fault("Async.VDI.copy", error=INJECTED)
        err = self.xensm("volume", "migrate", "web", "--to", "xs-iscsi", expect=1).err
        self.control.clear_faults()
        self.assertIn("INTERNAL_ERROR", err)
        shown = self.j("volume", "show", "web")
        self.assertEqual(("xs-nfs", vol["provider_id"]), (shown["backend"],
                                                          shown["provider_id"]))
        self.assertEqual(DATA, self.content("web", len(DATA)))
        self.xensm("volume", "reset-state", "web", "--state", "available")
        self.assertEqual("xs-iscsi", self.j("volume", "migrate", "web", "--to",
                                            "xs-iscsi")["backend"])

    def test_progress_on_a_terminal(self) -> None:
        self.make()

        class Tty(io.StringIO):
            def isatty(self) -> bool:
                return True

        out, err = Tty(), io.StringIO()
        code = xensm.run(["--config-file", self.conf, "volume", "migrate", "web", "--to",
                          "xs-iscsi"], out, err, None)
        self.assertEqual(0, code, err.getvalue())
        self.assertIn("migrate [", err.getvalue())
        self.assertIn("100%", err.getvalue())
        self.assertIn("Moved volume", out.getvalue())
        self.assertTrue(os.path.exists(self.tmp))
