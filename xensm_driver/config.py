"""Reading a back end's options, inside Cinder or without it.

Cinder hands a driver ``configuration``: its ``cinder.volume.configuration.
Configuration`` for the back-end section, with ``append_config_values``,
``safe_get`` and attribute access that falls back to ``[backend_defaults]``.
:class:`Configuration` here is the same contract for the ``xensm`` command and
the tests, so the driver never knows which one it runs under.

:func:`read_options` turns that object into a typed, validated snapshot once,
in ``do_setup``: every value oslo.config rejects (a choice not offered, a
number out of bounds) becomes a :class:`~xensm_driver.exception.ConfigError`
naming the option and the section, before any volume verb runs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import Protocol

from oslo_config import cfg

from xensm_driver import exception
from xensm_driver import opts as xensm_opts

SHARED_GROUP = "backend_defaults"

#: Cinder's own definition of ``volume_backend_name``, copied exactly: oslo
#: refuses to register the same name twice with a different definition, and
#: under Cinder both the manager and the driver register it.
volume_backend_name_opt = cfg.StrOpt(
    "volume_backend_name",
    help="The backend name for a given driver implementation")


class ConfigurationLike(Protocol):
    """What the driver needs of ``configuration`` (Cinder's or ours)."""

    @property
    def config_group(self) -> str | None: ...

    def append_config_values(self, volume_opts: list[cfg.Opt]) -> None: ...

    def safe_get(self, value: str) -> Any: ...


class Configuration:
    """One back-end section of an ini file, Cinder-style.

    Options are registered in the section and in ``[backend_defaults]``; a
    value set in the section wins, otherwise the shared default applies.
    """

    def __init__(self, volume_opts: Iterable[cfg.Opt] = (),
                 config_group: str | None = None,
                 conf: cfg.ConfigOpts | None = None) -> None:
        self.conf = conf if conf is not None else cfg.CONF
        self.config_group = config_group or SHARED_GROUP
        self.append_config_values(list(volume_opts))

    def append_config_values(self, volume_opts: list[cfg.Opt]) -> None:
        self.conf.register_opts(volume_opts, group=self.config_group)
        self.conf.register_opts(volume_opts, group=SHARED_GROUP)

    def safe_get(self, value: str) -> Any:
        try:
            return getattr(self, value)
        except cfg.NoSuchOptError:
            return None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("conf", "config_group"):
            raise AttributeError(name)
        group = self.config_group
        if group != SHARED_GROUP:
            location = self.conf.get_location(name, group)
            if location is None or location.location == cfg.Locations.opt_default:
                group = SHARED_GROUP
        return getattr(getattr(self.conf, group), name)


@dataclasses.dataclass(frozen=True)
class Options:
    """A validated snapshot of one back end's options.

    ``values`` maps every xensm option name to its value; ``backend_name`` is
    ``volume_backend_name`` or the section name; ``section`` names the ini
    section for messages.
    """

    section: str
    backend_name: str
    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def require(self, *names: str, reason: str) -> None:
        """Fail with a ConfigError naming the first unset option of ``names``."""
        for name in names:
            if self.values.get(name) in (None, ""):
                raise exception.ConfigError(
                    option="%s in [%s]" % (name, self.section),
                    reason="not set; %s" % reason)

    def redacted(self) -> dict[str, Any]:
        """The values with every secret masked, for logs and ``xensm check``."""
        return {k: ("***" if k in xensm_opts.SECRET_OPTS and v else v)
                for k, v in self.values.items()}


def register(configuration: ConfigurationLike) -> None:
    """Register every xensm option (and volume_backend_name) on it."""
    configuration.append_config_values([volume_backend_name_opt])
    configuration.append_config_values(list(xensm_opts.ALL_OPTS))


def read_options(configuration: ConfigurationLike) -> Options:
    """Read and validate every option once; raise ConfigError naming a bad one."""
    section = configuration.config_group or SHARED_GROUP
    values: dict[str, Any] = {}
    for opt in xensm_opts.ALL_OPTS:
        try:
            values[opt.dest] = configuration.safe_get(opt.dest)
        except (ValueError, cfg.ConfigFileValueError) as exc:
            # oslo.config's text says what it expected and what it found;
            # for a secret it must not echo the value, so say less.
            text = str(exc)
            reason = ("its value is not valid" if opt.secret
                      else text.rsplit("is not valid: ", 1)[-1])
            if isinstance(opt, cfg.URIOpt) and not opt.secret:
                # oslo's text is a tuple with a URIReference repr in it.
                reason = "not a URL; give its scheme and host, e.g. https://host.example"
            raise exception.ConfigError(
                option="%s in [%s]%s" % (opt.dest, section, _source(text)),
                reason=reason) from None
    if not values.get("xensm_sr_type"):
        raise exception.ConfigError(
            option="xensm_sr_type in [%s]" % section,
            reason="not set; choose one of %s" % ", ".join(xensm_opts.SR_TYPES))
    backend_name = configuration.safe_get("volume_backend_name") or section
    return Options(section=section, backend_name=backend_name, values=values)



def _source(oslo_message: str) -> str:
    """`` (from FILE)`` when oslo's message says which file set the value."""
    match = re.search(r"detail='([^']+)'", oslo_message)
    return " (from %s)" % match.group(1) if match else ""
