"""Schedule arithmetic: durations, periods, what is due, what retention deletes."""

from __future__ import annotations

import datetime

import testtools

from xensm_driver import exception
from xensm_driver.service import schedule

T0 = schedule.EPOCH
H = datetime.timedelta(hours=1)


class DurationTest(testtools.TestCase):
    def test_units_and_combinations(self) -> None:
        for text, seconds in (("15m", 900), ("1h", 3600), ("1d", 86400), ("2w", 1209600),
                              ("1h30m", 5400), ("90s", 90), (" 1H ", 3600)):
            self.assertEqual(seconds, schedule.parse_duration(text), text)

    def test_the_text_is_the_inverse(self) -> None:
        for seconds in (60, 900, 3600, 5400, 86400, 90061):
            self.assertEqual(seconds, schedule.parse_duration(
                schedule.duration_text(seconds)))

    def test_not_a_duration_says_how_to_write_one(self) -> None:
        for bad in ("", "1", "h", "1x", "1h 30m", "-1h", "1.5h", "1h-"):
            err = self.assertRaises(exception.InvalidInput, schedule.parse_duration, bad)
            self.assertIn("15m, 1h, 1d", str(err))

    def test_too_short_or_too_long(self) -> None:
        self.assertIn("shorter than a minute", str(self.assertRaises(
            exception.InvalidInput, schedule.parse_duration, "59s")))
        self.assertIn("0m", str(self.assertRaises(
            exception.InvalidInput, schedule.parse_duration, "0m")))
        self.assertIn("longer than a year", str(self.assertRaises(
            exception.InvalidInput, schedule.parse_duration, "367d")))
        self.assertEqual(60, schedule.parse_duration("1m"))


class KeepTest(testtools.TestCase):
    def test_keep_leaves_room_for_the_next_snapshot(self) -> None:
        self.assertEqual(26, schedule.check_keep(26, 27, "back end xs"))
        err = self.assertRaises(exception.InvalidInput, schedule.check_keep, 27, 27,
                                "back end xs")
        self.assertIn("use --keep 26 or less", str(err))
        self.assertIn("back end xs", str(err))

    def test_keep_is_positive_and_bounded(self) -> None:
        self.assertRaises(exception.InvalidInput, schedule.check_keep, 0, None, "x")
        self.assertRaises(exception.InvalidInput, schedule.check_keep,
                          schedule.KEEP_MAX + 1, None, "x")
        self.assertEqual(500, schedule.check_keep(500, None, "x"))


class PeriodTest(testtools.TestCase):
    def test_periods_start_on_whole_multiples(self) -> None:
        now = datetime.datetime(2026, 11, 28, 11, 59, 59, 999999)
        p = schedule.period_of(T0, 3600, now)
        self.assertEqual(datetime.datetime(2026, 11, 28, 11), schedule.period_start(
            T0, 3600, p))
        self.assertEqual(p + 1, schedule.period_of(T0, 3600, now + datetime.timedelta(
            microseconds=1)))

    def test_before_the_anchor_nothing_is_due(self) -> None:
        anchor = datetime.datetime(2026, 1, 1)
        self.assertEqual(-1, schedule.period_of(anchor, 60, anchor - datetime.timedelta(
            seconds=1)))
        self.assertFalse(schedule.due(None, -1))

    def test_due_once_per_period(self) -> None:
        self.assertTrue(schedule.due(None, 0))
        self.assertTrue(schedule.due(4, 5))
        self.assertFalse(schedule.due(5, 5))
        self.assertFalse(schedule.due(6, 5))        # a clock set back takes nothing

    def test_missed_periods_are_counted_not_made_up(self) -> None:
        self.assertEqual(0, schedule.missed(None, 9))
        self.assertEqual(0, schedule.missed(8, 9))
        self.assertEqual(3, schedule.missed(5, 9))
        self.assertEqual(0, schedule.missed(9, 9))


class PruneTest(testtools.TestCase):
    def test_oldest_go_first_down_to_keep(self) -> None:
        self.assertEqual([1, 2], schedule.to_prune([3, 1, 5, 2, 4], 3))
        self.assertEqual([], schedule.to_prune([1, 2], 3))
        self.assertEqual([1, 2, 3], schedule.to_prune([1, 2, 3, 4], 1))


class LimitRefusalTest(testtools.TestCase):
    def test_the_back_ends_refusals_of_one_more_snapshot(self) -> None:
        self.assertTrue(schedule.limit_refusal(exception.SnapshotLimitReached(
            backend="xs", operation="snapshot", reason="full")))
        self.assertTrue(schedule.limit_refusal(exception.ArrayLimitExceeded(
            array="sf", method="CreateSnapshot", name="xMaxSnapshotsPerVolumeExceeded",
            detail="max")))
        self.assertFalse(schedule.limit_refusal(exception.ArrayLimitExceeded(
            array="sf", method="CreateSnapshot", name="xMaxClonesPerVolumeExceeded",
            detail="max")))
        self.assertFalse(schedule.limit_refusal(exception.UnsupportedOperation(
            backend="xs", operation="snapshot", reason="no")))
