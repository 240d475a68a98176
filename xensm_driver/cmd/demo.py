"""The main job (``tox -e demo``): a whole volume lifecycle with ``xensm``, checked.

Starts ``xensm-sim`` on a free loopback port, writes a configuration for it,
and runs the ``xensm`` command as a user would: check the back end, create a
volume, upload data, snapshot it, overwrite it, revert, download and compare,
clone, make a volume from the snapshot, show the snapshot tree and the stats,
see a delete refused, delete everything and reconcile. Every download is
compared byte for byte with what was uploaded; the exit status is 0 only when
every command did what it should and every comparison matched.

``python -m xensm_driver.cmd.demo [--keep] [--sr-type TYPE] [--sim-url URL]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from typing import IO
from typing import Any

from xensm_driver.cmd.simconfig import backend_section
from xensm_driver.cmd.simconfig import render_ini

MiB = 1 << 20
DATA_BYTES = 8 * MiB
SR_TYPES = ("nfs", "lvm", "lvmoiscsi", "lvmohba", "netapp", "equal")
#: The exit status ``xensm`` uses for a refusal (see ``xensm --help``).
EXIT_REFUSED = 5


class DemoFailed(Exception):
    pass


def pattern(seed: str, length: int) -> bytes:
    """Deterministic, incompressible data: a run of SHA-256 blocks."""
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(("%s:%d" % (seed, counter)).encode()).digest()
        counter += 1
    return bytes(out[:length])


def fetch_topology(url: str) -> dict[str, Any]:
    """The simulator's default storage, from its control plane (``/sim/topology``)."""
    with urllib.request.urlopen(url.rstrip("/") + "/sim/topology", timeout=30) as resp:
        topology: dict[str, Any] = json.loads(resp.read())
    return topology


class Demo:
    """Runs ``xensm`` commands, shows them as a transcript, and checks the results."""

    def __init__(self, workdir: str, config_file: str, secret: str, out: IO[str]) -> None:
        self.workdir = workdir
        self.config_file = config_file
        self.secret = secret
        self.out = out
        self.commands = 0
        self.checks = 0
        self.env = dict(os.environ, XENSM_CONFIG_FILE=config_file)
        self.env.pop("XDG_STATE_HOME", None)

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def xensm(self, *args: str, expect: int = 0) -> str:
        """Run ``xensm ARGS``; show it and its output; fail unless it exits ``expect``."""
        self.say("$ xensm %s" % " ".join(shlex.quote(a) for a in args))
        proc = subprocess.run([sys.executable, "-m", "xensm_driver.cmd.xensm", *args],
                              capture_output=True, text=True, env=self.env,
                              cwd=self.workdir, timeout=300, check=False)
        self.commands += 1
        shown = proc.stdout + proc.stderr
        if shown:
            self.out.write(shown if shown.endswith("\n") else shown + "\n")
        if self.secret in shown:
            raise DemoFailed("'xensm %s' printed the XAPI password" % " ".join(args))
        if proc.returncode != expect:
            raise DemoFailed("'xensm %s' exited %d, expected %d"
                             % (" ".join(args), proc.returncode, expect))
        self.say()
        return proc.stdout

    def xensm_json(self, *args: str) -> Any:
        self.commands += 1
        proc = subprocess.run([sys.executable, "-m", "xensm_driver.cmd.xensm", *args, "--json"],
                              capture_output=True, text=True, env=self.env,
                              cwd=self.workdir, timeout=300, check=False)
        if proc.returncode != 0:
            raise DemoFailed("'xensm %s --json' exited %d: %s" % (
                " ".join(args), proc.returncode, proc.stderr.strip()))
        return json.loads(proc.stdout)

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.workdir, name)
        with open(path, "wb") as f:
            f.write(data)
        return name

    def expect_content(self, volume: str, data: bytes, what: str) -> None:
        """Download the volume's first bytes and compare them with ``data``."""
        name = "%s-%d.img" % (volume, self.checks)
        self.xensm("volume", "download", volume, name, "--length", _size(len(data), "M"))
        with open(os.path.join(self.workdir, name), "rb") as f:
            got = f.read()
        self.checks += 1
        if got != data:
            first = next((i for i, (a, b) in enumerate(zip(got, data, strict=False)) if a != b),
                         min(len(got), len(data)))
            raise DemoFailed("volume %s does not hold %s: %d bytes read, first difference "
                             "at byte %d" % (volume, what, len(got), first))
        self.say("# check %d passed: volume %s holds %s (%s, sha256 %s...)" % (
            self.checks, volume, what, _size(len(data)), hashlib.sha256(data).hexdigest()[:12]))
        self.say()

    def lifecycle(self) -> None:
        a = pattern("demo data A", DATA_BYTES)
        b = pattern("demo data B", DATA_BYTES)
        self.say("# 1. Is the back end usable? (the first command an operator runs)")
        self.xensm("check")
        self.say("# 2. A 1 GiB volume, and data A written into it")
        self.xensm("volume", "create", "--size", "1", "--name", "demo")
        self.xensm("volume", "upload", "demo", self.write("data-A.img", a))
        self.say("# 3. Snapshot it, then overwrite the volume with data B")
        self.xensm("snapshot", "create", "demo", "--name", "before")
        self.xensm("volume", "upload", "demo", self.write("data-B.img", b))
        self.expect_content("demo", b, "data B")
        self.say("# 4. Revert to the snapshot: data A is back")
        self.xensm("volume", "revert", "demo", "--snapshot", "before")
        self.expect_content("demo", a, "data A")
        self.say("# 5. A clone of the volume, and a larger volume made from the snapshot")
        self.xensm("volume", "clone", "demo", "--name", "demo-copy")
        self.expect_content("demo-copy", a, "data A")
        self.xensm("volume", "create", "--snapshot", "before", "--size", "2",
                   "--name", "from-before")
        self.expect_content("from-before", a, "data A")
        self.say("# 6. What came from what")
        self.xensm("snapshot", "tree", "demo")
        self.xensm("volume", "list")
        self.xensm("stats")
        self.say("# 7. Deleting a volume that still has snapshots is refused (exit %d)"
                 % EXIT_REFUSED)
        self.xensm("volume", "delete", "demo", expect=EXIT_REFUSED)
        self.say("# 8. Delete everything; the inventory and the SR must agree")
        self.xensm("volume", "delete", "demo-copy")
        self.xensm("volume", "delete", "from-before")
        self.xensm("volume", "delete", "demo", "--cascade")
        self.xensm("reconcile")
        left = self.xensm_json("volume", "list")
        if left:
            raise DemoFailed("volumes left after the deletes: %s" % [v["id"] for v in left])
        self.xensm("volume", "list")


