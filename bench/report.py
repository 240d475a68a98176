"""Tables of a results dict, as reStructuredText simple tables.

The same text is printed by ``python -m bench`` and pasted into README.rst
("Performance"); ``python -m bench.report [results.json]`` prints it again
from a saved run.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from bench import floor
from bench.common import ALL_BACKENDS

HERE = os.path.dirname(os.path.abspath(__file__))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r]
                                           for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    return "\n".join([rule, line(cells[0]), rule, *(line(r) for r in cells[1:]), rule])


def calls_table(res: dict[str, Any]) -> str:
    known = [b for b in ALL_BACKENDS if b in res["calls"]]
    backends = known + sorted(set(res["calls"]) - set(known))

    def cell(entry: dict[str, Any]) -> str:
        if "array" in entry:
            return "%d + %d array" % (entry["driver"], entry["array"])
        return str(entry["driver"])

    rows = []
    for verb in floor.VERBS:
        old = res["calls"].get("nfs", {}).get(verb, {}).get("old_driver")
        rows.append([verb, *(cell(res["calls"][b][verb]) for b in backends),
                     floor.FLOOR[verb], "-" if old is None else old])
    return table(["verb", *backends, "floor", "old NFS driver"], rows)


def rows_per_verb_table(res: dict[str, Any]) -> str:
    known = [b for b in ALL_BACKENDS if b in res["calls"]]
    backends = known + sorted(set(res["calls"]) - set(known))
    if not backends or "rows" not in res["calls"][backends[0]][floor.VERBS[0]]:
        return "(not measured in this run)"
    rows = [[verb, *(res["calls"][b][verb]["rows"] for b in backends)]
            for verb in floor.VERBS]
    return table(["verb", *backends], rows)


def throughput_table(res: dict[str, Any]) -> str:
    rows = []
    for r in res["throughput"]["rows"]:
        d, f, same = r["driver"], r["floor"], r["same_calls"]
        rows.append([r["latency_ms"], r["concurrency"], r["driver_pool_size"],
                     d["ops_per_s"], f["ops_per_s"], same["ops_per_s"], r["ratio"],
                     r["same_calls_ratio"], d["calls_per_op"], f["calls_per_op"],
                     d["client_cpu_ms_per_op"], f["client_cpu_ms_per_op"],
                     same["client_cpu_ms_per_op"]])
    return table(["latency ms", "callers", "pool", "driver ops/s", "floor ops/s",
                  "same-calls ops/s", "driver/floor", "driver/same-calls",
                  "driver calls/op", "floor calls/op", "driver CPU ms/op",
                  "floor CPU ms/op", "same-calls CPU ms/op"], rows)


def scale_table(res: dict[str, Any]) -> str:
    def cell(p: dict[str, Any]) -> str:
        return "%d / %.2f" % (p["calls"], p["ms"])

    keys = ["get_volume_stats", "create_volume", "delete_volume", "update_provider_info",
            "floor_get_volume_stats", "floor_create_volume", "floor_delete_volume"]
    rows = []
    for p in res["scale"]["points"]:
        rows.append([p["vdis_on_sr"], *(cell(p[k]) for k in keys)])
    verdict = res["scale"]["verdict"]

    def says(k: str) -> str:
        v = verdict[k]
        per = " per volume" if v["time_compared"] == "per_volume_us" else ""
        if not v["calls_flat"]:
            return "calls GROW"
        if v["flat"]:
            return "flat" + per
        return "time x%s%s" % (v["time_ratio"], per)

    rows.append(["largest/smallest", *(says(k) for k in keys)])
    return table(["VDIs on SR", "stats", "create", "delete", "update_provider_info",
                  "floor stats", "floor create", "floor delete"], rows)


def rows_table(res: dict[str, Any]) -> str:
    keys = ["get_volume_stats", "create_volume", "delete_volume", "update_provider_info",
            "floor_get_volume_stats", "floor_create_volume", "floor_delete_volume"]
    points = res["scale"]["points"]
    if "rows" not in points[0]["create_volume"]:
        return "(not measured in this run)"
    rows = [[p["vdis_on_sr"], *(p[k]["rows"] for k in keys)] for p in points]
    return table(["VDIs on SR", "stats", "create", "delete", "update_provider_info",
                  "floor stats", "floor create", "floor delete"], rows)


def memory_table(res: dict[str, Any]) -> str:
    m = res["memory"]
    rows = [[mode, m[mode]["ops"], m[mode]["rss_after_setup_mib"], m[mode]["rss_half_mib"],
             m[mode]["rss_end_mib"], m[mode]["peak_rss_mib"]] for mode in ("driver", "floor")]
    return table(["process", "ops", "RSS after setup MiB", "RSS half-way MiB",
                  "RSS at end MiB", "peak RSS MiB"], rows)


def overhead_table(res: dict[str, Any]) -> str:
    o = res["overhead"]
    rows = [[verb, o["driver_ms"][verb], o["plain_loop_ms"][verb],
             "%d%%" % round(o["taskflow_share"][verb] * 100)] for verb in o["driver_ms"]]
    return table(["verb (XAPI stubbed)", "driver ms", "same tasks, plain loop ms",
                  "taskflow engine share"], rows)


def render(res: dict[str, Any]) -> str:
    meta = res["meta"]
    tp = res["throughput"]
    sc = res["scale"]
    parts = [
        "XAPI requests per verb (counted by the simulator; floor = fewest any client "
        "needs, see bench/floor.py)",
        "",
        calls_table(res),
        "",
        "A create takes a claim on the SR and gives it back; a snapshot, clone or "
        "revert marks its source before XAPI copies it and unmarks it after; "
        "revert swaps a clone of the snapshot in (no data copied). "
        "The floor is for SM-native SRs; SolidFire (one LUN and one SR per volume) "
        "adds its Element API requests (\"+ n array\").",
        "",
        "Database rows the pool master reads per verb (same runs; the pool holds "
        "every back end's VDIs, and a filter scans them all)",
        "",
        rows_per_verb_table(res),
        "",
        "Throughput, mixed workload (%s) on %s, best of %d runs of %ss each; "
        "driver/floor > 1 means the driver is faster. The driver is one instance "
        "shared by the callers with a pool of 'pool' XAPI sessions; the floor "
        "(fewest calls) and the same-calls floor (exactly the driver's calls, "
        "bench/floor.py SameCallsClient) give every caller its own session, so "
        "driver/same-calls is the driver's overhead apart from its call count. "
        "CPU is the bench process's, the simulator runs in another"
        % (tp["cycle"], tp["sr_type"], tp["repeats"], tp["seconds_per_run"]),
        "",
        throughput_table(res),
        "",
        "Scale on one %s SR: XAPI requests / median ms of %d runs (update_provider_info "
        "gets every volume on the SR with its provider_id, and lists the SR once to "
        "follow reverts' swaps)" % (sc["sr_type"], sc["repeats"]),
        "",
        scale_table(res),
        "",
        "Database rows the pool master reads per operation on that SR (a "
        "get_all_records_where or get_by_name_label scans every VDI of the pool; "
        "get_by_uuid and get_record read one), counted by the simulator",
        "",
        rows_table(res),
        "",
        "Memory: a child process running the mixed workload, %d callers x %d cycles"
        % (res["memory"]["concurrency"], res["memory"]["cycles_per_caller"]),
        "",
        memory_table(res),
        "",
        "Driver overhead outside XAPI (median of %d; one XAPI round trip to the "
        "simulator at 0 ms: %s ms)" % (res["overhead"]["repeats"],
                                        res["overhead"]["xapi_round_trip_ms"]),
        "",
        overhead_table(res),
        "",
        "%s, %s, git %s, %s CPUs, Python %s; bench ran %.0f s"
        % (meta["command"], meta["date"], meta["git"], meta["cpus"], meta["python"],
           meta["seconds"]),
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else os.path.join(HERE, "results.json")
    with open(path) as f:
        print(render(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
