"""flows.common.run: taskflow's engine without write-through persistence.

The flows keep taskflow's contract: results flow between tasks, a failure
reverts the tasks done in reverse order and the original exception comes
out. Only the persistence changes, so these pin that contract down.
"""

from __future__ import annotations

import logging
from typing import Any

import fixtures
import testtools
from taskflow import task
from taskflow.patterns import linear_flow

from xensm_driver.flows import common


class Step(task.Task):
    def __init__(self, name: str, log: list[str], fail: bool = False, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.log = log
        self.fail = fail

    def execute(self, value: int) -> int:
        self.log.append("do " + self.name)
        if self.fail:
            raise KeyError("failed in " + self.name)
        return value + 1

    def revert(self, result: Any, **kwargs: Any) -> None:
        self.log.append("undo " + self.name)


def chain(log: list[str], fail_at: int | None = None) -> linear_flow.Flow:
    flow = linear_flow.Flow("chain")
    for i in range(3):
        flow.add(Step("s%d" % i, log, fail=(i == fail_at), provides="v%d" % i,
                      rebind={"value": "start" if i == 0 else "v%d" % (i - 1)}))
    return flow


class RunTest(testtools.TestCase):

    def test_results_flow_from_task_to_task_and_come_back(self) -> None:
        log: list[str] = []
        result = common.run(chain(log), start=10)
        self.assertEqual((11, 12, 13), (result["v0"], result["v1"], result["v2"]))
        self.assertEqual(10, result["start"])
        self.assertEqual(["do s0", "do s1", "do s2"], log)

    def test_a_failure_reverts_done_tasks_in_reverse_and_raises_the_original(self) -> None:
        log: list[str] = []
        err = self.assertRaises(KeyError, common.run, chain(log, fail_at=2), start=0)
        self.assertIn("failed in s2", str(err))
        self.assertEqual(["do s0", "do s1", "do s2", "undo s2", "undo s1", "undo s0"], log)

    def test_runs_do_not_share_state(self) -> None:
        for start in (1, 100):
            self.assertEqual(start + 3, common.run(chain([]), start=start)["v2"])

    def test_a_run_logs_no_warning(self) -> None:
        logger = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        common.run(chain([]), start=1)
        self.assertEqual("", logger.output)

    def test_nothing_can_be_read_back_from_the_backend(self) -> None:
        backend = common._UNPERSISTED.get_connection()
        self.assertRaises(NotImplementedError, backend.get_logbooks)
