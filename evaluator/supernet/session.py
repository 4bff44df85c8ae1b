"""What the epochs of one supernet training share, for the single-process loop and every DDP rank.

Like :mod:`evaluator.training.session` for one architecture: the bank, optimiser, loss scaler,
seeded data-order generator, the seeded path generator (a ``random.Random``: every rank draws the
same paths), the learning-rate schedule, one training step and the checkpoint payload live here,
so the two loops cannot drift apart and a checkpoint of one resumes in the other.

A step runs every path of the batch in one forward (:class:`PathsForward`) and one backward, so
the sandwich rule's gradients are summed, and so DDP (which wants one forward per backward) sees
one step. With ``touched_only`` the step leaves every bank element no path of the batch touched
exactly as it was, optimiser state included (weight decay and momentum would otherwise move the
unused channels of a sliced tensor), as if each candidate had weights of its own (SPOS).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from evaluator.supernet.weights import Supernet
from evaluator.training.checkpoint import CHECKPOINT_FORMAT as TRAINING_FORMAT
from evaluator.training.checkpoint import CheckpointError, capture_rng, load_tagged, restore_rng, save_tagged
from evaluator.training.session import TrainError, lr_at, make_optimizer, schedule_steps
from search_space import Architecture

CHECKPOINT_FORMAT = "shufflenas-supernet-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
#: Per-element optimiser state (SGD's momentum, AdamW's moments) that ``touched_only`` puts back.
_STATE_TENSORS = ("momentum_buffer", "exp_avg", "exp_avg_sq")
#: what a supernet checkpoint must hold
REQUIRED = ("spec", "dataset", "recipe", "epoch", "metrics", "supernet", "optimizer", "rng", "paths")


@dataclasses.dataclass(frozen=True)
class SupernetEpoch:
    """One row of ``metrics.csv``: training numbers plus the validation top-1 of each fixed probe."""

    epoch: int
    train_loss: float
    lr: float
    images_per_s: float
    seconds: float
    probes: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "probes": [[n, a] for n, a in self.probes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupernetEpoch:
        return cls(int(data["epoch"]), float(data["train_loss"]), float(data["lr"]), float(data["images_per_s"]),
                   float(data["seconds"]), tuple((str(n), float(a)) for n, a in data["probes"]))

    def line(self, epochs: int) -> str:
        probes = "  ".join(f"{n} {a:.4f}" for n, a in self.probes)
        return (f"epoch {self.epoch}/{epochs}: loss {self.train_loss:.4f}  lr {self.lr:.4g}  val top-1 {probes}  "
                f"{self.images_per_s:.0f} img/s  {self.seconds:.1f} s")


class PathsForward(nn.Module):
    """``forward(x, archs)``: the logits of every path (compact strings, which DDP passes through
    untouched) on the shared bank, in one call."""

    def __init__(self, supernet: Supernet) -> None:
        super().__init__()
        self.supernet = supernet
        self._archs: dict[str, Architecture] = {}

    def forward(self, x: torch.Tensor, archs: Sequence[str]) -> list[torch.Tensor]:
        out = []
        for text in archs:
            arch = self._archs.get(text)
            if arch is None:
                arch = self._archs.setdefault(text, Architecture.from_string(text))
            out.append(self.supernet(x, arch))
        return out


def path_loss(outputs: Sequence[torch.Tensor], y: torch.Tensor, *, label_smoothing: float,
              distill: bool) -> torch.Tensor:
    """The summed loss of a step's paths. With ``distill`` the first path (the largest) learns from
    the labels and the others from its detached soft outputs (KL; BigNAS / OFA in-place distillation)."""
    first = F.cross_entropy(outputs[0].float(), y, label_smoothing=label_smoothing)
    if not distill or len(outputs) == 1:
        return first + sum(F.cross_entropy(o.float(), y, label_smoothing=label_smoothing) for o in outputs[1:])
    soft = F.softmax(outputs[0].detach().float(), dim=1)
    return first + sum(F.kl_div(F.log_softmax(o.float(), dim=1), soft, reduction="batchmean") for o in outputs[1:])


def _regions(supernet: Supernet, arch: Architecture) -> dict[str, tuple[slice | torch.Tensor, ...]]:
    """Bank key -> the part of it ``arch`` reads, per dim a slice or (channel ids) an index set; as ``_cut``."""
    return supernet.regions(arch)


def _whole(region: tuple[slice | torch.Tensor, ...], shape: torch.Size) -> bool:
    """Whether a region reads every element (an index set never repeats a column)."""
    return all((r.stop - r.start if isinstance(r, slice) else r.numel()) == n for r, n in zip(region, shape))


def _mark(mask: torch.Tensor, region: tuple[slice | torch.Tensor, ...]) -> None:
    """Set ``mask`` over ``region`` (several index sets combine as their outer product)."""
    sets = [d for d, r in enumerate(region) if not isinstance(r, slice)]
    index = list(region)
    for i, d in enumerate(sets):
        if len(sets) > 1:
            shape = [1] * len(sets)
            shape[i] = -1
            index[d] = region[d].view(shape)
        index[d] = index[d].to(mask.device)
    mask[tuple(index)] = True


@dataclasses.dataclass(eq=False)
class SupernetSession:
    """The mutable state of a supernet run between two epochs (``supernet`` is the unwrapped module)."""

    recipe: Any                     # evaluator.supernet.training.SupernetRecipe
    supernet: Supernet
    forward: PathsForward
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator      # data order and augmentation
    paths: random.Random            # path draws
    steps: int
    total_steps: int
    warmup_steps: int
    cuda: bool
    start_epoch: int = 0
    rows: list[SupernetEpoch] = dataclasses.field(default_factory=list)
    _region_cache: dict[Architecture, dict[str, tuple[slice | torch.Tensor, ...]]] = dataclasses.field(
        default_factory=dict)

    def set_lr(self, epoch: int, step: int) -> float:
        lr = lr_at(self.recipe, epoch * self.steps + step, self.total_steps, self.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def draw(self) -> list[Architecture]:
        """The paths of one batch: one random draw (SPOS), or the largest, the smallest (unless
        ``sandwich_smallest`` is off) and ``sandwich_paths`` random draws (the sandwich rule). A random
        draw is uniform, or the largest of ``path_draws`` uniform ones."""
        draws = self.recipe.path_draws
        if self.recipe.method == "spos":
            return [self.supernet.sample(self.paths, draws)]
        smallest = [self.supernet.smallest] if self.recipe.sandwich_smallest else []
        return [self.supernet.largest, *smallest,
                *(self.supernet.sample(self.paths, draws) for _ in range(self.recipe.sandwich_paths))]

    def train_step(self, forward: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   archs: Sequence[Architecture]) -> torch.Tensor:
        """One optimiser step of ``archs`` on ``(x, y)`` through ``forward`` (:class:`PathsForward` or
        its DDP wrapper); the summed loss."""
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.cuda):
            outputs = forward(x, tuple(a.to_string() for a in archs))
        loss = path_loss(outputs, y, label_smoothing=self.recipe.label_smoothing,
                         distill=self.recipe.distill and self.recipe.method == "sandwich")
        self.scaler.scale(loss).backward()
        kept = self._keep_untouched(archs) if self.recipe.touched_only else []
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            for param, mask, old_param, old_state in kept:
                param.copy_(torch.where(mask, param, old_param))
                state = self.optimizer.state.get(param, {})
                for name in _STATE_TENSORS:
                    tensor = state.get(name)
                    if not isinstance(tensor, torch.Tensor) or tensor.shape != param.shape:
                        continue
                    if name in old_state:
                        tensor.copy_(torch.where(mask, tensor, old_state[name]))
                    else:  # created by this step: its initial zeros where no path read
                        tensor.masked_fill_(~mask, 0)
        return loss.detach().float()

    def _keep_untouched(self, archs: Sequence[Architecture]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                           dict]]:
        """For each bank tensor the paths read only partly: the mask of what they read, and copies
        of the tensor and its optimiser state, to put back outside the mask after the step."""
        regions: dict[str, list[tuple[slice | torch.Tensor, ...]]] = {}
        for arch in archs:
            cached = self._region_cache.get(arch)
            if cached is None:
                cached = self._region_cache.setdefault(arch, _regions(self.supernet, arch))
                if len(self._region_cache) > 4096:
                    self._region_cache.pop(next(iter(self._region_cache)))
            for key, region in cached.items():
                regions.setdefault(key, []).append(region)
        kept = []
        for key, parts in regions.items():
            param = self.supernet.bank[key]
            if param.grad is None or any(_whole(r, param.shape) for r in parts):
                continue  # untouched (the optimiser skips it) or read whole
            mask = torch.zeros(param.shape, dtype=torch.bool, device=param.device)
            for region in parts:
                _mark(mask, region)
            state = self.optimizer.state.get(param, {})
            old_state = {name: state[name].clone() for name in _STATE_TENSORS
                         if isinstance(state.get(name), torch.Tensor) and state[name].shape == param.shape}
            kept.append((param, mask, param.detach().clone(), old_state))
        return kept

    def check_finite(self, epoch: int, mean_loss: float) -> None:
        if not math.isfinite(mean_loss):
            raise TrainError(f"supernet training diverged in epoch {epoch + 1} (loss {mean_loss}); the checkpoint "
                             f"after epoch {epoch} is kept; lower lr")

    def checkpoint(self, identity: dict[str, Any], epoch: int, versions: dict[str, str], **extra: Any) -> dict:
        """The checkpoint payload after ``epoch`` epochs (one format for both loops)."""
        version, internal, gauss = self.paths.getstate()
        identity = {**identity, "spec": self.supernet.spec.to_dict()}  # its channel_ids, too
        return {**identity, "epoch": epoch, "metrics": [r.to_dict() for r in self.rows],
                "supernet": self.supernet.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.cuda else None,
                "schedule": {"step": epoch * self.steps, "total_steps": self.total_steps,
                             "warmup_steps": self.warmup_steps},
                "rng": capture_rng(self.generator), "paths": [version, list(internal), gauss],
                "versions": versions, **extra}


def open_session(supernet_args: tuple, train_size: int, recipe: Any, device: str | torch.device, *,
                 state: dict[str, Any] | None, checkpoint_path: Path) -> SupernetSession:
    """Build the bank (seeded), the optimiser and generators; then resume ``state`` when given.

    ``supernet_args``: (space, num_classes, input_size) of the run.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    torch.manual_seed(recipe.seed)
    space, num_classes, input_size = supernet_args
    spec = state.get("spec") if state is not None else None
    channel_ids = bool(spec.get("channel_ids", False)) if isinstance(spec, dict) else bool(recipe.channel_ids)
    nested_rows = bool(spec.get("nested_rows", False)) if isinstance(spec, dict) else bool(recipe.nested_rows)
    supernet = Supernet(space, num_classes, input_size, kernel_transform=recipe.kernel_transform,
                        channel_ids=channel_ids, nested_rows=nested_rows).to(device)
    if cuda:
        supernet = supernet.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(supernet, recipe)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    generator = torch.Generator().manual_seed(recipe.seed)
    paths = random.Random(recipe.seed)
    steps, total_steps, warmup_steps = schedule_steps(recipe, train_size)
    session = SupernetSession(recipe, supernet, PathsForward(supernet), optimizer, scaler, generator, paths, steps,
                              total_steps, warmup_steps, cuda)
    if state is not None:
        try:
            supernet.load_state_dict(state["supernet"], strict=True)
            optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler") and cuda:
                scaler.load_state_dict(state["scaler"])
            restore_rng(state["rng"], generator)
            version, internal, gauss = state["paths"]
            paths.setstate((int(version), tuple(int(v) for v in internal), gauss))
            session.rows = [SupernetEpoch.from_dict(r) for r in state["metrics"]]
            session.start_epoch = int(state["epoch"])
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {checkpoint_path} does not fit this run: "
                                  f"{' '.join(str(exc).split())[:200]}") from None
    return session


