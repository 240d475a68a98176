"""Backups to real object stores: Swift (python-swiftclient) and S3 (boto3, Swift's s3api).

One Swift all-in-one (tests/functional/swift_aio.py) serves the class; every
test has its own simulator, inventory and container/bucket. Nothing below
the object store's HTTP API is mocked: failures are real ones (a container
quota refusing a PUT, a simulator fault on a XAPI call or the NBD stream).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
import unittest
import uuid
from typing import Any

import fixtures
import requests

from tests.functional import base
from tests.functional import servers
from tests.functional import swift_aio
from xensm_driver import exception
from xensm_driver.arrays import objectstore
from xensm_driver.cmd import xensm
from xensm_driver.service import backup as backup_mod
from xensm_driver.service import inventory
from xensm_driver.service.manager import Manager
from xensm_driver.service.models import Backup
from xensm_driver.xapi import transfer

KiB64 = 64 * 1024
MiB = base.MiB
GiB = base.GiB
INJECTED = ["INTERNAL_ERROR", "fault injected by the test"]


class BackupTestCase(base.SimTestCase):
    SWIFT: swift_aio.SwiftAllInOne | None = None

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        why = swift_aio.missing()
        if why and servers.required():
            raise AssertionError("%s (%s=1: the object store must run here)"
                                 % (why, servers.REQUIRE))
        if why:
            raise unittest.SkipTest(why)
        cls.SWIFT = swift_aio.SwiftAllInOne().start()

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.SWIFT is not None:
            cls.SWIFT.stop()
        super().tearDownClass()

    def setUp(self) -> None:
        super().setUp()
        assert self.SWIFT is not None
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.db_path = os.path.join(self.tmp, "inventory.sqlite")
        self.db_url = "sqlite:///%s" % self.db_path
        self.container = "c-%s" % uuid.uuid4().hex[:12]
        self.bucket = "b-%s" % uuid.uuid4().hex[:12]
        ini = base.backend_ini(self.sim, "nfs", section="xs")
        ini += """
[backup:swift]
type = swift
auth_url = %(auth)s
user = %(user)s
key = %(key)s
container = %(container)s
chunk_size_kib = 1024
workers = 3

[backup:s3]
type = s3
endpoint = %(url)s
access_key = %(user)s
secret_key = %(key)s
bucket = %(bucket)s
chunk_size_kib = 64
workers = 4

