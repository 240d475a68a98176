"""The array side of the SolidFire family, as its flows act on it.

A :class:`LunTarget` is what SolidFire tasks receive (never the Backend):
the Element client, the pool's storage calls, and the helpers that find,
make and remove a volume's parts -- the array volume, its access, the
lvmoiscsi SR on its LUN and the one VDI filling it. The back end builds it
once its account and access group are known.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import re
from typing import Any

from oslo_log import log as logging

from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.arrays.solidfire import ElementClient
from xensm_driver.flows.engine import GONE
from xensm_driver.flows.sr import plug_everywhere
from xensm_driver.flows.target import Target
from xensm_driver.xapi.storage import VDI

LOG = logging.getLogger(__name__)

#: Room the LVHD SR needs on the LUN besides the VDI: its management volume,
#: journals and the VHD's metadata (bitmaps are 1/512 of the disk).
SR_OVERHEAD = 64 << 20
MiB = 1 << 20
#: Array volume attribute of a retired volume: the time it was retired.
RETIRED = "xensm-retired"
#: What the relvmoiscsi pack's SR.create answers when it resigned a LUN.
RESIGNED_TEXT = "successfully resigned"


@dataclasses.dataclass(frozen=True)
class LunTarget(Target):
    """One back end's array account and access group, and the pool."""

    client: ElementClient
    account_id: int
    vag_id: int
    svip: str
    master_ref: str
    #: Seconds a CloneVolume, and a VDI copy inside XAPI, may take.
    clone_timeout: float
    task_timeout: float

    def finish_deleted(self, sf_volume: dict[str, Any]) -> None:
        """Settle an array volume left deleted but not purged (a delete cut
        off between DeleteVolume and PurgeDeletedVolume, an earlier version,
        an operator): purged, or restored and retired while it has snapshots,
        which the array would purge with it. 2 calls, 6 with snapshots."""
        volume_id = int(sf_volume["volumeID"])
        if not self.snapshots_of(volume_id):
            with contextlib.suppress(exception.ArrayNotFound):
                self.client.call("PurgeDeletedVolume", volumeID=volume_id)
            return
        LOG.warning("Array volume %s (%s) was deleted with snapshots, which the "
                    "array would purge with it: restoring it, retired.",
                    volume_id, sf_volume["name"])
        self.client.call("RestoreDeletedVolume", volumeID=volume_id)
        self.revoke(volume_id)
        self.retire_array_volume(dict(sf_volume, status="active"))

    @staticmethod
    def array_name(volume_id: str) -> str:
        return "xensm-%s" % volume_id

    @staticmethod
    def sr_name(volume_id: str) -> str:
        return "xensm-sf-volume-%s" % volume_id

    def array_attributes(self, volume_id: str) -> dict[str, str]:
        return {identity.VOLUME_TAG: volume_id, "xensm-backend": self.backend}

    @staticmethod
    def lun_size(size_bytes: int) -> int:
        """LUN bytes for a volume: the VDI, its VHD bitmaps and the SR's own."""
        raw = size_bytes + size_bytes // 512 + SR_OVERHEAD
        return -(-raw // MiB) * MiB

    def find_array_volume(self, volume_id: str, *, include_retired: bool = False
                          ) -> dict[str, Any] | None:
        """The array volume of a Cinder volume, by name and tag, or None.

        Never by ID alone: after an out-of-band delete a lookup by ID can
        answer with the next volume (LP#1782373), and that one is not ours.
        A retired volume (deleted, kept for its snapshots) is found only
        with ``include_retired``, as are deleted ones not yet purged.
        """
        found = self.array_volumes_of(volume_id, include_retired=include_retired)
        return found[0] if found else None

    def array_volumes_of(self, volume_id: str, *, include_retired: bool = False
                         ) -> list[dict[str, Any]]:
        """Every array volume named and tagged as the Cinder volume, oldest
        first. More than one is a duplicate a call answered after its client
        gave up made (CreateVolume or CloneVolume past the API timeout). 1 call."""
        found = [v for v in self.client.find_volumes_by_name(
                     self.array_name(volume_id), include_deleted=include_retired,
                     account_id=self.account_id)
                 if (v.get("attributes") or {}).get(identity.VOLUME_TAG) == volume_id
                 and (include_retired or not self.retired(v))]
        return sorted(found, key=lambda v: int(v["volumeID"]))

    @staticmethod
    def retired(sf_volume: dict[str, Any]) -> bool:
        """Deleted by its user: retired and kept for snapshots, or deleted on
        the array (by an earlier version or out of band) awaiting its purge."""
        return (RETIRED in (sf_volume.get("attributes") or {})
                or sf_volume.get("status") == "deleted")

    def find_lun_sr(self, volume_id: str,
                    sf_volume: dict[str, Any] | None = None) -> str | None:
        """The ref of the volume's SR, or None. 1 call (2 with ``sf_volume``).

        With ``sf_volume``, an SR of that name must sit on that volume's LUN;
        one that does not is somebody else's, and is refused, not reused.
        """
        found = self.storage.find_sr(name_label=self.sr_name(volume_id))
        if not found:
            return None
        if len(found) > 1:
            raise exception.XensmError(
                "%d SRs are named %s; expected one. Forget the stray ones "
                "(xe sr-forget) after checking which sits on the volume's LUN."
                % (len(found), self.sr_name(volume_id)))
        sr = found[0]
        if sf_volume is not None:
            want = self.lun_device_config(sf_volume)["SCSIid"]
            on = {p.device_config.get("SCSIid", "") for p in self.storage.pbds(sr.ref)}
            if on and want not in on:
                raise exception.IdentityMismatch(
                    operation="reuse SR of", vdi_uuid=sr.uuid, found="LUN %s" % sorted(on),
                    expected="LUN %s of array volume %s" % (want, sf_volume["volumeID"]))
        return sr.ref

    def lun_device_config(self, sf_volume: dict[str, Any]) -> dict[str, str]:
        """lvmoiscsi device_config for the LUN (LUN 0 of the volume's target)."""
        return {"target": self.svip, "port": "3260", "targetIQN": sf_volume["iqn"],
                "SCSIid": "3" + str(sf_volume["scsiNAADeviceID"])}

    def snapshots_of(self, volume_id: int) -> list[dict[str, Any]]:
        return self.client.list_snapshots(volume_id)

    def grant(self, array_volume_id: int) -> bool:
        """Give the pool access to the volume; False if it already had it."""
        try:
            self.client.call("AddVolumesToVolumeAccessGroup",
                             volumeAccessGroupID=self.vag_id, volumes=[array_volume_id])
        except exception.ArrayError as exc:
            if exc.name != "xAlreadyInVolumeAccessGroup":
                raise
            return False
        return True

    def revoke(self, array_volume_id: int) -> None:
        try:
            self.client.call("RemoveVolumesFromVolumeAccessGroup",
                             volumeAccessGroupID=self.vag_id, volumes=[array_volume_id])
        except exception.ArrayError as exc:
            if exc.name not in ("xNotInVolumeAccessGroup", "xVolumeIDDoesNotExist"):
                raise

    def delete_array_volume(self, array_volume_id: int) -> None:
        """DeleteVolume and PurgeDeletedVolume; "already gone" is done."""
        with contextlib.suppress(exception.ArrayNotFound):
            self.client.call("DeleteVolume", volumeID=array_volume_id)
        with contextlib.suppress(exception.ArrayNotFound):
            self.client.call("PurgeDeletedVolume", volumeID=array_volume_id)

    def retire_array_volume(self, sf_volume: dict[str, Any]) -> None:
        """Delete the array volume, or retire it while it has snapshots.

        DeleteVolume would have Element purge the snapshots with the volume
        after the cleanup interval, so a volume with snapshots stays active,
        tagged :data:`RETIRED` (access already revoked by the caller), until
        :meth:`purge_if_unwanted` sees its last snapshot go. 1 call, +1 to
        retire and look again, +2 to delete.
        """
        volume_id = int(sf_volume["volumeID"])
        if self.snapshots_of(volume_id):
            attributes = dict(sf_volume.get("attributes") or {})
            attributes[RETIRED] = datetime.datetime.now(datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            self.client.call("ModifyVolume", volumeID=volume_id, attributes=attributes)
            # A snapshot deleted meanwhile saw the volume live and kept it.
            if self.snapshots_of(volume_id):
                LOG.info("Array volume %s (%s) has snapshots: retired, not deleted, "
                         "until its last snapshot goes.", volume_id, sf_volume["name"])
                return
        self.delete_array_volume(volume_id)

    def remove_strays(self, volume_id: str, keep: dict[str, Any] | None) -> None:
        """Remove the array volumes named and tagged as ``volume_id`` other
        than ``keep`` and the retired ones (kept for their snapshots): a
        duplicate a create made after its client gave up, or one a delete
        left deleted but not purged. 1 call, +2-6 per stray."""
        for other in self.array_volumes_of(volume_id, include_retired=True):
            if ((keep is not None and other["volumeID"] == keep["volumeID"])
                    or RETIRED in (other.get("attributes") or {})):
                continue
            LOG.warning("Array volume %s (%s) also carries volume %s: removing it.",
                        other["volumeID"], other["name"], volume_id)
            if other.get("status") == "deleted":
                self.finish_deleted(other)
            else:
                self.revoke(other["volumeID"])
                self.retire_array_volume(other)

    def purge_if_unwanted(self, array_volume_id: int) -> None:
        """Delete a retired volume once its last snapshot is gone. 1-4 calls."""
        volume = self.client.get_volume_by_id(array_volume_id, include_deleted=True)
        if volume is None or not self.retired(volume):
            return
        if not self.snapshots_of(array_volume_id):
            self.delete_array_volume(array_volume_id)

    def destroy_array_volume(self, array_volume_id: int) -> None:
        """Remove a volume a flow made: revoke, delete, purge."""
        self.revoke(array_volume_id)
        self.delete_array_volume(array_volume_id)

    def forget_lun_sr(self, sr_ref: str) -> None:
        """Unplug the SR everywhere and drop its records; the LUN keeps its data."""
        with contextlib.suppress(*GONE):
            self.storage.forget_sr(sr_ref)

    def introduce_lun_sr(self, volume_id: str, sf_volume: dict[str, Any]) -> str:
        """Introduce the SR the LUN holds, plug it on every host, scan it."""
        dc = self.lun_device_config(sf_volume)
        xml = self.storage.probe_sr(self.master_ref, dc, "lvmoiscsi")
        uuids = re.findall(r"<UUID>\s*([0-9a-f-]+)\s*</UUID>", xml)
        if len(uuids) != 1:
            raise exception.XensmError(
                "LUN %s of array volume %s holds %d SRs, expected one."
                % (dc["SCSIid"], sf_volume["volumeID"], len(uuids)))
        sr_ref = self.storage.introduce_sr(
            uuids[0], self.sr_name(volume_id), "lvmoiscsi", shared=True,
            device_config=dc, hosts=self.storage.hosts())
        try:
            self.storage.scan_sr(sr_ref)
        except exception.XensmError:
            self.forget_lun_sr(sr_ref)
            raise
        return sr_ref

    def reattach_lun_sr(self, ident: identity.Identity, sf_volume: dict[str, Any]) -> str:
        """Put the volume's SR back as a failed revert or teardown left it.

        Gone (forgotten, perhaps by a call whose answer was lost): probed,
        introduced, plugged and scanned again. Still there: its unplugged
        PBDs are plugged again and it is scanned; an SR record with no PBD
        at all (an introduce whose answer was lost) is forgotten and
        introduced anew. Then its VDI gets its identity back. Returns the
        SR ref.
        """
        sr_ref = self.find_lun_sr(ident.id, sf_volume)
        if sr_ref is not None and not self.storage.pbds(sr_ref):
            self.forget_lun_sr(sr_ref)
            sr_ref = None
        if sr_ref is None:
            LOG.warning("Volume %s has its array volume %s but no SR: introducing "
                        "it again.", ident.id, sf_volume["volumeID"])
            sr_ref = self.introduce_lun_sr(ident.id, sf_volume)
        else:
            plug_everywhere(self, sr_ref)
            self.storage.scan_sr(sr_ref)
        self.tag_lun_vdi(ident, sr_ref)
        return sr_ref

    def tag_lun_vdi(self, ident: identity.Identity, sr_ref: str | None = None) -> VDI:
        """Name and tag the one user VDI on the volume's SR (after an introduce).

        2 calls when it already carries its identity, 4 when it must be given
        it (tags live in XAPI's database, not on the LUN); 1 more without
        ``sr_ref``.
        """
        sr_ref = sr_ref or self.find_lun_sr(ident.id)
        vdis = [v for v in self.storage.sr_vdis(sr_ref) if v.managed
                and not v.is_a_snapshot] if sr_ref else []
        if len(vdis) != 1:
            raise exception.LunSrContent(volume_id=ident.id, count=len(vdis))
        vdi = vdis[0]
        if vdi.name_label != ident.name_label or not ident.matches(vdi.other_config):
            tags = ident.tags(vdi.other_config)
            self.storage.set_vdi_identity(vdi.ref, ident.name_label, tags)
            vdi = dataclasses.replace(vdi, name_label=ident.name_label, other_config=tags)
        return vdi
