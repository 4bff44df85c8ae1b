"""Registry of latency estimators and the one call the rest of the code uses: :func:`estimate`.

Each entry maps a model name to ``"module:loader"``; a loader takes a :class:`Target` and returns
a calibrated :class:`LatencyEstimator` for it, or ``None`` when that target has no calibration of
that kind yet. A new estimator is one module plus one line here.

An estimator that may have to *measure* to answer (the lookup table times the blocks it lacks)
says so through ``missing_blocks(arch)``. Recording an estimate next to a measured objective must
never measure (it cost 15-21 s per new architecture), so :func:`estimate` takes
``allow_measure=False``: such an estimator is then passed over for the next one that needs no
measurement, and the returned :class:`Estimate` names the model that answered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from latency_models.estimation.base import Estimate, LatencyEstimator
from search_space import Architecture
from search_space.errors import ShufflenasError
from search_space.registry import Registry

if TYPE_CHECKING:
    from latency_models.measurement.targets import Target

class NoEstimatorError(ShufflenasError):
    """The target has no calibrated estimator of the requested kind."""


#: model name -> "module:loader"; its names are the CLI's and the config's choices (with "auto").
ESTIMATORS: Registry[Callable[[Target], LatencyEstimator | None]] = Registry("latency model", {
    "guideline": "latency_models.estimation.guideline:load",
    "lut": "latency_models.estimation.lut:load",
    "predictor": "latency_models.estimation.predictor:load",
}, error=NoEstimatorError)

#: When several estimators are calibrated and none reports a held-out error, prefer in this order.
PREFERENCE = ("predictor", "lut", "guideline")


def _loader(name: str) -> Callable[[Target], LatencyEstimator | None]:
    ESTIMATORS.check(name)
    try:
        return ESTIMATORS.get(name)
    except ModuleNotFoundError as exc:  # an optional estimator whose module is not installed
        if isinstance(ESTIMATORS[name], str) and exc.name == ESTIMATORS[name].split(":")[0]:
            return lambda target: None
        raise


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


def missing_blocks(estimator: LatencyEstimator, arch: Architecture) -> int:
    """How many measurements ``estimator`` would need before it can answer for ``arch`` (0 for most)."""
    count: Callable[[Architecture], int] | None = getattr(estimator, "missing_blocks", None)
    return int(count(arch)) if count is not None else 0


def _ranked(found: dict[str, LatencyEstimator]) -> list[LatencyEstimator]:
    """Calibrated estimators best first: lowest held-out MAPE, then :data:`PREFERENCE`."""
    order = {name: i for i, name in enumerate(PREFERENCE)}

    def key(name: str) -> tuple[int, float, int]:
        err = _held_out_error(found[name])
        return (err is None, err if err is not None else 0.0, order.get(name, len(order)))

    return [found[name] for name in sorted(found, key=key)]


def get_estimator(target: Target, model: str = "auto", *, arch: Architecture | None = None,
                  allow_measure: bool = True) -> LatencyEstimator:
    """The named estimator for ``target``, or with ``auto`` the best calibrated one.

    "Best" is the lowest held-out MAPE an estimator reports in its ``quality``; without one,
    :data:`PREFERENCE` decides. With ``arch`` and ``allow_measure=False``, an estimator that would
    have to measure for ``arch`` is passed over (``auto``) or refused (a named model).
    """
    if model != "auto":
        estimator = _loader(model)(target)
        if estimator is None:
            raise NoEstimatorError(
                f"target {target.name!r} has no {model} calibration (run: shufflenas latency calibrate --target {target.name})"
            )
        if arch is not None and not allow_measure and (n := missing_blocks(estimator, arch)):
            raise NoEstimatorError(f"the {model} model of {target.name!r} lacks {n} block(s) of {arch.arch_id} and "
                                   "measuring is not allowed here (use another model, or run: shufflenas latency "
                                   f"build-lut --target {target.name} --arch {arch})")
        return estimator
    found = available(target)
    if not found:
        raise NoEstimatorError(
            f"target {target.name!r} has no calibrated latency model (run: shufflenas latency calibrate --target {target.name})"
        )
    ranked = _ranked(found)
    if arch is not None:  # pass over a table that lacks blocks it may not (or cannot) measure
        ranked = [est for est in ranked
                  if missing_blocks(est, arch) == 0 or (allow_measure and getattr(est, "auto_extend", False))]
        if not ranked:
            raise NoEstimatorError(f"no latency model of {target.name!r} can estimate {arch.arch_id} without "
                                   f"measuring (calibrated: {', '.join(found)}; run: shufflenas latency calibrate "
                                   f"--target {target.name})")
    return ranked[0]


def estimate(arch: Architecture, target: Target, model: str = "auto", *, allow_measure: bool = True,
             notify: Callable[[str], Any] | None = None) -> Estimate:
    """Estimated milliseconds per batch of ``arch`` on ``target``, labelled with the model used.

    ``allow_measure=False`` guarantees nothing is timed (see the module docstring); otherwise
    ``notify`` (e.g. a line on stderr) hears about the measurements a model is about to make.
    """
    estimator = get_estimator(target, model, arch=arch, allow_measure=allow_measure)
    if hasattr(estimator, "missing_blocks"):
        n = missing_blocks(estimator, arch)
        if n and notify is not None:
            notify(f"measuring {n} missing blocks of the lookup table for {target.name}")
        ms = estimator.predict(arch, allow_measure=allow_measure)  # type: ignore[call-arg]
    else:
        ms = estimator.predict(arch)
    return Estimate(median_ms=float(ms), model=estimator.name, target=target.name)
