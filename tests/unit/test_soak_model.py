"""The soak's model and checker, fed by hand (no simulator): what it must flag."""

from __future__ import annotations

import testtools

from soak import model
from xensm_driver import identity

SR = "sr-1"


def vdi(uuid: str, obj: model.Obj | None = None, size_gb: int = 1,
        tags: dict[str, str] | None = None, name: str | None = None) -> model.VdiRec:
    if obj is not None:
        tags = {obj.ident.tag_key: obj.id}
        name = obj.ident.name_label
    return model.VdiRec(uuid, name or "x", tuple(sorted((tags or {}).items())),
                        size_gb * model.GiB, SR, "xensm-nfs")


class TestContent(testtools.TestCase):

    def test_writes_compose_and_render(self) -> None:
        c = model.Content().write("a", long=True).write("b", long=False)
        data = c.render()
        self.assertEqual(model.REGION, len(data))
        self.assertEqual(model.write_buffer("b", False), data[:model.PIECE])
        self.assertEqual(model.write_buffer("a", True)[model.LONG_AT:],
                         data[model.LONG_AT:])
        self.assertEqual(bytes(model.REGION), model.Content().render())
        self.assertEqual(model.Content("c"), c.write("c", long=True))

    def test_a_wrong_read_is_explained_by_the_write_it_holds(self) -> None:
        seeds = model.Seeds()
        seeds.add("old", True)
        seeds.add("new", False)
        expected = model.Content().render()                  # reverted to a blank snapshot
        got = model.Content("old").render()                   # old blocks stayed
        text = seeds.explain(expected, got)
        self.assertIn("at 0 KiB: write old, expected zeros", text)
        self.assertIn("at 2048 KiB: write old, expected zeros", text)


class TestCheck(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.model = model.Model()
        self.vol = self.model.add(model.Obj("volume", "v1", "nfs", 1, provider_id="u1"))
        self.vol.note("#1 create via A -> ok u1")
        self.snap = self.model.add(model.Obj("snapshot", "s1", "nfs", 1, provider_id="u2",
                                             volume_id="v1"))

    def inventory(self, *vdis: model.VdiRec) -> model.Inventory:
        return model.Inventory({"nfs": model.BackendInventory("nfs", "nfs", SR,
                                                              vdis=list(vdis))})

    def test_storage_as_modelled_is_clean(self) -> None:
        inv = self.inventory(vdi("u1", self.vol), vdi("u2", self.snap))
        reads = {"v1": model.Content().render(), "s1": model.Content().render()}
        self.assertEqual([], model.check(self.model, inv, reads))

    def test_a_leaked_copy_is_reported_with_its_tags_and_the_story(self) -> None:
        stray = vdi("u9", tags={identity.VOLUME_TAG: "v1"}, name="volume-v1")
        found = model.check(self.model, self.inventory(vdi("u1", self.vol),
                                                       vdi("u2", self.snap), stray))
        self.assertEqual(["leaked"], [f.kind for f in found])
        self.assertEqual("vdi:u9", found[0].key)
        self.assertIn("VDI u9 'volume-v1' tags {xensm-volume-id=v1}", found[0].text)
        self.assertIn("#1 create via A -> ok u1", found[0].text)

    def test_wrong_content_size_name_and_a_missing_vdi_are_wrong(self) -> None:
        self.vol.content = model.Content("w1")
        self.model.seeds.add("w1", True)
        renamed = model.VdiRec("u1", "volume-other", (("xensm-volume-id", "v1"),),
                               2 * model.GiB, SR, "xensm-nfs")
        found = model.check(self.model, self.inventory(renamed),
                            {"v1": model.Content().render()})
        texts = [f.text for f in found]
        self.assertEqual(["wrong"] * 4, [f.kind for f in found], texts)
        self.assertTrue(any("should be named 'volume-v1'" in t for t in texts))
        self.assertTrue(any("expected 1 GiB" in t for t in texts))
        self.assertTrue(any("reads wrong: at 0 KiB: zeros, expected write w1" in t
                            for t in texts))
        self.assertTrue(any("snapshot s1: no VDI u2" in t for t in texts))

    def test_after_deleting_everything_any_object_is_a_leak(self) -> None:
        for obj in (self.vol, self.snap):
            obj.state = "dead"
        found = model.check(self.model, self.inventory(vdi("u1", self.vol)))
        self.assertEqual([("leaked", "vdi:u1")], [(f.kind, f.key) for f in found])

    def test_an_unsettled_create_is_not_yet_a_leak(self) -> None:
        self.model.add(model.Obj("volume", "v2", "nfs", 1, state="unsure"))
        inv = self.inventory(vdi("u1", self.vol), vdi("u2", self.snap),
                             vdi("u3", tags={identity.VOLUME_TAG: "v2"}))
        self.assertEqual([], model.check(self.model, inv))


class TestCheckSolidFire(testtools.TestCase):

    def test_luns_srs_snapshots_and_access_entries_belong_to_live_objects(self) -> None:
        m = model.Model()
        vol = m.add(model.Obj("volume", "v1", "sf", 1, provider_id="u1"))
        m.add(model.Obj("snapshot", "s1", "sf", 1, volume_id="v1"))
        rec = model.VdiRec("u1", "volume-v1", (("xensm-volume-id", "v1"),), model.GiB,
                           "sr-a", model.sf_sr_name("v1"))
        inv = model.BackendInventory(
            "sf", model.SOLIDFIRE, vdis=[rec], srs={model.sf_sr_name("v1"): ["sr-a"]},
            luns=[model.ArrayVolume(1, "xensm-v1", "active", model.GiB),
                  model.ArrayVolume(2, "xensm-v1", "active", model.GiB),
                  model.ArrayVolume(3, "xensm-gone", "deleted", model.GiB)],
            array_snapshots=[model.ArraySnapshot(7, "xensm-s1", 1)],
            access=[1, 2, 3])
        found = model.check(m, model.Inventory({"sf": inv}))
        keys = sorted(f.key for f in found)
        self.assertEqual(["access:2", "access:3", "lun:2", "lun:3"], keys)
        vol.state = "dead"
        found = model.check(m, model.Inventory({"sf": inv}))
        keys = [f.key for f in found]
        self.assertIn("sr:sr-a", keys)
        self.assertIn("lun:1", keys)          # active, though its volume was deleted
