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
    def setUp(self) -> None:
        super(base.SimTestCase, self).setUp()
        self.sim = Simulator(port=0, pool_hosts=1, auth_failure_delay=0.01,
                             max_sessions_per_user=3).start()
        self.addCleanup(self.sim.stop)

    def test_oldest_session_is_evicted(self) -> None:
        sessions = []
        for _ in range(4):
            s = XenAPI.Session(self.sim.url)
            s.xenapi.login_with_password('root', 'password')
            sessions.append(s._session)
            time.sleep(0.01)
        live = set(self.sim.control.dump()['session'])
        self.assertNotIn(sessions[0], live)
        self.assertEqual(set(sessions[1:]), live)
