"""SolidFire QoS end to end: asked at create, kept on extend and clones,
changed in place by retype and ``set_qos``, refused before any call."""

from __future__ import annotations

from typing import Any

from tests.functional.test_solidfire_backend import SolidFireTestCase
from xensm_driver import exception

SPECS = {"minIOPS": "100", "maxIOPS": "1000", "burstIOPS": "2000"}


def typed(specs: dict[str, str], *, qos_specs: dict[str, str] | None = None) -> dict[str, Any]:
    """A Cinder volume type as the driver reads it."""
    vtype: dict[str, Any] = {"extra_specs": dict(specs)}
    if qos_specs is not None:
        vtype["qos_specs"] = {"consumer": "back-end", "specs": dict(qos_specs)}
    return vtype


class QosTestCase(SolidFireTestCase):
    EXTRA_OPTIONS = {"xensm_sf_retry_backoff": "0.01"}

    def array_qos(self, vol: dict[str, Any]) -> dict[str, int]:
        (sf,) = self.client.find_volumes_by_name("xensm-%s" % vol["id"])
        return {k: sf["qos"][k] for k in ("minIOPS", "maxIOPS", "burstIOPS")}

    def create(self, size: int = 1, **fields: Any) -> dict[str, Any]:
        vol = self.volume(size, **fields)
        vol.update(self.driver.create_volume(vol) or {})
        return vol


class TestQosAsked(QosTestCase):

    def test_extra_specs_qos_reaches_the_array(self) -> None:
        vol = self.create(volume_type=typed(SPECS))
        self.assertEqual({"minIOPS": 100, "maxIOPS": 1000, "burstIOPS": 2000},
                         self.array_qos(vol))

    def test_qos_specs_win_over_extra_specs(self) -> None:
        vol = self.create(volume_type=typed({"minIOPS": "300"}, qos_specs=SPECS))
        self.assertEqual(100, self.array_qos(vol)["minIOPS"])

    def test_scaled_qos_follows_the_size(self) -> None:
        specs = dict(SPECS, scaledIOPS="true", scaleMin="10", scaleMax="100",
                     scaleBurst="100")
        vol = self.create(size=3, volume_type=typed(specs))
        self.assertEqual({"minIOPS": 120, "maxIOPS": 1200, "burstIOPS": 2200},
                         self.array_qos(vol))
        # Extend recomputes it for the new size, in the resize's one call.
        self.array.reset_calls()
        self.driver.extend_volume(vol, 5)
        self.assertEqual({"minIOPS": 140, "maxIOPS": 1400, "burstIOPS": 2400},
                         self.array_qos(vol))
        self.assertEqual(1, self.array.calls()["ModifyVolume"])

    def test_no_qos_asked_gives_element_defaults(self) -> None:
        vol = self.create()
        self.assertEqual({"minIOPS": 50, "maxIOPS": 15000, "burstIOPS": 15000},
                         self.array_qos(vol))

    def test_service_qos_specs_key(self) -> None:
        vol = self.create(qos_specs={"minIOPS": "400", "maxIOPS": "900"})
        self.assertEqual({"minIOPS": 400, "maxIOPS": 900, "burstIOPS": 15000},
                         self.array_qos(vol))

    def test_invalid_qos_is_refused_before_any_call(self) -> None:
        before = self.world()
        self.array.reset_calls()
        for specs, named in ((dict(SPECS, maxIOPS="150000"),
                              "maxIOPS 150000 (asked) is outside the cluster's 100..100000"),
                             (dict(SPECS, minIOPS="20"), "minIOPS 20 (asked)"),
                             (dict(SPECS, burstIOPS="500"), "burstIOPS 500 is below maxIOPS")):
            err = self.assertRaises(exception.InvalidInput, self.driver.create_volume,
                                    self.volume(volume_type=typed(specs)))
            self.assertIn(named, str(err))
        self.assertEqual({}, self.array.calls())
        self.assertEqual(before, self.world())

    def test_stats_say_qos_is_supported(self) -> None:
        stats = self.driver.get_volume_stats(True)
        self.assertTrue(stats["QoS_support"])
        self.assertTrue(stats["pools"][0]["QoS_support"])


