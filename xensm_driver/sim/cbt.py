"""Changed-block tracking logs, as sm keeps them beside each VDI.

What real XAPI/SM does, and where (xapi-project/sm ``libs/sm/VDI.py`` and
blktap's ``cbt-util``; xen-api ``ocaml/xapi/xapi_vdi.ml``):

* A CBT-enabled VDI has a log (``<uuid>.cbtlog``): a bitmap with one bit per
  64 KiB block (``CBT_BLOCK_SIZE`` in sm ``VDI.py``), set by tapdisk for
  every block written, plus ``parent`` and ``child`` links to the logs of
  its neighbours in time.
* ``VDI.snapshot`` of a CBT-enabled VDI (sm ``VDI._cbt_snapshot``): the
  leaf's log is *renamed* to the snapshot's, the leaf starts a new, empty
  log; links become ``parent-of-old <-> snapshot <-> leaf``.
* ``VDI.list_changed_blocks(vdi_from, vdi_to)`` (sm
  ``VDI.list_changed_blocks``): walks ``child`` links from ``vdi_from``'s
  log, ORs every log after it up to and including ``vdi_to``'s, and returns
  ``base64(bitarray.tobytes())``: big-endian bit order, so block ``i`` is
  bit ``0x80 >> (i % 8)`` of byte ``i // 8`` (sm reads the on-disk bitmap,
  ``bytereverse``s it, then encodes). Unrelated VDIs:
  ``SR_BACKEND_FAILURE_460`` (CBTChangedBlocksError); the same VDI twice,
  too.
* ``VDI.destroy`` of a VDI with a log (sm ``VDI.delete``): its neighbours
  are linked to each other and its bitmap is coalesced into its child's
  (``cbtutil.coalesce_bitmap``), so changes are never lost from the chain.
* ``VDI.data_destroy`` (sm ``VDI.data_destroy`` -> ``delete(data_only=
  True)``): the data goes, the log and its links stay.
* ``VDI.disable_cbt`` deletes the log (sm ``VDI._disable_cbt`` ->
  ``_delete_cbt_log``); ``VDI.resize`` grows the bitmap (sm
  ``VDI.resize_cbt``).

Logs live in memory, per simulator; the simulator's saved state
(``--state-dir``) does not keep them, so after a restart
``list_changed_blocks`` answers as for unrelated VDIs (a real SR keeps them
on disk).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from dataclasses import field

from .errors import sm_error

#: sm ``VDI.py`` ``CBT_BLOCK_SIZE``.
CBT_BLOCK = 64 * 1024


@dataclass
class Log:
    size: int
    bits: bytearray = field(default_factory=bytearray)
    parent: str = ''
    child: str = ''

    def __post_init__(self) -> None:
        self.grow(self.size)

    def grow(self, size: int) -> None:
        self.size = max(self.size, size)
        nbytes = (blocks(self.size) + 7) // 8
        if len(self.bits) < nbytes:
            self.bits.extend(bytes(nbytes - len(self.bits)))

    def mark(self, offset: int, length: int) -> None:
        if length <= 0:
            return
        first = offset // CBT_BLOCK
        last = min((offset + length - 1) // CBT_BLOCK, blocks(self.size) - 1)
        for i in range(first, last + 1):
            self.bits[i >> 3] |= 0x80 >> (i & 7)


def blocks(size: int) -> int:
    return (size + CBT_BLOCK - 1) // CBT_BLOCK


class CbtLogs:
    """Every CBT log of one simulated pool, by VDI uuid. Callers hold the
    simulator's lock."""

    def __init__(self) -> None:
        self.logs: dict[str, Log] = {}

    def has(self, uuid: str) -> bool:
        return uuid in self.logs

    def enable(self, uuid: str, size: int) -> None:
        """sm ``VDI._enable_cbt`` -> ``_create_cbt_log``: an empty log."""
        self.logs.setdefault(uuid, Log(size))

    def disable(self, uuid: str) -> None:
        self.logs.pop(uuid, None)

    def mark(self, uuid: str, offset: int, length: int) -> None:
        log = self.logs.get(uuid)
        if log is not None:
            log.mark(offset, length)

    def resize(self, uuid: str, size: int) -> None:
        log = self.logs.get(uuid)
        if log is not None:
            log.grow(size)

    def snapshot(self, leaf: str, snap: str) -> None:
        """sm ``VDI._cbt_snapshot``: the leaf's log becomes the snapshot's."""
        old = self.logs.pop(leaf, None)
        if old is None:
            return
        self.logs[snap] = old
        if old.parent in self.logs:
            self.logs[old.parent].child = snap
        new = Log(old.size, parent=snap, child=old.child)
        old.child = leaf
        self.logs[leaf] = new

    def delete(self, uuid: str) -> None:
        """sm ``VDI.delete`` (not data_only): relink, coalesce into the child."""
        log = self.logs.pop(uuid, None)
        if log is None:
            return
        parent = self.logs.get(log.parent)
        child = self.logs.get(log.child)
        if parent is not None:
            parent.child = log.child
        if child is not None:
            child.parent = log.parent
            child.grow(log.size)
            for i, byte in enumerate(log.bits):
                child.bits[i] |= byte

    def changed(self, vdi_from: str, vdi_to: str) -> str:
        """sm ``VDI.list_changed_blocks``: the base64 bitmap."""
        if vdi_from == vdi_to:
            raise sm_error(460, 'Source and target VDI are same')
        if vdi_from not in self.logs or vdi_to not in self.logs:
            raise sm_error(460, 'Source and target VDI are unrelated')
        merged: bytearray | None = None
        cur = vdi_from
        seen = {cur}
        while True:
            nxt = self.logs[cur].child
            if nxt not in self.logs or nxt in seen:
                break
            seen.add(nxt)
            cur = nxt
            bits = self.logs[cur].bits
            if merged is None:
                merged = bytearray(bits)
            else:
                if len(bits) < len(merged):
                    raise sm_error(459, 'Inconsistent bitmaps')
                merged.extend(bytes(len(bits) - len(merged)))
                for i, byte in enumerate(bits):
                    merged[i] |= byte
            if cur == vdi_to:
                return base64.b64encode(bytes(merged)).decode()
        raise sm_error(460, 'Source and target VDI are unrelated')