def _size(n: int, mib: str = " MiB") -> str:
    return "%d%s" % (n // MiB, mib) if n % MiB == 0 else "%d" % n


def start_simulator(password: str) -> tuple[subprocess.Popen[str], str, dict[str, Any]]:
    """``xensm-sim --port 0`` in its own process; returns it, its URL and topology."""
    proc = subprocess.Popen(
        # "--password=": a generated password may start with "-".
        [sys.executable, "-m", "xensm_driver.cmd.sim", "--port", "0", "--password=" + password,
         "--auth-failure-delay", "0.1", "--print-topology"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise DemoFailed("xensm-sim did not start: %s" % (err.strip() or url or "no output"))
    return proc, url, json.loads(proc.stdout.readline())


def stop_simulator(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xensm_driver.cmd.demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sr-type", choices=SR_TYPES, default="nfs",
                        help="the kind of SR to run the demo on (default nfs)")
    parser.add_argument("--sim-url", help="use this running xensm-sim instead of starting one")
    parser.add_argument("--keep", action="store_true",
                        help="keep the working directory (config, inventory, images)")
    args = parser.parse_args(argv)
    out = out or sys.stdout
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="xensm-demo-")
    sim: subprocess.Popen[str] | None = None
    demo: Demo | None = None
    try:
        if args.sim_url:
            url = args.sim_url
            topology = fetch_topology(url)
            username, password = topology["username"], topology["password"]
        else:
            username, password = "root", secrets.token_urlsafe(12)
            sim, url, topology = start_simulator(password)
        out.write("# xensm-sim (a simulated XenServer pool) is listening on %s\n" % url)
        backend = "demo-%s" % args.sr_type
        sections = {
            "DEFAULT": {"enabled_backends": backend},
            backend: backend_section(backend, args.sr_type, url, username, password, topology),
            "xensm": {"db_url": "sqlite:///" + os.path.join(workdir, "inventory.sqlite")},
        }
        config_file = os.path.join(workdir, "xensm.conf")
        with open(config_file, "w") as f:
            f.write(render_ini(sections))
        os.chmod(config_file, 0o600)
        out.write("# Configuration (%s), the same section cinder.conf would hold:\n\n" %
                  config_file)
        out.write(render_ini(sections, masked=True) + "\n")
        out.write("$ export XENSM_CONFIG_FILE=%s\n\n" % config_file)
        demo = Demo(workdir, config_file, password, out)
        demo.lifecycle()
    except (DemoFailed, OSError, subprocess.SubprocessError, ValueError) as exc:
        out.write("\nDEMO FAILED: %s\n" % exc)
        if not args.keep:
            out.write("(run again with --keep to look at %s)\n" % workdir)
        return 1
    finally:
        if sim is not None:
            stop_simulator(sim)
        if args.keep:
            out.write("# Working directory kept: %s\n" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    out.write("DEMO PASSED: %d xensm commands, %d content checks, in %.1f s.\n" % (
        demo.commands, demo.checks, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
