"""The simulator's HTTP server: XML-RPC, the VDI data path, the control plane.

Routes (every host of the pool serves all of them):

- ``POST /`` and ``POST /RPC2``: XAPI XML-RPC.
- ``PUT /import_raw_vdi`` and ``GET /export_raw_vdi``: raw VDI content.
- ``/sim/...``: the control plane (JSON, no session), see ``control.py``.
"""

from __future__ import annotations

import base64
import errno
import http.cookies
import http.server
import json
import logging
import os
import socket
import struct
import time
import xmlrpc.client
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlparse

from . import storage
from .faults import Fault
from .wire import XapiError
from .wire import canonical_method
from .wire import failure
from .wire import parse_request
from .wire import success

if TYPE_CHECKING:
    from .simulator import Simulator

LOG = logging.getLogger(__name__)
CHUNK = 1 << 20


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], sim: Simulator,
                 host_index: int) -> None:
        self.sim = sim
        self.host_index = host_index
        super().__init__(addr, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.debug('connection from %s ended with an error', client_address,
                  exc_info=True)


def _json_default(o: Any) -> Any:
    if isinstance(o, xmlrpc.client.DateTime):
        return o.value
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


class _Drop(Exception):
    """Close the connection without answering."""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    # Headers and body go out in separate writes; with Nagle on, the body
    # waits for the client's delayed ACK (~40 ms per call on loopback).
    disable_nagle_algorithm = True
    server_version = 'xapi/26.21'
    sys_version = ''
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        LOG.debug('%s ' + format, self.address_string(), *args)

    @property
    def sim(self) -> Simulator:
        return self.server.sim

    # -- dispatch by method and path ------------------------------------------------
    def do_POST(self) -> None:
        path = urlparse(self.path).path
        if path in ('/', '/RPC2'):
            self._xmlrpc()
        elif path.startswith('/sim/'):
            self._control('POST', path)
        else:
            self._plain(404, 'not found')

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if path.startswith('/sim/'):
            self._control('GET', path)
        elif path == '/export_raw_vdi':
            self._export()
        else:
            self._plain(404, 'not found')

    def do_PUT(self) -> None:
        path = urlparse(self.path).path
        if path == '/import_raw_vdi':
            self._import()
        else:
            self._plain(404, 'not found')

    def do_DELETE(self) -> None:
        path = urlparse(self.path).path
        if path.startswith('/sim/'):
            self._control('DELETE', path)
        else:
            self._plain(404, 'not found')

    # -- helpers -----------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(length) if length else b''

    def _send(self, code: int, body: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _plain(self, code: int, text: str,
               headers: dict[str, str] | None = None) -> None:
        self._send(code, text.encode(), 'text/plain', headers)

    def _json(self, code: int, data: Any) -> None:
        self._send(code, json.dumps(data, default=_json_default).encode(),
                   'application/json')

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _apply_fault(self, fault: Fault | None, hang: bool = True) -> None:
        delay = self.sim.faults.latency + (fault.latency or 0 if fault else 0)
        if delay:
            time.sleep(delay)
        if hang and fault is not None and fault.hang:
            time.sleep(fault.hang)
        if fault is not None and fault.drop == 'before':
            raise _Drop()

    # -- XML-RPC ------------------------------------------------------------------------
    def _xmlrpc(self) -> None:
        body = self._body()
        try:
            wire_name, params = parse_request(body)
        except ValueError:
            self._send(500, b'<html><body><h1>HTTP 500 internal server '
                       b'error</h1>An unexpected error occurred; please '
                       b'wait a while and try again. If the problem '
                       b'persists, please contact your support '
                       b'representative.</body></html>', 'text/html')
            return
        name = canonical_method(wire_name)
        faults = self.sim.faults
        faults.count(name)
        fault = faults.match(name)
        try:
            self._apply_fault(fault, hang=False)
        except _Drop:
            self._drop()
            return
        if fault is not None and fault.error:
            payload = failure(fault.error)
        else:
            try:
                value = self.sim.xapi.dispatch(
                    name, wire_name, params,
                    self.sim.host_ref(self.server.host_index))
                payload = success(value)
            except XapiError as exc:
                payload = failure(exc.details)
            except Exception as exc:  # noqa: BLE001 - xapi answers INTERNAL_ERROR
                LOG.exception('%s failed', wire_name)
                payload = failure(['INTERNAL_ERROR', str(exc)])
        if fault is not None and fault.hang:
            time.sleep(fault.hang)      # the call ran; its answer is late
        if fault is not None and fault.drop == 'after':
            self._drop()
            return
        self._send(200, payload, 'text/xml')

    # -- data path ---------------------------------------------------------------------
    def _query(self) -> dict[str, str]:
        q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query,
                                           keep_blank_values=True).items()}
        cookie = self.headers.get('Cookie')
        if cookie:
            jar = http.cookies.SimpleCookie()
            try:
                jar.load(cookie)
            except http.cookies.CookieError:
                pass
            for k, morsel in jar.items():
                q.setdefault(k, morsel.value)
        return q

    def _session(self, q: dict[str, str]) -> str | None:
        """The session a data-path request runs as, or None (-> 401)."""
        xapi = self.sim.xapi
        sid = q.get('session_id')
        if sid:
            return sid if xapi.session_valid(sid) else None
        auth = self.headers.get('Authorization', '')
        if auth.startswith('Basic '):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(
                    ':')
            except (ValueError, UnicodeDecodeError):
                return None
            if user == xapi.username and pw == xapi.password:
                return xapi.login((user, pw), None)
        return None

    def _unauthorized(self) -> None:
        self.close_connection = True
        self._plain(401, 'Unauthorised',
                    {'WWW-Authenticate': 'Basic realm="xapi"',
                     'Connection': 'close'})

    def _start_stream(self, task: str, ctype: str,
                      extra: dict[str, str] | None = None) -> None:
        self.close_connection = True
        self.send_response(200)
        self.send_header('task-id', task)
        self.send_header('content-type', ctype)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.flush()

    def _transfer_failed(self, exc: XapiError, q: dict[str, str]) -> None:
        code = exc.details[0]
        self.close_connection = True
        if code in ('HANDLE_INVALID', 'UUID_INVALID'):
            self._plain(404, ' '.join(exc.details), {'Connection': 'close'})
        elif code == 'SESSION_INVALID':
            self._unauthorized()
        else:
            self._plain(500, ' '.join(exc.details), {'Connection': 'close'})

    def _bad_format(self, q: dict[str, str], what: str) -> None:
        task = q.get('task_id')
        if task:
            with self.sim.xapi.lock:
                self.sim.xapi.task_done(task, error=['INTERNAL_ERROR', what])
        self.close_connection = True
        self._plain(404, what, {'Connection': 'close'})

    def _open_transfer(self, name: str) -> tuple[dict[str, str], str, Any] | None:
        """What every data-path request does first: count it, apply its
        faults, check its session and format. None: already answered."""
        q = self._query()
        faults = self.sim.faults
        faults.count(name)
        fault = faults.match(name)
        try:
            self._apply_fault(fault)
        except _Drop:
            self._drop()
            return None
        session = self._session(q)
        if session is None:
            self._unauthorized()
            return None
        fmt = q.get('format', 'raw')
        if fmt != 'raw':
            self._bad_format(q, 'format %s is not supported by xensm-sim'
                             % fmt)
            return None
        return q, session, fault

    def _import(self) -> None:
        opened = self._open_transfer('http:import_raw_vdi')
        if opened is None:
            return
        q, session, fault = opened
        chunked = 'chunked' in q
        if self.headers.get('Transfer-Encoding'):
            self._bad_format(q, 'Transfer-Encoding is not supported')
            return
        length = self.headers.get('Content-Length')
        vdi_id = q.get('vdi')
        xapi = self.sim.xapi
        if not vdi_id:
            sr = q.get('sr_id') or q.get('sr_uuid')
            if not sr or length is None:
                self.close_connection = True
                self._plain(400, 'VDI_MISSING', {'Connection': 'close'})
                return
            try:
                vdi_id = self._imported_vdi(session, sr, int(length))
            except XapiError as exc:
                self._transfer_failed(exc, q)
                return
        try:
            task, vdi, vbd, size, path = xapi.transfer_begin(
                session, vdi_id, q.get('task_id'), 'import')
        except XapiError as exc:
            self._transfer_failed(exc, q)
            return
        error: list[str] | None = None
        blocks: list[list[int]] = []
        self._written: list[tuple[int, int]] = []
        # A client that stops sending without closing would pin the VDI
        # forever: give up after an idle period, as a stalled import fails.
        self.connection.settimeout(self.sim.data_idle_timeout)
        try:
            self._start_stream(task, 'application/octet-stream')
            limit = fault.after_bytes if fault is not None else None
            if chunked:
                blocks = self._read_chunked(path, size, limit)
            else:
                blocks = self._read_raw(path, size, int(length or 0), limit)
            if fault is not None and fault.error:
                error = list(fault.error)
        except _IOError:
            error = ['VDI_IO_ERROR', 'Device I/O errors']
        except OSError:
            error = ['VDI_IO_ERROR', 'Device I/O errors']
        finally:
            xapi.transfer_end(task, vdi, vbd, blocks, error, self._written)
        if error and error[0] == 'VDI_IO_ERROR':
            self._drop()

    def _imported_vdi(self, session: str, sr: str, size: int) -> str:
        xapi = self.sim.xapi
        with xapi.lock:
            if sr not in xapi.db.tables['SR']:
                sr = xapi.db.ref_of_uuid('SR', sr)
            ref = xapi.vdi_create(session, {
                'SR': sr, 'virtual_size': size, 'type': 'user',
                'sharable': False, 'read_only': False, 'other_config': {},
                'name_label': 'Imported VDI'})
            return ref

    def _read_raw(self, path: str, size: int, length: int,
                  limit: int | None) -> list[list[int]]:
        if length > size:
            # xapi reads the stream, then fails the task: image too big.
            self._discard(length)
            raise _IOError()
        blocks: list[list[int]] = []
        with open(path, 'r+b') as f:
            fd = f.fileno()
            pos = 0
            while pos < length:
                want = min(CHUNK, length - pos)
                if limit is not None and pos + want > limit:
                    want = limit - pos
                    if want <= 0:
                        raise _IOError()
                data = self.rfile.read(want)
                if not data:
                    raise _IOError()
                blocks = _write(fd, pos, data, blocks)
                self._written.append((pos, len(data)))
                pos += len(data)
        return blocks

    def _read_chunked(self, path: str, size: int,
                      limit: int | None) -> list[list[int]]:
        blocks: list[list[int]] = []
        seen = 0
        with open(path, 'r+b') as f:
            fd = f.fileno()
            while True:
                head = self._read_exact(12)
                offset, n = struct.unpack('<QI', head)
                if offset == 0 and n == 0:
                    return blocks
                if offset + n > size:
                    raise _IOError()
                pos = offset
                while n:
                    want = min(CHUNK, n)
                    if limit is not None and seen + want > limit:
                        raise _IOError()
                    data = self._read_exact(want)
                    blocks = _write(fd, pos, data, blocks)
                    self._written.append((pos, want))
                    pos += want
                    n -= want
                    seen += want

    def _read_exact(self, n: int) -> bytes:
        buf = b''
        while len(buf) < n:
            data = self.rfile.read(n - len(buf))
            if not data:
                raise _IOError()
            buf += data
        return buf

    def _discard(self, n: int) -> None:
        while n > 0:
            data = self.rfile.read(min(CHUNK, n))
            if not data:
                return
            n -= len(data)

    def _export(self) -> None:
        opened = self._open_transfer('http:export_raw_vdi')
        if opened is None:
            return
        q, session, fault = opened
        xapi = self.sim.xapi
        try:
            task, vdi, vbd, size, path = xapi.transfer_begin(
                session, q.get('vdi', ''), q.get('task_id'), 'export')
        except XapiError as exc:
            self._transfer_failed(exc, q)
            return
        error: list[str] | None = None
        self.connection.settimeout(self.sim.data_idle_timeout)
        try:
            uuid = xapi.db.tables['VDI'].get(vdi, {}).get('uuid', vdi)
            self._start_stream(task, 'application/octet-stream', {
                'content-disposition': 'attachment; filename="%s.raw"'
                % uuid})
            limit = fault.after_bytes if fault is not None else None
            with open(path, 'rb') as f:
                pos = 0
                while pos < size:
                    want = min(CHUNK, size - pos)
                    if limit is not None and pos + want > limit:
                        want = limit - pos
                        if want <= 0:
                            raise _IOError()
                    data = os.pread(f.fileno(), want, pos)
                    if len(data) < want:
                        data += b'\0' * (want - len(data))
                    self.wfile.write(data)
                    pos += want
            self.wfile.flush()
            if fault is not None and fault.error:
                error = list(fault.error)
        except (_IOError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in (
                    errno.EPIPE, errno.ECONNRESET, None):
                LOG.warning('export of %s failed: %s', vdi, exc)
            error = ['VDI_IO_ERROR', 'Device I/O errors']
        finally:
            xapi.transfer_end(task, vdi, vbd, None, error)
        self._drop()

    # -- control plane ------------------------------------------------------------------
    def _control(self, verb: str, path: str) -> None:
        try:
            body = self._body()
            args = json.loads(body) if body else {}
            if not isinstance(args, dict):
                raise ValueError('body must be a JSON object')
            result = self.sim.control_route(verb, path, args)
        except KeyError as exc:
            self._json(404, {'error': 'not found: %s' % exc})
            return
        except (ValueError, TypeError) as exc:
            self._json(400, {'error': str(exc)})
            return
        except XapiError as exc:
            self._json(409, {'error': exc.details})
            return
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            LOG.exception('control %s %s failed', verb, path)
            self._json(500, {'error': repr(exc)})
            return
        self._json(200, result)


class _IOError(Exception):
    """The data stream broke (short read, image too big, injected fault)."""


def _write(fd: int, pos: int, data: bytes,
           blocks: list[list[int]]) -> list[list[int]]:
    """Write ``data`` at ``pos``; every 2 MiB block it touches is allocated.

    A raw import allocates the VHD block of every byte written, zeros
    included: xen-api ``import_raw_vdi.ml`` streams through vhd-tool's
    raw-to-raw copy, and blktap ``block-vhd.c`` (``vhd_write`` ->
    ``allocate_block``) has no zero-skip.  So ``physical_utilisation`` grows
    by the bytes imported.  Only the simulator's own backing file keeps a
    hole where zeros land on a hole (the content read back is the same).
    """
    n = len(data)
    skip = False
    if data.count(0) == n:
        try:
            nxt = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            nxt = pos + n        # ENXIO: only holes after pos
        skip = nxt >= pos + n
    if not skip:
        os.pwrite(fd, data, pos)
    return storage.runs_add(blocks, pos // storage.VHD_BLOCK,
                            (pos + n - 1) // storage.VHD_BLOCK + 1)
