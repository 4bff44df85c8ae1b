"""`SequentialEvaluator`: trains each candidate in this process, one per :meth:`poll` call.

The reference implementation of the protocol: no Ray, nothing to start, and the same outcomes
(a failing candidate becomes ``ok=False``, never an exception).
"""

from __future__ import annotations

import os
from collections import deque

from evaluator.base import EvalOutcome, EvalTask, EvaluatorBase, TrainFn, describe_exception
from evaluator.datasets import DataSplit
from evaluator.proxy import train_proxy


class SequentialEvaluator(EvaluatorBase):
    """Runs queued tasks in order, in-process, when polled."""

    def __init__(self, data: DataSplit, train_fn: TrainFn | None = None) -> None:
        self.data = data
        self.train_fn = train_fn or train_proxy
        self._queue: deque[EvalTask] = deque()

    def submit(self, task: EvalTask) -> None:
        task.config.check(self.data)  # a batch larger than the data set is a user error: raise now
        self._queue.append(task)

    def poll(self, timeout: float | None = None) -> list[EvalOutcome]:
        """Run the next queued task (training is not interruptible, so ``timeout`` is not a cap)."""
        if not self._queue:
            return []
        return [self.run_one(self._queue.popleft())]

    def run_one(self, task: EvalTask) -> EvalOutcome:
        try:
            result = self.train_fn(task.arch, self.data, task.config)
        except Exception as exc:  # noqa: BLE001 - a failing candidate is an outcome, not a crash
            return EvalOutcome(task.key, False, None, describe_exception(exc), 1, os.getpid())
        return EvalOutcome.from_result(task.key, result, 1, os.getpid())

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._queue.clear()
