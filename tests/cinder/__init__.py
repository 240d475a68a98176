"""Tests of the driver under real Cinder 29 (``tox -e cinder``).

Why this package hides itself: the default run (``tox -e py3``, stestr with
``test_path=./tests``) discovers every package under ``tests/`` and must not
import Cinder -- Cinder is not in that env, and its process-global state
(config, RPC, database engine, eventlet or threading backend) must never mix
with the unit and functional tests. Only ``tox -e cinder`` sets
``XENSM_CINDER_TESTS``; without it this package offers no test at all.
"""

from __future__ import annotations

import os
import unittest

ENV_FLAG = "XENSM_CINDER_TESTS"


def load_tests(loader: unittest.TestLoader, standard_tests: unittest.TestSuite,
               pattern: str | None) -> unittest.TestSuite:
    if not os.environ.get(ENV_FLAG):
        return unittest.TestSuite()
    here = os.path.dirname(os.path.abspath(__file__))
    standard_tests.addTests(loader.discover(start_dir=here, pattern=pattern or "test*.py"))
    return standard_tests
