"""One large training over several workers: Ray Train's ``TorchTrainer`` with DDP.

The recipe means what it means in the single-process loop (:mod:`evaluator.training.loop`):
``batch_size`` is the global batch. Every rank draws the same data order and augmentation from
the run's seeded generator, augments the whole global batch and keeps its own slice
(``batch[rank::world]``, as ``DistributedSampler`` strides), so W workers see exactly the
batches one process would; DDP averages the gradients. BatchNorm statistics are per rank (plain
DDP, rank 0's buffers are broadcast), so the numbers are close to, not bit-equal with, one process.

Rank 0 is the only writer: ``checkpoint.pt`` after every epoch (the same format as the loop, so
a run can resume on one process or on several), ``metrics.csv``, ``curves.png``, and at the end
``model.pt`` / ``model.onnx``, all through the project's atomic writes. The driver reads
``out_dir``'s checkpoint before it starts and hands it to every rank through the object store, so
only rank 0 needs to reach ``out_dir`` (on a cluster: a path on rank 0's node or a shared folder).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from evaluator.datasets import DataSplit
from evaluator.training.augment import random_crop_flip
from evaluator.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from evaluator.training.loop import (
    RunPlan,
    TrainResult,
    evaluate_topk,
    plan_run,
    recalibrate_for_eval,
    torch_threads,
)
from evaluator.training.outputs import (CURVES_NAME, METRICS_NAME, EpochMetrics, read_metrics, write_curves,
                                        write_metrics)
from evaluator.training.recipe import DataSpec, TrainRecipe
from evaluator.training.run_files import MODEL_NAME, ONNX_NAME, prepare_out, run_title, software_versions, write_model_files
from evaluator.training.session import TrainError, open_session
from search_space import Architecture
from search_space.errors import ShufflenasError

#: Each rank needs at least this many images of a global batch (BatchNorm cannot train on one).
MIN_PER_RANK = 2


@dataclasses.dataclass(frozen=True)
class DDPSettings:
    """How a distributed run is spread: ranks, device, CPU threads per rank."""

    num_workers: int
    use_gpu: bool
    cpus_per_worker: float
    threads: int

    @property
    def backend(self) -> str:
        return "nccl" if self.use_gpu else "gloo"


def _check_settings(recipe: TrainRecipe, num_workers: int, use_gpu: bool, cpus_per_worker: float) -> DDPSettings:
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise TrainError(f"the number of DDP workers must be an integer >= 1, got {num_workers!r}")
    if isinstance(cpus_per_worker, bool) or not isinstance(cpus_per_worker, (int, float)) or \
            not (cpus_per_worker > 0 and math.isfinite(cpus_per_worker)):
        raise TrainError(f"CPUs per DDP worker must be a number > 0, got {cpus_per_worker!r}")
    if recipe.batch_size < MIN_PER_RANK * num_workers:
        raise TrainError(f"train option batch_size {recipe.batch_size} is too small for {num_workers} DDP workers "
                         f"(each needs at least {MIN_PER_RANK} images of the global batch); use batch_size >= "
                         f"{MIN_PER_RANK * num_workers} or fewer workers")
    threads = recipe.threads or max(1, int(cpus_per_worker))
    return DDPSettings(num_workers, bool(use_gpu), float(cpus_per_worker), threads)


def _check_resources(ray: Any, settings: DDPSettings) -> None:
    """Refuse in one line a run the cluster can never place (Ray Train would wait for it forever)."""
    total = ray.cluster_resources()
    need_cpu = settings.num_workers * settings.cpus_per_worker
    if total.get("CPU", 0) < need_cpu:
        raise TrainError(f"{settings.num_workers} DDP workers x {settings.cpus_per_worker:g} CPU need {need_cpu:g} "
                         f"CPUs; the Ray cluster has {total.get('CPU', 0):g}")
    if settings.use_gpu and total.get("GPU", 0) < settings.num_workers:
        raise TrainError(f"{settings.num_workers} DDP workers on GPU need {settings.num_workers} GPUs; the Ray "
                         f"cluster has {total.get('GPU', 0):g}")


# -- the per-rank loop (runs in Ray Train's workers) --------------------------------------------------
def _worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: fetch the run from the object store and train this rank's share."""
    import ray
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    data, state, init_state = ray.get(config["refs"])
    cuda = device.type == "cuda"
    with torch_threads(None if cuda else config["threads"]):
        _train_rank(Architecture.from_string(config["arch"]), data, config["recipe"], Path(config["out"]),
                    config["identity"], state, init_state, rank=rank, world=world, device=device)


