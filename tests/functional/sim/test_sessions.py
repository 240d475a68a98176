"""Sessions: login, logout, SESSION_INVALID, the per-user cap, slaves."""

from __future__ import annotations

import time
import xmlrpc.client

import XenAPI

from tests.functional.sim import base
from xensm_driver.sim import Simulator


class SessionTest(base.SimTestCase):
    def test_bad_password_waits_then_fails(self) -> None:
        s = XenAPI.Session(self.sim.url)
        t0 = time.monotonic()
        exc = self.assertRaises(XenAPI.Failure,
                                s.xenapi.login_with_password, 'root', 'nope')
        self.assertGreaterEqual(time.monotonic() - t0, 0.05)
        self.assertEqual(['SESSION_AUTHENTICATION_FAILED', 'root'],
                         exc.details[:2])

    def test_logout_invalidates(self) -> None:
        s = XenAPI.Session(self.sim.url)
        s.xenapi.login_with_password('root', 'password')
        ref = s._session
        s.xenapi.session.logout()
        raw = XenAPI.Session(self.sim.url)
        raw._session = ref
        # Without stored login parameters the SDK cannot re-login.
        self.assertRaises(xmlrpc.client.Fault, raw.xenapi.VDI.get_all)
        self.assertNotIn(ref, self.ctl.dump()['session'])

    def test_expired_session_relogin_by_sdk(self) -> None:
        old = self.session._session
        self.assertEqual(1, self.ctl.expire_sessions(old))
        self.x.VDI.get_all()       # the SDK logs in again and retries
        self.assertNotEqual(old, self.session._session)
        calls = self.ctl.calls()
        self.assertEqual(2, calls['session.login_with_password'])
        self.assertEqual(2, calls['VDI.get_all'])

    def test_slave_answers_host_is_slave(self) -> None:
        s = XenAPI.Session(self.sim.host_urls[1])
        exc = self.assertRaises(XenAPI.Failure,
                                s.xenapi.login_with_password, 'root',
                                'password')
        self.assertEqual(['HOST_IS_SLAVE', '127.0.0.1'], exc.details)


class SessionCapTest(base.SimTestCase):
    """xen-api db_gc_util.ml timeout_sessions, with a cap of 3."""

    def start(self, username: str = 'root') -> None:
        self.sim = Simulator(port=0, pool_hosts=1, auth_failure_delay=0.01,
                             max_sessions_per_user=3, username=username,
                             session_gc_interval=3600.0).start()
        self.addCleanup(self.sim.stop)

    def setUp(self) -> None:
        super(base.SimTestCase, self).setUp()

    def login(self, user: str, originator: str) -> str:
        s = XenAPI.Session(self.sim.url)
        s.xenapi.login_with_password(user, 'password', '1.0', originator)
        time.sleep(0.01)          # distinct last_active times
        return str(s._session)

    def live(self) -> set[str]:
        return set(self.sim.control.dump()['session'])

    def test_root_sessions_are_capped_per_originator_by_the_gc(self) -> None:
        self.start()
        a = [self.login('root', 'app-a') for _ in range(5)]
        b = [self.login('root', 'app-b') for _ in range(2)]
        # Nothing is capped at login: only the periodic GC ends sessions.
        self.assertEqual(set(a + b), self.live())
        self.assertEqual(2, self.sim.control.gc_sessions())
        self.assertEqual(set(a[2:] + b), self.live())

    def test_other_users_are_capped_per_user_name(self) -> None:
        self.start('alice')
        mine = [self.login('alice', 'app-%d' % i) for i in range(4)]
        self.assertEqual(1, self.sim.control.gc_sessions())
        self.assertEqual(set(mine[1:]), self.live())

    def test_a_session_with_a_pending_task_survives(self) -> None:
        self.start()
        first = XenAPI.Session(self.sim.url)
        first.xenapi.login_with_password('root', 'password', '1.0', 'app')
        first.xenapi.task.create('busy', '')
        time.sleep(0.01)
        others = [self.login('root', 'app') for _ in range(4)]
        self.sim.control.gc_sessions()
        self.assertEqual({first._session, *others[1:]}, self.live())
