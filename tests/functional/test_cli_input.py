"""Bad input is refused before storage or the inventory, and ``check`` compares
configuration with the SR it finds (issue 13, items 5 and 6)."""

from __future__ import annotations

import io

from tests.functional import base
from tests.functional import test_cli
from xensm_driver.cmd import xensm

RAW = base.pattern("R", base.MiB)


class BadInputTest(test_cli.CliTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.vol = self.j("volume", "create", "--size", "1", "--name", "v")
        self.drv = self.storage()
        self.before = self.tagged_vdis(self.drv)

    def assert_nothing_changed(self) -> None:
        self.assertEqual(self.before, self.tagged_vdis(self.drv))
        self.assertEqual([self.vol["id"]], [v["id"] for v in self.j("volume", "list", "--all")])
        shown = self.j("volume", "show", "v")
        self.assertEqual(("available", 1), (shown["status"], shown["size_gb"]))
        self.assertEqual([], self.j("snapshot", "list", "--all"))

    def test_sizes_beyond_any_sr_are_a_usage_error(self) -> None:
        for args in (("volume", "create", "--size", "100000000000000000000"),
                     ("volume", "extend", "v", "100000000000000000000")):
            result = self.xensm(*args, expect=None)
            self.assertEqual(xensm.EXIT_USAGE, result.code, result.err)
            self.assertIn("more than any SR holds", result.err)
            self.assertNotIn("Traceback", result.err)
        self.assert_nothing_changed()

    def test_sizes_beyond_the_srs_room_are_refused_and_the_volume_stays_available(
            self) -> None:
        result = self.xensm("volume", "extend", "v", "100000", expect=xensm.EXIT_REFUSED)
        self.assertIn("does not fit on back end xs", result.err)
        result = self.xensm("volume", "create", "--size", "100000", expect=xensm.EXIT_REFUSED)
        self.assertIn("room for", result.err)
        self.xensm("volume", "clone", "v", "--size", "100000", expect=xensm.EXIT_REFUSED)
        self.assert_nothing_changed()

    def test_names_that_cannot_be_found_again_or_printed_are_refused(self) -> None:
        for name, words in ((" lead", "white space"), ("trail ", "white space"),
                            ("two\nlines", "U+000A"), ("red\x1b[31m", "U+001B"),
                            ("rtl\u202eevil", "U+202E"), ("x" * 256, "at most 255")):
            for args in (("volume", "create", "--size", "1", "--name", name),
                         ("volume", "clone", "v", "--name", name),
                         ("snapshot", "create", "v", "--name", name),
                         ("group", "create", name)):
                result = self.xensm(*args, expect=xensm.EXIT_REFUSED)
                self.assertIn(words, result.err)
                self.assertNotIn("\x1b", result.err)
        self.assertEqual([], self.j("group", "list", "--all"))
        self.assert_nothing_changed()
        self.j("volume", "create", "--size", "1", "--name", "x" * 255)     # Cinder's cap

    def test_upload_sizes_that_are_not_the_files_are_refused(self) -> None:
        path = self.file("raw.img", RAW)
        for size in (str(len(RAW) - 1), str(len(RAW) + 1)):
            result = self.xensm("volume", "upload", "v", path, "--size", size,
                                expect=xensm.EXIT_REFUSED)
            self.assertIn("the file holds %d bytes" % len(RAW), result.err)
        self.assert_nothing_changed()
        self.xensm("volume", "upload", "v", path, "--size", str(len(RAW)))
        self.assertEqual(RAW, self.content("v", len(RAW)))

    def test_images_that_are_not_raw_are_refused_with_the_conversion(self) -> None:
        qcow2 = self.file("disk.qcow2", b"QFI\xfb\x00\x00\x00\x03" + bytes(65536))
        fixed_vhd = self.file("disk.vhd", bytes(65536) + b"conectix" + bytes(504))
        for path, fmt, option in ((qcow2, "qcow2", "-f qcow2"), (fixed_vhd, "vhd", "-f vpc")):
            result = self.xensm("volume", "upload", "v", path, expect=xensm.EXIT_REFUSED)
            self.assertIn("the image is %s, not raw" % fmt, result.err)
            self.assertIn("qemu-img convert %s -O raw" % option, result.err)
        with open(qcow2, "rb") as f:
            piped = io.BytesIO(f.read())
        result = self.xensm("volume", "upload", "v", "-", "--size", str(65544), stdin=piped,
                            expect=xensm.EXIT_REFUSED)
        self.assertIn("qcow2", result.err)
        self.assert_nothing_changed()

    def test_upload_into_an_attached_volume_is_refused(self) -> None:
        base.attach_to_dom0(
            self.drv.pool, self.drv.backend.storage.vdi_by_uuid(self.vol["provider_id"]).ref)
        result = self.xensm("volume", "upload", "v", self.file("raw.img", RAW),
                            expect=xensm.EXIT_REFUSED)
        self.assertIn("attached to a VM; detach it to upload into it", result.err)
        self.assert_nothing_changed()


class CheckComparesTest(test_cli.CliTestCase):
    def test_an_sr_made_with_other_options_and_unknown_options_are_reported(self) -> None:
        self.assertEqual([], self.j("check")["warnings"])
        moved = self.write_config(base.backend_ini(
            self.sim, "nfs", section="xs", xensm_nfs_server="nfs2.example",
            xensm_nfs_server_path="/typo"), name="moved.conf")
        result = self.xensm("check", conf=moved)
        self.assertIn("Back end xs: OK", result.out)
        warnings = self.xensm("check", "--json", conf=moved).json["warnings"]
        self.assertEqual(2, len(warnings), warnings)
        self.assertIn("[xs] sets xensm_nfs_server_path, which is no option; it has no effect "
                      "(did you mean xensm_nfs_serverpath?)", warnings)
        drift = [w for w in warnings if "was made with" in w][0]
        self.assertIn("server=%s, but xensm_nfs_server in [xs] says 'nfs2.example'"
                      % self.sim.topology["nfs"]["server"], drift)
        self.assertIn("warning: SR ", result.out)


class FriendlyErrorsTest(test_cli.CliTestCase):
    def test_a_url_without_a_scheme_says_so(self) -> None:
        bare = self.write_config(base.backend_ini(
            self.sim, "nfs", section="xs",
            xenapi_connection_url=self.sim.url.split("//", 1)[1]), name="bare.conf")
        result = self.xensm("check", conf=bare, expect=xensm.EXIT_CONFIG)
        self.assertIn("xenapi_connection_url in [xs]", result.err)
        self.assertIn("not a URL; give its scheme and host", result.err)
        self.assertNotIn("URIReference", result.out + result.err)
        # Said once: stdout names the back end that failed, stderr says why.
        self.assertEqual(1, (result.out + result.err).count("not a URL"))

    def test_stats_in_words(self) -> None:
        self.j("volume", "create", "--size", "2", "--name", "v")
        self.j("snapshot", "create", "v")
        self.control.inject_fault("VDI.create", error=test_cli.INJECTED)
        self.xensm("volume", "create", "--size", "5", expect=xensm.EXIT_FAILED)
        out = self.xensm("stats").out
        self.assertNotIn("{", out)
        self.assertIn("2 volumes (2 GiB), 1 snapshot; 1 in error, not counted in the GiB",
                      out)

    def test_names_may_start_with_a_dash_and_a_missing_size_is_usage(self) -> None:
        self.assertEqual("-dash", self.j("volume", "create", "--size", "1", "--name",
                                         "-dash")["name"])
        shown = self.xensm("volume", "show", "--json", "--", "-dash").json  # as with rm
        self.assertEqual("-dash", shown["name"])
        result = self.xensm("volume", "create", "--name", "x", expect=xensm.EXIT_USAGE)
        self.assertIn("give --size", result.err)

    def test_the_simulator_refuses_bad_arguments_without_a_traceback(self) -> None:
        import contextlib
        import io
        import socket

        from xensm_driver.cmd import sim as sim_cmd
        for args in (["--pool-hosts", "0"], ["--port", "80000"]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                self.assertRaises(SystemExit, sim_cmd.main, args)
            self.assertIn("xensm-sim: error:", err.getvalue())
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = sim_cmd.main(["--port", str(taken.getsockname()[1]), "--pool-hosts", "1"])
        self.assertEqual(1, code)
        self.assertIn("cannot listen on 127.0.0.1:%d" % taken.getsockname()[1], err.getvalue())


class ArrayLoginTest(test_cli.CliTestCase):
    SIM_KWARGS = {"solidfire": True}
    SR_TYPE = "solidfire"

    def test_a_wrong_array_password_is_unreachable_not_failed(self) -> None:
        wrong = self.write_config(base.backend_ini(self.sim, "solidfire", section="xs",
                                                   xensm_sf_password="wrong"),
                                  name="wrong.conf")
        result = self.xensm("check", conf=wrong, expect=xensm.EXIT_UNREACHABLE)
        self.assertIn("refused the login", result.err)
