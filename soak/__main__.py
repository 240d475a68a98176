"""``python -m soak``: run the fault soak; exit 1 on any leak or wrong object."""

from __future__ import annotations

import argparse
import sys
import time

from soak import walk
from soak import world


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    defaults = walk.Settings()
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help="the walk's random seed (default %(default)s)")
    p.add_argument("--ops", type=int, default=defaults.ops,
                   help="stop after this many operations (default %(default)s)")
    p.add_argument("--threads", type=int, default=defaults.threads,
                   help="concurrent callers (default %(default)s)")
    p.add_argument("--duration", type=float, default=defaults.duration,
                   help="stop walking after this many seconds (default %(default)s); "
                        "converging and verifying come after")
    p.add_argument("--fault-rate", type=float, default=defaults.fault_rate,
                   help="share of operations that arm a fault first (default %(default)s)")
    p.add_argument("--backends", default=",".join(defaults.backends),
                   help="comma-separated, of %s" % ", ".join(world.BACKENDS))
    p.add_argument("--quiet", action="store_true", help="print only the result line")
    args = p.parse_args(argv)
    if args.threads < 1 or args.ops < 1:
        p.error("--threads and --ops must be at least 1")
    names = tuple(b for b in args.backends.split(",") if b)
    unknown = set(names) - set(world.BACKENDS)
    if unknown:
        p.error("unknown back ends: %s" % ", ".join(sorted(unknown)))
    settings = walk.Settings(seed=args.seed, ops=args.ops, threads=args.threads,
                             duration=args.duration, fault_rate=args.fault_rate,
                             backends=names)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr,
                                                                flush=True))
    began = time.monotonic()
    result = walk.run_with_simulator(settings, log)
    for f in result.unique():
        log(str(f))
    for leak in sorted(set(result.secret_leaks)):
        log("WRONG " + leak)
    log("soak: seed %d, %.0f s" % (settings.seed, time.monotonic() - began))
    print(result.line(), flush=True)
    return 0 if result.leaked == 0 and result.wrong == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
