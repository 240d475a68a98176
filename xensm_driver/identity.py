"""How a volume or snapshot is recognised on an SR: names, tags, provider ids.

DESIGN.md, "Identity and idempotency": a volume's VDI is named
``volume-<id>`` and tagged ``other_config["xensm-volume-id"] = <id>``; a
snapshot's VDI ``snapshot-<id>`` and ``xensm-snapshot-id``. The model update
records ``provider_id = <vdi uuid>`` and ``provider_location = <sr uuid>/<vdi
uuid>``. The name makes the lookup one indexed query; the tag proves the VDI
found is ours before anything destructive happens to it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

VOLUME_TAG = "xensm-volume-id"
#: When the VDI got its identity (seconds since the epoch, as text): of two
#: VDIs claiming one id, the older is the real one.
CREATED_TAG = "xensm-created"
SNAPSHOT_TAG = "xensm-snapshot-id"
GROUP_SNAPSHOT_TAG = "xensm-group-snapshot-id"
GiB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Identity:
    """What a VDI must be called and carry to be a given volume or snapshot."""

    kind: str           # "volume" or "snapshot"
    id: str

    @property
    def name_label(self) -> str:
        return "%s-%s" % (self.kind, self.id)

    @property
    def tag_key(self) -> str:
        return VOLUME_TAG if self.kind == "volume" else SNAPSHOT_TAG

    def tags(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The other_config a VDI of this identity carries, stamped now."""
        tags = {k: v for k, v in (extra or {}).items()
                if k not in (VOLUME_TAG, SNAPSHOT_TAG, CREATED_TAG)}
        tags[self.tag_key] = self.id
        tags[CREATED_TAG] = "%.6f" % time.time()
        return tags

    def matches(self, other_config: Mapping[str, str]) -> bool:
        return other_config.get(self.tag_key) == self.id

    def describe(self, other_config: Mapping[str, str]) -> str:
        """What the tags of a VDI say it is, for mismatch messages."""
        for key in (VOLUME_TAG, SNAPSHOT_TAG):
            if key in other_config:
                return "%s=%s" % (key, other_config[key])
        return "untagged"


def volume(volume_id: str) -> Identity:
    return Identity("volume", str(volume_id))


def snapshot(snapshot_id: str) -> Identity:
    return Identity("snapshot", str(snapshot_id))


def provider_location(sr_uuid: str, vdi_uuid: str) -> str:
    return "%s/%s" % (sr_uuid, vdi_uuid)


def parse_provider_location(location: str | None) -> tuple[str, str] | None:
    """``(sr_uuid, vdi_uuid)`` from ``<sr uuid>/<vdi uuid>``, else None."""
    if not location or location.count("/") != 1:
        return None
    sr_uuid, vdi_uuid = location.split("/")
    return (sr_uuid, vdi_uuid) if sr_uuid and vdi_uuid else None


def model_update(sr_uuid: str, vdi_uuid: str) -> dict[str, str]:
    """The Cinder model update that records where a VDI lives."""
    return {"provider_id": vdi_uuid,
            "provider_location": provider_location(sr_uuid, vdi_uuid)}


def created(other_config: Mapping[str, str]) -> float:
    """When the VDI got its identity; 0 (oldest) when it was never stamped."""
    try:
        return float(other_config.get(CREATED_TAG, 0))
    except ValueError:
        return 0.0
