"""Ranged reads of a VDI through XAPI's NBD server (xapi-nbd).

Why NBD and not ``/export_raw_vdi``: XAPI's HTTP export has no ranges
(xen-api ``export_raw_vdi.ml``: the whole virtual size as one stream, or a
VHD relative to a ``base`` VDI, which needs the base's *data*, gone after
``VDI.data_destroy``). An incremental backup that read the whole stream to
skip the unchanged blocks would cost the volume's size every time. XAPI's
own answer for changed-block tracking is ``VDI.get_nbd_info`` and NBD reads
of the blocks ``VDI.list_changed_blocks`` names, so an incremental reads
only what changed.

This is a minimal NBD client (the fixed-newstyle handshake with
``NBD_OPT_EXPORT_NAME``, then ``NBD_CMD_READ`` with simple replies), for
networks of purpose ``insecure_nbd``; a pool whose NBD network wants TLS
(purpose ``nbd``) gives a ``cert`` in ``get_nbd_info``, which this client
refuses with the reason (not done yet). One connection holds one RO VBD
of the VDI in dom0 on the host (xapi-nbd ``with_attached_vdi``).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator
from typing import Any

from xensm_driver import exception

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = 0x49484156454F5054
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
OPT_EXPORT_NAME = 1
CMD_READ = 0
CMD_DISC = 2
#: The largest read most NBD servers accept in one request (the NBD
#: protocol's recommended maximum payload).
MAX_REQUEST = 32 << 20


class NbdReader:
    """One NBD connection to one VDI, read-only. Use as a context manager."""

    def __init__(self, info: dict[str, Any], vdi: str, timeout: float = 60.0) -> None:
        if info.get("cert"):
            raise exception.TransferError(
                direction="from", vdi=vdi,
                reason="the pool's NBD network wants TLS (purpose nbd); only insecure_nbd "
                       "is supported yet")
        self.vdi = vdi
        self.size = 0
        self._handle = 0
        try:
            self._sock = socket.create_connection(
                (str(info["address"]), int(info["port"])), timeout=timeout)
        except OSError as exc:
            raise exception.TransferError(
                direction="from", vdi=vdi,
                reason="cannot reach XAPI's NBD server at %s:%s (%s)"
                       % (info["address"], info["port"], type(exc).__name__)) from None
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._handshake(str(info["exportname"]))
        except BaseException:
            self._sock.close()
            raise

    def _fail(self, what: str) -> exception.TransferError:
        return exception.TransferError(direction="from", vdi=self.vdi,
                                       reason="NBD: %s" % what)

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                data = self._sock.recv(min(n - len(buf), 1 << 20))
            except OSError as exc:
                raise self._fail("the connection broke (%s) after %d of %d bytes"
                                 % (type(exc).__name__, len(buf), n)) from None
            if not data:
                raise self._fail("the server closed the connection after %d of %d bytes"
                                 % (len(buf), n))
            buf += data
        return bytes(buf)

    def _handshake(self, exportname: str) -> None:
        head = self._recv(18)
        magic, opt_magic, flags = head[:8], *struct.unpack(">QH", head[8:])
        if magic != NBDMAGIC or opt_magic != IHAVEOPT or not flags & FLAG_FIXED_NEWSTYLE:
            raise self._fail("not a fixed-newstyle NBD server")
        cflags = FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES)
        name = exportname.encode()
        self._sock.sendall(struct.pack(">IQII", cflags, IHAVEOPT, OPT_EXPORT_NAME, len(name))
                           + name)
        try:
            reply = self._recv(10)
        except exception.TransferError:
            # NBD_OPT_EXPORT_NAME has no error reply: the server closes.
            raise self._fail("the server refused export %s (session expired, VDI gone "
                             "or in use)" % exportname.split("?")[0]) from None
        self.size, _tflags = struct.unpack(">QH", reply)
        if not flags & FLAG_NO_ZEROES:
            self._recv(124)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``. 1 NBD round trip per
        :data:`MAX_REQUEST` bytes (servers refuse larger requests)."""
        if length <= MAX_REQUEST:
            return self._read(offset, length)
        return b"".join(self._read(offset + pos, min(MAX_REQUEST, length - pos))
                        for pos in range(0, length, MAX_REQUEST))

    def _read(self, offset: int, length: int) -> bytes:
        self._handle += 1
        self._sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, self._handle,
                                       offset, length))
        magic, error, handle = struct.unpack(">IIQ", self._recv(16))
        if magic != SIMPLE_REPLY_MAGIC or handle != self._handle:
            raise self._fail("unexpected reply")
        if error:
            raise self._fail("read of %d bytes at %d failed with errno %d"
                             % (length, offset, error))
        return self._recv(length)

    def close(self) -> None:
        """Disconnect, and wait until the server has closed its end: xapi-nbd
        unplugs the VDI's dom0 VBD before it closes, and until then the VDI
        is in use (a destroy right after would fail with VDI_IN_USE)."""
        with contextlib.suppress(OSError):
            self._sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC,
                                           self._handle + 1, 0, 0))
            self._sock.shutdown(socket.SHUT_WR)
            while self._sock.recv(1 << 16):
                pass
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> NbdReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def open_reader(infos: list[dict[str, Any]], vdi: str,
                timeout: float = 60.0) -> Iterator[NbdReader]:
    """A reader on the first NBD address of ``VDI.get_nbd_info`` that answers."""
    if not infos:
        raise exception.TransferError(
            direction="from", vdi=vdi,
            reason="XAPI offers no NBD server for this VDI: give a network the purpose "
                   "insecure_nbd (xe network-param-add param-name=purpose "
                   "param-value=insecure_nbd uuid=...)")
    last: exception.TransferError | None = None
    for info in infos:
        try:
            reader = NbdReader(info, vdi, timeout)
        except exception.TransferError as exc:
            last = exc
            continue
        with reader:
            yield reader
        return
    assert last is not None
    raise last
