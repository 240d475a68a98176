"""The one place XAPI failures become typed exceptions.

``XenAPI.Failure`` carries ErrorDescription: ``[code, param, ...]``, every
element a string. :func:`translate` picks the exception class for the code
(``SR_BACKEND_FAILURE_<n>`` by SM number), keeps code and params, and names
the method and the object. Secrets the caller passes are scrubbed from the
parameters, should XAPI ever echo one.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence

from xensm_driver import exception
from xensm_driver.xapi.sm_errors import SM_ERRORS

_BY_CODE: dict[str, type[exception.XapiError]] = {
    "SESSION_INVALID": exception.SessionInvalid,
    "SESSION_AUTHENTICATION_FAILED": exception.AuthenticationFailed,
    "HOST_IS_SLAVE": exception.HostIsSlave,
    "HANDLE_INVALID": exception.HandleInvalid,
    "UUID_INVALID": exception.UuidInvalid,
    "VDI_IN_USE": exception.XapiInUse,
    "SR_HAS_PBD": exception.XapiInUse,
    "SR_DEVICE_IN_USE": exception.XapiInUse,
    "SR_NOT_EMPTY": exception.XapiInUse,
    "SR_OPERATION_NOT_SUPPORTED": exception.OperationNotSupported,
    "VDI_MISSING": exception.HandleInvalid,
}

_BY_SM_CODE: dict[int, type[exception.SRBackendFailure]] = {
    44: exception.SRNoSpace,
    109: exception.SnapshotChainTooLong,
}

SR_BACKEND_FAILURE = "SR_BACKEND_FAILURE_"


def translate(details: Sequence[str], method: str = "", obj: str = "",
              secrets: Iterable[str] = ()) -> exception.XapiError:
    """The typed exception for an ErrorDescription list."""
    hidden = [s for s in secrets if s]
    parts = [_scrub(str(p), hidden) for p in details] or ["UNKNOWN"]
    code, params = parts[0], parts[1:]
    if code.startswith(SR_BACKEND_FAILURE):
        number = code[len(SR_BACKEND_FAILURE):]
        sm_code = int(number) if number.isdigit() else -1
        name, _description = SM_ERRORS.get(sm_code, ("", ""))
        cls = _BY_SM_CODE.get(sm_code, exception.SRBackendFailure)
        return cls(code, params, method=method, obj=obj, sm_name=name)
    return _BY_CODE.get(code, exception.XapiError)(code, params, method=method, obj=obj)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
