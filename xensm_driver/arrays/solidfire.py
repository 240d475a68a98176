"""SolidFire Element JSON-RPC client.

One class, :class:`ElementClient`, with one verb, :meth:`ElementClient.call`,
on a ``requests.Session``: HTTP Basic auth, the API version Cinder uses for
each method, connect and read timeouts, TLS verification as configured.

Element answers errors inside HTTP 200 bodies (``{"error": {"name", "code",
"message"}}``); :meth:`call` turns them into the typed exceptions of
:mod:`xensm_driver.exception`:

- ``*DoesNotExist`` and ``xUnknownAccount`` -> :class:`ArrayNotFound`
- ``xExceededLimit`` and ``xMax*Exceeded`` -> :class:`ArrayLimitExceeded`
- anything else -> :class:`ArrayError`
- no usable answer -> :class:`ArrayConnectionError`, whose ``kwargs["sent"]``
  says whether the request may have been executed (``kwargs["tries"]``: how
  many times it was sent or attempted).

Retries. An error whose name is in :data:`RETRYABLE_ERRORS` means the array
did not do the work, so the call is sent again after an exponential backoff
(``backoff``, ``2*backoff``, ``4*backoff``...; ``retries`` extra tries, as
Cinder's ``@retry`` does). A connection that failed *before* the request
left is retried for every method. A request that may have reached the array
(read timeout, connection dropped, unreadable answer, or an error in
:data:`MAYBE_DONE_ERRORS` such as ``xDBConnectionLoss``) is retried only for
read-only methods; for anything that changes state it is surfaced as
``ArrayConnectionError(sent=True)`` so the caller looks the object up (by
name, for a create) instead of making a second one (LP#1896112).

Secrets. Parameters named like a secret (``password``, ``initiatorSecret``,
``targetSecret``, ``*PairingKey``, CHAP fields) are masked in every log line;
results are never logged (``GetAccountByName`` carries CHAP secrets), and the
values of the call's secrets and the login password are scrubbed from any
text an exception carries.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

import requests
from oslo_log import log as logging

from xensm_driver import exception

LOG = logging.getLogger(__name__)

ARRAY = "SolidFire"

#: API version per method, as Cinder's SolidFire driver sends them; every
#: other method goes to :data:`DEFAULT_API_VERSION`.
DEFAULT_API_VERSION = "1.0"
METHOD_API_VERSIONS: Mapping[str, str] = {
    "ModifyVolume": "5.0",
    "CloneVolume": "6.0",
    "CreateSnapshot": "6.0",
    "DeleteSnapshot": "6.0",
    "ListSnapshots": "6.0",
    "RollbackToSnapshot": "6.0",
    "CreateGroupSnapshot": "7.0",
    "DeleteGroupSnapshot": "7.0",
    "ListGroupSnapshots": "7.0",
    "RollbackToGroupSnapshot": "7.0",
    "CreateVolumeAccessGroup": "7.0",
    "AddInitiatorsToVolumeAccessGroup": "7.0",
    "RemoveInitiatorsFromVolumeAccessGroup": "7.0",
    "AddVolumesToVolumeAccessGroup": "7.0",
    "RemoveVolumesFromVolumeAccessGroup": "7.0",
    "ListVolumeAccessGroups": "7.0",
    "DeleteVolumeAccessGroup": "7.0",
    "ListVolumes": "8.0",
    "GetClusterCapacity": "8.0",
}

#: Element error names that mean "not done, try again later" (Cinder's list,
#: LP#1891914, LP#1934435) -- minus ``xMaxSnapshotsPerVolumeExceeded``: that
#: one is the hard cap of 32 snapshots per volume, which only a snapshot
#: delete lifts; retrying it waits half a minute to fail the same way.
RETRYABLE_ERRORS: frozenset[str] = frozenset({
    "xDBVersionMismatch",
    "xMaxClonesPerVolumeExceeded",
    "xMaxSnapshotsPerNodeExceeded",
    "xMaxClonesPerNodeExceeded",
    "xSliceNotRegistered",
    "xNotReadyForIO",
    "xNotPrimary",
    "xDBOperationTimeout",
    "xDBConnectionLoss",
    "xNoHandler",
    "xSnapshotFailed",
    "xRecvTimeout",
    "xDBNoSuchPath",
    "xPermissionDenied",
    # Named in issue 19 as one Cinder's users met; in neither Cinder's list
    # nor the Element API guide we could search (unverified).
    "xMVIPNotResponding",
})

#: Retryable errors that do not prove the call was *not* acted on. Element's
#: cluster database is a ZooKeeper ensemble, and ZooKeeper's CONNECTIONLOSS
#: and OPERATIONTIMEOUT (KeeperException) say the operation may or may not
#: have been applied; a receive timeout or an MVIP that stopped answering
#: says the same of the node that served the call. Element does not document
#: which (unverified). A read-only call is re-sent after one of them; any
#: other call is surfaced as ArrayConnectionError(sent=True), as a lost
#: answer is, so its caller looks the object up instead of making a second.
MAYBE_DONE_ERRORS: frozenset[str] = frozenset({
    "xDBConnectionLoss",
    "xDBOperationTimeout",
    "xRecvTimeout",
    "xMVIPNotResponding",
})

#: Errors that say "no such object".
NOT_FOUND_ERRORS: frozenset[str] = frozenset({"xUnknownAccount"})

_SECRET_KEY = re.compile(r"(secret|password|passwd|pairingkey|chap)", re.I)
MASK = "***"


def is_not_found(name: str) -> bool:
    return name in NOT_FOUND_ERRORS or name.endswith("DoesNotExist")


def is_limit(name: str) -> bool:
    return name == "xExceededLimit" or (
        name.startswith("xMax") and name.endswith("Exceeded"))


def error_class(name: str) -> type[exception.ArrayError]:
    """The exception class for an Element error name."""
    if is_not_found(name):
        return exception.ArrayNotFound
    if is_limit(name):
        return exception.ArrayLimitExceeded
    return exception.ArrayError


def is_read_only(method: str, params: Mapping[str, Any]) -> bool:
    """Whether sending ``method`` twice does no more than sending it once.

    ``GetAsyncResult`` forgets a finished result unless ``keepResult`` is
    set, so it is read-only only then.
    """
    if method == "GetAsyncResult":
        return bool(params.get("keepResult"))
    return method.startswith(("List", "Get"))


def mask(params: Any) -> Any:
    """A copy of ``params`` with every secret-looking value replaced."""
    if isinstance(params, Mapping):
        return {k: (MASK if _SECRET_KEY.search(str(k)) and v not in (None, "")
                    else mask(v))
                for k, v in params.items()}
    if isinstance(params, (list, tuple)):
        return [mask(v) for v in params]
    return params


def secret_values(params: Any) -> set[str]:
    """Every string value stored under a secret-looking key in ``params``."""
    found: set[str] = set()
    if isinstance(params, Mapping):
        for k, v in params.items():
            if _SECRET_KEY.search(str(k)) and isinstance(v, str) and v:
                found.add(v)
            else:
                found |= secret_values(v)
    elif isinstance(params, (list, tuple)):
        for v in params:
            found |= secret_values(v)
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` replaced by the mask."""
    # Longest first, so a secret containing another is hidden whole.
    for s in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(s, MASK)
    return text


