"""One supernet training over several workers: Ray Train's ``TorchTrainer`` with DDP.

As :mod:`evaluator.training.distributed` does for one architecture: ``batch_size`` is the global
batch; every rank draws the same data order, augmentation and paths from the run's seeded
generators (so the same candidate runs on every rank at every step), augments the whole batch and
trains on its slice ``[rank::world]``; DDP averages the gradients. A path leaves most of the bank
unused, so DDP runs with ``find_unused_parameters=True``. BatchNorm uses each rank's batch
statistics (the supernet keeps no running statistics), so the numbers are close to, not bit-equal
with, one process.

Rank 0 is the only writer: ``checkpoint.pt`` every epoch (the single-process format, so a run
resumes on one process or on several), ``metrics.csv``, ``curves.png`` and at the end
``supernet.pt``. It alone scores the per-epoch probes and broadcasts them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from typing import Any

import torch

from evaluator.datasets import DataSplit
from evaluator.proxy import torch_threads
from evaluator.supernet.outputs import read_metrics, write_curves, write_metrics
from evaluator.supernet.session import CHECKPOINT_NAME, SupernetEpoch, load_checkpoint, open_session, save_checkpoint
from evaluator.supernet.store import SUPERNET_NAME, read_info
from evaluator.supernet.training import (
    SupernetPlan,
    SupernetRecipe,
    SupernetTrainResult,
    plan_supernet,
    probe_data,
    probes,
    result_of,
    run_epoch,
    run_title,
    score_probes,
    write_supernet,
)
from evaluator.training.distributed import EpochLines, _check_settings, ddp_banner, fit_on_ray
from evaluator.training.recipe import DataSpec
from evaluator.training.run_files import prepare_out, software_versions
from evaluator.training.session import TrainError
from search_space import SearchSpace


# -- the per-rank loop (runs in Ray Train's workers) --------------------------------------------------
def _worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: fetch the plan from the object store and train this rank's share."""
    import ray
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    device = ray.train.torch.get_device()
    plan = ray.get(config["plan"])
    with torch_threads(None if device.type == "cuda" else config["threads"]):
        _train_rank(plan, rank=context.get_world_rank(), world=context.get_world_size(), device=device)


def _train_rank(plan: SupernetPlan, *, rank: int, world: int, device: torch.device) -> None:
    import ray.train
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    cuda = device.type == "cuda"
    distributed = world > 1 and dist.is_available() and dist.is_initialized()
    recipe, data, out = plan.recipe, plan.data, plan.out
    session = open_session((plan.space, data.num_classes, data.input_size), data.train_size, recipe, device,
                           state=plan.state, checkpoint_path=out / CHECKPOINT_NAME)
    forward = session.forward
    if distributed:  # every rank runs the same path, but the path leaves most of the bank unused
        forward = DistributedDataParallel(forward, find_unused_parameters=True,
                                          device_ids=[device.index] if cuda else None)
    title = run_title(plan)
    if plan.state is not None and rank == 0:
        write_metrics(out, session.rows)
        write_curves(out, session.rows, title)
    scoring = probe_data(data, recipe) if rank == 0 else None
    names = [name for name, _ in probes(session.supernet)]
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    for epoch in range(session.start_epoch, recipe.epochs):
        tick = time.perf_counter()
        loss_sum = run_epoch(session, forward, train_x, train_y, epoch, rank=rank, world=world)
        if distributed:
            dist.all_reduce(loss_sum)
            loss_sum /= world
        mean_loss = float(loss_sum) / session.steps
        trained = time.perf_counter() - tick
        session.check_finite(epoch, mean_loss)
        accuracy = torch.zeros(len(names), dtype=torch.float64)
        if rank == 0:
            accuracy[:] = torch.tensor([a for _, a in score_probes(session.supernet, scoring)], dtype=torch.float64)
        if distributed:
            accuracy = accuracy.to(device)
            dist.broadcast(accuracy, src=0)
            accuracy = accuracy.cpu()
        row = SupernetEpoch(epoch + 1, mean_loss, session.optimizer.param_groups[0]["lr"],
                            session.steps * recipe.batch_size / trained if trained > 0 else 0.0,
                            time.perf_counter() - tick, tuple(zip(names, accuracy.tolist())))
        session.rows.append(row)
        if rank == 0:
            save_checkpoint(out / CHECKPOINT_NAME, session.checkpoint(plan.identity, epoch + 1, software_versions(),
                                                                      ddp_workers=world))
            write_metrics(out, session.rows)
            write_curves(out, session.rows, title)
        ray.train.report({"epoch": epoch + 1, "train_loss": mean_loss})
    if rank == 0 and session.rows:
        write_supernet(session.supernet.cpu(), plan, session.rows)
    if distributed:
        dist.barrier()  # no rank ends before supernet.pt is written


# -- the driver ---------------------------------------------------------------------------------------
def train_supernet_ddp(space: SearchSpace, data: DataSpec | DataSplit, recipe: SupernetRecipe,
                       out_dir: str | os.PathLike, *, num_workers: int, use_gpu: bool = False,
                       address: str | None = None, cpus_per_worker: float = 1,
                       progress: bool = True, given: Collection[str] | None = None) -> SupernetTrainResult:
    """Train a supernet with DDP over ``num_workers`` Ray Train workers (gloo on CPU, nccl on GPU).

    Same checks, files and resumption as :func:`~evaluator.supernet.training.train_supernet`
    (``given``: as :func:`~evaluator.supernet.training.plan_supernet`).
    """
    settings = _check_settings(recipe, num_workers, use_gpu, cpus_per_worker)
    plan = plan_supernet(space, data, recipe, out_dir, given=given)  # everything checked before anything starts
    prepare_out(plan.out)
    started = time.perf_counter()
    start_epoch = int(plan.state["epoch"]) if plan.state is not None else 0
    epochs = plan.recipe.epochs
    absolute = SupernetPlan(plan.space, plan.data, plan.recipe, plan.out.absolute(), plan.identity, plan.state,
                            plan.data_spec)
    fit_on_ray(_worker, lambda ray: {"plan": ray.put(absolute), "threads": settings.threads}, settings,
               name="ddp-supernet", failed="distributed supernet training failed", address=address,
               banner=ddp_banner("training the supernet", settings, plan.recipe.batch_size,
                                 plan.out / CHECKPOINT_NAME, start_epoch, epochs) if progress else None,
               lines=EpochLines(lambda: read_metrics(plan.out), epochs, start_epoch) if progress else None)
    state = load_checkpoint(plan.out / CHECKPOINT_NAME)  # what rank 0 wrote
    rows = [SupernetEpoch.from_dict(r) for r in state["metrics"]]
    if not rows or not (plan.out / SUPERNET_NAME).exists():
        raise TrainError(f"distributed supernet training wrote no supernet into {plan.out}")
    trained_now = rows[start_epoch:]
    speed = sum(r.images_per_s for r in trained_now) / len(trained_now) if trained_now else 0.0
    return result_of(plan, read_info(plan.out / SUPERNET_NAME), rows, started=started, images_per_s=speed,
                     device="cuda" if settings.use_gpu else "cpu",
                     threads=None if settings.use_gpu else settings.threads)


__all__ = ["train_supernet_ddp"]
