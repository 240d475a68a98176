"""Creating a back end's SR when it does not exist yet (do_setup)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING
from typing import Any

from oslo_log import log as logging
from taskflow.patterns import linear_flow

from xensm_driver import exception
from xensm_driver.flows import common

if TYPE_CHECKING:
    from xensm_driver.backends.base import Backend

LOG = logging.getLogger(__name__)


class CreateSecretTask(common.XensmTask):
    """Store one device_config password as an XAPI secret; revert deletes it.

    Provides ``secret_<key>``: the secret's uuid.
    """

    def __init__(self, key: str, **kwargs: Any) -> None:
        super().__init__(name="CreateSecretTask:%s" % key,
                         provides="secret_%s" % key, **kwargs)
        self.key = key

    def execute(self, backend: Backend) -> str:
        return backend.storage.create_secret(
            backend.secret_values()[self.key],
            purpose="%s device_config %s" % (backend.name, self.key))

    def revert(self, backend: Backend, result: Any, **kwargs: Any) -> None:
        if common._failed(result):
            return
        with contextlib.suppress(exception.XensmError):
            backend.storage.destroy_secret(result)


class CreateSrTask(common.XensmTask):
    """SR.create on the pool master (PBDs on every host when shared)."""

    default_provides = "sr_ref"

    def execute(self, backend: Backend, name_label: str, shared: bool,
                **secret_uuids: str) -> str:
        secrets = {name[len("secret_"):]: uuid for name, uuid in secret_uuids.items()}
        master = backend.storage.master()
        return backend.storage.create_sr(
            master.ref, backend.device_config(secrets), backend.SR_TYPE, name_label,
            shared=shared,
            name_description="Cinder volumes of back end %s (xensm-driver)" % backend.name)

    def revert(self, backend: Backend, result: Any, **kwargs: Any) -> None:
        if common._failed(result):
            return
        try:
            backend.storage.destroy_sr(result)
        except exception.XensmError as exc:
            LOG.error("Could not destroy SR %s while undoing its creation: %s",
                      result, exc)


class DestroySecretTask(common.XensmTask):
    """Delete the secret CreateSecretTask made, once the SR exists.

    XAPI gives every PBD its own copy of a ``*password_secret``
    (xen-api ``xapi_pbd.ml`` ``duplicate_passwds``) and SR.forget/destroy
    delete only those copies, so the driver's own would outlive the SR.
    The last task: nothing after it can fail and need the secret back. A
    failure to delete is logged, not raised: the SR is made and usable.
    """

    def __init__(self, key: str, **kwargs: Any) -> None:
        super().__init__(name="DestroySecretTask:%s" % key,
                         requires=["secret_%s" % key], **kwargs)
        self.key = key

    def execute(self, backend: Backend, **secret_uuid: str) -> None:
        uuid = secret_uuid["secret_%s" % self.key]
        try:
            backend.storage.destroy_secret(uuid)
        except exception.XensmError as exc:
            LOG.warning("Could not delete secret %s (device_config %s of back end %s) "
                        "after the SR was made: %s", uuid, self.key, backend.name, exc)


def create_sr(secret_keys: list[str]) -> linear_flow.Flow:
    """create_sr: CreateSecretTask per password -> CreateSrTask ->
    DestroySecretTask per password (the PBDs hold their own copies).

    Store: backend, name_label, shared.
    """
    flow = linear_flow.Flow("create_sr")
    for key in secret_keys:
        flow.add(CreateSecretTask(key))
    flow.add(CreateSrTask(requires=["secret_%s" % k for k in secret_keys]))
    for key in secret_keys:
        flow.add(DestroySecretTask(key))
    return flow
