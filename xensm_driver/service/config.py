"""Reading the ini file for the standalone service: back-end sections and ``[xensm]``.

The same file a Cinder back-end section lives in works here. A back end is a
section that sets ``xensm_sr_type`` or ``volume_driver`` (or, when
``[DEFAULT] enabled_backends`` is set, exactly the sections it lists).
``[xensm]`` holds the service's own options.
"""

from __future__ import annotations

import configparser
import difflib

from oslo_config import cfg

from xensm_driver import config
from xensm_driver import exception
from xensm_driver import opts as xensm_opts

SERVICE_GROUP = "xensm"

service_opts = [
    cfg.StrOpt(
        "db_url",
        secret=True,
        help="SQLAlchemy URL of the inventory database, e.g. "
             "postgresql+psycopg://xensm:...@db.example/xensm. Default: SQLite at "
             "$XDG_STATE_HOME/xensm/inventory.sqlite (~/.local/state/xensm/).",
    ),
]

enabled_backends_opt = cfg.ListOpt(
    "enabled_backends",
    help="Back-end sections to use (Cinder's option). Default: every section "
         "that sets xensm_sr_type or volume_driver.")

#: Sections that are never a back end.
NOT_BACKENDS = frozenset({"DEFAULT", config.SHARED_GROUP, SERVICE_GROUP})


def load(config_files: list[str]) -> cfg.ConfigOpts:
    """Parse the files into a fresh ConfigOpts; ConfigError on a bad file."""
    if not config_files:
        raise exception.ConfigError(
            option="--config-file",
            reason="no configuration file given or found (looked for xensm.conf in "
                   "~/.xensm, ~, /etc/xensm and /etc)")
    conf = cfg.ConfigOpts()
    conf.register_opts(service_opts, group=SERVICE_GROUP)
    conf.register_opt(enabled_backends_opt)
    try:
        conf(args=[], project="xensm", default_config_files=list(config_files),
             use_env=False)
    except cfg.ConfigFilesNotFoundError as exc:
        raise exception.ConfigError(
            option="--config-file",
            reason="cannot read %s" % ", ".join(exc.config_files)) from None
    except cfg.ConfigFileParseError as exc:
        raise exception.ConfigError(option="--config-file",
                                    reason="%s: %s" % (exc.config_file, exc.msg)) from None
    return conf


def default_files() -> list[str]:
    """``xensm.conf`` where oslo.config looks for project ``xensm``."""
    return list(cfg.find_config_files(project="xensm", prog="xensm"))


def backend_sections(conf: cfg.ConfigOpts) -> list[str]:
    """The back-end sections: ``enabled_backends`` in its order, else by name."""
    enabled = conf.enabled_backends
    if enabled:
        sections = set(conf.list_all_sections())
        missing = [name for name in enabled if name not in sections]
        if missing:
            raise exception.ConfigError(
                option="enabled_backends in [DEFAULT]",
                reason="no section named %s" % ", ".join(missing))
        return list(enabled)
    found = []
    for section in sorted(conf.list_all_sections()):
        if section in NOT_BACKENDS:
            continue
        configuration = config.Configuration([], section, conf)
        config.register(configuration)
        conf.register_opt(cfg.StrOpt("volume_driver"), group=section)
        if any(_set_in(conf, name, section) for name in ("xensm_sr_type", "volume_driver")):
            found.append(section)
    return found


def db_url(conf: cfg.ConfigOpts) -> str | None:
    url: str | None = conf[SERVICE_GROUP].db_url
    return url


def unknown_options(config_files: list[str], section: str) -> list[str]:
    """Warnings for ``xensm_*``/``xenapi_*`` keys in ``section`` that are no option.

    oslo.config ignores keys it does not know, so a misspelt option silently
    keeps its default. Only the driver's prefixes are checked: the same
    section in cinder.conf holds Cinder's own options too.
    """
    known = {opt.dest for opt in xensm_opts.ALL_OPTS}
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        parser.read(config_files)
    except configparser.Error:
        return []               # oslo.config read the files; it reports their errors
    if not parser.has_section(section):
        return []
    warnings = []
    for key in parser.options(section):
        if key.startswith(("xensm_", "xenapi_")) and key not in known \
                and key not in parser.defaults():
            close = difflib.get_close_matches(key, known, n=1)
            warnings.append("[%s] sets %s, which is no option; it has no effect%s" % (
                section, key, " (did you mean %s?)" % close[0] if close else ""))
    return warnings


def _set_in(conf: cfg.ConfigOpts, name: str, section: str) -> bool:
    location = conf.get_location(name, section)
    return location is not None and location.location != cfg.Locations.opt_default
