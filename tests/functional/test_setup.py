"""Setting a back end up, and refusing to run on the wrong storage.

do_setup finds the configured SR or creates it; check_for_setup_error
fails, with the option or the fix named, when the SR is missing, of
another type or not plugged everywhere -- before any volume verb runs.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.functional import base
from xensm_driver import driver as driver_mod
from xensm_driver import exception
from xensm_driver.flows import vdi as vdis
from xensm_driver.xapi.storage import Storage


class TestSetup(base.SimTestCase):

    def driver(self, sr_type: str = "nfs", **options: Any) -> driver_mod.XenAPISMDriver:
        drv = driver_mod.XenAPISMDriver(configuration=base.configuration(
            base.backend_ini(self.sim, sr_type, **options)))
        self.addCleanup(drv.close)
        return drv

    def test_creates_the_sr_with_a_pbd_on_every_host_then_finds_it(self) -> None:
        first = self.driver()
        first.do_setup(None)
        first.check_for_setup_error()
        pbds = first.backend.storage.pbds(first.backend.sr_ref)
        self.assertEqual(2, len(pbds))
        self.assertTrue(all(p.currently_attached for p in pbds))
        again = self.driver()
        again.do_setup(None)
        self.assertEqual(first.backend.sr_uuid, again.backend.sr_uuid)
        self.assertEqual(0, again.pool.counter.snapshot().get("SR.create", 0))

    def test_local_lvm_sr_is_not_shared(self) -> None:
        drv = self.driver("lvm")
        drv.do_setup(None)
        drv.check_for_setup_error()
        self.assertEqual(1, len(drv.backend.storage.pbds(drv.backend.sr_ref)))

    def test_missing_required_option_is_named_before_any_sr_call(self) -> None:
        drv = self.driver(xensm_nfs_serverpath="")
        err = self.assertRaises(exception.ConfigError, drv.do_setup, None)
        self.assertIn("xensm_nfs_serverpath in [xs]", str(err))
        self.assertNotIn("SR.create", drv.pool.counter.snapshot())

    def test_unknown_sr_uuid_is_refused(self) -> None:
        drv = self.driver(xensm_sr_uuid=str(uuid.uuid4()))
        err = self.assertRaises(exception.SRNotFound, drv.do_setup, None)
        self.assertIn("xensm_sr_uuid", str(err))

    def test_no_create_when_told_not_to(self) -> None:
        drv = self.driver(xensm_sr_create="false")
        err = self.assertRaises(exception.SRNotFound, drv.do_setup, None)
        self.assertIn("xensm_sr_create is false", str(err))

    def test_sr_of_another_type_is_refused(self) -> None:
        lvm = self.driver("lvm", volume_backend_name="other")
        lvm.do_setup(None)
        drv = self.driver("nfs", xensm_sr_uuid=lvm.backend.sr_uuid)
        drv.do_setup(None)
        err = self.assertRaises(exception.ConfigError, drv.check_for_setup_error)
        self.assertIn("is of type lvm, not nfs", str(err))

    def test_unplugged_sr_is_refused_with_the_fix(self) -> None:
        drv = self.driver()
        drv.do_setup(None)
        storage: Storage = drv.backend.storage
        slave_pbd = [p for p in storage.pbds(drv.backend.sr_ref)
                     if p.host != storage.master().ref][0]
        drv.pool.call("PBD.unplug", slave_pbd.ref)
        err = self.assertRaises(exception.XensmError, drv.check_for_setup_error)
        self.assertIn("unplugged on sim-host-1", str(err))
        self.assertIn("xe pbd-plug", str(err))

    def test_a_host_that_cannot_plug_fails_setup_and_leaves_nothing(self) -> None:
        # A shared SR.create answers with that host's PBD unplugged and no
        # error (xapi_sr.ml create); setup must not take such an SR.
        topo = self.sim.topology
        self.control.set_lun_access(topo["iscsi"]["luns"][0]["SCSIid"],
                                    [topo["hosts"][0]["iscsi_iqn"]])
        pool = self.pool()

        def records() -> dict[str, int]:
            return {cls: len(pool.call("%s.get_all" % cls))
                    for cls in ("SR", "PBD", "secret")}

        before = records()
        drv = self.driver("lvmoiscsi")
        err = self.assertRaises(exception.SRNotPlugged, drv.do_setup, None)
        self.assertIn("cannot be plugged on sim-host-1", str(err))
        self.assertNotIn("sim-host-0", str(err))
        self.assertEqual(1, drv.pool.counter.snapshot()["SR.create"])
        self.assertEqual(before, records())

    def test_unplugged_pbds_of_an_sr_are_plugged_again(self) -> None:
        drv = self.driver()
        drv.do_setup(None)
        storage: Storage = drv.backend.storage
        for pbd in storage.pbds(drv.backend.sr_ref):
            if pbd.host != storage.master().ref:
                drv.pool.call("PBD.unplug", pbd.ref)
        self.assertEqual({}, storage.plug_unplugged(drv.backend.sr_ref))
        self.assertTrue(all(p.currently_attached
                            for p in storage.pbds(drv.backend.sr_ref)))
        drv.check_for_setup_error()

    def test_bad_credentials_fail_setup_without_echoing_them(self) -> None:
        drv = self.driver(xenapi_connection_password="not-the-password")
        err = self.assertRaises(exception.AuthenticationFailed, drv.do_setup, None)
        self.assertIn("xenapi_connection_password", str(err))
        self.assertNotIn("not-the-password", str(err))


class TestChainGuard(base.DriverTestCase):
    SR_TYPE = "nfs"
    EXTRA_OPTIONS = {"xensm_snapshot_chain_limit": 3}

    def test_snapshot_refused_at_the_chain_limit_before_xapi_is_asked(self) -> None:
        vol = self.create_volume()
        self.snapshot_of(vol)           # chain 2
        self.write(vol, b"x" * 512)     # unwritten snapshots share a base
        self.snapshot_of(vol)           # chain 3
        self.driver.pool.counter.reset()
        err = self.assertRaises(exception.UnsupportedOperation, self.snapshot_of, vol)
        self.assertIn("VHD chain is 3 deep and the limit is 3", str(err))
        self.assertNotIn("VDI.snapshot", self.calls())

    def test_unwritten_snapshots_do_not_deepen_the_chain(self) -> None:
        # As on a real pool (vhd-util snapshot skips an empty parent), the
        # guard counts the chain XAPI reports, so it lets these through.
        vol = self.create_volume()
        for _ in range(5):
            self.snapshot_of(vol)
        vdi = self.driver.backend.storage.vdi_by_uuid(vol["provider_id"])
        self.assertEqual(2, vdis.chain_depth(self.driver.backend.target, vdi))

    def test_chain_shrinks_back_when_snapshots_go(self) -> None:
        vol = self.create_volume()
        snaps = [self.snapshot_of(vol), self.snapshot_of(vol)]
        for snap in snaps:
            self.driver.delete_snapshot(snap)
        self.control.run_gc()
        self.snapshot_of(vol)           # coalesced: allowed again


class TestProviderInfo(base.DriverTestCase):

    def test_missing_and_replaced_provider_ids_are_filled_in_one_call(self) -> None:
        vols = [self.create_volume() for _ in range(3)]
        legacy = dict(vols[0], provider_id=None)
        snap = self.snapshot_of(vols[1])
        update = self.driver.revert_to_snapshot(None, vols[1], snap)   # a new VDI
        self.driver.pool.counter.reset()
        volumes, snapshots = self.driver.update_provider_info([*vols, legacy], [snap])
        self.assertEqual([{"id": vols[0]["id"], "provider_id": vols[0]["provider_id"]},
                          dict(update, id=vols[1]["id"])], volumes)
        self.assertEqual([], snapshots)
        self.assertEqual(1, self.driver.pool.counter.total())     # however many volumes


class TestAsyncDeadline(base.SimTestCase):

    def test_a_task_past_its_deadline_is_cancelled_and_dropped(self) -> None:
        pool = self.pool()
        storage = Storage(pool)
        sr = self.nfs_sr(storage)
        src = storage.create_vdi(sr, 8 * base.MiB, "src", {})
        dst = storage.create_vdi(sr, 8 * base.MiB, "dst", {})
        self.control.inject_fault("VDI.copy", hang=3.0)
        err = self.assertRaises(exception.TaskTimeout, storage.copy_vdi_into, src, dst,
                                timeout=0.3)
        self.assertIn("VDI.copy", str(err))
        counts = pool.counter.snapshot()
        self.assertEqual(1, counts.get("task.cancel"))
        self.assertEqual(1, counts.get("task.destroy"))
