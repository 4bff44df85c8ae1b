"""Stand-alone training of one architecture: the loop, its resumption and its final model files.

:func:`train_architecture` is one picklable unit (plain values in, a :class:`TrainResult` out):
it loads its own data from a :class:`DataSpec`, so a Ray task can call it as it is. Training
state goes to ``checkpoint.pt`` after every epoch; rerunning the same call resumes from it and
produces the same metrics from then on as a run that was never interrupted (same seed, same
data order, same augmentation draws, same thread count).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from evaluator.datasets import DataSplit, DatasetError, load_dataset
from evaluator.training.augment import random_crop_flip
from evaluator.training.checkpoint import (CHECKPOINT_NAME, CheckpointError, capture_rng, check_identity,
                                           load_checkpoint, remove_stale_temporaries, restore_rng, save_checkpoint)
from evaluator.training.ema import ModelEMA
from evaluator.training.outputs import CURVES_NAME, METRICS_NAME, EpochMetrics, write_curves, write_metrics
from evaluator.training.recipe import DataSpec, TrainRecipe
from search_space import Architecture, build_model
from search_space.errors import ShufflenasError

try:  # model.pt / model.onnx I/O; the loop itself runs without it
    from evaluator.training import weights
except ImportError:  # pragma: no cover - only while weights.py is not part of the build
    weights = None  # type: ignore[assignment]

MODEL_NAME = "model.pt"
ONNX_NAME = "model.onnx"
VAL_BATCH = 512
#: Files whose presence without a checkpoint means DIR holds some other run's results.
OUTPUT_NAMES = (MODEL_NAME, ONNX_NAME, METRICS_NAME, CURVES_NAME)


class TrainError(ShufflenasError):
    """A run cannot start or continue: unusable output directory, diverged loss, bad init weights."""


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


def lr_at(recipe: TrainRecipe, step: int, total_steps: int, warmup_steps: int) -> float:
    """Per-step learning rate: linear warm-up to ``lr``, then cosine down to ``min_lr``."""
    if warmup_steps and step < warmup_steps:
        return recipe.lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return recipe.min_lr + 0.5 * (recipe.lr - recipe.min_lr) * (1.0 + math.cos(math.pi * progress))


def schedule_steps(recipe: TrainRecipe, train_size: int) -> tuple[int, int, int]:
    """(steps per epoch, total steps, warm-up steps) of a run: one home for the single-process and DDP loops."""
    steps = recipe.steps_per_epoch(train_size)
    return steps, steps * recipe.epochs, int(round(recipe.warmup_epochs * steps))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on convolution and linear weights only, not on BatchNorm parameters or biases."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, recipe: TrainRecipe) -> torch.optim.Optimizer:
    groups = param_groups(model, recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr, betas=(recipe.momentum, 0.999))
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.momentum > 0)


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


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run with ``threads`` intra-op threads (None: torch's default); restore the caller's afterwards."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


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
        line = (f"epoch {row.epoch}/{epochs}: loss {row.train_loss:.4f}  val top-1 {row.val_top1:.4f}  "
                f"top-5 {row.val_top5:.4f}  lr {row.lr:.4g}  {row.images_per_s:.0f} img/s  {row.seconds:.1f} s")
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
        init_state = weights.load_init(recipe.init, arch, data.num_classes)
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
    _make_out(plan.out)
    with torch_threads(None if cuda else plan.recipe.threads) as threads:
        return _run(plan.arch, plan.data, plan.recipe, plan.out, plan.state, plan.init_state, plan.identity,
                    device=device, threads=threads, progress=progress, data_spec=plan.data_spec)


def _make_out(out: Path) -> None:
    """Create ``out`` and prove a file can be written there (a read-only mount fails here, not later)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise TrainError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    remove_stale_temporaries(out)


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

    torch.manual_seed(recipe.seed)
    model = build_model(arch, data.num_classes, data.input_size)
    if init_state is not None:
        try:
            model.load_state_dict(init_state, strict=True)
        except RuntimeError as exc:
            raise TrainError(f"--init {recipe.init}: weights do not fit {arch.to_string()}: "
                             f"{' '.join(str(exc).split())[:200]}") from None
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe)
    ema = ModelEMA(model, recipe.ema_decay) if recipe.ema else None
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    generator = torch.Generator().manual_seed(recipe.seed)

    n, bs = data.train_size, recipe.batch_size
    steps, total_steps, warmup_steps = schedule_steps(recipe, n)
    start_epoch, rows = 0, []
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            if state.get("scaler") and cuda:
                scaler.load_state_dict(state["scaler"])
            restore_rng(state["rng"], generator)
            rows = [EpochMetrics.from_dict(r) for r in state["metrics"]]
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {out / CHECKPOINT_NAME} does not fit this run: "
                                  f"{' '.join(str(exc).split())[:200]}") from None
        start_epoch = int(state["epoch"])
        bar.log(f"{out / CHECKPOINT_NAME}: all {recipe.epochs} epochs already trained" if start_epoch >= recipe.epochs
                else f"resuming from {out / CHECKPOINT_NAME} after epoch {start_epoch}/{recipe.epochs}")
        write_metrics(out, rows)
        write_curves(out, rows, _title(arch, data))

    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    images_seen, train_seconds = 0, 0.0
    try:
        for epoch in range(start_epoch, recipe.epochs):
            tick = time.perf_counter()
            model.train()
            bar.start(epoch + 1, recipe.epochs, steps)
            order = torch.randperm(n, generator=generator)
            loss_sum = torch.zeros((), device=device)
            lr = recipe.lr
            for step in range(steps):
                global_step = epoch * steps + step
                lr = lr_at(recipe, global_step, total_steps, warmup_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                idx = order[step * bs:(step + 1) * bs].to(device)
                x = train_x[idx]
                if recipe.augment:
                    x = random_crop_flip(x, generator, padding=recipe.crop_padding, flip=recipe.flip)
                if cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
                    loss = F.cross_entropy(model(x), train_y[idx], label_smoothing=recipe.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update(model)
                loss_sum += loss.detach().float()
                if progress and (step % 10 == 9 or step == steps - 1):
                    bar.step(step + 1, float(loss_sum) / (step + 1))
            mean_loss = float(loss_sum) / steps
            trained = time.perf_counter() - tick
            if not math.isfinite(mean_loss):
                raise TrainError(f"training diverged in epoch {epoch + 1} (loss {mean_loss}); the checkpoint after "
                                 f"epoch {epoch} is kept; lower lr")
            scored = ema.module if ema is not None else model
            recalibrate_for_eval(scored, train_x, bs, channels_last=cuda)
            top1, top5 = evaluate_topk(scored, val_x, val_y, amp=cuda, channels_last=cuda)
            row = EpochMetrics(epoch=epoch + 1, train_loss=mean_loss, val_top1=top1, val_top5=top5, lr=lr,
                               images_per_s=steps * bs / trained if trained > 0 else 0.0,
                               seconds=time.perf_counter() - tick)
            rows.append(row)
            images_seen += steps * bs
            train_seconds += trained
            _trace("saving", epoch + 1)
            save_checkpoint(out / CHECKPOINT_NAME, {
                **identity, "epoch": epoch + 1, "metrics": [r.to_dict() for r in rows],
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "scaler": scaler.state_dict() if cuda else None,
                "schedule": {"step": (epoch + 1) * steps, "total_steps": total_steps, "warmup_steps": warmup_steps},
                "rng": capture_rng(generator), "versions": _versions()})
            _trace("checkpoint", epoch + 1)
            write_metrics(out, rows)
            write_curves(out, rows, _title(arch, data))
            bar.epoch_done(row, recipe.epochs)
    finally:
        bar.close()

    final = ema.module if ema is not None else model
    model_pt, model_onnx = _write_model(final, arch, data, recipe, rows, out, data_spec)
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


def _title(arch: Architecture, data: DataSplit) -> str:
    return f"{arch.to_string()} on {data.name} ({data.input_size}x{data.input_size})"


def _versions() -> dict[str, str]:
    found = weights.current_versions() if weights is not None else {"torch": torch.__version__}
    return {str(k): str(v) for k, v in found.items()}  # plain strings: torch.__version__ is not


def _write_model(final: torch.nn.Module, arch: Architecture, data: DataSplit, recipe: TrainRecipe,
                 rows: list[EpochMetrics], out: Path, data_spec: DataSpec | None = None) -> tuple[str | None, str | None]:
    """``model.pt`` and ``model.onnx`` of the trained weights; files already there are kept as they are."""
    if weights is None:
        return None, None
    model_pt, model_onnx = out / MODEL_NAME, out / ONNX_NAME
    if model_pt.exists() and model_onnx.exists():
        return str(model_pt), str(model_onnx)
    import copy

    module = copy.deepcopy(final).float().cpu().to(memory_format=torch.contiguous_format).eval()
    last = rows[-1]
    info = weights.ModelInfo(
        arch=arch.to_string(), num_classes=data.num_classes, input_size=data.input_size, classes=tuple(data.classes),
        mean=tuple(data.mean), std=tuple(data.std), dataset=data.name,
        recipe={**recipe.to_dict(), **({"data": data_spec.to_dict()} if data_spec is not None else {})},
        metrics={"val_top1": last.val_top1, "val_top5": last.val_top5, "train_loss": last.train_loss,
                 "epochs": last.epoch},
        versions=_versions())
    if not model_pt.exists():
        weights.save_model(model_pt, module, info)
    if not model_onnx.exists():
        weights.export_onnx(module, info, model_onnx)
    return str(model_pt), str(model_onnx)


__all__ = ["BN_RECALIBRATION_IMAGES", "MODEL_NAME", "ONNX_NAME", "RunPlan", "TrainError", "TrainResult",
           "dataset_identity", "evaluate_topk", "lr_at", "make_optimizer", "param_groups", "plan_run",
           "recalibrate_for_eval", "run_plan", "schedule_steps", "train_architecture"]
