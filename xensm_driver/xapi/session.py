"""A bounded pool of logged-in XAPI sessions, safe to share between threads.

The ``XenAPI`` SDK gives one ``Session`` (an ``xmlrpc.client.ServerProxy``)
that is not thread-safe, has no timeouts, does not follow ``HOST_IS_SLAVE``
and, through ``xmlrpc.client.Transport.request``, silently re-sends a request
once when a kept-alive connection breaks -- which would repeat a write that
XAPI may already have carried out. This module fixes each of those:

* :class:`SessionPool` lends one logged-in session to one caller at a time,
  creates them lazily up to ``size``, reuses them (no login per operation)
  and logs them out on :meth:`SessionPool.close`.
* :class:`_Transport` sets a connect timeout and a per-call timeout, verifies
  TLS (or says once, loudly, that it does not), never re-sends on its own,
  tells apart "never left this host" from "may have been executed", and
  counts every request on the wire by XAPI method.
* :meth:`SessionPool.call` follows ``HOST_IS_SLAVE`` to the master, lets the
  SDK re-login on ``SESSION_INVALID``, retries with backoff only what is safe
  to repeat, and turns every failure into a typed exception.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import http.client
import re
import select
import socket
import ssl
import threading
import time
import urllib.parse
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import XenAPI
from oslo_log import log as logging

from xensm_driver import exception
from xensm_driver.xapi import errors

LOG = logging.getLogger(__name__)

#: Methods without a ``get_`` prefix that only read.
_READ_ONLY = frozenset({
    "event.from", "event_from", "SR.probe", "SR.probe_ext", "SR.scan",
    "session.login_with_password", "session.logout",
})

#: Task states in which the operation is still under way ("cancelling":
#: asked to stop, still holding what it holds).
RUNNING = ("pending", "cancelling")

_METHOD_RE = re.compile(rb"<methodName>([^<]+)</methodName>")


def is_read_only(method: str) -> bool:
    """True for XAPI calls that are safe to repeat after a broken connection.

    ``SR.scan`` only reconciles records with storage, so repeating it is
    harmless; everything else that is not a getter may change state.
    """
    return method in _READ_ONLY or method.rsplit(".", 1)[-1].startswith("get_")


class CallCounter:
    """Thread-safe count of XAPI requests by method, as sent on the wire."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def add(self, method: str) -> None:
        with self._lock:
            self._counts[method] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


#: Every request this process sends, whichever pool sends it.
PROCESS_COUNTER = CallCounter()


class _WireFailure(Exception):
    """A request's connection failed; ``cause`` is the socket-level error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(_describe(cause))
        self.cause = cause
        self.reason = _describe(cause)


class _NotSent(_WireFailure):
    """The connection failed before any byte of the request left."""


class _MaybeSent(_WireFailure):
    """The request was sent and its answer never came."""


class _Transport(xmlrpc.client.Transport):
    """An XML-RPC transport with timeouts, TLS and no blind re-send."""

    def __init__(self, *, tls_context: ssl.SSLContext | None,
                 connect_timeout: float, call_timeout: float,
                 counters: tuple[CallCounter, ...]) -> None:
        super().__init__()
        self._tls_context = tls_context
        self._connect_timeout = connect_timeout
        self._call_timeout = call_timeout
        self._counters = counters

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._connection and host == self._connection[0]:
            cached = self._connection[1]
            assert cached is not None
            if cached.sock is None or not _peer_closed(cached.sock):
                return cached
            # The server closed this kept-alive connection while it was idle:
            # open a new one instead of finding out by losing a request.
            self.close()
        chost, self._extra_headers, _x509 = self.get_host_info(host)
        conn: http.client.HTTPConnection
        if self._tls_context is not None:
            conn = http.client.HTTPSConnection(
                chost, timeout=self._connect_timeout, context=self._tls_context)
        else:
            conn = http.client.HTTPConnection(chost, timeout=self._connect_timeout)
        self._connection = host, conn
        return conn

    def request(self, host: Any, handler: str, request_body: Any,
                verbose: bool = False) -> Any:
        match = _METHOD_RE.search(bytes(request_body[:512]))
        method = match.group(1).decode() if match else "?"
        for counter in self._counters:
            counter.add(method)
        conn = self.make_connection(host)
        if conn.sock is None:
            try:
                conn.connect()
            except OSError as exc:
                self.close()
                raise _NotSent(exc) from exc
        assert conn.sock is not None
        conn.sock.settimeout(self._call_timeout)
        # Exactly one attempt: the base class would re-send once on a reset
        # connection, repeating a call XAPI may have carried out.
        return self.single_request(host, handler, request_body, verbose)


def _peer_closed(sock: socket.socket) -> bool:
    """True if an idle connection is readable, i.e. the peer closed it."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _tls_context(url: urllib.parse.SplitResult, verify: bool,
                 ca_bundle: str | None) -> ssl.SSLContext | None:
    if url.scheme != "https":
        return None
    if not verify:
        LOG.warning("TLS certificate verification is OFF for XAPI at %s "
                    "(xenapi_verify_tls = false): anyone on the network path "
                    "can read the XAPI password.", url.hostname)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_bundle)


