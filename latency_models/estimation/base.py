"""The estimator protocol: anything that predicts a target's latency for an architecture.

A new estimator is one new module with a class satisfying :class:`LatencyEstimator` and one line in
``latency_models.estimation.estimators.ESTIMATORS``.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

from search_space import Architecture


@runtime_checkable
class LatencyEstimator(Protocol):
    """Predicts milliseconds per batch (the target's batch size and deploy input size)."""

    name: str    # "guideline", "lut", "predictor", ...
    target: str  # the target it was calibrated for

    def predict(self, arch: Architecture) -> float: ...


@dataclasses.dataclass(frozen=True)
class Estimate:
    """An estimated latency; ``model`` says which estimator produced it (always labelled)."""

    median_ms: float
    model: str
    target: str
    estimated: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
