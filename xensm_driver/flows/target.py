"""What a task acts on: the storage calls, where claims live, and the SR.

A task receives a target, never the Backend that built it (DESIGN.md,
"Layers"): control goes down. A back end builds its target once its SR (or
array) is known and puts it in the flow's store as ``target``.
"""

from __future__ import annotations

import dataclasses

from xensm_driver import exception
from xensm_driver.xapi.storage import Storage


@dataclasses.dataclass(frozen=True)
class Target:
    """The storage of one back end, as the shared tasks need it."""

    storage: Storage
    #: The back end's name and SR type, for messages.
    backend: str
    sr_type: str
    #: ``(XAPI class, ref)`` whose other_config holds the claims of
    #: concurrent creates (flows.claims): one that exists before any object
    #: is made and that every driver instance of the back end sees.
    claim_holder: tuple[str, str]
    #: How long a claim or marker is honoured before it counts as left by
    #: a process that died (see :func:`lease`).
    lease: float

    def refuse(self, operation: str, reason: str) -> exception.UnsupportedOperation:
        """The exception for an operation this back end refuses for a reason."""
        return exception.UnsupportedOperation(
            backend="%s (%s)" % (self.backend, self.sr_type), operation=operation,
            reason=reason)


@dataclasses.dataclass(frozen=True)
class SRTarget(Target):
    """A back end's one SR and what its SM type allows."""

    sr_ref: str
    sr_uuid: str
    #: The SM plugin resizes an attached VDI (VDI_RESIZE_ONLINE).
    online_resize: bool = False
    #: The SR can snapshot a snapshot (EqualLogic cannot).
    snapshot_of_snapshot: bool = True
    #: VHD chain depth at which copies are refused; None: no VHD chain.
    chain_limit: int | None = None


def lease(call_timeout: float, array_timeout: float = 0.0) -> float:
    """How long a claim or marker is honoured: longer than any one call may
    take, with retries -- to XAPI or to the back end's array."""
    return max(30.0, 3 * max(call_timeout, array_timeout))