class SessionPool:
    """Logged-in XAPI sessions, lent to one caller at a time.

    ``call("VDI.get_record", ref)`` is the whole API for most callers;
    :meth:`session` lends a raw session for the HTTP data path, which needs
    the session ref.
    """

    #: How many HOST_IS_SLAVE hops one login may follow.
    MAX_REDIRECTS = 3

    def __init__(self, url: str, username: str, password: str, *,
                 size: int = 4, call_timeout: float = 120.0,
                 connect_timeout: float = 10.0, verify_tls: bool = True,
                 ca_bundle: str | None = None, retries: int = 3,
                 backoff: float = 0.5, originator: str = "xensm-driver",
                 acquire_timeout: float | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise exception.ConfigError(
                option="xenapi_connection_url",
                reason="%r is not an http:// or https:// URL" % url)
        if size < 1:
            raise exception.ConfigError(option="xenapi_connection_pool_size",
                                        reason="must be at least 1")
        self._url = parsed
        self._username = username
        self._password = password
        self._size = size
        self._call_timeout = call_timeout
        self._connect_timeout = connect_timeout
        self._tls = _tls_context(parsed, verify_tls, ca_bundle)
        self._requests_verify: bool | str = (ca_bundle or True) if verify_tls else False
        self._retries = retries
        self._backoff = backoff
        self._originator = originator
        self._acquire_timeout = (acquire_timeout if acquire_timeout is not None
                                 else call_timeout + connect_timeout)
        self.counter = CallCounter()
        self._cond = threading.Condition()
        self._idle: list[XenAPI.Session] = []
        self._lent = 0
        self._closed = False

    # -- public ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL sessions are opened against (the master, once known)."""
        return urllib.parse.urlunsplit(self._url)

    @property
    def size(self) -> int:
        return self._size

    def call(self, method: str, *args: Any, obj: str = "") -> Any:
        """Call ``method`` (``"VDI.create"``) with ``args``; return its Value.

        ``obj`` names the object the call is about, for error messages.
        """
        attempt = 0
        redirects = 0
        while True:
            try:
                with self.session() as sess:
                    return self._call_once(sess, method, args, obj)
            except exception.HostIsSlave as exc:
                # The host we talk to was demoted; the call did not run.
                redirects += 1
                if redirects > self.MAX_REDIRECTS:
                    raise
                self._follow_master(exc.master_address)
            except _WireFailure as exc:
                attempt += 1
                safe = isinstance(exc, _NotSent) or is_read_only(method)
                if not safe or attempt > self._retries:
                    raise self._connection_error(method, exc) from None
                delay = self._backoff * (2 ** (attempt - 1))
                LOG.warning("XAPI %s: %s; retrying in %.2fs (%d/%d)", method,
                            exc.reason, delay, attempt, self._retries)
                time.sleep(delay)

    def call_async(self, method: str, *args: Any, obj: str = "",
                   timeout: float = 3600.0) -> Any:
        """Run ``Async.<method>`` and wait for its task, with a deadline.

        Returns the task's decoded result; see :meth:`wait_task`.
        """
        task = self.call("Async." + method, *args, obj=obj)
        return self.wait_task(task, method, obj=obj, timeout=timeout)

    def wait_task(self, task: str, method: str, *, obj: str = "",
                  timeout: float = 3600.0) -> Any:
        """Poll ``task`` until it ends; return its result or raise its error.

        The task is destroyed afterwards. Past the deadline it is cancelled
        and :class:`~xensm_driver.exception.TaskTimeout` raised.
        """
        deadline = time.monotonic() + timeout
        delay = 0.02
        try:
            while True:
                # The record holds status, result and error_info: one call a
                # poll, and none more once the task has ended.
                record = self.call("task.get_record", task, obj=task)
                status = record.get("status")
                if status not in RUNNING:
                    break
                if time.monotonic() >= deadline:
                    with contextlib.suppress(exception.XensmError):
                        self.call("task.cancel", task, obj=task)
                    raise exception.TaskTimeout(task=task, method=method,
                                                timeout=timeout)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            if status == "success":
                return decode_task_result(record.get("result", ""))
            info = record.get("error_info")
            raise errors.translate(info or [str(status).upper()], method, obj,
                                   secrets=[self._password])
        finally:
            with contextlib.suppress(exception.XensmError):
                self.call("task.destroy", task, obj=task)

    @property
    def tls_verify(self) -> bool | str:
        """What ``requests`` should verify the master's certificate with."""
        return self._requests_verify

    @contextlib.contextmanager
    def session(self) -> Iterator[XenAPI.Session]:
        """Lend a logged-in session; it goes back to the pool afterwards.

        A session whose connection broke is logged out and dropped, not
        returned.
        """
        sess = self._acquire()
        healthy = False
        try:
            yield sess
            healthy = True
        except exception.XapiError:
            healthy = True          # XAPI answered: the session is fine.
            raise
        finally:
            self._release(sess, healthy)

    def session_ref(self, sess: XenAPI.Session) -> str:
        """The opaque ref of a lent session (for the HTTP data path)."""
        return str(sess._session)

    def close(self) -> None:
        """Log out every idle session; lent ones are logged out on return."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for sess in idle:
            self._logout(sess)

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- lending --------------------------------------------------------------

    def _acquire(self) -> XenAPI.Session:
        deadline = time.monotonic() + self._acquire_timeout
        with self._cond:
            while True:
                if self._closed:
                    raise exception.XensmError("The XAPI session pool is closed.")
                if self._idle:
                    self._lent += 1
                    return self._idle.pop()
                if self._lent + len(self._idle) < self._size:
                    self._lent += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise exception.PoolExhausted(
                        url=self._safe_url(), size=self._size,
                        timeout=self._acquire_timeout)
                self._cond.wait(remaining)
        try:
            return self._login()
        except BaseException:
            with self._cond:
                self._lent -= 1
                self._cond.notify()
            raise

    def _release(self, sess: XenAPI.Session, healthy: bool) -> None:
        with self._cond:
            self._lent -= 1
            keep = healthy and not self._closed and sess._session is not None
            if keep:
                self._idle.append(sess)
            self._cond.notify()
        if not keep:
            self._logout(sess)

    # -- sessions -------------------------------------------------------------

    def _new_sdk_session(self) -> XenAPI.Session:
        transport = _Transport(
            tls_context=self._tls, connect_timeout=self._connect_timeout,
            call_timeout=self._call_timeout,
            counters=(self.counter, PROCESS_COUNTER))
        return XenAPI.Session(self.url, transport=transport)

    def _login(self) -> XenAPI.Session:
        method = "session.login_with_password"
        attempt = 0
        redirects = 0
        while True:
            sess = self._new_sdk_session()
            try:
                sess.login_with_password(self._username, self._password,
                                         "1.0", self._originator)
                return sess
            except XenAPI.Failure as failure:
                err = errors.translate(failure.details, method,
                                       self._safe_url(), secrets=[self._password])
                if not isinstance(err, exception.HostIsSlave):
                    raise err from None
                redirects += 1
                if redirects > self.MAX_REDIRECTS:
                    raise err from None
                self._follow_master(err.master_address)
            except _NotSent as exc:
                attempt += 1
                if attempt > self._retries:
                    raise self._connection_error(method, exc) from None
                time.sleep(self._backoff * (2 ** (attempt - 1)))
            except (OSError, http.client.HTTPException, xmlrpc.client.Error) as exc:
                # A login may be repeated safely: at worst XAPI holds one more
                # session until it expires.
                attempt += 1
                if attempt > self._retries:
                    raise self._connection_error(method, _MaybeSent(exc)) from None
                time.sleep(self._backoff * (2 ** (attempt - 1)))

    def _call_once(self, sess: XenAPI.Session, method: str, args: tuple[Any, ...],
                   obj: str) -> Any:
        try:
            return sess.xenapi_request(method, args)
        except XenAPI.Failure as failure:
            raise errors.translate(failure.details, method, obj,
                                   secrets=[self._password]) from None
        except _NotSent:
            raise
        except xmlrpc.client.Fault as fault:
            # The SDK's own re-login gave up (three SESSION_INVALID in a row)
            # or the server sent a non-XAPI fault.
            code = "SESSION_INVALID" if "session" in fault.faultString else "INTERNAL_ERROR"
            raise errors.translate([code, fault.faultString], method, obj,
                                   secrets=[self._password]) from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            # Sent, and then the connection broke or timed out: XAPI may have
            # carried the call out. The lent session is dropped (its socket is
            # in an unknown state) by the caller's context manager.
            raise _MaybeSent(exc) from None

    def _follow_master(self, address: str) -> None:
        if not address:
            raise exception.XapiError("HOST_IS_SLAVE", [], obj=self._safe_url(),
                                      message="XAPI answered HOST_IS_SLAVE "
                                      "without naming the master.")
        with self._cond:
            old = self._url
            host = address if ":" not in address or address.startswith("[") else "[%s]" % address
            netloc = host if old.port is None else "%s:%d" % (host, old.port)
            self._url = old._replace(netloc=netloc)
            stale, self._idle = self._idle, []
        LOG.info("XAPI at %s is a pool slave; using the pool master at %s.",
                 old.hostname, address)
        for sess in stale:
            self._logout(sess)

    #: Seconds a logout may wait for its answer (connecting still takes up
    #: to the connect timeout): it is a courtesy (XAPI expires sessions),
    #: and a session is dropped mostly because XAPI stopped answering.
    LOGOUT_TIMEOUT = 5.0

    def _logout(self, sess: XenAPI.Session) -> None:
        if sess._session is None:
            return
        transport = sess.transport
        if isinstance(transport, _Transport):
            transport.close()       # a fresh connection, whatever state it was in
            transport._call_timeout = min(transport._call_timeout, self.LOGOUT_TIMEOUT)
        try:
            sess.xenapi.session.logout()
        except Exception as exc:  # noqa: BLE001 - best effort, nothing to undo
            LOG.debug("XAPI logout failed (ignored): %s", _describe(exc))
        finally:
            sess._session = None

    def _safe_url(self) -> str:
        return "%s://%s" % (self._url.scheme, self._url.netloc)

    def _connection_error(self, method: str, exc: _WireFailure) -> exception.XensmError:
        sent = isinstance(exc, _MaybeSent)
        if isinstance(exc.cause, (socket.timeout, TimeoutError)):
            return exception.XapiTimeout(
                url=self._safe_url(), method=method, sent=sent,
                timeout=self._call_timeout if sent else self._connect_timeout)
        reason = exc.reason
        if sent and not is_read_only(method):
            reason += ("; the call may have been carried out, so it was not "
                       "repeated")
        return exception.XapiConnectionError(url=self._safe_url(), method=method,
                                             reason=reason, sent=sent)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        # Its errno is the TLS library's own code, not an OS errno (1 would
        # read as EPERM).
        if exc.reason == "WRONG_VERSION_NUMBER":
            return ("the server did not answer TLS (is it plain HTTP? then use an "
                    "http:// URL)")
        return "TLS failed: %s" % (exc.reason or exc)
    if isinstance(exc, OSError) and exc.errno:
        return "%s (%s)" % (exc.strerror or type(exc).__name__,
                            errno.errorcode.get(exc.errno, exc.errno))
    return "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__


def decode_task_result(result: str) -> Any:
    """Decode a task's result, an XML-RPC ``<value>`` string, to Python."""
    if not result:
        return ""
    body = ("<?xml version='1.0'?><methodResponse><params><param>%s"
            "</param></params></methodResponse>" % result)
    (value,), _ = xmlrpc.client.loads(body)
    return value
