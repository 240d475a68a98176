"""``xensm-sim`` in a child process, so the simulator's CPU is not ours.

The bench process is the client; the simulator runs beside it in its own
interpreter (as a pool master runs on its own machine), so the client's
threads never wait for the simulator's GIL and client overhead shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from xensm_driver.sim.control import SimControl

#: The password the bench's pool uses (tests.functional.base writes the
#: same into every back end's ini).
PASSWORD = "s3cr3t-Pa55"


class SimProcess:
    """A running ``xensm-sim --port 0``: its URL, topology and control plane."""

    def __init__(self, pool_hosts: int = 2, password: str = PASSWORD,
                 solidfire: bool = False) -> None:
        self.pool_hosts = pool_hosts
        #: Also run the SolidFire Element simulator (and the relvmoiscsi
        #: pack its clones need).
        self.solidfire = solidfire
        self.password = password
        self.url = ""
        self.topology: dict[str, Any] = {}
        self.control: SimControl | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: Any = None

    def start(self) -> SimProcess:
        # stderr goes to a file: a pipe nobody reads would fill and block it.
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "xensm_driver.cmd.sim", "--port", "0",
             "--pool-hosts", str(self.pool_hosts), "--password", self.password,
             "--auth-failure-delay", "0.01", "--print-topology",
             *(["--solidfire", "--supplemental-pack", "relvmoiscsi"]
               if self.solidfire else [])],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert self._proc.stdout is not None
        url = self._proc.stdout.readline().strip()
        topology = self._proc.stdout.readline().strip()
        if not url.startswith("http") or not topology:
            self.stop()
            raise RuntimeError("xensm-sim did not start: %r %s" % (url, self.stderr()))
        self.url = url
        self.topology = json.loads(topology)
        self.control = SimControl(url)
        return self

    @property
    def ctl(self) -> SimControl:
        if self.control is None:
            raise RuntimeError("the simulator is not running")
        return self.control

    def stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return str(self._stderr.read()[-2000:])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
