"""How a found architecture is trained, as plain data: a ``[train]`` TOML table plus flags.

A recipe and a data spec are the identity of a run: a checkpoint written under one recipe is
never resumed under another (only ``threads`` may change between runs). Options whose default
depends on the data set (``flip``) are ``None`` until :meth:`DataSpec.resolve` fills them in, so
a run records, checks and saves the value it actually trained with.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latency_models.artifacts import read_toml
from search_space.errors import ShufflenasError, check_known_keys

OPTIMIZERS = ("sgd", "adamw")

#: Native image sizes of the data sets; a run trains at this size unless ``input_size`` is set.
NATIVE_SIZES = {"digits": 8, "cifar10": 32, "cifar100": 32}
IDX_SIZE = 28
#: Image folders have no native size: they are decoded at this one by default.
DEFAULT_INPUT_SIZE = 32

#: Recipe fields that may differ between a run and its resumption (they do not change the numbers
#: when the machine and library versions stay the same, or are only a setting of this process).
RESUMABLE_CHANGES = ("threads",)


class RecipeError(ShufflenasError, ValueError):
    """A training option is unknown, of the wrong type or out of range."""


def dataset_key(name: str) -> str:
    """The data set's canonical name, as ``load_dataset`` spells it (``fashion-mnist`` -> ``fashionmnist``)."""
    return name.lower().replace("-", "").replace("_", "")