class TestQosDefaults(QosTestCase):
    EXTRA_OPTIONS = dict(QosTestCase.EXTRA_OPTIONS, xensm_sf_qos_min_iops="200",
                         xensm_sf_qos_max_iops="2000", xensm_sf_allow_tenant_qos="true")

    def test_back_end_defaults_fill_what_is_not_asked(self) -> None:
        vol = self.create()
        self.assertEqual({"minIOPS": 200, "maxIOPS": 2000, "burstIOPS": 15000},
                         self.array_qos(vol))
        vol = self.create(volume_type=typed({"maxIOPS": "3000"}))
        self.assertEqual({"minIOPS": 200, "maxIOPS": 3000, "burstIOPS": 15000},
                         self.array_qos(vol))

    def test_tenant_preset_in_metadata(self) -> None:
        vol = self.create(metadata={"sf-qos": "performant"})
        self.assertEqual({"minIOPS": 2000, "maxIOPS": 4000, "burstIOPS": 4000},
                         self.array_qos(vol))

    def test_bad_defaults_are_a_config_error_naming_the_options(self) -> None:
        err = self.assertRaises(exception.ConfigError, self.make_driver,
                                xensm_sf_qos_min_iops="5000", xensm_sf_qos_max_iops="1000")
        self.assertIn("xensm_sf_qos_", str(err))
        self.assertIn("minIOPS 5000 is above maxIOPS 1000", str(err))


class TestQosKept(QosTestCase):

    def test_extend_keeps_qos_set_in_place(self) -> None:
        # LP#1783588: Cinder's driver lost QoS on extend.
        vol = self.create()
        self.assertEqual({"minIOPS": 300, "maxIOPS": 600, "burstIOPS": 15000},
                         self.driver.set_volume_qos(vol, {"minIOPS": "300",
                                                          "maxIOPS": "600"}))
        self.driver.extend_volume(vol, 2)
        self.assertEqual({"minIOPS": 300, "maxIOPS": 600, "burstIOPS": 15000},
                         self.array_qos(vol))

    def test_clone_and_volume_from_snapshot_keep_the_source_qos(self) -> None:
        vol = self.create(volume_type=typed(SPECS))
        clone = self.volume()
        clone.update(self.driver.create_cloned_volume(clone, vol))
        snap = self.snapshot_of(vol)
        from_snap = self.volume()
        from_snap.update(self.driver.create_volume_from_snapshot(from_snap, snap))
        want = {"minIOPS": 100, "maxIOPS": 1000, "burstIOPS": 2000}
        self.assertEqual((want, want), (self.array_qos(clone), self.array_qos(from_snap)))

    def test_clone_asking_its_own_qos_gets_it(self) -> None:
        vol = self.create(volume_type=typed(SPECS))
        clone = self.volume(volume_type=typed({"minIOPS": "700", "maxIOPS": "700",
                                               "burstIOPS": "700"}))
        clone.update(self.driver.create_cloned_volume(clone, vol))
        self.assertEqual(700, self.array_qos(clone)["minIOPS"])
        self.assertEqual(100, self.array_qos(vol)["minIOPS"])


class TestQosCopyStrategy(QosTestCase):
    PACKS = ()

    def test_clone_by_copy_keeps_the_source_qos(self) -> None:
        vol = self.create(volume_type=typed(SPECS))
        clone = self.volume()
        clone.update(self.driver.create_cloned_volume(clone, vol))
        self.assertEqual({"minIOPS": 100, "maxIOPS": 1000, "burstIOPS": 2000},
                         self.array_qos(clone))


