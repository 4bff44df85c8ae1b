"""Training a supernet: ``shufflenas supernet train``, resumable, SPOS or the sandwich rule.

:func:`train_supernet` mirrors :func:`evaluator.training.loop.train_architecture`: everything that
can be wrong is checked (:func:`plan_supernet`) before a file is written; ``checkpoint.pt`` is
written atomically after every epoch with the run's identity (space, data set, recipe); rerunning
the same call resumes from it with the same metrics from then on as a run never interrupted (same
seed: same weights, data order, augmentation and path draws). At the end ``supernet.pt``
(:mod:`evaluator.supernet.store`) is what a search reads.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from evaluator.datasets import DatasetError, DataSplit, load_dataset
from evaluator.proxy import torch_threads
from evaluator.supernet.outputs import CURVES_NAME, METRICS_NAME, write_curves, write_metrics
from evaluator.supernet.scoring import ScoringData, score
from evaluator.supernet.session import (
    LEGACY_RECIPE,
    CHECKPOINT_NAME,
    SupernetEpoch,
    SupernetSession,
    check_identity,
    load_checkpoint,
    open_session,
    save_checkpoint,
)
from evaluator.supernet.store import SUPERNET_NAME, SupernetInfo, read_info, save_supernet
from evaluator.supernet.weights import Supernet, SupernetSpec
from evaluator.training.augment import random_crop_flip
from evaluator.training.loop import _check_out, _Progress, _trace, dataset_identity
from evaluator.training.recipe import DataSpec, RecipeError, TrainRecipe
from evaluator.training.run_files import claim_out, software_versions
from evaluator.training.session import TrainError
from latency_models.artifacts import read_toml
from search_space import Architecture, SearchSpace
from search_space.errors import check_known_keys
from search_space.space import presets_in

METHODS = ("spos", "sandwich")
TABLE = "supernet_train"
#: Files whose presence without a checkpoint means DIR holds some other run's results.
OUTPUT_NAMES = (SUPERNET_NAME, METRICS_NAME, CURVES_NAME)
#: Fields checked by TrainRecipe's own rules (one source of truth for the options both share).
_SHARED = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "warmup_epochs", "min_lr",
           "label_smoothing", "augment", "crop_padding", "flip", "seed", "threads", "input_size")


@dataclasses.dataclass(frozen=True)
class SupernetRecipe:
    """Every supernet training option (TOML table ``[supernet_train]``; flags override)."""

    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.02                 # 0.1 (the default before session 10) diverges on the default space
    momentum: float = 0.9
    weight_decay: float = 5e-4       # conv and linear weights only (param_groups)
    warmup_epochs: float = 1.0
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    augment: bool = True
    crop_padding: int = 2
    flip: bool | None = None         # None: the data set's default
    # spos: one uniform path per batch; sandwich: largest + smallest + N random. Sandwich is the
    # default: it ranked better on both seeds of each (docs/supernet.md) and 5 of its epochs cost
    # less than the 20 SPOS needs here
    method: str = "sandwich"
    sandwich_paths: int = 2
    # false: the largest + N random only. The smallest trained every step makes its near neighbours
    # score above larger networks that train as well (docs/supernet.md, "The smallest path")
    sandwich_smallest: bool = True
    distill: bool = True             # sandwich only: the others learn from the largest's soft outputs
    # each random path is the one with the most FLOPs among this many uniform draws: 1 is uniform;
    # more trains larger networks more often, against the small-network bias (docs/supernet.md)
    path_draws: int = 1
    kernel_transform: bool = False   # OFA's kernel transformation matrices
    channel_ids: bool = True         # index input channels by canonical id (docs/supernet.md: ranks best)
    nested_rows: bool = False        # a unit's outputs stored by fate (implies channel_ids); measured worse
    touched_only: bool = True        # a step changes only the bank elements its paths read
    input_size: int = 16             # the search's [proxy] default
    probe_bn_batches: int = 8        # (the recipe identity of earlier checkpoints: not the scoring default)
    probe_val_size: int | None = None  # None: the whole validation split
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        try:
            checked = TrainRecipe(**{name: getattr(self, name) for name in _SHARED})
        except RecipeError as exc:
            raise RecipeError(str(exc).replace("train option", f"{TABLE} option", 1)) from None
        for name in _SHARED:  # numbers as TrainRecipe normalised them (ints given for floats)
            object.__setattr__(self, name, getattr(checked, name))
        if self.method not in METHODS:
            raise RecipeError(f"{TABLE} option method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name, low, high, optional in (("sandwich_paths", 0, 64, False), ("path_draws", 1, 64, False),
                                          ("probe_bn_batches", 1, 10000, False),
                                          ("probe_val_size", 1, None, True)):
            value = getattr(self, name)
            if optional and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low or \
                    (high is not None and value > high):
                bound = f"between {low} and {high}" if high is not None else f">= {low}"
                raise RecipeError(f"{TABLE} option {name} must be an integer {bound}, got {value!r}")
        for name in ("sandwich_smallest", "distill", "kernel_transform", "channel_ids", "nested_rows", "touched_only"):
            if not isinstance(getattr(self, name), bool):
                raise RecipeError(f"{TABLE} option {name} must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SupernetRecipe:
        check_known_keys(data, cls, f"{TABLE} option", RecipeError)
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> SupernetRecipe:
        return dataclasses.replace(self, **changes)

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the one that wrote the checkpoint (all but threads)."""
        return {k: v for k, v in self.to_dict().items() if k != "threads"}

    def steps_per_epoch(self, train_size: int) -> int:
        return max(1, train_size // self.batch_size)


def read_recipe_table(path: str | os.PathLike) -> dict[str, Any]:
    """The ``[supernet_train]`` table of ``path`` (or its top level when it has no such table; other
    tables, such as a search config's, are left to their own commands)."""
    data = read_toml(path, kind="recipe", error=RecipeError)
    if TABLE not in data:
        nested = sorted(k for k, v in data.items() if isinstance(v, dict))
        if nested:
            raise RecipeError(f"recipe file {path} has no [{TABLE}] table (it has {', '.join(nested)})")
        return data
    stray = sorted(k for k, v in data.items() if k != TABLE and not isinstance(v, (dict, list)))
    if stray:
        raise RecipeError(f"recipe file {path}: key(s) {', '.join(stray)} outside [{TABLE}] (put them in the table)")
    table = data[TABLE]
    if not isinstance(table, dict):
        raise RecipeError(f"recipe file {path}: [{TABLE}] must be a table, got {type(table).__name__}")
    return dict(table)


def probes(supernet: Supernet) -> list[tuple[str, Architecture]]:
    """The fixed candidates scored after every epoch: the smallest, the largest, the paper presets inside."""
    return [("smallest", supernet.smallest), ("largest", supernet.largest), *presets_in(supernet.space).items()]


@dataclasses.dataclass(frozen=True)
class SupernetTrainResult:
    """What a supernet run produced (``probes``: the last epoch's one-shot top-1 per probe)."""

    out: str
    supernet: str
    checksum: str
    method: str
    epochs: int
    seconds: float
    images_per_s: float
    train_loss: float
    probes: tuple[tuple[str, float], ...]
    resumed_from: int
    device: str
    threads: int | None
    checkpoint: str
    metrics_csv: str
    curves_png: str | None
    metrics: tuple[SupernetEpoch, ...] = ()

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object: everything but the per-epoch rows."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "metrics"}
        data["probes"] = dict(self.probes)
        return data


@dataclasses.dataclass(frozen=True, eq=False)
class SupernetPlan:
    """A supernet run checked and ready to start."""

    space: SearchSpace
    data: DataSplit
    recipe: SupernetRecipe
    out: Path
    identity: dict[str, Any]
    state: dict[str, Any] | None
    data_spec: DataSpec | None   # recorded in supernet.pt, so `supernet score` reloads the same split

    @property
    def spec(self) -> SupernetSpec:
        return SupernetSpec(self.space, self.data.num_classes, self.data.input_size, self.recipe.kernel_transform,
                            self.recipe.channel_ids, self.recipe.nested_rows)


def plan_supernet(space: SearchSpace, data: DataSpec | DataSplit, recipe: SupernetRecipe,
                  out_dir: str | os.PathLike, *, given: Collection[str] | None = None) -> SupernetPlan:
    """Check everything before a file is written: the data loads, the batch fits it, ``out_dir`` can
    be written and holds nothing of ours or this very run's checkpoint (another run's is refused).

    ``given``: the recipe options the caller set (the CLI's flags and config keys). Resuming, every
    other option is the checkpoint's, so a default changed since the run began does not refuse it;
    None: every option counts as given."""
    out = Path(out_dir)
    _check_out(out)
    ckpt = out / CHECKPOINT_NAME
    state = load_checkpoint(ckpt) if ckpt.exists() or ckpt.is_symlink() else None
    if state is not None and given is not None:
        recipe = inherit(recipe, dict(state["recipe"]), given)
    data_spec = data if isinstance(data, DataSpec) else None
    if data_spec is not None:
        data = load_dataset(data_spec.name, root=data_spec.root, input_size=recipe.input_size, seed=data_spec.seed,
                            val_fraction=data_spec.val_fraction, limit=data_spec.limit)
    else:
        recipe = recipe.replace(input_size=data.input_size)
    if recipe.batch_size > data.train_size:
        raise DatasetError(f"{TABLE} option batch_size {recipe.batch_size} is larger than the {data.name} training "
                           f"split ({data.train_size} images)")
    started = dict(state["recipe"]) if state is not None else None
    if recipe.flip is None:  # the data set's default, or the one the checkpoint's run started with
        flip = started.get("flip") if started is not None and isinstance(started.get("flip"), bool) else None
        recipe = recipe.replace(flip=flip if flip is not None else DataSpec(data.name).flip_default())
    spec = SupernetSpec(space, data.num_classes, data.input_size, recipe.kernel_transform, recipe.channel_ids,
                        recipe.nested_rows)
    identity = {"spec": spec.to_dict(), "dataset": dataset_identity(data), "recipe": recipe.identity()}
    if state is not None:
        check_identity(state, ckpt, identity)
    elif out.is_dir():
        present = [name for name in OUTPUT_NAMES if (out / name).exists()]
        if present:
            raise TrainError(f"--out {out} already holds {', '.join(present)} but no {CHECKPOINT_NAME}; choose "
                             "another --out (nothing there is overwritten)")
    return SupernetPlan(space, data, recipe, out, identity, state, data_spec)


def inherit(recipe: SupernetRecipe, started: Mapping[str, Any], given: Collection[str]) -> SupernetRecipe:
    """``recipe`` with every option not in ``given`` (but ``threads``) taken from the checkpoint's
    recipe ``started``; an option older checkpoints lack takes the value those runs had."""
    changes = {}
    for name in SupernetRecipe.__dataclass_fields__:
        if name in given or name == "threads":
            continue
        value = started.get(name, LEGACY_RECIPE.get(name, getattr(recipe, name)))
        if value != getattr(recipe, name):
            changes[name] = value
    try:
        return recipe.replace(**changes) if changes else recipe
    except (RecipeError, TypeError):
        return recipe  # a checkpoint this build cannot read as a recipe: check_identity names the difference


def train_supernet(space: SearchSpace, data: DataSpec | DataSplit, recipe: SupernetRecipe,
                   out_dir: str | os.PathLike, *, progress: bool = True, device: str | None = None,
                   given: Collection[str] | None = None) -> SupernetTrainResult:
    """Train a supernet over ``space`` on ``data`` into ``out_dir``; resume when it holds this run's
    checkpoint (``given``: as :func:`plan_supernet`)."""
    return run_plan(plan_supernet(space, data, recipe, out_dir, given=given), progress=progress, device=device)


def run_plan(plan: SupernetPlan, *, progress: bool = True, device: str | None = None) -> SupernetTrainResult:
    """Train (or finish) a checked run."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    with claim_out(plan.out), torch_threads(None if cuda else plan.recipe.threads) as threads:
        return _run(plan, device=device, threads=threads, progress=progress)


def _run(plan: SupernetPlan, *, device: str, threads: int, progress: bool) -> SupernetTrainResult:
    started = time.perf_counter()
    recipe, data, out = plan.recipe, plan.data, plan.out
    cuda = device.startswith("cuda")
    bar = _Progress(progress)
    if cuda:
        bar.log(f"training the supernet on {device} ({torch.cuda.get_device_name(torch.device(device))}), "
                "AMP float16, channels-last")
    else:
        bar.log(f"training the supernet on cpu, {threads} thread{'s' if threads != 1 else ''}")
    session = open_session((plan.space, data.num_classes, data.input_size), data.train_size, recipe, device,
                           state=plan.state, checkpoint_path=out / CHECKPOINT_NAME)
    title = run_title(plan)
    if plan.state is not None:
        start = session.start_epoch
        bar.log(f"{out / CHECKPOINT_NAME}: all {recipe.epochs} epochs already trained" if start >= recipe.epochs
                else f"resuming from {out / CHECKPOINT_NAME} after epoch {start}/{recipe.epochs}")
        write_metrics(out, session.rows)
        write_curves(out, session.rows, title)
    scoring = probe_data(data, recipe)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    images_seen, train_seconds = 0, 0.0
    try:
        for epoch in range(session.start_epoch, recipe.epochs):
            tick = time.perf_counter()
            bar.start(epoch + 1, recipe.epochs, session.steps)
            loss = float(run_epoch(session, session.forward, train_x, train_y, epoch,
                                   on_step=bar.step if progress else None)) / session.steps
            trained = time.perf_counter() - tick
            session.check_finite(epoch, loss)
            accuracies = score_probes(session.supernet, scoring)
            row = SupernetEpoch(epoch + 1, loss, session.optimizer.param_groups[0]["lr"],
                                session.steps * recipe.batch_size / trained if trained > 0 else 0.0,
                                time.perf_counter() - tick, accuracies)
            session.rows.append(row)
            images_seen += session.steps * recipe.batch_size
            train_seconds += trained
            _trace("saving", epoch + 1)
            save_checkpoint(out / CHECKPOINT_NAME, session.checkpoint(plan.identity, epoch + 1, software_versions()))
            _trace("checkpoint", epoch + 1)
            write_metrics(out, session.rows)
            write_curves(out, session.rows, title)
            if progress:
                bar.log(row.line(recipe.epochs))
    finally:
        bar.close()
    info = write_supernet(session.supernet, plan, session.rows)
    return result_of(plan, info, session.rows, started=started, images_per_s=images_seen / train_seconds
                     if train_seconds > 0 else 0.0, device=device, threads=None if cuda else threads)


def run_epoch(session: SupernetSession, forward: torch.nn.Module, train_x: torch.Tensor, train_y: torch.Tensor,
              epoch: int, *, rank: int = 0, world: int = 1, on_step=None) -> torch.Tensor:
    """One epoch of steps; every rank draws the same data order, augmentation and paths (the whole
    global batch), then trains on its slice ``[rank::world]``. Returns the loss summed over steps."""
    recipe, generator = session.recipe, session.generator
    session.supernet.train()
    order = torch.randperm(train_x.shape[0], generator=generator)
    bs = recipe.batch_size
    loss_sum = torch.zeros((), device=train_x.device)
    for step in range(session.steps):
        session.set_lr(epoch, step)
        idx = order[step * bs:(step + 1) * bs].to(train_x.device)
        x, y = train_x[idx], train_y[idx]
        if recipe.augment:
            x = random_crop_flip(x, generator, padding=recipe.crop_padding, flip=recipe.flip)
        loss_sum += session.train_step(forward, x[rank::world], y[rank::world], session.draw())
        if on_step is not None and (step % 10 == 9 or step == session.steps - 1):
            on_step(step + 1, float(loss_sum) / (step + 1))
    return loss_sum


def probe_data(data: DataSplit, recipe: SupernetRecipe) -> ScoringData:
    return ScoringData.from_split(data, bn_batches=recipe.probe_bn_batches, val_size=recipe.probe_val_size)


def score_probes(supernet: Supernet, scoring: ScoringData) -> tuple[tuple[str, float], ...]:
    """Each probe's one-shot top-1 (extracted, BN recalibrated, validated), in a fixed order."""
    return tuple((name, score(supernet, arch, scoring).accuracy) for name, arch in probes(supernet))


def run_title(plan: SupernetPlan) -> str:
    return f"supernet ({plan.recipe.method}) on {plan.data.name} ({plan.data.input_size}x{plan.data.input_size})"


def write_supernet(supernet: Supernet, plan: SupernetPlan, rows: list[SupernetEpoch]) -> SupernetInfo:
    """``supernet.pt`` of the finished run; one already there is kept (a search records its checksum)."""
    path = plan.out / SUPERNET_NAME
    if path.exists():
        return read_info(path)
    recipe = plan.recipe
    return save_supernet(plan.out, supernet, dataset=dataset_identity(plan.data),
                         method=recipe.method, epochs=len(rows), recipe=recipe.to_dict(),
                         data=plan.data_spec.to_dict() if plan.data_spec is not None else None,
                         probes=dict(rows[-1].probes) if rows else {}, versions=software_versions())


def result_of(plan: SupernetPlan, info: SupernetInfo, rows: list[SupernetEpoch], *, started: float,
              images_per_s: float, device: str, threads: int | None) -> SupernetTrainResult:
    out = plan.out
    last = rows[-1]
    return SupernetTrainResult(
        out=str(out), supernet=str(info.path), checksum=info.checksum, method=info.method, epochs=len(rows),
        seconds=time.perf_counter() - started, images_per_s=images_per_s, train_loss=last.train_loss,
        probes=last.probes, resumed_from=int(plan.state["epoch"]) if plan.state is not None else 0, device=device,
        threads=threads, checkpoint=str(out / CHECKPOINT_NAME), metrics_csv=str(out / METRICS_NAME),
        curves_png=str(out / CURVES_NAME) if (out / CURVES_NAME).exists() else None, metrics=tuple(rows))


__all__ = ["METHODS", "SupernetPlan", "SupernetRecipe", "SupernetTrainResult", "plan_supernet", "probes",
           "read_recipe_table", "run_plan", "train_supernet"]
