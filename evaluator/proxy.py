"""Proxy training: a few epochs of SGD on a small data set, as a cheap stand-in for accuracy.

The loop works on in-memory tensors directly (one pre-shuffled index tensor per epoch, no
DataLoader), so its images/s is within a few percent of a hand-written torch loop
(``benchmarks/proxy_throughput.py``). It never raises for a diverging run: a NaN/inf loss ends
the run with status ``"failed"`` and a reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from evaluator.datasets import DataSplit, DatasetError
from latency_models.costs.memory import require_fits
from search_space import Architecture, build_model
from search_space.errors import ShufflenasError, check_known_keys

SCHEDULES = ("cosine", "onecycle")
STATUSES = ("ok", "failed", "pruned")
VAL_BATCH = 512

#: ``on_epoch(epoch, val_acc) -> stop``: called after every epoch (0-based); True prunes the run.
EpochCallback = Callable[[int, float], bool]


class ProxyConfigError(ShufflenasError, ValueError):
    """A proxy-training option is out of range or unknown."""


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """How a candidate is trained. Every field is plain data, so a config is a TOML table."""

    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    label_smoothing: float = 0.0
    seed: int = 0
    threads: int = 1
    max_train_batches: int | None = None
    bn_recalibration_batches: int = 2
    device: str = "cpu"

    def __post_init__(self) -> None:
        def integer(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ProxyConfigError(f"proxy option {name} must be an integer >= {low}, got {value!r}")

        integer("epochs", 1)
        integer("batch_size", 1)
        integer("threads", 1)
        integer("seed", 0)
        integer("bn_recalibration_batches", 0)
        if self.max_train_batches is not None:
            integer("max_train_batches", 1)
        for name, low, strict in (("lr", 0.0, True), ("momentum", 0.0, False), ("weight_decay", 0.0, False),
                                  ("label_smoothing", 0.0, False)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or (value <= low if strict else value < low):
                raise ProxyConfigError(f"proxy option {name} must be a number {'>' if strict else '>='} {low:g}, "
                                       f"got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.momentum >= 1.0:
            raise ProxyConfigError(f"proxy option momentum must be < 1, got {self.momentum}")
        if self.label_smoothing >= 1.0:
            raise ProxyConfigError(f"proxy option label_smoothing must be < 1, got {self.label_smoothing}")
        if self.schedule not in SCHEDULES:
            raise ProxyConfigError(f"proxy option schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.device not in ("cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ProxyConfigError(f"proxy option device must be 'cpu' or 'cuda[:N]', got {self.device!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProxyConfig:
        """Build from a config table; unknown keys are named in the error."""
        check_known_keys(data, cls, "proxy option", ProxyConfigError)
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> ProxyConfig:
        return dataclasses.replace(self, **changes)

    def check(self, data: DataSplit) -> None:
        """Options that depend on the data set: the batch must fit into the training split."""
        if self.batch_size > data.train_size:
            raise DatasetError(f"proxy batch_size {self.batch_size} is larger than the {data.name} training split "
                               f"({data.train_size} images)")

    def steps_per_epoch(self, train_size: int) -> int:
        steps = max(1, train_size // self.batch_size)
        return min(steps, self.max_train_batches) if self.max_train_batches else steps


@dataclasses.dataclass(frozen=True)
class ProxyResult:
    """The outcome of one proxy run; ``accuracy`` is the last validation accuracy (0..1)."""

    status: str
    accuracy: float
    val_curve: tuple[float, ...]
    loss_curve: tuple[float, ...]
    train_time_s: float
    images_per_s: float
    epochs_run: int
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["val_curve"], data["loss_curve"] = list(self.val_curve), list(self.loss_curve)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProxyResult:
        values = dict(data)
        values["val_curve"] = tuple(values.get("val_curve", ()))
        values["loss_curve"] = tuple(values.get("loss_curve", ()))
        return cls(**values)


def make_scheduler(optimizer: torch.optim.Optimizer, config: ProxyConfig, total_steps: int):
    """Per-step learning-rate schedule: cosine annealing to 0, or one-cycle peaking at ``lr``."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(total_steps, 2))
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, images: torch.Tensor, batch: int) -> None:
    """Re-estimate BatchNorm statistics for the current weights from ``images``.

    After a short, high-learning-rate epoch the running averages lag far behind the weights and
    validation drops to chance; a few forward passes with a cumulative average fix that.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or images.shape[0] == 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():  # statistics only: no graph to build
        for start in range(0, images.shape[0], batch):
            model(images[start:start + batch])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = VAL_BATCH) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on tensors already on the model's device."""
    model.eval()
    correct = 0
    for start in range(0, x.shape[0], batch):
        logits = model(x[start:start + batch])
        correct += int((logits.argmax(1) == y[start:start + batch]).sum())
    return correct / max(1, x.shape[0])


