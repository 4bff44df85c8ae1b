"""Scoring a candidate with inherited weights: extract, recalibrate BatchNorm, validate.

The supernet trains with batch statistics only, so a candidate's BN running statistics are
re-estimated on ``bn_batches`` training batches before it is validated (SPOS's recalibration).
The same training images are used for every candidate (the first ones of a seeded permutation),
so two candidates differ only by their weights, not by the draw of their calibration data.

The defaults (2 batches of 128, the first 500 validation images) are measured: on the fidelity
benchmark's 28 candidates two supernets rank the same from 1 to 16 BN batches and from 250 to 2,500
validation images (Kendall tau within +-0.05, docs/supernet.md), while a score costs a quarter.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from evaluator.datasets import DataSplit
from evaluator.proxy import evaluate, recalibrate_bn, torch_threads
from evaluator.supernet.weights import Supernet, SupernetError
from search_space import Architecture

BN_BATCHES = 2
BN_BATCH = 128
#: Validation images a candidate is scored on (the first of the split, which is shuffled).
VAL_SIZE = 500


@dataclasses.dataclass(frozen=True)
class SupernetScore:
    """One candidate's one-shot accuracy (validation top-1 with inherited, recalibrated weights)."""

    arch: str
    accuracy: float
    seconds: float
    bn_images: int
    val_images: int


@dataclasses.dataclass(frozen=True)
class ScoringData:
    """The tensors scoring reads: calibration images and the validation split (possibly capped)."""

    bn_x: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor

    @classmethod
    def from_split(cls, data: DataSplit, *, bn_batches: int = BN_BATCHES, bn_batch: int = BN_BATCH,
                   val_size: int | None = VAL_SIZE, seed: int = 0) -> ScoringData:
        """``val_size`` None or 0: the whole validation split."""
        order = torch.randperm(data.train_size, generator=torch.Generator().manual_seed(seed))
        n_val = min(val_size, data.val_size) if val_size else data.val_size
        return cls(data.train_x[order[:bn_batches * bn_batch]], data.val_x[:n_val], data.val_y[:n_val])


def check_fits(supernet: Supernet, data: DataSplit) -> None:
    """A supernet trained for another class count or input size cannot score this data (one line)."""
    spec = supernet.spec
    if data.num_classes != spec.num_classes or data.input_size != spec.input_size:
        raise SupernetError(f"the supernet was trained for {spec.num_classes} classes at {spec.input_size} px; "
                            f"{data.name} here has {data.num_classes} classes at {data.input_size} px")


def score(supernet: Supernet, arch: Architecture, scoring: ScoringData, *, bn_batch: int = BN_BATCH,
          threads: int | None = None) -> SupernetScore:
    """Validation top-1 of ``arch`` with the supernet's weights and recalibrated BatchNorm."""
    started = time.perf_counter()
    with torch_threads(threads):
        model = supernet.extract(arch)
        device = next(model.parameters()).device
        recalibrate_bn(model, scoring.bn_x.to(device), bn_batch)
        accuracy = evaluate(model, scoring.val_x.to(device), scoring.val_y.to(device))
    return SupernetScore(arch.to_string(), accuracy, time.perf_counter() - started, int(scoring.bn_x.shape[0]),
                         int(scoring.val_x.shape[0]))


__all__ = ["BN_BATCHES", "VAL_SIZE", "ScoringData", "SupernetScore", "check_fits", "score"]
