"""The XAPI session pool against the simulator: what real pools do to clients."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import threading
import tracemalloc

import fixtures

from tests.functional import base
from xensm_driver import exception
from xensm_driver.xapi import transfer
from xensm_driver.xapi.storage import Storage


class TestSessions(base.SimTestCase):

    def test_sessions_are_reused_not_logged_in_per_call(self):
        pool = self.pool(size=2)
        for _ in range(10):
            pool.call("host.get_all_records")
        self.assertEqual(1, pool.counter.snapshot()["session.login_with_password"])
        self.assertEqual(10, pool.counter.snapshot()["host.get_all_records"])

    def test_relogin_after_session_expiry(self):
        pool = self.pool(size=1)
        pool.call("host.get_all_records")
        self.assertGreater(self.control.expire_sessions(), 0)
        hosts = pool.call("host.get_all_records")
        self.assertEqual(2, len(hosts))
        counts = pool.counter.snapshot()
        self.assertEqual(2, counts["session.login_with_password"])
        self.assertEqual(3, counts["host.get_all_records"])  # one refused, then retried

    def test_redirect_from_slave_to_master(self):
        slave_url = self.sim.host_urls[1]
        pool = self.pool(url=slave_url)
        self.assertEqual(2, len(pool.call("host.get_all_records")))
        self.assertEqual(self.sim.url, pool.url)

    def test_bad_password_is_typed_and_not_echoed(self):
        pool = base.SessionPool(self.sim.url, "root", "wrong-Pa55word", retries=0)
        self.addCleanup(pool.close)
        err = self.assertRaises(exception.AuthenticationFailed, pool.call, "host.get_all")
        self.assertEqual("SESSION_AUTHENTICATION_FAILED", err.code)
        self.assertNotIn("wrong-Pa55word", str(err))

    def test_logout_on_close(self):
        pool = self.pool(size=1)
        pool.call("host.get_all")
        pool.close()
        self.assertEqual(1, pool.counter.snapshot().get("session.logout"))
        self.assertRaises(exception.XensmError, pool.call, "host.get_all")

    def test_unknown_method_and_bad_handle_are_typed(self):
        pool = self.pool()
        err = self.assertRaises(exception.XapiError, pool.call, "VDI.no_such_call")
        self.assertEqual("MESSAGE_METHOD_UNKNOWN", err.code)
        err = self.assertRaises(exception.HandleInvalid, pool.call, "VDI.get_record",
                                "OpaqueRef:NULL", obj="OpaqueRef:NULL")
        self.assertEqual("VDI.get_record", err.method)


class TestFailuresOnTheWire(base.SimTestCase):

    def test_hung_call_times_out_with_a_clear_error(self):
        pool = self.pool(call_timeout=0.3, retries=0)
        pool.call("host.get_all")           # logged in, connection warm
        self.control.inject_fault("host.get_all_records", hang=3.0)
        err = self.assertRaises(exception.XapiTimeout, pool.call, "host.get_all_records")
        self.assertIn("xenapi_call_timeout", str(err))
        self.assertIn("host.get_all_records", str(err))

    def test_dropped_read_is_retried(self):
        pool = self.pool()
        self.control.inject_fault("host.get_all_records", drop="after")
        self.assertEqual(2, len(pool.call("host.get_all_records")))
        self.assertEqual(2, pool.counter.snapshot()["host.get_all_records"])

    def test_dropped_write_is_surfaced_not_repeated(self):
        pool = self.pool()
        storage = Storage(pool)
        sr = self.nfs_sr(storage)
        self.control.inject_fault("VDI.create", drop="after")
        err = self.assertRaises(exception.XapiConnectionError, storage.create_vdi,
                                sr, base.MiB * 4, "volume-x", {"xensm-volume-id": "x"})
        self.assertTrue(err.sent)
        self.assertIn("not repeated", str(err))
        self.assertEqual(1, pool.counter.snapshot()["VDI.create"])
        # XAPI did make it: the caller finds it by name, exactly one.
        self.assertEqual(1, len(storage.find_vdis(sr, "volume-x")))

    def test_write_dropped_before_running_is_surfaced_too(self):
        # The client cannot tell "dropped before XAPI ran it" from "dropped
        # after": the bytes left either way, so it must not re-send.
        pool = self.pool()
        storage = Storage(pool)
        sr = self.nfs_sr(storage)
        self.control.inject_fault("VDI.create", drop="before")
        err = self.assertRaises(exception.XapiConnectionError, storage.create_vdi,
                                sr, base.MiB * 4, "volume-y", {})
        self.assertTrue(err.sent)
        self.assertEqual(1, pool.counter.snapshot()["VDI.create"])
        self.assertEqual([], storage.find_vdis(sr, "volume-y"))

    def test_refused_connection_is_retried_then_reported_unsent(self):
        pool = self.pool(url="http://127.0.0.1:%d" % free_port(), retries=2)
        err = self.assertRaises(exception.XapiConnectionError, pool.call, "VDI.create", {})
        self.assertFalse(err.sent)
        self.assertIn("ECONNREFUSED", str(err))
        self.assertEqual(3, pool.counter.snapshot()["session.login_with_password"])

    def test_https_against_a_plain_http_server_says_so(self):
        pool = self.pool(url=self.sim.url.replace("http://", "https://"), retries=0)
        err = self.assertRaises(exception.XapiConnectionError, pool.call, "host.get_all")
        self.assertIn("did not answer TLS (is it plain HTTP? then use an http:// URL)",
                      str(err))
        self.assertNotIn("EPERM", str(err))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestConcurrency(base.SimTestCase):

    def test_32_threads_share_4_sessions_without_crossed_answers(self):
        pool = self.pool(size=4)
        storage = Storage(pool)
        sr = self.nfs_sr(storage)
        refs = {storage.create_vdi(sr, base.MiB * 2, "v%d" % i, {"i": str(i)}): str(i)
                for i in range(32)}
        errors: list[str] = []

        def worker(ref: str, expected: str) -> None:
            for _ in range(20):
                rec = pool.call("VDI.get_record", ref, obj=ref)
                if rec["other_config"].get("i") != expected:
                    errors.append("%s got %r" % (expected, rec["other_config"]))

        threads = [threading.Thread(target=worker, args=item) for item in refs.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([], errors)
        self.assertLessEqual(pool.counter.snapshot()["session.login_with_password"], 4)


class TestSecrets(base.SimTestCase):

    def test_no_password_in_any_log_line_or_exception(self):
        logger = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        texts = []
        pool = self.pool(size=1, call_timeout=0.3, retries=1)
        pool.call("host.get_all")
        self.control.expire_sessions()
        pool.call("host.get_all")
        self.control.inject_fault("host.get_all_records", hang=2.0, times=2)
        texts.append(str(self.assertRaises(exception.XensmError, pool.call,
                                           "host.get_all_records")))
        bad = base.SessionPool(self.sim.url, "root", base.PASSWORD + "x", retries=0)
        texts.append(str(self.assertRaises(exception.XensmError, bad.call, "host.get_all")))
        self.assertNotIn(base.PASSWORD, logger.output)
        for text in texts:
            self.assertNotIn(base.PASSWORD, text)


class TestTLS(base.SimTestCase):

    def setUp(self) -> None:
        tmp = self.useFixture(fixtures.TempDir()).path
        self.cert = os.path.join(tmp, "cert.pem")
        key = os.path.join(tmp, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", key, "-out", self.cert], check=True, capture_output=True)
        self.SIM_KWARGS = {"pool_hosts": 1, "tls_certfile": self.cert, "tls_keyfile": key}
        super().setUp()

    def test_verified_with_ca_bundle(self):
        self.assertTrue(self.sim.url.startswith("https://"))
        pool = self.pool(ca_bundle=self.cert)
        self.assertEqual(1, len(pool.call("host.get_all")))

    def test_unverifiable_certificate_is_refused(self):
        pool = self.pool(retries=0)
        err = self.assertRaises(exception.XapiConnectionError, pool.call, "host.get_all")
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(err).upper().replace(" ", "_"))

    def test_verification_off_works_and_warns(self):
        logger = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        pool = self.pool(verify_tls=False)
        self.assertEqual(1, len(pool.call("host.get_all")))
        self.assertIn("verification is OFF", logger.output)


class TestDataPath(base.SimTestCase):

    def test_256_mib_round_trip_is_identical_with_flat_memory(self):
        size = 256 * base.MiB
        pool = self.pool()
        storage = Storage(pool)
        sr = self.nfs_sr(storage)
        vdi = storage.create_vdi(sr, size, "big", {})
        block = base.pattern("blk", base.MiB)
        sent = hashlib.sha256()

        def chunks():
            for i in range(size // base.MiB):
                chunk = bytes([i % 251]) + block[1:]
                sent.update(chunk)
                yield chunk

        tracemalloc.start()
        try:
            progress = []
            transfer.upload(pool, vdi, chunks(), size=size,
                            progress=lambda done, total: progress.append(done))
            got = hashlib.sha256()
            count = transfer.download(pool, vdi, got.update, size=size)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertEqual(size, count)
        self.assertEqual(sent.hexdigest(), got.hexdigest())
        self.assertEqual(size, progress[-1])
        # Both ends of the stream run in this process; neither may hold the
        # volume: peak Python allocation stays a small fraction of 256 MiB.
        self.assertLess(peak, 32 * base.MiB)

    def test_short_source_fails_the_import_task(self):
        pool = self.pool()
        storage = Storage(pool)
        sr = self.nfs_sr(storage)
        vdi = storage.create_vdi(sr, 8 * base.MiB, "short", {})
        err = self.assertRaises(exception.TransferError, transfer.upload, pool, vdi,
                                iter([b"x" * base.MiB]), size=4 * base.MiB)
        self.assertIn("ended after 1048576 of 4194304 bytes", str(err))
        self.assertEqual([], pool.call("task.get_all"))      # nothing left behind

    def test_a_partial_read_returns_only_once_xapi_let_go_of_the_vdi(self):
        pool = self.pool()
        storage = Storage(pool)
        sr = self.nfs_sr(storage)
        vdi = storage.create_vdi(sr, 256 * base.MiB, "v", {})
        for _ in range(5):
            head = []
            transfer.download(pool, vdi, head.append, size=256 * base.MiB, length=base.MiB)
            self.assertEqual(base.MiB, sum(len(c) for c in head))
            self.assertFalse(storage.any_attached(storage.get_vdi(vdi).vbds))
            storage.destroy_vdi(storage.clone_vdi(vdi))    # the VDI is free to use
        self.assertEqual([], pool.call("task.get_all"))
        # The client's half of the contract, whatever the timing: each
        # abandoned export was cancelled, watched until it ended, destroyed.
        counts = pool.counter.snapshot()
        self.assertEqual(5, counts["task.cancel"])
        self.assertGreaterEqual(counts["task.get_status"], 5)
        self.assertEqual(5, counts["task.destroy"])

    def test_a_long_transfer_does_not_hold_a_pool_session(self):
        pool = self.pool(size=1, acquire_timeout=1.0)
        storage = Storage(pool)
        vdi = storage.create_vdi(self.nfs_sr(storage), 64 * base.MiB, "v", {})
        chunks = transfer.export_chunks(pool, vdi, size=64 * base.MiB)
        next(chunks)                                   # the export is under way
        self.assertEqual(2, len(pool.call("host.get_all")))    # and the pool is free
        self.assertEqual(64 * base.MiB, base.MiB + sum(len(c) for c in chunks))

    def test_the_session_ref_stays_out_of_urls_and_logs(self):
        logger = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        pool = self.pool(size=1)
        storage = Storage(pool)
        vdi = storage.create_vdi(self.nfs_sr(storage), 4 * base.MiB, "v", {})
        with pool.session() as sess:
            ref = pool.session_ref(sess)
        transfer.upload(pool, vdi, iter([b"x" * base.MiB]), size=base.MiB)
        transfer.download(pool, vdi, lambda chunk: None, size=4 * base.MiB)
        self.assertIn("import_raw_vdi", logger.output)       # the requests were logged
        # URLs carry refs percent-encoded; look for the part that is not.
        self.assertNotIn(ref.split(":", 1)[1], logger.output)

    def test_stream_cut_mid_export_is_an_error(self):
        pool = self.pool()
        storage = Storage(pool)
        sr = self.nfs_sr(storage)
        vdi = storage.create_vdi(sr, 8 * base.MiB, "cut", {})
        self.control.inject_fault("http:export_raw_vdi", after_bytes=base.MiB)
        err = self.assertRaises(exception.XensmError, transfer.download, pool, vdi,
                                lambda chunk: None, size=8 * base.MiB)
        self.assertNotIn("session_id", str(err))
        self.assertEqual([], pool.call("task.get_all"))


class TestStorageCalls(base.SimTestCase):

    def test_a_vbd_that_vanished_is_not_attached(self):
        # A transfer's temporary VBD can disappear between reading a VDI
        # record and asking about its VBDs (the reference's VDI_IN_USE races).
        pool = self.pool()
        storage = Storage(pool)
        sr = self.nfs_sr(storage)
        vdi_ref = storage.create_vdi(sr, 8 * base.MiB, "v", {})
        vbd = base.attach_to_dom0(pool, vdi_ref)
        vdi = storage.get_vdi(vdi_ref)
        self.assertTrue(storage.any_attached(vdi.vbds))
        pool.call("VBD.unplug", vbd)
        pool.call("VBD.destroy", vbd)
        self.assertFalse(storage.any_attached(vdi.vbds))    # stale list, no error
