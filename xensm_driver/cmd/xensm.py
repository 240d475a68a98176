"""``xensm``: volumes on XenServer SRs without OpenStack.

Loads the same back-end sections cinder-volume reads, runs the driver's
verbs through :class:`xensm_driver.service.Manager` and keeps an inventory in
SQL. Argument parsing and output only; the work is in ``service/``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import io
import json
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import IO
from typing import Any

from xensm_driver import exception
from xensm_driver.service import backup as backup_mod
from xensm_driver.service import config as service_config
from xensm_driver.service import inventory as inventory_mod
from xensm_driver.service import manager as manager_mod
from xensm_driver.service import schedule as schedule_mod
from xensm_driver.service.manager import Manager
from xensm_driver.service.models import Record

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_NOT_FOUND = 4
EXIT_REFUSED = 5
EXIT_UNREACHABLE = 6
EXIT_DRIFT = 7
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    done
  1    the operation failed (XAPI or storage error; the object is marked error)
  2    bad command line
  3    configuration problem (config file, back-end section, option, inventory URL)
  4    not found (no such volume, snapshot, group, VDI or file)
  5    refused, nothing changed (has snapshots, attached, not supported, shrink, ...)
  6    cannot reach or log in to XAPI (or a backup target's object store)
  7    reconcile: inventory and storage disagree
  130  interrupted
"""


def exit_code(exc: BaseException) -> int:
    """The exit status for an error (see EXIT_CODES_HELP)."""
    if isinstance(exc, exception.SRNotFound | exception.ConfigError
                  | inventory_mod.InventoryError):
        return EXIT_CONFIG
    if isinstance(exc, exception.NotFound | FileNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, inventory_mod.Refused | exception.UnsupportedOperation
                  | exception.InUse | exception.XapiInUse | exception.InvalidInput
                  | exception.IdentityMismatch):
        return EXIT_REFUSED
    if isinstance(exc, exception.XapiConnectionError | exception.AuthenticationFailed
                  | exception.ArrayConnectionError | exception.ObjectStoreUnreachable):
        return EXIT_UNREACHABLE
    if isinstance(exc, exception.ArrayError) and str(exc.kwargs.get("code")) == "401":
        return EXIT_UNREACHABLE     # the array refused the login
    return EXIT_FAILED


# -- output -------------------------------------------------------------------

GiB = 1 << 30
MiB = 1 << 20


FORMATS = ("table", "json", "yaml", "value", "csv")


