"""Many trainings at once: each :class:`TrainJob` runs :func:`train_architecture` as a Ray task.

- At most ``workers`` jobs are in flight; each task asks Ray for ``num_cpus`` CPUs and
  ``num_gpus`` GPUs (a fraction such as 0.25 packs four trainings on one GPU). Results are
  collected as they finish.
- A job that fails (bad output folder, diverged loss, dead worker) is reported with a one-line
  reason and the others go on. A worker that dies is retried once by Ray; since the task is
  ``train_architecture`` itself, the retry resumes from the job's checkpoint.
- Rerunning the same jobs resumes every one of them from its own ``checkpoint.pt``, so a killed
  ``--front --workers N`` run picks up where it stopped (finished jobs only rewrite nothing).
- With ``workers == 1`` and no address the jobs run one after the other in this process (no Ray).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

from evaluator.base import describe_exception
from evaluator.training.loop import TrainResult, train_architecture
from evaluator.training.recipe import DataSpec, TrainRecipe
from search_space import Architecture
from search_space.errors import ShufflenasError

#: How often Ray itself reruns a job whose worker process died (the rerun resumes from the checkpoint).
WORKER_RETRIES = 1


class ParallelTrainError(ShufflenasError, ValueError):
    """The set of jobs or the resources asked for cannot be run."""


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """One training: everything :func:`train_architecture` takes; ``label`` names it in messages."""

    arch: Architecture
    data_spec: DataSpec
    recipe: TrainRecipe
    out_dir: str
    label: Hashable | None = None

    def name(self) -> str:
        return str(self.label) if self.label is not None else str(self.out_dir)


@dataclasses.dataclass(frozen=True)
class TrainOutcome:
    """How one job ended: ``result`` when ``ok``, else ``error`` (one line)."""

    job: TrainJob
    ok: bool
    result: TrainResult | None
    error: str | None
    worker_pid: int | None

    def summary(self) -> dict[str, Any]:
        """Plain data for ``--json``: the result's summary, or the error."""
        head = {"label": self.job.label, "out": str(self.job.out_dir), "ok": self.ok}
        if self.ok and self.result is not None:
            return {**head, **self.result.summary()}
        return {**head, "arch": self.job.arch.to_string(), "error": self.error}


def _error_line(exc: BaseException) -> str:
    """A user error's own message, anything else as ``Type: message``; always one line."""
    if isinstance(exc, ShufflenasError):
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return lines[0] if lines else type(exc).__name__
    return describe_exception(exc)