def train_proxy(arch: Architecture, data: DataSplit, config: ProxyConfig | None = None,
                on_epoch: EpochCallback | None = None) -> ProxyResult:
    """Train ``arch`` from scratch on ``data`` for ``config.epochs``; validate after every epoch.

    Deterministic for a seed on CPU. Uses ``config.threads`` torch threads and restores the
    caller's setting afterwards. A network that cannot be trained in the available memory at this
    batch and input size is refused before anything is built (``MemoryBudgetError``).
    """
    config = config or ProxyConfig()
    config.check(data)
    require_fits(arch, input_size=data.input_size, num_classes=data.num_classes, batch=config.batch_size,
                 training=True, what="train")
    with torch_threads(config.threads):
        return _train(arch, data, config, on_epoch)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run a block with ``threads`` intra-op threads (None: unchanged), then restore the setting;
    yields the thread count in effect.

    Small CPU models scale badly with threads and collapse when the machine is shared, so
    every evaluator states its thread count explicitly.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _train(arch: Architecture, data: DataSplit, config: ProxyConfig, on_epoch: EpochCallback | None) -> ProxyResult:
    started = time.perf_counter()
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = build_model(arch, data.num_classes, data.input_size).to(device)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    n, bs = data.train_size, config.batch_size
    steps = config.steps_per_epoch(n)
    scheduler = make_scheduler(optimizer, config, steps * config.epochs)
    shuffler = torch.Generator().manual_seed(config.seed)

    val_curve: list[float] = []
    loss_curve: list[float] = []
    status, reason = "ok", None
    train_seconds, images = 0.0, 0
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(n, generator=shuffler).to(device)
        loss_sum = torch.zeros((), device=device)
        tick = time.perf_counter()
        for step in range(steps):
            idx = order[step * bs:(step + 1) * bs]
            logits = model(train_x[idx])
            loss = F.cross_entropy(logits, train_y[idx], label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach()
            images += idx.numel()
            if step % 8 == 7 and not torch.isfinite(loss_sum):
                break
        mean_loss = float(loss_sum) / steps
        train_seconds += time.perf_counter() - tick
        loss_curve.append(mean_loss)
        if not math.isfinite(mean_loss):
            status, reason = "failed", f"training loss became {'NaN' if math.isnan(mean_loss) else 'infinite'} in epoch {epoch}"
            break
        if config.bn_recalibration_batches:
            recalibrate_bn(model, train_x[order[:config.bn_recalibration_batches * bs]], bs)
        acc = evaluate(model, val_x, val_y)
        val_curve.append(acc)
        if on_epoch is not None and on_epoch(epoch, acc):
            status, reason = "pruned", f"pruned after epoch {epoch} at val accuracy {acc:.4f}"
            break
    return ProxyResult(
        status=status,
        accuracy=val_curve[-1] if val_curve else 0.0,
        val_curve=tuple(val_curve),
        loss_curve=tuple(loss_curve),
        train_time_s=time.perf_counter() - started,
        images_per_s=images / train_seconds if train_seconds > 0 else 0.0,
        epochs_run=len(loss_curve),
        reason=reason,
    )


__all__ = ["EpochCallback", "ProxyConfig", "ProxyConfigError", "ProxyResult", "SCHEDULES", "evaluate",
           "make_scheduler", "recalibrate_bn", "torch_threads", "train_proxy"]
