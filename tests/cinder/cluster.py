"""Cinder 29 as a cluster on the services production uses, one OS process each.

cinder-api, cinder-scheduler and two cinder-volume services (``node-a@xs``
and ``node-b@xs`` in cluster ``xensm-ci@xs``), each started by
``tests/cinder/cluster_node.py`` in a process of its own, sharing:

* Cinder's database on MariaDB (PyMySQL), a fresh database per run, dropped
  at the end;
* RPC over RabbitMQ, in a virtual host of its own per run (queue names are
  Cinder's constant topics, so only a virtual host keeps runs apart);
* coordination through tooz on Redis, in a namespace of its own per run;
* one simulated pool (``xensm-sim`` in the test process, port 0) and one
  back end on it: both volume services run the same ``[xs]`` section.

The servers are found at ``XENSM_TEST_MYSQL_URL`` (default
``mysql+pymysql://root@127.0.0.1:3306/test``), ``XENSM_TEST_RABBIT_URL``
(``rabbit://guest:guest@127.0.0.1:5672/``; the virtual host is made with
``rabbitmqctl``) and ``XENSM_TEST_REDIS_URL`` (``redis://127.0.0.1:6379``).
:func:`services_or_skip` says which does not answer; the tests skip with
that reason, or fail when ``XENSM_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
from typing import Any
from urllib import parse

from tests.cinder import stack as stack_mod
from tests.functional import base as functional_base
from xensm_driver.sim import Simulator

MYSQL_URL = os.environ.get("XENSM_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
RABBIT_URL = os.environ.get("XENSM_TEST_RABBIT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("XENSM_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REQUIRE_FLAG = "XENSM_REQUIRE_SERVICES"

BACKEND = "xs"
CLUSTER = "xensm-ci"
NODES = ("node-a", "node-b")
REPORT_INTERVAL = 1
SERVICE_DOWN_TIME = 5


def _answers(url: str, default_port: int) -> str | None:
    """None if something listens at the URL's host and port, else why not."""
    parts = parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return "%s:%d does not answer (%s)" % (host, port, exc)
    return None


