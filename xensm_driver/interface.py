"""The Cinder volume-driver contract, without importing Cinder.

:class:`VolumeDriver` has the names and signatures of Cinder's
``cinder.interface.volume_driver.VolumeDriverCore``, the optional
interfaces (manage, list-manageable, snapshot revert, groups) and the
lifecycle members cinder-volume's manager calls on any driver object
(``init_capabilities``, ``set_throttle``, ``set_initialized``, ...). Verbs a
driver does not offer raise ``NotImplementedError``, as Cinder's ``BaseVD``
does, so Cinder falls back to its generic code where it has one.

Cinder builds a driver as ``import_object(volume_driver, configuration=...,
host=..., cluster_name=..., is_vol_db_empty=..., active_backend_id=...)``
(cinderlib adds ``db=``), so ``__init__`` takes keywords it may not use.
"""

from __future__ import annotations

from typing import Any

from oslo_log import log as logging

from xensm_driver import config

LOG = logging.getLogger(__name__)


class VolumeDriver:
    """Base of xensm-driver's volume drivers: Cinder's contract and lifecycle."""

    VERSION = "0.0.0"
    SUPPORTED = True
    SUPPORTS_ACTIVE_ACTIVE = False
    CI_WIKI_NAME = "xensm-driver_CI"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        configuration = kwargs.get("configuration")
        if configuration is None:
            configuration = config.Configuration([], config_group=None)
        self.configuration = configuration
        config.register(self.configuration)
        self.host: str | None = kwargs.get("host")
        self.cluster_name: str | None = kwargs.get("cluster_name")
        self.db = kwargs.get("db")
        self.active_backend_id: str | None = kwargs.get("active_backend_id")
        self.capabilities: dict[str, Any] = {}
        self._stats: dict[str, Any] = {}
        self._initialized = False
        self._throttle: Any = None

    # -- lifecycle (cinder-volume's manager calls these on any driver) -------

    @staticmethod
    def get_driver_options() -> list[Any]:
        from xensm_driver import opts
        return list(opts.ALL_OPTS)

    def get_version(self) -> str:
        return self.VERSION

    def set_initialized(self) -> None:
        self._initialized = True

    @property
    def initialized(self) -> bool:
        return self._initialized

    @property
    def supported(self) -> bool:
        return self.SUPPORTED

    def set_throttle(self) -> None:
        # Data never flows through the cinder-volume host (XAPI moves it
        # inside the pool), so there is no copy bandwidth to throttle.
        self._throttle = None

    def init_capabilities(self) -> None:
        stats = self.get_volume_stats(True)
        if stats:
            self.capabilities = dict(stats)
        self.capabilities.setdefault("properties", {})

    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        if not self._stats or refresh:
            self._update_volume_stats()
        return self._stats

    def _update_volume_stats(self) -> None:
        raise NotImplementedError()

    def get_filter_function(self) -> str | None:
        return self.configuration.safe_get("filter_function")

    def get_goodness_function(self) -> str | None:
        return self.configuration.safe_get("goodness_function")

    def get_default_filter_function(self) -> str | None:
        return None

    def get_default_goodness_function(self) -> str | None:
        return None

    def validate_connector(self, connector: dict[str, Any]) -> None:
        return None

    def update_provider_info(self, volumes: list[Any],
                             snapshots: list[Any]) -> tuple[Any, Any]:
        return None, None

    def secure_file_operations_enabled(self) -> bool:
        return False

    def snapshot_revert_use_temp_snapshot(self) -> bool:
        # cinder-volume asks before every revert. A revert copies the
        # snapshot over the volume, so a copy that fails half way would lose
        # data: let Cinder keep a backup snapshot meanwhile (BaseVD's answer).
        return True

    @classmethod
    def clean_volume_file_locks(cls, volume_id: str) -> None:
        # cinder-volume calls this after a volume is deleted. The driver
        # takes no file locks of its own (XAPI serialises SR operations).
        return None

    @classmethod
    def clean_snapshot_file_locks(cls, snapshot_id: str) -> None:
        # As clean_volume_file_locks, after a snapshot is deleted.
        return None

    def accept_transfer(self, context: Any, volume: Any, new_user: str,
                        new_project: str) -> dict[str, Any] | None:
        # A volume transferred to another project stays the same VDI.
        return None

    # -- VolumeDriverCore -----------------------------------------------------

    def do_setup(self, context: Any) -> None:
        return None

    def check_for_setup_error(self) -> None:
        return None

    def create_volume(self, volume: Any) -> dict[str, Any] | None:
        raise NotImplementedError()

    def delete_volume(self, volume: Any) -> None:
        raise NotImplementedError()

    def initialize_connection(self, volume: Any, connector: dict[str, Any],
                              initiator_data: Any = None) -> dict[str, Any]:
        raise NotImplementedError()

    def terminate_connection(self, volume: Any, connector: dict[str, Any] | None,
                             **kwargs: Any) -> None:
        raise NotImplementedError()

    def clone_image(self, context: Any, volume: Any, image_location: Any,
                    image_meta: Any, image_service: Any) -> tuple[Any, bool]:
        return None, False

    def copy_image_to_volume(self, context: Any, volume: Any, image_service: Any,
                             image_id: Any, disable_sparse: bool = False) -> None:
        raise NotImplementedError()

    def copy_volume_to_image(self, context: Any, volume: Any, image_service: Any,
                             image_meta: Any) -> Any:
        raise NotImplementedError()

    def before_volume_copy(self, context: Any, src_vol: Any, dest_vol: Any,
                           remote: Any = None) -> None:
        return None

    def after_volume_copy(self, context: Any, src_vol: Any, dest_vol: Any,
                          remote: Any = None) -> None:
        return None

    def extend_volume(self, volume: Any, new_size: int) -> None:
        raise NotImplementedError()

    def migrate_volume(self, context: Any, volume: Any, host: Any) -> tuple[bool, Any]:
        return False, None

    def update_migrated_volume(self, ctxt: Any, volume: Any, new_volume: Any,
                               original_volume_status: Any) -> dict[str, Any]:
        raise NotImplementedError()

    def retype(self, context: Any, volume: Any, new_type: Any, diff: Any,
               host: Any) -> Any:
        return False, None

    def create_snapshot(self, snapshot: Any) -> dict[str, Any] | None:
        raise NotImplementedError()

    def delete_snapshot(self, snapshot: Any) -> None:
        raise NotImplementedError()

    def create_volume_from_snapshot(self, volume: Any,
                                    snapshot: Any) -> dict[str, Any] | None:
        raise NotImplementedError()

    # -- BaseVD: not in VolumeDriverCore but called by Cinder's create flow --

    def create_cloned_volume(self, volume: Any, src_vref: Any) -> dict[str, Any] | None:
        raise NotImplementedError()

    def create_export(self, context: Any, volume: Any,
                      connector: Any) -> dict[str, Any] | None:
        return None

    def ensure_export(self, context: Any, volume: Any) -> dict[str, Any] | None:
        return None

    def remove_export(self, context: Any, volume: Any) -> None:
        return None

    # -- VolumeSnapshotRevertDriver -------------------------------------------

    def revert_to_snapshot(self, context: Any, volume: Any,
                           snapshot: Any) -> dict[str, Any] | None:
        raise NotImplementedError()

    # -- VolumeManagementDriver / VolumeListManageableDriver ------------------

    def manage_existing(self, volume: Any, existing_ref: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError()

    def manage_existing_get_size(self, volume: Any, existing_ref: dict[str, Any]) -> int:
        raise NotImplementedError()

    def unmanage(self, volume: Any) -> None:
        raise NotImplementedError()

    def get_manageable_volumes(self, cinder_volumes: list[Any], marker: Any,
                               limit: int, offset: int, sort_keys: list[str],
                               sort_dirs: list[str]) -> list[dict[str, Any]]:
        return []

    def manage_existing_snapshot(self, snapshot: Any,
                                 existing_ref: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError()

    def manage_existing_snapshot_get_size(self, snapshot: Any,
                                          existing_ref: dict[str, Any]) -> int:
        raise NotImplementedError()

    def unmanage_snapshot(self, snapshot: Any) -> None:
        raise NotImplementedError()

    def get_manageable_snapshots(self, cinder_snapshots: list[Any], marker: Any,
                                 limit: int, offset: int, sort_keys: list[str],
                                 sort_dirs: list[str]) -> list[dict[str, Any]]:
        return []

    # -- VolumeGroupDriver ----------------------------------------------------

    def create_group(self, context: Any, group: Any) -> dict[str, Any]:
        raise NotImplementedError()

    def delete_group(self, context: Any, group: Any, volumes: list[Any]) -> Any:
        raise NotImplementedError()

    def update_group(self, context: Any, group: Any, add_volumes: Any = None,
                     remove_volumes: Any = None) -> Any:
        raise NotImplementedError()

    def create_group_from_src(self, context: Any, group: Any, volumes: list[Any],
                              group_snapshot: Any = None, snapshots: Any = None,
                              source_group: Any = None, source_vols: Any = None) -> Any:
        raise NotImplementedError()

    def create_group_snapshot(self, context: Any, group_snapshot: Any,
                              snapshots: list[Any]) -> Any:
        raise NotImplementedError()

    def delete_group_snapshot(self, context: Any, group_snapshot: Any,
                              snapshots: list[Any]) -> Any:
        raise NotImplementedError()
