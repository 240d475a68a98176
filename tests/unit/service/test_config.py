"""Which sections of the ini file are back ends, and file errors."""

from __future__ import annotations

import os

import fixtures
import testtools

from xensm_driver import exception
from xensm_driver.service import config


class SectionsTest(testtools.TestCase):
    def load(self, text: str) -> list[str]:
        tmp = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(tmp, "xensm.conf")
        with open(path, "w") as f:
            f.write(text)
        return config.backend_sections(config.load([path]))

    def test_sections_that_set_an_sr_type_or_a_driver(self) -> None:
        found = self.load(
            "[DEFAULT]\ndebug = true\n"
            "[backend_defaults]\nxenapi_connection_username = ops\n"
            "[xensm]\ndb_url = sqlite://\n"
            "[b-nfs]\nxensm_sr_type = nfs\n"
            "[a-lvm]\nvolume_driver = xensm_driver.driver.XenAPISMDriver\n"
            "[notes]\nsomething = else\n")
        self.assertEqual(["a-lvm", "b-nfs"], found)

    def test_enabled_backends_decides(self) -> None:
        found = self.load("[DEFAULT]\nenabled_backends = two\n"
                          "[one]\nxensm_sr_type = nfs\n[two]\nxensm_sr_type = lvm\n")
        self.assertEqual(["two"], found)

    def test_an_enabled_backend_without_a_section(self) -> None:
        err = self.assertRaises(exception.ConfigError, self.load,
                                "[DEFAULT]\nenabled_backends = one, three\n"
                                "[one]\nxensm_sr_type = nfs\n")
        self.assertIn("no section named three", str(err))


class LoadTest(testtools.TestCase):
    def test_no_file(self) -> None:
        err = self.assertRaises(exception.ConfigError, config.load, [])
        self.assertIn("no configuration file", str(err))

    def test_a_missing_file(self) -> None:
        err = self.assertRaises(exception.ConfigError, config.load, ["/nonexistent/x.conf"])
        self.assertIn("/nonexistent/x.conf", str(err))

    def test_a_file_that_is_not_ini(self) -> None:
        tmp = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(tmp, "bad.conf")
        with open(path, "w") as f:
            f.write("this is not = an ini file\n[unclosed\n")
        err = self.assertRaises(exception.ConfigError, config.load, [path])
        self.assertIn(path, str(err))

    def test_db_url_from_the_xensm_section(self) -> None:
        tmp = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(tmp, "x.conf")
        with open(path, "w") as f:
            f.write("[xensm]\ndb_url = sqlite:////var/lib/xensm.sqlite\n")
        self.assertEqual("sqlite:////var/lib/xensm.sqlite", config.db_url(config.load([path])))
