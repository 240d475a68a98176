"""One host of the shared-inventory workload: xensm commands in a loop, in one process.

``python -m tests.functional.xensm_host --config-file CONF --db-url URL --seed N
--ops K``
runs ``K`` verbs picked at random (seeded) on the volumes and snapshots the
shared inventory holds right now -- the same few objects every other host
picks from, so verbs conflict: create, clone, create from a snapshot,
snapshot, delete a snapshot, revert, delete with ``--cascade``. Each command
goes through ``xensm.run`` (the console script's code path, without an
interpreter start per command) and is printed as one JSON line:
``{"n", "verb", "argv", "code", "err"}``; a last line ``{"done": K}``.

A verb may lose the race to another host: refused (exit 5, "is
snapshotting") or not found (exit 4, deleted meanwhile). The test decides
what is allowed; this only reports.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys

from xensm_driver.cmd import xensm
from xensm_driver.service import inventory

#: Verbs and their weights. ``create`` is the only one that makes a volume
#: from nothing (VDI.create); a host without it makes volumes from others.
VERBS = {"create": 3, "clone": 2, "from-snapshot": 2, "snapshot": 4,
         "snapshot-delete": 3, "revert": 3, "delete": 3}
#: The population stays small, so both hosts keep meeting on the same objects.
MAX_VOLUMES = 5
MAX_SNAPSHOTS = 5


def run(conf: str, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = xensm.run(["--config-file", conf, *args], out, err)
    return code, out.getvalue(), err.getvalue()


def pick(rng: random.Random, inv: inventory.Inventory, verbs: list[str], n: int
         ) -> tuple[str, list[str]]:
    """A verb that makes sense on what the inventory holds now, and its argv.

    The choice reads the shared inventory directly (a read, no claim); the
    verb itself is an xensm command.
    """
    vols = [v for v in inv.volumes() if v.status == "available"]
    snaps = [s for s in inv.snapshots() if s.status == "available"]
    live = len(vols)
    choices = []
    for verb in verbs:
        if verb == "create" and live < MAX_VOLUMES:
            choices.append((verb, ["volume", "create", "--size", "1", "--name", "n%d" % n]))
        elif verb == "clone" and vols and live < MAX_VOLUMES:
            choices.append((verb, ["volume", "clone", rng.choice(vols).id]))
        elif verb == "from-snapshot" and snaps and live < MAX_VOLUMES:
            choices.append((verb, ["volume", "create", "--snapshot", rng.choice(snaps).id]))
        elif verb == "snapshot" and vols and len(snaps) < MAX_SNAPSHOTS:
            choices.append((verb, ["snapshot", "create", rng.choice(vols).id]))
        elif verb == "snapshot-delete" and snaps:
            choices.append((verb, ["snapshot", "delete", rng.choice(snaps).id]))
        elif verb == "revert" and snaps:
            snap = rng.choice(snaps)
            choices.append((verb, ["volume", "revert", snap.volume_id, "--snapshot",
                                   snap.id]))
        elif verb == "delete" and vols:
            choices.append((verb, ["volume", "delete", rng.choice(vols).id, "--cascade"]))
    if not choices:
        # Nothing this host may do on what is there (another host holds it
        # all): a read, so the loop moves on.
        return "list", ["volume", "list"]
    weights = [VERBS[verb] for verb, _ in choices]
    return rng.choices(choices, weights=weights)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--db-url", required=True, help="the shared inventory's URL")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ops", type=int, default=50)
    parser.add_argument("--verbs", default=",".join(VERBS),
                        help="comma-separated verbs this host does (default: all)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    verbs = [v for v in args.verbs.split(",") if v]
    unknown = set(verbs) - set(VERBS)
    if unknown:
        parser.error("unknown verbs: %s" % ", ".join(sorted(unknown)))
    inv = inventory.Inventory(args.db_url, create=False)
    for n in range(args.ops):
        verb, cmd = pick(rng, inv, verbs, n)
        code, _out, err = run(args.config_file, *cmd, "--json")
        print(json.dumps({"n": n, "verb": verb, "argv": cmd, "code": code,
                          "err": err.strip()}), flush=True)
    inv.close()
    print(json.dumps({"done": args.ops}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
