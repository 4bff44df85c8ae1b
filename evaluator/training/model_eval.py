"""Scoring a trained model on a data set's validation split: top-1, top-5 and images per second.

The data must be the model's: same class count (and class names, when both record them) and the
model's input size. Inputs are normalised with the model's recorded statistics, not the data set's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from evaluator.training.weights import ModelInfo, WeightsError

TOP_K = 5


@dataclass(frozen=True)
class Evaluation:
    """What ``shufflenas evaluate`` reports (``top5`` is top-min(5, classes))."""

    arch: str
    dataset: str
    images: int
    num_classes: int
    input_size: int
    top1: float
    top5: float
    loss: float
    images_per_s: float
    seconds: float
    batch_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_settings(info: ModelInfo) -> dict[str, Any]:
    """seed / val_fraction / limit (and root) of the data the model was trained on, so evaluation
    sees the same validation split: from ``recipe["data"]`` (a data spec), else the recipe itself."""
    recipe: Mapping[str, Any] = info.recipe
    data = recipe.get("data") if isinstance(recipe.get("data"), Mapping) else {}
    settings: dict[str, Any] = {}
    for key in ("seed", "val_fraction", "limit", "root"):
        value = data.get(key, recipe.get(key) if key != "root" else None)
        if value is not None:
            settings[key] = value
    return settings


def check_compatible(info: ModelInfo, num_classes: int, classes: tuple[str, ...], input_size: int,
                     dataset: str) -> None:
    """Refuse data the model was not built for, in one line."""
    if num_classes != info.num_classes:
        raise WeightsError(f"data set {dataset!r} has {num_classes} classes, the model predicts {info.num_classes}")
    if info.classes and classes and tuple(classes) != tuple(info.classes):
        diff = next(i for i, (a, b) in enumerate(zip(info.classes, classes)) if a != b)
        raise WeightsError(f"data set {dataset!r} names its classes differently from the model: class {diff} is "
                           f"{classes[diff]!r} in the data, {info.classes[diff]!r} in the model")
    if input_size != info.input_size:
        raise WeightsError(f"data set {dataset!r} gives {input_size} px images, the model takes {info.input_size} px")


def renormalise(x: torch.Tensor, from_mean, from_std, to_mean, to_std) -> torch.Tensor:
    """Images normalised with one set of per-channel statistics, re-normalised with another."""
    if tuple(from_mean) == tuple(to_mean) and tuple(from_std) == tuple(to_std):
        return x
    shape = (1, -1, 1, 1)
    fm, fs, tm, ts = (torch.tensor(v, dtype=x.dtype).view(shape) for v in (from_mean, from_std, to_mean, to_std))
    return (x * fs + fm - tm) / ts


def evaluate_module(module: torch.nn.Module, info: ModelInfo, x: torch.Tensor, y: torch.Tensor, *,
                    dataset: str = "", batch_size: int = 256) -> Evaluation:
    """Top-1/top-k accuracy and mean cross-entropy of ``module`` (eval mode, no grad) on ``x``, ``y``.

    ``x`` must already be normalised with the model's statistics. Images per second count the
    forward passes only, after one untimed warm-up batch.
    """
    if len(y) == 0:
        raise WeightsError(f"no validation images to evaluate in {dataset!r}")
    k = min(TOP_K, info.num_classes)
    module.eval()
    correct1 = correct_k = 0
    loss_sum = 0.0
    busy = 0.0
    with torch.no_grad():
        module(x[:batch_size])  # warm-up (allocator, kernel choice): not timed
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            t0 = time.perf_counter()
            logits = module(xb)
            busy += time.perf_counter() - t0
            top = logits.topk(k, dim=1).indices
            correct1 += int((top[:, 0] == yb).sum())
            correct_k += int((top == yb[:, None]).any(dim=1).sum())
            loss_sum += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
    n = len(y)
    return Evaluation(arch=info.arch, dataset=dataset, images=n, num_classes=info.num_classes,
                      input_size=info.input_size, top1=correct1 / n, top5=correct_k / n, loss=loss_sum / n,
                      images_per_s=n / busy if busy > 0 else float("inf"), seconds=busy, batch_size=batch_size)


def evaluate_on_split(module: torch.nn.Module, info: ModelInfo, data, *, batch_size: int = 256,
                      limit: int | None = None) -> Evaluation:
    """Score on a :class:`~evaluator.datasets.DataSplit`'s validation split (first ``limit`` images)."""
    check_compatible(info, data.num_classes, tuple(data.classes), data.input_size, data.name)
    x = renormalise(data.val_x, data.mean, data.std, info.mean, info.std)
    y = data.val_y
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return evaluate_module(module, info, x, y, dataset=data.name, batch_size=batch_size)


__all__ = ["Evaluation", "TOP_K", "check_compatible", "evaluate_module", "evaluate_on_split", "renormalise",
           "split_settings"]