class TestRetype(QosTestCase):

    def diff(self, old: dict[str, str], new: dict[str, str]) -> dict[str, Any]:
        keys = set(old) | set(new)
        return {"qos_specs": {k: (old.get(k), new.get(k)) for k in keys},
                "extra_specs": {}, "encryption": {}}

    def test_retype_changes_qos_in_place(self) -> None:
        vol = self.create(volume_type=typed(SPECS), host="h@xs#p")
        new = {"minIOPS": "500", "maxIOPS": "5000", "burstIOPS": "6000"}
        self.array.reset_calls()
        done = self.driver.retype(None, vol, {"extra_specs": {}}, self.diff(SPECS, new),
                                  {"host": "h@xs#p"})
        self.assertEqual((True, None), done)
        self.assertEqual({"minIOPS": 500, "maxIOPS": 5000, "burstIOPS": 6000},
                         self.array_qos(vol))
        self.assertEqual(1, self.array.calls()["ModifyVolume"])

    def test_retype_from_extra_specs_and_back_to_defaults(self) -> None:
        vol = self.create(volume_type=typed(SPECS))
        self.driver.retype(None, vol, {"extra_specs": {"maxIOPS": "3000"}},
                           {"qos_specs": {}}, None)
        self.assertEqual({"minIOPS": 50, "maxIOPS": 3000, "burstIOPS": 15000},
                         self.array_qos(vol))

    def test_retype_to_another_back_end_is_refused_with_the_reason(self) -> None:
        vol = self.create(volume_type=typed(SPECS), host="h@xs#p")
        with self.assertLogs("xensm_driver.driver", "WARNING") as logs:
            done = self.driver.retype(None, vol, {}, self.diff(SPECS, {}),
                                      {"host": "h@other#p"})
        self.assertEqual((False, None), done)
        self.assertIn("data motion, which is being built", "\n".join(logs.output))
        self.assertEqual(100, self.array_qos(vol)["minIOPS"])

    def test_retype_changing_encryption_is_refused(self) -> None:
        vol = self.create()
        diff = {"qos_specs": {}, "encryption": {"cipher": (None, "aes-xts-plain64")}}
        self.assertEqual((False, None), self.driver.retype(None, vol, {}, diff, None))

    def test_invalid_new_qos_changes_nothing(self) -> None:
        vol = self.create(volume_type=typed(SPECS))
        self.array.reset_calls()
        self.assertRaises(exception.InvalidInput, self.driver.retype, None, vol, {},
                          self.diff(SPECS, {"minIOPS": "20000"}), None)
        self.assertRaises(exception.InvalidInput, self.driver.set_volume_qos, vol,
                          {"maxIOPS": "10"})
        self.assertNotIn("ModifyVolume", self.array.calls())

    def test_a_failure_at_any_call_leaves_the_qos(self) -> None:
        vol = self.create(volume_type=typed(SPECS))
        verbs = {
            "retype": lambda: self.driver.retype(
                None, vol, {}, self.diff(SPECS, {"minIOPS": "900", "maxIOPS": "900",
                                                 "burstIOPS": "900"}), None),
            "set_qos": lambda: self.driver.set_volume_qos(vol, {"minIOPS": "800",
                                                                "maxIOPS": "800"}),
        }
        for verb, run in verbs.items():
            self.array.reset_calls()
            run()
            calls = self.array.calls()
            self.driver.set_volume_qos(vol, SPECS)          # back to where it was
            for method, count in sorted(calls.items()):
                for nth in range(1, count + 1):
                    before = (self.world(), self.array_qos(vol))
                    self.array.inject_fault(method, error_name="xInvalidParameter", nth=nth)
                    try:
                        run()
                    except exception.XensmError:
                        pass
                    else:
                        self.fail("%s survived a failed %s #%d" % (verb, method, nth))
                    finally:
                        self.array.clear_faults()
                    self.assertEqual(before, (self.world(), self.array_qos(vol)),
                                     "%s: changed after %s #%d failed" % (verb, method, nth))


class TestTransientErrorsThroughTheDriver(QosTestCase):

    def test_create_answered_connection_loss_after_it_ran_makes_one_volume(self) -> None:
        vol = self.volume()
        self.array.inject_fault("CreateVolume", "xDBConnectionLoss", error_after=True)
        vol.update(self.driver.create_volume(vol))
        self.assertEqual([("xensm-%s" % vol["id"], "active")], self.array_volumes())
        self.assertEqual(1, self.array.calls()["CreateVolume"])

    def test_reads_retried_through_an_upgrade(self) -> None:
        vol = self.create()
        for name in ("xNotPrimary", "xDBConnectionLoss", "xSliceNotRegistered"):
            self.array.inject_fault("ListVolumes", name, times=1)
        self.driver.extend_volume(vol, 2)
        vdi = self.driver.backend.storage.vdi_by_uuid(vol["provider_id"])
        self.assertEqual(2 << 30, vdi.virtual_size)


