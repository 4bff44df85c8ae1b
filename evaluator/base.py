"""The evaluator protocol: submit many candidates, collect outcomes as they finish.

An evaluator never loses a task and never raises for a failing candidate: every submitted task
comes back exactly once from :meth:`Evaluator.poll` as an :class:`EvalOutcome`, ``ok=False`` with an
``error`` when training failed, raised, timed out or its worker died.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from typing import Any, Protocol, runtime_checkable

from search_space.errors import first_line
from evaluator.datasets import DataSplit
from evaluator.proxy import ProxyConfig, ProxyResult
from search_space import Architecture

#: ``train_fn(arch, data, config) -> ProxyResult``; ``train_proxy`` unless a caller swaps it.
TrainFn = Callable[[Architecture, DataSplit, ProxyConfig], ProxyResult]


@dataclasses.dataclass(frozen=True)
class EvalTask:
    """One candidate to train; ``key`` is the caller's handle (an arch id, a trial number)."""

    key: Hashable
    arch: Architecture
    config: ProxyConfig = dataclasses.field(default_factory=ProxyConfig)


@dataclasses.dataclass(frozen=True)
class EvalOutcome:
    """What became of one task.

    ``ok`` means ``result`` holds a usable accuracy (status ``ok`` or ``pruned``). When it is
    False, ``error`` says why; ``result`` is still attached when training ran but diverged.
    ``attempts`` counts runs (retries after a worker died included); ``worker_pid`` is the process
    that produced the result (None when no worker answered).
    """

    key: Hashable
    ok: bool
    result: ProxyResult | None
    error: str | None
    attempts: int = 1
    worker_pid: int | None = None

    @property
    def accuracy(self) -> float | None:
        return self.result.accuracy if self.ok and self.result is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "ok": self.ok, "result": self.result.to_dict() if self.result else None,
                "error": self.error, "attempts": self.attempts, "worker_pid": self.worker_pid}

    @classmethod
    def from_result(cls, key: Hashable, result: ProxyResult, attempts: int = 1, worker_pid: int | None = None) -> EvalOutcome:
        ok = result.status != "failed"
        return cls(key, ok, result, None if ok else (result.reason or "training failed"), attempts, worker_pid)


@runtime_checkable
class Evaluator(Protocol):
    """Submit tasks, poll for the finished ones. Implementations are context managers."""

    def submit(self, task: EvalTask) -> None: ...

    def poll(self, timeout: float | None = None) -> list[EvalOutcome]:
        """Outcomes finished since the last poll; waits up to ``timeout`` s for at least one
        (None: until one finishes). Empty list on timeout or when nothing is pending."""
        ...

    def pending(self) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> Evaluator: ...

    def __exit__(self, *exc: object) -> None: ...


class EvaluatorBase:
    """Shared conveniences: context manager and :meth:`run_all`."""

    def submit(self, task: EvalTask) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def poll(self, timeout: float | None = None) -> list[EvalOutcome]:  # pragma: no cover - overridden
        raise NotImplementedError

    def pending(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_all(self, tasks: list[EvalTask]) -> list[EvalOutcome]:
        """Submit every task, wait for all of them; outcomes in completion order."""
        for task in tasks:
            self.submit(task)
        out: list[EvalOutcome] = []
        while self.pending():
            out += self.poll()
        return out


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` on one line (the first line of the message)."""
    text = first_line(exc)
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
