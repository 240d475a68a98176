"""The driver facade's own logic: object conversion and paging."""

import testtools

from xensm_driver import driver
from xensm_driver import exception
from xensm_driver.backends import base


class TestSpecs(testtools.TestCase):

    def test_volume_from_dict_or_object(self):
        class Vol:
            id = "v1"
            size = 3
            provider_id = None
            provider_location = "sr/vdi"
            display_name = "db"

        for vol in (Vol(), {"id": "v1", "size": 3, "provider_location": "sr/vdi",
                            "display_name": "db"}):
            spec = driver.volume_spec(vol)
            self.assertEqual(("v1", 3, 3 << 30), (spec.id, spec.size_gb, spec.size_bytes))
            self.assertEqual("vdi", driver.vdi_uuid_of(spec))

    def test_snapshot_without_loaded_volume_uses_volume_id(self):
        spec = driver.snapshot_spec({"id": "s1", "volume_id": "v1", "volume_size": 2})
        self.assertEqual("v1", spec.volume.id)
        self.assertEqual(2, spec.volume.size_gb)


class TestPaginate(testtools.TestCase):

    entries = [{"reference": {"source-id": c}, "size": s}
               for c, s in (("c", 1), ("a", 3), ("b", 2))]

    def test_sort_marker_offset_limit(self):
        out = base.paginate(list(self.entries), None, 2, 0, ["size"], ["desc"])
        self.assertEqual([3, 2], [e["size"] for e in out])
        out = base.paginate(list(self.entries), {"source-id": "a"}, None, 0,
                              ["reference"], ["asc"])
        self.assertEqual(["b", "c"], [e["reference"]["source-id"] for e in out])
        out = base.paginate(list(self.entries), None, 1, 1, None, None)
        self.assertEqual(1, len(out))

    def test_unknown_marker_is_refused(self):
        self.assertRaises(exception.InvalidInput, base.paginate, list(self.entries),
                          {"source-id": "zz"}, None, 0, None, None)
