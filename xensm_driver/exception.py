"""The exceptions xensm-driver raises.

Every error is an :class:`XensmError` whose message is filled from a
class-level template (the os-brick ``BrickException`` shape), so callers can
both read a complete sentence and act on the keyword arguments, which are kept
on the instance. Conversion from foreign errors (``XenAPI.Failure``, socket
errors, SolidFire Element errors) happens only at the layer boundaries
(``xapi/`` and ``arrays/``); everything above re-raises with bare ``raise``.

Messages never contain secrets: nothing here formats a device_config or an
option value that could be a password.
"""

from __future__ import annotations

from typing import Any


class XensmError(Exception):
    """Root of every error this project raises."""

    message = "An unknown xensm-driver error occurred."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.message % kwargs
            except (KeyError, TypeError, ValueError):
                # A template bug must not hide the real failure: say what we
                # know instead of raising a formatting error in its place.
                message = "%s (%s)" % (
                    self.message.split("%")[0].rstrip(" :(") or type(self).__name__,
                    ", ".join("%s=%r" % kv for kv in sorted(kwargs.items())),
                )
        self.msg = message
        super().__init__(message)


# --- configuration and input -------------------------------------------------

class ConfigError(XensmError):
    """An option is missing, malformed or contradicts another one."""

    message = "Invalid configuration: option %(option)s: %(reason)s"

    @property
    def option(self) -> str:
        return str(self.kwargs.get("option", ""))


class InvalidInput(XensmError):
    message = "Invalid input: %(reason)s"


class UnsupportedOperation(XensmError):
    """The back end cannot do this verb at all, or not for this object.

    Raised before any storage is touched.
    """

    message = "Back end %(backend)s cannot %(operation)s: %(reason)s"


class SnapshotLimitReached(UnsupportedOperation):
    """A volume holds as many snapshots (or as deep a VHD chain) as its back
    end allows: only deleting a snapshot (and, on VHD SRs, the coalesce
    after it) makes room. Raised before the storage is asked."""


# --- objects -----------------------------------------------------------------

class NotFound(XensmError):
    message = "%(kind)s %(name)s was not found."


class VolumeNotFound(NotFound):
    message = "Volume %(volume_id)s has no VDI on SR %(sr_uuid)s."


class SnapshotNotFound(NotFound):
    message = "Snapshot %(snapshot_id)s has no VDI on SR %(sr_uuid)s."


class SRNotFound(NotFound):
    message = "SR %(sr)s was not found on the pool: %(reason)s"


class SRNotPlugged(XensmError):
    """An SR some host of the pool cannot attach (its PBD stays unplugged)."""

    message = ("SR %(sr)s of back end %(backend)s cannot be plugged on %(hosts)s: "
               "%(reason)s. Check that those hosts reach the storage (network, "
               "initiator name, zoning, access group), then retry.")


class LunSrContent(XensmError):
    """A SolidFire volume's SR does not hold exactly its one VDI (``count``)."""

    message = "The SR of volume %(volume_id)s holds %(count)d user VDIs, expected exactly one."


class InUse(XensmError):
    message = "%(kind)s %(name)s is in use: %(reason)s"


class IdentityMismatch(XensmError):
    """The object found is not the one the caller meant (tag mismatch).

    Raised instead of destroying somebody else's VDI.
    """

    message = ("Refusing to %(operation)s VDI %(vdi_uuid)s: it is tagged "
               "%(found)r, not %(expected)r.")


# --- XAPI --------------------------------------------------------------------

class XapiError(XensmError):
    """XAPI answered a call with a failure.

    ``code`` is ErrorDescription[0], ``params`` the rest, ``method`` the XAPI
    method called and ``obj`` the ref or uuid it was about (may be empty).
    """

    message = "XAPI %(method)s%(on)s failed with %(code)s%(params)s%(hint)s"
    hint = ""

    def __init__(self, code: str, params: list[str] | tuple[str, ...] = (),
                 method: str = "", obj: str = "", message: str | None = None) -> None:
        self.code = code
        self.params = list(params)
        self.method = method
        self.obj = obj
        shown = [p for p in self.params if p]
        super().__init__(
            message,
            code=code,
            params=" %s" % shown if shown else "",
            method=method or "call",
            on=" on %s" % obj if obj else "",
            hint=". %s" % self.hint if self.hint else ".",
        )


class SessionInvalid(XapiError):
    hint = "The session expired or was evicted; a new login is needed."


class AuthenticationFailed(XapiError):
    hint = ("Check xenapi_connection_username and xenapi_connection_password "
            "for this back end.")


class HostIsSlave(XapiError):
    hint = "This host is a pool slave; the pool master is at the address given."

    @property
    def master_address(self) -> str:
        return self.params[0] if self.params else ""


class HandleInvalid(XapiError):
    hint = "The object no longer exists (it was destroyed or forgotten)."


class UuidInvalid(XapiError):
    hint = "No object has that uuid."


class XapiInUse(XapiError):
    """VDI_IN_USE, SR_HAS_PBD and friends: detach first, then retry."""

    hint = "Detach it (unplug the VBD or PBD) and retry."


class OperationNotSupported(XapiError):
    hint = "The SR's storage manager plugin does not offer this operation."


