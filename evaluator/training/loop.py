"""Stand-alone training of one architecture: the loop, its resumption and its final model files.

:func:`train_architecture` is one picklable unit (plain values in, a :class:`TrainResult` out):
it loads its own data from a :class:`DataSpec`, so a Ray task can call it as it is. Training
state goes to ``checkpoint.pt`` after every epoch; rerunning the same call resumes from it and
produces the same metrics from then on as a run that was never interrupted (same seed, same
data order, same augmentation draws, same thread count).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from evaluator.datasets import DataSplit, DatasetError, load_dataset
from evaluator.proxy import torch_threads
from evaluator.training.augment import random_crop_flip
from evaluator.training.checkpoint import CHECKPOINT_NAME, check_identity, load_checkpoint, save_checkpoint
from evaluator.training.outputs import CURVES_NAME, METRICS_NAME, EpochMetrics, write_curves, write_metrics
from evaluator.training.recipe import DataSpec, TrainRecipe
from evaluator.training.run_files import (MODEL_NAME, ONNX_NAME, OUTPUT_NAMES, claim_out, run_title,
                                          software_versions, weights, write_model_files)
from evaluator.training.session import (TrainError, lr_at, make_optimizer, open_session, param_groups,
                                        schedule_steps)
from search_space import Architecture

VAL_BATCH = 512


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run produced; ``resumed_from`` is the number of epochs the checkpoint already held."""

    arch: str
    arch_id: str
    dataset: str
    out: str
    epochs: int
    val_top1: float
    val_top5: float
    train_loss: float
    model_pt: str | None
    model_onnx: str | None
    checkpoint: str
    metrics_csv: str
    curves_png: str | None
    seconds: float
    images_per_s: float
    resumed_from: int
    device: str
    threads: int | None
    metrics: tuple[EpochMetrics, ...]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["metrics"] = [m.to_dict() for m in self.metrics]
        return data

    def summary(self) -> dict[str, Any]:
        """The result without the per-epoch rows (the ``--json`` summary)."""
        data = self.to_dict()
        del data["metrics"]
        return data


# -- helpers ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _load(spec: DataSpec, input_size: int) -> DataSplit:
    """The data of ``spec`` (cached: a front trains many architectures on the same data)."""
    return load_dataset(spec.name, root=spec.root, input_size=input_size, seed=spec.seed,
                        val_fraction=spec.val_fraction, limit=spec.limit)


def dataset_identity(data: DataSplit) -> dict[str, Any]:
    """What makes two runs' data the same: name, split sizes, input size and classes."""
    return {"name": data.name, "train": data.train_size, "val": data.val_size, "input_size": data.input_size,
            "num_classes": data.num_classes, "classes": list(data.classes)}


#: Training images (the first ones, unaugmented, so it draws no random numbers) from which BatchNorm
#: statistics are re-estimated before every validation and before the model is written. Running
#: averages lag the weights after a high-learning-rate stretch: 0.5x on 4,800 Fashion-MNIST images
#: scored 7.0% top-1 after its first epoch with them, 49.8% with statistics re-estimated for the
#: same weights (benchmarks/results/training.md).
BN_RECALIBRATION_IMAGES = 1024


def recalibrate_for_eval(module: torch.nn.Module, train_x: torch.Tensor, batch: int, *,
                         channels_last: bool = False) -> None:
    """Re-estimate ``module``'s BatchNorm statistics for its current weights (see above)."""
    from evaluator.proxy import recalibrate_bn

    images = train_x[:BN_RECALIBRATION_IMAGES]
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        recalibrate_bn(module, images, batch)


@torch.inference_mode()
def evaluate_topk(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, amp: bool = False,
                  channels_last: bool = False, batch: int = VAL_BATCH) -> tuple[float, float]:
    """(top-1, top-5) accuracy; top-5 is top-k with k = min(5, classes)."""
    model.eval()
    top1 = top5 = 0
    for start in range(0, x.shape[0], batch):
        xb = x[start:start + batch]
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            logits = model(xb)
        yb = y[start:start + batch]
        k = min(5, logits.shape[1])
        best = logits.topk(k, dim=1).indices
        top1 += int((best[:, 0] == yb).sum())
        top5 += int((best == yb[:, None]).any(dim=1).sum())
    n = max(1, x.shape[0])
    return top1 / n, top5 / n


def _trace(event: str, value: int) -> None:
    """``trace: EVENT N`` on stderr when ``SHUFFLENAS_TRACE`` is set, so crash tests can kill in a known phase."""
    if os.environ.get("SHUFFLENAS_TRACE"):
        os.write(2, f"trace: {event} {value}\n".encode())


