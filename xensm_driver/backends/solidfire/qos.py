"""SolidFire QoS: minIOPS, maxIOPS and burstIOPS of one array volume.

What a volume asks for, as Cinder's SolidFire driver reads it
(``cinder/volume/drivers/solidfire.py``):

- the keys ``minIOPS``, ``maxIOPS``, ``burstIOPS`` (``sf_qos_keys``) in the
  volume type's QoS specs, or in its extra specs when no QoS specs are
  associated (``_set_qos_by_volume_type``: the association wins). A scope
  prefix is dropped (``qos:maxIOPS`` reads as ``maxIOPS``);
- per-GB scaling (``sf_scale_qos_keys``): with ``scaledIOPS`` set, each of
  ``scaleMin`` / ``scaleMax`` / ``scaleBurst`` adds ``value * (size_gb - 1)``
  to its key, so the base value is for a 1 GiB volume;
- a named preset ``sf-qos = slow|medium|fast|performant|off`` in the
  volume's metadata (``sf_qos_dict``, ``_set_qos_presets``), honoured only
  when ``xensm_sf_allow_tenant_qos`` is set (Cinder: ``sf_allow_tenant_qos``);
  keys from the type override the preset's;
- from ``xensm volume create --qos`` / ``xensm volume set --qos``: the same
  keys, or the short ``min``/``max``/``burst``, or a preset name.

Keys not asked for come from the back end's defaults
(``xensm_sf_qos_{min,max,burst}_iops``), then Element's own defaults; a
burst left unset never stays below the max it must cover.

Validation happens here, before any call, against the cluster's limits
(``GetLimits``: ``volumeMinIOPSMin`` ...), naming what is wrong. Unlike
Cinder's driver, explicit values outside the limits are refused rather than
silently capped; only values *scaled* by size are capped at the limits (a
large volume with a per-GB rate would otherwise be refused), as Cinder does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from oslo_log import log as logging

from xensm_driver import exception

LOG = logging.getLogger(__name__)

KEYS = ("minIOPS", "maxIOPS", "burstIOPS")
SCALE_KEYS = ("scaledIOPS", "scaleMin", "scaleMax", "scaleBurst")
_SCALES = {"scaleMin": "minIOPS", "scaleMax": "maxIOPS", "scaleBurst": "burstIOPS"}
#: Short names the CLI accepts.
ALIASES = {"min": "minIOPS", "max": "maxIOPS", "burst": "burstIOPS"}
#: The metadata key naming a preset (Cinder's ``sf-qos``).
PRESET_KEY = "sf-qos"
#: Cinder's ``SolidFireDriver.sf_qos_dict``; ``off`` means "no QoS asked".
PRESETS: Mapping[str, Mapping[str, int] | None] = {
    "slow": {"minIOPS": 100, "maxIOPS": 200, "burstIOPS": 200},
    "medium": {"minIOPS": 200, "maxIOPS": 400, "burstIOPS": 400},
    "fast": {"minIOPS": 500, "maxIOPS": 1000, "burstIOPS": 1000},
    "performant": {"minIOPS": 2000, "maxIOPS": 4000, "burstIOPS": 4000},
    "off": None,
}
#: What Element gives a volume created without ``qos`` (Element API guide,
#: CreateVolume / "QoS"; the simulator's QOS_DEFAULT).
ELEMENT_DEFAULT: Mapping[str, int] = {"minIOPS": 50, "maxIOPS": 15000, "burstIOPS": 15000}


@dataclasses.dataclass(frozen=True)
class Limits:
    """The cluster's IOPS limits (GetLimits). Defaults: Element 12's."""

    min_low: int = 50
    min_high: int = 15000
    max_low: int = 100
    max_high: int = 200000
    burst_low: int = 100
    burst_high: int = 200000

    @classmethod
    def from_get_limits(cls, limits: Mapping[str, Any]) -> Limits:
        """From a GetLimits answer; a key missing keeps Element 12's value."""
        d = cls()

        def get(key: str, default: int) -> int:
            value = limits.get(key)
            return int(value) if isinstance(value, int) else default

        return cls(get("volumeMinIOPSMin", d.min_low), get("volumeMinIOPSMax", d.min_high),
                   get("volumeMaxIOPSMin", d.max_low), get("volumeMaxIOPSMax", d.max_high),
                   get("volumeBurstIOPSMin", d.burst_low),
                   get("volumeBurstIOPSMax", d.burst_high))

    def range(self, key: str) -> tuple[int, int]:
        return {"minIOPS": (self.min_low, self.min_high),
                "maxIOPS": (self.max_low, self.max_high),
                "burstIOPS": (self.burst_low, self.burst_high)}[key]


def _int(key: str, value: Any, where: str) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise exception.InvalidInput(
            reason="QoS %s = %r (%s) is not a whole number of IOPS" % (key, value, where)
        ) from None
    if number < 0:
        raise exception.InvalidInput(
            reason="QoS %s = %d (%s) is below 0" % (key, number, where))
    return number


