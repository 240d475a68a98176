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
#: Set on a source VDI, before XAPI copies it (snapshot, clone), under
#: ``xensm-making-<kind>-<id>`` with the source's own uuid (and the time)
#: as its value.
#: XAPI copies other_config onto the copy, so every copy made while the key
#: is set carries it with a uuid that is not its own: however the answer is
#: lost, the copy can be found and named as made for that object. The
#: source carries its own uuid there, so it is never taken for a copy.
MAKING_PREFIX = "xensm-making-"
#: On a volume's VDI made by a revert (a clone of the snapshot swapped in):
#: the uuids of the VDIs it replaced, oldest first, so a recorded
#: provider_id still leads to the volume after XAPI gave it a new uuid.
REPLACES_TAG = "xensm-replaces"
#: How many replaced uuids a VDI keeps: the first (what Cinder recorded at
#: create) and the latest ones (what the inventory or update_provider_info
#: recorded since).
REPLACES_KEPT = 16
#: An SR other_config key held while a VDI is made for ``<kind>-<id>``, so
#: concurrent creates of one id (two services, a retry racing a slow first
#: attempt) take turns and the second finds the first's VDI.
CLAIM_PREFIX = "xensm-claim-"
#: On a backup's own snapshot of a volume (and the cbt_metadata VDI it
#: becomes): the backup's id (service/backup.py). Not a volume or snapshot.
BACKUP_TAG = "xensm-backup-id"
GiB = 1 << 30

#: Keys that describe one VDI's identity and are never inherited by a copy.
_OWN_KEYS = (VOLUME_TAG, SNAPSHOT_TAG, CREATED_TAG, REPLACES_TAG)


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

    @property
    def making_key(self) -> str:
        """The key a source carries while a copy is made for this identity."""
        return "%s%s-%s" % (MAKING_PREFIX, self.kind, self.id)

    @property
    def claim_key(self) -> str:
        return "%s%s-%s" % (CLAIM_PREFIX, self.kind, self.id)

    def tags(self, extra: Mapping[str, str] | None = None,
             replaces: list[str] | None = None) -> dict[str, str]:
        """The other_config a VDI of this identity carries, stamped now.

        ``extra`` (a source's other_config) keeps everything but another
        VDI's identity and the making markers a copy inherited.
        """
        tags = {k: v for k, v in (extra or {}).items()
                if k not in _OWN_KEYS and not k.startswith(MAKING_PREFIX)}
        tags[self.tag_key] = self.id
        tags[CREATED_TAG] = "%.6f" % time.time()
        if replaces:
            kept = replaces if len(replaces) <= REPLACES_KEPT else (
                replaces[:1] + replaces[1 - REPLACES_KEPT:])
            tags[REPLACES_TAG] = " ".join(kept)
        return tags

    def matches(self, other_config: Mapping[str, str]) -> bool:
        return other_config.get(self.tag_key) == self.id

    def made_for(self, vdi_uuid: str, other_config: Mapping[str, str]) -> bool:
        """Whether the VDI is a copy made for this identity whose identity
        was never set (it carries the marker with its source's uuid)."""
        marker = other_config.get(self.making_key)
        return marker is not None and marker_source(marker) != vdi_uuid

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


def is_copy_in_making(vdi_uuid: str, other_config: Mapping[str, str]) -> bool:
    """Whether the VDI is a copy whose identity was never set: it carries a
    making marker with another VDI's uuid, so it is no object of its own."""
    return any(marker_source(v) != vdi_uuid for k, v in other_config.items()
               if k.startswith(MAKING_PREFIX))


def marker(source_uuid: str) -> str:
    """A making marker's value: the source's uuid and when it was set."""
    return "%s %.6f" % (source_uuid, time.time())


def marker_source(value: str) -> str:
    return value.split(" ", 1)[0]


def marker_age(value: str) -> float:
    """Seconds since the marker (or claim) ``value`` was set; 0 if unknown."""
    try:
        return max(0.0, time.time() - float(value.rsplit(" ", 1)[-1]))
    except ValueError:
        return 0.0


def replaced(other_config: Mapping[str, str]) -> list[str]:
    """The uuids of the VDIs this one replaced (a revert's swap), oldest first."""
    return other_config.get(REPLACES_TAG, "").split()


def created(other_config: Mapping[str, str]) -> float:
    """When the VDI got its identity; 0 (oldest) when it was never stamped."""
    try:
        return float(other_config.get(CREATED_TAG, 0))
    except ValueError:
        return 0.0