# -- the checkpoint file --------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with the supernet format tag, atomically (a kill leaves the old file or the new one)."""
    return save_tagged(path, state, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a supernet checkpoint; anything unreadable or foreign is a one-line :class:`CheckpointError`."""
    return load_tagged(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, REQUIRED, "supernet checkpoint",
                       foreign={TRAINING_FORMAT: "is the checkpoint of a `shufflenas train` run, not of a supernet; "
                                              "choose another --out"})


#: recipe options a checkpoint written before they existed lacks, with the value its run had
LEGACY_RECIPE = {"channel_ids": False, "nested_rows": False, "sandwich_smallest": True, "path_draws": 1}


def check_identity(data: dict[str, Any], path: Path, identity: dict[str, Any]) -> None:
    """Refuse a checkpoint written by another run; name the first thing that differs."""
    ours_spec, theirs_spec = identity["spec"], dict(data["spec"])
    pairs = [("space", k, dict(theirs_spec.get("space") or {}).get(k), v) for k, v in ours_spec["space"].items()]
    # a checkpoint written before channel ids were an option has no such key: it was positional
    pairs += [("supernet", k, theirs_spec.get(k, False if k == "channel_ids" else None), v)
              for k, v in ours_spec.items() if k != "space"]
    for kind, name in (("data set", "dataset"), ("recipe option", "recipe")):
        theirs, ours = dict(data[name]), identity[name]
        if name == "recipe":
            theirs = {**LEGACY_RECIPE, **theirs}
        pairs += [(kind, k, theirs.get(k), ours.get(k)) for k in sorted(set(theirs) | set(ours))]
    for kind, key, theirs, ours in pairs:
        if theirs != ours:
            raise CheckpointError(f"{path} belongs to another run ({kind} {key}: checkpoint has {theirs!r}, this "
                                  f"run has {ours!r}); choose another --out, or remove that directory to start over")


__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "LEGACY_RECIPE", "PathsForward", "SupernetEpoch", "SupernetSession",
           "check_identity", "load_checkpoint", "open_session", "path_loss", "save_checkpoint"]
