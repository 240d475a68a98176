"""The inventory's tests on PostgreSQL and MySQL (MariaDB), where several hosts share one.

Each test gets a database of its own on the server (made, then dropped), so
runs never meet; tests/functional/servers.py says where the servers are found
and when a missing one skips or fails.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import fixtures
import sqlalchemy as sa
import testtools

from tests.functional import servers
from tests.unit.service import test_inventory
from xensm_driver.service import inventory as inv
from xensm_driver.service import models
from xensm_driver.service.models import Volume


class OnServer(test_inventory.InventoryTestCase):
    """A fresh database on ``SERVER`` for each test; skipped if it does not answer
    (failed, with XENSM_REQUIRE_SERVICES=1)."""

    SERVER = ""

    def database_url(self) -> str:
        return servers.fresh_database(self, self.SERVER)


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


OPEN_RACE = """
import sys, time
from xensm_driver.service import inventory as inv
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
opened = inv.Inventory(sys.argv[1])
opened.record_backend("xs", "nfs", "sr-uuid")
print(opened.schema_version)
"""


class OpenRace:
    """Hosts starting at once on an empty database: one schema, one back end row."""

    CONTENDERS = 4

    def test_hosts_making_the_inventory_at_once_all_open_it(self) -> None:
        url = servers.fresh_database(self, self.SERVER)
        start = "%f" % (time.time() + 1.5)    # all have started by then
        procs = [subprocess.Popen([sys.executable, "-c", OPEN_RACE, url, start],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(self.CONTENDERS)]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            self.assertEqual((0, str(models.SCHEMA_VERSION)), (proc.returncode, out.strip()),
                             err[-2000:])
        opened = inv.Inventory(url, create=False)
        self.addCleanup(opened.close)
        self.assertEqual(["xs"], [b.name for b in opened.backends()])
        engine = sa.create_engine(url)
        self.addCleanup(engine.dispose)
        with engine.connect() as conn:
            self.assertEqual(1, conn.execute(sa.text(
                "SELECT count(*) FROM xensm_schema")).scalar_one())


    def test_a_back_end_recorded_by_two_hosts_at_once_is_one_row(self) -> None:
        url = servers.fresh_database(self, self.SERVER)
        opened = inv.Inventory(url)
        self.addCleanup(opened.close)
        # Another host has inserted the row, not yet committed: ours waits on
        # the key, then finds the row there (a duplicate key, read again).
        engine = sa.create_engine(url)
        self.addCleanup(engine.dispose)
        errors: list[BaseException] = []

        def record() -> None:
            try:
                opened.record_backend("xs", "nfs", "sr-2")
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)

        with engine.connect() as conn:
            trans = conn.begin()
            conn.execute(sa.text("INSERT INTO backends (name, sr_type, sr_uuid, created_at, "
                                 "updated_at) VALUES ('xs', 'nfs', 'sr-1', :t, :t)"),
                         {"t": models.utcnow()})
            thread = threading.Thread(target=record)
            thread.start()
            thread.join(1.0)        # it waits for our row's lock, or has failed
            trans.commit()
        thread.join(60)
        self.assertEqual([], errors)
        self.assertEqual([("xs", "sr-2")], [(b.name, b.sr_uuid) for b in opened.backends()])


class PostgreSQLOpenRaceTest(OpenRace, testtools.TestCase):
    SERVER = "postgresql"


class MySQLOpenRaceTest(OpenRace, testtools.TestCase):
    SERVER = "mysql"


HOLDER = """
import sys, time
from xensm_driver.service import inventory as inv
from xensm_driver.service.models import Volume
opened = inv.Inventory(sys.argv[1], create=False)
opened.claim(Volume, sys.argv[2], "extending", frozenset({"available"}))
print("claimed", flush=True)
time.sleep(120)
"""


class Liveness:
    """A process on another host: seen running while it runs, gone once killed."""

    def test_a_process_on_another_host_is_alive_until_killed(self) -> None:
        vol = self.volume()
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, self.url, vol.id],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, **{inv.HOST_ENV: "elsewhere"}))
        self.addCleanup(_reap, proc)
        self.assertEqual("claimed", proc.stdout.readline().strip(), proc.stderr)
        held = self.inv.get(Volume, vol.id)
        self.assertEqual("elsewhere:%d" % proc.pid, held.owner)
        # Not this host's pid to look at: the server says it runs.
        self.assertIsNone(inv.owner_alive(held.owner))
        self.assertIs(True, inv.owner_alive_of(held))
        self.assertEqual("extending", inv.effective_status(held))
        self.assertRaises(inv.Refused, self.inv.claim, Volume, vol.id, "deleting",
                          frozenset({"available", "error"}))
        proc.kill()
        proc.wait()
        # Its connection closed with it, and its lock with that, as soon as
        # the server has seen the socket close.
        deadline = time.monotonic() + 30
        gone = self.inv.get(Volume, vol.id)
        while inv.owner_alive_of(gone) and time.monotonic() < deadline:
            time.sleep(0.05)
            gone = self.inv.get(Volume, vol.id)
        self.assertIs(False, inv.owner_alive_of(gone))
        self.assertTrue(inv.interrupted(gone))
        self.assertEqual("error", inv.effective_status(gone))
        self.inv.claim(Volume, vol.id, "deleting", frozenset({"available", "error"}))

    def test_the_lock_is_held_while_any_inventory_of_the_process_is_open(self) -> None:
        vol = self.volume()
        other = self.open()
        other.claim(Volume, vol.id, "extending", frozenset({"available"}))
        assert other.liveness is not None
        self.assertIs(other.liveness, self.inv.liveness)    # one per process and URL
        probe = sa.create_engine(self.url)
        self.addCleanup(probe.dispose)

        def held() -> bool:
            with probe.connect() as conn:
                return other_liveness.held_by(conn, inv.this_owner())

        other_liveness = other.liveness
        self.assertTrue(held())
        other.close()           # this test's inventory is still open: still held
        self.assertTrue(held())
        self.inv.close()        # the last one: let go
        # The server drops the lock when it has ended the closed connection's
        # session, a moment after the client let go of it.
        deadline = time.monotonic() + 10
        while held() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(held())


class PostgreSQLLivenessTest(OnServer, Liveness):
    SERVER = "postgresql"


class MySQLLivenessTest(OnServer, Liveness):
    SERVER = "mysql"


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


class MissingServerTest(testtools.TestCase):
    """A server that does not answer: a skip saying why, or with
    XENSM_REQUIRE_SERVICES=1 a failure saying the same."""

    class Recorder:
        def __init__(self) -> None:
            self.outcome: tuple[str, str] | None = None

        def skipTest(self, why: str) -> None:  # noqa: N802 - unittest's name
            self.outcome = ("skip", why)
            raise testtools.TestCase.skipException(why)

        def fail(self, why: str) -> None:
            self.outcome = ("fail", why)
            raise AssertionError(why)

        def addCleanup(self, *args: object) -> None:  # noqa: N802 - unittest's name
            raise AssertionError("no database was made, nothing to clean up")

    def attempt(self, required: str | None) -> tuple[str, str]:
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))      # bound, never listening: refused
        self.addCleanup(closed.close)
        self.useFixture(fixtures.MonkeyPatch(
            "tests.functional.servers.SERVERS",
            {"postgresql": "postgresql+psycopg2://postgres@127.0.0.1:%d/test"
                           % closed.getsockname()[1]}))
        self.useFixture(fixtures.EnvironmentVariable(servers.REQUIRE, required))
        test = self.Recorder()
        with contextlib.suppress(testtools.TestCase.skipException, AssertionError):
            servers.fresh_database(test, "postgresql")
        assert test.outcome is not None
        return test.outcome

    def test_skipped_with_the_reason_on_a_laptop(self) -> None:
        kind, why = self.attempt(None)
        self.assertEqual("skip", kind)
        self.assertIn("does not answer", why)

    def test_a_failure_where_the_services_are_required(self) -> None:
        kind, why = self.attempt("1")
        self.assertEqual("fail", kind)
        self.assertIn("does not answer", why)
        self.assertIn("XENSM_REQUIRE_SERVICES=1", why)
