"""The xensm command's human output, checked against golden files.

Ids, times, the simulator's port and the temporary directory change from
run to run; :func:`normalise` replaces them (a uuid by a same-length
stand-in numbered in order of appearance, so columns keep their width).
To accept a change of output on purpose::

    XENSM_REGEN_GOLDEN=1 python -m stestr run tests.functional.test_cli_golden

and review the diff of tests/functional/golden/.
"""

from __future__ import annotations

import os
import re

import fixtures

from tests.functional import base
from tests.functional import test_cli
from xensm_driver import identity
from xensm_driver.cmd import xensm

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
PORT = re.compile(r"(127\.0\.0\.1):\d+")


def normalise(text: str, tmp: str) -> str:
    numbers: dict[str, str] = {}

    def uuid(match: re.Match[str]) -> str:
        found = match.group(0)
        if found not in numbers:
            numbers[found] = "00000000-0000-0000-0000-%012d" % (len(numbers) + 1)
        return numbers[found]

    text = text.replace(tmp, "<tmp>")
    text = UUID.sub(uuid, text)
    text = STAMP.sub("YYYY-MM-DD hh:mm:ss", text)
    return PORT.sub(r"\1:PORT", text)


class GoldenTest(test_cli.CliTestCase):
    def setUp(self) -> None:
        super().setUp()
        # argparse wraps --help to the terminal's width.
        self.useFixture(fixtures.EnvironmentVariable("COLUMNS", "100"))
        self.transcript: list[str] = []

    def run_and_record(self, *args: str, expect: int = 0, usage: bool = False) -> None:
        """Run and keep the transcript; ``usage``: argparse's several lines of stderr."""
        result = self.xensm(*args, expect=None if usage else expect)
        self.assertEqual(expect, result.code, result.err)
        self.transcript.append("$ xensm %s  (exit %d)\n%s%s" % (
            " ".join(args), result.code, result.out,
            "".join("[stderr] %s\n" % line for line in result.err.splitlines())))

    def check_golden(self, name: str) -> None:
        text = normalise("\n".join(self.transcript), self.tmp)
        path = os.path.join(GOLDEN, name)
        if os.environ.get("XENSM_REGEN_GOLDEN"):
            with open(path, "w") as f:
                f.write(text)
        with open(path) as f:
            expected = f.read()
        self.assertEqual(expected, text, "output differs from %s (see its module's "
                                         "docstring to regenerate)" % path)

    def test_lifecycle_output(self) -> None:
        self.run_and_record("check")
        self.run_and_record("volume", "create", "--size", "1", "--name", "data")
        self.run_and_record("snapshot", "create", "data", "--name", "s1")
        self.run_and_record("volume", "create", "--snapshot", "s1", "--size", "2",
                            "--name", "child")
        self.run_and_record("volume", "clone", "data", "--name", "copy")
        self.run_and_record("snapshot", "create", "child", "--name", "s2")
        self.run_and_record("volume", "list")
        self.run_and_record("snapshot", "list")
        self.run_and_record("snapshot", "tree", "data")
        self.run_and_record("snapshot", "tree", "child")
        self.run_and_record("volume", "show", "child")
        self.run_and_record("volume", "extend", "data", "3")
        self.run_and_record("volume", "revert", "data")
        self.run_and_record("volume", "delete", "data", expect=xensm.EXIT_REFUSED)
        self.run_and_record("volume", "show", "nothing", expect=xensm.EXIT_NOT_FOUND)
        self.run_and_record("group", "create", "pair", "--volume", "copy", "--volume", "child")
        self.run_and_record("group", "snapshot", "pair", "--name", "nightly")
        self.run_and_record("group", "list")
        self.run_and_record("group", "delete", "pair", expect=xensm.EXIT_REFUSED)
        self.run_and_record("volume", "delete", "data", "--cascade")
        self.run_and_record("volume", "list", "--all")
        self.check_golden("lifecycle.txt")

    def test_reconcile_output(self) -> None:
        self.run_and_record("volume", "create", "--size", "1", "--name", "kept")
        lost = self.j("volume", "create", "--size", "1", "--name", "lost")
        left = self.j("volume", "create", "--size", "1", "--name", "left")
        self.run_and_record("reconcile")
        drv = self.storage()
        storage = drv.backend.storage
        storage.destroy_vdi(storage.vdi_by_uuid(lost["provider_id"]).ref)
        self.mark_deleted(left["id"])
        storage.create_vdi(drv.backend.sr_ref, base.GiB, "volume-cinders",
                           identity.volume("cinders").tags())
        self.run_and_record("reconcile", expect=xensm.EXIT_DRIFT)
        self.run_and_record("reconcile", "--delete-orphans", expect=xensm.EXIT_DRIFT)
        self.run_and_record("reconcile", "--delete-orphans", "--yes", expect=xensm.EXIT_DRIFT)
        self.run_and_record("volume", "delete", "lost")
        self.run_and_record("reconcile")
        empty = "sqlite:///%s" % os.path.join(self.tmp, "empty.sqlite")
        self.run_and_record("reconcile", "--db-url", empty, expect=xensm.EXIT_CONFIG)
        self.run_and_record("volume", "list", "--db-url", empty, expect=xensm.EXIT_CONFIG)
        self.check_golden("reconcile.txt")

    def test_output_formats(self) -> None:
        for name, size in (("web", "3"), ("db", "1"), ("cache", "2")):
            self.j("volume", "create", "--size", size, "--name", name)
        self.j("snapshot", "create", "db", "--name", "nightly")
        self.run_and_record("volume", "list", "--sort-column", "SIZE")
        self.run_and_record("volume", "list", "-c", "name", "-c", "size", "--sort-column",
                            "name")
        self.run_and_record("volume", "list", "-f", "value", "-c", "name", "-c", "size_gb",
                            "--sort-column", "size")
        self.run_and_record("volume", "list", "-f", "csv", "-c", "ID", "-c", "Name",
                            "-c", "Status", "--name", "db", "--name", "web")
        self.run_and_record("volume", "list", "-f", "json", "-c", "name", "-c", "status",
                            "--status", "available", "--sort-column", "name")
        self.run_and_record("volume", "list", "-f", "yaml", "-c", "name", "-c", "size",
                            "--sort-column", "size")
        self.run_and_record("volume", "list", "--max-width", "6", "-c", "name", "-c", "status")
        self.run_and_record("volume", "show", "db", "-c", "name", "-c", "size",
                            "-c", "status")
        self.run_and_record("volume", "show", "db", "-f", "value", "-c", "status")
        self.run_and_record("volume", "show", "db", "-f", "yaml", "-c", "name",
                            "-c", "snapshots")
        self.run_and_record("snapshot", "list", "-f", "csv", "-c", "name", "-c", "size")
        self.run_and_record("group", "list", "-f", "json")
        self.run_and_record("volume", "list", "-c", "nope", expect=xensm.EXIT_USAGE)
        self.run_and_record("volume", "show", "nothing", "-f", "yaml",
                            expect=xensm.EXIT_NOT_FOUND)
        self.run_and_record("volume", "create", "--size", "x", "-f", "json",
                            expect=xensm.EXIT_USAGE, usage=True)
        self.check_golden("formats.txt")

    def test_help(self) -> None:
        self.run_and_record("--help")
        self.run_and_record("volume", "upload", "--help")
        self.check_golden("help.txt")
