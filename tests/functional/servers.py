"""The database servers production uses, for tests: a fresh database on each.

PostgreSQL and MySQL (MariaDB) are found at ``XENSM_TEST_POSTGRESQL_URL`` and
``XENSM_TEST_MYSQL_URL`` (defaults: PostgreSQL on 127.0.0.1:5432 as postgres,
MariaDB on 127.0.0.1:3306 as root, both without a password). Each test gets a
database of its own (made, then dropped), so runs never meet.

A server that does not answer skips the test, printing why, so a laptop
without the servers passes. ``XENSM_REQUIRE_SERVICES=1`` (``.ci/run`` sets it)
turns that skip into a failure with the same reason: CI always runs them.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

SERVERS = {
    "postgresql": os.environ.get("XENSM_TEST_POSTGRESQL_URL",
                                 "postgresql+psycopg2://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("XENSM_TEST_MYSQL_URL",
                            "mysql+pymysql://root@127.0.0.1:3306/test"),
}

#: Set to 1 where the services must be there (CI): a missing one fails.
REQUIRE = "XENSM_REQUIRE_SERVICES"


def required() -> bool:
    return os.environ.get(REQUIRE, "").strip() not in ("", "0")


def unavailable(test: Any, why: str) -> None:
    """Skip ``test`` saying ``why`` -- or fail it, where the services are required."""
    if required():
        test.fail("%s (%s=1: the services must be there; start them, see "
                  "README 'Tests on the database servers')" % (why, REQUIRE))
    test.skipTest(why)


def fresh_database(test: Any, server: str) -> str:
    """A new empty database on ``server`` for ``test``, dropped at its cleanup;
    its URL. Skips (or fails, see :func:`unavailable`) if the server does not
    answer or its DBAPI module is missing."""
    admin_url = make_url(SERVERS[server])
    name = "xensm_test_%s" % uuid.uuid4().hex[:12]
    shown = admin_url.render_as_string(hide_password=True)
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT",
                                 connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE %s" % name))
    except ImportError as exc:
        unavailable(test, "no driver for %s (%s): pip install -r test-requirements.txt"
                    % (admin_url.drivername, exc))
    except sa.exc.OperationalError as exc:
        unavailable(test, "%s does not answer (%s); these tests need the server" % (
            shown, str(exc.orig).strip().splitlines()[0]))
    test.addCleanup(_drop, admin, name)
    return str(admin_url.set(database=name).render_as_string(hide_password=False))


def _drop(admin: sa.engine.Engine, name: str) -> None:
    force = " WITH (FORCE)" if admin.dialect.name == "postgresql" else ""
    with admin.connect() as conn:     # FORCE: a test's stray engine may hold it
        conn.execute(sa.text("DROP DATABASE %s%s" % (name, force)))
    admin.dispose()