def _train_rank(arch: Architecture, data: DataSplit, recipe: TrainRecipe, out: Path, identity: dict[str, Any],
                state: dict[str, Any] | None, init_state: dict | None, *, rank: int, world: int,
                device: torch.device) -> None:
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    cuda = device.type == "cuda"
    distributed = world > 1 and dist.is_available() and dist.is_initialized()
    session = open_session(arch, data.num_classes, data.input_size, data.train_size, recipe, device, state=state,
                           init_state=init_state, checkpoint_path=out / CHECKPOINT_NAME)
    model, generator, rows = session.model, session.generator, session.rows
    ddp = ray.train.torch.prepare_model(model, move_to_device=False)  # DDP when world > 1
    n, bs, steps = data.train_size, recipe.batch_size, session.steps
    title = run_title(arch, data)
    if state is not None and rank == 0:
        write_metrics(out, rows)
        write_curves(out, rows, title)

    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    for epoch in range(session.start_epoch, recipe.epochs):
        tick = time.perf_counter()
        ddp.train()
        order = torch.randperm(n, generator=generator)
        loss_sum = torch.zeros((), device=device)
        lr = recipe.lr
        for step in range(steps):
            lr = session.set_lr(epoch, step)
            idx = order[step * bs:(step + 1) * bs].to(device)
            x = train_x[idx]
            if recipe.augment:  # the whole global batch, so every rank's generator stays in step
                x = random_crop_flip(x, generator, padding=recipe.crop_padding, flip=recipe.flip)
            loss_sum += session.train_step(ddp, x[rank::world], train_y[idx][rank::world])
        if distributed:
            dist.all_reduce(loss_sum)
            loss_sum /= world
        mean_loss = float(loss_sum) / steps
        trained = time.perf_counter() - tick
        session.check_finite(epoch, mean_loss)
        accuracy = torch.zeros(2, dtype=torch.float64)
        if rank == 0:  # rank 0's BatchNorm buffers are the model's (DDP broadcasts them)
            scored = session.scored
            # re-estimated on the unwrapped module: a DDP forward in train mode would wait for the other ranks
            recalibrate_for_eval(getattr(scored, "module", scored), train_x, recipe.batch_size, channels_last=cuda)
            accuracy[:] = torch.tensor(evaluate_topk(scored, val_x, val_y, amp=cuda, channels_last=cuda),
                                       dtype=torch.float64)
        if distributed:
            accuracy = accuracy.to(device)
            dist.broadcast(accuracy, src=0)
            accuracy = accuracy.cpu()
        row = EpochMetrics(epoch=epoch + 1, train_loss=mean_loss, val_top1=float(accuracy[0]),
                           val_top5=float(accuracy[1]), lr=lr,
                           images_per_s=steps * bs / trained if trained > 0 else 0.0,
                           seconds=time.perf_counter() - tick)
        rows.append(row)
        if rank == 0:
            save_checkpoint(out / CHECKPOINT_NAME, session.checkpoint(identity, epoch + 1, software_versions(),
                                                                      ddp_workers=world))
            write_metrics(out, rows)
            write_curves(out, rows, title)
        ray.train.report({"epoch": epoch + 1, "train_loss": mean_loss, "val_top1": row.val_top1,
                          "images": steps * bs, "train_seconds": trained})
    if rank == 0 and rows:
        write_model_files(session.scored, arch, data, recipe, rows, out)
    if distributed:
        dist.barrier()  # no rank ends before the model files are written


