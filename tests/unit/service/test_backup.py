"""Backup logic without storage: CBT bitmaps to chunks, target sections."""

from __future__ import annotations

import os
import tempfile

import testtools

from xensm_driver import exception
from xensm_driver.service import backup
from xensm_driver.service import config as service_config

KiB64 = 64 * 1024


def bitmap(blocks: list[int], nbits: int) -> bytes:
    raw = bytearray((nbits + 7) // 8)
    for b in blocks:
        raw[b >> 3] |= 0x80 >> (b & 7)
    return bytes(raw)


class ChangedChunksTest(testtools.TestCase):

    def test_blocks_map_to_the_chunks_holding_them(self) -> None:
        size = 100 * KiB64
        got = backup.changed_chunks(bitmap([0, 1, 15, 16, 63, 99], 104), size, 16 * KiB64)
        self.assertEqual(([0, 1, 3, 6], 6), got)
        # 64 KiB chunks: one chunk per block
        self.assertEqual(([7, 8], 2), backup.changed_chunks(bitmap([7, 8], 104), size, KiB64))

    def test_bits_past_the_end_are_ignored(self) -> None:
        # the bitmap is padded to whole bytes (sm's bitarray.tobytes)
        self.assertEqual(([], 0), backup.changed_chunks(bitmap([10, 11], 16), 10 * KiB64,
                                                        KiB64))

    def test_zero_detection(self) -> None:
        self.assertTrue(backup.is_zero(bytes(10)))
        self.assertTrue(backup.is_zero(bytes(1 << 20)))
        self.assertFalse(backup.is_zero(bytes((1 << 20) - 1) + b"\1"))


class TargetsTest(testtools.TestCase):

    def load(self, text: str) -> dict[str, backup.Target]:
        fd, path = tempfile.mkstemp(suffix=".conf")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return backup.load_targets(service_config.load([path]))

    def test_swift_and_s3(self) -> None:
        targets = self.load("[backup:a]\ntype = swift\nauth_url = http://x/auth/v1.0\n"
                            "user = u\nkey = k\ncontainer = c\n\n"
                            "[backup:b]\ntype = s3\nendpoint = http://y\naccess_key = a\n"
                            "secret_key = s\nbucket = bk\nchunk_size_kib = 128\nworkers = 2\n")
        self.assertEqual(["a", "b"], sorted(targets))
        self.assertEqual(("swift", "c", 4 << 20, 4), (
            targets["a"].type, targets["a"].container, targets["a"].chunk_size,
            targets["a"].workers))
        self.assertEqual(("s3", "bk", 128 << 10, 2), (
            targets["b"].type, targets["b"].container, targets["b"].chunk_size,
            targets["b"].workers))

    def test_refusals_name_the_option(self) -> None:
        for text, option in (
                ("[backup:a]\ntype = swift\nuser = u\nkey = k\ncontainer = c\n",
                 "[backup:a] auth_url"),
                ("[backup:a]\ntype = ftp\n", "[backup:a]"),
                ("[backup:a]\n", "[backup:a] type"),
                ("[backup:a]\ntype = s3\nendpoint = e\naccess_key = a\nsecret_key = s\n"
                 "bucket = b\nchunk_size_kib = 100\n", "[backup:a] chunk_size_kib")):
            err = self.assertRaises(exception.ConfigError, self.load, text)
            self.assertEqual(option, err.option, text)
