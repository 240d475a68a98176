"""The whole Cinder 29 stack in this process, wired to an XAPI simulator.

python-cinderclient -> HTTP on 127.0.0.1 -> cinder-api's paste app
(``auth_strategy = noauth``) -> oslo.messaging ``fake:/`` -> cinder-scheduler
-> one cinder-volume ``Service`` (``VolumeManager`` and its taskflow) per
back-end section -> ``XenAPISMDriver`` -> XAPI on the simulator. SQLite
database built by Cinder's own migrations, tooz ``file://`` locks, native
threads (no eventlet), as ``cinder/cmd/{volume,scheduler}.py`` start them.

Cinder's state is process-global (CONF, RPC transport, DB engine, the
oslo.service backend): :func:`get` starts the stack at most once per process
and :func:`release` stops it when the last user lets go. RPC server threads
are not daemons, so a stack left running would hang the test process.
"""

from __future__ import annotations

import os
import socketserver
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from wsgiref import simple_server

from tests.functional import base as functional_base
from xensm_driver.sim import Simulator

HOST = "ci"
API_VERSION = "3.71"        # the newest microversion of Cinder 29 and cinderclient 9

#: Back-end section name -> SR type. Each becomes a cinder-volume service
#: ``ci@<section>`` and a volume type of the same name.
BACKENDS: dict[str, str] = {"xs-nfs": "nfs", "xs-iscsi": "lvmoiscsi", "xs-sf": "solidfire"}


_threading_chosen = False


def threading_backend() -> None:
    """Run Cinder on native threads; call before importing Cinder's services.

    Idempotent: oslo.service's backend can be chosen once per process.
    """
    global _threading_chosen
    if _threading_chosen:
        return
    os.environ.setdefault("OS_CINDER_DISABLE_EVENTLET_PATCHING", "1")
    if os.environ["OS_CINDER_DISABLE_EVENTLET_PATCHING"].lower() not in ("1", "true", "yes"):
        raise RuntimeError("tests/cinder run Cinder on native threads; unset "
                           "OS_CINDER_DISABLE_EVENTLET_PATCHING or set it to 1")
    from cinder import monkey_patch
    monkey_patch.patch("threading")
    _threading_chosen = True


def _json_on_the_wire() -> None:
    """Make ``fake:/`` carry messages and replies as JSON, as real transports do.

    oslo.messaging's fake driver checks that a message would serialize but
    hands the sender's objects to the receiver, and replies go back
    untouched. Real drivers (rabbit, kafka) send ``jsonutils.dumps`` of both,
    so the receiver gets plain dicts and lists. Without this, a reply can
    carry types no deployment delivers (the scheduler's ``ReadOnlyDict``
    capabilities make ``GET /scheduler-stats/get_pools?detail=True`` fail
    with 500) and both sides can share one mutable dict.
    """
    from oslo_messaging._drivers import impl_fake
    from oslo_serialization import jsonutils

    send = impl_fake.FakeDriver._send
    if getattr(send, "xensm_json_wire", False):
        return

    def _send(self: Any, target: Any, ctxt: Any, message: Any, *args: Any,
              **kwargs: Any) -> Any:
        wire = jsonutils.loads(jsonutils.dumps({"ctxt": ctxt, "message": message}))
        reply = send(self, target, wire["ctxt"], wire["message"], *args, **kwargs)
        return jsonutils.loads(jsonutils.dumps(reply))

    _send.xensm_json_wire = True  # type: ignore[attr-defined]
    impl_fake.FakeDriver._send = _send


