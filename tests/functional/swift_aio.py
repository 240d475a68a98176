"""A real OpenStack Swift all-in-one on loopback, for backup tests.

Proxy (with tempauth and s3api), account, container and object servers and
a memcached for tempauth's tokens, each a child process on a free
127.0.0.1 port, with one-device rings in a temporary directory (see
/work/shared/reference/swift-on-loopback.md). One instance serves a whole
test class: ``SwiftAllInOne.start()`` in ``setUpClass``.

Swift API: auth URL ``<url>/auth/v1.0``, user ``test:tester``, key
``Sw1ft-k3y-t35t``. S3 API: endpoint ``<url>``, access key ``test:tester``, secret
``Sw1ft-k3y-t35t``.

Tests skip (naming what is missing) when the ``swift`` package or
``memcached`` is not installed; backup-test-requirements.txt brings the first,
the distribution's ``memcached`` package the second.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import requests

USER = "test:tester"
KEY = "Sw1ft-k3y-t35t"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing() -> str | None:
    """Why Swift cannot run here, or None."""
    bindir = os.path.dirname(sys.executable)
    if not os.path.exists(os.path.join(bindir, "swift-proxy-server")):
        return "the swift server package is not installed (pip install swift)"
    if shutil.which("memcached") is None:
        return "memcached is not installed (apt-get install memcached)"
    try:
        import boto3  # noqa: F401
        import swiftclient  # noqa: F401
    except ImportError as exc:
        return "%s is not installed" % exc.name
    return None


class SwiftAllInOne:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="xensm-swift-")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports = {name: _free_port() for name in
                      ("proxy", "account", "container", "object", "memcached")}
        self.url = "http://127.0.0.1:%d" % self.ports["proxy"]
        self.auth_url = self.url + "/auth/v1.0"

    def _write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def _rings(self) -> None:
        builder = os.path.join(os.path.dirname(sys.executable), "swift-ring-builder")
        for ring in ("account", "container", "object"):
            b = os.path.join(self.dir, ring + ".builder")
            for args in (["create", "10", "1", "1"],
                         ["add", "r1z1-127.0.0.1:%d/d1" % self.ports[ring], "1"],
                         ["rebalance"]):
                subprocess.run([builder, b, *args], check=False, capture_output=True)
            if not os.path.exists(os.path.join(self.dir, ring + ".ring.gz")):
                raise RuntimeError("swift-ring-builder made no %s ring" % ring)

    def start(self) -> SwiftAllInOne:
        devices = os.path.join(self.dir, "devices")
        os.makedirs(os.path.join(devices, "d1"))
        self._write("swift.conf", "[swift-hash]\nswift_hash_path_suffix = xensm\n"
                    "swift_hash_path_prefix = tests\n\n[storage-policy:0]\nname = gold\n"
                    "default = yes\n")
        self._rings()
        common = ("[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = %%d\nworkers = 0\n"
                  "user = %s\nswift_dir = %s\ndevices = %s\nmount_check = false\n"
                  "log_level = WARNING\n" % (getpass.getuser(), self.dir, devices))
        for server in ("account", "container", "object"):
            self._write(server + ".conf", common % self.ports[server] + (
                "\n[pipeline:main]\npipeline = %s-server\n\n[app:%s-server]\n"
                "use = egg:swift#%s\n" % (server, server, server)))
        self._write("proxy.conf", common % self.ports["proxy"] + """
[pipeline:main]
pipeline = catch_errors proxy-logging cache s3api tempauth container-quotas slo
    proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:%d

[filter:s3api]
use = egg:swift#s3api

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = %s .admin

[filter:container-quotas]
use = egg:swift#container_quotas

[filter:slo]
use = egg:swift#slo
""" % (self.ports["memcached"], KEY))
        log = open(os.path.join(self.dir, "servers.log"), "ab")
        try:
            self.procs.append(subprocess.Popen(
                [shutil.which("memcached") or "memcached", "-l", "127.0.0.1", "-p",
                 str(self.ports["memcached"]), "-U", "0", "-u", getpass.getuser()],
                stdout=log, stderr=log))
            bindir = os.path.dirname(sys.executable)
            for server in ("account", "container", "object", "proxy"):
                self.procs.append(subprocess.Popen(
                    [os.path.join(bindir, "swift-%s-server" % server),
                     os.path.join(self.dir, server + ".conf")], stdout=log, stderr=log))
        finally:
            log.close()
        self._wait()
        return self

    def _wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = requests.get(self.auth_url, headers={"X-Storage-User": USER,
                                                         "X-Storage-Pass": KEY}, timeout=5)
                if r.status_code == 200:
                    # and the object path works end to end
                    token, storage = r.headers["X-Auth-Token"], r.headers["X-Storage-Url"]
                    h = requests.put(storage + "/probe", headers={"X-Auth-Token": token},
                                     timeout=5)
                    if h.status_code in (201, 202):
                        return
            except requests.RequestException:
                pass
            for p in self.procs:
                if p.poll() is not None:
                    self.stop()
                    raise RuntimeError("a Swift server exited (%s); see its log" % p.args)
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Swift did not come up in %ss" % timeout)
            time.sleep(0.2)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        shutil.rmtree(self.dir, ignore_errors=True)