def parse_cli(text: str) -> dict[str, str]:
    """``min=100,max=1000,burst=2000`` (or the long keys, or a preset name)
    as a request mapping; InvalidInput naming the piece that is wrong."""
    text = (text or "").strip()
    if not text:
        raise exception.InvalidInput(reason="--qos needs min=..,max=..,burst=.. or a preset "
                                            "(%s)" % ", ".join(sorted(PRESETS)))
    if "=" not in text:
        if text not in PRESETS:
            raise exception.InvalidInput(
                reason="--qos %r is no preset; presets are %s, or give "
                       "min=..,max=..,burst=.." % (text, ", ".join(sorted(PRESETS))))
        # The operator names it: no tenant option gates it. "off": nothing
        # asked, so the back end's defaults apply.
        return {k: str(v) for k, v in (PRESETS[text] or {}).items()}
    out: dict[str, str] = {}
    for piece in text.split(","):
        key, sep, value = piece.partition("=")
        key = key.strip()
        key = ALIASES.get(key, key)
        if not sep or key not in KEYS + (PRESET_KEY,):
            raise exception.InvalidInput(
                reason="--qos piece %r: expected min=, max= or burst= (or %s)"
                       % (piece, ", ".join(KEYS)))
        out[key] = value.strip()
    return out


@dataclasses.dataclass(frozen=True)
class Policy:
    """How a back end turns what a volume asks for into array QoS."""

    limits: Limits = Limits()
    #: The back end's defaults (options), per key; a key absent: Element's.
    defaults: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Honour the ``sf-qos`` preset (Cinder's ``sf_allow_tenant_qos``).
    allow_presets: bool = False

    def asked(self, request: Mapping[str, Any] | None, size_gb: int
              ) -> dict[str, int]:
        """The keys the request sets, scaled for ``size_gb``; {} if none.

        InvalidInput for a value that is not a number or a preset unknown.
        """
        request = request or {}
        qos: dict[str, int] = {}
        preset = request.get(PRESET_KEY)
        if preset is not None:
            if preset not in PRESETS:
                raise exception.InvalidInput(
                    reason="QoS preset %r is unknown; presets are %s"
                           % (preset, ", ".join(sorted(PRESETS))))
            if self.allow_presets:
                qos.update(PRESETS[preset] or {})
        scale: dict[str, Any] = {}
        for raw_key, value in request.items():
            key = raw_key.split(":", 1)[1] if ":" in raw_key else raw_key
            if key in KEYS:
                qos[key] = _int(key, value, "asked as %s" % raw_key)
            elif key in SCALE_KEYS:
                scale[key] = value
        if "scaledIOPS" in scale and size_gb > 1:
            for scale_key, key in _SCALES.items():
                if scale_key not in scale:
                    continue
                if key not in qos:
                    raise exception.InvalidInput(
                        reason="QoS %s scales %s, which is not set" % (scale_key, key))
                per_gb = _int(scale_key, scale[scale_key], "per GiB above the first")
                low, high = self.limits.range(key)
                scaled = qos[key] + per_gb * (size_gb - 1)
                if scaled > high:
                    LOG.debug("QoS %s scaled to %d for %d GiB is capped at %d.",
                              key, scaled, size_gb, high)
                    scaled = high
                qos[key] = scaled
        return qos

    def resolve(self, request: Mapping[str, Any] | None, size_gb: int, *,
                base: Mapping[str, Any] | None = None, what: str = "the volume"
                ) -> dict[str, int]:
        """The full, validated ``{minIOPS, maxIOPS, burstIOPS}`` for a request.

        Keys not asked for come from ``base`` (a volume's QoS now, when it
        is changed in place), else the back end's defaults, else Element's.
        """
        asked = self.asked(request, size_gb)
        qos: dict[str, int] = {}
        for key in KEYS:
            if key in asked:
                qos[key] = asked[key]
            elif base and base.get(key) is not None:
                qos[key] = int(base[key])
            elif key in self.defaults:
                qos[key] = int(self.defaults[key])
            else:
                qos[key] = ELEMENT_DEFAULT[key]
        if "burstIOPS" not in asked and qos["burstIOPS"] < qos["maxIOPS"]:
            qos["burstIOPS"] = qos["maxIOPS"]
        self.validate(qos, what=what, asked=asked)
        return qos

    def validate(self, qos: Mapping[str, int], *, what: str = "the volume",
                 asked: Mapping[str, int] | None = None) -> None:
        """InvalidInput naming each value outside the cluster's limits, or
        an order broken (min <= max <= burst)."""
        asked = asked if asked is not None else qos
        wrong = []
        for key in KEYS:
            low, high = self.limits.range(key)
            if not low <= qos[key] <= high:
                origin = "asked" if key in asked else "default"
                wrong.append("%s %d (%s) is outside the cluster's %d..%d"
                             % (key, qos[key], origin, low, high))
        if qos["minIOPS"] > qos["maxIOPS"]:
            wrong.append("minIOPS %d is above maxIOPS %d" % (qos["minIOPS"], qos["maxIOPS"]))
        if qos["maxIOPS"] > qos["burstIOPS"]:
            wrong.append("burstIOPS %d is below maxIOPS %d"
                         % (qos["burstIOPS"], qos["maxIOPS"]))
        if wrong:
            raise exception.InvalidInput(reason="QoS for %s: %s" % (what, "; ".join(wrong)))


def of_volume(sf_volume: Mapping[str, Any]) -> dict[str, int]:
    """The three IOPS figures of an array volume (its ``qos``)."""
    qos = sf_volume.get("qos") or {}
    return {k: int(qos[k]) for k in KEYS if qos.get(k) is not None}