def services_or_skip(test: unittest.TestCase | None = None) -> None:
    """Skip (or, with XENSM_REQUIRE_SERVICES=1, fail) unless MariaDB,
    RabbitMQ (and rabbitmqctl) and Redis answer and their clients import."""
    reasons = []
    for name, url, port in (("MariaDB", MYSQL_URL, 3306), ("RabbitMQ", RABBIT_URL, 5672),
                            ("Redis", REDIS_URL, 6379)):
        why = _answers(url, port)
        if why:
            reasons.append("%s: %s" % (name, why))
    if not shutil.which("rabbitmqctl"):
        reasons.append("RabbitMQ: no rabbitmqctl on PATH to make a virtual host with")
    for module in ("pymysql", "redis", "tooz.drivers.redis"):
        try:
            __import__(module)
        except ImportError as exc:
            reasons.append("no %s (%s): tox -e cinder installs it" % (module, exc))
    if not reasons:
        return
    message = ("the Cinder cluster test needs MariaDB, RabbitMQ and Redis: %s"
               % "; ".join(reasons))
    if os.environ.get(REQUIRE_FLAG) == "1":
        raise AssertionError("%s (%s=1: a missing service is a failure)"
                             % (message, REQUIRE_FLAG))
    print("SKIP: %s" % message, file=sys.stderr)
    raise unittest.SkipTest(message)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Cluster:
    """The services of one run; :meth:`start`, then :meth:`stop` (always)."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.tmp = tempfile.mkdtemp(prefix="xensm-cluster-")
        self.conf_path = os.path.join(self.tmp, "cinder.conf")
        self.db_name = "xensm_cinder_%s" % self.run_id
        self.vhost = "xensm-%s" % self.run_id
        self.redis_namespace = "xensm-%s" % self.run_id
        self.sim: Simulator | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.endpoint = ""
        self.project_id = uuid.uuid4().hex
        self._admin: Any = None
        self._vhost_made = False

    # -- the servers ------------------------------------------------------------

    def _make_database(self) -> None:
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url

        url = make_url(MYSQL_URL)
        self._admin = sa.create_engine(url, isolation_level="AUTOCOMMIT",
                                       connect_args={"connect_timeout": 5})
        with self._admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE %s CHARACTER SET utf8mb4" % self.db_name))
        self.db_url = url.set(database=self.db_name).render_as_string(hide_password=False)

    def _drop_database(self) -> None:
        import sqlalchemy as sa
        if self._admin is None:
            return
        with self._admin.connect() as conn:
            conn.execute(sa.text("DROP DATABASE IF EXISTS %s" % self.db_name))
        self._admin.dispose()
        self._admin = None

    def _make_vhost(self) -> None:
        user = parse.urlsplit(RABBIT_URL).username or "guest"
        _rabbitmqctl("add_vhost", self.vhost)
        self._vhost_made = True
        _rabbitmqctl("set_permissions", "-p", self.vhost, user, ".*", ".*", ".*")

    def _drop_vhost(self) -> None:
        if self._vhost_made:
            _rabbitmqctl("delete_vhost", self.vhost)
            self._vhost_made = False

    def _drop_redis_keys(self) -> None:
        import redis
        client = redis.Redis.from_url(REDIS_URL)
        try:
            for key in client.scan_iter(match="%s*" % self.redis_namespace):
                client.delete(key)
        finally:
            client.close()

    # -- configuration ------------------------------------------------------------

    def cinder_conf(self) -> str:
        etc = os.path.join(sys.prefix, "etc", "cinder")
        rabbit = parse.urlsplit(RABBIT_URL)
        transport = parse.urlunsplit((rabbit.scheme, rabbit.netloc,
                                      "/" + parse.quote(self.vhost, safe=""), "", ""))
        redis_url = "%s?namespace=%s" % (REDIS_URL.rstrip("/"), self.redis_namespace)
        assert self.sim is not None
        backend = functional_base.backend_ini(
            self.sim, "nfs", BACKEND,
            # A claim left by a killed service is taken over after
            # max(30 s, 3 x this): keep the kill test's wait at 30 s.
            xenapi_call_timeout=10)
        lines = [
            "[DEFAULT]",
            "transport_url = %s" % transport,
            "auth_strategy = noauth",
            "api_paste_config = %s" % os.path.join(etc, "api-paste.ini"),
            "resource_query_filters_file = %s" % os.path.join(etc, "resource_filters.json"),
            "enabled_backends = %s" % BACKEND,
            "cluster = %s" % CLUSTER,
            "state_path = %s" % self.tmp,
            "debug = false",
            "use_stderr = true",
            # Hundreds of volumes in one project.
            "quota_volumes = -1",
            "quota_snapshots = -1",
            "quota_gigabytes = -1",
            "report_interval = %d" % REPORT_INTERVAL,
            "service_down_time = %d" % SERVICE_DOWN_TIME,
            "periodic_interval = 2",
            "scheduler_driver_init_wait_time = 3",
            # Fresh capacity for the scheduler while hundreds of volumes come and go.
            "backend_stats_polling_interval = 5",
            "[database]",
            "connection = %s" % self.db_url,
            "[oslo_concurrency]",
            "lock_path = %s" % os.path.join(self.tmp, "locks"),
            "[coordination]",
            "backend_url = %s" % redis_url,
            "[oslo_messaging_notifications]",
            "driver = noop",
            "",
        ]
        return "\n".join(lines) + backend

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> Cluster:
        try:
            self._make_database()
            self._make_vhost()
            self.sim = Simulator(pool_hosts=2, password=functional_base.PASSWORD,
                                 auth_failure_delay=0.01)
            self.sim.start()
            with open(self.conf_path, "w") as f:
                f.write(self.cinder_conf())
            self._run_node("db_sync")
            self._spawn("api")
            self._spawn("scheduler")
            for node in NODES:
                self._spawn("volume", node)
            self._wait_api()
            self._wait_services_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _node_cmd(self, role: str, host: str | None) -> list[str]:
        cmd = [sys.executable, "-m", "tests.cinder.cluster_node", role, self.conf_path]
        return cmd + ([host] if host else [])

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OS_CINDER_DISABLE_EVENTLET_PATCHING"] = "1"
        env.pop("OS_STDOUT_CAPTURE", None)
        return env

    def log_path(self, name: str) -> str:
        return os.path.join(self.tmp, "%s.log" % name)

    def _run_node(self, role: str) -> None:
        with open(self.log_path(role), "wb") as log:
            subprocess.run(self._node_cmd(role, None), check=True, timeout=240,
                           stdout=log, stderr=subprocess.STDOUT, env=self._env(),
                           cwd=os.getcwd())

    def _spawn(self, role: str, host: str | None = None) -> None:
        name = host or role
        log = open(self.log_path(name), "wb")
        self.procs[name] = subprocess.Popen(
            self._node_cmd(role, host), stdout=log, stderr=subprocess.STDOUT,
            env=self._env())
        log.close()

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError("%s exited with %s while starting:\n%s"
                                     % (name, proc.returncode, self.log_tail(name)))

    def _wait_api(self) -> None:
        port_file = self.conf_path + ".api-port"

        def ready() -> bool:
            self._check_alive()
            return os.path.exists(port_file)
        stack_mod.wait_for("cinder-api to listen", ready, timeout=180, interval=0.2)
        with open(port_file) as f:
            self.endpoint = "http://127.0.0.1:%s/v3/%s" % (f.read().strip(), self.project_id)

    def _wait_services_up(self) -> None:
        client = self.client()
        hosts = {"%s@%s" % (n, BACKEND) for n in NODES}

        def ready() -> bool:
            self._check_alive()
            up = {s.host for s in client.services.list(binary="cinder-volume")
                  if s.state == "up" and s.cluster == "%s@%s" % (CLUSTER, BACKEND)}
            scheduler = [s for s in client.services.list(binary="cinder-scheduler")
                         if s.state == "up"]
            return hosts <= up and bool(scheduler)
        stack_mod.wait_for("both cinder-volume services and the scheduler to be up", ready,
                           timeout=240, interval=0.5)
        # The scheduler knows a back end once it has its capabilities.
        stack_mod.wait_for("the scheduler to know the cluster's pool",
                           lambda: client.pools.list(detailed=False), timeout=60,
                           interval=0.5)

    def in_flight(self, host: str) -> list[tuple[str, str, str]]:
        """(resource type, id, status) of the work Cinder's database records
        as being done by service ``host`` now (its ``workers`` rows: a
        cleanable verb under way, cinder/objects/cleanable.py)."""
        import sqlalchemy as sa
        assert self._admin is not None
        with self._admin.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT w.resource_type, w.resource_id, w.status FROM %s.workers w "
                "JOIN %s.services s ON w.service_id = s.id "
                "WHERE s.host = :host AND w.deleted = 0" % (self.db_name, self.db_name)),
                {"host": host}).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def kill(self, name: str) -> None:
        """SIGKILL one service process: no cleanup of any kind in it."""
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        self.procs = {}
        if self.sim is not None:
            self.sim.stop()
            self.sim = None
        errors = []
        for step in (self._drop_database, self._drop_vhost, self._drop_redis_keys):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - report every step that failed
                errors.append("%s: %s" % (step.__name__, exc))
        if errors:
            print("cluster cleanup: %s" % "; ".join(errors), file=sys.stderr)

    def remove_files(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- what the tests use ----------------------------------------------------------

    def client(self) -> Any:
        from cinderclient import client as cinder_client
        from keystoneauth1 import session as ks_session
        from keystoneauth1 import token_endpoint

        auth = token_endpoint.Token(self.endpoint, "user:%s" % self.project_id)
        return cinder_client.Client(stack_mod.API_VERSION,
                                    session=ks_session.Session(auth=auth))

    def log_tail(self, name: str, size: int = 20000) -> str:
        try:
            with open(self.log_path(name), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""
