"""The inventory's tests on PostgreSQL and MySQL (MariaDB), where several hosts share one.

Each test gets a database of its own on the server (made, then dropped), so
runs never meet. The servers are found at ``XENSM_TEST_POSTGRESQL_URL`` and
``XENSM_TEST_MYSQL_URL`` (defaults: PostgreSQL on 127.0.0.1:5432 as postgres,
MariaDB on 127.0.0.1:3306 as root, both without a password); a server that
does not answer skips its tests, saying so, so a laptop without them passes.
"""

from __future__ import annotations

import os
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.unit.service import test_inventory

SERVERS = {
    "postgresql": os.environ.get("XENSM_TEST_POSTGRESQL_URL",
                                 "postgresql+psycopg2://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("XENSM_TEST_MYSQL_URL",
                            "mysql+pymysql://root@127.0.0.1:3306/test"),
}


class OnServer(test_inventory.InventoryTestCase):
    """A fresh database on ``SERVER`` for each test; skipped if it does not answer."""

    SERVER = ""

    def database_url(self) -> str:
        admin_url = make_url(SERVERS[self.SERVER])
        name = "xensm_test_%s" % uuid.uuid4().hex[:12]
        try:
            admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT",
                                     connect_args={"connect_timeout": 3})
            with admin.connect() as conn:
                conn.execute(sa.text("CREATE DATABASE %s" % name))
        except ImportError as exc:
            self.skipTest("no driver for %s (%s): pip install -r test-requirements.txt"
                          % (admin_url.drivername, exc))
        except sa.exc.OperationalError as exc:
            self.skipTest("%s does not answer (%s); these tests need the server" % (
                admin_url.render_as_string(hide_password=True),
                str(exc.orig).strip().splitlines()[0]))
        self.addCleanup(self._drop, admin, name)
        return admin_url.set(database=name).render_as_string(hide_password=False)

    @staticmethod
    def _drop(admin: sa.engine.Engine, name: str) -> None:
        force = " WITH (FORCE)" if admin.dialect.name == "postgresql" else ""
        with admin.connect() as conn:     # FORCE: a test's stray engine may hold it
            conn.execute(sa.text("DROP DATABASE %s%s" % (name, force)))
        admin.dispose()


class PostgreSQLRecordsTest(OnServer, test_inventory.RecordsTest):
    SERVER = "postgresql"


class PostgreSQLHierarchyTest(OnServer, test_inventory.HierarchyTest):
    SERVER = "postgresql"


class PostgreSQLClaimTest(OnServer, test_inventory.ClaimTest):
    SERVER = "postgresql"


class PostgreSQLSchemaTest(OnServer, test_inventory.SchemaTest):
    SERVER = "postgresql"


class MySQLSchemaTest(OnServer, test_inventory.SchemaTest):
    SERVER = "mysql"

    def test_times_keep_microseconds_after_the_step_to_version_2(self) -> None:
        # A version 1 inventory: DATETIME to the second.
        self.inv.close()
        engine = sa.create_engine(self.url)
        self.addCleanup(engine.dispose)
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE volumes MODIFY created_at DATETIME NOT NULL"))
        self.set_version(1)
        self.open()
        with engine.connect() as conn:
            precision = conn.execute(sa.text(
                "SELECT DATETIME_PRECISION FROM information_schema.COLUMNS WHERE "
                "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'volumes' AND "
                "COLUMN_NAME = 'created_at'")).scalar_one()
        self.assertEqual(6, precision)


class MySQLRecordsTest(OnServer, test_inventory.RecordsTest):
    SERVER = "mysql"


class MySQLHierarchyTest(OnServer, test_inventory.HierarchyTest):
    SERVER = "mysql"


class MySQLClaimTest(OnServer, test_inventory.ClaimTest):
    SERVER = "mysql"