class SRBackendFailure(XapiError):
    """``SR_BACKEND_FAILURE_<n>``: the SM plugin failed.

    ``sm_code`` is n, ``sm_name`` the SM error name (``SRNoSpace``) and
    ``sm_text`` the plugin's description.
    """

    def __init__(self, code: str, params: list[str] | tuple[str, ...] = (),
                 method: str = "", obj: str = "", message: str | None = None,
                 sm_name: str = "") -> None:
        self.sm_code = int(code.rsplit("_", 1)[1]) if code[-1:].isdigit() else -1
        self.sm_name = sm_name
        self.sm_text = params[1] if len(params) > 1 else ""
        if message is None:
            message = "XAPI %s%s failed: SM error %d %s: %s" % (
                method or "call", " on %s" % obj if obj else "", self.sm_code,
                sm_name or "(unknown)", self.sm_text or "(no description)")
        super().__init__(code, params, method, obj, message)


class SRNoSpace(SRBackendFailure):
    """SM error 44: the SR has no room for the new VDI, leaf or snapshot."""


class SnapshotChainTooLong(SRBackendFailure):
    """SM error 109: the VHD chain reached its depth limit."""


class XapiConnectionError(XensmError):
    """The pool master could not be reached or the connection broke.

    ``sent`` says whether the request may have reached the server; a call that
    may have been executed is never blindly repeated.
    """

    message = "Cannot reach XAPI at %(url)s for %(method)s: %(reason)s"

    @property
    def sent(self) -> bool:
        return bool(self.kwargs.get("sent", False))


class XapiTimeout(XapiConnectionError):
    message = ("XAPI at %(url)s did not answer %(method)s within %(timeout)ss; "
               "raise xenapi_call_timeout if the pool is slow.")


class PoolExhausted(XapiTimeout):
    message = ("All %(size)s XAPI sessions to %(url)s stayed busy for %(timeout)ss; "
               "raise xenapi_connection_pool_size, or look for calls XAPI is slow to "
               "answer.")


class RevertOutcomeUnknown(XensmError):
    """A revert's last step (destroying the volume's old VDI) lost its
    answer: the revert may yet take effect. Both VDIs are kept, so the
    volume is whole either way; retrying the revert settles it."""

    message = ("Reverting volume %(volume_id)s: destroying its old VDI %(vdi_uuid)s "
               "did not answer (%(reason)s) and may still be carried out. The volume "
               "is whole either way: it is the old VDI until that is gone, then the "
               "snapshot's clone %(clone_uuid)s. Retry the revert to settle it.")


class MoveOutcomeUnknown(XensmError):
    """A migration's last step (destroying the source VDI) lost its answer:
    it may yet take effect. The copy on the destination SR is kept, so the
    volume is whole either way."""

    message = ("Migrating volume %(volume_id)s: destroying its VDI %(vdi_uuid)s on SR "
               "%(sr_uuid)s did not answer (%(reason)s) and may still be carried out. "
               "The volume is whole either way: its copy %(copy_uuid)s on SR "
               "%(dest_sr_uuid)s carries its name and tag. Check which VDIs remain "
               "(xensm reconcile on both back ends) before retrying.")


class TaskTimeout(XensmError):
    message = ("XAPI task %(task)s for %(method)s did not finish within "
               "%(timeout)ss; it was cancelled.")


class TransferError(XensmError):
    message = "Data transfer %(direction)s VDI %(vdi)s failed: %(reason)s"


# --- arrays ------------------------------------------------------------------

class ArrayError(XensmError):
    """A storage array's API answered with an error.

    ``name`` is the array's error name (``xVolumeIDDoesNotExist``), ``code``
    its numeric code, ``method`` the API method.
    """

    message = "%(array)s %(method)s failed with %(name)s (%(code)s): %(detail)s"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("array", "array")
        kwargs.setdefault("code", "")
        kwargs.setdefault("detail", "")
        super().__init__(message, **kwargs)

    @property
    def name(self) -> str:
        return str(self.kwargs.get("name", ""))

    @property
    def method(self) -> str:
        return str(self.kwargs.get("method", ""))


class ArrayNotFound(ArrayError):
    pass


class ArrayLimitExceeded(ArrayError):
    pass


class ArrayConnectionError(ArrayError):
    message = "Cannot reach %(array)s at %(url)s for %(method)s: %(detail)s"


# --- object stores (backups) ---------------------------------------------------

class ObjectStoreError(XensmError):
    """An object store (Swift, S3) refused or failed a request.

    ``store`` names the target (``swift container backups at http://...``),
    ``op`` the request (put, get, delete, list), ``name`` the object.
    """

    message = "%(store)s: %(op)s %(name)s failed: %(reason)s"


class ObjectNotFound(ObjectStoreError):
    message = "%(store)s: object %(name)s does not exist (%(op)s)"


class ObjectStoreUnreachable(ObjectStoreError):
    message = "%(store)s: cannot reach the object store for %(op)s %(name)s: %(reason)s"


class BackupError(XensmError):
    """A backup, restore or backup delete cannot go on; says why and what to do."""

    message = "Backup %(backup)s: %(reason)s"


class BackupCorrupt(BackupError):
    message = ("Backup %(backup)s: chunk %(chunk)s of backup %(holder)s does not match its "
               "sha256 (expected %(expected)s, read %(actual)s); nothing was written past "
               "the chunks before it")

