"""The xensm command's pure parts: exit codes, sizes, tables, trees, parsing."""

from __future__ import annotations

import argparse
import io
import uuid

import testtools

from xensm_driver import exception
from xensm_driver.cmd import xensm
from xensm_driver.service import inventory
from xensm_driver.service.models import Snapshot
from xensm_driver.service.models import Volume
from xensm_driver.service.models import utcnow


class ExitCodeTest(testtools.TestCase):
    def test_each_kind_of_error_has_its_code(self) -> None:
        cases = [
            (exception.ConfigError(option="x", reason="y"), xensm.EXIT_CONFIG),
            (inventory.InventoryError(url="u", reason="r"), xensm.EXIT_CONFIG),
            (exception.SRNotFound(sr="s", reason="r"), xensm.EXIT_CONFIG),
            (inventory.NotInInventory(kind="Volume", name="v"), xensm.EXIT_NOT_FOUND),
            (exception.VolumeNotFound(volume_id="v", sr_uuid="s"), xensm.EXIT_NOT_FOUND),
            (FileNotFoundError(2, "No such file"), xensm.EXIT_NOT_FOUND),
            (inventory.Refused(reason="r"), xensm.EXIT_REFUSED),
            (exception.InUse(kind="Volume", name="v", reason="r"), xensm.EXIT_REFUSED),
            (exception.XapiInUse("VDI_IN_USE"), xensm.EXIT_REFUSED),
            (exception.UnsupportedOperation(backend="b", operation="o", reason="r"),
             xensm.EXIT_REFUSED),
            (exception.InvalidInput(reason="r"), xensm.EXIT_REFUSED),
            (exception.XapiConnectionError(url="u", method="m", reason="r"),
             xensm.EXIT_UNREACHABLE),
            (exception.XapiTimeout(url="u", method="m", timeout=1), xensm.EXIT_UNREACHABLE),
            (exception.AuthenticationFailed("SESSION_AUTHENTICATION_FAILED"),
             xensm.EXIT_UNREACHABLE),
            (exception.XapiError("INTERNAL_ERROR"), xensm.EXIT_FAILED),
            (exception.TransferError(direction="into", vdi="v", reason="r"),
             xensm.EXIT_FAILED),
        ]
        for exc, code in cases:
            self.assertEqual(code, xensm.exit_code(exc), repr(exc))

    def test_the_codes_are_documented_in_help(self) -> None:
        out = io.StringIO()
        self.assertEqual(0, xensm.run(["--help"], out, io.StringIO()))
        for code in (xensm.EXIT_FAILED, xensm.EXIT_USAGE, xensm.EXIT_CONFIG,
                     xensm.EXIT_NOT_FOUND, xensm.EXIT_REFUSED, xensm.EXIT_UNREACHABLE,
                     xensm.EXIT_DRIFT):
            self.assertRegex(out.getvalue(), r"\n  %d  " % code)


class ParseTest(testtools.TestCase):
    def test_sizes(self) -> None:
        for text, value in (("4096", 4096), ("4K", 4096), ("4M", 4 << 20), ("4MiB", 4 << 20),
                            ("1g", 1 << 30), ("2GB", 2 << 30), ("0", 0)):
            self.assertEqual(value, xensm.parse_bytes(text), text)
        for bad in ("four", "4X", "-1", ""):
            self.assertRaises(argparse.ArgumentTypeError, xensm.parse_bytes, bad)

    def test_usage_errors_exit_2(self) -> None:
        err = io.StringIO()
        self.assertEqual(2, xensm.run(["volume", "create", "--size", "0"], io.StringIO(), err))
        self.assertIn("must be at least 1", err.getvalue())
        self.assertEqual(2, xensm.run(["volume"], io.StringIO(), io.StringIO()))
        self.assertEqual(2, xensm.run(["frobnicate"], io.StringIO(), io.StringIO()))

    def test_options_go_before_or_after_the_subcommand(self) -> None:
        parser = xensm.build_parser()
        a = parser.parse_args(["--json", "--backend", "b", "volume", "list"])
        b = parser.parse_args(["volume", "list", "--json", "--backend", "b"])
        self.assertEqual((True, "b"), (a.json, a.backend))
        self.assertEqual((True, "b"), (b.json, b.backend))


class RenderTest(testtools.TestCase):
    def test_table_aligns_columns_and_marks_empty_cells(self) -> None:
        self.assertEqual(["A    BB", "xyz  -", "1    22"],
                         xensm.table([("xyz", None), (1, 22)], ("A", "BB")))

    def test_tree(self) -> None:
        now = utcnow()
        root = Volume(id="v1", name="root", size_gb=1, status="available", created_at=now)
        snap = Snapshot(id="s1", name="s", volume_id="v1", status="available", created_at=now)
        child = Volume(id="v2", name="", size_gb=2, status="available", created_at=now)
        clone = Volume(id="v3", name="c", size_gb=1, status="error", created_at=now)
        node = {"kind": "volume", "record": root, "children": [
            {"kind": "snapshot", "record": snap, "children": [
                {"kind": "volume", "record": child, "children": []}]},
            {"kind": "volume", "record": clone, "children": []}]}
        stamp = now.strftime("%Y-%m-%d %H:%M:%S")
        self.assertEqual([
            "volume root  v1  1 GiB  available",
            "├── snapshot s  s1  %s  available" % stamp,
            "│   └── volume -  v2  2 GiB  available",
            "└── volume c  v3  1 GiB  error",
        ], xensm.tree_lines(node))

    def test_an_error_with_json_is_also_json_on_stdout(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        xensm.Output(out, err, as_json=True).error(
            inventory.Refused(reason="volume v has 1 snapshot(s)"), xensm.EXIT_REFUSED)
        self.assertEqual("xensm: error: Refused: volume v has 1 snapshot(s)\n", err.getvalue())
        self.assertIn('"exit_code": 5', out.getvalue())

    def test_progress_bar_ends_its_line(self) -> None:
        stream = io.StringIO()
        bar = xensm.Progress(stream, "upload")
        bar(1 << 20, 4 << 20)
        bar(4 << 20, 4 << 20)
        text = stream.getvalue()
        self.assertIn("100%", text)
        self.assertTrue(text.endswith("\n"))
        self.assertTrue(text.startswith("\rupload ["))

    def test_status_of_an_interrupted_record(self) -> None:
        from tests.unit.service.test_inventory import dead_owner
        vol = Volume(id=str(uuid.uuid4()), status="creating", owner=dead_owner())
        self.assertEqual("creating (interrupted)", xensm.status_text(vol))
