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


class PlugEverywhereTask(common.XensmTask):
    """Make sure every host has the new SR plugged, or fail naming the hosts.

    A shared SR.create returns the SR with a host's PBD unplugged, and
    raises nothing, when that host cannot attach it (xen-api ``xapi_sr.ml``
    ``create`` does not read its ``Async.PBD.plug`` results). Such PBDs are
    plugged once more; a host that still cannot is an error, so the SR is
    undone by the task that made it rather than used half attached (a volume
    on it would attach from some hosts only). Nothing to revert.
    """

    def execute(self, backend: Backend, sr_ref: str) -> None:
        plug_everywhere(backend, sr_ref)


def plug_everywhere(backend: Backend, sr_ref: str) -> None:
    """Plug the SR's unplugged PBDs; SRNotPlugged names the hosts where it
    still is not. 1 call, +1 per unplugged PBD, +2 to name what failed."""
    failed = backend.storage.plug_unplugged(sr_ref)
    if failed:
        names = {h.ref: h.name_label for h in backend.storage.hosts()}
        sr = backend.storage.get_sr(sr_ref)
        raise exception.SRNotPlugged(
            sr="%s (%s)" % (sr.uuid, sr.name_label), backend=backend.name,
            hosts=", ".join(sorted(names.get(h, h) for h in failed)),
            reason="; ".join("%s: %s" % (names.get(h, h), why)
                             for h, why in sorted(failed.items())))


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
    PlugEverywhereTask -> DestroySecretTask per password (the PBDs hold their
    own copies).

    Store: backend, name_label, shared.
    """
    flow = linear_flow.Flow("create_sr")
    for key in secret_keys:
        flow.add(CreateSecretTask(key))
    flow.add(CreateSrTask(requires=["secret_%s" % k for k in secret_keys]),
             PlugEverywhereTask())
    for key in secret_keys:
        flow.add(DestroySecretTask(key))
    return flow
