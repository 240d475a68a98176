"""``xensm-sim``: run the XAPI simulator on loopback until interrupted.

Prints the pool master's URL as its first line (flushed), so a script can
start it with ``--port 0`` and read where it listens.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from types import FrameType

from xensm_driver.sim import Simulator

SR_TYPES = ('nfs', 'lvm', 'lvmoiscsi', 'lvmohba', 'iscsi', 'netapp', 'equal')


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a port number' % text) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError('a port is 0 (any free one) to 65535, not %d' % port)
    return port


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a whole number' % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError('a pool has at least 1 host (its master)')
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='xensm-sim',
        description='Simulated XenServer pool (XAPI over XML-RPC) on '
                    'loopback, with a JSON control plane under /sim/.')
    p.add_argument('--host', default='127.0.0.1',
                   help='address of the pool master (default 127.0.0.1); '
                        'slaves listen on 127.0.0.2, 127.0.0.3, ...')
    p.add_argument('--port', type=_port, default=0,
                   help='port for every host (0: pick a free one)')
    p.add_argument('--pool-hosts', type=_at_least_one, default=2,
                   help='hosts in the pool, master included (default 2)')
    p.add_argument('--sr', action='append', default=[], choices=SR_TYPES,
                   help='pre-create an SR of this type on the default '
                        'storage (repeatable)')
    p.add_argument('--username', default='root')
    p.add_argument('--password', default='password')
    p.add_argument('--state-dir', default=None,
                   help='keep state here across restarts (default: memory '
                        'and a temporary directory)')
    p.add_argument('--latency', type=float, default=0.0,
                   help='seconds added to every XAPI call')
    p.add_argument('--auth-failure-delay', type=float, default=5.0,
                   help='seconds before a failed login answers (xapi: 5)')
    p.add_argument('--max-sessions-per-user', type=int, default=500,
                   help='session GC cap per originator (root) or user name '
                        '(xapi: 500)')
    p.add_argument('--session-gc-interval', type=float, default=60.0,
                   help='seconds between session GC runs')
    p.add_argument('--tls-cert', default=None, help='serve HTTPS with this '
                   'certificate (PEM)')
    p.add_argument('--tls-key', default=None, help='key for --tls-cert')
    p.add_argument('--print-topology', action='store_true',
                   help='print the default storage topology as JSON after '
                        'the URL')
    p.add_argument('--solidfire', action='store_true',
                   help='also start a SolidFire Element cluster simulator on '
                        'the same iSCSI fabric (its MVIP is in the topology)')
    p.add_argument('--supplemental-pack', action='append', default=[],
                   dest='packs', choices=['relvmoiscsi'],
                   help='install a supplemental pack on the pool: relvmoiscsi '
                        '(CloudOps ReLVHDoISCSISR, resigns cloned LUNs)')
    p.add_argument('--debug', action='store_true')
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format='%(asctime)s %(levelname)s %(name)s %(message)s')
    sim = Simulator(host=args.host, port=args.port, pool_hosts=args.pool_hosts,
                    username=args.username, password=args.password,
                    state_dir=args.state_dir, srs=tuple(args.sr),
                    auth_failure_delay=args.auth_failure_delay,
                    max_sessions_per_user=args.max_sessions_per_user,
                    session_gc_interval=args.session_gc_interval,
                    tls_certfile=args.tls_cert, tls_keyfile=args.tls_key,
                    latency=args.latency, solidfire=args.solidfire,
                    supplemental_packs=tuple(args.packs))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        sim.start()
    except OSError as exc:
        print('xensm-sim: error: cannot listen on %s:%d: %s' % (
            args.host, args.port, exc.strerror or exc), file=sys.stderr)
        return 1
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(sim.url, flush=True)
        if args.print_topology:
            print(json.dumps(sim.topology), flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
