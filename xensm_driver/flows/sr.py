"""Tasks on SRs that every family shares."""

from __future__ import annotations

from oslo_log import log as logging

from xensm_driver import exception
from xensm_driver.flows.engine import XensmTask
from xensm_driver.flows.target import Target

LOG = logging.getLogger(__name__)


class PlugEverywhereTask(XensmTask):
    """Make sure every host has the new SR plugged, or fail naming the hosts.

    A shared SR.create returns the SR with a host's PBD unplugged, and
    raises nothing, when that host cannot attach it (xen-api ``xapi_sr.ml``
    ``create`` does not read its ``Async.PBD.plug`` results). Such PBDs are
    plugged once more; a host that still cannot is an error, so the SR is
    undone by the task that made it rather than used half attached (a volume
    on it would attach from some hosts only). Nothing to revert.
    """

    def execute(self, target: Target, sr_ref: str) -> None:
        plug_everywhere(target, sr_ref)


def plug_everywhere(target: Target, sr_ref: str) -> None:
    """Plug the SR's unplugged PBDs; SRNotPlugged names the hosts where it
    still is not. 1 call, +1 per unplugged PBD, +2 to name what failed."""
    failed = target.storage.plug_unplugged(sr_ref)
    if failed:
        names = {h.ref: h.name_label for h in target.storage.hosts()}
        sr = target.storage.get_sr(sr_ref)
        raise exception.SRNotPlugged(
            sr="%s (%s)" % (sr.uuid, sr.name_label), backend=target.backend,
            hosts=", ".join(sorted(names.get(h, h) for h in failed)),
            reason="; ".join("%s: %s" % (names.get(h, h), why)
                             for h, why in sorted(failed.items())))
