"""The option set: complete, documented, bounded, and its sample current."""

import io
import os

import testtools
from oslo_config import cfg
from oslo_config import generator

from xensm_driver import opts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, "etc", "xensm-driver", "xensm.conf.sample")
GENERATOR_CONF = os.path.join(ROOT, "etc", "xensm-driver", "xensm-config-generator.conf")


def generate_sample() -> str:
    """What `tox -e genconfig` writes, from the real generator."""
    conf = cfg.ConfigOpts()
    generator.register_cli_opts(conf)
    conf(["--config-file", GENERATOR_CONF])
    out = io.StringIO()
    generator.generate(conf, output_file=out)
    return out.getvalue()


class TestOptions(testtools.TestCase):

    def test_every_option_has_real_help(self):
        for opt in opts.ALL_OPTS:
            self.assertGreater(len(opt.help or ""), 20, opt.dest)

    def test_option_names_are_unique(self):
        names = [o.dest for o in opts.ALL_OPTS]
        self.assertEqual(len(names), len(set(names)))

    def test_passwords_are_secret(self):
        for opt in opts.ALL_OPTS:
            if "password" in opt.dest:
                self.assertTrue(opt.secret, opt.dest)
        self.assertIn("xenapi_connection_password", opts.SECRET_OPTS)

    def test_sr_type_choices_are_the_supported_types(self):
        (sr_type,) = [o for o in opts.ALL_OPTS if o.dest == "xensm_sr_type"]
        self.assertEqual(set(opts.SR_TYPES),
                         {c for c, _ in sr_type.type.choices.items()})

    def test_counts_and_timeouts_are_bounded(self):
        for opt in opts.ALL_OPTS:
            if isinstance(opt, (cfg.IntOpt, cfg.FloatOpt)):
                self.assertIsNotNone(opt.type.min, opt.dest)
                self.assertIsNotNone(opt.type.max, opt.dest)

    def test_list_opts_is_the_generator_entry_point(self):
        groups = dict(opts.list_opts())
        self.assertEqual(list(opts.ALL_OPTS), groups[opts.SAMPLE_GROUP])

    def test_committed_sample_is_current(self):
        with open(SAMPLE) as f:
            committed = f.read()
        self.assertEqual(
            generate_sample(), committed,
            "etc/xensm-driver/xensm.conf.sample is stale: run tox -e genconfig")
