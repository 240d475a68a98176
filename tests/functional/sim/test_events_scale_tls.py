"""event.from, behaviour at scale, and HTTPS."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any

import testtools
import XenAPI

from tests.functional.sim import base
from xensm_driver.sim import Simulator

MiB = base.MiB


def wait_until(predicate: Any, timeout: float = 30.0) -> Any:
    """Poll ``predicate`` until true (a wait, not an assertion on time)."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


class EventTest(base.SimTestCase):
    srs = ('nfs',)

    def test_event_from(self) -> None:
        sr = self.sr('nfs')
        first = self.x.event_from(['*'], '', 0.0)
        self.assertIn('vdi', [e['class'] for e in first['events']] + ['vdi'])
        token = first['token']
        self.assertEqual({}, {e['ref'] for e in self.x.event_from(
            ['vdi'], token, 0.0)['events']} or {})
        v = self.vdi(sr, MiB, 'ev')
        got = self.x.event_from(['vdi'], token, 1.0)
        adds = [e for e in got['events'] if e['ref'] == v]
        self.assertEqual('add', adds[0]['operation'])
        self.assertEqual('vdi', adds[0]['class'])
        self.assertEqual('ev', adds[0]['snapshot']['name_label'])
        self.assertIn('VDI', got['valid_ref_counts'])
        token = got['token']
        self.x.VDI.set_name_label(v, 'renamed')
        got = self.x.event_from(['vdi/%s' % v], token, 1.0)
        self.assertEqual([('mod', 'renamed')],
                         [(e['operation'], e['snapshot']['name_label'])
                          for e in got['events']])
        token = got['token']
        self.x.VDI.destroy(v)
        got = self.x.event_from(['vdi'], token, 1.0)
        self.assertEqual(['del'], [e['operation'] for e in got['events']
                                   if e['ref'] == v])

    def test_event_from_blocks_until_a_change(self) -> None:
        sr = self.sr('nfs')
        token = self.x.event_from(['vdi'], '', 0.0)['token']
        # Nothing changes: the wait runs out with no event.
        self.assertEqual([], self.x.event_from(['vdi'], token, 0.3)['events'])
        got: dict[str, Any] = {}
        # A wait far longer than the test: only a change can end it.
        waiter = threading.Thread(target=lambda: got.update(
            self.x.event_from(['vdi'], token, 3600.0)))
        waiter.start()
        self.addCleanup(waiter.join, 60)
        # Once the server holds the waiting call, change something.
        self.assertTrue(wait_until(lambda: self.ctl.calls().get('event.from') == 3))
        other = self.login().xenapi      # a session is not thread-safe
        other.VDI.create({'SR': sr, 'virtual_size': str(MiB), 'type': 'user',
                          'sharable': False, 'read_only': False, 'other_config': {}})
        waiter.join(60)
        self.assertFalse(waiter.is_alive(), 'event.from was not woken by the change')
        self.assertEqual(['add'], [e['operation'] for e in got['events']])

    def test_task_events_and_errors(self) -> None:
        sr = self.sr('nfs')
        v = self.vdi(sr, MiB)
        token = self.x.event_from(['task'], '', 0.0)['token']
        task = self.x.Async.VDI.snapshot(v)
        done = False
        deadline = time.monotonic() + 10
        while not done and time.monotonic() < deadline:
            got = self.x.event_from(['task/%s' % task], token, 5.0)
            token = got['token']
            done = any(e['snapshot'].get('status') == 'success'
                       for e in got['events'])
        self.assertTrue(done)
        self.assertFailure(['EVENT_FROM_TOKEN_PARSE_FAILURE'],
                           self.x.event_from, ['vdi'], 'garbage', 0.0)
        self.assertFailure(['EVENT_SUBSCRIPTION_PARSE_FAILURE'],
                           self.x.event_from, ['nosuchclass'], '', 0.0)


class ScaleTest(base.SimTestCase):
    srs = ('nfs',)
    pool_hosts = 1

    def test_queries_on_a_big_sr(self) -> None:
        sr = self.sr('nfs')
        other = self.x.SR.create(
            self.sim.topology['hosts'][0]['ref'],
            {'server': '127.0.0.10', 'serverpath': '/export/xensm'}, '0',
            'other', '', 'nfs', 'user', True)
        rec = {'SR': sr, 'virtual_size': str(MiB), 'type': 'user',
               'sharable': False, 'read_only': False, 'other_config': {}}

        def fill(n: int) -> None:
            s = XenAPI.Session(self.sim.url)
            s.xenapi.login_with_password('root', 'password')
            for _ in range(n):
                s.xenapi.VDI.create(rec)
            s.xenapi.session.logout()
        ts = [threading.Thread(target=fill, args=(250,)) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(2000, len(self.x.SR.get_VDIs(sr)))
        v = self.vdi(other, MiB, 'needle')
        found = self.x.VDI.get_all_records_where(
            'field "SR"="%s" and field "name__label"="needle"' % other)
        self.assertEqual([v], list(found))
        self.assertEqual({}, self.x.VDI.get_all_records_where(
            'field "name__label"="needle" and field "SR"="%s"' % sr))
        # 1 MiB rounds up to one 2 MiB VHD block.
        self.assertEqual(str(2000 * 2 * MiB),
                         self.x.SR.get_virtual_allocation(sr))


class TlsTest(testtools.TestCase):
    def test_https(self) -> None:
        if not shutil.which('openssl'):
            self.skipTest('openssl is not installed')
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        cert, key = os.path.join(d, 'c.pem'), os.path.join(d, 'k.pem')
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048',
                        '-nodes', '-keyout', key, '-out', cert, '-days', '1',
                        '-subj', '/CN=127.0.0.1'], check=True,
                       capture_output=True)
        sim = Simulator(port=0, pool_hosts=2, tls_certfile=cert,
                        tls_keyfile=key, auth_failure_delay=0.01).start()
        self.addCleanup(sim.stop)
        self.assertTrue(sim.url.startswith('https://127.0.0.1:'))
        s = XenAPI.Session(sim.url, ignore_ssl=True)
        s.xenapi.login_with_password('root', 'password')
        self.assertEqual(2, len(s.xenapi.host.get_all()))
        self.assertEqual(1, sim.control.calls()['host.get_all'])
        s.xenapi.session.logout()