def _check_out(out: Path) -> None:
    """``out`` is a directory or can become one (its nearest existing ancestor is a writable directory)."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out} exists and is not a directory")
    probe = out.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise TrainError(f"cannot create --out {out}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise TrainError(f"--out {out} is not writable ({probe}: permission denied)")


class _Progress:
    """A rich bar per epoch on a terminal; one plain line per epoch elsewhere; nothing when off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                                      console=Console(stderr=True, highlight=False), transient=False)
        self._task = None

    def start(self, epoch: int, epochs: int, steps: int) -> None:
        if self._progress is not None:
            if self._task is None:
                self._progress.start()
            else:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(f"epoch {epoch}/{epochs}", total=steps, loss="-")

    def step(self, done: int, loss: float | None = None) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done, **({"loss": f"{loss:.3f}"} if loss is not None else {}))

    def epoch_done(self, row: EpochMetrics, epochs: int) -> None:
        line = row.line(epochs)
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        elif self.enabled:
            print(line, file=sys.stderr, flush=True)

    def log(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


# -- the run ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class RunPlan:
    """A run checked and ready to start: its data, output folder, and the state it resumes from."""

    arch: Architecture
    data: DataSplit
    recipe: TrainRecipe
    out: Path
    identity: dict[str, Any]
    state: dict[str, Any] | None
    init_state: dict | None
    data_spec: DataSpec | None = None   # recorded in model.pt, so `evaluate` scores the run's own split

    @property
    def resumes(self) -> bool:
        return self.state is not None


def plan_run(arch: Architecture, data_spec: DataSpec, recipe: TrainRecipe, out_dir: str | os.PathLike) -> RunPlan:
    """Check everything that can be wrong with a run before it writes a file.

    The data set loads, the batch fits it, ``out_dir`` is a directory (or can become one), and
    it holds either nothing of ours or this very run's checkpoint (another run's is refused, and
    so are results without a checkpoint); ``recipe.init`` weights fit the architecture.
    """
    out = Path(out_dir)
    input_size = data_spec.input_size(recipe)
    data = _load(data_spec, input_size)
    if recipe.batch_size > data.train_size:
        raise DatasetError(f"train option batch_size {recipe.batch_size} is larger than the {data.name} training "
                           f"split ({data.train_size} images)")
    _check_out(out)
    ckpt_path = out / CHECKPOINT_NAME
    state: dict[str, Any] | None = None
    if ckpt_path.exists() or ckpt_path.is_symlink():
        state = load_checkpoint(ckpt_path)
    recipe = data_spec.resolve(recipe, started=state["recipe"] if state is not None else None)  # data-set defaults
    identity = {"arch": arch.to_string(), "dataset": dataset_identity(data), "recipe": recipe.identity()}
    if state is not None:
        check_identity(state, ckpt_path, **identity)
    elif out.is_dir():
        present = [name for name in OUTPUT_NAMES if (out / name).exists()]
        if present:
            raise TrainError(f"--out {out} already holds {', '.join(present)} but no {CHECKPOINT_NAME}; choose "
                             "another --out (nothing there is overwritten)")
    init_state = None
    if state is None and recipe.init is not None:
        if weights is None:
            raise TrainError("--init needs model weights support (evaluator.training.weights), which this build lacks")
        from evaluator.training.init_weights import load_init

        init_state = load_init(recipe.init, arch, data.num_classes)
    return RunPlan(arch, data, recipe, out, identity, state, init_state, data_spec)


def train_architecture(arch: Architecture, data_spec: DataSpec, recipe: TrainRecipe, out_dir: str | os.PathLike, *,
                       progress: bool = True, device: str | None = None) -> TrainResult:
    """Train ``arch`` on ``data_spec`` with ``recipe`` into ``out_dir``; resume when it holds this run's checkpoint.

    Everything that can be wrong with the input is checked (:func:`plan_run`) before the first
    file is written.
    """
    return run_plan(plan_run(arch, data_spec, recipe, out_dir), progress=progress, device=device)


def run_plan(plan: RunPlan, *, progress: bool = True, device: str | None = None) -> TrainResult:
    """Train (or finish) a checked run."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    with claim_out(plan.out), torch_threads(None if cuda else plan.recipe.threads) as threads:
        return _run(plan.arch, plan.data, plan.recipe, plan.out, plan.state, plan.init_state, plan.identity,
                    device=device, threads=threads, progress=progress, data_spec=plan.data_spec)


def _run(arch: Architecture, data: DataSplit, recipe: TrainRecipe, out: Path, state: dict[str, Any] | None,
         init_state: dict | None, identity: dict[str, Any], *, device: str, threads: int,
         progress: bool, data_spec: DataSpec | None = None) -> TrainResult:
    started = time.perf_counter()
    cuda = device.startswith("cuda")
    bar = _Progress(progress)
    if cuda:
        bar.log(f"training on {device} ({torch.cuda.get_device_name(torch.device(device))}), AMP float16, "
                "channels-last")
    else:
        bar.log(f"training on cpu, {threads} thread{'s' if threads != 1 else ''}")

    session = open_session(arch, data.num_classes, data.input_size, data.train_size, recipe, device, state=state,
                           init_state=init_state, checkpoint_path=out / CHECKPOINT_NAME)
    model, generator, rows = session.model, session.generator, session.rows
    n, bs, steps = data.train_size, recipe.batch_size, session.steps
    title = run_title(arch, data)
    if state is not None:
        start = session.start_epoch
        bar.log(f"{out / CHECKPOINT_NAME}: all {recipe.epochs} epochs already trained" if start >= recipe.epochs
                else f"resuming from {out / CHECKPOINT_NAME} after epoch {start}/{recipe.epochs}")
        write_metrics(out, rows)
        write_curves(out, rows, title)

    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    images_seen, train_seconds = 0, 0.0
    try:
        for epoch in range(session.start_epoch, recipe.epochs):
            tick = time.perf_counter()
            model.train()
            bar.start(epoch + 1, recipe.epochs, steps)
            order = torch.randperm(n, generator=generator)
            loss_sum = torch.zeros((), device=device)
            lr = recipe.lr
            for step in range(steps):
                lr = session.set_lr(epoch, step)
                idx = order[step * bs:(step + 1) * bs].to(device)
                x = train_x[idx]
                if recipe.augment:
                    x = random_crop_flip(x, generator, padding=recipe.crop_padding, flip=recipe.flip)
                loss_sum += session.train_step(model, x, train_y[idx])
                if progress and (step % 10 == 9 or step == steps - 1):
                    bar.step(step + 1, float(loss_sum) / (step + 1))
            mean_loss = float(loss_sum) / steps
            trained = time.perf_counter() - tick
            session.check_finite(epoch, mean_loss)
            recalibrate_for_eval(session.scored, train_x, bs, channels_last=cuda)
            top1, top5 = evaluate_topk(session.scored, val_x, val_y, amp=cuda, channels_last=cuda)
            row = EpochMetrics(epoch=epoch + 1, train_loss=mean_loss, val_top1=top1, val_top5=top5, lr=lr,
                               images_per_s=steps * bs / trained if trained > 0 else 0.0,
                               seconds=time.perf_counter() - tick)
            rows.append(row)
            images_seen += steps * bs
            train_seconds += trained
            _trace("saving", epoch + 1)
            save_checkpoint(out / CHECKPOINT_NAME, session.checkpoint(identity, epoch + 1, software_versions()))
            _trace("checkpoint", epoch + 1)
            write_metrics(out, rows)
            write_curves(out, rows, title)
            bar.epoch_done(row, recipe.epochs)
    finally:
        bar.close()

    model_pt, model_onnx = write_model_files(session.scored, arch, data, recipe, rows, out, data_spec)
    last = rows[-1]
    return TrainResult(
        arch=arch.to_string(), arch_id=arch.arch_id, dataset=data.name, out=str(out), epochs=len(rows),
        val_top1=last.val_top1, val_top5=last.val_top5, train_loss=last.train_loss,
        model_pt=model_pt, model_onnx=model_onnx, checkpoint=str(out / CHECKPOINT_NAME),
        metrics_csv=str(out / METRICS_NAME),
        curves_png=str(out / CURVES_NAME) if (out / CURVES_NAME).exists() else None,
        seconds=time.perf_counter() - started,
        images_per_s=images_seen / train_seconds if train_seconds > 0 else 0.0,
        resumed_from=int(state["epoch"]) if state is not None else 0, device=device,
        threads=None if device.startswith("cuda") else threads, metrics=tuple(rows))


__all__ = ["BN_RECALIBRATION_IMAGES", "MODEL_NAME", "ONNX_NAME", "RunPlan", "TrainError", "TrainResult",
           "dataset_identity", "evaluate_topk", "lr_at", "make_optimizer", "param_groups", "plan_run",
           "recalibrate_for_eval", "run_plan", "schedule_steps", "train_architecture"]