def _immediate_transactions() -> None:
    """Make every transaction on Cinder's SQLite database take the write lock
    at BEGIN, so concurrent transactions queue instead of failing.

    oslo.db starts each SQLite transaction with a plain (deferred) ``BEGIN``
    (``oslo_db/sqlalchemy/engines.py``, ``_sqlite_emit_begin``): it reads
    under a shared lock and asks for the write lock at its first write.
    Cinder's services do read-then-write transactions from many threads at
    once; when one of them wants the write lock while another transaction
    holds it, SQLite answers SQLITE_BUSY ("database is locked") at once,
    without waiting out the busy timeout, since waiting could deadlock
    (https://www.sqlite.org/c3ref/busy_handler.html). ``BEGIN IMMEDIATE``
    takes the write lock before reading anything, so a second transaction
    waits at its BEGIN (up to the connection's ``timeout``) and never
    deadlocks. Listened for before oslo.db's own ``begin`` handler, which
    sees the transaction marked as begun and stays out of it.
    """
    import sqlalchemy
    from cinder.db import api as db_api

    engine = db_api.get_engine()
    if engine.dialect.name != "sqlite" or getattr(engine, "xensm_immediate", False):
        return

    def begin_immediate(conn: Any) -> None:
        if "in_transaction" not in conn.info:
            conn.execute(sqlalchemy.text("BEGIN IMMEDIATE"))
            conn.info["in_transaction"] = True

    sqlalchemy.event.listen(engine, "begin", begin_immediate, insert=True)
    engine.xensm_immediate = True


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True


class _QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        return None


