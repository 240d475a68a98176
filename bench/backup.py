"""``python -m bench.backup``: backups to Swift against the floor, and what incrementals move.

Starts ``xensm-sim`` (a child process) and a Swift all-in-one on loopback
(tests/functional/swift_aio.py: needs the ``swift`` package and
``memcached``), makes an nfs volume of ``--size-gb`` GiB with ``--fill-mib``
MiB of random data spread over it, and measures in one run:

* the floor: the volume's raw export read to nothing (``/export_raw_vdi``,
  one stream, what any client of XAPI's data path pays);
* a full backup (MB/s of the virtual size, and of the bytes stored) and a
  restore of it into a new volume;
* incremental backups after ``--changes`` random 64 KiB writes, with
  4 MiB and with 64 KiB chunks: the bytes changed, the 64 KiB blocks XAPI
  reported, the bytes read and stored.

Prints a table per part and writes ``--output`` (JSON). Not part of ``tox -e
bench``'s suite: it needs an object store.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from typing import Any

from bench.common import quiet_logging
from bench.simproc import SimProcess

MiB = 1 << 20
KiB64 = 64 << 10


def _ini(sim: SimProcess, swift: Any, db_url: str) -> str:
    from bench.common import nfs_ini
    from tests.functional import swift_aio

    text = nfs_ini(sim, "xs")
    for name, chunk in (("c4m", 4096), ("c64k", 64)):
        text += ("\n[backup:%s]\ntype = swift\nauth_url = %s\nuser = %s\nkey = %s\n"
                 "container = bench-%s\nchunk_size_kib = %d\nworkers = 4\n"
                 % (name, swift.auth_url, swift_aio.USER, swift_aio.KEY, name, chunk))
    return text + "\n[xensm]\ndb_url = %s\n" % db_url


def _write(mgr: Any, vdi_uuid: str, writes: list[tuple[int, bytes]]) -> None:
    from xensm_driver.xapi import transfer

    body = b"".join(transfer.chunk_header(o, len(d)) + d for o, d in writes)
    body += transfer.chunk_header(0, 0)
    drv = mgr.driver("xs")
    transfer.upload(drv.pool, vdi_uuid, [body], size=len(body), chunked=True)


def measure(size_gb: int, fill_mib: int, changes: int, seed: int = 1) -> dict[str, Any]:
    from tests.functional import swift_aio
    from xensm_driver.service.backup import Backups
    from xensm_driver.service.manager import Manager

    why = swift_aio.missing()
    if why:
        raise SystemExit("bench.backup: %s" % why)
    rnd = random.Random(seed)
    size = size_gb << 30
    tmp = tempfile.mkdtemp(prefix="xensm-bench-backup-")
    swift = swift_aio.SwiftAllInOne().start()
    try:
        with SimProcess() as sim:
            conf = os.path.join(tmp, "xensm.conf")
            with open(conf, "w") as f:
                f.write(_ini(sim, swift, "sqlite:///%s/inv.sqlite" % tmp))
            mgr = Manager([conf])
            backups = Backups(mgr)
            out: dict[str, Any] = {"size_gb": size_gb, "fill_mib": fill_mib}
            vols = {}
            for name in ("c4m", "c64k"):
                vol = mgr.create_volume(size_gb, name="bench-%s" % name)
                vols[name] = vol
            # the same data on both volumes: fill_mib MiB in 1 MiB pieces
            slots = rnd.sample(range(size // MiB), min(fill_mib, size // MiB))
            for i in range(0, len(slots), 16):
                writes = [(s * MiB, rnd.randbytes(MiB)) for s in slots[i:i + 16]]
                for vol in vols.values():
                    _write(mgr, vol.provider_id, writes)

            t0 = time.perf_counter()
            n = mgr.download(vols["c4m"].id, lambda chunk: None)
            floor_s = time.perf_counter() - t0
            assert n == size
            rows = {"floor (raw export to nothing)": {"seconds": floor_s,
                                                      "MB/s": size / floor_s / 1e6}}
            t0 = time.perf_counter()
            full = backups.create(vols["c4m"].id, target="c4m")
            full_s = time.perf_counter() - t0
            rows["full backup, 4 MiB chunks"] = {
                "seconds": full_s, "MB/s": size / full_s / 1e6,
                "stored MB": full.bytes_stored / 1e6}
            t0 = time.perf_counter()
            backups.restore(full.id)
            restore_s = time.perf_counter() - t0
            rows["restore into a new volume"] = {
                "seconds": restore_s, "MB/s": size / restore_s / 1e6,
                "stored MB": full.bytes_stored / 1e6}
            backups.create(vols["c64k"].id, target="c64k")
            out["throughput"] = rows

            # incrementals: the same random 64 KiB writes on both volumes
            blocks = rnd.sample(range(size // KiB64), changes)
            writes = [(b * KiB64, rnd.randbytes(KiB64)) for b in blocks]
            for vol in vols.values():
                _write(mgr, vol.provider_id, writes)
            incr = {}
            for name, vol in vols.items():
                t0 = time.perf_counter()
                b = backups.create(vol.id, target=name, incremental=True)
                incr[name] = {"bytes changed": changes * KiB64,
                              "blocks XAPI reported": b.changed_blocks,
                              "bytes read": b.bytes_read, "bytes stored": b.bytes_stored,
                              "seconds": time.perf_counter() - t0}
            out["incremental"] = incr
            mgr.close()
            return out
    finally:
        swift.stop()


def report(results: dict[str, Any]) -> list[str]:
    lines = ["Backup to Swift (loopback all-in-one), %d GiB nfs volume holding %d MiB:"
             % (results["size_gb"], results["fill_mib"]), ""]
    lines.append("%-32s %8s %8s %10s" % ("", "seconds", "MB/s", "stored MB"))
    for name, row in results["throughput"].items():
        lines.append("%-32s %8.2f %8.1f %10s" % (name, row["seconds"], row["MB/s"],
                                                  "%.1f" % row["stored MB"]
                                                  if "stored MB" in row else "-"))
    lines += ["", "%-12s %14s %20s %12s %14s %8s" % (
        "chunk size", "bytes changed", "blocks XAPI reported", "bytes read", "bytes stored",
        "seconds")]
    for name, row in results["incremental"].items():
        lines.append("%-12s %14d %20d %12d %14d %8.2f" % (
            {"c4m": "4 MiB", "c64k": "64 KiB"}[name], row["bytes changed"],
            row["blocks XAPI reported"], row["bytes read"], row["bytes stored"],
            row["seconds"]))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.backup", description=__doc__)
    p.add_argument("--size-gb", type=int, default=2)
    p.add_argument("--fill-mib", type=int, default=256)
    p.add_argument("--changes", type=int, default=100, help="random 64 KiB writes")
    p.add_argument("--output", default=os.path.join(tempfile.gettempdir(),
                                                    "xensm-bench-backup.json"))
    args = p.parse_args(argv)
    quiet_logging()
    results = measure(args.size_gb, args.fill_mib, args.changes)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    print("\n".join(report(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
