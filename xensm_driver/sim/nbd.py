"""The pool's NBD server: random-access reads of a VDI, as xapi-nbd serves them.

Real XAPI (xen-api ``ocaml/nbd/src/main.ml``, the ``xapi-nbd`` daemon):

* listens on port 10809 of every host whose PIFs are on a network with
  purpose ``nbd`` (TLS) or ``insecure_nbd`` (plain); ``VDI.get_nbd_info``
  (``xapi_vdi.ml _get_nbd_info``) lists ``{address, port, exportname, cert,
  subject}`` per such IP of the hosts that see the VDI's SR;
* the export name is ``/<vdi uuid>?session_id=<session ref>``
  (``handle_connection``: the session is checked with ``Session.get_uuid``);
* it plugs the VDI read-only into dom0 (``with_attached_vdi``, a VBD with
  mode ``RO``) for the length of the connection and serves it read-only
  (``Nbd_unix.Server.serve ~read_only:true``): the fixed-newstyle handshake
  (``NBD_OPT_EXPORT_NAME``, ``NBD_OPT_GO``...), then ``NBD_CMD_READ`` /
  ``NBD_CMD_DISC``.

The simulator models the ``insecure_nbd`` case (no TLS), one listener for
the pool on loopback at a free port (not 10809), the fixed-newstyle
handshake with ``NBD_OPT_EXPORT_NAME`` and ``NBD_OPT_ABORT`` (other options
answer ``NBD_REP_ERR_UNSUP``, which the protocol allows), and simple replies
to ``NBD_CMD_READ`` and ``NBD_CMD_DISC``. A connection counts as
``nbd:export`` in the call counters and takes faults injected on that name
(``drop='before'``: closed before the handshake; ``error``: the export is
refused; ``after_bytes``: the connection is cut after that many bytes of
data).
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import struct
import threading
import time
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlparse

from .wire import XapiError

if TYPE_CHECKING:
    from .simulator import Simulator

LOG = logging.getLogger(__name__)

NBDMAGIC = b'NBDMAGIC'
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
OPT_EXPORT_NAME = 1
OPT_ABORT = 2
REP_ACK = 1
REP_ERR_UNSUP = (1 << 31) + 1
TFLAG_HAS_FLAGS = 1
TFLAG_READ_ONLY = 2
CMD_READ = 0
CMD_DISC = 2
EPERM = 1
EIO = 5
EINVAL = 22
MAX_READ = 32 << 20


class _Cut(Exception):
    """Close the connection now."""


class NbdServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, sim: Simulator) -> None:
        self.sim = sim
        super().__init__((host, 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever,
                                       kwargs={'poll_interval': 0.05},
                                       name='xensm-sim-nbd', daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(socketserver.BaseRequestHandler):
    server: NbdServer

    def _recv(self, n: int) -> bytes:
        buf = b''
        while len(buf) < n:
            data = self.request.recv(n - len(buf))
            if not data:
                raise _Cut()
            buf += data
        return buf

    def handle(self) -> None:
        sim = self.server.sim
        faults = sim.faults
        faults.count('nbd:export')
        fault = faults.match('nbd:export')
        delay = faults.latency + ((fault.latency or 0) if fault else 0)
        if delay:
            time.sleep(delay)
        if fault is not None and fault.hang:
            time.sleep(fault.hang)
        if fault is not None and fault.drop == 'before':
            return
        self.request.settimeout(sim.data_idle_timeout)
        try:
            self._serve(fault)
        except (_Cut, OSError):
            pass

    def _serve(self, fault: Any) -> None:
        sock = self.request
        sock.sendall(NBDMAGIC + struct.pack('>QH', IHAVEOPT,
                                            FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
        (cflags,) = struct.unpack('>I', self._recv(4))
        while True:
            magic, opt, length = struct.unpack('>QII', self._recv(16))
            if magic != IHAVEOPT:
                return
            data = self._recv(length) if length else b''
            if opt == OPT_EXPORT_NAME:
                break
            if opt == OPT_ABORT:
                sock.sendall(struct.pack('>QIII', OPT_REPLY_MAGIC, opt, REP_ACK, 0))
                return
            sock.sendall(struct.pack('>QIII', OPT_REPLY_MAGIC, opt, REP_ERR_UNSUP, 0))
        if fault is not None and fault.error:
            return          # NBD_OPT_EXPORT_NAME has no error reply: close
        opened = self._open(data.decode('utf-8', 'replace'))
        if opened is None:
            return
        xapi = self.server.sim.xapi
        task, vdi, vbd, size, path = opened
        error: list[str] | None = None
        try:
            sock.sendall(struct.pack('>QH', size, TFLAG_HAS_FLAGS | TFLAG_READ_ONLY)
                         + (b'' if cflags & FLAG_NO_ZEROES else bytes(124)))
            self._transmit(path, size, fault)
        except (_Cut, OSError):
            error = ['VDI_IO_ERROR', 'Device I/O errors']
        finally:
            xapi.transfer_end(task, vdi, vbd, None, error)

    def _open(self, name: str) -> tuple[str, str, str, int, str] | None:
        """The VDI plugged read-only in dom0 (xapi-nbd ``with_attached_vdi``)."""
        url = urlparse(name)
        session = parse_qs(url.query).get('session_id', [''])[0]
        uuid = url.path.lstrip('/')
        xapi = self.server.sim.xapi
        if not session or not xapi.session_valid(session):
            return None
        try:
            return xapi.transfer_begin(session, uuid, None, 'nbd')
        except XapiError:
            return None

    def _transmit(self, path: str, size: int, fault: Any) -> None:
        sock = self.request
        limit = fault.after_bytes if fault is not None else None
        sent = 0
        with open(path, 'rb') as f:
            fd = f.fileno()
            while True:
                magic, _flags, cmd, handle, offset, length = struct.unpack(
                    '>IHHQQI', self._recv(28))
                if magic != REQUEST_MAGIC:
                    return
                if cmd == CMD_DISC:
                    return
                if cmd != CMD_READ:
                    sock.sendall(struct.pack('>IIQ', SIMPLE_REPLY_MAGIC, EPERM, handle))
                    continue
                if offset + length > size or length > MAX_READ:
                    sock.sendall(struct.pack('>IIQ', SIMPLE_REPLY_MAGIC, EINVAL, handle))
                    continue
                data = os.pread(fd, length, offset)
                data += bytes(length - len(data))
                if limit is not None and sent + length > limit:
                    sock.sendall(struct.pack('>IIQ', SIMPLE_REPLY_MAGIC, 0, handle)
                                 + data[:max(0, limit - sent)])
                    sock.shutdown(socket.SHUT_RDWR)
                    raise _Cut()
                sock.sendall(struct.pack('>IIQ', SIMPLE_REPLY_MAGIC, 0, handle) + data)
                sent += length
