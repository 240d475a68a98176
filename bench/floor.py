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


class SameCallsClient(FloorClient):
    """The bare SDK making exactly the driver's calls for the mixed cycle.

    The same XAPI methods, as many of each, with the same filters and on the
    same objects as the driver's nfs flows make them (bench/calls.py counts
    the driver's; tests/functional/test_bench.py holds the two equal), but
    no engine, no checks, no retries, one session per caller: throughput
    against this floor is the driver's overhead apart from its call count.
    """

    @staticmethod
    def _named(sr_ref: str, *names: str, uuid: str = "") -> str:
        terms = ['(field "name__label"="%s" and field "SR"="%s")' % (n, sr_ref)
                 for n in names]
        if uuid:
            terms.append('field "uuid"="%s"' % uuid)
        return " or ".join(terms)

    def _find(self, sr_ref: str, *names: str, uuid: str = "") -> dict[str, Any]:
        return dict(self.x.VDI.get_all_records_where(self._named(sr_ref, *names, uuid=uuid)))

    def create_volume(self, sr_ref: str, size_bytes: int, name_label: str,
                      tags: Mapping[str, str]) -> str:
        # claim, create, identify, release.
        key = "xensm-claim-" + name_label
        self.x.SR.add_to_other_config(sr_ref, key, "floor")
        ref = self.x.VDI.create({
            "SR": sr_ref, "virtual_size": str(size_bytes), "type": "user",
            "sharable": False, "read_only": False, "name_label": name_label,
            "name_description": "", "other_config": dict(tags), "sm_config": {},
            "xenstore_data": {}, "tags": []})
        uuid = self._find(sr_ref, name_label)[ref]["uuid"]
        self.x.SR.remove_from_other_config(sr_ref, key)
        return str(uuid)

    def copy(self, sr_ref: str, source_uuid: str, source_name: str, name_label: str,
             tags: Mapping[str, str], verb: str) -> str:
        # find the source, (its chain), mark it, copy, name, tag, unmark, identify.
        source_ref, source = next(iter(self._find(sr_ref, source_name,
                                                  uuid=source_uuid).items()))
        if source.get("sm_config", {}).get("vhd-parent"):
            self.x.VDI.get_all_records_where(
                'field "managed"="false" and field "SR"="%s"' % sr_ref)
        key = "xensm-making-" + name_label
        self.x.VDI.add_to_other_config(source_ref, key, source_uuid)
        ref = getattr(self.x.VDI, verb)(source_ref, {})
        self.x.VDI.set_name_label(ref, name_label)
        self.x.VDI.set_other_config(ref, dict(tags))
        self.x.VDI.remove_from_other_config(source_ref, key)
        return str(self._find(sr_ref, name_label)[ref]["uuid"])

    def delete(self, sr_ref: str, vdi_uuid: str, name_label: str) -> None:
        # look it (and what was made for it) up, destroy.
        self.x.VDI.destroy(next(iter(self._find(sr_ref, name_label, uuid=vdi_uuid))))
