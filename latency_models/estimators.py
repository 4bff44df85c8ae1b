"""Registry of latency estimators and the one call the rest of the code uses: :func:`estimate`.

Each entry maps a model name to ``"module:loader"``; a loader takes a :class:`Target` and returns
a calibrated :class:`LatencyEstimator` for it, or ``None`` when that target has no calibration of
that kind yet. A new estimator is one module plus one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

from latency_models.base import Estimate, LatencyEstimator
from search_space import Architecture
from search_space.errors import ShufflenasError

if TYPE_CHECKING:
    from latency_models.targets import Target

ESTIMATORS: dict[str, str] = {
    "guideline": "latency_models.guideline:load",
    "lut": "latency_models.lut:load",
    "predictor": "latency_models.predictor:load",
}

#: When several estimators are calibrated and none reports a held-out error, prefer in this order.
PREFERENCE = ("predictor", "lut", "guideline")


class NoEstimatorError(ShufflenasError):
    """The target has no calibrated estimator of the requested kind."""


def _loader(name: str) -> Callable[[Target], LatencyEstimator | None]:
    if name not in ESTIMATORS:
        raise NoEstimatorError(f"unknown latency model {name!r} (known: {', '.join(ESTIMATORS)})")
    module_name, attr = ESTIMATORS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return lambda target: None
        raise
    return getattr(module, attr)


def available(target: Target) -> dict[str, LatencyEstimator]:
    """Every estimator calibrated for ``target``, by model name."""
    found = {}
    for name in ESTIMATORS:
        estimator = _loader(name)(target)
        if estimator is not None:
            found[name] = estimator
    return found


def _held_out_error(estimator: LatencyEstimator) -> float | None:
    quality = getattr(estimator, "quality", None) or {}
    value = quality.get("mape")
    return float(value) if value is not None else None


def get_estimator(target: Target, model: str = "auto") -> LatencyEstimator:
    """The named estimator for ``target``, or with ``auto`` the best calibrated one.

    "Best" is the lowest held-out MAPE an estimator reports in its ``quality``; without one,
    :data:`PREFERENCE` decides.
    """
    if model != "auto":
        estimator = _loader(model)(target)
        if estimator is None:
            raise NoEstimatorError(
                f"target {target.name!r} has no {model} calibration (run: shufflenas latency calibrate --target {target.name})"
            )
        return estimator
    found = available(target)
    if not found:
        raise NoEstimatorError(
            f"target {target.name!r} has no calibrated latency model (run: shufflenas latency calibrate --target {target.name})"
        )
    scored = [(err, name) for name, est in found.items() if (err := _held_out_error(est)) is not None]
    if scored:
        return found[min(scored)[1]]
    for name in PREFERENCE:
        if name in found:
            return found[name]
    return next(iter(found.values()))


def estimate(arch: Architecture, target: Target, model: str = "auto") -> Estimate:
    """Estimated milliseconds per batch of ``arch`` on ``target``, labelled with the model used."""
    estimator = get_estimator(target, model)
    return Estimate(median_ms=float(estimator.predict(arch)), model=estimator.name, target=target.name)
