"""The driver under real Cinder 29, driven through python-cinderclient.

One Cinder stack per test process (see ``stack.py``): cinder-api over HTTP,
the scheduler and one cinder-volume service per back end (``xs-nfs`` on an
nfs SR, ``xs-iscsi`` on an lvmoiscsi SR, ``xs-sf`` on a SolidFire cluster,
one LUN and SR per volume), all talking to the simulators. Every test acts
as a user would -- volume types, volumes, snapshots, groups, manage,
transfer, attach info -- and checks both what Cinder reports and what is on
the simulated storage, read straight from the simulators (not through the
driver): VDI names, tags and sizes, array volumes and snapshots, content
through XAPI's data path, and nothing left over after the deletes.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import Any

from cinderclient import exceptions as cinder_exc
from oslotest import base as oslotest_base
from testtools import content

from tests.cinder import stack as stack_mod
from tests.functional import base as functional_base
from xensm_driver.xapi import transfer
from xensm_driver.xapi.session import SessionPool

GiB = 1 << 30
VOLUME_TAG = "xensm-volume-id"          # DESIGN.md "Identity and idempotency"
SNAPSHOT_TAG = "xensm-snapshot-id"
A = functional_base.pattern("A", 1 << 20)
B = functional_base.pattern("B", 1 << 20)
PATTERNS = {"A": A, "B": B}
CONNECTOR = {"host": "compute-1", "initiator": "iqn.2026-01.org.example:compute-1",
             "ip": "192.0.2.10", "platform": "x86_64", "os_type": "linux",
             "multipath": False}

STACK: stack_mod.CinderStack | None = None


def setUpModule() -> None:
    global STACK
    STACK = stack_mod.get()


def tearDownModule() -> None:
    stack_mod.release()


class CinderTestCase(oslotest_base.BaseTestCase):
    """A test against the process's Cinder stack, as one user (an admin, noauth)."""

    _client: Any = None
    _types: dict[str, Any] = {}

    def setUp(self) -> None:
        super().setUp()
        assert STACK is not None
        self.stack = STACK
        self.sim = STACK.sim
        self.control = STACK.sim.control
        if CinderTestCase._client is None:
            CinderTestCase._client = STACK.client()
        self.client = CinderTestCase._client
        log_from = STACK.log_size()
        self.addOnException(lambda exc_info: self.addDetail(
            "cinder.log", content.text_content(STACK.log_tail(log_from)[-60000:])))
        self.xapi = SessionPool(self.sim.url, "root", functional_base.PASSWORD, backoff=0.01)
        self.addCleanup(self.xapi.close)

    # -- Cinder objects ---------------------------------------------------------

    def volume_type(self, section: str) -> Any:
        """A volume type that sends volumes to back end ``section``."""
        if section not in CinderTestCase._types:
            vtype = self.client.volume_types.create(section)
            vtype.set_keys({"volume_backend_name": section})
            CinderTestCase._types[section] = vtype
        return CinderTestCase._types[section]

    def create_volume(self, size: int, *, section: str | None = None,
                      status: str = "available", **kwargs: Any) -> Any:
        if section is not None:
            kwargs["volume_type"] = self.volume_type(section).id
        vol = self.client.volumes.create(size, **kwargs)
        self.addCleanup(self.delete_if_present, self.client.volumes, vol.id)
        return self.wait(self.client.volumes, vol.id, status)

    def create_snapshot(self, volume_id: str, **kwargs: Any) -> Any:
        snap = self.client.volume_snapshots.create(volume_id, **kwargs)
        self.addCleanup(self.delete_if_present, self.client.volume_snapshots, snap.id)
        return self.wait(self.client.volume_snapshots, snap.id, "available")

    def wait(self, manager: Any, obj_id: str, status: str, timeout: float = 60) -> Any:
        """The object once its status is ``status``; fail at once on an error status."""
        def probe() -> Any:
            obj = manager.get(obj_id)
            if obj.status == status:
                return obj
            if obj.status.startswith("error") and not status.startswith("error"):
                raise AssertionError("%s %s is %s, not %s: %s" % (
                    type(obj).__name__, obj_id, obj.status, status, self.messages(obj_id)))
            return None
        return stack_mod.wait_for("%s to be %s" % (obj_id, status), probe, timeout)

    def wait_gone(self, manager: Any, obj_id: str, timeout: float = 60) -> None:
        def probe() -> bool:
            try:
                obj = manager.get(obj_id)
            except cinder_exc.NotFound:
                return True
            if obj.status.startswith("error"):
                raise AssertionError("%s %s is %s instead of deleted: %s" % (
                    type(obj).__name__, obj_id, obj.status, self.messages(obj_id)))
            return False
        stack_mod.wait_for("%s to be deleted" % obj_id, probe, timeout)

    def delete(self, manager: Any, obj_id: str) -> None:
        manager.delete(obj_id)
        self.wait_gone(manager, obj_id)

    def delete_if_present(self, manager: Any, obj_id: str) -> None:
        try:
            manager.delete(obj_id)
        except cinder_exc.NotFound:
            return
        except cinder_exc.ClientException:
            return      # refused (in a group, has snapshots): a later cleanup deletes it
        self.wait_gone(manager, obj_id)

    def messages(self, resource_id: str) -> list[str]:
        """Cinder's user messages about a resource: why it went to error."""
        return [m.user_message for m in self.client.messages.list()
                if m.resource_uuid == resource_id]

    def db_volume(self, volume_id: str) -> Any:
        """Cinder's own record (provider_location is not in the API view)."""
        from cinder import context
        from cinder import objects
        return objects.Volume.get_by_id(context.get_admin_context(), volume_id)

    def db_snapshot(self, snapshot_id: str) -> Any:
        from cinder import context
        from cinder import objects
        return objects.Snapshot.get_by_id(context.get_admin_context(), snapshot_id)

    def pools(self) -> dict[str, dict[str, Any]]:
        """The scheduler's pools, by name, with their capabilities."""
        return {p.name: p.to_dict()["capabilities"]
                for p in self.client.pools.list(detailed=True)}

    # -- the simulated SR, read from the simulator -----------------------------

    def sr_of(self, section: str) -> dict[str, Any]:
        """The SR record of back end ``section`` (named after its pool)."""
        pool_name = self.pool_of(section)
        srs = [dict(rec, ref=ref) for ref, rec in self.control.dump()["SR"].items()
               if rec["name_label"] == pool_name]
        self.assertEqual(1, len(srs), "SRs named %r" % pool_name)
        return srs[0]

    def pool_of(self, section: str) -> str:
        names = [name for name in self.pools() if name.startswith("ci@%s#" % section)]
        self.assertEqual(1, len(names), names)
        return names[0].split("#", 1)[1]

    def sr_vdis(self, section: str, gc: bool = False) -> dict[str, dict[str, Any]]:
        """Every VDI on the back end's SR, by uuid."""
        if gc:
            self.control.run_gc()
        sr_ref = self.sr_of(section)["ref"]
        return {rec["uuid"]: rec for rec in self.control.dump()["VDI"].values()
                if rec["SR"] == sr_ref}

    def vdi(self, section: str, vdi_uuid: str) -> dict[str, Any]:
        vdis = self.sr_vdis(section)
        self.assertIn(vdi_uuid, vdis, "no VDI %s on the SR of %s" % (vdi_uuid, section))
        return vdis[vdi_uuid]

    def assert_volume_on_sr(self, section: str, vol: Any, size_gb: int) -> dict[str, Any]:
        """Cinder's record and the SR agree on the volume's VDI; returns the VDI."""
        record = self.db_volume(vol.id)
        sr_uuid = self.sr_of(section)["uuid"]
        vdi = self.vdi(section, record.provider_id)
        self.assertEqual(
            ("volume-%s" % vol.id, vol.id, size_gb * GiB, "%s/%s" % (sr_uuid, vdi["uuid"])),
            (vdi["name_label"], vdi["other_config"].get(VOLUME_TAG), vdi["virtual_size"],
             record.provider_location))
        self.assertEqual(size_gb, vol.size)
        self.assertEqual(record.provider_id, vol.to_dict()["provider_id"])
        self.assertFalse(vdi["is_a_snapshot"])
        return vdi

    def assert_snapshot_on_sr(self, section: str, snap: Any) -> dict[str, Any]:
        record = self.db_snapshot(snap.id)
        sr_uuid = self.sr_of(section)["uuid"]
        vdi = self.vdi(section, record.provider_id)
        self.assertEqual(
            ("snapshot-%s" % snap.id, snap.id, snap.size * GiB,
             "%s/%s" % (sr_uuid, vdi["uuid"])),
            (vdi["name_label"], vdi["other_config"].get(SNAPSHOT_TAG), vdi["virtual_size"],
             record.provider_location))
        self.assertNotIn(VOLUME_TAG, vdi["other_config"])
        return vdi

    def assert_sr_holds_nothing_new(self, section: str, before: set[str]) -> None:
        """After the deletes (and the SR's garbage collector), only ``before`` is left."""
        left = {u: (rec["name_label"], rec["other_config"])
                for u, rec in self.sr_vdis(section, gc=True).items() if u not in before}
        self.assertEqual({}, left, "left over on the SR of %s" % section)

    # -- content through XAPI's data path ---------------------------------------

    def write(self, vdi_uuid: str, data: bytes) -> None:
        transfer.upload(self.xapi, vdi_uuid, io.BytesIO(data), size=len(data))

    def assert_content(self, vdi_uuid: str, expected: bytes) -> None:
        """The VDI starts with ``expected`` (compared by digest: a failure
        must not print megabytes)."""
        names = {hashlib.sha256(data).hexdigest(): name for name, data in PATTERNS.items()}
        found = hashlib.sha256(self.read(vdi_uuid, len(expected))).hexdigest()
        self.assertEqual(names[hashlib.sha256(expected).hexdigest()],
                         names.get(found, "other bytes"), "content of VDI %s" % vdi_uuid)

    def read(self, vdi_uuid: str, length: int) -> bytes:
        out = io.BytesIO()
        size = int(self.xapi.call("VDI.get_virtual_size",
                                  self.xapi.call("VDI.get_by_uuid", vdi_uuid)))
        transfer.download(self.xapi, vdi_uuid, out, size=size, length=length)
        return out.getvalue()


