"""The simulator's object database: tables, indexes, change log, persistence.

Not thread-safe by itself: the :class:`~.api.Xapi` holds one lock around
every use.  Records are never mutated in place - a change replaces the
field's value (maps and sets are copied) - so a shallow copy of a record is
a consistent snapshot that can be encoded after the lock is released.
"""

from __future__ import annotations

import collections
import json
import os
import uuid as uuidlib
import xmlrpc.client
from typing import Any

from .schema import CLASSES
from .schema import INDEXED
from .schema import REVERSE
from .schema import default_record
from .wire import NULL_REF
from .wire import XapiError

# Classes kept across a restart (sessions and tasks die with xapi).
PERSISTENT = ('pool', 'host', 'SR', 'PBD', 'VDI', 'VBD', 'VM', 'secret', 'SM')
_MAX_DELETED = 50000


def new_ref() -> str:
    return 'OpaqueRef:' + str(uuidlib.uuid4())


class Database:
    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {
            c: {} for c in CLASSES}
        self.by_uuid: dict[str, dict[str, str]] = {c: {} for c in CLASSES}
        # (child class, field) -> parent ref -> ordered set of child refs
        self.index: dict[tuple[str, str], dict[str, dict[str, None]]] = {
            (c, f): {} for c, fs in INDEXED.items() for f in fs}
        self.gen = 0
        self.changes: collections.OrderedDict[tuple[str, str], int] = \
            collections.OrderedDict()
        self.created: dict[tuple[str, str], int] = {}
        self.deleted: collections.deque[
            tuple[int, str, str, dict[str, Any]]] = collections.deque(
                maxlen=_MAX_DELETED)
        self.dirty = False

    # -- change log ------------------------------------------------------------
    def touch(self, cls: str, ref: str) -> None:
        self.gen += 1
        key = (cls, ref)
        self.changes[key] = self.gen
        self.changes.move_to_end(key)
        if cls not in ('session', 'task'):
            self.dirty = True

    def _touch_parents(self, cls: str, rec: dict[str, Any]) -> None:
        for f in INDEXED.get(cls, ()):
            parent = rec.get(f)
            if parent and parent != NULL_REF:
                pcls = CLASSES[cls][f].type.split(':', 1)[1]
                if parent in self.tables[pcls]:
                    self.touch(pcls, parent)

    # -- basic operations ----------------------------------------------------------
    def create(self, cls: str, fields: dict[str, Any],
               ref: str | None = None) -> str:
        rec = default_record(cls)
        rec.update(fields)
        if not rec.get('uuid'):
            rec['uuid'] = str(uuidlib.uuid4())
        ref = ref or new_ref()
        self.tables[cls][ref] = rec
        self.by_uuid[cls][rec['uuid']] = ref
        for f in INDEXED.get(cls, ()):
            self.index[(cls, f)].setdefault(rec[f], {})[ref] = None
        self.touch(cls, ref)
        self.created[(cls, ref)] = self.gen
        self._touch_parents(cls, rec)
        return ref

    def exists(self, cls: str, ref: str) -> bool:
        return ref in self.tables[cls]

    def get(self, cls: str, ref: str) -> dict[str, Any]:
        """The stored record; ``HANDLE_INVALID [cls, ref]`` if absent."""
        try:
            return self.tables[cls][ref]
        except KeyError:
            raise XapiError('HANDLE_INVALID', cls, ref) from None

    def update(self, cls: str, ref: str, **changes: Any) -> None:
        rec = self.get(cls, ref)
        for f, v in changes.items():
            old: Any = rec.get(f)
            if f in INDEXED.get(cls, ()) and old != v:
                idx = self.index[(cls, f)]
                bucket = idx.get(old)
                if bucket is not None:
                    bucket.pop(ref, None)
                    if not bucket:
                        del idx[old]
                idx.setdefault(v, {})[ref] = None
                pcls = CLASSES[cls][f].type.split(':', 1)[1]
                for p in (old, v):
                    if p and p != NULL_REF and p in self.tables[pcls]:
                        self.touch(pcls, p)
            if f == 'uuid' and old != v:
                self.by_uuid[cls].pop(old, None)
                self.by_uuid[cls][v] = ref
            rec[f] = v
        self.touch(cls, ref)

    def destroy(self, cls: str, ref: str) -> dict[str, Any]:
        rec = self.get(cls, ref)
        snapshot = self.render(cls, ref)
        del self.tables[cls][ref]
        if self.by_uuid[cls].get(rec['uuid']) == ref:
            del self.by_uuid[cls][rec['uuid']]
        for f in INDEXED.get(cls, ()):
            idx = self.index[(cls, f)]
            bucket = idx.get(rec[f])
            if bucket is not None:
                bucket.pop(ref, None)
                if not bucket:
                    del idx[rec[f]]
        # This object's own reverse buckets (e.g. a destroyed VDI's
        # snapshots keep their dangling snapshot_of): leave them.
        self.gen += 1
        self.changes.pop((cls, ref), None)
        self.created.pop((cls, ref), None)
        self.deleted.append((self.gen, cls, ref, snapshot))
        self._touch_parents(cls, rec)
        if cls not in ('session', 'task'):
            self.dirty = True
        return rec

    def children(self, child_cls: str, field: str, parent: str) -> list[str]:
        return list(self.index[(child_cls, field)].get(parent, ()))

    def count_children(self, child_cls: str, field: str, parent: str) -> int:
        return len(self.index[(child_cls, field)].get(parent, ()))

    def render(self, cls: str, ref: str) -> dict[str, Any]:
        """The record as the API returns it (reverse fields filled in)."""
        rec = dict(self.get(cls, ref))
        for (pcls, f), (child, cf) in REVERSE.items():
            if pcls == cls:
                rec[f] = [r for r in self.index[(child, cf)].get(ref, ())
                          if r in self.tables[child]]
        return rec

    def ref_of_uuid(self, cls: str, uuid: str) -> str:
        try:
            return self.by_uuid[cls][uuid]
        except KeyError:
            raise XapiError('UUID_INVALID', cls, uuid) from None

    # -- persistence -------------------------------------------------------------
    def save(self, path: str) -> None:
        data = {c: self.tables[c] for c in PERSISTENT}
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(data, f, default=_json_default)
        os.replace(tmp, path)
        self.dirty = False

    def snapshot_tables(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Shallow copies of the persistent tables (safe to encode later)."""
        return {c: {r: dict(v) for r, v in self.tables[c].items()}
                for c in PERSISTENT}

    def load(self, path: str) -> bool:
        try:
            with open(path) as fh:
                data = json.load(fh, object_hook=_json_hook)
        except FileNotFoundError:
            return False
        for cls, rows in data.items():
            for ref, rec in rows.items():
                full = default_record(cls)
                full.update(rec)
                self.tables[cls][ref] = full
                self.by_uuid[cls][full['uuid']] = ref
                for f in INDEXED.get(cls, ()):
                    self.index[(cls, f)].setdefault(full[f], {})[ref] = None
                self.touch(cls, ref)
                self.created[(cls, ref)] = self.gen
        self.dirty = False
        return True


def _json_default(o: Any) -> Any:
    if isinstance(o, xmlrpc.client.DateTime):
        return {'__datetime__': o.value}
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(repr(o))


def _json_hook(d: dict[str, Any]) -> Any:
    if len(d) == 1 and '__datetime__' in d:
        return xmlrpc.client.DateTime(d['__datetime__'])
    return d


def save_tables(tables: dict[str, dict[str, dict[str, Any]]],
                path: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(tables, f, default=_json_default)
    os.replace(tmp, path)