# -- the driver ---------------------------------------------------------------------------------------
class EpochLines(threading.Thread):
    """Print one line per epoch as rank 0 rewrites ``metrics.csv`` (worker output stays in Ray's logs).

    ``read`` returns the rows written so far (each with ``line(epochs)``); a file caught mid-write
    raises and is read again at the next poll.
    """

    def __init__(self, read: Callable[[], Sequence[Any]], epochs: int, already: int) -> None:
        super().__init__(daemon=True)
        self.read, self.epochs, self.shown = read, epochs, already
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.poll()
        self.poll()

    def poll(self) -> None:
        try:
            rows = self.read()
        except (OSError, KeyError, TypeError, ValueError, csv.Error):
            return
        for row in rows[self.shown:]:
            print(row.line(self.epochs), file=sys.stderr, flush=True)
            self.shown += 1


def describe_workers(settings: DDPSettings) -> str:
    if settings.use_gpu:
        return f"{settings.num_workers} GPU workers"
    return f"{settings.num_workers} CPU workers x {settings.threads} thread{'s' if settings.threads != 1 else ''}"


def fit_on_ray(worker: Callable[[dict[str, Any]], None], make_config: Callable[[Any], dict[str, Any]],
               settings: DDPSettings, *, name: str, failed: str, address: str | None,
               banner: str | None = None, lines: EpochLines | None = None) -> None:
    """Run ``worker`` on ``settings.num_workers`` Ray Train workers and wait for it; the one launcher of
    every DDP run (a training, a supernet).

    Starts a local Ray or connects to ``address``, refuses a run the cluster cannot place, builds the
    workers' config with ``make_config(ray)`` (so it can put large objects in the object store), shows
    ``banner`` and the epoch ``lines`` while it runs, and turns a worker's failure into one
    :class:`TrainError` line starting with ``failed`` ("distributed training failed"). Ray Train's own run
    folder is a temporary one, removed after.
    """
    try:
        import ray.train
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError as exc:
        raise TrainError(f"DDP training needs Ray Train (pip install 'ray[train]'): {exc}") from None
    from evaluator.ray_connect import ensure_ray, release_ray

    owns_ray = ensure_ray(address)
    import ray

    try:
        _check_resources(ray, settings)
        if banner:
            print(banner, file=sys.stderr, flush=True)
        if lines is not None:
            lines.start()
        config = make_config(ray)
        resources = {"CPU": settings.cpus_per_worker, **({"GPU": 1} if settings.use_gpu else {})}
        with tempfile.TemporaryDirectory(prefix="shufflenas-ray-train-") as storage:
            trainer = TorchTrainer(
                worker, train_loop_config=config, torch_config=TorchConfig(backend=settings.backend),
                scaling_config=ScalingConfig(num_workers=settings.num_workers, use_gpu=settings.use_gpu,
                                             resources_per_worker=resources),
                run_config=RunConfig(name=name, storage_path=storage))
            try:
                trainer.fit()
            except ray.train.TrainingFailedError as exc:
                raise TrainError(f"{failed} on {_failure_line(exc)}") from None
    finally:
        if lines is not None and lines.is_alive():
            lines.stop.set()
            lines.join(timeout=5)
        release_ray(owns_ray)


def ddp_banner(what: str, settings: DDPSettings, batch: int, checkpoint: Path, start_epoch: int, epochs: int) -> str:
    """The driver's first lines: where it trains, and what it resumes."""
    text = f"{what} with DDP on {describe_workers(settings)} ({settings.backend}), global batch {batch}"
    if start_epoch:
        text += (f"\nresuming from {checkpoint} after epoch {start_epoch}/{epochs}" if start_epoch < epochs
                 else f"\n{checkpoint}: all {epochs} epochs already trained")
    return text


