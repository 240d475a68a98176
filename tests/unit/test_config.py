"""Reading a back end's options: precedence, validation, messages."""

import os
import tempfile

import testtools
from oslo_config import cfg

from xensm_driver import config
from xensm_driver import exception


def load(text: str, section: str = "xs") -> config.Configuration:
    fd, path = tempfile.mkstemp(suffix=".conf")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[path])
    configuration = config.Configuration([], section, conf)
    config.register(configuration)
    return configuration


class TestReadOptions(testtools.TestCase):

    def test_section_value_beats_backend_defaults(self):
        c = load("[backend_defaults]\nxenapi_connection_pool_size = 7\n"
                 "xenapi_retry_count = 5\n"
                 "[xs]\nxensm_sr_type = nfs\nxenapi_retry_count = 1\n")
        options = config.read_options(c)
        self.assertEqual(7, options.xenapi_connection_pool_size)
        self.assertEqual(1, options.xenapi_retry_count)
        self.assertEqual("nfs", options.xensm_sr_type)

    def test_backend_name_defaults_to_section(self):
        options = config.read_options(load("[xs]\nxensm_sr_type = lvm\n"))
        self.assertEqual("xs", options.backend_name)
        options = config.read_options(
            load("[xs]\nxensm_sr_type = lvm\nvolume_backend_name = gold\n"))
        self.assertEqual("gold", options.backend_name)

    def test_unknown_sr_type_names_the_option_and_choices(self):
        c = load("[xs]\nxensm_sr_type = nfz\n")
        err = self.assertRaises(exception.ConfigError, config.read_options, c)
        self.assertIn("xensm_sr_type in [xs]", str(err))
        self.assertIn("nfz", str(err))
        self.assertIn("lvmoiscsi", str(err))

    def test_negative_pool_size_names_the_option(self):
        c = load("[xs]\nxensm_sr_type = nfs\nxenapi_connection_pool_size = -2\n")
        err = self.assertRaises(exception.ConfigError, config.read_options, c)
        self.assertIn("xenapi_connection_pool_size in [xs]", str(err))
        self.assertIn("greater than or equal to 1", str(err))

    def test_missing_sr_type_says_what_to_choose(self):
        err = self.assertRaises(exception.ConfigError, config.read_options,
                                load("[xs]\n"))
        self.assertIn("xensm_sr_type", str(err))
        self.assertIn("solidfire", str(err))

    def test_require_names_the_first_missing_option(self):
        options = config.read_options(
            load("[xs]\nxensm_sr_type = nfs\nxensm_nfs_server = filer\n"))
        err = self.assertRaises(
            exception.ConfigError, options.require,
            "xensm_nfs_server", "xensm_nfs_serverpath", reason="an nfs SR needs it")
        self.assertIn("xensm_nfs_serverpath in [xs]", str(err))

    def test_redacted_masks_secrets_only(self):
        options = config.read_options(load(
            "[xs]\nxensm_sr_type = lvmoiscsi\nxenapi_connection_password = hunter2\n"
            "xensm_iscsi_chap_password = chapchap\nxensm_iscsi_chap_user = bob\n"))
        shown = options.redacted()
        self.assertNotIn("hunter2", repr(shown))
        self.assertNotIn("chapchap", repr(shown))
        self.assertEqual("bob", shown["xensm_iscsi_chap_user"])

    def test_safe_get_of_unknown_option_is_none(self):
        c = load("[xs]\nxensm_sr_type = nfs\n")
        self.assertIsNone(c.safe_get("no_such_option"))
