"""The HTTP data path: raw VDI content in and out through XAPI.

``PUT /import_raw_vdi`` and ``GET /export_raw_vdi`` on the pool master,
authenticated by a pooled session's ref. Data is streamed in chunks, never
held whole in memory nor staged in a temporary file.

XAPI answers an import with 200 *before* it reads the body, so the HTTP
status says nothing about whether the data landed: the outcome is read from
the task XAPI names in the ``task-id`` header. An export ends when XAPI closes
the connection (there is no Content-Length), so its length is checked against
the VDI's virtual size.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import IO
from typing import Any

import requests
from oslo_log import log as logging

from xensm_driver import exception
from xensm_driver.xapi.session import RUNNING
from xensm_driver.xapi.session import SessionPool

LOG = logging.getLogger(__name__)

CHUNK = 1 << 20

#: ``progress(bytes_done, bytes_total)``
Progress = Callable[[int, int], None]


class _Body:
    """An upload body of known length, streamed chunk by chunk.

    ``requests`` sends a sized iterable with Content-Length (XAPI refuses a
    chunked Transfer-Encoding on import) and without buffering it.
    """

    def __init__(self, chunks: Iterable[bytes], size: int, vdi: str,
                 progress: Progress | None) -> None:
        self._vdi = vdi
        self._chunks = chunks
        self._size = size
        self._progress = progress
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            if self.sent + len(chunk) > self._size:
                raise exception.TransferError(
                    direction="into", vdi=self._vdi,
                    reason="the source holds more than the %d bytes announced" % self._size)
            self.sent += len(chunk)
            yield chunk
            if self._progress:
                self._progress(self.sent, self._size)
        if self.sent != self._size:
            # Abort the request now: XAPI would otherwise wait for the bytes
            # Content-Length promised until its own idle timeout.
            raise exception.TransferError(
                direction="into", vdi=self._vdi,
                reason="the source ended after %d of %d bytes" % (self.sent, self._size))


def chunk_header(offset: int, length: int) -> bytes:
    """The header of one block of a chunked import (``0, 0`` ends it)."""
    return struct.pack("<QI", offset, length)


def _read_chunks(source: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            return
        yield chunk


def _source_size(source: IO[bytes]) -> int | None:
    try:
        st = os.fstat(source.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return st.st_size - source.tell()


def upload(pool: SessionPool, vdi: str, source: IO[bytes] | Iterable[bytes], *,
           size: int | None = None, progress: Progress | None = None,
           timeout: float = 3600.0, chunked: bool = False) -> int:
    """Write ``source`` into the VDI (ref or uuid) from offset 0.

    With ``chunked``, ``source`` is XAPI's chunked raw format (xen-api
    ``import_raw_vdi.ml``, ``?chunked``): blocks each preceded by their
    offset (u64) and length (u32), little-endian, ended by a zero header
    (see :func:`chunk_header`); only the blocks sent are written, so ranges
    left out keep what the VDI held. ``size`` is the whole body's.

    ``source`` is a binary file (its size is read from it when it is a
    regular file) or an iterable of byte chunks with ``size`` given.
    Returns the byte count. Raises TransferError, or the task's XAPI error.
    """
    if hasattr(source, "read"):
        file_source: IO[bytes] = source  # type: ignore[assignment]
        size = size if size is not None else _source_size(file_source)
        chunks: Iterable[bytes] = _read_chunks(file_source)
    else:
        chunks = source
    if size is None:
        raise exception.TransferError(
            direction="into", vdi=vdi,
            reason="the source's size is unknown; XAPI needs it up front "
                   "(give size=, or a regular file)")
    body = _Body(chunks, size, vdi, progress)
    task = _new_task(pool, "xensm upload into %s" % vdi)
    try:
        query, cookies = _auth(pool, vdi, task)
        if chunked:
            query["chunked"] = "true"
        try:
            response = requests.put(
                pool.url + "/import_raw_vdi", params=query, cookies=cookies, data=body,
                verify=pool.tls_verify, timeout=(10.0, timeout), allow_redirects=False)
        except requests.RequestException as exc:
            raise exception.TransferError(direction="into", vdi=vdi,
                                          reason=_describe(exc)) from None
        _check_response(response, "into", vdi)
    except BaseException:
        _abandon(pool, task)
        raise
    # XAPI answered before it read the body: only the task knows the outcome.
    pool.wait_task(task, "import_raw_vdi", obj=vdi, timeout=timeout)
    LOG.debug("Uploaded %d bytes into VDI %s", size, vdi)
    return size


def download(pool: SessionPool, vdi: str, sink: IO[bytes] | Callable[[bytes], Any], *,
             size: int, length: int | None = None, progress: Progress | None = None,
             timeout: float = 3600.0) -> int:
    """Stream the VDI's content (``size`` bytes, its virtual size) to ``sink``.

    ``sink`` is a binary file or a callable taking each chunk; see
    :func:`export_chunks` for ``length``. Returns the byte count.
    """
    write = sink.write if hasattr(sink, "write") else sink
    done = 0
    for chunk in export_chunks(pool, vdi, size=size, length=length, progress=progress,
                               timeout=timeout):
        write(chunk)
        done += len(chunk)
    return done


def export_chunks(pool: SessionPool, vdi: str, *, size: int, length: int | None = None,
                  progress: Progress | None = None,
                  timeout: float = 3600.0) -> Iterator[bytes]:
    """The VDI's content as chunks, pulled by the caller (for Glance uploads).

    With ``length``, only the first ``length`` bytes: XAPI's export has no
    ranges, so the connection is closed early and the export task
    cancelled, as it is when the caller stops iterating. A short stream
    raises TransferError; the task's outcome is checked at the end.
    """
    wanted = size if length is None else min(length, size)
    done = 0
    task = _new_task(pool, "xensm download from %s" % vdi)
    try:
        query, cookies = _auth(pool, vdi, task)
        try:
            with requests.get(pool.url + "/export_raw_vdi", params=query, cookies=cookies,
                              stream=True, verify=pool.tls_verify,
                              timeout=(10.0, timeout)) as response:
                _check_response(response, "from", vdi)
                for chunk in response.iter_content(CHUNK):
                    chunk = chunk[:wanted - done]
                    done += len(chunk)
                    yield chunk
                    if progress:
                        progress(done, wanted)
                    if done >= wanted:
                        break
        except requests.RequestException as exc:
            raise exception.TransferError(
                direction="from", vdi=vdi,
                reason="%s after %d of %d bytes" % (_describe(exc), done, wanted)) from None
        if done != wanted:
            raise exception.TransferError(direction="from", vdi=vdi,
                                          reason="XAPI sent %d of %d bytes" % (done, wanted))
    except BaseException:
        _abandon(pool, task)
        raise
    if wanted < size:
        _abandon(pool, task)        # we stopped reading: the export is cancelled
    else:
        pool.wait_task(task, "export_raw_vdi", obj=vdi, timeout=timeout)


def _auth(pool: SessionPool, vdi: str, task: str) -> tuple[dict[str, str], dict[str, str]]:
    """The data path's query and cookies.

    XAPI authenticates a transfer by a session ref, accepted as a cookie:
    kept out of the URL, it stays out of request logs. The ref is borrowed
    from the pool, not the session itself: a transfer can last as long as
    its data, and must not hold one of the pool's few sessions meanwhile.
    """
    with pool.session() as sess:
        ref = pool.session_ref(sess)
    return {"vdi": vdi, "format": "raw", "task_id": task}, {"session_id": ref}


def _new_task(pool: SessionPool, label: str) -> str:
    """A task for XAPI to report the transfer's outcome on. 1 call."""
    task: str = pool.call("task.create", label, "")
    return task


