"""Taking turns on one object: claims for creates, held on a shared record.

XAPI's add_to_other_config refuses a key that is there (MAP_DUPLICATE_KEY):
a compare-and-set the whole pool agrees on, whichever host or process asks.
A create holds its object's claim on the target's claim holder (the SR, or
the pool for back ends with an SR per volume) so that concurrent creates of
one id take turns and the second finds what the first made.
"""

from __future__ import annotations

import contextlib
import time
import uuid as uuidlib
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

from oslo_log import log as logging

from xensm_driver import exception
from xensm_driver import identity
from xensm_driver.flows.engine import XensmTask
from xensm_driver.flows.engine import failed
from xensm_driver.flows.engine import outcome_unknown
from xensm_driver.flows.engine import undo
from xensm_driver.flows.engine import unknown
from xensm_driver.flows.target import Target

LOG = logging.getLogger(__name__)


def take_turn(target: Target, cls: str, ref: str, key: str, value: str,
              mine: Callable[[str], bool]) -> None:
    """Add ``key`` to the other_config of ``ref``; wait while somebody else
    holds it, and take it over once its holder's lease ran out.

    ``mine(held)`` says whether a held value is this attempt's own (a lost
    answer to our own add, or an earlier attempt at the same thing).
    """
    storage = target.storage
    deadline = time.monotonic() + target.lease
    delay = 0.02
    while True:
        try:
            storage.add_other_config_key(cls, ref, key, value)
            return
        except exception.XapiConnectionError as exc:
            if not exc.sent:
                raise
            held = storage.other_config(cls, ref).get(key)
            if held is not None and mine(held):
                return                          # the add was carried out
            raise
        except exception.XapiError as exc:
            if exc.code != "MAP_DUPLICATE_KEY":
                raise
        held = storage.other_config(cls, ref).get(key)
        if held is None:
            continue                            # released meanwhile
        if mine(held):
            return
        if identity.marker_age(held) > target.lease or time.monotonic() > deadline:
            # Left by an attempt that died or lost its answers. Two takers
            # may both remove it; the next add lets only one of them in.
            LOG.warning("Taking over %s on %s %s (held: %s).", key, cls, ref, held)
            storage.remove_other_config_key(cls, ref, key)
            deadline = time.monotonic() + target.lease
            continue
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def claim(target: Target, ident: identity.Identity) -> str:
    """Take ``ident``'s claim on the back end's claim holder (its SR, or the
    pool), waiting while another holds it. 1 call. Returns the token."""
    token = "%s %.6f" % (uuidlib.uuid4(), time.time())
    cls, ref = target.claim_holder
    take_turn(target, cls, ref, ident.claim_key, token, mine=lambda held: held == token)
    return token


class ClaimTask(XensmTask):
    """Hold ``ident``'s claim while its storage is made, so that concurrent
    creates of one id take turns: the second finds what the first made
    (IdentifyVdiTask, or a SolidFire maker's lookup by name) instead of
    racing it. 1 call (more while another holds it). Revert gives it back.

    ``keep_when_unknown``: a failure whose outcome is unknown (a call that
    timed out may still be carried out) keeps the claim until its lease
    runs out, and the object's delete takes its turn (:func:`holding_claim`),
    so it finds what such a call made late instead of missing it.
    """

    default_provides = "claim"

    def __init__(self, keep_when_unknown: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keep_when_unknown = keep_when_unknown

    def execute(self, target: Target, ident: identity.Identity) -> str:
        return claim(target, ident)

    def revert(self, target: Target, ident: identity.Identity, result: Any,
               flow_failures: Any = None, **kwargs: Any) -> None:
        if failed(result):
            return
        if self.keep_when_unknown and outcome_unknown(flow_failures):
            _keep_claim(target, ident)
            return
        release_claim(target, ident)


@contextlib.contextmanager
def holding_claim(target: Target, ident: identity.Identity, *,
                  keep_when_unknown: bool = False) -> Iterator[None]:
    """Hold ``ident``'s claim around a verb that is no flow (a SolidFire
    snapshot, a delete), given back as ClaimTask and ReleaseClaimTask do:
    never failing the verb, and kept past a failure whose outcome is
    unknown with ``keep_when_unknown``. 2 calls."""
    claim(target, ident)
    try:
        yield
    except exception.XensmError as exc:
        if keep_when_unknown and unknown(exc):
            _keep_claim(target, ident)
        else:
            release_claim(target, ident)
        raise
    except BaseException:
        release_claim(target, ident)
        raise
    release_claim(target, ident)


def _keep_claim(target: Target, ident: identity.Identity) -> None:
    LOG.warning("%s failed with an outcome unknown (a call that timed out may still "
                "be carried out): its claim %s stays until its lease runs out, so "
                "that a delete or retry sees what that call makes.",
                ident.name_label, ident.claim_key)


class ReleaseClaimTask(XensmTask):
    """Give the claim back once the object is made and identified. 1 call.

    Never fails the verb: once the release may have reached XAPI, the next
    creator of this id may already hold the claim and have been handed our
    object as the one that was there first, so undoing the create would
    pull it from under them. The release is idempotent, so it is tried
    twice; a claim still left is taken over when its lease runs out.
    """

    def execute(self, target: Target, ident: identity.Identity) -> None:
        cls, ref = target.claim_holder
        try:
            target.storage.remove_other_config_key(cls, ref, ident.claim_key)
        except exception.XensmError as exc:
            LOG.warning("Giving back the claim %s on %s %s failed (%s); trying once "
                        "more.", ident.claim_key, cls, ref, exc)
            release_claim(target, ident)


def release_claim(target: Target, ident: identity.Identity) -> None:
    cls, ref = target.claim_holder
    undo("the claim %s on %s %s" % (ident.claim_key, cls, ref),
         target.storage.remove_other_config_key, cls, ref, ident.claim_key)