def _failure_line(exc: BaseException) -> str:
    """One line of what went wrong on a rank (rank 0's error when it has one)."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        rank = 0 if 0 in failures else min(failures)
        cause: BaseException = failures[rank]
        where = f"rank {rank}: "
    else:
        cause, where = getattr(exc, "controller_failure", exc), ""
    if isinstance(cause, ShufflenasError):
        text = str(cause).strip().splitlines()
        return where + (text[0] if text else type(cause).__name__)
    # a wrapped worker error carries the traceback text: its last unindented line is ``Type: message``
    lines = [line.strip() for line in str(cause).splitlines() if line.strip() and not line.startswith(" ")]
    lines = [line for line in lines if not line.startswith("Traceback")]
    return where + (lines[-1] if lines else type(cause).__name__)


def train_ddp(arch: Architecture, data_spec: DataSpec, recipe: TrainRecipe, out_dir: str | os.PathLike, *,
              num_workers: int, use_gpu: bool = False, address: str | None = None, cpus_per_worker: float = 1,
              progress: bool = True) -> TrainResult:
    """Train ``arch`` with DDP over ``num_workers`` Ray Train workers (gloo on CPU, nccl on GPU).

    Same checks, files and resumption as :func:`~evaluator.training.loop.train_architecture`;
    ``recipe.batch_size`` is the global batch. Starts a local Ray (or connects to ``address``)
    through the project's helpers; Ray Train's own run folder is a temporary one, removed after.
    """
    settings = _check_settings(recipe, num_workers, use_gpu, cpus_per_worker)
    plan = plan_run(arch, data_spec, recipe, out_dir)  # everything checked before anything starts
    recipe = plan.recipe  # with the data set's defaults filled in
    prepare_out(plan.out)
    started = time.perf_counter()
    start_epoch = int(plan.state["epoch"]) if plan.state is not None else 0
    checkpoint = plan.out / CHECKPOINT_NAME

    def make_config(ray: Any) -> dict[str, Any]:
        return {"arch": arch.to_string(), "recipe": recipe, "out": str(plan.out.absolute()),
                "identity": plan.identity, "threads": settings.threads,
                "refs": [ray.put(plan.data), ray.put(plan.state), ray.put(plan.init_state)]}

    fit_on_ray(_worker, make_config, settings, name=f"ddp-{arch.arch_id}", failed="distributed training failed",
               address=address,
               banner=ddp_banner("training", settings, recipe.batch_size, checkpoint, start_epoch, recipe.epochs)
               if progress else None,
               lines=EpochLines(lambda: read_metrics(plan.out), recipe.epochs, start_epoch) if progress else None)
    return _result(arch, plan, settings, start_epoch, started)


def _result(arch: Architecture, plan: RunPlan, settings: DDPSettings, start_epoch: int, started: float) -> TrainResult:
    """The run's :class:`TrainResult`, read back from what rank 0 wrote."""
    out = plan.out
    state = load_checkpoint(out / CHECKPOINT_NAME)
    rows = tuple(EpochMetrics.from_dict(r) for r in state["metrics"])
    if not rows:
        raise TrainError(f"distributed training wrote no epoch into {out / CHECKPOINT_NAME}")
    trained_now = rows[start_epoch:]
    final = rows[-1]
    model_pt, model_onnx = out / MODEL_NAME, out / ONNX_NAME
    return TrainResult(
        arch=arch.to_string(), arch_id=arch.arch_id, dataset=plan.data.name, out=str(out), epochs=len(rows),
        val_top1=final.val_top1, val_top5=final.val_top5, train_loss=final.train_loss,
        model_pt=str(model_pt) if model_pt.exists() else None,
        model_onnx=str(model_onnx) if model_onnx.exists() else None, checkpoint=str(out / CHECKPOINT_NAME),
        metrics_csv=str(out / METRICS_NAME),
        curves_png=str(out / CURVES_NAME) if (out / CURVES_NAME).exists() else None,
        seconds=time.perf_counter() - started,
        images_per_s=sum(r.images_per_s for r in trained_now) / len(trained_now) if trained_now else 0.0,
        resumed_from=start_epoch, device="cuda" if settings.use_gpu else "cpu",
        threads=None if settings.use_gpu else settings.threads, metrics=rows)


__all__ = ["MIN_PER_RANK", "DDPSettings", "EpochLines", "ddp_banner", "describe_workers", "fit_on_ray", "train_ddp"]