[xensm]
db_url = %(db)s
""" % {"auth": self.SWIFT.auth_url, "user": swift_aio.USER, "key": swift_aio.KEY,
       "container": self.container, "url": self.SWIFT.url, "bucket": self.bucket,
       "db": self.db_url}
        self.conf = os.path.join(self.tmp, "xensm.conf")
        with open(self.conf, "w") as f:
            f.write(ini)
        self.mgr = Manager([self.conf])
        self.addCleanup(self.mgr.close)
        self.backups = backup_mod.Backups(self.mgr)
        self.swift = objectstore.SwiftStore(self.SWIFT.auth_url, swift_aio.USER, swift_aio.KEY,
                                            self.container)
        self.s3 = objectstore.S3Store(self.SWIFT.url, swift_aio.USER, swift_aio.KEY,
                                      self.bucket)

    # -- helpers ----------------------------------------------------------------

    def volume(self, size_gb: int = 1) -> Any:
        return self.mgr.create_volume(size_gb, name="v%s" % uuid.uuid4().hex[:6])

    def write(self, vol: Any, writes: list[tuple[int, bytes]]) -> None:
        """Write each ``(offset, data)`` into the volume (one chunked import)."""
        body = b"".join(transfer.chunk_header(off, len(d)) + d for off, d in writes)
        body += transfer.chunk_header(0, 0)
        drv = self.mgr.driver("xs")
        assert drv.pool is not None
        transfer.upload(drv.pool, vol.provider_id, [body], size=len(body), chunked=True)

    def image(self, size: int, writes: list[tuple[int, bytes]]) -> dict[int, bytes]:
        """What a volume of ``size`` holds after ``writes``: its non-zero MiB."""
        img: dict[int, bytearray] = {}
        for off, data in writes:
            pos = 0
            while pos < len(data):
                mib, at = divmod(off + pos, MiB)
                n = min(MiB - at, len(data) - pos)
                block = img.setdefault(mib, bytearray(MiB))
                block[at:at + n] = data[pos:pos + n]
                pos += n
        return {k: bytes(v) for k, v in img.items()}

    def assertContent(self, vol: Any, expected: dict[int, bytes], size: int) -> None:
        """The volume holds ``expected`` (MiB number -> bytes) and zeros elsewhere,
        byte for byte over its whole size."""
        got = hashlib.sha256()
        want = hashlib.sha256()
        zero = bytes(MiB)
        for mib in range(size // MiB):
            want.update(expected.get(mib, zero))
        self.mgr.download(vol.id, got.update)
        self.assertEqual(want.hexdigest(), got.hexdigest())

    def objects(self, store: objectstore.ObjectStore) -> list[str]:
        return store.list("")

    def vdis(self) -> dict[str, tuple[str, str]]:
        """Every VDI on the pool: uuid -> (name_label, type), once the
        coalescer has removed base copies no VDI needs any more."""
        self.sim.control.wait_gc()
        drv = self.mgr.driver("xs")
        assert drv.pool is not None
        return {r["uuid"]: (r["name_label"], r["type"])
                for r in drv.pool.call("VDI.get_all_records").values()}

    def other_config(self, vol: Any) -> dict[str, str]:
        drv = self.mgr.driver("xs")
        vdi = drv.backend.storage.vdi_by_uuid(vol.provider_id)
        assert vdi is not None
        return dict(vdi.other_config)

    def xensm(self, *args: str, expect: int = 0) -> tuple[str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = xensm.run(["--config-file", self.conf, *args], out, err)
        self.assertEqual(expect, code, out.getvalue() + err.getvalue())
        for text in (out.getvalue(), err.getvalue()):
            self.assertNotIn(swift_aio.KEY, text)
        return out.getvalue(), err.getvalue()


class BackupRestoreTest(BackupTestCase):

    def test_full_backup_and_restore_swift_byte_for_byte(self) -> None:
        vol = self.volume()
        writes = [(0, os.urandom(3 * MiB + 5)), (700 * MiB + 123, os.urandom(KiB64))]
        self.write(vol, writes)
        before = self.vdis()
        b = self.backups.create(vol.id, target="swift")
        self.assertEqual("available", b.status)
        self.assertFalse(b.incremental)
        self.assertEqual(GiB, b.bytes_read)             # a full backup reads it all
        self.assertEqual(5, b.chunks_stored)            # only the chunks holding data
        self.assertEqual(5 * MiB, b.bytes_stored)
        names = self.objects(self.swift)
        self.assertEqual(6, len(names))                 # 5 chunks and the manifest
        manifest = json.loads(self.swift.get("xensm-backups/%s/manifest.json" % b.id))
        self.assertEqual([b.id], manifest["chain"])
        self.assertEqual(sorted(["0", "1", "2", "3", "700"]), sorted(manifest["chunks"]))
        for key, digest in manifest["chunks"].items():
            data = self.swift.get("xensm-backups/%s/%08d" % (b.id, int(key)))
            self.assertEqual(digest, hashlib.sha256(data).hexdigest())
        # The backup's snapshot keeps only its changed-block record.
        after = self.vdis()
        new = {u: v for u, v in after.items() if u not in before}
        self.assertEqual({b.cbt_vdi_uuid: ("backup-%s" % b.id, "cbt_metadata")}, new)
        self.assertNotIn("xensm-making-backup-%s" % b.id, self.other_config(vol))

        restored = self.backups.restore(b.id)
        self.assertEqual(1, restored.size_gb)
        self.assertContent(restored, self.image(GiB, writes), GiB)
        # over an existing, detached volume (its old content is overwritten)
        other = self.volume()
        self.write(other, [(5 * MiB, b"x" * MiB)])
        self.backups.restore(b.id, volume=other.id)
        self.assertContent(other, self.image(GiB, writes), GiB)

    def test_incremental_chain_s3_restored_from_its_last_link(self) -> None:
        vol = self.volume()
        size = GiB
        writes = [(0, os.urandom(2 * MiB))]
        self.write(vol, writes)
        full = self.backups.create(vol.id, target="s3")
        self.assertEqual(32, full.chunks_stored)        # 2 MiB in 64 KiB chunks
        chain = [full]
        for i, change in enumerate([
                [(10 * KiB64 + 7, os.urandom(100)), (500 * MiB, os.urandom(3 * KiB64))],
                [(0, bytes(KiB64)), (900 * MiB + 1, os.urandom(KiB64))],   # zeros too
                [(KiB64, os.urandom(5))]]):
            self.write(vol, change)
            writes += change
            b = self.backups.create(vol.id, target="s3", incremental=True)
            self.assertTrue(b.incremental)
            self.assertEqual(chain[-1].id, b.parent_id)
            chain.append(b)
            # What it moved grows with what changed: the 64 KiB blocks touched.
            touched = {blk for off, d in change
                       for blk in range(off // KiB64, (off + len(d) - 1) // KiB64 + 1)}
            self.assertEqual(len(touched), b.changed_blocks, i)
            self.assertEqual(len(touched) * KiB64, b.bytes_read, i)
            self.assertLess(b.bytes_stored, size // 1000)
        last = chain[-1]
        manifest = json.loads(self.s3.get("xensm-backups/%s/manifest.json" % last.id))
        self.assertEqual([b.id for b in chain], manifest["chain"])
        self.assertEqual([b.id for b in chain], [b.id for b in self.backups.chain(last)])
        # only the latest backup keeps a changed-block record on the SR
        records = [self.mgr.inventory.get(Backup, b.id).cbt_vdi_uuid for b in chain]
        self.assertEqual([None, None, None, last.cbt_vdi_uuid], records)
        self.assertEqual(1, sum(1 for _n, t in self.vdis().values() if t == "cbt_metadata"))

        restored = self.backups.restore(last.id)
        self.assertContent(restored, self.image(size, writes), size)
        # and the middle of the chain restores as it was then
        middle = self.backups.restore(chain[1].id)
        self.assertContent(middle, self.image(size, writes[:3]), size)

    def test_incremental_cost_does_not_grow_with_the_volume(self) -> None:
        costs = []
        for size_gb in (1, 2):
            vol = self.volume(size_gb)
            self.write(vol, [(0, os.urandom(MiB))])
            self.backups.create(vol.id, target="s3")
            self.write(vol, [(size_gb * GiB - 3 * KiB64, os.urandom(2 * KiB64))])
            self.sim.control.reset_calls()
            b = self.backups.create(vol.id, target="s3", incremental=True)
            calls = self.sim.control.calls()
            costs.append((b.bytes_read, b.bytes_stored, b.changed_blocks, calls))
        self.assertEqual(costs[0], costs[1])
        bytes_read, bytes_stored, changed, calls = costs[0]
        self.assertEqual((2 * KiB64, 2 * KiB64, 2), (bytes_read, bytes_stored, changed))
        # One NBD connection; XAPI round trips: the volume's and the base's VDI
        # (2), CBT on, mark, snapshot, read it, name, tag, unmark (7), changed
        # blocks, NBD info, data_destroy (3), the older record dropped (2).
        self.assertEqual(1, calls.pop("nbd:export"))
        self.assertEqual(14, sum(calls.values()), calls)

    def test_memory_stays_within_the_chunk_window(self) -> None:
        vol = self.volume()
        for i in range(0, 96, 16):
            self.write(vol, [((i + j) * 7 * MiB, os.urandom(MiB)) for j in range(16)])
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        b = self.backups.create(vol.id, target="swift")
        _now, backup_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        self.backups.restore(b.id)
        _now, restore_peak = tracemalloc.get_traced_memory()
        self.assertEqual(96 * MiB, b.bytes_stored)
        # 1 MiB chunks, 3 workers: at most 2 x 3 chunks queued, 3 being sent
        # and one being read, whatever the volume holds (96 MiB here).
        self.assertLess(backup_peak, 24 * MiB)
        self.assertLess(restore_peak, 24 * MiB)

    def test_delete_refused_while_an_incremental_depends_on_it(self) -> None:
        vol = self.volume()
        self.write(vol, [(0, os.urandom(MiB))])
        full = self.backups.create(vol.id, target="swift")
        self.write(vol, [(0, os.urandom(10))])
        incr = self.backups.create(vol.id, target="swift", incremental=True)
        _out, err = self.xensm("backup", "delete", full.id, expect=5)
        self.assertIn("backup %s is the base of incremental backup %s" % (full.id, incr.id),
                      err)
        self.assertIn("Delete it first", err)
        self.assertEqual("available", self.mgr.inventory.get(Backup, full.id).status)
        self.xensm("backup", "delete", incr.id)
        self.xensm("backup", "delete", full.id)
        self.assertEqual([], self.objects(self.swift))
        self.assertEqual([], [t for _n, t in self.vdis().values() if t == "cbt_metadata"])
        # with no backup left, an incremental has nothing to build on
        _out, err = self.xensm("backup", "create", vol.id, "--target", "swift",
                               "--incremental", expect=5)
        self.assertIn("no backup yet", err)

    def test_snapshots_revert_and_volume_delete(self) -> None:
        vol = self.volume()
        data = os.urandom(MiB)
        self.write(vol, [(0, data)])
        # a snapshot taken before any backup has no changed-block tracking
        old = self.mgr.create_snapshot(vol.id, name="old")
        b0 = self.backups.create(snapshot=old.id, target="swift")
        self.assertEqual(old.id, b0.snapshot_id)
        self.assertIsNone(b0.cbt_vdi_uuid)
        self.assertContent(self.backups.restore(b0.id), self.image(GiB, [(0, data)]), GiB)
        full = self.backups.create(vol.id, target="swift")
        self.write(vol, [(3 * MiB, b"after")])
        snap = self.mgr.create_snapshot(vol.id, name="s")
        b1 = self.backups.create(snapshot=snap.id, target="swift", incremental=True)
        self.assertEqual(full.id, b1.parent_id)
        self.assertEqual(1, b1.changed_blocks)
        self.assertEqual(snap.provider_id, b1.cbt_vdi_uuid)
        self.assertFalse(b1.cbt_vdi_owned)
        # a revert swaps in a new VDI: XAPI cannot tell what changed since
        self.mgr.revert_volume(vol.id, snap.id)
        before = self.vdis()
        _out, err = self.xensm("backup", "create", vol.id, "--target", "swift",
                               "--incremental", expect=5)
        self.assertIn("XAPI cannot tell what changed since backup %s" % b1.id, err)
        self.assertIn("make a full backup", err)
        self.assertEqual(before, self.vdis())
        # and once the snapshot it built on is gone, it says so before any call
        self.mgr.delete_snapshot(snap.id)
        _out, err = self.xensm("backup", "create", vol.id, "--target", "swift",
                               "--incremental", expect=5)
        self.assertIn("the changed-block record of backup %s" % b1.id, err)
        self.backups.create(vol.id, target="swift")
        # deleting the volume keeps its backups restorable, and no VDI of theirs
        self.mgr.delete_snapshot(old.id)
        self.mgr.delete_volume(vol.id)
        self.assertEqual({}, {u: v for u, v in self.vdis().items()
                              if v[0].startswith("backup-")})
        self.assertEqual(4, len(self.backups.all(vol.id)))

    def test_cli_and_secrets(self) -> None:
        vol = self.volume()
        self.write(vol, [(0, b"hello")])
        out, _err = self.xensm("backup", "create", vol.id, "--target", "s3", "--json")
        b = json.loads(out)
        self.assertEqual("available", b["status"])
        # --debug logs every library's requests: the keys stay out of them
        self.xensm("backup", "create", vol.id, "--target", "s3", "--debug", "--incremental")
        self.xensm("backup", "create", vol.id, "--target", "swift", "--debug")
        out, _err = self.xensm("backup", "list", "-f", "value", "-c", "id", "-c", "kind",
                               "--volume", vol.id, "--status", "available")
        self.assertEqual(["full", "incremental", "full"], out.split()[1::2])
        # an incremental builds on the latest backup, which is on swift now
        _out, err = self.xensm("backup", "create", vol.id, "--target", "s3", "--incremental",
                               expect=5)
        self.assertIn("is on target swift", err)
        out, _err = self.xensm("backup", "list", "-f", "value", "-c", "id", "-c", "kind")
        self.assertEqual("%s full" % b["id"], out.splitlines()[0])
        out, _err = self.xensm("backup", "show", b["id"], "--json")
        self.assertEqual([b["id"]], json.loads(out)["chain"])
        out, _err = self.xensm("backup", "show", b["id"])
        self.assertIn("chain", out)
        self.assertIn("cbt_vdi_uuid", out)
        out, _err = self.xensm("backup", "list")
        self.assertIn("STORED", out.splitlines()[0])
        out, _err = self.xensm("backup", "restore", b["id"], "--name", "back", "--json")
        self.assertEqual("back", json.loads(out)["name"])
        # no key in the inventory
        with sqlite3.connect(self.db_path) as db:
            dump = "\n".join(db.iterdump())
        self.assertNotIn(swift_aio.KEY, dump)
        self.assertIn("backups", dump)
        _out, err = self.xensm("backup", "create", vol.id, "--target", "nope", expect=3)
        self.assertIn("no [backup:nope] section", err)


class BackupFailureTest(BackupTestCase):
    """A failure at each step leaves the SR and the store as they were."""

    def state(self) -> tuple[dict[str, tuple[str, str]], list[str], list[str]]:
        return self.vdis(), self.objects(self.swift), sorted(
            k for k in self.other_config(self.vol) if k.startswith("xensm-making-"))

    def setUp(self) -> None:
        super().setUp()
        self.vol = self.volume()
        self.write(self.vol, [(0, os.urandom(4 * MiB)), (300 * MiB, os.urandom(MiB))])
        self.swift.ensure()

    def assertCleanFailure(self, exc_type: type[BaseException], **kw: Any) -> Backup:
        before = self.state()
        self.assertRaises(exc_type, self.backups.create, self.vol.id, target="swift", **kw)
        self.sim.control.clear_faults()
        self.assertEqual(before, self.state())
        failed = [b for b in self.backups.all(include_gone=True) if b.status == "error"]
        self.assertEqual(1, len(failed))
        self.assertIn("nothing of it was kept", failed[-1].status_reason or "")
        return failed[-1]

    def test_xapi_call_fails_at_each_step(self) -> None:
        for method in ("VDI.enable_cbt", "VDI.add_to_other_config", "VDI.snapshot",
                       "VDI.set_name_label", "VDI.set_other_config", "VDI.get_nbd_info",
                       "VDI.data_destroy"):
            self.sim.control.inject_fault(method, error=INJECTED)
            self.assertCleanFailure(exception.XapiError)
            self.mgr.inventory.update(Backup, self.backups.all()[-1].id, status="deleted")
        # a snapshot whose answer was lost is found by its marker and removed
        self.sim.control.inject_fault("VDI.snapshot", drop="after")
        self.assertCleanFailure(exception.XensmError)

    def test_incremental_fails_on_list_changed_blocks(self) -> None:
        self.backups.create(self.vol.id, target="swift")
        self.write(self.vol, [(0, b"new")])
        self.sim.control.inject_fault("VDI.list_changed_blocks", error=INJECTED)
        self.assertCleanFailure(exception.XapiError, incremental=True)
        # and the next run makes it
        b = self.backups.create(self.vol.id, target="swift", incremental=True)
        self.assertEqual(1, b.changed_blocks)

    def test_nbd_stream_cut_midway(self) -> None:
        self.sim.control.inject_fault("nbd:export", after_bytes=3 * MiB + 17)
        self.assertCleanFailure(exception.TransferError)

    def test_object_put_refused(self) -> None:
        # A real refusal: Swift's container quota answers 413. The container
        # already holds 1.5 MiB (another tenant's object) and may hold 2 MiB,
        # so the first chunk is refused after the snapshot was taken and the
        # NBD read began. (The proxy caches the container's usage, so a quota
        # cannot be made to trip after a given number of chunks; the NBD cut
        # test covers a failure with chunks already stored.)
        assert self.SWIFT is not None
        auth = requests.get(self.SWIFT.auth_url, headers={
            "X-Storage-User": swift_aio.USER, "X-Storage-Pass": swift_aio.KEY}, timeout=10)
        url = "%s/%s" % (auth.headers["X-Storage-Url"], self.container)
        token = {"X-Auth-Token": auth.headers["X-Auth-Token"]}
        r = requests.put(url + "/someone-else", headers=token, data=b"f" * (3 * MiB // 2),
                         timeout=10)
        self.assertEqual(201, r.status_code)
        r = requests.post(url, headers=dict(token, **{
            "X-Container-Meta-Quota-Bytes": str(2 * MiB)}), timeout=10)
        self.assertEqual(204, r.status_code)
        exc = self.assertCleanFailure(exception.ObjectStoreError)
        self.assertIn("HTTP 413", exc.status_reason or "")
        self.assertEqual(["someone-else"], self.objects(self.swift))

    def test_restore_cut_midway_leaves_no_volume(self) -> None:
        b = self.backups.create(self.vol.id, target="swift")
        vols = [v.id for v in self.mgr.inventory.volumes()]
        before = self.vdis()
        self.sim.control.inject_fault("http:import_raw_vdi", after_bytes=2 * MiB)
        self.assertRaises(exception.XensmError, self.backups.restore, b.id)
        self.assertEqual(before, self.vdis())
        self.assertEqual(vols, [v.id for v in self.mgr.inventory.volumes()])
        # a corrupt chunk is refused before it is written
        self.sim.control.clear_faults()
        name = "xensm-backups/%s/%08d" % (b.id, 1)
        self.swift.put(name, b"\0" * MiB)
        exc = self.assertRaises(exception.BackupCorrupt, self.backups.restore, b.id)
        self.assertIn("chunk 1 of backup %s does not match its sha256" % b.id, str(exc))
        self.assertEqual(before, self.vdis())

    def test_killed_backup_is_finished_by_the_next_run(self) -> None:
        """A real ``xensm backup create`` killed (SIGKILL) with chunks stored."""
        self.write(self.vol, [(i * 37 * MiB, os.urandom(MiB)) for i in range(1, 27)])
        before = self.state()
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        proc = subprocess.Popen(
            [sys.executable, "-m", "xensm_driver.cmd.xensm", "--config-file", self.conf,
             "backup", "create", self.vol.id, "--target", "swift"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        deadline = time.monotonic() + 60
        while len(self.swift.list("")) < 3:
            self.assertIsNone(proc.poll(), "the backup ended before it could be killed")
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = self.backups.all()[-1]
        self.assertEqual("creating", killed.status)
        self.assertEqual("error", inventory.effective_status(killed))
        self.assertIsNotNone(killed.source_vdi_uuid)
        self.assertNotEqual(before, self.state())
        # backup delete finishes it
        self.backups.delete(killed.id)
        self.assertEqual("deleted", self.mgr.inventory.get(Backup, killed.id).status)
        self.assertEqual(before, self.state())

    def test_interrupted_backup_is_finished_by_the_next_run(self) -> None:
        # What a process killed after its snapshot and some chunks leaves behind.
        b = Backup(id=inventory.new_id(), backend="xs", volume_id=self.vol.id, name="",
                   target="swift", container=self.container, prefix="xensm-backups/",
                   chunk_size=MiB, status="creating", owner="%s:999999999" % (
                       inventory.this_owner().split(":")[0]))
        self.mgr.inventory.add(b)
        before = self.state()
        drv = self.mgr.driver("xs")
        vol_vdi = drv.backend.storage.vdi_by_uuid(self.vol.provider_id)
        assert vol_vdi is not None
        making = "xensm-making-backup-%s" % b.id
        drv.backend.storage.add_other_config_key("VDI", vol_vdi.ref, making, vol_vdi.uuid)
        drv.backend.storage.snapshot_vdi(vol_vdi.ref)       # answer "lost": not recorded
        self.swift.put("xensm-backups/%s/%08d" % (b.id, 0), b"x")
        self.assertNotEqual(before, self.state())
        self.assertEqual("error", inventory.effective_status(
            self.mgr.inventory.get(Backup, b.id)))
        self.backups.create(self.vol.id, target="swift")
        self.assertEqual("deleted", self.mgr.inventory.get(Backup, b.id).status)
        vdis, objects, marks = self.state()
        self.assertEqual([], marks)
        self.assertFalse([o for o in objects if b.id in o])
        self.assertEqual(len(before[0]) + 1, len(vdis))    # only the new backup's record
