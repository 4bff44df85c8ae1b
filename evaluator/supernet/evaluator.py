"""`SupernetEvaluator`: candidates scored with a trained supernet's inherited weights, in seconds.

The Evaluator protocol of :mod:`evaluator.base` (submit an ``EvalTask``, poll its ``EvalOutcome``),
so the search drives it like the proxy training. The supernet is loaded once per process (here,
or once per Ray actor) and checked against the data at construction: a supernet trained on
another data set, input size or class count is a one-line :class:`SupernetError` before any
candidate is scored. Each result is a ``ProxyResult`` with status ``ok``, ``accuracy`` = the
one-shot score (extract, recalibrate BatchNorm, validate: :func:`evaluator.supernet.scoring.score`),
``train_time_s`` = the seconds that took and ``epochs_run = 0``. A candidate outside the supernet's
space is a failed outcome with the one-line reason, never an exception.

With ``workers > 1`` the candidates go to that many Ray actors, each holding the supernet and the
scoring tensors once (``num_cpus`` each, default ``threads``), one candidate per actor at a time.
An actor that dies is replaced by the driver and its candidate scored once more (``attempts`` 2);
a second death is the candidate's failed outcome (``worker died: ...``).
The supernet travels as its file's bytes through the object store, so a cluster node needs no
copy of the file (each actor checks the checksum of what it loaded).

``checkpoint`` may list several supernets (:mod:`evaluator.supernet.ensemble`): each candidate is
scored by every one on the same images and gets the mean; its seconds are their sum.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

from evaluator.base import EvalOutcome, EvalTask, EvaluatorBase, describe_exception
from evaluator.datasets import DataSplit
from evaluator.proxy import ProxyResult
from evaluator.supernet.ensemble import (Checkpoints, SupernetEnsemble, check_inside, check_scorer, load_scorer,
                                         members_of, score_mean)
from evaluator.supernet.scoring import BN_BATCH, BN_BATCHES, VAL_SIZE, ScoringData, SupernetScore
from evaluator.supernet.store import SUPERNET_NAME, SupernetInfo, load_supernet, supernet_file
from evaluator.supernet.weights import Supernet, SupernetError
from search_space.errors import ShufflenasError, first_line


@dataclasses.dataclass(frozen=True)
class SupernetIdentity:
    """What scored a candidate: the supernet (checksum, method) and the scoring setup."""

    checksum: str
    method: str
    bn_batches: int
    val_size: int | None


def as_result(s: SupernetScore) -> ProxyResult:
    """A supernet score in the shape every evaluator returns (no training: ``epochs_run = 0``)."""
    images = s.bn_images + s.val_images
    return ProxyResult("ok", float(s.accuracy), (float(s.accuracy),), (), round(s.seconds, 4),
                       round(images / s.seconds, 1) if s.seconds > 0 else 0.0, 0)


class _Scoring:
    """One process's loaded supernets (one, or an ensemble's) and scoring tensors: scores a task, never raises."""

    def __init__(self, supernets: list[Supernet], scoring: ScoringData, threads: int, bn_batch: int) -> None:
        self.supernets = [s.eval() for s in supernets]
        self.scoring = scoring
        self.threads = threads
        self.bn_batch = bn_batch

    def run(self, task: EvalTask) -> tuple[ProxyResult | None, str | None]:
        try:
            check_inside(self.supernets, task.arch)
        except SupernetError as exc:
            return None, first_line(exc)
        try:
            s = score_mean(self.supernets, task.arch, self.scoring, bn_batch=self.bn_batch, threads=self.threads)
        except Exception as exc:  # noqa: BLE001 - a failing candidate is an outcome, not a crash
            return None, describe_exception(exc)
        return as_result(s), None


class _ScoringActor:
    """Body of a Ray actor: loads the supernets from their bytes once, then scores candidates."""

    def __init__(self, blobs: list[Any], checksums: list[str], scoring: ScoringData, threads: int,
                 bn_batch: int) -> None:
        import ray
        import torch

        torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS to the actor's CPUs
        supernets = []
        for blob, checksum in zip(blobs, checksums):
            with tempfile.TemporaryDirectory(prefix="shufflenas-supernet-") as tmp:
                path = Path(tmp) / SUPERNET_NAME
                path.write_bytes(ray.get(blob))
                supernet, info = load_supernet(path)
            if info.checksum != checksum:
                raise SupernetError(f"the supernet reached this worker damaged (checksum {info.checksum}, "
                                    f"expected {checksum})")
            supernets.append(supernet)
        self.scoring = _Scoring(supernets, scoring, threads, bn_batch)

    def score(self, task: EvalTask) -> dict[str, Any]:
        result, error = self.scoring.run(task)
        return {"pid": os.getpid(), "result": result, "error": error}


class SupernetEvaluator(EvaluatorBase):
    """Scores candidates with the supernet (or supernets) at ``checkpoint``; see the module docstring."""

    def __init__(self, data: DataSplit, checkpoint: Checkpoints, bn_batches: int = BN_BATCHES,
                 val_size: int | None = VAL_SIZE, workers: int = 1, ray_address: str | None = None, threads: int = 1,
                 bn_batch: int = BN_BATCH, seed: int = 0, checksum: str | None = None,
                 num_cpus: float | None = None) -> None:
        for name, value in (("bn_batches", bn_batches), ("workers", workers), ("threads", threads),
                            ("bn_batch", bn_batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ShufflenasError(f"supernet evaluator: {name} must be an integer >= 1, got {value!r}")
        if val_size is not None and (isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 0):
            raise ShufflenasError(f"supernet evaluator: val_size must be an integer >= 0 (0 or None: the whole "
                                  f"validation split), got {val_size!r}")
        supernets, info = load_scorer(checkpoint)
        check_scorer(supernets, info, data)
        if checksum is not None and info.checksum != checksum:
            raise SupernetError(f"supernet {info.path} changed since the search was checked (checksum "
                                f"{info.checksum}, expected {checksum}); run the search again")
        self.data = data
        self.info: SupernetInfo | SupernetEnsemble = info
        self.identity = SupernetIdentity(info.checksum, info.method, bn_batches, val_size)
        self.workers = workers
        scoring = ScoringData.from_split(data, bn_batches=bn_batches, bn_batch=bn_batch, val_size=val_size, seed=seed)
        self._queue: deque[EvalTask] = deque()
        self._closed = False
        self._local: _Scoring | None = None
        self._ray: Any = None
        self._owns_ray = False
        if workers == 1:
            self._local = _Scoring(supernets, scoring, threads, bn_batch)
            return
        from evaluator.ray_connect import ensure_ray

        self._owns_ray = ensure_ray(ray_address)
        import ray

        self._ray = ray
        # Ray does not restart the actors (``max_restarts=0``): the driver replaces a dead one itself
        # and retries its candidate once (``_poll_ray``). Ray's own restart would re-run the
        # constructor from arguments in the object store, which it warns on every start cannot be
        # relied on (ray-project/ray#53727); here the refs stay held by the driver for its lifetime.
        remote = ray.remote(_ScoringActor).options(num_cpus=threads if num_cpus is None else num_cpus,
                                                   max_restarts=0)
        # the blobs in a list reach the actor unresolved (it gets them one at a time)
        self._blobs = [ray.put(supernet_file(m.path).read_bytes()) for m in members_of(info)]
        self._scoring_ref = ray.put(scoring)
        checksums = [m.checksum for m in members_of(info)]
        self._new_actor = lambda: remote.remote(self._blobs, checksums, self._scoring_ref, threads, bn_batch)
        self._actors = [self._new_actor() for _ in range(workers)]
        self._idle: deque[Any] = deque(self._actors)
        self._flights: dict[Any, tuple[EvalTask, Any, int]] = {}  # ref -> (task, actor, attempt)

    # -- protocol -------------------------------------------------------------------------------
    def submit(self, task: EvalTask) -> None:
        if self._closed:
            raise ShufflenasError("this evaluator is closed")
        self._queue.append(task)
        if self._ray is not None:
            self._launch()

    def pending(self) -> int:
        return len(self._queue) + (len(self._flights) if self._ray is not None else 0)

    def poll(self, timeout: float | None = None) -> list[EvalOutcome]:
        if self._local is not None:  # in-process: score the next candidate (seconds; not interruptible)
            if not self._queue:
                return []
            task = self._queue.popleft()
            result, error = self._local.run(task)
            return [self._outcome(task, result, error, os.getpid())]
        return self._poll_ray(timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        if self._ray is not None:
            from evaluator.ray_connect import release_ray

            for actor in self._actors:
                try:
                    self._ray.kill(actor)
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    pass
            self._flights.clear()
            self._blobs, self._scoring_ref = [], None
            release_ray(self._owns_ray)

    # -- internals ------------------------------------------------------------------------------
    @staticmethod
    def _outcome(task: EvalTask, result: ProxyResult | None, error: str | None, pid: int | None,
                 attempts: int = 1) -> EvalOutcome:
        if result is None:
            return EvalOutcome(task.key, False, None, error or "scoring failed", attempts, pid)
        return EvalOutcome.from_result(task.key, result, attempts, pid)

    def _replace(self, dead: Any) -> Any:
        """A fresh actor in place of one that died (its supernets and tensors from the held refs)."""
        try:
            self._ray.kill(dead)
        except Exception:  # noqa: BLE001 - it is gone already
            pass
        fresh = self._new_actor()
        self._actors = [fresh if a is dead else a for a in self._actors]
        return fresh

    def _launch(self) -> None:
        while self._queue and self._idle:
            task, actor = self._queue.popleft(), self._idle.popleft()
            self._flights[actor.score.remote(task)] = (task, actor, 1)

    def _poll_ray(self, timeout: float | None) -> list[EvalOutcome]:
        self._launch()
        if not self._flights:
            return []
        refs = list(self._flights)
        done, _ = self._ray.wait(refs, num_returns=1, timeout=None if timeout is None else max(0.0, timeout))
        if done:  # and every other one already finished
            done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        out = []
        for ref in done:
            task, actor, attempt = self._flights.pop(ref)
            try:
                payload = self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:  # the actor died, or could not start
                fresh = self._replace(actor)
                if attempt == 1:  # scored once more, on the fresh actor
                    self._flights[fresh.score.remote(task)] = (task, fresh, 2)
                    continue
                self._idle.append(fresh)
                out.append(EvalOutcome(task.key, False, None, f"worker died: {first_line(exc)}", attempt, None))
                continue
            self._idle.append(actor)
            out.append(self._outcome(task, payload["result"], payload["error"], payload["pid"], attempt))
        self._launch()
        return out


__all__ = ["SupernetEvaluator", "SupernetIdentity", "as_result"]
