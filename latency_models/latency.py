"""One entry point for an architecture's latency on a target: measured here, or estimated.

:func:`latency_for` decides, from the target's kind and whether this process can time it, between
:func:`latency_models.measurement.measure.measure` and
:func:`latency_models.estimation.estimators.estimate`, so the search, the studies and the CLI
cannot disagree on the rule. ``mode`` says what the caller accepts:

- ``"auto"`` (the search's rule): a measure target is measured here, an estimate-only target is
  estimated; a measure target this process cannot time (missing runtime or device, a remote
  board) is refused with one line (callers that reach Ray send remote targets to
  :mod:`evaluator.remote_latency` before asking here);
- ``"measure"``: measured or refused (``shufflenas latency measure``);
- ``"estimate"``: estimated, even on a measure target with a calibrated model (``latency predict``);
- ``"fallback"``: like ``auto``, but a measure target that cannot be timed here is estimated when
  it has a calibrated model (``study flops-vs-speed``). An estimate is always labelled as one.

``allow_measure=False`` guarantees nothing is timed: a measure target answers from the measurement
cache, else with an estimate that needs no measurement; an estimator that would have to measure
(a lookup table lacking blocks) is passed over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from latency_models.estimation.base import Estimate
from latency_models.measurement.backends.base import MeasurementError
from search_space import Architecture
from search_space.errors import ShufflenasError

if TYPE_CHECKING:
    from latency_models.measurement.measure import Measurement
    from latency_models.measurement.measure_cache import MeasurementCache
    from latency_models.measurement.targets import Target

Mode = Literal["auto", "measure", "estimate", "fallback"]
MODES = ("auto", "measure", "estimate", "fallback")


class LatencyError(ShufflenasError):
    """No latency can be had for the target in the mode asked (or the mode itself is unknown)."""


@dataclasses.dataclass(frozen=True)
class LatencyPlan:
    """How latencies on one target are obtained: ``measured`` here, or estimated (``reason`` says why).

    ``estimator`` is the model an estimate plan resolved for the target, once, before any
    architecture is seen; every :meth:`latency` call of the plan uses that model, so a study's
    column has one source (:func:`latency_for` instead picks the best model per architecture).
    """

    target: Target
    measured: bool
    estimate_model: str = "auto"
    estimator: Any = None
    reason: str | None = None
    mode: str = "auto"

    @property
    def source(self) -> str:
        """``"measured"`` or ``"estimate:<model>"`` (the model resolved for the target)."""
        return "measured" if self.measured else f"estimate:{getattr(self.estimator, 'name', self.estimate_model)}"

    def latency(self, arch: Architecture, *, allow_measure: bool = True,
                cache: MeasurementCache | bool | None = None, budget_s: float | None = None,
                num_classes: int = 1000, notify: Callable[[str], Any] | None = None) -> Measurement | Estimate:
        """``arch``'s latency on the plan's target (see :func:`latency_for` for the arguments)."""
        return _obtain(self.target, self.measured, arch, allow_measure=allow_measure, cache=cache, budget_s=budget_s,
                       estimate_model=getattr(self.estimator, "name", self.estimate_model), num_classes=num_classes,
                       notify=notify,
                       estimate_ok=self.mode != "measure")


def _not_measurable(target: Target) -> str | None:
    """Why this process cannot time ``target`` (one line), or ``None`` when it can."""
    from latency_models.measurement.measure import check_measurable

    try:
        check_measurable(target)
    except MeasurementError as exc:
        return str(exc)
    return None


def _decide(target: Target, mode: str) -> tuple[bool, str | None]:
    """(measure here?, why not): raises when ``mode`` accepts no estimate and the target cannot be timed."""
    if mode not in MODES:
        raise LatencyError(f"unknown latency mode {mode!r} (known: {', '.join(MODES)})")
    if mode == "estimate":
        return False, "an estimate was asked for"
    if target.is_estimate and mode != "measure":
        return False, f"{target.name} is estimate-only"
    reason = _not_measurable(target)
    if reason is None:
        return True, None
    if mode == "measure" or (mode == "auto" and not target.is_estimate):
        raise MeasurementError(reason)
    return False, reason


def _no_model(target: Target, reason: str | None, model: str) -> LatencyError:
    """The error of a fallback that found no model: why it could not measure, and that nothing estimates."""
    kind = "" if model == "auto" else f" ({model})"
    return LatencyError(f"target {target.name!r} cannot be measured here ({reason}) and has no calibrated "
                        f"latency model{kind}")


def plan_latency(target: Target | str, *, mode: str = "auto", estimate_model: str = "auto",
                 targets_file: str | Path | None = None) -> LatencyPlan:
    """Decide once per target (a study's columns, a search's targets) and check an estimator exists."""
    from latency_models.estimation.estimators import NoEstimatorError, get_estimator
    from latency_models.measurement.targets import get_target

    target = get_target(target, targets_file)
    measured, reason = _decide(target, mode)
    if measured:
        return LatencyPlan(target, True, estimate_model, mode=mode)
    try:
        estimator = get_estimator(target, estimate_model)
    except NoEstimatorError as exc:
        raise (_no_model(target, reason, estimate_model) if mode == "fallback" else exc) from None
    return LatencyPlan(target, False, estimate_model, estimator, reason, mode)


def latency_for(arch: Architecture, target: Target | str, *, allow_measure: bool = True,
                cache: MeasurementCache | bool | None = None, budget_s: float | None = None,
                estimate_model: str = "auto", mode: str = "auto", num_classes: int = 1000,
                targets_file: str | Path | None = None,
                notify: Callable[[str], Any] | None = None) -> Measurement | Estimate:
    """``arch``'s latency on ``target``: a :class:`Measurement` when measured, else a labelled :class:`Estimate`.

    ``cache``, ``budget_s`` and ``num_classes`` go to the measurement (``cache=False``: neither
    read nor written); ``estimate_model`` names the estimator (``"auto"``: the best calibrated one
    for ``arch``); ``notify`` hears about measurements an estimator is about to make. See the
    module docstring for ``mode`` and ``allow_measure``.
    """
    from latency_models.measurement.targets import get_target

    target = get_target(target, targets_file)
    measured, reason = _decide(target, mode)
    try:
        return _obtain(target, measured, arch, allow_measure=allow_measure, cache=cache, budget_s=budget_s,
                       estimate_model=estimate_model, num_classes=num_classes, notify=notify,
                       estimate_ok=mode != "measure")
    except ShufflenasError as exc:
        from latency_models.estimation.estimators import NoEstimatorError

        if mode == "fallback" and not measured and isinstance(exc, NoEstimatorError):
            raise _no_model(target, reason, estimate_model) from None
        raise


def _obtain(target: Target, measured: bool, arch: Architecture, *, allow_measure: bool,
            cache: MeasurementCache | bool | None, budget_s: float | None, estimate_model: str, num_classes: int,
            notify: Callable[[str], Any] | None, estimate_ok: bool) -> Measurement | Estimate:
    from latency_models.estimation.estimators import estimate

    if measured:
        from latency_models.measurement.measure import lookup, measure, resolve_cache

        if allow_measure:
            return measure(arch, target, cache=cache, budget_s=budget_s, num_classes=num_classes)
        store = resolve_cache(cache)
        hit = lookup(arch, target, store, num_classes) if store is not None else None
        if hit is not None:
            return hit
        if not estimate_ok:
            raise MeasurementError(f"{arch.arch_id} on {target.name} is not in the measurement cache, and measuring "
                                   "is not allowed here")
    return estimate(arch, target, estimate_model, allow_measure=allow_measure, notify=notify)
