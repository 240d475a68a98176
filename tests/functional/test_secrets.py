"""No password or CHAP secret in any log line, exception or connection info.

Whole lifecycles with every logger captured down to taskflow's TRACE level
(which logs task arguments and results), on an lvmoiscsi SR behind CHAP
and on SolidFire, including failures that go through revert.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import fixtures

from tests.functional import base
from xensm_driver import exception


class SecretsMixin:

    def secrets(self: Any) -> list[str]:
        raise NotImplementedError

    def lifecycle(self: Any) -> list[str]:
        """Run every verb, some failing; return the texts a user would see."""
        texts = []
        vol = self.create_volume()
        snap = self.snapshot_of(vol)
        texts.append(repr(self.driver.initialize_connection(vol, {"host": "h"})))
        texts.append(repr(self.driver.get_volume_stats(True)))
        self.control.inject_fault("VDI.create", error=["INTERNAL_ERROR", "injected"])
        texts.append(str(self.assertRaises(exception.XensmError, self.driver.create_volume,
                                           self.volume())))
        self.driver.revert_to_snapshot(None, vol, snap)
        clone = self.volume()
        clone.update(self.driver.create_cloned_volume(clone, vol))
        self.driver.extend_volume(clone, 2)
        for obj, verb in ((clone, self.driver.delete_volume), (snap, self.driver.delete_snapshot),
                          (vol, self.driver.delete_volume)):
            verb(obj)
        return texts

    def test_no_secret_anywhere(self: Any) -> None:
        logger = self.useFixture(fixtures.FakeLogger(level=1, format="%(message)s"))
        logging.getLogger().setLevel(1)
        texts = self.lifecycle()
        self.assertIn("ready to execute", logger.output)   # taskflow TRACE is captured
        for secret in self.secrets():
            self.assertNotIn(secret, logger.output)
            for text in texts:
                self.assertNotIn(secret, text)


class TestCHAPProtectedLVMoISCSI(SecretsMixin, base.DriverTestCase):
    SR_TYPE = "lvmoiscsi"

    def make_driver(self, **extra: Any) -> Any:
        chap = self.sim.topology["iscsi_chap"]
        extra.update(xensm_iscsi_target_iqn=chap["targetIQN"],
                     xensm_iscsi_scsi_id=chap["luns"][0]["SCSIid"],
                     xensm_iscsi_chap_user=chap["chapuser"],
                     xensm_iscsi_chap_password=chap["chappassword"])
        return super().make_driver(**extra)

    def secrets(self) -> list[str]:
        return [base.PASSWORD, self.sim.topology["iscsi_chap"]["chappassword"]]

    def test_chap_password_reaches_xapi_only_as_a_secret(self) -> None:
        pbds = self.driver.pool.call("PBD.get_all_records")
        for pbd in pbds.values():
            self.assertNotIn("chappassword", pbd["device_config"])
            if pbd["SR"] == self.driver.backend.sr_ref:
                self.assertIn("chappassword_secret", pbd["device_config"])


    def test_no_secret_leaked_or_destroyed_wrongly(self) -> None:
        # XAPI copies a secret into each PBD (xapi_pbd.ml duplicate_passwds):
        # the driver deletes its own once the SR exists, so every secret
        # left on the pool is a PBD's, and each PBD's is still there.
        pool = self.driver.pool
        secrets = {rec["uuid"] for rec in pool.call("secret.get_all_records").values()}
        used = [pbd["device_config"]["chappassword_secret"]
                for pbd in pool.call("PBD.get_all_records").values()
                if pbd["SR"] == self.driver.backend.sr_ref]
        self.assertEqual(2, len(set(used)))
        self.assertEqual(set(used), secrets)
        # The SR keeps working: a new driver finds and checks it.
        self.make_driver().create_volume(self.volume())


class TestSolidFire(SecretsMixin, base.DriverTestCase):
    SR_TYPE = "solidfire"
    SIM_KWARGS = {"solidfire": True, "supplemental_packs": ["relvmoiscsi"]}

    def secrets(self) -> list[str]:
        account = self.driver.backend.client.call(
            "GetAccountByID", accountID=self.driver.backend.target.account_id)["account"]
        return [base.PASSWORD, self.sim.topology["solidfire"]["password"],
                account["initiatorSecret"], account["targetSecret"]]

    def test_failed_array_call_names_no_secret(self) -> None:
        self.sim.solidfire.control.inject_fault("CreateVolume",
                                                error_name="xInvalidParameter")
        err = self.assertRaises(exception.XensmError, self.driver.create_volume,
                                {"id": str(uuid.uuid4()), "size": 1})
        for secret in self.secrets():
            self.assertNotIn(secret, str(err))
