"""What the epochs of one training run share, built and resumed in one place.

The single-process loop (:mod:`evaluator.training.loop`) and every DDP rank
(:mod:`evaluator.training.distributed`) train the same way: the same model set-up, optimiser,
EMA, loss scaler, seeded data-order generator, learning-rate schedule, step and checkpoint
payload. Both open a :class:`TrainSession` here, so the two cannot drift apart and a checkpoint
written by one resumes in the other.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from evaluator.training.checkpoint import CheckpointError, capture_rng, restore_rng
from evaluator.training.ema import ModelEMA
from evaluator.training.outputs import EpochMetrics
from evaluator.training.recipe import TrainRecipe
from search_space import Architecture, build_model
from search_space.errors import ShufflenasError


class TrainError(ShufflenasError):
    """A run cannot start or continue: unusable output directory, diverged loss, bad init weights."""


def lr_at(recipe: TrainRecipe, step: int, total_steps: int, warmup_steps: int) -> float:
    """Per-step learning rate: linear warm-up to ``lr``, then cosine down to ``min_lr``."""
    if warmup_steps and step < warmup_steps:
        return recipe.lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return recipe.min_lr + 0.5 * (recipe.lr - recipe.min_lr) * (1.0 + math.cos(math.pi * progress))


def schedule_steps(recipe: TrainRecipe, train_size: int) -> tuple[int, int, int]:
    """(steps per epoch, total steps, warm-up steps) of a run."""
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


@dataclasses.dataclass(eq=False)
class TrainSession:
    """The mutable state of a run between two epochs (``model`` is the unwrapped module)."""

    recipe: TrainRecipe
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: ModelEMA | None
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    steps: int
    total_steps: int
    warmup_steps: int
    cuda: bool
    start_epoch: int = 0
    rows: list[EpochMetrics] = dataclasses.field(default_factory=list)

    @property
    def scored(self) -> torch.nn.Module:
        """The module that is validated and written out: the EMA weights when on."""
        return self.ema.module if self.ema is not None else self.model

    def set_lr(self, epoch: int, step: int) -> float:
        lr = lr_at(self.recipe, epoch * self.steps + step, self.total_steps, self.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def train_step(self, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   y: torch.Tensor) -> torch.Tensor:
        """One optimiser step on ``(x, y)`` through ``forward`` (the model or its DDP wrapper); the loss."""
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.cuda):
            loss = F.cross_entropy(forward(x), y, label_smoothing=self.recipe.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss.detach().float()

    def check_finite(self, epoch: int, mean_loss: float) -> None:
        if not math.isfinite(mean_loss):
            raise TrainError(f"training diverged in epoch {epoch + 1} (loss {mean_loss}); the checkpoint after "
                             f"epoch {epoch} is kept; lower lr")

    def checkpoint(self, identity: dict[str, Any], epoch: int, versions: dict[str, str],
                   **extra: Any) -> dict[str, Any]:
        """The checkpoint payload after ``epoch`` epochs (one format for both loops)."""
        return {
            **identity, "epoch": epoch, "metrics": [r.to_dict() for r in self.rows],
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict() if self.cuda else None,
            "schedule": {"step": epoch * self.steps, "total_steps": self.total_steps,
                         "warmup_steps": self.warmup_steps},
            "rng": capture_rng(self.generator), "versions": versions, **extra}


def open_session(arch: Architecture, num_classes: int, input_size: int, train_size: int, recipe: TrainRecipe,
                 device: str | torch.device, *, state: dict[str, Any] | None, init_state: dict | None,
                 checkpoint_path: Path) -> TrainSession:
    """Build the model (seeded), load ``--init`` weights, then resume ``state`` when given."""
    cuda = torch.device(device).type == "cuda"
    torch.manual_seed(recipe.seed)
    model = build_model(arch, num_classes, input_size)
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
    steps, total_steps, warmup_steps = schedule_steps(recipe, train_size)
    session = TrainSession(recipe, model, optimizer, ema, scaler, generator, steps, total_steps, warmup_steps, cuda)
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            if state.get("scaler") and cuda:
                scaler.load_state_dict(state["scaler"])
            restore_rng(state["rng"], generator)
            session.rows = [EpochMetrics.from_dict(r) for r in state["metrics"]]
            session.start_epoch = int(state["epoch"])
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {checkpoint_path} does not fit this run: "
                                  f"{' '.join(str(exc).split())[:200]}") from None
    return session
