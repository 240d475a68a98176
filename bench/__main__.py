"""``python -m bench``: run the benchmarks, print the tables, write results.json."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from bench import report
from bench import suite
from bench.common import Settings
from bench.common import quiet_logging

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--output", default=None,
                   help="where to write the results (default: bench/results.json for a "
                        "full run, which README quotes; a file in the temporary directory "
                        "for --quick, so a smoke run never replaces the committed figures)")
    p.add_argument("--quick", action="store_true",
                   help="a seconds-long smoke run with tiny amounts (not for the README)")
    p.add_argument("--command", default=None,
                   help="the command to record as having produced the results")
    args = p.parse_args(argv)
    if args.output is None:
        args.output = (os.path.join(tempfile.gettempdir(), "xensm-bench-quick.json")
                       if args.quick else os.path.join(HERE, "results.json"))
    quiet_logging()
    settings = Settings.quick() if args.quick else Settings()
    command = args.command or ("tox -e bench" if os.environ.get("TOX_ENV_NAME") == "bench"
                               else "python -m bench" + (" --quick" if args.quick else ""))
    results = suite.run(settings, command=command,
                        log=lambda message: print(message, file=sys.stderr, flush=True))
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
        f.write("\n")
    print(report.render(results))
    print("\nwrote %s" % args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