def backoff_delays(retries: int, backoff: float) -> list[float]:
    """The sleeps between tries: ``backoff * 2**n`` for n in 0..retries-1."""
    return [backoff * (2 ** n) for n in range(max(retries, 0))]


def request_was_sent(exc: BaseException) -> bool:
    """Whether a failed ``requests`` call may have reached the server.

    Only a refused or timed-out *connect* proves the request never left;
    everything else (read timeout, connection reset or closed before the
    answer) may have been executed.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        seen: set[int] = set()
        todo: list[Any] = [exc]
        while todo:
            e = todo.pop()
            if not isinstance(e, BaseException) or id(e) in seen:
                continue
            seen.add(id(e))
            name = type(e).__name__
            if name in ("NewConnectionError", "ConnectTimeoutError",
                        "NameResolutionError", "ConnectionRefusedError"):
                return False
            todo.extend([getattr(e, "reason", None), e.__cause__, e.__context__])
            todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return True


class ElementClient:
    """A client for one SolidFire cluster's Element API (its MVIP).

    :param url: ``https://<mvip>[:port]``; ``/json-rpc/<version>`` is added.
    :param timeout: seconds, one number for connect and read, or a
        ``(connect, read)`` pair.
    :param retries: extra tries for a retryable failure.
    :param backoff: the first sleep between tries; it doubles each time.
    """

    def __init__(self, url: str, login: str, password: str, *,
                 verify: bool | str = True,
                 timeout: float | tuple[float, float] = 30.0,
                 retries: int = 5, backoff: float = 1.0,
                 session: requests.Session | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise exception.InvalidInput(
                reason="SolidFire API URL must be http(s)://host[:port], not %r"
                % scrub(url, [password]))
        if parts.username or parts.password:
            raise exception.InvalidInput(
                reason="SolidFire API URL must not carry credentials; "
                       "give the login and password separately")
        netloc = parts.hostname if parts.port is None else "%s:%d" % (
            parts.hostname, parts.port)
        if ":" in parts.hostname:
            netloc = "[%s]" % parts.hostname + (
                "" if parts.port is None else ":%d" % parts.port)
        self.url = "%s://%s" % (parts.scheme, netloc)
        self.array = "%s %s" % (ARRAY, netloc)
        self._auth = (login, password)
        self._password = password
        self.verify = verify
        self.timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self.retries = retries
        self.backoff = backoff
        self._session = session or requests.Session()
        self._own_session = session is None
        self._ids = itertools.count(1)
        self._id_lock = threading.Lock()
        self._sleep: Callable[[float], None] = time.sleep

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    def __enter__(self) -> ElementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def api_version_for(method: str) -> str:
        return METHOD_API_VERSIONS.get(method, DEFAULT_API_VERSION)

    # -- the one verb --------------------------------------------------------

    def call(self, method: str, api_version: str | None = None,
             **params: Any) -> dict[str, Any]:
        """Call ``method`` with ``params`` and return its ``result``.

        Raises :class:`ArrayError` (or a subclass) for an Element error and
        :class:`ArrayConnectionError` when no answer could be read.
        """
        version = api_version or self.api_version_for(method)
        endpoint = "%s/json-rpc/%s" % (self.url, version)
        with self._id_lock:
            req_id = next(self._ids)
        body = json.dumps({"method": method, "params": params, "id": req_id})
        secrets = secret_values(params) | {self._password}
        read_only = is_read_only(method, params)
        delays = backoff_delays(self.retries, self.backoff)
        attempt = 0
        if LOG.isEnabledFor(logging.DEBUG):
            LOG.debug("%s %s (API %s) params=%s", self.array, method, version,
                      json.dumps(mask(params), sort_keys=True))
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                resp = self._session.post(
                    endpoint, data=body, auth=self._auth, verify=self.verify,
                    timeout=self.timeout,
                    headers={"Content-Type": "application/json-rpc"})
            except requests.RequestException as exc:
                sent = request_was_sent(exc)
                detail = scrub("%s: %s" % (type(exc).__name__, exc), secrets)
                if (not sent or read_only) and attempt <= len(delays):
                    self._pause(method, attempt, delays, detail)
                    continue
                if sent:
                    detail += ("; the request may have been executed: look "
                               "the object up before trying again")
                LOG.warning("%s %s: no answer after %d tries (%s)", self.array,
                            method, attempt, type(exc).__name__)
                raise exception.ArrayConnectionError(
                    array=self.array, url=self.url, method=method,
                    detail=detail, sent=sent, tries=attempt) from None

            elapsed = time.monotonic() - started
            try:
                error, result, unused = self._parse(method, resp)
            except exception.ArrayError as exc:
                http_retry = (read_only and resp.status_code >= 500
                              and attempt <= len(delays))
                if http_retry:
                    self._pause(method, attempt, delays, exc.msg)
                    continue
                raise
            if error is None:
                LOG.debug("%s %s answered in %.3fs", self.array, method, elapsed)
                if unused:
                    # Names only: a misspelt parameter is silently ignored
                    # by Element, so say which.
                    LOG.warning("%s %s ignored parameters %s", self.array, method,
                                ", ".join(sorted(unused)))
                return result
            name = str(error.get("name", "")) or "xUnknownError"
            if name in MAYBE_DONE_ERRORS and not read_only:
                LOG.warning("%s %s answered %s, which does not say whether it was "
                            "done: not sending it again", self.array, method, name)
                raise exception.ArrayConnectionError(
                    array=self.array, url=self.url, method=method, sent=True,
                    tries=attempt, name=name,
                    detail="%s: the request may have been executed: look the object "
                           "up before trying again" % name)
            if name in RETRYABLE_ERRORS and attempt <= len(delays):
                self._pause(method, attempt, delays, name)
                continue
            raise self._error(method, error, secrets)

    # -- typed helpers ---------------------------------------------------------

    def get_account_by_name(self, username: str) -> dict[str, Any] | None:
        """The account called ``username``, or None."""
        try:
            return self.call("GetAccountByName", username=username)["account"]
        except exception.ArrayNotFound:
            return None

    def ensure_account(self, username: str) -> dict[str, Any]:
        """The account called ``username``, created if missing.

        A concurrent creator winning the race is fine: the duplicate-name
        refusal is followed by a second lookup.
        """
        account = self.get_account_by_name(username)
        if account is not None:
            return account
        try:
            self.call("AddAccount", username=username)
        except exception.ArrayError as exc:
            if exc.name != "xDuplicateUsername":
                raise
        account = self.get_account_by_name(username)
        if account is None:
            raise exception.ArrayNotFound(
                array=self.array, method="GetAccountByName",
                name="xUnknownAccount",
                detail="account %s vanished right after it was created" % username)
        return account

    def find_volumes_by_name(self, name: str, *, include_deleted: bool = False,
                             account_id: int | None = None) -> list[dict[str, Any]]:
        """Every volume called ``name`` (Element allows duplicates)."""
        params: dict[str, Any] = {"volumeName": name}
        if account_id is not None:
            params["accounts"] = [account_id]
        volumes = self.call("ListVolumes", **params)["volumes"]
        return [v for v in volumes if v.get("name") == name
                and (include_deleted or v.get("status") != "deleted")]

    def find_volume_by_name(self, name: str, *, account_id: int | None = None
                            ) -> dict[str, Any] | None:
        """The one live volume called ``name``, None if there is none.

        More than one is an error for the caller to resolve (a duplicate made
        by some other client): it is raised, not guessed.
        """
        found = self.find_volumes_by_name(name, account_id=account_id)
        if len(found) > 1:
            raise exception.ArrayError(
                array=self.array, method="ListVolumes", name="DuplicateVolumeName",
                detail="%d volumes are called %s: IDs %s" % (
                    len(found), name, sorted(v["volumeID"] for v in found)))
        return found[0] if found else None

    def get_volume_by_id(self, volume_id: int, *, include_deleted: bool = False
                         ) -> dict[str, Any] | None:
        """Volume ``volume_id``, or None if it does not exist.

        ``ListVolumes(startVolumeID=N, limit=1)`` answers the *next* volume
        when N is gone, so the returned ID is checked (LP#1782373).
        """
        volumes = self.call("ListVolumes", startVolumeID=volume_id, limit=1)["volumes"]
        for v in volumes:
            if v.get("volumeID") == volume_id and (
                    include_deleted or v.get("status") != "deleted"):
                return v
        return None

    def list_snapshots(self, volume_id: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if volume_id is not None:
            params["volumeID"] = volume_id
        return list(self.call("ListSnapshots", **params)["snapshots"])

    def wait_async(self, handle: int, timeout: float = 600.0, *,
                   interval: float = 1.0) -> dict[str, Any]:
        """Poll ``GetAsyncResult`` until the job ends or ``timeout`` passes.

        Returns the job's ``result``; a job that completed with an ``error``
        raises it as a typed exception. Polls keep the result on the array
        (``keepResult``), so a lost poll answer can simply be polled again.
        """
        deadline = time.monotonic() + timeout
        delay = min(interval, 0.05)
        while True:
            answer = self.call("GetAsyncResult", asyncHandle=handle, keepResult=True)
            if answer.get("status") == "complete":
                if "error" in answer:
                    raise self._error(
                        "%s (async handle %s)" % (answer.get("resultType", "job"), handle),
                        answer["error"], {self._password})
                return dict(answer.get("result") or {})
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise exception.ArrayError(
                    array=self.array, method="GetAsyncResult", name="AsyncTimeout",
                    detail="%s job %s still %s after %ss" % (
                        answer.get("resultType", "async"), handle,
                        answer.get("status", "running"), timeout))
            self._sleep(min(delay, remaining))
            delay = min(delay * 2, interval)

    # -- internals -------------------------------------------------------------

    def _pause(self, method: str, attempt: int, delays: list[float],
               why: str) -> None:
        delay = delays[attempt - 1]
        LOG.info("%s %s: %s; try %d of %d in %.2fs", self.array, method, why,
                 attempt + 1, len(delays) + 1, delay)
        self._sleep(delay)

    def _parse(self, method: str, resp: requests.Response
               ) -> tuple[dict[str, Any] | None, dict[str, Any], list[str]]:
        """(error, result, unused parameter names) from an HTTP answer.

        Raises for an answer that carries neither.
        """
        if resp.status_code == 401:
            raise exception.ArrayError(
                array=self.array, method=method, name="HTTP401", code=401,
                detail="the array refused the login; check the SolidFire "
                       "login and password options for this back end")
        if resp.status_code != 200:
            raise exception.ArrayError(
                array=self.array, method=method, name="HTTP%d" % resp.status_code,
                code=resp.status_code,
                detail="unexpected HTTP status %d %s" % (resp.status_code, resp.reason))
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            return answer["error"], {}, []
        if isinstance(answer, dict) and isinstance(answer.get("result"), dict):
            unused = answer.get("unusedParameters")
            return None, answer["result"], [str(k) for k in unused or ()]
        # The array answered but we cannot read what it did.
        raise exception.ArrayConnectionError(
            array=self.array, url=self.url, method=method, sent=True,
            detail="unreadable answer (%d bytes); the request may have been "
                   "executed: look the object up before trying again"
                   % len(resp.content))

    def _error(self, method: str, error: Mapping[str, Any],
               secrets: Iterable[str]) -> exception.ArrayError:
        name = str(error.get("name", "")) or "xUnknownError"
        detail = scrub(str(error.get("message", "")), secrets) or "(no message)"
        code = error.get("code", "")
        LOG.debug("%s %s failed with %s (%s)", self.array, method, name, code)
        return error_class(name)(array=self.array, method=method, name=name,
                                 code=code, detail=detail)