@dataclasses.dataclass(frozen=True)
class TrainRecipe:
    """Every training option; the defaults are a reasonable small-image recipe for SGD."""

    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    augment: bool = True
    crop_padding: int = 2
    flip: bool | None = None  # None: the data set's default (evaluator.datasets.FLIP_OK)
    ema: bool = False
    ema_decay: float = 0.999
    seed: int = 0
    threads: int | None = None
    input_size: int | None = None
    init: str | None = None

    def __post_init__(self) -> None:
        def integer(name: str, low: int, high: int | None = None, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < low \
                    or (high is not None and value > high):
                bound = f"between {low} and {high}" if high is not None else f">= {low}"
                raise RecipeError(f"train option {name} must be an integer {bound}, got {value!r}")

        def number(name: str, low: float, high: float | None = None, strict_low: bool = False,
                   strict_high: bool = True) -> None:
            value = getattr(self, name)
            ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            if ok:
                ok = (value > low if strict_low else value >= low) and \
                    (high is None or (value < high if strict_high else value <= high))
            if not ok:
                rng = f"{'>' if strict_low else '>='} {low:g}" + \
                    (f" and {'<' if strict_high else '<='} {high:g}" if high is not None else "")
                raise RecipeError(f"train option {name} must be a number {rng}, got {value!r}")
            object.__setattr__(self, name, float(value))

        integer("epochs", 1)
        integer("batch_size", 1)
        integer("crop_padding", 0, 8)
        integer("seed", 0)
        integer("threads", 1, optional=True)
        integer("input_size", 8, 1024, optional=True)
        number("lr", 0.0, strict_low=True)
        number("momentum", 0.0, 1.0)
        number("weight_decay", 0.0)
        number("warmup_epochs", 0.0)
        number("min_lr", 0.0)
        number("label_smoothing", 0.0, 1.0)
        number("ema_decay", 0.0, 1.0, strict_low=True)
        for name in ("augment", "flip", "ema"):
            if not isinstance(getattr(self, name), bool) and not (name == "flip" and self.flip is None):
                raise RecipeError(f"train option {name} must be true or false, got {getattr(self, name)!r}")
        if self.optimizer not in OPTIMIZERS:
            raise RecipeError(f"train option optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.min_lr > self.lr:
            raise RecipeError(f"train option min_lr ({self.min_lr:g}) must not exceed lr ({self.lr:g})")
        if self.warmup_epochs > self.epochs:
            raise RecipeError(f"train option warmup_epochs ({self.warmup_epochs:g}) must not exceed epochs "
                              f"({self.epochs})")
        if self.init is not None and (not isinstance(self.init, str) or not self.init.strip()):
            raise RecipeError(f"train option init must be a string such as 'torchvision:FILE', got {self.init!r}")

    # -- conversions --------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainRecipe:
        """Build from a ``[train]`` table; unknown keys are named in the error."""
        check_known_keys(data, cls, "train option", RecipeError)
        return cls(**dict(data))

    @classmethod
    def from_toml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainRecipe:
        """The ``[train]`` table of a TOML file (a file of bare keys works too), then ``overrides``."""
        return cls.from_dict({**read_train_table(path), **dict(overrides or {})})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainRecipe:
        return dataclasses.replace(self, **changes)

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run that wrote the checkpoint."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_CHANGES}

    def steps_per_epoch(self, train_size: int) -> int:
        """Full batches per epoch (the last partial batch is dropped, as BatchNorm prefers)."""
        return max(1, train_size // self.batch_size)


def read_train_table(path: str | Path) -> dict[str, Any]:
    """The ``[train]`` table of ``path`` (or its top level when it has no such table)."""
    path = Path(path)
    data = read_toml(path, kind="recipe", error=RecipeError)
    if "train" in data:
        stray = sorted(k for k, v in data.items() if k != "train" and not isinstance(v, dict))
        if stray:
            raise RecipeError(f"recipe file {path}: key(s) {', '.join(stray)} outside [train] (put them in the "
                              "[train] table)")
    table = data.get("train", data)
    if not isinstance(table, dict):
        raise RecipeError(f"recipe file {path}: [train] must be a table, got {type(table).__name__}")
    nested = sorted(k for k, v in table.items() if isinstance(v, dict))
    if nested:
        raise RecipeError(f"recipe file {path}: unknown table(s) {', '.join(nested)} (only [train] is read)")
    return dict(table)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Which data a run trains on: everything :func:`evaluator.datasets.load_dataset` needs.

    A picklable value, so a Ray task can load the data itself instead of shipping tensors.
    """

    name: str
    root: str | None = None
    limit: int | None = None
    seed: int = 0
    val_fraction: float = 0.2

    def input_size(self, recipe: TrainRecipe) -> int:
        """The recipe's input size, else the data set's native one."""
        if recipe.input_size is not None:
            return recipe.input_size
        key = dataset_key(self.name)
        if key in NATIVE_SIZES:
            return NATIVE_SIZES[key]
        try:  # every IDX set (MNIST and its relatives) is 28x28
            from evaluator.datasets_idx import IDX_DATASETS
        except ImportError:  # pragma: no cover - a build without IDX sets
            return DEFAULT_INPUT_SIZE
        return IDX_SIZE if key in {dataset_key(name) for name in IDX_DATASETS} else DEFAULT_INPUT_SIZE

    def flip_default(self) -> bool:
        """Whether this data set is flipped when the recipe does not say: digits and letters are not."""
        from evaluator.datasets import flip_ok

        return flip_ok(self.name)

    def resolve(self, recipe: TrainRecipe, started: Mapping[str, Any] | None = None) -> TrainRecipe:
        """``recipe`` with its data-set defaults filled in (``flip``).

        ``started`` is the recipe recorded in the checkpoint being resumed: a run keeps the flip it
        started with unless the recipe names one (checkpoints written before the default depended
        on the data set recorded ``flip = true`` for every data set, and still resume).
        """
        if recipe.flip is not None:
            return recipe
        if started is not None and isinstance(started.get("flip"), bool):
            return recipe.replace(flip=started["flip"])
        return recipe.replace(flip=self.flip_default())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


__all__ = ["DEFAULT_INPUT_SIZE", "DataSpec", "NATIVE_SIZES", "OPTIMIZERS", "RecipeError", "TrainRecipe",
           "dataset_key", "read_train_table"]
