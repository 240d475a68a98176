"""The floor: the fewest XAPI requests any client needs for each verb.

A client starts a verb knowing what Cinder hands a driver -- the volume or
snapshot id and size, the ``provider_id`` (the VDI's uuid) of objects it
made earlier -- and what it learned once at setup (the SR's ref and uuid,
its type and device_config), and must end with what Cinder records: the new
VDI's uuid. Two XAPI facts set every floor below:

* object calls take an opaque ref, never a uuid, so an object known by uuid
  costs one ``VDI.get_by_uuid`` before anything can be done to it;
* ``VDI.create``/``snapshot``/``clone`` return a ref, so the uuid Cinder
  needs costs one more call (``VDI.get_uuid``).

:class:`FloorClient` makes exactly these calls through the bare ``XenAPI``
SDK, one logged-in session, no checks, no retries, no identity tags on
copies. The bench runs it against the same simulator and counts its calls
there too, so each floor below is also measured, not only declared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import XenAPI

NULL_REF = "OpaqueRef:NULL"

#: Verbs in table order.
VERBS = ("create_volume", "delete_volume", "extend_volume", "create_snapshot",
         "delete_snapshot", "create_cloned_volume", "create_volume_from_snapshot",
         "revert_to_snapshot", "get_volume_stats", "initialize_connection")

#: The floor per verb, in XAPI requests.
FLOOR: Mapping[str, int] = {
    # VDI.create (name label and tags go in the one record) + VDI.get_uuid.
    "create_volume": 2,
    # VDI.get_by_uuid + VDI.destroy.
    "delete_volume": 2,
    # VDI.get_by_uuid + VDI.resize.
    "extend_volume": 2,
    # VDI.get_by_uuid (the volume) + VDI.snapshot + VDI.get_uuid. The copy
    # keeps the volume's name and tags, which XAPI copies onto it; a client
    # that must tell the copy from its source (the driver's identity rule)
    # needs VDI.set_other_config + VDI.set_name_label on top.
    "create_snapshot": 3,
    # VDI.get_by_uuid + VDI.destroy.
    "delete_snapshot": 2,
    # VDI.get_by_uuid (the source) + VDI.clone + VDI.get_uuid (same size, so
    # no resize); tags as for create_snapshot.
    "create_cloned_volume": 3,
    # VDI.get_by_uuid (the snapshot) + VDI.clone + VDI.get_uuid.
    "create_volume_from_snapshot": 3,
    # VDI.get_by_uuid twice + a synchronous VDI.copy(snapshot, into=volume).
    # (A client that must bound the copy's time runs it as a task instead:
    # Async.VDI.copy + task polling + task.get_result + task.destroy.)
    "revert_to_snapshot": 3,
    # SR.get_record carries physical_size, physical_utilisation and
    # virtual_allocation in one answer -- but also the ref of every VDI on
    # the SR, so its size grows with the SR (see the scale figures).
    "get_volume_stats": 1,
    # Everything is known: SR uuid, type, device_config from setup, the
    # VDI's uuid from provider_id.
    "initialize_connection": 0,
}

#: The old Cinder XenAPI NFS driver (Grizzly to Juno), from
#: shared/reference/historic-xenapi-drivers-and-cinder-contract.md section 3,
#: with N = 1 PBD (its SRs were not shared). It logged in and out for every
#: verb and forgot/re-introduced one SR per volume. None: it had no such verb.
#: Cited, not measured: that driver is gone.
OLD_DRIVER: Mapping[str, int | None] = {
    "create_volume": 10,
    "delete_volume": 12,
    "extend_volume": None,               # NotImplementedError
    "create_snapshot": 19,               # a full deep copy (_copy_volume)
    "delete_snapshot": 12,               # the same code as delete_volume
    "create_cloned_volume": None,        # NotImplementedError
    "create_volume_from_snapshot": 19,   # _copy_volume again
    "revert_to_snapshot": None,          # not in Cinder then
    "get_volume_stats": 0,               # static; capacity 'unknown'
    "initialize_connection": 0,
}


class FloorClient:
    """The floor's calls through the bare XenAPI SDK on one session."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.session = XenAPI.Session(url)
        self.session.login_with_password(username, password, "1.0", "xensm-bench-floor")
        self.x: Any = self.session.xenapi

    def close(self) -> None:
        self.session.xenapi.session.logout()

    def sr_ref(self, sr_uuid: str) -> str:
        """Setup, not a verb: the SR's ref."""
        return str(self.x.SR.get_by_uuid(sr_uuid))

    def create_volume(self, sr_ref: str, size_bytes: int, name_label: str,
                      tags: Mapping[str, str]) -> str:
        ref = self.x.VDI.create({
            "SR": sr_ref, "virtual_size": str(size_bytes), "type": "user",
            "sharable": False, "read_only": False, "name_label": name_label,
            "name_description": "", "other_config": dict(tags), "sm_config": {},
            "xenstore_data": {}, "tags": []})
        return str(self.x.VDI.get_uuid(ref))

    def delete_volume(self, vdi_uuid: str) -> None:
        self.x.VDI.destroy(self.x.VDI.get_by_uuid(vdi_uuid))

    delete_snapshot = delete_volume

    def extend_volume(self, vdi_uuid: str, size_bytes: int) -> None:
        self.x.VDI.resize(self.x.VDI.get_by_uuid(vdi_uuid), str(size_bytes))

    def create_snapshot(self, volume_uuid: str) -> str:
        ref = self.x.VDI.snapshot(self.x.VDI.get_by_uuid(volume_uuid), {})
        return str(self.x.VDI.get_uuid(ref))

    def create_cloned_volume(self, source_uuid: str) -> str:
        ref = self.x.VDI.clone(self.x.VDI.get_by_uuid(source_uuid), {})
        return str(self.x.VDI.get_uuid(ref))

    create_volume_from_snapshot = create_cloned_volume

    def revert_to_snapshot(self, volume_uuid: str, snapshot_uuid: str) -> None:
        volume = self.x.VDI.get_by_uuid(volume_uuid)
        snapshot = self.x.VDI.get_by_uuid(snapshot_uuid)
        self.x.VDI.copy(snapshot, NULL_REF, NULL_REF, volume)

    def get_volume_stats(self, sr_ref: str) -> dict[str, int]:
        rec = self.x.SR.get_record(sr_ref)
        return {k: int(rec[k]) for k in ("physical_size", "physical_utilisation",
                                         "virtual_allocation")}