class CinderStack:
    """A simulator, Cinder's services and an API endpoint; see the module doc."""

    def __init__(self, backends: dict[str, str] | None = None) -> None:
        self.backends = dict(backends or BACKENDS)
        self.tmp = tempfile.mkdtemp(prefix="xensm-cinder-")
        self.log_path = os.path.join(self.tmp, "cinder.log")
        self.sim: Simulator | None = None
        self.volume_services: dict[str, Any] = {}
        self.scheduler: Any = None
        self.httpd: _ThreadingWSGIServer | None = None
        self.project_id = uuid.uuid4().hex      # Cinder's routes want a hex project id
        self.endpoint = ""
        self.started_in = 0.0
        self.paste_ini = ""

    # -- configuration ---------------------------------------------------------

    def cinder_conf(self) -> str:
        etc = os.path.join(sys.prefix, "etc", "cinder")    # installed by cinder's wheel
        self.paste_ini = os.path.join(etc, "api-paste.ini")
        lines = [
            "[DEFAULT]",
            "host = %s" % HOST,
            "transport_url = fake:/",
            "auth_strategy = noauth",
            "api_paste_config = %s" % self.paste_ini,
            "resource_query_filters_file = %s" % os.path.join(etc, "resource_filters.json"),
            "enabled_backends = %s" % ",".join(self.backends),
            "state_path = %s" % self.tmp,
            "log_file = %s" % self.log_path,
            "debug = false",
            # The scheduler waits this long at start for a first report.
            "scheduler_driver_init_wait_time = 5",
            # No heartbeat and no periodic task threads: the tests ask the
            # volume managers to report when they need fresh stats; a long
            # service_down_time keeps heartbeat-less services "up".
            "report_interval = 0",
            "periodic_interval = 0",
            "service_down_time = 86400",
            "[database]",
            # timeout: how long a connection waits for SQLite's write lock
            # (pysqlite's default, 5 s, runs out on a loaded machine).
            "connection = sqlite:///%s?timeout=120" % os.path.join(self.tmp, "cinder.sqlite"),
            "[oslo_concurrency]",
            "lock_path = %s" % os.path.join(self.tmp, "locks"),
            "[coordination]",
            "backend_url = file://%s" % os.path.join(self.tmp, "coordination"),
            "[oslo_messaging_notifications]",
            "driver = noop",
            "",
        ]
        assert self.sim is not None
        sections = [functional_base.backend_ini(self.sim, sr_type, section)
                    for section, sr_type in self.backends.items()]
        return "\n".join(lines) + "\n".join(sections)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> CinderStack:
        began = time.monotonic()
        # A SolidFire cluster on the pool's storage network, and CloudOps'
        # relvmoiscsi pack so cloned LUNs can be resigned.
        self.sim = Simulator(pool_hosts=2, password=functional_base.PASSWORD,
                             auth_failure_delay=0.01, solidfire=True,
                             supplemental_packs=("relvmoiscsi",))
        self.sim.start()
        conf_path = os.path.join(self.tmp, "cinder.conf")
        with open(conf_path, "w") as f:
            f.write(self.cinder_conf())

        threading_backend()
        from cinder import objects
        objects.register_all()               # before cinder.volume.manager is imported
        from cinder import rpc
        from cinder import service
        from cinder import version
        from cinder.common import config  # noqa: F401 - registers Cinder's options
        from cinder.common import constants
        from cinder.db import migration
        from oslo_config import cfg
        from oslo_log import log as logging

        conf = cfg.CONF
        conf(["--config-file", conf_path], project="cinder",
             version=version.version_string())
        logging.setup(conf, "cinder")
        migration.db_sync()
        _immediate_transactions()
        _json_on_the_wire()
        rpc.init(conf)
        try:
            for section in self.backends:
                svc = service.Service.create(
                    host="%s@%s" % (HOST, section), service_name=section,
                    binary=constants.VOLUME_BINARY, coordination=True)
                svc.start()
                self.volume_services[section] = svc
                if not svc.manager.driver.initialized:
                    raise RuntimeError("cinder-volume %s did not initialise its driver; "
                                       "see %s" % (section, self.log_path))
            self.scheduler = service.Service.create(binary=constants.SCHEDULER_BINARY)
            self.scheduler.start()
            self._serve_api()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def _serve_api(self) -> None:
        from paste import deploy

        app = deploy.loadapp("config:%s" % self.paste_ini, name="osapi_volume")
        httpd = _ThreadingWSGIServer(("127.0.0.1", 0), _QuietHandler)
        httpd.set_app(app)
        self.httpd = httpd
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                         name="cinder-api", daemon=True).start()
        self.endpoint = "http://127.0.0.1:%d/v3/%s" % (httpd.server_address[1],
                                                       self.project_id)

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        services = list(self.volume_services.values())
        if self.scheduler is not None:
            services.append(self.scheduler)
        for svc in services:
            svc.stop()
        for svc in services:
            svc.wait()
        for svc in self.volume_services.values():
            svc.manager.driver.close()
        self.volume_services = {}
        self.scheduler = None
        if self.sim is not None:
            self.sim.stop()
            self.sim = None

    # -- what the tests use ----------------------------------------------------

    def client(self, project_id: str | None = None) -> Any:
        """python-cinderclient for a user of this stack's project (or another)."""
        from cinderclient import client as cinder_client
        from keystoneauth1 import session as ks_session
        from keystoneauth1 import token_endpoint

        project_id = project_id or self.project_id
        endpoint = self.endpoint.rsplit("/", 1)[0] + "/" + project_id
        auth = token_endpoint.Token(endpoint, "user:%s" % project_id)
        return cinder_client.Client(API_VERSION, session=ks_session.Session(auth=auth))

    def driver(self, section: str) -> Any:
        """The driver object cinder-volume built for ``section``."""
        return self.volume_services[section].manager.driver

    def report_stats(self) -> None:
        """What the volume managers' periodic task does: publish fresh stats."""
        from cinder import context
        ctxt = context.get_admin_context()
        for svc in self.volume_services.values():
            svc.manager.publish_service_capabilities(ctxt)

    def log_tail(self, since: int = 0) -> str:
        """Cinder's log from byte offset ``since``."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0


_lock = threading.Lock()
_stack: CinderStack | None = None
_users = 0


def get() -> CinderStack:
    """The process's stack, started on first use."""
    global _stack, _users
    with _lock:
        if _stack is None:
            _stack = CinderStack().start()
        _users += 1
        return _stack


def release() -> None:
    """Let go of the stack; the last user stops it (Cinder cannot restart in-process)."""
    global _users
    with _lock:
        _users -= 1
        if _users == 0 and _stack is not None:
            _stack.stop()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0,
             interval: float = 0.1) -> Any:
    """Poll ``probe`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)
