"""The xensm command against the simulator: verbs, exit codes, --json, refusals.

Commands run in-process through ``xensm.run`` (the same code path as the
console script, minus interpreter start-up); the tests that need a real
process (a SIGKILL, the demo) are in test_cli_kill.py and test_cli_demo.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any

import fixtures

from tests.functional import base
from xensm_driver import driver as driver_mod
from xensm_driver import identity
from xensm_driver.cmd import xensm
from xensm_driver.service import inventory
from xensm_driver.service import models
from xensm_driver.service.models import Volume

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
A = base.pattern("A", 3 * base.MiB)
B = base.pattern("B", 3 * base.MiB)
INJECTED = ["INTERNAL_ERROR", "fault injected by the test"]


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def json(self) -> Any:
        return json.loads(self.out)


class CliTestCase(base.SimTestCase):
    """A simulator, a config file for one back end on it, and an empty inventory."""

    SR_TYPE = "nfs"
    SECTION = "xs"

    def setUp(self) -> None:
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.db_url = "sqlite:///%s" % os.path.join(self.tmp, "inventory.sqlite")
        self.conf = self.write_config(base.backend_ini(self.sim, self.SR_TYPE,
                                                       section=self.SECTION))
        inventory.Inventory(self.db_url).close()     # made, empty: commands may read it

    def write_config(self, ini: str, name: str = "xensm.conf") -> str:
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(ini + "\n[xensm]\ndb_url = %s\n" % self.db_url)
        return path

    def xensm(self, *args: str, expect: int | None = 0, conf: str | None = None,
              stdin: Any = None) -> Result:
        """Run ``xensm --config-file CONF ARGS``; check the exit code and secrecy."""
        out, err = io.StringIO(), io.StringIO()
        code = xensm.run(["--config-file", conf or self.conf, *args], out, err, stdin)
        result = Result(code, out.getvalue(), err.getvalue())
        if expect is not None:
            self.assertEqual(expect, code, "xensm %s: %s%s" % (" ".join(args), result.out,
                                                              result.err))
        self.assertNotIn(base.PASSWORD, result.out + result.err)
        if code and expect:
            # A failure says why on one line of stderr.
            self.assertEqual(1, len(result.err.strip().splitlines()), result.err)
            self.assertTrue(result.err.startswith("xensm: "), result.err)
        return result

    def spawn(self, *args: str, db_url: str | None = None) -> subprocess.Popen[str]:
        """``xensm --config-file CONF [--db-url URL] --json ARGS`` as a real process."""
        extra = ["--db-url", db_url] if db_url else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "xensm_driver.cmd.xensm", "--config-file", self.conf,
             *extra, "--json", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT)
        self.addCleanup(_reap, proc)
        return proc

    def finish(self, *procs: subprocess.Popen[str]) -> list[Result]:
        """Wait for processes; their results, no password in any output."""
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            self.assertNotIn(base.PASSWORD, out + err)
            results.append(Result(proc.returncode, out, err))
        return results

    def j(self, *args: str, expect: int = 0) -> Any:
        return self.xensm(*args, "--json", expect=expect).json

    def file(self, name: str, data: bytes) -> str:
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def content(self, volume: str, length: int) -> bytes:
        path = os.path.join(self.tmp, "download.img")
        self.xensm("volume", "download", volume, path, "--length", str(length))
        with open(path, "rb") as f:
            return f.read()

    def storage(self) -> Any:
        """A driver of our own on the same back end, for looking at the SR."""
        drv = driver_mod.XenAPISMDriver(configuration=base.configuration(
            base.backend_ini(self.sim, self.SR_TYPE, section=self.SECTION), self.SECTION))
        drv.do_setup(None)
        self.addCleanup(drv.close)
        return drv

    def mark_deleted(self, obj_id: str, cls: Any = Volume) -> None:
        """Record an object as deleted while its VDI stays: a delete whose
        answer was lost after the record said so, or that missed a copy."""
        inv = inventory.Inventory(self.db_url)
        self.addCleanup(inv.close)
        inv.update(cls, obj_id, status="deleted", deleted_at=models.utcnow())

    def tagged_vdis(self, drv: Any) -> dict[str, str]:
        """uuid -> tag value of every live tagged VDI on the SR."""
        out = {}
        for vdi in drv.backend.storage.sr_vdis(drv.backend.sr_ref):
            for key in (identity.VOLUME_TAG, identity.SNAPSHOT_TAG):
                if vdi.managed and key in vdi.other_config:
                    out[vdi.uuid] = vdi.other_config[key]
        return out


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


class VolumeCommandsTest(CliTestCase):
    def test_lifecycle_with_json(self) -> None:
        vol = self.j("volume", "create", "--size", "1", "--name", "data")
        self.assertEqual(("data", 1, "available", "xs"),
                         (vol["name"], vol["size_gb"], vol["status"], vol["backend"]))
        self.assertTrue(vol["provider_location"].endswith("/" + vol["provider_id"]))
        self.assertEqual([vol["id"]], [v["id"] for v in self.j("volume", "list")])
        self.assertEqual(vol["id"], self.j("volume", "show", vol["id"][:8])["id"])

        self.assertEqual(2, self.j("volume", "extend", "data", "2")["size_gb"])
        snap = self.j("snapshot", "create", "data", "--name", "s1")
        self.assertEqual((vol["id"], 2, "available"),
                         (snap["volume_id"], snap["volume_size_gb"], snap["status"]))
        self.assertEqual([snap["id"]], self.j("volume", "show", "data")["snapshots"])
        self.assertEqual([snap["id"]], [s["id"] for s in self.j("snapshot", "list",
                                                                 "--volume", "data")])
        clone = self.j("volume", "clone", "data", "--name", "copy")
        self.assertEqual((vol["id"], 2), (clone["source_volume_id"], clone["size_gb"]))
        from_snap = self.j("volume", "create", "--snapshot", "s1", "--size", "3")
        self.assertEqual((snap["id"], 3), (from_snap["source_snapshot_id"],
                                           from_snap["size_gb"]))
        self.assertEqual([from_snap["id"]],
                         self.j("snapshot", "show", "s1")["volumes_made_from_it"])
        reverted = self.j("volume", "revert", "data")
        self.assertEqual((vol["id"], snap["id"]), (reverted["volume"]["id"],
                                                   reverted["snapshot"]["id"]))

        tree = self.j("snapshot", "tree", "data")
        self.assertEqual([("snapshot", snap["id"]), ("volume", clone["id"])],
                         [(c["kind"], c["id"]) for c in tree["children"]])
        self.assertEqual([from_snap["id"]], [c["id"] for c in tree["children"][0]["children"]])
        self.assertEqual([snap["id"], vol["id"]],
                         self.j("snapshot", "tree", from_snap["id"])["lineage"])

        self.assertEqual("deleted", self.j("volume", "delete", "data", "--cascade")["status"])
        self.assertEqual("deleted", self.j("snapshot", "show", snap["id"])["status"])
        self.assertEqual(sorted([clone["id"], from_snap["id"]]),
                         sorted(v["id"] for v in self.j("volume", "list")))
        self.assertEqual(3, len(self.j("volume", "list", "--all")))

    def test_refusals_change_nothing_and_exit_5(self) -> None:
        vol = self.j("volume", "create", "--size", "2", "--name", "keep")
        other = self.j("volume", "create", "--size", "1", "--name", "other")
        snap = self.j("snapshot", "create", "other")
        drv = self.storage()
        before = self.tagged_vdis(drv)
        for args, words in (
                (("snapshot", "create", "keep"), None),
                (("volume", "delete", "keep"), "has 1 snapshot(s)"),
                (("volume", "extend", "keep", "2"), "extend needs a larger size"),
                (("volume", "extend", "keep", "1"), "never shrink"),
                (("volume", "revert", "keep", "--snapshot", snap["id"]),
                 "belongs to volume %s" % other["id"]),
                (("volume", "clone", "keep", "--size", "1"), "cannot be smaller"),
                (("volume", "unmanage", "keep"), "delete them before unmanaging"),
                (("volume", "upload", "other", self.file("big", b"x" * 10)), None)):
            if words is None:
                self.xensm(*args)
                continue
            result = self.xensm(*args, expect=xensm.EXIT_REFUSED)
            self.assertIn(words, result.err)
        after = self.tagged_vdis(drv)
        self.assertEqual(len(before) + 1, len(after))        # only the snapshot made above
        self.assertEqual("available", self.j("volume", "show", vol["id"])["status"])
        self.assertEqual(2, self.j("volume", "show", vol["id"])["size_gb"])

    def test_revert_while_attached_is_refused_and_the_volume_stays_available(self) -> None:
        vol = self.j("volume", "create", "--size", "1", "--name", "busy")
        self.j("snapshot", "create", "busy")
        drv = self.storage()
        pool = drv.pool
        vbd = base.attach_to_dom0(
            pool, drv.backend.storage.vdi_by_uuid(vol["provider_id"]).ref)
        result = self.xensm("volume", "revert", "busy", expect=xensm.EXIT_REFUSED)
        self.assertIn("attached", result.err)
        result = self.xensm("volume", "delete", "busy", "--cascade", expect=xensm.EXIT_REFUSED)
        self.assertEqual("available", self.j("volume", "show", "busy")["status"])
        pool.call("VBD.unplug", vbd)
        pool.call("VBD.destroy", vbd)
        self.xensm("volume", "revert", "busy")
        self.xensm("volume", "delete", "busy", "--cascade")

    def test_a_create_the_driver_refuses_leaves_no_record(self) -> None:
        shallow = self.write_config(base.backend_ini(self.sim, "nfs", section="xs",
                                                     xensm_snapshot_chain_limit=2),
                                    name="shallow.conf")
        self.xensm("volume", "create", "--size", "1", "--name", "v", conf=shallow)
        self.xensm("snapshot", "create", "v", conf=shallow)       # the chain is now 2 deep
        result = self.xensm("snapshot", "create", "v", conf=shallow, expect=xensm.EXIT_REFUSED)
        self.assertIn("xensm_snapshot_chain_limit", result.err)
        self.assertEqual(1, len(self.j("snapshot", "list", "--all")))
        self.assertEqual("available", self.j("volume", "show", "v")["status"])

    def test_a_record_left_busy_by_another_host_needs_a_reset(self) -> None:
        vol = self.j("volume", "create", "--size", "1", "--name", "v")
        inv = inventory.Inventory(self.db_url)
        self.addCleanup(inv.close)
        inv.update(Volume, vol["id"], status="extending", owner="other-host.example:42")
        report = self.j("reconcile")                 # not a discrepancy: maybe running
        self.assertEqual(["in_progress"], [f["kind"] for f in report["findings"]])
        result = self.xensm("volume", "delete", "v", expect=xensm.EXIT_REFUSED)
        self.assertIn("process other-host.example:42 is extending it", result.err)
        usage = self.xensm("volume", "reset-state", "v", expect=None)   # say which state
        self.assertEqual(xensm.EXIT_USAGE, usage.code)
        self.assertIn("required: --state", usage.err)
        reset = self.j("volume", "reset-state", "v", "--state", "available")
        self.assertEqual(("available", None), (reset["status"], reset["owner"]))
        self.assertIn("reset from extending", reset["status_reason"])
        inv.update(Volume, vol["id"], status="creating", owner=inventory.this_owner())
        self.xensm("volume", "reset-state", "v", "--state", "error", expect=xensm.EXIT_REFUSED)
        inv.update(Volume, vol["id"], status="available", owner=None)
        self.xensm("volume", "delete", "v")

    def test_not_found_exits_4(self) -> None:
        for args in (("volume", "show", "nope"), ("volume", "delete", "nope"),
                     ("snapshot", "show", "nope"), ("snapshot", "tree", "nope"),
                     ("group", "show", "nope"), ("volume", "manage", "--vdi-name", "nope"),
                     ("volume", "upload", "nope", "/nonexistent/file")):
            self.xensm(*args, expect=xensm.EXIT_NOT_FOUND)
        self.j("volume", "create", "--size", "1", "--name", "v")
        result = self.xensm("volume", "upload", "v", "/nonexistent/file",
                            expect=xensm.EXIT_NOT_FOUND)
        self.assertIn("/nonexistent/file", result.err)

    def test_json_errors_carry_the_exit_code(self) -> None:
        result = self.xensm("volume", "show", "nope", "--json", expect=xensm.EXIT_NOT_FOUND)
        self.assertEqual({"type": "NotInInventory", "exit_code": 4,
                          "message": "Volume nope is not in the inventory."},
                         result.json["error"])

    def test_a_failed_create_is_recorded_as_error_with_its_reason(self) -> None:
        drv = self.storage()
        before = self.tagged_vdis(drv)
        self.control.inject_fault("VDI.create", error=INJECTED)
        result = self.xensm("volume", "create", "--size", "1", "--name", "bad",
                            expect=xensm.EXIT_FAILED)
        self.assertIn("INTERNAL_ERROR", result.err)
        (vol,) = self.j("volume", "list")
        self.assertEqual("error", vol["status"])
        self.assertIn("INTERNAL_ERROR", vol["status_reason"])
        self.assertIsNone(vol["owner"])
        self.assertEqual(before, self.tagged_vdis(drv))
        self.assertEqual(xensm.EXIT_OK, self.xensm("reconcile").code)   # error, no VDI: known
        self.xensm("volume", "delete", "bad")
        self.assertEqual([], self.j("volume", "list"))

    def test_a_failed_delete_is_error_deleting_and_can_be_retried(self) -> None:
        self.j("volume", "create", "--size", "1", "--name", "v")
        self.control.inject_fault("VDI.destroy", error=INJECTED)
        self.xensm("volume", "delete", "v", expect=xensm.EXIT_FAILED)
        self.assertEqual("error_deleting", self.j("volume", "show", "v")["status"])
        self.xensm("volume", "delete", "v")
        self.assertEqual("deleted", self.j("volume", "show", "v")["status"])

    def test_a_failed_extend_is_error_extending_and_can_be_retried(self) -> None:
        self.j("volume", "create", "--size", "1", "--name", "v")
        self.control.inject_fault("VDI.resize", error=INJECTED)
        self.xensm("volume", "extend", "v", "2", expect=xensm.EXIT_FAILED)
        shown = self.j("volume", "show", "v")
        self.assertEqual(("error_extending", 1), (shown["status"], shown["size_gb"]))
        self.xensm("snapshot", "create", "v", expect=xensm.EXIT_REFUSED)
        self.assertEqual(2, self.j("volume", "extend", "v", "2")["size_gb"])

    def test_manage_and_unmanage(self) -> None:
        drv = self.storage()
        ref = drv.backend.storage.create_vdi(drv.backend.sr_ref, 3 * base.GiB // 2,
                                             "legacy", {})
        legacy = drv.backend.storage.get_vdi(ref)
        listed = {e["reference"]["source-id"]: e for e in self.j("volume", "manageable")}
        self.assertTrue(listed[legacy.uuid]["safe_to_manage"])
        vol = self.j("volume", "manage", "--vdi-name", "legacy", "--name", "adopted")
        self.assertEqual((legacy.uuid, 2, "available"),
                         (vol["provider_id"], vol["size_gb"], vol["status"]))
        again = self.xensm("volume", "manage", "--vdi-uuid", legacy.uuid,
                           expect=xensm.EXIT_REFUSED)
        self.assertIn("already belongs to volume %s" % vol["id"], again.err)
        self.assertEqual(1, len(self.j("volume", "list")))
        self.assertEqual("unmanaged", self.j("volume", "unmanage", "adopted")["status"])
        self.assertEqual([], self.j("volume", "list"))
        self.assertNotIn(legacy.uuid, self.tagged_vdis(drv))
        self.assertIsNotNone(drv.backend.storage.vdi_by_uuid(legacy.uuid))


class DataCommandsTest(CliTestCase):
    def test_upload_snapshot_overwrite_revert_download(self) -> None:
        self.j("volume", "create", "--size", "1", "--name", "v")
        done = self.j("volume", "upload", "v", self.file("a.img", A))
        self.assertEqual(len(A), done["bytes"])
        self.j("snapshot", "create", "v", "--name", "before")
        with open(self.file("b.img", B), "rb") as pipe_like:
            # From stdin, as `xensm volume upload v - --size N < b.img`.
            self.xensm("volume", "upload", "v", "-", "--size", str(len(B)), stdin=pipe_like)
        self.assertEqual(B, self.content("v", len(B)))
        self.xensm("volume", "revert", "v", "--snapshot", "before")
        self.assertEqual(A, self.content("v", len(A)))
        clone = self.j("volume", "clone", "v")
        self.assertEqual(A, self.content(clone["id"], len(A)))

    def test_download_to_stdout(self) -> None:
        self.j("volume", "create", "--size", "1", "--name", "v")
        self.xensm("volume", "upload", "v", self.file("a.img", A))
        raw = io.BytesIO()
        out = io.TextIOWrapper(raw)
        code = xensm.run(["--config-file", self.conf, "volume", "download", "v", "-",
                          "--length", "1M"], out, io.StringIO())
        out.flush()
        self.assertEqual(0, code)
        self.assertEqual(A[:base.MiB], raw.getvalue())
        path = os.path.join(self.tmp, "head.img")
        done = self.j("volume", "download", "v", path, "--length", "2M")
        self.assertEqual((2 * base.MiB, path), (done["bytes"], done["file"]))
        self.assertEqual(2 * base.MiB, os.path.getsize(path))
        self.assertFalse(os.path.exists(path + ".part"))

    def test_downloads_are_written_sparse(self) -> None:
        self.j("volume", "create", "--size", "1", "--name", "v")
        self.xensm("volume", "upload", "v", self.file("a.img", A))
        path = os.path.join(self.tmp, "sparse.img")
        self.xensm("volume", "download", "v", path, "--length", "32M")
        self.assertEqual(32 * base.MiB, os.path.getsize(path))
        self.assertLess(os.stat(path).st_blocks * 512, 8 * base.MiB)   # A is 3 MiB
        with open(path, "rb") as f:
            self.assertEqual(A, f.read(len(A)))
            self.assertEqual(bytes(29 * base.MiB), f.read())

    def test_a_progress_bar_only_on_a_terminal(self) -> None:
        self.j("volume", "create", "--size", "1", "--name", "v")
        path = self.file("a.img", A)

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        for stdout, shown in ((io.StringIO(), False), (Terminal(), True)):
            err = io.StringIO()
            code = xensm.run(["--config-file", self.conf, "volume", "upload", "v", path],
                             stdout, err)
            self.assertEqual(0, code, err.getvalue())
            self.assertEqual(shown, "upload [" in err.getvalue(), err.getvalue())
            self.assertIn("Uploaded 3.0 MiB", stdout.getvalue())
        err = io.StringIO()
        xensm.run(["--config-file", self.conf, "volume", "upload", "v", path,
                   "--no-progress"], Terminal(), err)
        self.assertEqual("", err.getvalue())

    def test_upload_from_a_pipe_needs_a_size(self) -> None:
        self.j("volume", "create", "--size", "1", "--name", "v")
        result = self.xensm("volume", "upload", "v", "-", stdin=io.BytesIO(A),
                            expect=xensm.EXIT_REFUSED)
        self.assertIn("give --size", result.err)

    def test_an_interrupted_upload_leaves_the_volume_in_error(self) -> None:
        self.j("volume", "create", "--size", "1", "--name", "v")
        result = self.xensm("volume", "upload", "v", "-", "--size", str(len(A)),
                            stdin=io.BytesIO(A[:base.MiB]), expect=xensm.EXIT_FAILED)
        self.assertIn("ended after", result.err)
        shown = self.j("volume", "show", "v")
        self.assertEqual("error", shown["status"])
        self.xensm("volume", "upload", "v", self.file("a.img", A))      # a full rewrite
        self.assertEqual("available", self.j("volume", "show", "v")["status"])


class ConfigurationTest(CliTestCase):
    def test_several_back_ends_need_a_name(self) -> None:
        two = self.write_config(
            base.backend_ini(self.sim, "nfs", section="nfs-a")
            + base.backend_ini(self.sim, "lvm", section="lvm-b"), name="two.conf")
        result = self.xensm("volume", "create", "--size", "1", conf=two,
                            expect=xensm.EXIT_CONFIG)
        self.assertIn("several back ends are configured (lvm-b, nfs-a)", result.err)
        result = self.xensm("volume", "create", "--size", "1", "--backend", "nope", conf=two,
                            expect=xensm.EXIT_CONFIG)
        self.assertIn("configured: lvm-b, nfs-a", result.err)
        on_b = self.xensm("volume", "create", "--size", "1", "--backend", "lvm-b", "--json",
                          conf=two).json
        self.assertEqual("lvm-b", on_b["backend"])
        checks = self.xensm("check", "--json", conf=two).json
        self.assertEqual([("lvm-b", True, "lvm"), ("nfs-a", True, "nfs")],
                         [(c["backend"], c["ok"], c["sr_type"]) for c in checks])
        self.assertEqual(["lvm-b"], [v["backend"] for v in self.xensm(
            "volume", "list", "--json", conf=two).json])

    def test_configuration_errors_exit_3(self) -> None:
        missing = self.xensm("check", conf="/nonexistent/xensm.conf",
                             expect=xensm.EXIT_CONFIG)
        self.assertIn("/nonexistent/xensm.conf", missing.err)
        bad = self.write_config(base.backend_ini(self.sim, "nfs", section="xs",
                                                 xenapi_connection_pool_size="lots"),
                                name="bad.conf")
        result = self.xensm("check", conf=bad, expect=xensm.EXIT_CONFIG)
        self.assertIn("xenapi_connection_pool_size in [xs]", result.err)
        unset = self.write_config(base.backend_ini(self.sim, "nfs", section="xs",
                                                   xensm_nfs_server=""), name="unset.conf")
        result = self.xensm("check", conf=unset, expect=xensm.EXIT_CONFIG)
        self.assertIn("xensm_nfs_server", result.err)
        empty = self.write_config("[DEFAULT]\n", name="empty.conf")
        self.xensm("volume", "create", "--size", "1", conf=empty, expect=xensm.EXIT_CONFIG)

    def test_debug_logging_shows_no_password(self) -> None:
        result = self.xensm("volume", "create", "--size", "1", "--debug")
        self.assertIn(" DEBUG xensm_driver.", result.err)  # xensm() checks the password is absent
        self.assertEqual("", self.xensm("volume", "list").err)

    def test_config_from_the_environment(self) -> None:
        self.useFixture(fixtures.EnvironmentVariable("XENSM_CONFIG_FILE", self.conf))
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(0, xensm.run(["check"], out, err), err.getvalue())
        self.assertIn("Back end xs: OK", out.getvalue())

    def test_db_url_option_wins_over_the_file(self) -> None:
        other = "sqlite:///%s" % os.path.join(self.tmp, "other.sqlite")
        self.j("volume", "create", "--size", "1")
        self.j("volume", "create", "--size", "1", "--db-url", other)
        self.assertEqual(1, len(self.j("volume", "list", "--db-url", other)))
        self.assertEqual(1, len(self.j("volume", "list")))
        result = self.xensm("volume", "list", "--db-url", "postgresql+nodriver://u:%s@h/db"
                            % base.PASSWORD, expect=xensm.EXIT_CONFIG)
        self.assertIn("postgresql+nodriver://u:***@h/db", result.err)

    def test_unreachable_or_refused_xapi_exits_6(self) -> None:
        wrong = self.write_config(base.backend_ini(self.sim, "nfs", section="xs",
                                                   xenapi_connection_password="wrong"),
                                  name="wrong.conf")
        result = self.xensm("check", conf=wrong, expect=xensm.EXIT_UNREACHABLE)
        self.assertIn("xenapi_connection_password", result.err)
        closed = self.write_config(base.backend_ini(
            self.sim, "nfs", section="xs", xenapi_connection_url="http://127.0.0.1:9",
            xenapi_retry_count=0, xenapi_connect_timeout=1), name="closed.conf")
        self.xensm("volume", "create", "--size", "1", conf=closed,
                   expect=xensm.EXIT_UNREACHABLE)
        # The inventory alone needs no XAPI.
        self.assertEqual("No volumes.\n", self.xensm("volume", "list", conf=closed).out)


class GroupCommandsTest(CliTestCase):
    def test_group_snapshot_and_delete(self) -> None:
        a = self.j("volume", "create", "--size", "1", "--name", "a")
        b = self.j("volume", "create", "--size", "2", "--name", "b")
        group = self.j("group", "create", "g", "--volume", "a", "--volume", "b")
        self.assertEqual(sorted([a["id"], b["id"]]), sorted(group["volumes"]))
        again = self.xensm("group", "create", "h", "--volume", "a", expect=xensm.EXIT_REFUSED)
        self.assertIn("already in group %s" % group["id"], again.err)
        gsnap = self.j("group", "snapshot", "g", "--name", "nightly")
        self.assertEqual({a["id"], b["id"]}, {s["volume_id"] for s in gsnap["snapshots"]})
        self.assertEqual({gsnap["id"]}, {s["group_snapshot_id"] for s in gsnap["snapshots"]})
        shown = self.j("group", "show", "g")
        self.assertEqual(2, len(shown["group_snapshots"][0]["snapshots"]))
        self.assertIn("has 2 volume(s)", self.xensm("group", "delete", "g",
                                                    expect=xensm.EXIT_REFUSED).err)
        self.assertIn("--cascade", self.xensm("group", "delete", "g", "--delete-volumes",
                                              expect=xensm.EXIT_REFUSED).err)
        self.assertEqual("deleted", self.j("group", "delete", "g", "--delete-volumes",
                                           "--cascade")["status"])
        self.assertEqual([], self.j("volume", "list") + self.j("snapshot", "list"))
        self.assertEqual({}, self.tagged_vdis(self.storage()))
        self.assertEqual([], self.j("group", "list"))

    def test_a_failed_member_snapshot_undoes_the_others(self) -> None:
        for name in ("a", "b", "c"):
            self.j("volume", "create", "--size", "1", "--name", name)
        self.j("group", "create", "g", "--volume", "a", "--volume", "b", "--volume", "c")
        drv = self.storage()
        before = self.tagged_vdis(drv)
        self.control.inject_fault("VDI.snapshot", error=INJECTED, nth=3)
        self.xensm("group", "snapshot", "g", expect=xensm.EXIT_FAILED)
        shown = self.j("group", "show", "g")
        self.assertEqual("error", shown["group_snapshots"][0]["status"])
        self.assertEqual([], self.j("snapshot", "list"))
        self.assertEqual(before, self.tagged_vdis(drv))
        self.assertEqual(3, len(self.j("group", "snapshot", "g")["snapshots"]))


class ReconcileTest(CliTestCase):
    def test_findings_both_ways_and_deleting_only_proven_leftovers(self) -> None:
        kept = self.j("volume", "create", "--size", "1", "--name", "kept")
        lost = self.j("volume", "create", "--size", "1", "--name", "lost")
        left = self.j("volume", "create", "--size", "1", "--name", "left")
        drv = self.storage()
        storage = drv.backend.storage
        self.assertEqual(xensm.EXIT_OK, self.xensm("reconcile").code)
        # A VDI destroyed behind the inventory's back; a record deleted
        # whose VDI stayed; a copy of a live volume carrying its tag; a VDI
        # tagged by another manager; an untagged one.
        storage.destroy_vdi(storage.vdi_by_uuid(lost["provider_id"]).ref)
        self.mark_deleted(left["id"])
        copy = storage.get_vdi(storage.create_vdi(
            drv.backend.sr_ref, base.GiB, "copy", identity.volume(kept["id"]).tags()))
        foreign = storage.get_vdi(storage.create_vdi(
            drv.backend.sr_ref, base.GiB, "volume-cinders", identity.volume("cinders").tags()))
        untagged = storage.get_vdi(storage.create_vdi(drv.backend.sr_ref, base.GiB,
                                                      "not-ours", {"owner": "ops"}))
        report = self.xensm("reconcile", "--json", expect=xensm.EXIT_DRIFT).json
        self.assertFalse(report["clean"])
        self.assertEqual([("foreign_vdi", "cinders", foreign.uuid),
                          ("missing_vdi", lost["id"], lost["provider_id"]),
                          ("orphan_vdi", left["id"], left["provider_id"]),
                          ("stray_vdi", kept["id"], copy.uuid)],
                         [(f["kind"], f["id"], f["vdi_uuid"]) for f in report["findings"]])
        # --delete-orphans alone is a dry run: it says what would go.
        dry = self.xensm("reconcile", "--delete-orphans", "--json",
                         expect=xensm.EXIT_DRIFT).json
        self.assertEqual(["would delete VDI %s (a dry run: add --yes to delete)"
                          % left["provider_id"]],
                         [f["action_taken"] for f in dry["findings"] if f["action_taken"]])
        self.assertIsNotNone(storage.vdi_by_uuid(left["provider_id"]))
        self.xensm("reconcile", "--yes", expect=xensm.EXIT_USAGE)
        fixed = self.xensm("reconcile", "--delete-orphans", "--yes", "--json",
                           expect=xensm.EXIT_DRIFT).json
        self.assertEqual(["deleted VDI %s" % left["provider_id"]],
                         [f["action_taken"] for f in fixed["findings"] if f["action_taken"]])
        self.assertIsNone(storage.vdi_by_uuid(left["provider_id"]))
        for survivor in (kept["provider_id"], copy.uuid, foreign.uuid, untagged.uuid):
            self.assertIsNotNone(storage.vdi_by_uuid(survivor))
        self.assertEqual("deleted", self.j("volume", "show", left["id"])["status"])
        self.xensm("volume", "delete", "lost")     # the missing VDI: drop the record
        storage.destroy_vdi(copy.ref)
        self.assertEqual(xensm.EXIT_OK, self.xensm("reconcile").code)


class MissingSmTypeTest(CliTestCase):
    """netapp on a current pool, which has no StorageLink adapters."""

    SIM_KWARGS = {"absent_sm_types": ("netapp", "equal")}
    SR_TYPE = "netapp"

    def test_check_says_the_type_is_not_installed(self) -> None:
        self.control.reset_calls()
        result = self.xensm("check", expect=xensm.EXIT_CONFIG)
        self.assertIn("SR type netapp is not installed on this pool", result.err)
        self.assertIn("StorageLink", result.err)
        self.assertNotIn("SR.create", self.control.calls())


class SolidFireTest(CliTestCase):
    """A back end with one SR per volume and consistent group snapshots."""

    SIM_KWARGS = {"solidfire": True, "supplemental_packs": ("relvmoiscsi",)}
    SR_TYPE = "solidfire"

    def test_consistent_group_snapshot_and_what_does_not_apply(self) -> None:
        self.assertIn("SR         one SR per volume (solidfire)", self.xensm("check").out)
        check = self.j("check")
        self.assertTrue(check["capabilities"]["group_snapshot"])
        self.assertIsNone(check["sr"])
        self.j("volume", "create", "--size", "1", "--name", "a")
        self.j("volume", "create", "--size", "1", "--name", "b")
        self.xensm("volume", "upload", "a", self.file("a.img", A))
        self.j("group", "create", "g", "--volume", "a", "--volume", "b")
        gsnap = self.j("group", "snapshot", "g", "--name", "consistent")
        self.assertIsNotNone(gsnap["provider_id"])       # one array group snapshot
        self.assertTrue(all(s["provider_id"] and s["status"] == "available"
                            for s in gsnap["snapshots"]))
        clone = self.j("volume", "create", "--snapshot", gsnap["snapshots"][0]["id"])
        self.assertEqual(A, self.content(clone["id"], len(A)))
        self.xensm("volume", "delete", clone["id"])
        self.assertIn("Inventory and SR agree.", self.xensm("reconcile").out)
        self.xensm("volume", "manage", "--vdi-name", "x", expect=xensm.EXIT_REFUSED)
        self.j("group", "delete", "g", "--delete-volumes", "--cascade")
        self.assertEqual([], self.j("volume", "list") + self.j("snapshot", "list"))
        shown = self.j("group", "show", "g")
        self.assertEqual(["deleted"], [g["status"] for g in shown["group_snapshots"]])
