"""Names, tags and provider ids of volumes and snapshots."""

import testtools

from xensm_driver import identity


class TestIdentity(testtools.TestCase):

    def test_volume_and_snapshot_names_and_tags(self):
        vol = identity.volume("v1")
        self.assertEqual("volume-v1", vol.name_label)
        tags = vol.tags({"x": "y", "xensm-snapshot-id": "stale"})
        self.assertEqual({"xensm-volume-id": "v1", "x": "y"},
                         {k: v for k, v in tags.items() if k != identity.CREATED_TAG})
        self.assertGreater(identity.created(tags), 0)
        snap = identity.snapshot("s1")
        self.assertEqual("snapshot-s1", snap.name_label)
        self.assertEqual("s1", snap.tags()["xensm-snapshot-id"])

    def test_unstamped_vdis_count_as_oldest(self):
        self.assertEqual(0.0, identity.created({}))
        self.assertEqual(0.0, identity.created({identity.CREATED_TAG: "junk"}))

    def test_matches_only_own_tag(self):
        vol = identity.volume("v1")
        self.assertTrue(vol.matches({"xensm-volume-id": "v1"}))
        self.assertFalse(vol.matches({"xensm-volume-id": "v2"}))
        # A snapshot VDI inherits its volume's tags until re-tagged.
        self.assertFalse(identity.snapshot("v1").matches({"xensm-volume-id": "v1"}))

    def test_provider_location_round_trip(self):
        loc = identity.provider_location("sr-1", "vdi-1")
        self.assertEqual(("sr-1", "vdi-1"), identity.parse_provider_location(loc))
        for bad in (None, "", "a", "a/b/c", "/b", "a/"):
            self.assertIsNone(identity.parse_provider_location(bad))
        self.assertEqual({"provider_id": "vdi-1", "provider_location": "sr-1/vdi-1"},
                         identity.model_update("sr-1", "vdi-1"))
