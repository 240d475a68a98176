"""The soak's verification against a real simulator: a VDI left on the SR and
bytes changed behind the driver's back, both made by hand through the XenAPI
SDK and the data path, must be reported -- a soak that cannot fail proves
nothing."""

from __future__ import annotations

import io
import random

import XenAPI

from soak import model
from soak import walk
from soak import world
from tests.functional import base
from xensm_driver import identity
from xensm_driver.xapi import transfer


class TestSoakChecker(base.SimTestCase):

    SIM_KWARGS = {"solidfire": True, "supplemental_packs": ("relvmoiscsi",)}

    def setUp(self) -> None:
        super().setUp()
        assert self.sim.solidfire is not None
        sim = world.Sim(self.sim.url, self.sim.topology, self.control,
                        self.sim.solidfire.control, base.PASSWORD)
        self.backends = world.make_backends(sim, ("nfs",))
        for b in self.backends.values():
            self.addCleanup(b.close)
        self.soak = walk.Soak(sim, self.backends, walk.Settings(threads=1, ops=100),
                              log=lambda m: None)
        self.soak.observer.take_baseline()
        self.addCleanup(self.soak.observer.close)
        self.rng = random.Random(1)

    def test_a_clean_lifecycle_verifies_clean(self) -> None:
        for verb in ("create", "image_to_volume", "snapshot", "clone", "read", "delete",
                     "create", "group_snapshot"):
            self.assertTrue(self.soak.attempt(self.rng, self.backends["nfs"], verb,
                                              learning=True), verb)
        self.soak.verify()
        self.soak.delete_all()
        self.soak.verify(final=True)
        self.assertEqual([], self.soak.result.findings)
        self.assertEqual((0, 0), (self.soak.result.leaked, self.soak.result.wrong))

    def test_a_leaked_vdi_and_a_wrong_read_are_reported(self) -> None:
        nfs = self.backends["nfs"]
        self.assertTrue(self.soak.attempt(self.rng, nfs, "create", learning=True))
        self.assertTrue(self.soak.attempt(self.rng, nfs, "image_to_volume", learning=True))
        (vol,) = self.soak.model.alive("nfs")
        # By hand, through the SDK: a copy of the volume nobody owns ...
        session = XenAPI.Session(self.sim.url)
        session.xenapi.login_with_password("root", base.PASSWORD)
        self.addCleanup(session.xenapi.session.logout)
        x = session.xenapi
        sr = x.SR.get_by_uuid(nfs.sr_uuid)
        stray = x.VDI.create({"SR": sr, "virtual_size": str(base.GiB), "type": "user",
                              "sharable": False, "read_only": False,
                              "name_label": vol.ident.name_label,
                              "other_config": {identity.VOLUME_TAG: vol.id}})
        stray_uuid = x.VDI.get_uuid(stray)
        # ... and the volume's first bytes overwritten behind the driver's back.
        transfer.upload(nfs.drivers[0].pool, str(vol.provider_id),
                        io.BytesIO(b"\xff" * 4096), size=4096)
        self.soak.verify()
        result = self.soak.result
        self.assertEqual((1, 1), (result.leaked, result.wrong), result.findings)
        leak = [f for f in result.findings if f.kind == "leaked"][0]
        self.assertEqual("vdi:" + stray_uuid, leak.key)
        self.assertIn("tagged as volume %s" % vol.id, leak.text)
        wrong = [f for f in result.findings if f.kind == "wrong"][0]
        self.assertIn("volume %s (VDI %s) reads wrong: at 0 KiB: unknown bytes"
                      % (vol.id, vol.provider_id), wrong.text)
        self.assertIn("image_to_volume volume %s via" % vol.id[:8], wrong.text)  # the story
        # Deleting everything leaves the stray: one leak, counted once.
        self.soak.delete_all()
        self.soak.verify(final=True)
        self.assertEqual(1, result.leaked)
        self.assertEqual(model.Finding, type(leak))
