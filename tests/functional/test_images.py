"""Image to volume and volume to image through XAPI's data path.

Glance cannot run here, so the image service is a small in-memory one
with the three calls Cinder's GlanceImageService offers the driver
(show, download, update); everything below it is real.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tests.functional import base
from xensm_driver import exception


class ImageStore:
    """Cinder's image service contract, holding images in memory."""

    KEEP = 8 * base.MiB

    def __init__(self) -> None:
        self.images: dict[str, dict[str, Any]] = {}

    def add(self, image_id: str, data: bytes, disk_format: str = "raw") -> None:
        self.images[image_id] = {"id": image_id, "size": len(data),
                                 "disk_format": disk_format, "data": data}

    def show(self, context: Any, image_id: str) -> dict[str, Any]:
        return {k: v for k, v in self.images[image_id].items() if k != "data"}

    def download(self, context: Any, image_id: str) -> Iterable[bytes]:
        data = self.images[image_id]["data"]
        return (data[i:i + base.MiB] for i in range(0, len(data), base.MiB))

    def update(self, context: Any, image_id: str, meta: dict[str, Any],
               data: Iterable[bytes]) -> dict[str, Any]:
        # Streamed as Glance would take it; only the head is kept to compare.
        head, size = bytearray(), 0
        for chunk in data:
            if len(head) < self.KEEP:
                head += chunk[:self.KEEP - len(head)]
            size += len(chunk)
        self.images[image_id] = dict(meta, id=image_id, size=size, data=bytes(head))
        return self.show(context, image_id)


class ImagesMixin:

    def test_image_to_volume_and_back(self: Any) -> None:
        store = ImageStore()
        payload = base.pattern("image", 3 * base.MiB + 123)
        store.add("img-1", payload)
        vol = self.create_volume()
        self.driver.copy_image_to_volume(None, vol, store, "img-1")
        self.assertEqual(payload, self.read(vol, len(payload)))
        meta = self.driver.copy_volume_to_image(None, vol, store,
                                                {"id": "img-2", "disk_format": "raw"})
        self.assertEqual(base.GiB, meta["size"])
        self.assertEqual(payload, store.images["img-2"]["data"][:len(payload)])
        self.assertEqual([], self.driver.pool.call("task.get_all"))

    def test_non_raw_images_are_refused_with_the_fix(self: Any) -> None:
        store = ImageStore()
        store.add("qcow", b"QFI\xfb" + b"\0" * 100, disk_format="qcow2")
        vol = self.create_volume()
        err = self.assertRaises(exception.UnsupportedOperation,
                                self.driver.copy_image_to_volume, None, vol, store, "qcow")
        self.assertIn("qemu-img convert", str(err))

    def test_image_larger_than_volume_is_refused(self: Any) -> None:
        store = ImageStore()
        store.images["big"] = {"id": "big", "size": 2 * base.GiB, "disk_format": "raw",
                               "data": b""}
        self.assertRaises(exception.InvalidInput, self.driver.copy_image_to_volume,
                          None, self.create_volume(), store, "big")


class TestImagesNFS(ImagesMixin, base.DriverTestCase):
    SR_TYPE = "nfs"


class TestImagesSolidFire(ImagesMixin, base.DriverTestCase):
    SR_TYPE = "solidfire"
    SIM_KWARGS = {"solidfire": True}