def _run_job(job: TrainJob, threads: int | None, progress: bool, device: str | None = None) -> dict[str, Any]:
    """Body of one job (in a Ray worker or in-process); exceptions come back as data with the PID."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)  # Ray workers start with OMP_NUM_THREADS=1
    try:
        result = train_architecture(job.arch, job.data_spec, job.recipe, job.out_dir, progress=progress,
                                    device=device)
    except Exception as exc:  # noqa: BLE001 - reported as a failed job, the others go on
        return {"pid": os.getpid(), "result": None, "error": _error_line(exc)}
    return {"pid": os.getpid(), "result": result, "error": None}


def _check(jobs: Sequence[TrainJob], workers: int, num_cpus: float, num_gpus: float) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParallelTrainError(f"workers must be an integer >= 1, got {workers!r}")
    for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ParallelTrainError(f"{name} per job must be a number >= 0, got {value!r}")
    if num_gpus > 1 and num_gpus != int(num_gpus):
        raise ParallelTrainError(f"num_gpus per job above 1 must be a whole number, got {num_gpus!r}")
    seen: dict[Path, str] = {}
    for job in jobs:
        if not isinstance(job, TrainJob):
            raise ParallelTrainError(f"expected TrainJob values, got {type(job).__name__}")
        where = Path(os.path.abspath(job.out_dir))
        if where in seen:
            raise ParallelTrainError(f"jobs {seen[where]} and {job.name()} both write to {job.out_dir}; give each "
                                     "job its own output directory")
        seen[where] = job.name()


def _check_capacity(total: dict[str, float], num_cpus: float, num_gpus: float) -> None:
    """Refuse in one line a job no node can ever take (Ray would keep it pending for good)."""
    for kind, need in (("CPU", num_cpus), ("GPU", num_gpus)):
        if need > 0 and total.get(kind, 0) < need:
            raise ParallelTrainError(f"each job asks for {need:g} {kind}; the Ray cluster has {total.get(kind, 0):g}")


def _report(progress: bool, done: int, total: int, outcome: TrainOutcome) -> None:
    if not progress:
        return
    job = outcome.job
    if outcome.ok and outcome.result is not None:
        r = outcome.result
        resumed = f", resumed after epoch {r.resumed_from}" if r.resumed_from else ""
        text = (f"val top-1 {r.val_top1:.4f} after {r.epochs} epochs ({r.seconds:.1f} s{resumed})")
    else:
        text = f"failed: {outcome.error}"
    print(f"[{done}/{total}] {job.name()}: {text}", file=sys.stderr, flush=True)


def train_many(jobs: Sequence[TrainJob], *, workers: int, address: str | None = None, num_cpus: float = 1,
               num_gpus: float = 0, progress: bool = True,
               on_outcome: Callable[[TrainOutcome], None] | None = None) -> list[TrainOutcome]:
    """Train every job, ``workers`` at a time; one :class:`TrainOutcome` per job, in the order of ``jobs``.

    ``on_outcome`` is called as each job finishes (in completion order). With ``progress`` one
    line per finished job goes to stderr (the per-epoch lines of Ray tasks stay in Ray's logs).
    """
    jobs = list(jobs)
    _check(jobs, workers, num_cpus, num_gpus)
    outcomes: list[TrainOutcome | None] = [None] * len(jobs)

    def finish(index: int, payload: dict[str, Any] | None, error: str | None = None) -> None:
        job = jobs[index]
        if payload is not None and payload["error"] is None:
            outcome = TrainOutcome(job, True, payload["result"], None, payload["pid"])
        else:
            outcome = TrainOutcome(job, False, None, error or payload["error"], payload and payload["pid"])
        outcomes[index] = outcome
        _report(progress, sum(o is not None for o in outcomes), len(jobs), outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    if not jobs:
        return []
    if workers == 1 and address is None:
        for index, job in enumerate(jobs):
            finish(index, _run_job(job, None, progress))
        return [o for o in outcomes if o is not None]
    _train_on_ray(jobs, workers, address, num_cpus, num_gpus, finish)
    return [o for o in outcomes if o is not None]


def _train_on_ray(jobs: list[TrainJob], workers: int, address: str | None, num_cpus: float, num_gpus: float,
                  finish: Callable[[int, dict[str, Any] | None, str | None], None]) -> None:
    """Run the jobs as Ray tasks, ``workers`` in flight; ``finish`` gets each as it ends."""
    from evaluator.ray_connect import ensure_ray, release_ray
    from evaluator.ray_evaluator import _first_line

    owns_ray = ensure_ray(address)
    import ray

    # a job without a GPU share trains on the CPU even on a GPU node: no one reserved that GPU for it
    threads, device = (max(1, int(num_cpus)), "cpu") if num_gpus == 0 else (None, None)
    remote = ray.remote(_run_job).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=WORKER_RETRIES,
                                          retry_exceptions=False)
    queue = list(range(len(jobs)))
    queue.reverse()
    flights: dict[Any, int] = {}
    try:
        _check_capacity(ray.cluster_resources(), num_cpus, num_gpus)
        while queue or flights:
            while queue and len(flights) < workers:
                index = queue.pop()
                flights[remote.remote(jobs[index], threads, False, device)] = index
            done, _ = ray.wait(list(flights), num_returns=1)
            for ref in done:
                index = flights.pop(ref)
                try:
                    payload = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    finish(index, None, f"worker lost: {_first_line(exc)}")
                else:
                    finish(index, payload, None)
    finally:
        for ref in flights:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        release_ray(owns_ray)


__all__ = ["WORKER_RETRIES", "ParallelTrainError", "TrainJob", "TrainOutcome", "train_many"]
