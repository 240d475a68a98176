"""The xensm command's pure parts: exit codes, sizes, tables, trees, parsing."""

from __future__ import annotations

import argparse
import io
import json
import os
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
        self.assertEqual(("json", "b"), (a.format, a.backend))
        self.assertEqual(("json", "b"), (b.format, b.backend))
        c = parser.parse_args(["volume", "list", "-f", "yaml", "-c", "id", "-c", "name"])
        self.assertEqual(("yaml", ["id", "name"]), (c.format, c.column))


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
        xensm.Output(out, err, "json").error(
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


class FormatsTest(testtools.TestCase):
    def test_yaml_reads_back_as_the_data(self) -> None:
        import yaml
        data = [{"id": "a", "name": "- tricky: name #1", "size_gb": 3, "owner": None,
                 "tags": ["x", "yes", "12"], "nested": {"ok": True, "empty": []}},
                {"id": "b", "name": "", "size_gb": 1, "owner": "h:1", "tags": [],
                 "nested": {}}]
        self.assertEqual(data, yaml.safe_load(xensm.to_yaml(data)))

    def test_columns_sorting_and_widths(self) -> None:
        out = io.StringIO()
        output = xensm.Output(out, io.StringIO(), "value", columns=["Size", "name"],
                              sort_columns=["size_gb"])
        output.emit_list(("NAME", "SIZE"), ("name", "size_gb"),
                         [("b", 10), ("a", 2)], lambda r: list(r), list, "none")
        self.assertEqual("2 a\n10 b\n", out.getvalue())
        out = io.StringIO()
        xensm.Output(out, io.StringIO(), "table", max_width=4).emit_list(
            ("NAME",), ("name",), [("abcdefgh",)], lambda r: list(r), list, "none")
        self.assertEqual("NAME\na...\n", out.getvalue())
        self.assertRaises(xensm.UsageError, xensm.Output(
            io.StringIO(), io.StringIO(), "table", columns=["nope"]).emit_list,
            ("NAME",), ("name",), [], list, list, "none")

    def test_usage_errors_honour_the_format(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        code = xensm.run(["volume", "create", "--size", "0", "-f", "json"], out, err)
        self.assertEqual(xensm.EXIT_USAGE, code)
        self.assertEqual(xensm.EXIT_USAGE, json.loads(out.getvalue())["error"]["exit_code"])
        self.assertIn("must be at least 1", err.getvalue())

    def test_completion_scripts(self) -> None:
        for shell in ("bash", "zsh"):
            out = io.StringIO()
            self.assertEqual(0, xensm.run(["complete", "--shell", shell], out,
                                          io.StringIO()))
            script = out.getvalue()
            self.assertIn("complete -F _xensm xensm", script)
            self.assertIn('"volume manageable"*)', script)
            self.assertLess(script.index('"volume manageable"*)'),
                            script.index('"volume manage"*)'))
        self.assertIn("bashcompinit", script)

    def test_sparse_writer_leaves_holes(self) -> None:
        import tempfile
        with tempfile.TemporaryFile() as f:
            sparse = xensm.SparseWriter(f)
            block = xensm.SparseWriter.BLOCK
            sparse.write(b"x" * block + bytes(block * 16))
            sparse.write(bytes(block * 16) + b"y")
            sparse.close()
            f.seek(0)
            data = f.read()
            self.assertEqual(block * 33 + 1, len(data))
            self.assertEqual((b"x" * block, b"y"), (data[:block], data[-1:]))
            self.assertEqual(bytes(block * 32), data[block:-1])
            self.assertLess(os.fstat(f.fileno()).st_blocks * 512, block * 8)
