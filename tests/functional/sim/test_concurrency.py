"""Many clients at once: the SR must stay consistent."""

from __future__ import annotations

import random
import threading

import XenAPI

from tests.functional.sim import base

MiB = base.MiB


class ConcurrencyTest(base.SimTestCase):
    srs = ('nfs', 'lvmoiscsi')

    def hammer(self, sr: str, threads: int = 16, rounds: int = 12) -> None:
        errors: list[BaseException] = []
        unexpected: list[list[str]] = []
        # Some VDIs every thread may touch, so operations collide.
        shared = [self.vdi(sr, 4 * MiB, 'shared-%d' % i) for i in range(4)]

        def worker(seed: int) -> None:
            rnd = random.Random(seed)
            s = XenAPI.Session(self.sim.url)
            try:
                s.xenapi.login_with_password('root', 'password')
                x = s.xenapi
                mine: list[str] = []
                for _ in range(rounds):
                    op = rnd.choice(['create', 'snapshot', 'clone', 'destroy',
                                     'snapshot-shared', 'read'])
                    try:
                        if op == 'create' or not mine:
                            mine.append(x.VDI.create({
                                'SR': sr, 'virtual_size': str(4 * MiB),
                                'type': 'user', 'sharable': False,
                                'read_only': False, 'other_config': {},
                                'name_label': 't%d' % seed}))
                        elif op == 'snapshot':
                            mine.append(x.VDI.snapshot(rnd.choice(mine)))
                        elif op == 'clone':
                            mine.append(x.VDI.clone(rnd.choice(mine)))
                        elif op == 'destroy':
                            v = mine.pop(rnd.randrange(len(mine)))
                            x.VDI.destroy(v)
                        elif op == 'snapshot-shared':
                            snap = x.VDI.snapshot(rnd.choice(shared))
                            x.VDI.destroy(snap)
                        else:
                            x.SR.get_record(sr)
                            x.VDI.get_all_records_where(
                                'field "SR"="%s"' % sr)
                    except XenAPI.Failure as exc:
                        if exc.details[0] != 'SR_BACKEND_FAILURE_109':
                            unexpected.append(exc.details)
                for v in mine:
                    x.VDI.destroy(v)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                try:
                    s.xenapi.session.logout()
                except XenAPI.Failure:
                    pass

        ts = [threading.Thread(target=worker, args=(i,))
              for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual([], errors)
        self.assertEqual([], unexpected)
        for v in shared:
            self.x.VDI.destroy(v)
        self.check_consistent(sr)

    def check_consistent(self, sr: str) -> None:
        self.assertEqual(0, self.ctl.wait_gc())
        dump = self.ctl.dump()
        vdis = {r: v for r, v in dump['VDI'].items() if v['SR'] == sr}
        # Every thread cleaned up and the coalescer ran: nothing is left.
        self.assertEqual({}, vdis)
        self.assertEqual([], self.x.SR.get_VDIs(sr))
        rec = self.x.SR.get_record(sr)
        self.assertEqual('0', rec['virtual_allocation'])
        overhead = 4 * MiB if rec['type'] == 'lvmoiscsi' else 0
        self.assertEqual(str(overhead), rec['physical_utilisation'])
        self.assertEqual({}, {r: v for r, v in dump['VBD'].items()})
        # What a fresh scan finds on storage agrees with the database.
        self.x.SR.scan(sr)
        self.assertEqual([], self.x.SR.get_VDIs(sr))

    def test_16_threads_leave_a_consistent_nfs_sr(self) -> None:
        self.hammer(self.sr('nfs'))

    def test_16_threads_leave_a_consistent_lvmoiscsi_sr(self) -> None:
        self.hammer(self.sr('lvmoiscsi'))

    def test_snapshot_tree_consistent_midway(self) -> None:
        """With the work still in place, every leaf's chain resolves."""
        sr = self.sr('nfs')
        roots = [self.vdi(sr, 4 * MiB) for _ in range(4)]

        errors: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                s = XenAPI.Session(self.sim.url)
                s.xenapi.login_with_password('root', 'password')
                # Each root gets 4 snapshots and 4 clones: depth 9.
                s.xenapi.VDI.snapshot(roots[i % 4])
                s.xenapi.VDI.clone(roots[(i + 1) % 4])
                s.xenapi.session.logout()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual([], errors)
        recs = self.x.VDI.get_all_records_where('field "SR"="%s"' % sr)
        by_uuid = {r['uuid']: r for r in recs.values()}
        leaves = [r for r in recs.values() if r['managed']]
        self.assertEqual(4 + 16 * 2, len(leaves))
        for leaf in leaves:
            parent = leaf['sm_config'].get('vhd-parent')
            depth = 1
            while parent:
                self.assertIn(parent, by_uuid)
                self.assertFalse(by_uuid[parent]['managed'])
                parent = by_uuid[parent]['sm_config'].get('vhd-parent')
                depth += 1
            self.assertLessEqual(depth, 9)
        self.assertEqual(sorted(recs), sorted(self.x.SR.get_VDIs(sr)))
        total = sum(int(r['physical_utilisation']) for r in recs.values())
        self.assertEqual(str(total), self.x.SR.get_physical_utilisation(sr))