def _abandon(pool: SessionPool, task: str, settle: float = 30.0) -> None:
    """Cancel the task of a transfer we stopped, and wait until it ends.

    XAPI holds the VDI (a plugged dom0 VBD) until the transfer has wound
    down; returning before that would let the caller's next operation find
    the VDI in use. The outcome itself is of no interest: we stopped it.
    """
    with contextlib.suppress(exception.XensmError):
        pool.call("task.cancel", task, obj=task)
    deadline = time.monotonic() + settle
    delay = 0.01
    with contextlib.suppress(exception.XensmError):
        while (pool.call("task.get_status", task, obj=task) in RUNNING
               and time.monotonic() < deadline):
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    with contextlib.suppress(exception.XensmError):
        pool.call("task.destroy", task, obj=task)


def _check_response(response: requests.Response, direction: str, vdi: str) -> None:
    if response.is_redirect:
        # XAPI sends a transfer to the host that reaches the SR; a PUT body
        # cannot be replayed there, so say where instead of failing vaguely.
        raise exception.TransferError(
            direction=direction, vdi=vdi,
            reason="XAPI redirected it to %s (the host that reaches the SR); "
                   "only SRs the pool master reaches are supported"
                   % response.headers.get("Location", "another host").split("?")[0])
    if response.status_code == 401:
        raise exception.TransferError(direction=direction, vdi=vdi,
                                      reason="XAPI refused the session (HTTP 401)")
    if response.status_code != 200:
        raise exception.TransferError(
            direction=direction, vdi=vdi,
            reason="XAPI answered HTTP %d" % response.status_code)


def _describe(exc: BaseException) -> str:
    # requests' messages carry the URL, whose query holds the session ref.
    return type(exc).__name__
