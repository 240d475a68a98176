"""No password or CHAP secret in a log line or an exception text."""

from __future__ import annotations

import logging

import fixtures

from tests.functional.solidfire import base
from xensm_driver import exception
from xensm_driver.arrays import solidfire

INITIATOR_SECRET = 'InitSecret1234'
TARGET_SECRET = 'TargSecret5678'
SECRETS = ('sim-Admin-Pw-91', INITIATOR_SECRET, TARGET_SECRET)


class TestSecretsStayOut(base.ElementTestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        self.texts: list[str] = []

    def expect_error(self, exc_class, fn, *args, **kwargs):
        err = self.assertRaises(exc_class, fn, *args, **kwargs)
        self.texts.extend([str(err), repr(err), repr(err.kwargs)])
        return err

    def test_secrets_never_logged_or_raised(self):
        acct = self.client.call('AddAccount', username='tenant', initiatorSecret=INITIATOR_SECRET,
                                targetSecret=TARGET_SECRET)
        self.assertEqual(INITIATOR_SECRET, acct['account']['initiatorSecret'])
        self.client.get_account_by_name('tenant')
        self.client.call('AddAccount', username='tenant2', initiatorSecret=INITIATOR_SECRET,
                         targetSecret=TARGET_SECRET, bogusParameter=1)
        # An array error whose message echoes the secret.
        self.control.inject_fault('AddAccount', 'xInvalidParameter',
                                  message='bad initiatorSecret %s' % INITIATOR_SECRET)
        self.expect_error(exception.ArrayError, self.client.call, 'AddAccount',
                          username='t3', initiatorSecret=INITIATOR_SECRET,
                          targetSecret=TARGET_SECRET)
        # Retries are logged; they must not carry params either.
        self.control.inject_fault('AddAccount', 'xDBVersionMismatch', times=2)
        self.client.call('AddAccount', username='t4', initiatorSecret=INITIATOR_SECRET,
                         targetSecret=TARGET_SECRET)
        # A lost answer.
        self.control.inject_fault('AddAccount', drop_after=True)
        self.expect_error(exception.ArrayConnectionError, self.client.call, 'AddAccount',
                          username='t5', initiatorSecret=INITIATOR_SECRET,
                          targetSecret=TARGET_SECRET)
        # A wrong password, and an array that is down.
        bad = solidfire.ElementClient(self.sim.url, 'admin', 'Wrong-Pw-0000',
                                           backoff=0.001)
        self.addCleanup(bad.close)
        err = self.expect_error(exception.ArrayError, bad.call, 'GetLimits')
        self.assertNotIn('Wrong-Pw-0000', str(err))
        self.sim.stop()
        self.expect_error(exception.ArrayConnectionError, self.make_client(retries=1).call,
                          'AddAccount', username='t6', initiatorSecret=INITIATOR_SECRET)

        logged = self.log.output
        self.assertIn('AddAccount', logged)          # the capture really works
        self.assertIn('***', logged)                 # params were logged, masked
        self.assertIn('bogusParameter', logged)      # unused names are reported
        for text in [logged] + self.texts:
            for secret in SECRETS + ('Wrong-Pw-0000',):
                self.assertNotIn(secret, text)
