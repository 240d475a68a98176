"""One Cinder service in an OS process of its own, for the cluster test.

``python -m tests.cinder.cluster_node ROLE CONFIG_FILE [HOST]`` starts what
``cinder/cmd/{api,scheduler,volume}.py`` start, minus their process
launchers (which fork a child per service, so a SIGKILL would reach the
parent and leave the worker running): native threads (no eventlet),
``objects.register_all()`` first, the config parsed with
``project='cinder'``, ``rpc.init``, then

* ``db_sync``: Cinder's own migrations on the configured database, then exit;
* ``api``: the ``osapi_volume`` paste app on 127.0.0.1, port 0; the port is
  written to ``<CONFIG_FILE>.api-port``;
* ``scheduler``: ``cinder-scheduler``;
* ``volume``: ``cinder-volume`` for every back end in ``enabled_backends``,
  as ``<HOST>@<backend>`` in cluster ``<cluster>@<backend>``
  (``cinder/cmd/volume.py`` ``_launch_service``).

SIGTERM stops the services (RPC servers drained, the coordinator left) and
exits 0; SIGKILL is what the test uses to kill one in the middle of work.
"""

from __future__ import annotations

import os
import signal
import socketserver
import sys
import threading
from typing import Any
from wsgiref import simple_server


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True


class _QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        return None


def main(argv: list[str]) -> int:
    role, conf_path = argv[0], argv[1]
    host = argv[2] if len(argv) > 2 else None

    from tests.cinder import stack
    stack.threading_backend()
    from cinder import objects
    objects.register_all()
    from cinder import rpc
    from cinder import service
    from cinder import version
    from cinder.common import config  # noqa: F401 - registers Cinder's options
    from cinder.common import constants
    from oslo_config import cfg
    from oslo_log import log as logging

    conf = cfg.CONF
    if role == "volume":
        conf.register_opt(cfg.StrOpt("cluster"))
    conf(["--config-file", conf_path], project="cinder", version=version.version_string())
    if host:
        conf.set_override("host", host)
    logging.setup(conf, "cinder")

    if role == "db_sync":
        from cinder.db import migration
        migration.db_sync()
        return 0

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    rpc.init(conf)
    services: list[Any] = []
    if role == "api":
        from paste import deploy
        paste_ini = os.path.join(sys.prefix, "etc", "cinder", "api-paste.ini")
        app = deploy.loadapp("config:%s" % paste_ini, name="osapi_volume")
        httpd = _ThreadingWSGIServer(("127.0.0.1", 0), _QuietHandler)
        httpd.set_app(app)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                         name="cinder-api", daemon=True).start()
        tmp = conf_path + ".api-port.tmp"
        with open(tmp, "w") as f:
            f.write(str(httpd.server_address[1]))
        os.rename(tmp, conf_path + ".api-port")
    elif role == "scheduler":
        svc = service.Service.create(binary=constants.SCHEDULER_BINARY)
        svc.start()
        services.append(svc)
    elif role == "volume":
        for backend in filter(None, conf.enabled_backends):
            svc = service.Service.create(
                host="%s@%s" % (conf.host, backend), service_name=backend,
                binary=constants.VOLUME_BINARY, coordination=True,
                cluster="%s@%s" % (conf.cluster, backend) if conf.cluster else None)
            svc.start()
            services.append(svc)
            if not svc.manager.driver.initialized:
                print("cinder-volume %s did not initialise its driver" % svc.host,
                      file=sys.stderr)
                return 3
    else:
        print("unknown role %r" % role, file=sys.stderr)
        return 2

    stopped.wait()
    for svc in services:
        svc.stop()
    for svc in services:
        svc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
