"""VHD chain space arithmetic: what a snapshot's delete frees, now and after coalesce."""

from __future__ import annotations

import testtools

from xensm_driver.backends.sm import space
from xensm_driver.xapi.storage import VDI

MiB = 1 << 20
GiB = 1 << 30


def vdi(uuid: str, phys: int, parent: str = "", managed: bool = True,
        snapshot: bool = False, vsize: int = GiB) -> VDI:
    return VDI(ref="OpaqueRef:" + uuid, uuid=uuid, name_label=uuid, sr="OpaqueRef:sr",
               virtual_size=vsize, physical_utilisation=phys, is_a_snapshot=snapshot,
               snapshot_of="", managed=managed, read_only=not managed, vbds=(),
               other_config={}, sm_config={"vhd-parent": parent} if parent else {},
               type="user")


def frees(vdis: list[VDI], uuid: str) -> space.Frees:
    by_uuid = {v.uuid: v for v in vdis}
    return space.frees(by_uuid, space.children_of(vdis), by_uuid[uuid])


class FreesTest(testtools.TestCase):
    # b1 <- b2 <- vol ; b1 <- s1 ; b2 <- s2
    CHAIN = [vdi("b1", 8 * MiB, managed=False), vdi("b2", 4 * MiB, "b1", managed=False),
             vdi("vol", 2 * MiB, "b2"), vdi("s1", 10000, "b1", snapshot=True),
             vdi("s2", 10000, "b2", snapshot=True)]

    def test_one_sibling_gives_a_range_up_to_the_smaller_layer(self) -> None:
        f = frees(self.CHAIN, "s1")
        self.assertEqual((10000, 10000, 10000 + 4 * MiB),
                         (f.now, f.after_coalesce_min, f.after_coalesce_max))
        f = frees(self.CHAIN, "s2")
        self.assertEqual(10000 + 2 * MiB, f.after_coalesce_max)

    def test_a_fully_allocated_sibling_makes_it_exact(self) -> None:
        chain = self.CHAIN[:2] + [vdi("vol", GiB + 8 * MiB, "b2")] + self.CHAIN[3:]
        f = frees(chain, "s2")
        self.assertEqual((10000 + 4 * MiB, 10000 + 4 * MiB),
                         (f.after_coalesce_min, f.after_coalesce_max))

    def test_a_shared_base_copy_stays(self) -> None:
        chain = [*self.CHAIN, vdi("s3", 10000, "b2", snapshot=True)]
        f = frees(chain, "s2")
        self.assertEqual((10000, 10000, 10000),
                         (f.now, f.after_coalesce_min, f.after_coalesce_max))
        self.assertIn("2 other VHDs", f.why)

    def test_an_only_child_takes_its_base_copy_with_it(self) -> None:
        chain = [vdi("b1", 8 * MiB, managed=False), vdi("s1", 10000, "b1", snapshot=True)]
        self.assertEqual(10000 + 8 * MiB, frees(chain, "s1").after_coalesce_min)

    def test_no_vhd_parent_frees_itself_at_once(self) -> None:
        f = frees([vdi("s", GiB, snapshot=True)], "s")
        self.assertEqual((GiB, GiB, GiB), (f.now, f.after_coalesce_min,
                                           f.after_coalesce_max))


class VolumeSpaceTest(testtools.TestCase):
    def test_the_tree_and_its_bounds(self) -> None:
        out = space.volume_space(FreesTest.CHAIN, "vol", {"a": "s1", "b": "s2", "c": "gone"})
        self.assertEqual(3, out["chain_depth"])
        self.assertEqual(12 * MiB, out["base_copy_bytes"])
        self.assertEqual(20000, out["snapshot_leaf_bytes"])
        self.assertEqual(14 * MiB + 20000, out["tree_bytes"])
        self.assertEqual(20000, out["snapshots_hold_min"])
        self.assertEqual(20000 + 6 * MiB, out["snapshots_hold_max"])     # all but b1
        self.assertFalse(out["snapshots"]["c"]["present"])

    def test_provisioned_counts_snapshots_at_their_virtual_size(self) -> None:
        out = space.provisioned(FreesTest.CHAIN, {"vol"})
        self.assertEqual({"volumes": GiB, "snapshots": 2 * GiB, "other": 0}, out)