class TestStats(QosTestCase):

    def test_efficiency_is_100_on_an_empty_cluster(self) -> None:
        # LP#1874541: no division by a zero block count.
        stats = self.driver.get_volume_stats(True)
        self.assertEqual((100.0, 100.0, 100.0),
                         (stats["compression_percent"], stats["deduplication_percent"],
                          stats["thin_provision_percent"]))

    def test_figures_are_cinders_from_cluster_capacity(self) -> None:
        vol = self.create(size=2)
        self.write(vol, b"x" * (1 << 20))
        stats = self.driver.get_volume_stats(True)
        cap = self.client.call("GetClusterCapacity")["clusterCapacity"]
        self.assertGreater(cap["nonZeroBlocks"], 0)
        self.assertEqual(round(cap["uniqueBlocks"] * 4096 / cap["uniqueBlocksUsedSpace"]
                               * 100, 2), stats["compression_percent"])
        self.assertEqual(round(cap["nonZeroBlocks"] / cap["uniqueBlocks"] * 100, 2),
                         stats["deduplication_percent"])
        self.assertEqual(round((cap["nonZeroBlocks"] + cap["zeroBlocks"])
                               / cap["nonZeroBlocks"] * 100, 2),
                         stats["thin_provision_percent"])
        self.assertGreater(stats["thin_provision_percent"], 100)
        self.assertEqual(round(cap["provisionedSpace"] / (1 << 30), 2),
                         stats["provisioned_capacity_gb"])
        self.assertEqual(round((cap["maxUsedSpace"] - cap["usedSpace"]) / (1 << 30), 2),
                         stats["free_capacity_gb"])
        self.assertEqual(cap["maxIOPS"], stats["max_iops"])


class TestQosFlowsFailures(QosTestCase):

    def test_a_failure_at_any_call_of_a_clone_asking_qos_leaves_nothing(self) -> None:
        vol = self.create(volume_type=typed(SPECS))
        snap = self.snapshot_of(vol)
        own = typed({"minIOPS": "700", "maxIOPS": "700", "burstIOPS": "700"})
        verbs = {
            "clone": lambda: self.driver.create_cloned_volume(
                self.volume(volume_type=own), vol),
            "from_snapshot": lambda: self.driver.create_volume_from_snapshot(
                self.volume(volume_type=own), snap),
            "extend": lambda: self.driver.extend_volume(
                dict(vol, volume_type=typed(dict(SPECS, scaledIOPS="1", scaleMin="1"))),
                vol["size"] + 1),
        }
        xapi = self.driver.pool.counter
        for verb, run in verbs.items():
            xapi.reset()
            self.array.reset_calls()
            run()
            if verb == "extend":
                vol["size"] += 1
            steps = [("xapi", m, n) for m, c in sorted(xapi.snapshot().items())
                     for n in range(1, c + 1)]
            steps += [("array", m, n) for m, c in sorted(self.array.calls().items())
                      for n in range(1, c + 1)]
            self.assertIn(("array", "ModifyVolume", 1), steps)
            for side, method, nth in steps:
                before = self.world(), self.array_qos(vol)
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
                    self.assertIn(method, ("pool.remove_from_other_config",
                                           "secret.get_by_uuid", "secret.destroy"),
                                  "%s survived a failed %s #%d" % (verb, method, nth))
                    if verb == "extend":
                        vol["size"] += 1
                    continue
                finally:
                    self.control.clear_faults()
                    self.array.clear_faults()
                if verb == "extend":
                    # A LUN grown cannot shrink back (Element refuses,
                    # xVolumeShrinkProhibited): only the QoS must stay.
                    self.assertEqual(before[1], self.array_qos(vol),
                                     "extend: QoS changed after %s %s #%d failed"
                                     % (side, method, nth))
                    continue
                self.assertEqual(before, (self.world(), self.array_qos(vol)),
                                 "%s: changed after %s %s #%d failed" % (verb, side,
                                                                         method, nth))
