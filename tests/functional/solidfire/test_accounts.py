"""SolidFire accounts: one per Cinder project (or one shared), CHAP
secrets made and kept on the array, reaching XAPI only as secrets."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import fixtures

from tests.functional import base
from tests.functional.test_solidfire_backend import SolidFireTestCase
from xensm_driver import exception

A = base.pattern("A", base.MiB)


class AccountTestCase(SolidFireTestCase):
    EXTRA_OPTIONS = {"xensm_sf_retry_backoff": "0.01"}

    def setUp(self) -> None:
        super().setUp()
        self.logs = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))

    def project_volume(self, project: str, size: int = 1) -> dict[str, Any]:
        vol = self.volume(size, project_id=project)
        vol.update(self.driver.create_volume(vol) or {})
        return vol

    def sf_volume(self, vol: dict[str, Any]) -> dict[str, Any]:
        (sf,) = self.client.find_volumes_by_name("xensm-%s" % vol["id"])
        return sf

    def account(self, account_id: int) -> dict[str, Any]:
        return self.client.call("GetAccountByID", accountID=account_id)["account"]

    def pbd_configs(self, vol: dict[str, Any]) -> list[dict[str, str]]:
        storage = self.driver.backend.storage
        vdi = storage.vdi_by_uuid(vol["provider_id"])
        return [dict(p.device_config) for p in storage.pbds(vdi.sr)]


class TestAccountPerProject(AccountTestCase):

    def test_each_project_gets_its_account_and_others_share_the_back_ends(self) -> None:
        p1, p2 = uuid.uuid4().hex, uuid.uuid4().hex
        a, b, c = self.project_volume(p1), self.project_volume(p1), self.project_volume(p2)
        plain = self.create_volume()
        names = {k: self.account(self.sf_volume(v)["accountID"])["username"]
                 for k, v in (("a", a), ("b", b), ("c", c), ("plain", plain))}
        self.assertEqual({"a": "xensm-%s" % p1, "b": "xensm-%s" % p1, "c": "xensm-%s" % p2,
                          "plain": "xensm-xs"}, names)
        self.assertEqual(sorted(["xensm-%s" % p1, "xensm-%s" % p2, "xensm-xs"]), sorted(
            a["username"] for a in self.client.call("ListAccounts")["accounts"]))
        # Every verb finds them in their accounts.
        self.write(a, A)
        snap = self.snapshot_of(a)
        self.driver.extend_volume(a, 2)
        clone = self.volume(project_id=p2)
        clone.update(self.driver.create_volume_from_snapshot(clone, snap))
        self.assertEqual("xensm-%s" % p2,
                         self.account(self.sf_volume(clone)["accountID"])["username"])
        self.assertEqual(A, self.read(clone, len(A)))
        for vol in (clone, a, b, c, plain):
            self.driver.delete_volume(vol)
        self.driver.delete_snapshot(snap)
        self.assertEqual([], self.array_volumes())

    def test_chap_reaches_xapi_only_as_a_secret(self) -> None:
        vol = self.project_volume("p-chap")
        account = self.account(self.sf_volume(vol)["accountID"])
        secret = account["initiatorSecret"]
        pool = self.driver.backend.storage.pool
        configs = self.pbd_configs(vol)
        self.assertEqual(2, len(configs))           # one PBD per host
        for dc in configs:
            self.assertEqual(account["username"], dc["chapuser"])
            self.assertNotIn("chappassword", dc)
            ref = pool.call("secret.get_by_uuid", dc["chappassword_secret"])
            self.assertEqual(secret, pool.call("secret.get_value", ref))
        # Each PBD holds its own copy; the driver kept none.
        self.assertEqual(2, len(pool.call("secret.get_all")))
        data = self.driver.initialize_connection(vol, {})["data"]
        self.assertFalse([k for k in data if "chap" in k])
        for where in (repr(data), repr(vol), self.logs.output):
            self.assertNotIn(secret, where)

    def test_chap_comes_back_with_an_introduced_sr(self) -> None:
        vol = self.project_volume("p-revert")
        self.write(vol, A)
        snap = self.snapshot_of(vol)
        self.driver.revert_to_snapshot(None, vol, snap)      # forget, roll back, introduce
        account = self.account(self.sf_volume(vol)["accountID"])
        pool = self.driver.backend.storage.pool
        for dc in self.pbd_configs(vol):
            self.assertEqual(account["username"], dc["chapuser"])
            ref = pool.call("secret.get_by_uuid", dc["chappassword_secret"])
            self.assertEqual(account["initiatorSecret"], pool.call("secret.get_value", ref))
        self.assertEqual(2, len(pool.call("secret.get_all")))
        self.assertNotIn(account["initiatorSecret"], self.logs.output)

    def test_a_failure_at_any_call_of_a_project_create_leaves_nothing(self) -> None:
        project = "p-faults"
        run = lambda: self.driver.create_volume(self.volume(project_id=project))  # noqa: E731
        run()                                   # the account exists from here on
        xapi = self.driver.pool.counter
        xapi.reset()
        self.array.reset_calls()
        run()
        steps = [("xapi", m, n) for m, c in sorted(xapi.snapshot().items())
                 for n in range(1, c + 1)]
        steps += [("array", m, n) for m, c in sorted(self.array.calls().items())
                  for n in range(1, c + 1)]
        self.assertIn(("array", "GetAccountByID", 1), steps)
        self.assertIn(("xapi", "secret.create", 1), steps)
        for side, method, nth in steps:
            before = self.world()
            if side == "xapi":
                self.control.inject_fault(method, error=["INTERNAL_ERROR", "injected"],
                                          nth=nth)
            else:
                self.array.inject_fault(method, error_name="xInvalidParameter", nth=nth)
            try:
                run()
            except exception.XensmError:
                pass
            else:
                self.assertIn(method, ("pool.remove_from_other_config", "secret.get_by_uuid",
                                       "secret.destroy"))
                continue
            finally:
                self.control.clear_faults()
                self.array.clear_faults()
            self.assertEqual(before, self.world(), "changed after %s %s #%d failed"
                             % (side, method, nth))


class TestSharedAccount(AccountTestCase):
    EXTRA_OPTIONS = dict(AccountTestCase.EXTRA_OPTIONS, xensm_sf_account_per_project="false")

    def test_one_account_for_every_project_and_switching_keeps_old_volumes(self) -> None:
        a, b = self.project_volume("p1"), self.project_volume("p2")
        self.assertEqual({"xensm-xs"}, {
            self.account(self.sf_volume(v)["accountID"])["username"] for v in (a, b)})
        self.assertEqual(["xensm-xs"], [
            a["username"] for a in self.client.call("ListAccounts")["accounts"]])
        # A driver with an account per project still finds and removes them.
        per_project = self.make_driver(xensm_sf_account_per_project="true")
        per_project.extend_volume(a, 2)
        per_project.delete_volume(a)
        per_project.delete_volume(b)
        self.assertEqual([], self.array_volumes())
