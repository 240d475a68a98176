"""What real Cinder 29 asks of the driver beyond VolumeDriverCore.

Each case here was found by ``tox -e cinder`` (tests/cinder), which runs the
driver under Cinder's own API, scheduler and volume manager; these unit
tests keep the fixes without needing Cinder installed.
"""

from __future__ import annotations

from typing import Any

import testtools

from xensm_driver import driver
from xensm_driver.backends import base


class _Backend:
    """Just what the driver's stats read of a back end."""

    name = "xs-nfs"
    SR_TYPE = "nfs"
    STORAGE_PROTOCOL = "NFS"
    CAPABILITIES = frozenset({base.THIN, base.SNAPSHOT})
    thin = True

    def can(self, capability: str) -> bool:
        return capability in self.CAPABILITIES

    def stats(self) -> dict[str, Any]:
        return {"pool_name": "xensm-xs-nfs", "total_capacity_gb": 1024.0,
                "free_capacity_gb": 1000.0, "provisioned_capacity_gb": 30.0,
                "thin_provisioning_support": True, "thick_provisioning_support": False}


class TestCinderContract(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.driver = driver.XenAPISMDriver()

    def test_revert_lets_cinder_keep_a_backup_snapshot(self) -> None:
        # cinder-volume calls this before every revert (AttributeError without it).
        self.assertTrue(self.driver.snapshot_revert_use_temp_snapshot())

    def test_lock_cleanup_hooks_exist_on_class_and_instance(self) -> None:
        # Called after every delete; Cinder logged a warning each time without them.
        for owner in (driver.XenAPISMDriver, self.driver):
            self.assertIsNone(owner.clean_volume_file_locks("v1"))
            self.assertIsNone(owner.clean_snapshot_file_locks("s1"))

    def test_transfer_keeps_the_volume_as_it_is(self) -> None:
        self.assertIsNone(self.driver.accept_transfer(None, {"id": "v1"}, "u2", "p2"))

    def test_stats_name_the_sr_as_cinders_pool(self) -> None:
        # Without "pools", Cinder's scheduler ignores pool_name and names the
        # pool after volume_backend_name.
        self.driver._backend = _Backend()
        stats = self.driver.get_volume_stats(refresh=True)
        self.assertEqual(1, len(stats["pools"]))
        pool = stats["pools"][0]
        self.assertEqual(("xensm-xs-nfs", 1024.0, 1000.0, 30.0, True, False, 20.0),
                         (pool["pool_name"], pool["total_capacity_gb"],
                          pool["free_capacity_gb"], pool["provisioned_capacity_gb"],
                          pool["thin_provisioning_support"],
                          pool["consistent_group_snapshot_enabled"],
                          pool["max_over_subscription_ratio"]))
        for backend_level in ("volume_backend_name", "vendor_name", "driver_version",
                              "storage_protocol", "pools"):
            self.assertNotIn(backend_level, pool)
        # The top level still carries every figure, for callers other than Cinder.
        self.assertEqual(("xs-nfs", "NFS", 1000.0, "xensm-xs-nfs"),
                         (stats["volume_backend_name"], stats["storage_protocol"],
                          stats["free_capacity_gb"], stats["pool_name"]))

    def test_a_back_end_without_pool_name_is_one_pool_named_after_itself(self) -> None:
        backend = _Backend()
        backend.stats = lambda: {"total_capacity_gb": 1.0, "free_capacity_gb": 1.0}  # type: ignore[method-assign]
        self.driver._backend = backend
        self.assertEqual("xs-nfs", self.driver.get_volume_stats(True)["pools"][0]["pool_name"])
