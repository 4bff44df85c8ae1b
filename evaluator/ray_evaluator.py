"""`RayEvaluator`: proxy training as Ray tasks, results streamed back as they finish.

- Reuses an initialised Ray; otherwise starts a local one or connects to ``address``, through
  :mod:`evaluator.ray_connect` (an address nothing answers on is a one-line
  :class:`RayConnectionError`, found before Ray's own long retry loop).
- The data set goes into the object store once; every task gets the same reference.
- At most ``max_in_flight`` tasks run (default: the cluster's CPUs / ``num_cpus_per_task``);
  further submits wait in a local queue, so a per-task timeout counts running time only.
- Retries are driven from here rather than by Ray's ``max_retries``, so ``attempts`` is exact and
  a retried task can be told apart from one that never ran: a dead worker is retried up to
  ``max_retries`` times, an exception inside training only when ``retry_exceptions`` is set, a
  timeout never (the task is cancelled with ``force=True`` and fails alone).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Hashable
from typing import Any

from evaluator.base import EvalOutcome, EvalTask, EvaluatorBase, TrainFn, describe_exception
from evaluator.datasets import DataSplit
from evaluator.ray_connect import (CONNECT_TIMEOUT_S, RayConnectionError, check_ray_address, ensure_ray,
                                   release_ray)
from evaluator.ray_connect import _loopback_only  # noqa: F401 - tests/conftest.py starts its Ray the same way
from search_space.errors import ShufflenasError

def _run_task(data: DataSplit, task: EvalTask, threads: int, train_fn: TrainFn | None) -> dict[str, Any]:
    """Body of the Ray task: train one candidate with ``threads`` torch threads.

    Exceptions are returned as data (with the PID) rather than raised, so the driver can tell a
    failing candidate from a dead worker.
    """
    import torch

    from evaluator.proxy import train_proxy

    pid = os.getpid()
    torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS=1 in workers
    config = dataclasses.replace(task.config, threads=threads)
    try:
        result = (train_fn or train_proxy)(task.arch, data, config)
    except Exception as exc:  # noqa: BLE001 - reported as a failed outcome
        return {"pid": pid, "result": None, "error": describe_exception(exc)}
    return {"pid": pid, "result": result, "error": None}


@dataclasses.dataclass
class _Flight:
    task: EvalTask
    attempts: int
    started: float


class RayEvaluator(EvaluatorBase):
    """Trains candidates as Ray tasks; see the module docstring for the guarantees."""

    def __init__(self, data: DataSplit, address: str | None = None, num_cpus_per_task: float = 1,
                 num_gpus_per_task: float = 0, max_in_flight: int | None = None, timeout_s: float | None = None,
                 max_retries: int = 1, threads_per_task: int = 1, retry_exceptions: bool = False,
                 train_fn: TrainFn | None = None, resources: dict[str, float] | None = None) -> None:
        if num_cpus_per_task < 0 or num_gpus_per_task < 0:
            raise ShufflenasError("num_cpus_per_task and num_gpus_per_task must be >= 0")
        if max_retries < 0:
            raise ShufflenasError(f"max_retries must be >= 0, got {max_retries}")
        if threads_per_task < 1:
            raise ShufflenasError(f"threads_per_task must be >= 1, got {threads_per_task}")
        if timeout_s is not None and timeout_s <= 0:
            raise ShufflenasError(f"timeout_s must be > 0, got {timeout_s}")
        if max_in_flight is not None and max_in_flight < 1:
            raise ShufflenasError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self._owns_ray = ensure_ray(address)
        import ray

        self._ray = ray
        self.data = data
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_exceptions = retry_exceptions
        self.threads_per_task = threads_per_task
        self.train_fn = train_fn
        self.max_in_flight = max_in_flight or self._capacity(num_cpus_per_task, num_gpus_per_task)
        self._remote = ray.remote(_run_task).options(num_cpus=num_cpus_per_task, num_gpus=num_gpus_per_task,
                                                     max_retries=0, resources=resources or None)
        self._data_ref = ray.put(data)
        self._queue: deque[tuple[EvalTask, int]] = deque()
        self._flights: dict[Any, _Flight] = {}
        self._ready: deque[EvalOutcome] = deque()
        self._closed = False

    def _capacity(self, cpus: float, gpus: float) -> int:
        total = self._ray.cluster_resources()
        slots = []
        if cpus > 0:
            slots.append(int(total.get("CPU", 1) // cpus))
        if gpus > 0:
            slots.append(int(total.get("GPU", 0) // gpus))
        return max(1, min(slots) if slots else int(total.get("CPU", 1)))

    # -- protocol -------------------------------------------------------------------------------
    def submit(self, task: EvalTask) -> None:
        if self._closed:
            raise ShufflenasError("this evaluator is closed")
        task.config.check(self.data)
        self._queue.append((task, 1))
        self._launch()

    def pending(self) -> int:
        return len(self._queue) + len(self._flights) + len(self._ready)

    def running(self) -> list[Hashable]:
        """Keys of the tasks now in Ray (not counting the local queue)."""
        return [f.task.key for f in self._flights.values()]

    def poll(self, timeout: float | None = None) -> list[EvalOutcome]:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            self._launch()
            self._collect(0.0)
            if self._ready or not self._flights:
                break
            now = time.monotonic()
            wait = None if deadline is None else deadline - now
            if self.timeout_s is not None:
                first_expiry = min(f.started for f in self._flights.values()) + self.timeout_s - now
                wait = first_expiry if wait is None else min(wait, first_expiry)
            if wait is not None and wait <= 0:
                if deadline is not None and now >= deadline:
                    break
                continue  # a task timed out: _collect handles it
            self._collect(wait)
            if self._ready or (deadline is not None and time.monotonic() >= deadline):
                break
        out = list(self._ready)
        self._ready.clear()
        return out

    def close(self) -> None:
        """Cancel what is still running, drop the queue; shut Ray down if this evaluator started it."""
        if self._closed:
            return
        self._closed = True
        for ref in list(self._flights):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
        self._flights.clear()
        self._queue.clear()
        release_ray(self._owns_ray)

    # -- internals ------------------------------------------------------------------------------
    def _launch(self) -> None:
        while self._queue and len(self._flights) < self.max_in_flight:
            task, attempt = self._queue.popleft()
            ref = self._remote.remote(self._data_ref, task, self.threads_per_task, self.train_fn)
            self._flights[ref] = _Flight(task, attempt, time.monotonic())

    def _collect(self, wait: float | None) -> None:
        """Wait up to ``wait`` s for a finished task, then take every finished one; expire timeouts."""
        if self._flights:
            refs = list(self._flights)
            done, _ = self._ray.wait(refs, num_returns=1, timeout=wait)
            if done:
                done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in done:
                self._finish(ref, self._flights.pop(ref))
        if self.timeout_s is not None:
            now = time.monotonic()
            for ref, flight in list(self._flights.items()):
                if now - flight.started >= self.timeout_s:
                    del self._flights[ref]
                    self._ray.cancel(ref, force=True)
                    self._ready.append(EvalOutcome(flight.task.key, False, None,
                                                   f"timed out after {self.timeout_s:g} s", flight.attempts, None))
        self._launch()

    def _finish(self, ref: Any, flight: _Flight) -> None:
        exceptions = self._ray.exceptions
        key, attempts = flight.task.key, flight.attempts
        try:
            payload = self._ray.get(ref)
        except exceptions.TaskCancelledError:
            self._ready.append(EvalOutcome(key, False, None, "cancelled", attempts, None))
            return
        except (exceptions.WorkerCrashedError, exceptions.OutOfMemoryError, exceptions.NodeDiedError,
                exceptions.LocalRayletDiedError, exceptions.ObjectLostError) as exc:
            cause = "worker died" if isinstance(exc, exceptions.WorkerCrashedError) else "worker lost"
            self._retry_or_fail(flight, f"{cause}: {_first_line(exc)}", None)
            return
        except exceptions.RayError as exc:
            self._retry_or_fail(flight, f"ray error: {_first_line(exc)}", None, crash=False)
            return
        pid, result, error = payload["pid"], payload["result"], payload["error"]
        if error is not None:
            self._retry_or_fail(flight, error, pid, crash=False)
        else:
            self._ready.append(EvalOutcome.from_result(key, result, attempts, pid))

    def _retry_or_fail(self, flight: _Flight, error: str, pid: int | None, crash: bool = True) -> None:
        if flight.attempts <= self.max_retries and (crash or self.retry_exceptions):
            self._queue.appendleft((flight.task, flight.attempts + 1))
            self._launch()
            return
        self._ready.append(EvalOutcome(flight.task.key, False, None, error, flight.attempts, pid))


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


__all__ = ["CONNECT_TIMEOUT_S", "RayConnectionError", "RayEvaluator", "check_ray_address", "ensure_ray"]