class Output:
    """Where results go: stdout in the chosen format (openstackclient's
    ``-f table|json|yaml|value|csv``, ``-c``, ``--sort-column``,
    ``--max-width``), reasons on stderr."""

    def __init__(self, stdout: IO[str], stderr: IO[str], fmt: str = "table",
                 columns: Sequence[str] = (), sort_columns: Sequence[str] = (),
                 max_width: int = 0) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.format = fmt
        self.columns = list(columns)
        self.sort_columns = list(sort_columns)
        self.max_width = max_width

    @property
    def json(self) -> bool:
        """Machine output: no progress bar, errors as data too."""
        return self.format != "table"

    def write(self, text: str) -> None:
        if text:
            self.stdout.write(text if text.endswith("\n") else text + "\n")
        self.stdout.flush()

    def emit(self, data: Any, human: Callable[[], list[str]]) -> None:
        """A result without columns of its own: ``human`` lines as a table."""
        if self.format == "table":
            self.write("\n".join(human()))
        elif self.format == "json":
            self.write(json.dumps(data, indent=2, sort_keys=True, default=str))
        elif self.format == "yaml":
            self.write(to_yaml(data))
        elif isinstance(data, list):
            keys = sorted({k for item in data if isinstance(item, dict) for k in item})
            self._rows(keys, [[item.get(k) for k in keys] for item in data])
        elif isinstance(data, dict):
            self._rows(sorted(data), [[data[k] for k in sorted(data)]])
        else:
            self.write(str(data))

    def emit_list(self, headers: Sequence[str], keys: Sequence[str], items: Sequence[Any],
                  row: Callable[[Any], Sequence[Any]], full: Callable[[Any], Any],
                  empty: str) -> None:
        """``items`` as rows under ``headers``; in json and yaml each item is
        ``full(item)``, or with ``-c`` only those columns (named by ``keys``)."""
        picked = self._pick(headers, keys)
        pairs = self._sorted(headers, keys, [(row(item), item) for item in items])
        rows = [r for r, _ in pairs]
        if self.columns:
            data = [{keys[i]: r[i] for i in picked} for r in rows]
        else:
            data = [full(item) for _, item in pairs]
        if self.format == "table":
            if not rows:
                self.write(empty)
            else:
                self.write("\n".join(table(
                    [[self._cut(size_text(row[i]) if keys[i].endswith("size_gb") else row[i])
                      for i in picked] for row in rows], [headers[i] for i in picked])))
        elif self.format in ("json", "yaml"):
            self.emit(data, list)
        else:
            self._rows([headers[i] for i in picked], [[row[i] for i in picked] for row in rows])

    def emit_one(self, pairs: Sequence[tuple[str, Any]], data: dict[str, Any]) -> None:
        """One object as field/value lines; ``-c`` picks fields."""
        names = [k for k, _ in pairs]
        picked = self._pick(names, names)
        if self.format == "table":
            self.write("\n".join(fields([(pairs[i][0], self._cut(pairs[i][1]))
                                         for i in picked])))
        elif self.format in ("json", "yaml"):
            if self.columns:
                data = {names[i]: pairs[i][1] for i in picked}
            self.emit(data, list)
        elif self.format == "value":
            self._rows([names[i] for i in picked], [[pairs[i][1] for i in picked]])
        else:
            self._rows(["Field", "Value"], [[pairs[i][0], pairs[i][1]] for i in picked])

    def _rows(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.format == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
            writer.writerow(headers)
            writer.writerows([["" if v is None else v for v in row] for row in rows])
            self.write(buf.getvalue())
        else:               # value: openstackclient's space-separated values
            self.write("\n".join(" ".join("" if v is None else str(v) for v in row)
                                 for row in rows))

    def _pick(self, headers: Sequence[str], keys: Sequence[str]) -> list[int]:
        """Indexes of the ``-c`` columns (by header or key, any case), in their order."""
        if not self.columns:
            return list(range(len(headers)))
        index = {}
        for i, (header, key) in enumerate(zip(headers, keys, strict=True)):
            index[_column_key(header)] = i
            index[_column_key(key)] = i
        picked = []
        for column in self.columns:
            if _column_key(column) not in index:
                raise UsageError("no column %r; columns: %s" % (column, ", ".join(headers)))
            picked.append(index[_column_key(column)])
        return picked

    def _sorted(self, headers: Sequence[str], keys: Sequence[str],
                pairs: list[tuple[Sequence[Any], Any]]) -> list[tuple[Sequence[Any], Any]]:
        out = list(pairs)
        for column in reversed(self.sort_columns):
            i = self._pick_one(headers, keys, column)
            out.sort(key=lambda pair: (pair[0][i] is None, _sort_key(pair[0][i])))
        return out

    def _pick_one(self, headers: Sequence[str], keys: Sequence[str], column: str) -> int:
        saved, self.columns = self.columns, [column]
        try:
            return self._pick(headers, keys)[0]
        finally:
            self.columns = saved

    def _cut(self, value: Any) -> Any:
        """A table cell no wider than ``--max-width`` (0: no limit)."""
        text = "-" if value in (None, "") else str(value)
        if self.max_width and len(text) > self.max_width:
            return text[:max(1, self.max_width - 3)] + "..."
        return text

    def error(self, exc: BaseException, code: int) -> None:
        text = one_line(exc)
        self.stderr.write("xensm: error: %s\n" % text)
        self.stderr.flush()
        if self.format in ("json", "yaml"):
            self.emit({"error": {"type": type(exc).__name__, "message": text,
                                 "exit_code": code}}, list)


def _column_key(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _sort_key(value: Any) -> Any:
    if isinstance(value, int | float):
        return (0, value, "")
    return (1, 0, str(value))


def to_yaml(data: Any, indent: int = 0) -> str:
    """YAML for the plain data xensm prints (dicts, lists, scalars); strings
    are JSON-quoted where YAML would read them otherwise."""
    pad = "  " * indent
    if isinstance(data, dict):
        if not data:
            return pad + "{}"
        lines = []
        for key in sorted(data):
            value = data[key]
            if isinstance(value, dict | list) and value:
                lines.append("%s%s:\n%s" % (pad, key, to_yaml(value, indent + 1)))
            else:
                lines.append("%s%s: %s" % (pad, key, _yaml_scalar(value)))
        return "\n".join(lines)
    if isinstance(data, list):
        if not data:
            return pad + "[]"
        lines = []
        for item in data:
            if isinstance(item, dict | list) and item:
                inner = to_yaml(item, indent + 1).lstrip()
                lines.append("%s- %s" % (pad, inner))
            else:
                lines.append("%s- %s" % (pad, _yaml_scalar(item)))
        return "\n".join(lines)
    return pad + _yaml_scalar(data)


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    text = str(value)
    plain = (text and text.strip() == text and text[0] not in "-?:,[]{}#&*!|>'\"%@`"
             and ": " not in text and " #" not in text and text.lower() not in (
                 "null", "true", "false", "yes", "no", "on", "off", "~")
             and all(c.isprintable() for c in text))
    if plain:
        try:
            float(text)
        except ValueError:
            return text
    return json.dumps(text)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> list[str]:
    cells = [[str(h) for h in headers]] + [["-" if c in (None, "") else str(c) for c in r]
                                           for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in cells]


def fields(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    width = max(len(k) for k, _ in pairs)
    return ["%s  %s" % (k.ljust(width), "-" if v in (None, "") else v) for k, v in pairs]


def plural(n: int, noun: str) -> str:
    return "%d %s%s" % (n, noun, "" if n == 1 else "s")


def size_text(size_gb: int | float | None) -> str:
    return "-" if size_gb is None else "%s GiB" % size_gb


def bytes_text(n: int) -> str:
    if n >= GiB:
        return "%.1f GiB" % (n / GiB)
    if n >= MiB:
        return "%.1f MiB" % (n / MiB)
    return "%d bytes" % n


def when(record: Any, attr: str = "created_at") -> str:
    value = getattr(record, attr)
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def parse_bytes(text: str) -> int:
    """``4096``, ``4K``, ``4MiB``, ``1G`` -> bytes (binary units)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = raw, ""
    if raw and raw[-1] in units:
        number, unit = raw[:-1], raw[-1]
    try:
        value = int(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a size (e.g. 4096, 4M, 1G)" % text) from None
    if value < 0:
        raise argparse.ArgumentTypeError("a size cannot be negative")
    return value


def positive_int(text: str) -> int:
    """A size in GiB: a whole number from 1 to what a record holds."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    if value > manager_mod.SIZE_MAX_GB:
        raise argparse.ArgumentTypeError("%s GiB is more than any SR holds (at most %d)"
                                         % (text, manager_mod.SIZE_MAX_GB))
    return value


def source_text(vol: Any) -> str:
    if vol.source_snapshot_id:
        return "snapshot %s" % vol.source_snapshot_id
    if vol.source_volume_id:
        return "volume %s" % vol.source_volume_id
    return "-"


def status_text(obj: Record) -> str:
    if inventory_mod.interrupted(obj):
        return "%s (interrupted)" % obj.status
    return obj.status


def volume_lines(vol: Any, snapshots: int | None = None) -> list[str]:
    return fields(volume_pairs(vol, snapshots))


def volume_pairs(vol: Any, snapshots: int | None = None) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [
             ("id", vol.id), ("name", vol.name), ("size", size_text(vol.size_gb)),
             ("status", status_text(vol)), ("backend", vol.backend),
             ("vdi", vol.provider_id), ("provider_location", vol.provider_location),
             ("source", source_text(vol)), ("group", vol.group_id),
             ("created", when(vol)), ("updated", when(vol, "updated_at"))]
    if vol.deleted_at:
        pairs.append(("deleted", when(vol, "deleted_at")))
    if vol.status_reason:
        pairs.append(("reason", vol.status_reason))
    if vol.owner:
        pairs.append(("owner", vol.owner))
    if snapshots is not None:
        pairs.append(("snapshots", snapshots))
    return pairs


def snapshot_lines(snap: Any) -> list[str]:
    return fields(snapshot_pairs(snap))


def snapshot_pairs(snap: Any) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [
             ("id", snap.id), ("name", snap.name), ("volume", snap.volume_id),
             ("volume_size", size_text(snap.volume_size_gb)), ("status", status_text(snap)),
             ("backend", snap.backend), ("vdi", snap.provider_id),
             ("provider_location", snap.provider_location),
             ("group_snapshot", snap.group_snapshot_id), ("created", when(snap))]
    if snap.deleted_at:
        pairs.append(("deleted", when(snap, "deleted_at")))
    if snap.status_reason:
        pairs.append(("reason", snap.status_reason))
    return pairs


VOLUME_COLUMNS = (("ID", "id"), ("NAME", "name"), ("SIZE", "size_gb"),
                  ("STATUS", "status"), ("BACKEND", "backend"), ("SOURCE", "source"))
SNAPSHOT_COLUMNS = (("ID", "id"), ("NAME", "name"), ("VOLUME", "volume_id"),
                    ("SIZE", "volume_size_gb"), ("STATUS", "status"), ("CREATED", "created_at"))


def volume_row(v: Any) -> list[Any]:
    return [v.id, v.name, v.size_gb, status_text(v), v.backend, source_text(v)]


def snapshot_row(s: Any) -> list[Any]:
    return [s.id, s.name, s.volume_id, s.volume_size_gb, status_text(s), when(s)]


def volume_table(vols: Sequence[Any]) -> list[str]:
    if not vols:
        return ["No volumes."]
    return table([[*r[:2], size_text(r[2]), *r[3:]] for r in map(volume_row, vols)],
                 [h for h, _ in VOLUME_COLUMNS])


def snapshot_table(snaps: Sequence[Any]) -> list[str]:
    if not snaps:
        return ["No snapshots."]
    return table([[*r[:3], size_text(r[3]), *r[4:]] for r in map(snapshot_row, snaps)],
                 [h for h, _ in SNAPSHOT_COLUMNS])


def emit_records(out: Output, columns: Sequence[tuple[str, str]], items: Sequence[Any],
                 row: Callable[[Any], list[Any]], empty: str) -> None:
    """A list of inventory records in the chosen format."""
    out.emit_list([h for h, _ in columns], [k for _, k in columns], items, row,
                  lambda r: r.to_dict(), empty)


def filtered(records: Sequence[Any], args: argparse.Namespace) -> list[Any]:
    """``--status`` and ``--name`` filters (exact; any of those repeated)."""
    out = list(records)
    if getattr(args, "status", None):
        out = [r for r in out if r.status in args.status or status_text(r) in args.status]
    if getattr(args, "name", None):
        out = [r for r in out if r.name in args.name]
    return out


def tree_lines(node: dict[str, Any], extra: dict[str, str] | None = None) -> list[str]:
    def label(n: dict[str, Any]) -> str:
        rec = n["record"]
        name = rec.name or "-"
        more = "  [%s]" % extra[rec.id] if extra and rec.id in extra else ""
        if n["kind"] == "volume":
            return "volume %s  %s  %s  %s%s" % (name, rec.id, size_text(rec.size_gb),
                                                status_text(rec), more)
        return "snapshot %s  %s  %s  %s%s" % (name, rec.id, when(rec), status_text(rec),
                                              more)

    lines = [label(node)]

    def walk(children: list[dict[str, Any]], prefix: str) -> None:
        for i, child in enumerate(children):
            last = i == len(children) - 1
            lines.append(prefix + ("└── " if last else "├── ") + label(child))
            walk(child["children"], prefix + ("    " if last else "│   "))

    walk(node["children"], "")
    return lines


def tree_dict(node: dict[str, Any]) -> dict[str, Any]:
    return {"kind": node["kind"], **node["record"].to_dict(),
            "children": [tree_dict(c) for c in node["children"]]}


class Progress:
    """A one-line progress bar on a terminal, redrawn at most ten times a second."""

    def __init__(self, stream: IO[str], verb: str) -> None:
        self.stream = stream
        self.verb = verb
        self.last = 0.0
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        width = 30
        filled = width * done // total if total else width
        rate = done / max(now - self.started, 1e-6)
        self.stream.write("\r%s [%s%s] %3d%%  %s of %s  %s/s " % (
            self.verb, "#" * filled, "." * (width - filled),
            100 * done // total if total else 100, bytes_text(done), bytes_text(total),
            bytes_text(int(rate))))
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


# -- commands -----------------------------------------------------------------

Handler = Callable[[Manager, argparse.Namespace, Output], int]


def cmd_check(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    names = [mgr.backend_name(args.backend)] if args.backend or len(mgr.backends) <= 1 \
        else list(mgr.backends)
    reports: list[dict[str, Any]] = []
    worst = EXIT_OK
    for name in names:
        try:
            reports.append(mgr.check(name))
        except exception.XensmError as exc:
            code = exit_code(exc)
            worst = worst or code
            reports.append({"backend": name, "ok": False, "error": one_line(exc),
                            "exit_code": code})
            # Said once, on stderr; stdout only says which back end failed.
            out.stderr.write("xensm: error: back end %s: %s\n" % (name, one_line(exc)))

    def human() -> list[str]:
        lines: list[str] = []
        for rep in reports:
            if not rep["ok"]:
                lines.append("Back end %s: FAILED (see the error)" % rep["backend"])
                continue
            caps = rep["capabilities"]
            can = [c for c, yes in caps.items() if yes]
            cannot = [c for c, yes in caps.items() if not yes]
            sr = rep["sr"] or {}
            lines.append("Back end %s: OK" % rep["backend"])
            lines += ["  " + line for line in fields([
                ("XAPI", "%s as %s (%d hosts: %s)" % (
                    rep["xapi_url"], rep["xapi_username"], len(rep["hosts"]),
                    ", ".join(rep["hosts"]))),
                ("SR", "%s %r (%s, %s)" % (sr.get("uuid"), sr.get("name_label"),
                                           rep["sr_type"],
                                           "shared" if sr.get("shared") else "local")
                 if sr else "one SR per volume (%s)" % rep["sr_type"]),
                ("protocol", rep["storage_protocol"]),
                ("capacity", "%s GiB total, %s GiB free, %s GiB provisioned" % (
                    rep["total_capacity_gb"], rep["free_capacity_gb"],
                    rep["provisioned_capacity_gb"])),
                ("can", ", ".join(can) or "-"),
                ("cannot", ", ".join(cannot) or "-"),
                ("inventory", rep["inventory"]),
            ])]
            lines += ["  warning: %s" % w for w in rep["warnings"]]
            if "group_snapshot" in cannot:
                lines.append("  (groups are snapshotted volume by volume, not "
                             "write-order consistently)")
            elif rep.get("group_consistency") == "paused-vms":
                lines.append("  (group and VM snapshots: crash-consistent, the VMs holding "
                             "the volumes paused for the instant)")
            elif rep.get("group_consistency") == "array":
                lines.append("  (group and VM snapshots: crash-consistent, one array "
                             "group snapshot)")
        return lines

    out.emit(reports if len(reports) > 1 else reports[0], human)
    return worst


def cmd_stats(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    names = [mgr.backend_name(args.backend)] if args.backend or len(mgr.backends) <= 1 \
        else list(mgr.backends)
    all_stats = [mgr.stats(name) for name in names]

    def human() -> list[str]:
        lines: list[str] = []
        for stats in all_stats:
            inv = stats.get("inventory", {})
            # "pools" repeats the top level for Cinder's scheduler: shown by name.
            flat = [(k, v) for k, v in sorted(stats.items()) if k not in ("inventory", "pools")]
            flat.append(("pools", ", ".join(str(p.get("pool_name")) for p in
                                            stats.get("pools", []))))
            errors = sum(n for status, n in inv["by_status"].items()
                         if status.startswith("error"))
            flat.append(("inventory", "%s (%d GiB), %s%s" % (
                plural(inv["volumes"], "volume"), inv["volume_gb"],
                plural(inv["snapshots"], "snapshot"),
                "; %d in error, not counted in the GiB" % errors if errors else "")))
            if lines:
                lines.append("")
            lines += fields([(k, ", ".join(map(str, v)) if isinstance(v, list) else v)
                             for k, v in flat if k != "snapshot_space"])
            lines += space_summary_lines(mgr, stats.get("snapshot_space") or {})
        return lines

    out.emit(all_stats if len(all_stats) > 1 else all_stats[0], human)
    return EXIT_OK


def _range_text(low: int | None, high: int | None) -> str:
    if low is None or high is None:
        return "unknown"
    if low == high:
        return bytes_text(low)
    return "%s to %s" % (bytes_text(low), bytes_text(high))


def space_summary_lines(mgr: Manager, report: dict[str, Any]) -> list[str]:
    """``xensm stats``: each volume's snapshot space, the provisioned split, notes."""
    lines = ["", "Snapshot space:"]
    volumes = report.get("volumes") or {}
    if not volumes:
        lines.append("  no volumes")
    for vol_id, info in volumes.items():
        snaps = info.get("snapshots") or {}
        try:
            label = mgr.inventory.get(manager_mod.Volume, vol_id).name or vol_id
        except inventory_mod.NotInInventory:
            label = vol_id
        if "tree_bytes" in info:
            lines.append(
                "  volume %s: %s; chain %s deep; the tree holds %s (volume %s, base "
                "copies %s, snapshot VHDs %s); its snapshots hold %s" % (
                    label, plural(len(snaps), "snapshot"), info.get("chain_depth"),
                    bytes_text(info["tree_bytes"]), bytes_text(info["leaf_bytes"]),
                    bytes_text(info["base_copy_bytes"]),
                    bytes_text(info["snapshot_leaf_bytes"]),
                    _range_text(info["snapshots_hold_min"], info["snapshots_hold_max"])))
        else:
            lines.append("  volume %s: %s on the array (%s), space per snapshot not "
                         "reported" % (label, plural(len(snaps), "snapshot"),
                                       info.get("array_snapshots", "?")))
    prov = report.get("provisioned") or {}
    if "snapshots" in prov:
        lines.append("  provisioned (virtual sizes): volumes %s, snapshots %s, other %s" % (
            bytes_text(prov["volumes"]), bytes_text(prov["snapshots"]),
            bytes_text(prov["other"])))
    elif prov:
        lines.append("  array: provisioned %s, used %s" % (
            bytes_text(int(prov.get("provisioned_space") or 0)),
            bytes_text(int(prov.get("used_space") or 0))))
    lines += ["  note: %s" % n for n in report.get("notes") or []]
    return lines


def cmd_volume_create(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    if not (args.size or args.snapshot or args.source_volume):
        raise UsageError("give --size (GiB), --snapshot or --source-volume")
    vol = mgr.create_volume(args.size, name=args.name or "", backend=args.backend,
                            snapshot=args.snapshot, source_volume=args.source_volume,
                            qos=args.qos)
    out.emit(vol.to_dict(), lambda: volume_lines(vol))
    return EXIT_OK


def cmd_volume_set(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vol, qos = mgr.set_volume_qos(args.volume, args.qos)
    out.emit(dict(vol.to_dict(), qos=qos), lambda: [
        "Volume %s: QoS minIOPS %d, maxIOPS %d, burstIOPS %d." % (
            vol.id, qos["minIOPS"], qos["maxIOPS"], qos["burstIOPS"])])
    return EXIT_OK


def cmd_volume_list(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vols = filtered(mgr.inventory.volumes(backend=args.backend, include_gone=args.all), args)
    emit_records(out, VOLUME_COLUMNS, vols, volume_row, "No volumes.")
    return EXIT_OK


def cmd_volume_show(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vol = mgr.volume(args.volume, include_gone=True)
    snaps = mgr.inventory.snapshots(volume_id=vol.id)
    data = dict(vol.to_dict(), snapshots=[s.id for s in snaps])
    out.emit_one(volume_pairs(vol, len(snaps)), data)
    return EXIT_OK


def cmd_volume_delete(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vol = mgr.delete_volume(args.volume, cascade=args.cascade)
    out.emit(vol.to_dict(), lambda: ["Deleted volume %s." % vol.id])
    return EXIT_OK


def cmd_volume_extend(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vol = mgr.extend_volume(args.volume, args.size)
    out.emit(vol.to_dict(), lambda: ["Extended volume %s to %s." % (vol.id,
                                                                     size_text(vol.size_gb))])
    return EXIT_OK


def cmd_volume_clone(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vol = mgr.clone_volume(args.volume, name=args.name or "", size_gb=args.size)
    out.emit(vol.to_dict(), lambda: volume_lines(vol))
    return EXIT_OK


def cmd_volume_revert(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vol, snap = mgr.revert_volume(args.volume, args.snapshot)
    out.emit({"volume": vol.to_dict(), "snapshot": snap.to_dict()},
             lambda: ["Reverted volume %s to snapshot %s (%s, %s)." % (
                 vol.id, snap.id, snap.name or "unnamed", when(snap))])
    return EXIT_OK


def cmd_volume_migrate(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    before = mgr.volume(args.volume)
    vol = mgr.migrate_volume(args.volume, args.to,
                             progress=_progress(out, "migrate", not args.no_progress))
    out.emit(vol.to_dict(), lambda: [
        "Moved volume %s from back end %s to %s: VDI %s on SR %s." % (
            vol.id, before.backend, vol.backend, vol.provider_id,
            (vol.provider_location or "").split("/")[0])])
    return EXIT_OK


def cmd_volume_manage(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vol = mgr.manage_volume(vdi_uuid=args.vdi_uuid, vdi_name=args.vdi_name,
                            name=args.name or "", backend=args.backend,
                            array_volume=args.array_volume)
    out.emit(vol.to_dict(), lambda: volume_lines(vol))
    return EXIT_OK


def cmd_volume_manageable(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    entries = mgr.manageable(args.backend)

    def human() -> list[str]:
        if not entries:
            return ["No VDIs on the SR."]
        return table([(e["reference"]["source-id"], e["extra_info"].get("name_label"),
                       size_text(e["size"]), "yes" if e["safe_to_manage"] else "no",
                       e["reason_not_safe"]) for e in entries],
                     ("VDI", "NAME_LABEL", "SIZE", "MANAGEABLE", "WHY_NOT"))

    out.emit(entries, human)
    return EXIT_OK


def cmd_volume_unmanage(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vol = mgr.unmanage_volume(args.volume)
    out.emit(vol.to_dict(), lambda: [
        "Unmanaged volume %s; VDI %s stays on the SR, untagged." % (vol.id, vol.provider_id)])
    return EXIT_OK


def _progress(out: Output, verb: str, enabled: bool) -> Progress | None:
    if not enabled or out.json:
        return None
    if not (hasattr(out.stdout, "isatty") and out.stdout.isatty()):
        return None
    return Progress(out.stderr, verb)


def cmd_volume_upload(mgr: Manager, args: argparse.Namespace, out: Output,
                      stdin: IO[bytes] | None = None) -> int:
    started = time.monotonic()
    if args.file == "-":
        source = stdin if stdin is not None else sys.stdin.buffer
        size = args.size
        if size is None:
            try:
                st = os.fstat(source.fileno())
                size = st.st_size - source.tell() if stat.S_ISREG(st.st_mode) else None
            except (OSError, ValueError, AttributeError):
                size = None
        if size is None:
            raise exception.InvalidInput(
                reason="reading from a pipe: give --size (XAPI needs the length up front)")
        done = mgr.upload(args.volume, source, size,
                          progress=_progress(out, "upload", not args.no_progress))
    else:
        with open(args.file, "rb") as source_file:
            size = args.size if args.size is not None else os.fstat(source_file.fileno()).st_size
            done = mgr.upload(args.volume, source_file, size,
                              progress=_progress(out, "upload", not args.no_progress))
    seconds = time.monotonic() - started
    vol = mgr.volume(args.volume)
    out.emit({"volume": vol.id, "bytes": done, "seconds": round(seconds, 3)},
             lambda: ["Uploaded %s into volume %s in %.1f s." % (bytes_text(done), vol.id,
                                                                  seconds)])
    return EXIT_OK


class SparseWriter:
    """Writes a volume's content to a file, leaving all-zero blocks as holes.

    A thin volume is mostly never-written blocks, which the export sends as
    zeros: skipping them keeps the file as sparse as the volume.
    """

    BLOCK = 64 << 10

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.size = 0
        self._zero = bytes(self.BLOCK)

    def write(self, chunk: bytes) -> int:
        chunk = bytes(chunk)
        for start in range(0, len(chunk), self.BLOCK):
            # bytes, not a memoryview: comparing views goes element by element.
            block = chunk[start:start + self.BLOCK]
            if block == self._zero if len(block) == self.BLOCK else not block.strip(b"\0"):
                self.sink.seek(len(block), os.SEEK_CUR)
            else:
                self.sink.write(block)
        self.size += len(chunk)
        return len(chunk)

    def close(self) -> None:
        """Give the file its full length (a trailing hole writes nothing)."""
        self.sink.truncate(self.size)


def cmd_volume_download(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    started = time.monotonic()
    if args.file == "-":
        if hasattr(out.stdout, "isatty") and out.stdout.isatty():
            raise exception.InvalidInput(
                reason="refusing to write raw volume data to a terminal; give a FILE or "
                       "redirect stdout")
        sink = getattr(out.stdout, "buffer", None)
        if sink is None:
            raise exception.InvalidInput(reason="stdout takes no binary data here")
        out.stdout.flush()
        done = mgr.download(args.volume, sink, length=args.length)
        sink.flush()
        return EXIT_OK
    partial = args.file + ".part"
    try:
        with open(partial, "wb") as sink_file:
            sparse = SparseWriter(sink_file)
            done = mgr.download(args.volume, sparse.write, length=args.length,
                                progress=_progress(out, "download", not args.no_progress))
            sparse.close()
        os.replace(partial, args.file)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    seconds = time.monotonic() - started
    vol = mgr.volume(args.volume)
    out.emit({"volume": vol.id, "bytes": done, "file": args.file,
              "seconds": round(seconds, 3)},
             lambda: ["Downloaded %s of volume %s to %s in %.1f s." % (
                 bytes_text(done), vol.id, args.file, seconds)])
    return EXIT_OK


def cmd_reset_state(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    kind = "volume" if args.command == "volume" else "snapshot"
    obj = mgr.reset_state(kind, getattr(args, kind), args.status)
    out.emit(obj.to_dict(), lambda: ["%s %s is now %s (%s)." % (
        kind.capitalize(), obj.id, obj.status, obj.status_reason)])
    return EXIT_OK


def cmd_snapshot_create(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    snap = mgr.create_snapshot(args.volume, name=args.name or "")
    out.emit(snap.to_dict(), lambda: snapshot_lines(snap))
    return EXIT_OK


def cmd_snapshot_list(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    volume_id = mgr.volume(args.volume, include_gone=True).id if args.volume else None
    snaps = filtered(mgr.inventory.snapshots(volume_id=volume_id, backend=args.backend,
                                             include_gone=args.all), args)
    emit_records(out, SNAPSHOT_COLUMNS, snaps, snapshot_row, "No snapshots.")
    return EXIT_OK


def cmd_snapshot_show(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    snap = mgr.snapshot(args.snapshot, include_gone=True)
    clones = mgr.inventory.volumes_from_snapshot(snap.id)
    data = dict(snap.to_dict(), volumes_made_from_it=[v.id for v in clones])
    out.emit_one(snapshot_pairs(snap) + [("volumes_from_it",
                                          ", ".join(v.id for v in clones))], data)
    return EXIT_OK


def cmd_snapshot_delete(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    snap = mgr.delete_snapshot(args.snapshot)
    out.emit(snap.to_dict(), lambda: ["Deleted snapshot %s." % snap.id])
    return EXIT_OK


def cmd_snapshot_tree(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vol = mgr.volume(args.volume, include_gone=True)
    node = mgr.inventory.tree(vol.id, include_gone=args.all)
    lineage = mgr.inventory.lineage(vol.id)
    report: dict[str, Any] = {}
    if args.space:
        report = mgr.snapshot_space(vol.backend)

    def human() -> list[str]:
        lines = []
        if lineage:
            parts = ["%s %s" % ("snapshot" if hasattr(r, "volume_id") else "volume",
                                getattr(r, "name", "") or r.id) for r in lineage]
            lines.append("made from " + " <- ".join(parts))
        if not args.space:
            return lines + tree_lines(node)
        lines += tree_lines(node, space_labels(report))
        return lines + [line for line in space_summary_lines(mgr, _only(report, vol.id))
                        if line and line != "Snapshot space:"]

    data = dict(tree_dict(node), lineage=[r.id for r in lineage])
    if args.space:
        data["space"] = report
    out.emit(data, human)
    return EXIT_OK


def _only(report: dict[str, Any], volume_id: str) -> dict[str, Any]:
    vols = report.get("volumes") or {}
    return dict(report, volumes={k: v for k, v in vols.items() if k == volume_id})


def space_labels(report: dict[str, Any]) -> dict[str, str]:
    """Record id -> what it holds and what deleting it frees, for the tree."""
    labels: dict[str, str] = {}
    for vol_id, info in (report.get("volumes") or {}).items():
        if "leaf_bytes" in info:
            labels[vol_id] = "holds %s, chain %s deep" % (bytes_text(info["leaf_bytes"]),
                                                          info.get("chain_depth"))
        for snap_id, snap in (info.get("snapshots") or {}).items():
            if not snap.get("present"):
                labels[snap_id] = "not on the back end"
                continue
            frees = snap.get("frees")
            if frees is None:
                labels[snap_id] = "size %s; space it alone holds: not reported by the " \
                                  "array" % bytes_text(int(snap.get("total_size") or 0))
                continue
            text = "own %s; delete frees %s now" % (bytes_text(snap["own_bytes"]),
                                                     bytes_text(frees["now"]))
            if frees["after_coalesce_max"] != frees["now"]:
                text += ", %s after the SR coalesces" % _range_text(
                    frees["after_coalesce_min"], frees["after_coalesce_max"])
            labels[snap_id] = text
    return labels


def cmd_group_create(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    group = mgr.create_group(args.name, args.volume or [], backend=args.backend)
    members = mgr.inventory.volumes(group_id=group.id)
    out.emit(dict(group.to_dict(), volumes=[v.id for v in members]),
             lambda: ["Created group %s (%s) with %d volume(s)." % (
                 group.id, group.name, len(members))])
    return EXIT_OK


def cmd_group_list(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    groups = filtered(mgr.inventory.groups(backend=args.backend, include_gone=args.all), args)
    rows = [(g, mgr.inventory.volumes(group_id=g.id)) for g in groups]

    out.emit_list(("ID", "NAME", "STATUS", "BACKEND", "VOLUMES"),
                  ("id", "name", "status", "backend", "volumes"), rows,
                  lambda r: [r[0].id, r[0].name, status_text(r[0]), r[0].backend, len(r[1])],
                  lambda r: dict(r[0].to_dict(), volumes=[v.id for v in r[1]]), "No groups.")
    return EXIT_OK


def cmd_group_show(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    group = mgr.group(args.group, include_gone=True)
    vols = mgr.inventory.volumes(group_id=group.id, include_gone=True)
    gsnaps = mgr.inventory.group_snapshots(group.id, include_gone=True)
    snaps = {g.id: mgr.inventory.snapshots(group_snapshot_id=g.id, include_gone=True)
             for g in gsnaps}
    data = dict(group.to_dict(), volumes=[v.to_dict() for v in vols],
                group_snapshots=[dict(g.to_dict(), snapshots=[s.id for s in snaps[g.id]])
                                 for g in gsnaps])

    def human() -> list[str]:
        lines = fields([("id", group.id), ("name", group.name),
                        ("status", status_text(group)), ("backend", group.backend),
                        ("created", when(group))])
        lines += ["", "Volumes:"] + ["  " + line for line in volume_table(vols)]
        lines += ["", "Group snapshots:"]
        if not gsnaps:
            lines.append("  none")
        for g in gsnaps:
            lines.append("  %s  %s  %s  %s  (%d snapshots)" % (
                g.id, g.name or "-", status_text(g), when(g), len(snaps[g.id])))
        return lines

    out.emit(data, human)
    return EXIT_OK


def cmd_group_snapshot(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    gsnap, snaps = mgr.snapshot_group(args.group, name=args.name or "")
    out.emit(dict(gsnap.to_dict(), snapshots=[s.to_dict() for s in snaps]),
             lambda: ["Group snapshot %s of group %s: %d snapshot(s)." % (
                 gsnap.id, gsnap.group_id, len(snaps))] + snapshot_table(snaps))
    return EXIT_OK


def cmd_group_delete(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    group = mgr.delete_group(args.group, delete_volumes=args.delete_volumes,
                             cascade=args.cascade)
    out.emit(group.to_dict(), lambda: ["Deleted group %s." % group.id])
    return EXIT_OK


def vm_snapshot_view(mgr: Manager, vmsnap: Any) -> dict[str, Any]:
    members = mgr.inventory.vm_snapshot_members(vmsnap.id, include_gone=True)
    return dict(vmsnap.to_dict(), snapshots=[
        dict(s.to_dict()) for s in members])


def cmd_vm_snapshot(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vmsnap, snaps = mgr.snapshot_vm(args.vm, name=args.name or "")
    out.emit(vm_snapshot_view(mgr, vmsnap),
             lambda: ["VM snapshot %s of VM %s (%s): %d snapshot(s); consistency %s." % (
                 vmsnap.id, vmsnap.vm_uuid, vmsnap.vm_name, len(snaps),
                 vmsnap.consistency)]
             + (["Not in it (no xensm volume): %s" % vmsnap.skipped] if vmsnap.skipped
                else []) + snapshot_table(snaps))
    return EXIT_OK


def cmd_vm_list(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    rows = [(v, mgr.inventory.vm_snapshot_members(v.id)) for v in mgr.vm_snapshots(args.vm)]
    out.emit_list(("ID", "NAME", "VM", "STATUS", "SNAPSHOTS", "CONSISTENCY", "CREATED"),
                  ("id", "name", "vm_name", "status", "snapshots", "consistency",
                   "created_at"), rows,
                  lambda r: [r[0].id, r[0].name, r[0].vm_name, status_text(r[0]), len(r[1]),
                             r[0].consistency, when(r[0])],
                  lambda r: dict(r[0].to_dict(), snapshots=[s.id for s in r[1]]),
                  "No VM snapshots.")
    return EXIT_OK


def cmd_vm_revert(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vmsnap, vols = mgr.revert_vm(args.vm_snapshot)
    out.emit(dict(vm_snapshot_view(mgr, vmsnap), volumes=[v.to_dict() for v in vols]),
             lambda: ["Reverted VM %s (%s) to VM snapshot %s: %d volume(s)." % (
                 vmsnap.vm_uuid, vmsnap.vm_name, vmsnap.id, len(vols))])
    return EXIT_OK


def cmd_vm_delete(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    vmsnap = mgr.delete_vm_snapshot(args.vm_snapshot)
    out.emit(vmsnap.to_dict(), lambda: ["Deleted VM snapshot %s." % vmsnap.id])
    return EXIT_OK if vmsnap.status == "deleted" else EXIT_FAILED


def cmd_reconcile(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    names = [mgr.backend_name(args.backend)] if args.backend or len(mgr.backends) <= 1 \
        else list(mgr.backends)
    if args.yes and not args.delete_orphans:
        raise UsageError("--yes confirms --delete-orphans; give both to delete")
    reports = [mgr.reconcile(name, delete_orphans=args.delete_orphans, yes=args.yes)
               for name in names]
    unresolved = [f for r in reports for f in r.discrepancies
                  if not (f.action_taken or "").startswith(("deleted", "unpaused"))]

    def human() -> list[str]:
        lines: list[str] = []
        for rep in reports:
            lines.append("Back end %s, SR %s: %s and %s checked." % (
                rep.backend, rep.sr_uuid, plural(rep.checked_records, "record"),
                plural(rep.checked_vdis, "VDI")))
            if rep.clean:
                lines.append("Inventory and SR agree.")
            for f in rep.findings:
                lines.append("%s  %s %s: %s" % (f.kind, f.object, f.id, f.detail))
                lines.append("    %s" % (f.action_taken or "-> " + f.action))
        return lines

    out.emit([r.to_dict() for r in reports] if len(reports) > 1 else reports[0].to_dict(),
             human)
    if unresolved:
        out.stderr.write("xensm: reconcile: the inventory and the SR disagree on %s (%s)\n"
                         % (plural(len(unresolved), "object"),
                            ", ".join(sorted({f.kind for f in unresolved}))))
        return EXIT_DRIFT
    return EXIT_OK


# -- schedules ----------------------------------------------------------------

def _scheduler(mgr: Manager, args: argparse.Namespace) -> schedule_mod.Scheduler:
    now = getattr(args, "now", None)
    if now is None:
        return schedule_mod.Scheduler(mgr)
    return schedule_mod.Scheduler(mgr, clock=lambda: now)


def parse_time(text: str) -> datetime.datetime:
    """An ISO 8601 time (``2026-11-28T11:00:00Z``) as naive UTC."""
    try:
        value = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "%r is not an ISO 8601 time (e.g. 2026-11-28T11:00:00Z)" % text) from None
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC).replace(tzinfo=None)
    return value


def schedule_row(sched: Any, live: int, next_due: Any) -> list[Any]:
    state = sched.status
    if sched.status == "active" and sched.owner:
        state = "running (%s)" % sched.owner
    elif sched.status == "active" and sched.last_error:
        state = "active (last run failed: %s)" % sched.last_error
    return [sched.id, sched.name or "-", "%s %s" % (sched.target_kind, sched.target_id),
            schedule_mod.duration_text(sched.every_s), sched.keep, live,
            next_due.strftime("%Y-%m-%d %H:%M:%S") if next_due else "-", state]


SCHEDULE_HEADERS = ("ID", "NAME", "TARGET", "EVERY", "KEEP", "SNAPSHOTS", "NEXT DUE",
                    "STATUS")
SCHEDULE_KEYS = ("id", "name", "target", "every", "keep", "snapshots", "next_due", "status")


def cmd_schedule_create(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    kind = "volume" if args.volume_kind else "group" if args.group_kind else None
    sched = _scheduler(mgr, args).create(args.target, args.every, args.keep,
                                         name=args.name or "", kind=kind)
    out.emit(sched.to_dict(), lambda: [
        "Created schedule %s: a snapshot of %s %s every %s, the newest %d kept." % (
            sched.id, sched.target_kind, sched.target_id,
            schedule_mod.duration_text(sched.every_s), sched.keep),
        "Run 'xensm schedule run' from cron or a systemd timer (or 'xensm schedule run "
        "--forever') to take them."])
    return EXIT_OK


def cmd_schedule_list(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    sch = _scheduler(mgr, args)
    scheds = filtered(sch.schedules(include_gone=args.all), args)
    rows = [(s, len(sch.live_made(s)), sch.next_due_of(s) if s.status == "active" else None)
            for s in scheds]
    out.emit_list(SCHEDULE_HEADERS, SCHEDULE_KEYS, rows,
                  lambda r: schedule_row(*r),
                  lambda r: dict(r[0].to_dict(), every=schedule_mod.duration_text(
                      r[0].every_s), snapshots=r[1],
                      next_due=r[2].strftime("%Y-%m-%dT%H:%M:%SZ") if r[2] else None),
                  "No schedules.")
    return EXIT_OK


def cmd_schedule_show(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    sch = _scheduler(mgr, args)
    sched = sch.schedule(args.schedule, include_gone=True)
    runs = sch.runs(sched.id)
    live = {r.id for r in sch.live_made(sched)}
    data = dict(sched.to_dict(), every=schedule_mod.duration_text(sched.every_s),
                runs=[dict(r.to_dict(), live=r.id in live) for r in runs])

    def human() -> list[str]:
        lines = fields([("id", sched.id), ("name", sched.name or "-"),
                        ("target", "%s %s" % (sched.target_kind, sched.target_id)),
                        ("every", schedule_mod.duration_text(sched.every_s)),
                        ("keep", sched.keep), ("status", sched.status),
                        ("last error", sched.last_error or "-")])
        lines += ["", "Runs:"]
        rows = [[schedule_mod.period_start(sched.anchor_at, sched.every_s, r.period)
                 .strftime("%Y-%m-%d %H:%M:%S"), r.status, r.missed, r.made_id or "-"]
                for r in runs]
        lines += ["  " + line for line in table(rows, ("PERIOD", "STATUS", "MISSED",
                                                       "MADE"))] if rows else ["  none"]
        return lines

    out.emit(data, human)
    return EXIT_OK


def cmd_schedule_delete(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    sched = _scheduler(mgr, args).delete(args.schedule,
                                         delete_snapshots=args.delete_snapshots)
    out.emit(sched.to_dict(), lambda: ["Deleted schedule %s%s." % (
        sched.id, " and its snapshots" if args.delete_snapshots
        else "; its snapshots stay (delete them with 'xensm snapshot delete')")])
    return EXIT_OK


def result_lines(results: Sequence[Any]) -> list[str]:
    lines = []
    for r in results:
        what = "%s %s" % (r.schedule_id, "(%s)" % r.name if r.name else "")
        if r.action == "taken":
            text = "took %s" % r.made_id
            if r.missed:
                text += " (catching up: %d earlier period(s) missed)" % r.missed
        elif r.action == "failed":
            text = "FAILED: %s" % r.error
        else:
            text = r.action
        if r.pruned:
            text += "; deleted the oldest: %s" % ", ".join(r.pruned)
        if r.error and r.action != "failed":
            text += "; %s" % r.error
        lines.append("schedule %s: %s" % (what.strip(), text))
    return lines


def cmd_schedule_run(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    sch = _scheduler(mgr, args)
    if not args.forever:
        results = sch.run_due(args.schedule or None)
        out.emit([r.to_dict() for r in results],
                 lambda: result_lines(results) or ["No schedules."])
        failed = [r for r in results if r.action == "failed"]
        if failed:
            out.stderr.write("xensm: schedule run: %s took no snapshot (%s)\n" % (
                plural(len(failed), "schedule"), ", ".join(r.schedule_id for r in failed)))
            return EXIT_FAILED
        return EXIT_OK
    if args.now is not None or args.schedule:
        raise UsageError("--forever runs every schedule on the real clock: give no "
                         "SCHEDULE and no --now")
    stop = threading.Event()

    def report(results: list[Any]) -> None:
        acted = [r for r in results if r.action in ("taken", "failed") or r.pruned]
        if out.json:
            for r in acted:
                out.write(json.dumps(r.to_dict(), sort_keys=True))
        else:
            for line in result_lines(acted):
                out.write(line)

    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        out.stderr.write("xensm: schedule run --forever: started (SIGTERM stops it)\n")
        out.stderr.flush()
        sch.forever(stop, report, poll_s=args.poll)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.stderr.write("xensm: schedule run --forever: stopped\n")
    return EXIT_OK


# -- parser -------------------------------------------------------------------

def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config-file", action="append", metavar="PATH",
                        default=argparse.SUPPRESS,
                        help="ini file with the back-end sections (repeatable; default: "
                             "$XENSM_CONFIG_FILE, else xensm.conf in ~/.xensm, ~, "
                             "/etc/xensm or /etc)")
    common.add_argument("--backend", metavar="NAME", default=argparse.SUPPRESS,
                        help="back-end section to use (default: the only one)")
    common.add_argument("--db-url", metavar="URL", default=argparse.SUPPRESS,
                        help="SQLAlchemy URL of the inventory (default: [xensm] db_url, "
                             "else SQLite in $XDG_STATE_HOME/xensm/)")
    common.add_argument("-f", "--format", choices=FORMATS, default=argparse.SUPPRESS,
                        help="output format (default: table)")
    common.add_argument("--json", dest="format", action="store_const", const="json",
                        default=argparse.SUPPRESS, help="the same as -f json")
    common.add_argument("-c", "--column", action="append", metavar="COLUMN",
                        default=argparse.SUPPRESS,
                        help="only this column or field (repeatable; a header or a "
                             "JSON key, any case)")
    common.add_argument("--sort-column", action="append", metavar="COLUMN",
                        default=argparse.SUPPRESS,
                        help="sort a list by this column (repeatable: first wins)")
    common.add_argument("--max-width", type=int, metavar="N", default=argparse.SUPPRESS,
                        help="cut table cells to N characters (default: no limit)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging (driver, flows, libraries) on stderr")
    return common


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--status", action="append", metavar="STATUS",
                   help="only objects in this status (repeatable)")
    p.add_argument("--name", action="append", metavar="NAME",
                   help="only objects of this name (repeatable)")


QOS_HELP = ("per-volume IOPS, on back ends that set them (solidfire): "
            "min=N,max=N,burst=N, or a preset: slow, medium, fast, performant, off")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="xensm", parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Volumes, snapshots and groups on XenServer / XCP-ng SRs through the\n"
                    "xensm Cinder driver, without OpenStack. Start with 'xensm check'.",
        epilog=EXIT_CODES_HELP)
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def leaf(group: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(
            name, parents=[common], help=help_text, description=help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES_HELP)
        p.set_defaults(handler=handler)
        return p

    leaf(top, "check", cmd_check,
         "connect, validate the SR and print what the back end can do")
    p = leaf(top, "complete", cmd_complete,
             "print a shell completion script: eval \"$(xensm complete)\"")
    p.add_argument("--shell", choices=("bash", "zsh"), default="bash")
    leaf(top, "stats", cmd_stats, "capacity and provisioning figures, and inventory counts")
    p = leaf(top, "reconcile", cmd_reconcile,
             "compare the inventory with the tagged VDIs on the SR; report both ways")
    p.add_argument("--delete-orphans", action="store_true",
                   help="show the VDIs that carry the tag of an object this inventory "
                        "recorded as deleted: the only ones it can prove are its "
                        "leftovers (with --yes, destroy them)")
    p.add_argument("--yes", action="store_true",
                   help="with --delete-orphans: destroy them (else a dry run)")

    volume = top.add_parser("volume", help="volumes").add_subparsers(
        dest="verb", metavar="VERB", required=True)
    p = leaf(volume, "create", cmd_volume_create, "create a volume (empty, or from a "
                                                  "snapshot or another volume)")
    p.add_argument("--size", type=positive_int, help="size in GiB")
    p.add_argument("--name", help="a name to refer to it by")
    p.add_argument("--snapshot", metavar="SNAPSHOT", help="make it from this snapshot")
    p.add_argument("--source-volume", metavar="VOLUME", help="make it a clone of this volume")
    p.add_argument("--qos", metavar="QOS", help=QOS_HELP)
    p = leaf(volume, "set", cmd_volume_set, "change a volume's settings in place (its QoS)")
    p.add_argument("volume", metavar="VOLUME")
    p.add_argument("--qos", metavar="QOS", required=True,
                   help=QOS_HELP + "; keys not given keep their value")
    p = leaf(volume, "list", cmd_volume_list, "list volumes")
    p.add_argument("--all", action="store_true", help="include deleted and unmanaged ones")
    _filters(p)
    p = leaf(volume, "show", cmd_volume_show, "show one volume")
    p.add_argument("volume", metavar="VOLUME", help="id, name or unique id prefix")
    p = leaf(volume, "delete", cmd_volume_delete, "delete a volume and its VDI")
    p.add_argument("volume", metavar="VOLUME")
    p.add_argument("--cascade", action="store_true", help="delete its snapshots first")
    p = leaf(volume, "extend", cmd_volume_extend, "grow a volume")
    p.add_argument("volume", metavar="VOLUME")
    p.add_argument("size", type=positive_int, metavar="SIZE_GB", help="new size in GiB")
    p = leaf(volume, "clone", cmd_volume_clone, "a new volume with the content of VOLUME")
    p.add_argument("volume", metavar="VOLUME")
    p.add_argument("--name")
    p.add_argument("--size", type=positive_int, help="size in GiB (default: the source's)")
    p = leaf(volume, "revert", cmd_volume_revert,
             "put back the content a snapshot holds (default: the latest)")
    p.add_argument("volume", metavar="VOLUME")
    p.add_argument("--snapshot", metavar="SNAPSHOT")
    p = leaf(volume, "migrate", cmd_volume_migrate,
             "move a volume to another back end's SR of the same pool, through XAPI")
    p.add_argument("volume", metavar="VOLUME")
    p.add_argument("--to", metavar="BACKEND", required=True,
                   help="the back end (ini section) to move it to")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none unless stdout is a terminal)")
    p = leaf(volume, "manage", cmd_volume_manage,
             "adopt an existing VDI on the SR, or an array volume (solidfire)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--vdi-uuid", metavar="UUID")
    which.add_argument("--vdi-name", metavar="NAME_LABEL")
    which.add_argument("--array-volume", metavar="ID_OR_NAME",
                       help="a SolidFire volume whose LUN holds one SR with one disk")
    p.add_argument("--name")
    leaf(volume, "manageable", cmd_volume_manageable,
         "list the SR's VDIs and whether each could be managed")
    p = leaf(volume, "unmanage", cmd_volume_unmanage,
             "forget a volume; its VDI stays on the SR, untagged")
    p.add_argument("volume", metavar="VOLUME")
    p = leaf(volume, "reset-state", cmd_reset_state,
             "set a volume's recorded status by hand (storage is not touched)")
    p.add_argument("volume", metavar="VOLUME")
    p.add_argument("--state", "--status", dest="status", choices=("error", "available"),
                   required=True, help="the status to record")
    p = leaf(volume, "upload", cmd_volume_upload,
             "write a raw image (FILE, or - for stdin) at the start of the volume")
    p.add_argument("volume", metavar="VOLUME", help="id, name or unique id prefix")
    p.add_argument("file", metavar="FILE", help="a raw image, or - for stdin")
    p.add_argument("--size", type=parse_bytes,
                   help="bytes to send, e.g. 64M (needed when reading a pipe)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none unless stdout is a terminal)")
    p = leaf(volume, "download", cmd_volume_download,
             "read the volume's raw content into FILE (or - for stdout)")
    p.add_argument("volume", metavar="VOLUME", help="id, name or unique id prefix")
    p.add_argument("file", metavar="FILE", help="where to write, or - for stdout")
    p.add_argument("--length", type=parse_bytes,
                   help="only the first LENGTH bytes (e.g. 4M; default: the whole volume)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none unless stdout is a terminal)")

    snapshot = top.add_parser("snapshot", help="snapshots").add_subparsers(
        dest="verb", metavar="VERB", required=True)
    p = leaf(snapshot, "create", cmd_snapshot_create, "snapshot a volume")
    p.add_argument("volume", metavar="VOLUME")
    p.add_argument("--name")
    p = leaf(snapshot, "list", cmd_snapshot_list, "list snapshots")
    p.add_argument("--volume", metavar="VOLUME", help="only this volume's")
    p.add_argument("--all", action="store_true", help="include deleted ones")
    _filters(p)
    p = leaf(snapshot, "show", cmd_snapshot_show, "show one snapshot")
    p.add_argument("snapshot", metavar="SNAPSHOT")
    p = leaf(snapshot, "delete", cmd_snapshot_delete, "delete a snapshot")
    p.add_argument("snapshot", metavar="SNAPSHOT")
    p = leaf(snapshot, "reset-state", cmd_reset_state,
             "set a snapshot's recorded status by hand (storage is not touched)")
    p.add_argument("snapshot", metavar="SNAPSHOT")
    p.add_argument("--state", "--status", dest="status", choices=("error", "available"),
                   required=True, help="the status to record")
    p = leaf(snapshot, "tree", cmd_snapshot_tree,
             "a volume's snapshots and the volumes made from them, as a tree")
    p.add_argument("volume", metavar="VOLUME")
    p.add_argument("--all", action="store_true", help="include deleted objects")
    p.add_argument("--space", action="store_true",
                   help="ask the back end what each snapshot holds and what deleting it "
                        "would free")

    group = top.add_parser("group", help="groups of volumes").add_subparsers(
        dest="verb", metavar="VERB", required=True)
    p = leaf(group, "create", cmd_group_create, "group volumes of one back end")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--volume", action="append", metavar="VOLUME", help="a member (repeatable)")
    p = leaf(group, "list", cmd_group_list, "list groups")
    p.add_argument("--all", action="store_true", help="include deleted ones")
    _filters(p)
    p = leaf(group, "show", cmd_group_show, "show a group, its volumes and group snapshots")
    p.add_argument("group", metavar="GROUP")
    p = leaf(group, "snapshot", cmd_group_snapshot, "snapshot every volume of a group")
    p.add_argument("group", metavar="GROUP")
    p.add_argument("--name")
    p = leaf(group, "delete", cmd_group_delete, "delete a group")
    p.add_argument("group", metavar="GROUP")
    p.add_argument("--delete-volumes", action="store_true",
                   help="delete its volumes too (else a group with volumes is refused)")
    p.add_argument("--cascade", action="store_true",
                   help="with --delete-volumes: delete their snapshots first")

    schedule = top.add_parser("schedule", help="scheduled snapshots with retention"
                              ).add_subparsers(dest="verb", metavar="VERB", required=True)
    p = leaf(schedule, "create", cmd_schedule_create,
             "snapshot a volume or a group every period, keeping the newest --keep")
    p.add_argument("target", metavar="VOLUME|GROUP", help="id, name or unique id prefix")
    p.add_argument("--every", required=True, metavar="DURATION",
                   help="the period: 15m, 1h, 1d, 1h30m (units s, m, h, d, w; periods "
                        "start at whole multiples since 1970-01-01 UTC)")
    p.add_argument("--keep", required=True, type=positive_int, metavar="N",
                   help="snapshots kept; older ones this schedule made are deleted")
    p.add_argument("--name", help="a name to refer to it by")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--volume", dest="volume_kind", action="store_true",
                       help="the target is a volume (when a name is also a group's)")
    which.add_argument("--group", dest="group_kind", action="store_true",
                       help="the target is a group")
    p = leaf(schedule, "list", cmd_schedule_list, "list schedules")
    p.add_argument("--all", action="store_true", help="include deleted ones")
    _filters(p)
    p = leaf(schedule, "show", cmd_schedule_show, "show a schedule and its runs")
    p.add_argument("schedule", metavar="SCHEDULE")
    p = leaf(schedule, "delete", cmd_schedule_delete,
             "stop a schedule (its snapshots stay unless --delete-snapshots)")
    p.add_argument("schedule", metavar="SCHEDULE")
    p.add_argument("--delete-snapshots", action="store_true",
                   help="delete the snapshots it made too")
    p = leaf(schedule, "run", cmd_schedule_run,
             "take the snapshots that are due now, and apply retention (for cron or a "
             "systemd timer; --forever to keep running)")
    p.add_argument("schedule", metavar="SCHEDULE", nargs="*",
                   help="only these schedules (default: every one)")
    p.add_argument("--forever", action="store_true",
                   help="keep running, taking each snapshot when due, until SIGTERM")
    p.add_argument("--poll", type=float, default=schedule_mod.POLL_S, metavar="SECONDS",
                   help="with --forever: look for new schedules at least this often")
    p.add_argument("--now", type=parse_time, metavar="TIME",
                   help="run as if it were TIME (ISO 8601, UTC): for tests and drills")
    vm = top.add_parser("vm", help="snapshots of all of a VM's volumes").add_subparsers(
        dest="verb", metavar="VERB", required=True)
    p = leaf(vm, "snapshot", cmd_vm_snapshot,
             "snapshot every xensm volume a VM holds: per back end at one instant "
             "(crash-consistent)")
    p.add_argument("vm", metavar="VM", help="the VM's uuid or name label")
    p.add_argument("--name")
    p = leaf(vm, "list", cmd_vm_list, "list VM snapshots (of one VM, if named)")
    p.add_argument("vm", metavar="VM", nargs="?")
    p = leaf(vm, "revert", cmd_vm_revert,
             "put a VM's volumes back to a VM snapshot (the VM must be halted)")
    p.add_argument("vm_snapshot", metavar="VM_SNAPSHOT")
    p = leaf(vm, "delete", cmd_vm_delete, "delete a VM snapshot and its snapshots")
    p.add_argument("vm_snapshot", metavar="VM_SNAPSHOT")
    backup = top.add_parser("backup", help="backups to object storage (Swift, S3)"
                            ).add_subparsers(dest="verb", metavar="VERB", required=True)
    p = leaf(backup, "create", cmd_backup_create,
             "back a volume up (through a snapshot of it) or a --snapshot, to a target")
    p.add_argument("volume", metavar="VOLUME", nargs="?")
    p.add_argument("--snapshot", metavar="SNAPSHOT", help="back this snapshot up instead")
    p.add_argument("--target", metavar="NAME", required=True,
                   help="a [backup:NAME] section of the config file")
    p.add_argument("--incremental", action="store_true",
                   help="only the blocks changed since the volume's latest backup "
                        "(XAPI changed-block tracking)")
    p.add_argument("--name")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none unless stdout is a terminal)")
    p = leaf(backup, "list", cmd_backup_list, "list backups")
    p.add_argument("--volume", metavar="VOLUME", help="only this volume's")
    p.add_argument("--all", action="store_true", help="include deleted ones")
    _filters(p)
    p = leaf(backup, "show", cmd_backup_show, "show a backup, its chain and dependents")
    p.add_argument("backup", metavar="BACKUP")
    p = leaf(backup, "restore", cmd_backup_restore,
             "restore a backup into a new volume, or over an existing detached --volume")
    p.add_argument("backup", metavar="BACKUP")
    p.add_argument("--volume", metavar="VOLUME", help="overwrite this volume (detached)")
    p.add_argument("--name", help="the new volume's name")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none unless stdout is a terminal)")
    p = leaf(backup, "delete", cmd_backup_delete,
             "delete a backup and its objects (refused while an incremental one needs it)")
    p.add_argument("backup", metavar="BACKUP")
    return parser


BACKUP_COLUMNS = (("ID", "id"), ("NAME", "name"), ("VOLUME", "volume_id"),
                  ("KIND", "kind"), ("PARENT", "parent_id"), ("TARGET", "target"),
                  ("STORED", "bytes_stored"), ("STATUS", "status"), ("CREATED", "created_at"))


def backup_row(b: Any) -> list[Any]:
    return [b.id, b.name, b.volume_id, "incremental" if b.incremental else "full",
            b.parent_id or "", b.target, bytes_text(b.bytes_stored or 0), status_text(b),
            when(b)]


def _backups(mgr: Manager, out: Output, verb: str, args: argparse.Namespace
             ) -> backup_mod.Backups:
    return backup_mod.Backups(mgr, _progress(out, verb, not getattr(args, "no_progress", False)))


def cmd_backup_create(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    started = time.monotonic()
    b = _backups(mgr, out, "backup", args).create(
        args.volume, args.snapshot, target=args.target, incremental=args.incremental,
        name=args.name or "")
    seconds = time.monotonic() - started
    out.emit(dict(b.to_dict(), seconds=round(seconds, 3)), lambda: [
        "Backed up volume %s as %s backup %s to %s: read %s, stored %s in %s in %.1f s%s."
        % (b.volume_id, "an incremental" if b.incremental else "a full", b.id, b.target,
           bytes_text(b.bytes_read), bytes_text(b.bytes_stored),
           plural(b.chunks_stored, "chunk"), seconds,
           "" if b.changed_blocks is None else
           " (%s changed since %s)" % (plural(b.changed_blocks, "64 KiB block"),
                                       b.parent_id))])
    return EXIT_OK


def cmd_backup_list(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    items = filtered(backup_mod.Backups(mgr).all(args.volume, include_gone=args.all), args)
    out.emit_list([h for h, _ in BACKUP_COLUMNS], [k for _, k in BACKUP_COLUMNS], items,
                  backup_row, lambda r: r.to_dict(), "No backups.")
    return EXIT_OK


def cmd_backup_show(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    backups = backup_mod.Backups(mgr)
    b = backups.get(args.backup, include_gone=True)
    chain = [x.id for x in backups.chain(b)]
    deps = [x.id for x in backups.dependents(b)]
    data = dict(b.to_dict(), chain=chain, dependents=deps)
    pairs = [(k, v) for k, v in b.to_dict().items()] + [
        ("chain", " <- ".join(chain)), ("dependents", ", ".join(deps))]
    out.emit_one(pairs, data)
    return EXIT_OK


def cmd_backup_restore(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    started = time.monotonic()
    vol = _backups(mgr, out, "restore", args).restore(
        args.backup, volume=args.volume, name=args.name or "", backend=args.backend)
    seconds = time.monotonic() - started
    out.emit(dict(vol.to_dict(), seconds=round(seconds, 3)), lambda: [
        "Restored backup %s into volume %s in %.1f s." % (args.backup, vol.id, seconds)])
    return EXIT_OK


def cmd_backup_delete(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    b = backup_mod.Backups(mgr).delete(args.backup)
    out.emit(b.to_dict(), lambda: ["Deleted backup %s and its objects." % b.id])
    return EXIT_OK


def _setup_logging(stderr: IO[str], debug: bool) -> Callable[[], None]:
    """Errors from the driver on stderr (everything with --debug); returns an undo.

    Errors only: they say what a failed undo left behind. Warnings ("no VDI;
    treating the delete as done") would drown the one line that says why a
    command failed.
    """
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s" if debug
        else "xensm: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    quiet = logging.getLogger("taskflow")     # a failed task is reported once, by us
    saved = (root.level, quiet.level)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.ERROR)
    quiet.setLevel(logging.DEBUG if debug else logging.CRITICAL)

    def undo() -> None:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        quiet.setLevel(saved[1])

    return undo


class UsageError(Exception):
    """A bad combination of arguments argparse cannot express (exit 2)."""


def _values_that_look_like_options(parser: argparse.ArgumentParser,
                                   argv: Sequence[str]) -> list[str]:
    """``--name -dash`` as ``--name=-dash``: argparse takes a value starting
    with ``-`` for an option, and names may start with one."""
    takes_value: set[str] = set()
    known: set[str] = set()

    def walk(p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            known.update(action.option_strings)
            if action.option_strings and action.nargs is None and not isinstance(
                    action, argparse._StoreConstAction | argparse._StoreTrueAction
                    | argparse._HelpAction):
                takes_value.update(o for o in action.option_strings if o.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(parser)
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if (arg in takes_value and i + 1 < len(args) and args[i + 1].startswith("-")
                and args[i + 1] != "-" and args[i + 1].split("=", 1)[0] not in known):
            out.append("%s=%s" % (arg, args[i + 1]))
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def _format_asked(argv: Sequence[str]) -> str:
    """The output format a command line asks for, read without argparse."""
    fmt = "table"
    for i, arg in enumerate(argv):
        if arg == "--json":
            fmt = "json"
        elif arg in ("-f", "--format") and i + 1 < len(argv):
            fmt = argv[i + 1]
        elif arg.startswith("--format="):
            fmt = arg.split("=", 1)[1]
        elif arg.startswith("-f") and len(arg) > 2:
            fmt = arg[2:]
    return fmt


def cmd_complete(mgr: Manager, args: argparse.Namespace, out: Output) -> int:
    """Handled in :func:`run` (it needs no configuration)."""
    raise AssertionError("xensm complete is handled before any configuration is read")


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
              ) -> dict[tuple[str, ...], list[str]]:
    """Every command path and what may follow it: subcommands or options."""
    out: dict[tuple[str, ...], list[str]] = {}
    options = [opt for action in parser._actions for opt in action.option_strings
               if opt.startswith("--")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out[path] = sorted(action.choices)
            for name, sub in action.choices.items():
                out.update(_commands(sub, path + (name,)))
            return out
    out[path] = sorted(set(options))
    return out


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A bash completion function for xensm (zsh runs it through bashcompinit)."""
    cases = []
    # Longest first: "volume manageable" before "volume manage".
    commands = sorted(_commands(parser).items(), key=lambda kv: (-len(" ".join(kv[0])), kv[0]))
    for path, words in commands:
        pattern = '""' if not path else '"%s"*' % " ".join(path)
        cases.append('        %s) choices="%s" ;;' % (pattern, " ".join(words)))
    body = "\n".join([
        "# xensm completion for %s: eval \"$(xensm complete --shell %s)\"" % (shell, shell),
        *(["autoload -U +X bashcompinit && bashcompinit"] if shell == "zsh" else []),
        "_xensm()",
        "{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" path="" i choices=""',
        "    for ((i=1; i<COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in -*) ;; *) path="$path ${COMP_WORDS[i]}" ;; esac',
        "    done",
        '    path="${path# }"',
        '    case "$path" in',
        *cases,
        "    esac",
        '    COMPREPLY=( $(compgen -W "$choices" -- "$cur") )',
        "}",
        "complete -F _xensm xensm",
        ""])
    return body

def _makes_objects(args: argparse.Namespace) -> bool:
    """Whether the command may start a new inventory: it makes a volume out of
    nothing the inventory has to know. Every other command needs records and
    refuses a URL where none were ever kept."""
    if args.handler is cmd_volume_create:
        return not (args.snapshot or args.source_volume)
    return bool(args.handler is cmd_volume_manage)


def _env_files() -> list[str]:
    value = os.environ.get("XENSM_CONFIG_FILE", "")
    return [path for path in value.split(os.pathsep) if path]


def run(argv: Sequence[str], stdout: IO[str], stderr: IO[str],
        stdin: IO[bytes] | None = None) -> int:
    """Run one xensm command; returns its exit status."""
    parser = build_parser()
    argv = _values_that_look_like_options(parser, argv)
    usage = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(usage):
            args = parser.parse_args(list(argv))
    except SystemExit as exc:      # argparse has printed usage or help
        stderr.write(usage.getvalue())
        status = int(exc.code or 0)
        fmt = _format_asked(argv)
        if status and fmt in ("json", "yaml"):
            # Scripts parse stdout: a usage error is data too.
            message = usage.getvalue().strip().splitlines()[-1:] or ["bad command line"]
            Output(stdout, io.StringIO(), fmt).error(UsageError(
                message[0].split(": error: ", 1)[-1]), status)
        return status
    if args.handler is cmd_complete:
        stdout.write(completion_script(parser, args.shell))
        return EXIT_OK
    for name, default in (("config_file", None), ("backend", None), ("db_url", None),
                          ("format", "table"), ("column", []), ("sort_column", []),
                          ("max_width", 0), ("debug", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    out = Output(stdout, stderr, args.format, args.column, args.sort_column, args.max_width)
    undo_logging = _setup_logging(stderr, args.debug)
    mgr: Manager | None = None
    try:
        files = (args.config_file or _env_files() or service_config.default_files())
        mgr = Manager(files, db_url=args.db_url, create_inventory=_makes_objects(args))
        if args.handler is cmd_volume_upload:
            return cmd_volume_upload(mgr, args, out, stdin)
        code: int = args.handler(mgr, args, out)
        return code
    except KeyboardInterrupt:
        stderr.write("xensm: interrupted\n")
        return EXIT_INTERRUPTED
    except UsageError as exc:
        out.error(exc, EXIT_USAGE)
        return EXIT_USAGE
    except (exception.XensmError, OSError) as exc:
        code = exit_code(exc)
        out.error(exc, code)
        return code
    finally:
        if mgr is not None:
            mgr.close()
        undo_logging()


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