class LifecycleMixin:
    """Every verb through Cinder, on one back end."""

    SECTION: str
    SR_TYPE: str
    STORAGE_PROTOCOL: str

    def test_volume_snapshot_clone_extend_and_deletes(self: Any) -> None:
        section = self.SECTION
        before = set(self.sr_vdis(section, gc=True))
        caps = self.pools()["ci@%s#%s" % (section, self.pool_of(section))]
        self.assertEqual((self.STORAGE_PROTOCOL, self.SR_TYPE),
                         (caps["storage_protocol"], caps["xensm_sr_type"]))
        vol = self.create_volume(1, section=section, name="origin")
        host = getattr(vol, "os-vol-host-attr:host")
        self.assertEqual("ci@%s#%s" % (section, self.pool_of(section)), host)
        vdi = self.assert_volume_on_sr(section, vol, 1)
        self.write(vdi["uuid"], A)

        snap = self.create_snapshot(vol.id, name="snap-a")
        self.assertEqual(1, snap.size)
        self.assert_snapshot_on_sr(section, snap)

        # Volume from snapshot, larger than the snapshot: the SR grows it.
        bigger = self.create_volume(2, section=section, snapshot_id=snap.id)
        self.assertEqual(snap.id, bigger.snapshot_id)
        bigger_vdi = self.assert_volume_on_sr(section, bigger, 2)
        self.assert_content(bigger_vdi["uuid"], A)

        # Clone of the volume, taken after the volume changed.
        self.write(vdi["uuid"], B)
        clone = self.create_volume(1, section=section, source_volid=vol.id)
        self.assertEqual(vol.id, clone.source_volid)
        clone_vdi = self.assert_volume_on_sr(section, clone, 1)
        self.assert_content(clone_vdi["uuid"], B)
        self.assert_content(bigger_vdi["uuid"], A)   # independent copies

        # Extend, offline.
        self.client.volumes.extend(vol.id, 3)
        vol = self.wait(self.client.volumes, vol.id, "available")
        self.assertEqual(3, vol.size)
        self.assert_volume_on_sr(section, vol, 3)
        self.assertEqual(vdi["uuid"], self.db_volume(vol.id).provider_id)

        # Deletes: children first is not required; the snapshot outlives
        # nothing it should not.
        for manager, obj_id in ((self.client.volume_snapshots, snap.id),
                                (self.client.volumes, vol.id),
                                (self.client.volumes, bigger.id),
                                (self.client.volumes, clone.id)):
            self.delete(manager, obj_id)
        self.assert_sr_holds_nothing_new(section, before)

    def test_revert_to_snapshot_swaps_in_the_snapshot_and_cinder_follows(self: Any) -> None:
        section = self.SECTION
        before = set(self.sr_vdis(section, gc=True))
        vol = self.create_volume(1, section=section)
        vdi = self.assert_volume_on_sr(section, vol, 1)
        self.write(vdi["uuid"], A)
        snap = self.create_snapshot(vol.id)
        self.write(vdi["uuid"], B + B)              # over A, and past it

        self.client.volumes.revert_to_snapshot(vol, snap)
        vol = self.wait(self.client.volumes, vol.id, "available")
        self.wait(self.client.volume_snapshots, snap.id, "available")
        # The driver swapped a clone of the snapshot in, with a new uuid.
        # Cinder ignores revert's model update: its record still names the
        # replaced VDI, which the driver follows to the volume's VDI.
        recorded = self.db_volume(vol.id).provider_id
        self.assertEqual(vdi["uuid"], recorded)
        info = self.client.volumes.initialize_connection(vol, CONNECTOR)
        self.client.volumes.terminate_connection(vol, CONNECTOR)
        current = self.vdi(section, info["data"]["vdi_uuid"])
        self.assertIn(recorded, current["other_config"]["xensm-replaces"].split())
        self.assert_content(current["uuid"], A)
        self.assertEqual(bytes(len(B)), self.read(current["uuid"], 2 * len(A))[len(A):])
        # cinder-volume's next start records the new VDI (update_provider_info).
        from cinder import context
        manager = self.stack.volume_services[section].manager
        ctxt = context.get_admin_context()
        manager._sync_provider_info(ctxt, manager._get_my_volumes(ctxt),
                                    manager._get_my_snapshots(ctxt))
        self.assertEqual(current["uuid"], self.db_volume(vol.id).provider_id)
        # Cinder's temporary "[revert]" backup snapshot, if it took one, is gone.
        self.assertEqual([snap.id], [s.id for s in self.client.volume_snapshots.list(
            search_opts={"volume_id": vol.id})])

        self.delete(self.client.volume_snapshots, snap.id)
        self.delete(self.client.volumes, vol.id)
        self.assert_sr_holds_nothing_new(section, before)

    def test_manage_and_unmanage_an_existing_vdi(self: Any) -> None:
        section = self.SECTION
        sr = self.sr_of(section)
        legacy_ref = self.xapi.call("VDI.create", {
            "SR": sr["ref"], "virtual_size": str(3 * GiB // 2), "type": "user",
            "name_label": "legacy-disk", "name_description": "", "sharable": False,
            "read_only": False, "other_config": {"owner": "ops"}, "xenstore_data": {},
            "sm_config": {}, "tags": []})
        legacy_uuid = self.xapi.call("VDI.get_uuid", legacy_ref)
        self.addCleanup(self.xapi.call, "VDI.destroy", legacy_ref)
        host = "ci@%s#%s" % (section, self.pool_of(section))

        listed = [m for m in self.client.volumes.list_manageable(host, detailed=True)
                  if m.reference.get("source-id") == legacy_uuid]
        self.assertEqual(1, len(listed))
        self.assertEqual((True, 2), (listed[0].safe_to_manage, listed[0].size))

        vol = self.client.volumes.manage(host, {"source-name": "legacy-disk"},
                                         name="adopted",
                                         volume_type=self.volume_type(section).id)
        self.addCleanup(self.delete_if_present, self.client.volumes, vol.id)
        vol = self.wait(self.client.volumes, vol.id, "available")
        self.assertEqual(host, getattr(vol, "os-vol-host-attr:host"))
        vdi = self.assert_volume_on_sr(section, vol, 2)       # 1.5 GiB rounded up
        self.assertEqual((legacy_uuid, "ops"), (vdi["uuid"], vdi["other_config"]["owner"]))
        listed = [m for m in self.client.volumes.list_manageable(host, detailed=True)
                  if m.reference.get("source-id") == legacy_uuid]
        self.assertEqual((False, vol.id), (listed[0].safe_to_manage, listed[0].cinder_id))

        self.client.volumes.unmanage(vol.id)
        self.wait_gone(self.client.volumes, vol.id)
        vdi = self.vdi(section, legacy_uuid)                  # the data stays
        self.assertNotIn(VOLUME_TAG, vdi["other_config"])
        self.assertEqual("ops", vdi["other_config"]["owner"])

    def test_attach_info_names_the_sr_and_vdi_and_no_secret(self: Any) -> None:
        section = self.SECTION
        vol = self.create_volume(1, section=section)
        info = self.client.volumes.initialize_connection(vol, CONNECTOR)
        sr = self.sr_of(section)
        record = self.db_volume(vol.id)
        self.assertEqual("xensm", info["driver_volume_type"])
        data = info["data"]
        self.assertEqual((sr["uuid"], record.provider_id, self.SR_TYPE),
                         (data["sr_uuid"], data["vdi_uuid"], data["sr_type"]))
        self.assertNotIn(functional_base.PASSWORD, repr(info))
        self.assertNotIn("password", repr(info).lower())
        self.client.volumes.terminate_connection(vol, CONNECTOR)
        self.assertEqual("available", self.client.volumes.get(vol.id).status)

    def test_transfer_to_another_project_keeps_the_vdi(self: Any) -> None:
        section = self.SECTION
        vol = self.create_volume(1, section=section)
        vdi = self.assert_volume_on_sr(section, vol, 1)
        transfer = self.client.transfers.create(vol.id, name="handover")
        project = uuid.uuid4().hex
        other = self.stack.client(project_id=project)
        other.transfers.accept(transfer.id, transfer.auth_key)
        vol = self.wait(other.volumes, vol.id, "available")
        self.assertEqual(project, getattr(vol, "os-vol-tenant-attr:tenant_id"))
        self.assertEqual(vdi, self.assert_volume_on_sr(section, vol, 1))

    def test_group_snapshot_and_group_from_it(self: Any) -> None:
        """A generic group: Cinder snapshots it volume by volume (the driver
        pauses VMs only for a group type that asks for consistency)."""
        section = self.SECTION
        before = set(self.sr_vdis(section, gc=True))
        self.assertTrue(self.pools()["ci@%s#%s" % (section, self.pool_of(section))]
                        ["consistent_group_snapshot_enabled"])
        gtype = self.group_type()
        vtype = self.volume_type(section)
        group = self.client.groups.create(gtype.id, vtype.id, name="g-%s" % section)
        self.addCleanup(self.delete_group_if_present, group.id)
        group = self.wait(self.client.groups, group.id, "available")
        vols = [self.create_volume(1, section=section, group_id=group.id) for _ in range(2)]
        for vol in vols:
            self.write(self.assert_volume_on_sr(section, vol, 1)["uuid"], A)

        gsnap = self.client.group_snapshots.create(group.id, name="gs")
        self.addCleanup(self.delete_if_present, self.client.group_snapshots, gsnap.id)
        gsnap = self.wait(self.client.group_snapshots, gsnap.id, "available")
        snaps = self.client.volume_snapshots.list(
            search_opts={"group_snapshot_id": gsnap.id})
        self.assertEqual(sorted(v.id for v in vols), sorted(s.volume_id for s in snaps))
        for snap in snaps:
            self.assertEqual("available", snap.status)
            self.assert_snapshot_on_sr(section, snap)

        made = self.client.groups.create_from_src(gsnap.id, None, name="copy")
        self.addCleanup(self.delete_group_if_present, made["id"])
        copy = self.wait(self.client.groups, made["id"], "available")
        copies = self.client.volumes.list(search_opts={"group_id": copy.id})
        self.assertEqual(2, len(copies))
        for vol in copies:
            self.assert_content(self.assert_volume_on_sr(section, vol, 1)["uuid"], A)

        self.delete(self.client.group_snapshots, gsnap.id)
        for grp in (copy, group):
            self.client.groups.delete(grp.id, delete_volumes=True)
            self.wait_gone(self.client.groups, grp.id)
        self.assert_sr_holds_nothing_new(section, before)

    def test_consistent_group_snapshot_pauses_the_vm_holding_the_volumes(self: Any) -> None:
        """A group type with consistent_group_snapshot_enabled: the running VM
        holding the volumes is paused around the per-VDI snapshots, and runs
        again after; the snapshots hold what the VM wrote before."""
        section = self.SECTION
        before = set(self.sr_vdis(section, gc=True))
        if "cg" not in CinderTestCase._types:
            gtype = self.client.group_types.create("consistent")
            gtype.set_keys({"consistent_group_snapshot_enabled": "<is> True"})
            CinderTestCase._types["cg"] = gtype
        group = self.client.groups.create(CinderTestCase._types["cg"].id,
                                          self.volume_type(section).id, name="cg-%s" % section)
        self.addCleanup(self.delete_group_if_present, group.id)
        group = self.wait(self.client.groups, group.id, "available")
        vols = [self.create_volume(1, section=section, group_id=group.id) for _ in range(2)]
        uuids = [self.assert_volume_on_sr(section, vol, 1)["uuid"] for vol in vols]
        for vdi_uuid in uuids:
            self.write(vdi_uuid, A)
        vm = self.xapi.call("VM.create", {"name_label": "cg-guest-%s" % section})
        for i, vdi_uuid in enumerate(uuids):
            vdi_ref = self.xapi.call("VDI.get_by_uuid", vdi_uuid)
            self.xapi.call("VBD.create", {
                "VM": vm, "VDI": vdi_ref, "userdevice": str(i), "bootable": False,
                "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                "qos_algorithm_type": "", "qos_algorithm_params": {}})
        self.xapi.call("VM.start", vm, False, False)
        pauses = self.control.calls().get("VM.pause", 0)

        gsnap = self.client.group_snapshots.create(group.id, name="cgs")
        self.addCleanup(self.delete_if_present, self.client.group_snapshots, gsnap.id)
        gsnap = self.wait(self.client.group_snapshots, gsnap.id, "available")
        self.assertEqual(pauses + 1, self.control.calls().get("VM.pause", 0))
        self.assertEqual("Running", self.xapi.call("VM.get_power_state", vm))
        self.assertNotIn("xensm-paused-by", self.xapi.call("VM.get_other_config", vm))
        # The guest writes on after the snapshot; the snapshots keep A.
        vm_uuid = self.xapi.call("VM.get_uuid", vm)
        for vdi_uuid in uuids:
            self.control.guest_write(vm_uuid, vdi_uuid, 0, B[:4096])
        snaps = self.client.volume_snapshots.list(search_opts={"group_snapshot_id": gsnap.id})
        self.assertEqual(sorted(v.id for v in vols), sorted(s.volume_id for s in snaps))
        for snap in snaps:
            self.assert_content(self.assert_snapshot_on_sr(section, snap)["uuid"], A)

        self.delete(self.client.group_snapshots, gsnap.id)
        self.xapi.call("VM.hard_shutdown", vm)
        self.xapi.call("VM.destroy", vm)
        self.client.groups.delete(group.id, delete_volumes=True)
        self.wait_gone(self.client.groups, group.id)
        self.assert_sr_holds_nothing_new(section, before)

    def delete_group_if_present(self: Any, group_id: str) -> None:
        try:
            self.client.groups.delete(group_id, delete_volumes=True)
        except cinder_exc.NotFound:
            return
        self.wait_gone(self.client.groups, group_id)

    def group_type(self: Any) -> Any:
        if "group" not in CinderTestCase._types:
            CinderTestCase._types["group"] = self.client.group_types.create("generic")
        return CinderTestCase._types["group"]


class TestNFS(LifecycleMixin, CinderTestCase):
    SECTION = "xs-nfs"
    SR_TYPE = "nfs"
    STORAGE_PROTOCOL = "NFS"


class TestLVMoISCSI(LifecycleMixin, CinderTestCase):
    SECTION = "xs-iscsi"
    SR_TYPE = "lvmoiscsi"
    STORAGE_PROTOCOL = "iSCSI"


class TestSolidFire(CinderTestCase):
    """VDI-per-LUN: each volume is an array volume holding its own SR and VDI."""

    SECTION = "xs-sf"

    def array(self) -> dict[str, Any]:
        return self.sim.solidfire.control.dump()

    def array_volume(self, volume_id: str) -> dict[str, Any]:
        mine = [v for v in self.array()["volumes"]
                if (v["attributes"] or {}).get(VOLUME_TAG) == volume_id]
        self.assertEqual(1, len(mine), "array volumes of %s" % volume_id)
        self.assertEqual(("xensm-%s" % volume_id, "active"), (mine[0]["name"], mine[0]["status"]))
        return mine[0]

    def lun_sr(self, volume_id: str) -> dict[str, Any] | None:
        srs = [dict(rec, ref=ref) for ref, rec in self.control.dump()["SR"].items()
               if rec["name_label"] == "xensm-sf-volume-%s" % volume_id]
        self.assertLessEqual(len(srs), 1)
        return srs[0] if srs else None

    def assert_volume_on_lun(self, vol: Any, size_gb: int) -> dict[str, Any]:
        """The array volume, its SR and its one VDI agree with Cinder's record."""
        record = self.db_volume(vol.id)
        sf_volume = self.array_volume(vol.id)
        self.assertGreaterEqual(sf_volume["totalSize"], size_gb * GiB)
        sr = self.lun_sr(vol.id)
        self.assertIsNotNone(sr, "no SR on the LUN of %s" % vol.id)
        assert sr is not None
        vdis = [rec for rec in self.control.dump()["VDI"].values()
                if rec["SR"] == sr["ref"] and rec["managed"] and not rec["is_a_snapshot"]]
        self.assertEqual(1, len(vdis))
        vdi = vdis[0]
        self.assertEqual(
            ("volume-%s" % vol.id, vol.id, size_gb * GiB, "%s/%s" % (sr["uuid"], vdi["uuid"]),
             vdi["uuid"], size_gb),
            (vdi["name_label"], vdi["other_config"].get(VOLUME_TAG), vdi["virtual_size"],
             record.provider_location, record.provider_id, vol.size))
        return vdi

    def assert_snapshot_on_array(self, snap: Any) -> dict[str, Any]:
        record = self.db_snapshot(snap.id)
        source = self.array_volume(snap.volume_id)
        mine = [s for s in self.array()["snapshots"]
                if str(s["snapshotID"]) == record.provider_id]
        self.assertEqual(1, len(mine), "array snapshot %s" % record.provider_id)
        self.assertEqual(source["volumeID"], mine[0]["volumeID"])
        return mine[0]

    def assert_nothing_left(self, volume_ids: list[str]) -> None:
        """No live array volume, array snapshot or SR of these volumes remains."""
        self.assertEqual(([], []), self.live_leftovers(volume_ids))
        self.assertEqual([], self.array_snapshots_of(volume_ids))

    def live_leftovers(self, volume_ids: list[str]) -> tuple[list[str], list[str]]:
        live = [v["name"] for v in self.array()["volumes"] if v["status"] != "deleted"
                and (v["attributes"] or {}).get(VOLUME_TAG) in volume_ids]
        return live, [v for v in volume_ids if self.lun_sr(v) is not None]

    def array_snapshots_of(self, volume_ids: list[str]) -> list[str]:
        array = self.array()
        ours = {v["volumeID"] for v in array["volumes"]
                if (v["attributes"] or {}).get(VOLUME_TAG) in volume_ids}
        return [s["name"] for s in array["snapshots"] if s["volumeID"] in ours]

    def test_every_verb_through_cinder(self) -> None:
        section = self.SECTION
        pool = self.pools()["ci@%s#solidfire-%s" % (section, section)]
        self.assertEqual((True, True, "iSCSI"), (
            pool["consistent_group_snapshot_enabled"], pool["thin_provisioning_support"],
            pool["storage_protocol"]))
        vol = self.create_volume(1, section=section)
        self.assertEqual("ci@%s#solidfire-%s" % (section, section),
                         getattr(vol, "os-vol-host-attr:host"))
        vdi = self.assert_volume_on_lun(vol, 1)
        self.write(vdi["uuid"], A)

        snap = self.create_snapshot(vol.id)
        self.assert_snapshot_on_array(snap)
        bigger = self.create_volume(2, section=section, snapshot_id=snap.id)
        self.assert_content(self.assert_volume_on_lun(bigger, 2)["uuid"], A)

        self.write(vdi["uuid"], B)
        clone = self.create_volume(1, section=section, source_volid=vol.id)
        self.assert_content(self.assert_volume_on_lun(clone, 1)["uuid"], B)

        self.client.volumes.revert_to_snapshot(vol, snap)
        vol = self.wait(self.client.volumes, vol.id, "available")
        self.assert_content(self.assert_volume_on_lun(vol, 1)["uuid"], A)
        self.assertEqual([snap.id], [s.id for s in self.client.volume_snapshots.list(
            search_opts={"volume_id": vol.id})])

        self.client.volumes.extend(vol.id, 3)
        vol = self.wait(self.client.volumes, vol.id, "available")
        self.assert_volume_on_lun(vol, 3)

        info = self.client.volumes.initialize_connection(vol, CONNECTOR)
        self.assertEqual(("xensm", self.lun_sr(vol.id)["uuid"], "lvmoiscsi"),
                         (info["driver_volume_type"], info["data"]["sr_uuid"],
                          info["data"]["sr_type"]))
        self.assertNotIn("password", repr(info).lower())
        self.assertNotIn("solidfire-pass", repr(info))
        self.client.volumes.terminate_connection(vol, CONNECTOR)

        self.delete(self.client.volume_snapshots, snap.id)
        for obj in (vol, bigger, clone):
            self.delete(self.client.volumes, obj.id)
        self.assert_nothing_left([vol.id, bigger.id, clone.id])

    def test_consistent_group_snapshot_is_one_array_group_snapshot(self) -> None:
        section = self.SECTION
        if "cg" not in CinderTestCase._types:
            gtype = self.client.group_types.create("consistent")
            gtype.set_keys({"consistent_group_snapshot_enabled": "<is> True"})
            CinderTestCase._types["cg"] = gtype
        gtype = CinderTestCase._types["cg"]
        group = self.client.groups.create(gtype.id, self.volume_type(section).id, name="cg")
        self.addCleanup(self.delete_group_if_present, group.id)
        group = self.wait(self.client.groups, group.id, "available")
        vols = [self.create_volume(1, section=section, group_id=group.id) for _ in range(2)]
        for vol in vols:
            self.write(self.assert_volume_on_lun(vol, 1)["uuid"], A)

        gsnap = self.client.group_snapshots.create(group.id, name="cgs")
        self.addCleanup(self.delete_if_present, self.client.group_snapshots, gsnap.id)
        gsnap = self.wait(self.client.group_snapshots, gsnap.id, "available")
        snaps = self.client.volume_snapshots.list(search_opts={"group_snapshot_id": gsnap.id})
        self.assertEqual(sorted(v.id for v in vols), sorted(s.volume_id for s in snaps))
        array_groups = [g for g in self.array()["groupSnapshots"]
                        if g["attributes"].get("xensm-group-snapshot-id") == gsnap.id]
        self.assertEqual(1, len(array_groups))
        self.assertEqual(sorted(str(self.assert_snapshot_on_array(s)["snapshotID"])
                                for s in snaps),
                         sorted(str(m["snapshotID"]) for m in array_groups[0]["members"]))

        made = self.client.groups.create_from_src(gsnap.id, None, name="cg-copy")
        self.addCleanup(self.delete_group_if_present, made["id"])
        self.wait(self.client.groups, made["id"], "available")
        copies = self.client.volumes.list(search_opts={"group_id": made["id"]})
        self.assertEqual(2, len(copies))
        for vol in copies:
            self.assert_content(self.assert_volume_on_lun(vol, 1)["uuid"], A)

        self.delete(self.client.group_snapshots, gsnap.id)
        for group_id in (made["id"], group.id):
            self.client.groups.delete(group_id, delete_volumes=True)
            self.wait_gone(self.client.groups, group_id)
        everything = [v.id for v in vols] + [v.id for v in copies]
        self.assertEqual(([], []), self.live_leftovers(everything))
        # Cinder keeps no provider_id for a group snapshot: the back end finds
        # the array group snapshot by name and tag, and purges the members.
        self.assertEqual(([], []), (
            [g["name"] for g in self.array()["groupSnapshots"]
             if g["attributes"].get("xensm-group-snapshot-id") == gsnap.id],
            self.array_snapshots_of(everything)))

    def delete_group_if_present(self, group_id: str) -> None:
        LifecycleMixin.delete_group_if_present(self, group_id)


class TestScheduler(CinderTestCase):
    """What the scheduler knows of each back end, and where it puts volumes."""

    def test_pools_carry_the_srs_capacity_and_provisioning(self) -> None:
        pools = self.pools()
        (pool_rec,) = self.control.dump()["pool"].values()
        for section, sr_type, protocol, thin in (("xs-nfs", "nfs", "NFS", True),
                                                 ("xs-iscsi", "lvmoiscsi", "iSCSI", False)):
            sr = self.sr_of(section)
            name = "ci@%s#%s" % (section, sr["name_label"])
            self.assertIn(name, pools)
            caps = pools[name]
            # location_info names the SR and its pool: what a migration
            # between back ends of one pool is recognised by.
            self.assertEqual(
                (section, protocol, "xensm:%s:%s:%s" % (sr_type, sr["uuid"], pool_rec["uuid"]),
                 thin, not thin,
                 round(sr["physical_size"] / GiB, 2)),
                (caps["volume_backend_name"], caps["storage_protocol"], caps["location_info"],
                 caps["thin_provisioning_support"], caps["thick_provisioning_support"],
                 caps["total_capacity_gb"]))
            self.assertLessEqual(caps["free_capacity_gb"], caps["total_capacity_gb"])
            self.assertGreater(caps["free_capacity_gb"], 0)

    def test_stats_follow_what_is_provisioned(self) -> None:
        section = "xs-iscsi"
        name = "ci@%s#%s" % (section, self.pool_of(section))
        # Nothing may change the SR's figures meanwhile but this volume:
        # collect what earlier deletes left, then hold the SR's GC.
        self.control.run_gc()
        self.control.pause_gc(True)
        self.addCleanup(self.control.pause_gc, False)
        self.stack.report_stats()
        before = self.pools()[name]
        self.create_volume(5, section=section)
        self.stack.report_stats()
        after = self.pools()[name]
        # Thick LVM: the SR's free space shrinks by the volume; Cinder's own
        # count of what it allocated there grows by it too.
        self.assertEqual(5, round(before["free_capacity_gb"] - after["free_capacity_gb"]))
        self.assertEqual(5, round(after["provisioned_capacity_gb"]
                                  - before["provisioned_capacity_gb"]))
        self.assertEqual(5, after["allocated_capacity_gb"] - before["allocated_capacity_gb"])

    def test_scheduler_places_by_type_and_refuses_what_does_not_fit(self) -> None:
        for section in ("xs-nfs", "xs-iscsi"):
            vol = self.create_volume(1, section=section)
            self.assertEqual("ci@%s#%s" % (section, self.pool_of(section)),
                             getattr(vol, "os-vol-host-attr:host"))
        # Thick 100 GiB SR: a 500 GiB volume fits nowhere of its type.
        self.stack.report_stats()
        vol = self.create_volume(500, section="xs-iscsi", status="error")
        self.assertIsNone(getattr(vol, "os-vol-host-attr:host"))
        self.assertTrue(any("No valid host" in m or "schedul" in m.lower()
                            for m in self.messages(vol.id)), self.messages(vol.id))
        # Without a type (Cinder's __DEFAULT__), any back end may take it.
        vol = self.create_volume(1)
        self.assertIn(getattr(vol, "os-vol-host-attr:host"), self.pools())



class TestMigration(CinderTestCase):
    """migrate and retype between the nfs and the lvmoiscsi back end of one
    pool: storage-assisted (the driver's migrate_volume moves the VDI
    through XAPI), content checked before and after."""

    OTHER = {"xs-nfs": "xs-iscsi", "xs-iscsi": "xs-nfs"}

    def sm_type(self) -> Any:
        """A type either SM back end may hold, so that a migration between
        them passes the scheduler's filters."""
        name = "xs-sm"
        if name not in CinderTestCase._types:
            vtype = self.client.volume_types.create(name)
            vtype.set_keys({"volume_backend_name": "<or> xs-nfs <or> xs-iscsi"})
            CinderTestCase._types[name] = vtype
        return CinderTestCase._types[name]

    def section_of(self, vol: Any) -> str:
        return getattr(vol, "os-vol-host-attr:host").split("@", 1)[1].split("#", 1)[0]

    def migrate(self, vol: Any, section: str) -> Any:
        self.client.volumes.migrate_volume(vol, "ci@%s#%s" % (section, self.pool_of(section)),
                                           False, False)

        def done() -> Any:
            now = self.client.volumes.get(vol.id)
            status = getattr(now, "os-vol-mig-status-attr:migstat")
            if status == "error":
                raise AssertionError("migration of %s failed: %s" % (
                    vol.id, self.messages(vol.id)))
            return now if status == "success" and now.status == "available" else None
        return stack_mod.wait_for("%s to move to %s" % (vol.id, section), done)

    def test_migrate_there_and_back(self) -> None:
        before = {s: set(self.sr_vdis(s, gc=True)) for s in self.OTHER}
        vol = self.client.volumes.create(1, volume_type=self.sm_type().id)
        self.addCleanup(self.delete_if_present, self.client.volumes, vol.id)
        vol = self.wait(self.client.volumes, vol.id, "available")
        first = self.section_of(vol)
        vdi = self.assert_volume_on_sr(first, vol, 1)
        self.write(vdi["uuid"], A)
        for section in (self.OTHER[first], first):
            vol = self.migrate(vol, section)
            self.assertEqual(section, self.section_of(vol))
            moved = self.assert_volume_on_sr(section, vol, 1)
            self.assertNotEqual(vdi["uuid"], moved["uuid"])
            # The source SR holds nothing of it any more.
            self.assertNotIn(vdi["uuid"], self.sr_vdis(self.OTHER[section]))
            self.assert_content(moved["uuid"], A)
            vdi = moved
        # Verbs follow it: a snapshot and a clone on its back end.
        snap = self.create_snapshot(vol.id)
        self.assert_snapshot_on_sr(first, snap)
        self.delete(self.client.volume_snapshots, snap.id)
        self.delete(self.client.volumes, vol.id)
        for section, held in before.items():
            self.assert_sr_holds_nothing_new(section, held)

    def test_retype_moves_the_volume(self) -> None:
        before = {s: set(self.sr_vdis(s, gc=True)) for s in self.OTHER}
        vol = self.create_volume(1, section="xs-nfs")
        vdi = self.assert_volume_on_sr("xs-nfs", vol, 1)
        self.write(vdi["uuid"], B)
        self.assert_content(vdi["uuid"], B)
        self.client.volumes.retype(vol, self.volume_type("xs-iscsi").id, "on-demand")

        def retyped() -> Any:
            now = self.client.volumes.get(vol.id)
            if getattr(now, "os-vol-mig-status-attr:migstat") == "error":
                raise AssertionError("retype of %s failed: %s" % (vol.id,
                                                                  self.messages(vol.id)))
            return now if now.volume_type == "xs-iscsi" and now.status == "available" \
                else None
        vol = stack_mod.wait_for("%s to be retyped" % vol.id, retyped)
        self.assertEqual("xs-iscsi", self.section_of(vol))
        moved = self.assert_volume_on_sr("xs-iscsi", vol, 1)
        self.assert_content(moved["uuid"], B)
        self.assertNotIn(vdi["uuid"], self.sr_vdis("xs-nfs"))
        # To a type its back end also serves: the driver's retype, in place.
        self.client.volumes.retype(vol, self.sm_type().id, "never")
        vol = stack_mod.wait_for("%s to be retyped in place" % vol.id, lambda: (
            lambda now: now if now.volume_type == "xs-sm" and now.status == "available"
            else None)(self.client.volumes.get(vol.id)))
        self.assertEqual(moved["uuid"], self.assert_volume_on_sr("xs-iscsi", vol, 1)["uuid"])
        self.assert_content(moved["uuid"], B)
        self.delete(self.client.volumes, vol.id)
        for section, held in before.items():
            self.assert_sr_holds_nothing_new(section, held)
