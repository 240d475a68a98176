"""SolidFire QoS resolution: Cinder's keys, scaling, presets, limits."""

from __future__ import annotations

import testtools

from xensm_driver import exception
from xensm_driver.backends.solidfire import qos


class TestResolve(testtools.TestCase):

    def test_cinder_keys_with_and_without_scope(self) -> None:
        policy = qos.Policy()
        self.assertEqual({"minIOPS": 100, "maxIOPS": 1000, "burstIOPS": 2000},
                         policy.resolve({"qos:minIOPS": "100", "maxIOPS": "1000",
                                         "burstIOPS": "2000", "other": "x"}, 1))

    def test_scaled_per_gib_above_the_first(self) -> None:
        # Cinder _set_qos_by_volume_type: base + scale * (size - 1).
        request = {"minIOPS": "100", "maxIOPS": "1000", "burstIOPS": "2000",
                   "scaledIOPS": "true", "scaleMin": "10", "scaleMax": "100",
                   "scaleBurst": "200"}
        self.assertEqual({"minIOPS": 190, "maxIOPS": 1900, "burstIOPS": 3800},
                         qos.Policy().resolve(request, 10))
        # Without scaledIOPS the scale keys do nothing.
        del request["scaledIOPS"]
        self.assertEqual(100, qos.Policy().resolve(request, 10)["minIOPS"])

    def test_scaled_values_are_capped_at_the_limits(self) -> None:
        request = {"minIOPS": "100", "maxIOPS": "1000", "burstIOPS": "1000",
                   "scaledIOPS": "1", "scaleMax": "1000", "scaleBurst": "1000"}
        got = qos.Policy(limits=qos.Limits(max_high=100000, burst_high=100000)
                         ).resolve(request, 1000)
        self.assertEqual((100000, 100000), (got["maxIOPS"], got["burstIOPS"]))

    def test_unset_keys_come_from_defaults_then_element(self) -> None:
        policy = qos.Policy(defaults={"minIOPS": 300})
        self.assertEqual({"minIOPS": 300, "maxIOPS": 15000, "burstIOPS": 15000},
                         policy.resolve(None, 1))
        # A max above the default burst lifts the burst that was not asked.
        self.assertEqual(20000, policy.resolve({"maxIOPS": "20000"}, 1)["burstIOPS"])

    def test_base_keeps_what_is_not_asked(self) -> None:
        got = qos.Policy().resolve({"maxIOPS": "800"}, 1,
                                   base={"minIOPS": 70, "maxIOPS": 500, "burstIOPS": 900})
        self.assertEqual({"minIOPS": 70, "maxIOPS": 800, "burstIOPS": 900}, got)

    def test_presets_only_when_allowed_and_type_keys_win(self) -> None:
        self.assertEqual(50, qos.Policy().resolve({"sf-qos": "fast"}, 1)["minIOPS"])
        allowed = qos.Policy(allow_presets=True)
        self.assertEqual({"minIOPS": 500, "maxIOPS": 1000, "burstIOPS": 1000},
                         allowed.resolve({"sf-qos": "fast"}, 1))
        self.assertEqual(600, allowed.resolve({"sf-qos": "fast", "minIOPS": "600"},
                                              1)["minIOPS"])
        self.assertRaises(exception.InvalidInput, allowed.resolve, {"sf-qos": "warp"}, 1)

    def test_out_of_limits_and_order_are_named(self) -> None:
        limits = qos.Limits(max_high=100000, burst_high=100000)
        policy = qos.Policy(limits=limits)
        err = self.assertRaises(exception.InvalidInput, policy.resolve,
                                {"minIOPS": "20", "maxIOPS": "150000"}, 1)
        self.assertIn("minIOPS 20 (asked) is outside the cluster's 50..15000", str(err))
        self.assertIn("maxIOPS 150000 (asked) is outside the cluster's 100..100000",
                      str(err))
        err = self.assertRaises(exception.InvalidInput, policy.resolve,
                                {"minIOPS": "900", "maxIOPS": "800", "burstIOPS": "700"}, 1)
        self.assertIn("minIOPS 900 is above maxIOPS 800", str(err))
        self.assertIn("burstIOPS 700 is below maxIOPS 800", str(err))
        self.assertRaises(exception.InvalidInput, policy.resolve, {"minIOPS": "lots"}, 1)

    def test_limits_from_get_limits(self) -> None:
        limits = qos.Limits.from_get_limits({"volumeMaxIOPSMax": 100000,
                                             "volumeMinIOPSMin": 50})
        self.assertEqual((100, 100000), limits.range("maxIOPS"))
        self.assertEqual((100, 200000), limits.range("burstIOPS"))


class TestCli(testtools.TestCase):

    def test_short_and_long_keys(self) -> None:
        self.assertEqual({"minIOPS": "100", "maxIOPS": "200", "burstIOPS": "300"},
                         qos.parse_cli("min=100, max=200,burstIOPS=300"))

    def test_preset_expands_and_off_asks_nothing(self) -> None:
        self.assertEqual({"minIOPS": "100", "maxIOPS": "200", "burstIOPS": "200"},
                         qos.parse_cli("slow"))
        self.assertEqual({}, qos.parse_cli("off"))

    def test_bad_pieces_are_named(self) -> None:
        err = self.assertRaises(exception.InvalidInput, qos.parse_cli, "min=1,speed=9")
        self.assertIn("'speed=9'", str(err))
        self.assertRaises(exception.InvalidInput, qos.parse_cli, "warp")
        self.assertRaises(exception.InvalidInput, qos.parse_cli, "")
