"""Measure an architecture's latency on a target: export once, time with the target's backend, cache.

The runtime-specific part (how a model is timed, which versions a number depends on, whether the
runtime is present) is the target's backend (:mod:`latency_models.measurement.backends`: one file
per runtime, ``onnxruntime`` and ``torch`` built in). This module checks the target, keys and reads
the cache, hands the backend a :class:`ModelSource` (the export and the eager module, each made on
demand) and turns the :class:`RunStats` it returns into a :class:`Measurement`.

Results are cached per (arch id, target, input size, batch, backend, software versions, CPU/GPU
model) in a :class:`MeasurementCache`, so nothing is measured twice on the same software stack.
Estimate-only targets are refused here: they have no hardware to time.

Reference-normalised targets (``reference = "1.0x"``, the default for ``local-cpu``) report every
measurement at the reference network's anchored speed: see :mod:`latency_models.measurement.reference`.

A measurement records the niceness and load average of the process that timed it, and whether its
spread was stable (:func:`latency_models.measurement.device_runtime.unstable_reason`); a disturbed run is
repeated, and one that stays disturbed is returned with ``stable=False`` and never cached.

A measurement that will be cached is exported in memory and any export already on disk is deleted
once the result is stored; an uncached one (``cache=False``) keeps its export for next time
(:mod:`latency_models.measurement.export_cache`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from latency_models.measurement import device_runtime, reference
from latency_models.measurement.backends import MeasurementError, ModelSource, RunStats, get_backend
from latency_models.measurement.backends.base import capability
from latency_models.measurement.export_cache import NUM_CLASSES, drop_export, onnx_bytes, onnx_path
from latency_models.measurement.measure_cache import MeasurementCache
from latency_models.measurement.onnx_export import export_module_bytes
from latency_models.measurement.targets import Target, get_target
from search_space import Architecture

__all__ = ["DEFAULT_BUDGET_S", "NUM_CLASSES", "Measurement", "MeasurementCache", "MeasurementError", "cache_fields",
           "check_measurable", "drop_export", "from_device_result", "lookup", "measure", "measure_module",
           "onnx_bytes", "onnx_path", "reference_anchor", "resolve_cache", "software_versions"]

DEFAULT_BUDGET_S = device_runtime.DEFAULT_BUDGET_S


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One measured latency: milliseconds per batch of ``batch`` images at ``input_size``.

    ``arch`` is the compact architecture string (``None`` for a non-Architecture module, whose
    caller-chosen key is in ``arch_id``). ``versions`` records the software and hardware the number
    belongs to; ``cached`` says whether it came from the cache. ``stable`` is False when every
    attempt's spread said the device was disturbed (``unstable`` says how); ``niceness`` and
    ``load_avg`` are the measuring process's niceness and its node's load (``None`` in entries
    cached before they were recorded).
    """

    arch: str | None
    arch_id: str
    target: str
    backend: str
    device: str
    input_size: int
    batch: int
    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    cv: float
    runs: int
    versions: dict[str, Any]
    cached: bool = False
    raw_median_ms: float | None = None
    slowdown: float | None = None
    reference: str | None = None
    attempts: int = 1
    anchor_ms: float | None = None
    stable: bool = True
    unstable: str | None = None
    niceness: int | None = None
    load_avg: list[float] | None = None

    def __hash__(self) -> int:
        return hash((self.arch_id, self.target, self.input_size, self.batch, self.median_ms, self.runs))

    @property
    def per_image_ms(self) -> float:
        return self.median_ms / self.batch

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["measured"] = True  # as opposed to an Estimate
        data["per_image_ms"] = self.per_image_ms
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        """A measurement from :meth:`to_dict`'s output (a cache record); unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_stats(cls, stats: RunStats, *, arch: str | None, arch_id: str, target: Target, input_size: int,
                   batch: int, versions: Mapping[str, Any]) -> Measurement:
        """A fresh measurement of ``stats`` on ``target``; the run's own versions extend ``versions``."""
        return cls(arch=arch, arch_id=arch_id, target=target.name, backend=str(target.backend), device=target.device,
                   input_size=input_size, batch=batch, versions={**versions, **stats.versions},
                   **stats.measurement_fields())

    @property
    def stats(self) -> RunStats:
        """The timing statistics alone (what a backend returned, after any rescaling to a new anchor)."""
        names = {f.name for f in dataclasses.fields(RunStats)} - {"versions"}
        return RunStats(**{name: getattr(self, name) for name in names})


def software_versions(target: Target) -> dict[str, Any]:
    """The software and hardware a local measurement on ``target`` depends on (part of the cache key)."""
    if target.is_remote:
        return {"remote": dict(sorted(target.resources.items()))}
    return dict(get_backend(str(target.backend)).versions(target))


def cache_fields(key: str, target: Target, *, input_size: int, batch: int,
                 versions: Mapping[str, Any] | None = None, num_classes: int | None = NUM_CLASSES) -> dict[str, Any]:
    """The cache key of a measurement (see :class:`MeasurementCache`); ``num_classes`` is ``None``
    for :func:`measure_module`, whose caller-chosen key already names the network."""
    return {"key": key, "target": target.name, "input_size": input_size, "batch": batch, "backend": target.backend,
            "num_classes": num_classes, "config": target.fingerprint(),
            "versions": dict(versions if versions is not None else software_versions(target))}


def resolve_cache(cache: MeasurementCache | bool | None) -> MeasurementCache | None:
    """``None``/``True``: the shared cache under ``$SHUFFLENAS_HOME``; ``False``: none; else the cache given."""
    if cache is None or cache is True:
        return MeasurementCache()
    if cache is False:
        return None
    return cache


def check_measurable(target: Target) -> None:
    """Raise a one-line :class:`MeasurementError` unless this process can time ``target`` locally."""
    if target.is_estimate:
        raise MeasurementError(f"{target.name} is an estimate-only target; use `shufflenas latency predict` "
                               f"(or latency_models.estimation.estimators.estimate) for it")
    if target.is_remote:
        raise MeasurementError(
            f"{target.name} runs on a remote device (Ray resource {', '.join(target.resources)}); measure it through "
            f"Ray: evaluator.remote_latency.measure_remote, or `shufflenas latency measure --ray-address HEAD:6379`")
    reason = target.unavailable_reason()
    if reason:
        raise MeasurementError(f"target {target.name} is unavailable here: {reason}")


def reference_anchor(target: Target | str, cache: MeasurementCache | None = None, *,
                     redraw: bool = False) -> reference.Anchor:
    """``target``'s reference anchor (see :mod:`latency_models.measurement.reference`), drawn on first use.

    ``cache`` defaults to the shared measurement cache; ``redraw`` times the reference again and
    replaces the anchor (cached measurements are rescaled to it when read).
    """
    target = get_target(target)
    if target.reference is None:
        raise MeasurementError(f"target {target.name} has no reference network")
    check_measurable(target)
    return _anchor(target, cache if cache is not None else MeasurementCache(), software_versions(target), redraw)


def _anchor(target: Target, store: MeasurementCache, versions: Mapping[str, Any],
            redraw: bool = False) -> reference.Anchor:
    """:func:`reference_anchor` for a target already checked, with its versions already known."""
    if not redraw:
        anchor = reference.read_anchor(store, target, versions)
        if anchor is not None:
            return anchor
    return get_backend(str(target.backend)).draw_anchor(target, store, versions, replace=redraw)  # type: ignore[attr-defined]


def _measure(key: str, arch_text: str | None, target: Target, input_shape: Sequence[int], *,
             make_onnx: Any, make_module: Any, cache: MeasurementCache | bool | None,
             budget_s: float | None, num_classes: int | None,
             after_cached: Any = None) -> Measurement:
    check_measurable(target)
    if budget_s is not None and not (0 < float(budget_s) < math.inf):
        raise MeasurementError(f"the measurement budget must be a finite number of seconds > 0, got {budget_s}")
    backend = get_backend(str(target.backend))
    store = resolve_cache(cache)
    batch, input_size = int(input_shape[0]), int(input_shape[-1])
    versions = software_versions(target)
    fields = cache_fields(key, target, input_size=input_size, batch=batch, versions=versions, num_classes=num_classes)
    anchor = None
    if target.reference is not None and capability(backend, "supports_reference"):  # one anchor per cache
        anchor = _anchor(target, store if store is not None else MeasurementCache(), versions)
    if store is not None:
        hit = store.get(fields)
        if hit is not None and hit.get("stable", True) is not False:
            try:
                record = reference.rescale(hit, anchor) if anchor is not None else hit
                found = dataclasses.replace(Measurement.from_dict(record), cached=True)
                if after_cached is not None:  # an export left by an earlier run is not needed either
                    after_cached()
                return found
            except (TypeError, KeyError):
                pass  # an entry from an older layout: measure again
    budget = DEFAULT_BUDGET_S if budget_s is None else float(budget_s)
    source = ModelSource(key, onnx=lambda: make_onnx(store is None), module=make_module)
    stats = backend.time(source, input_shape, target, budget, anchor=anchor)
    result = Measurement.from_stats(stats, arch=arch_text, arch_id=key, target=target, input_size=input_size,
                                    batch=batch, versions=versions)
    if store is not None and result.stable:  # a disturbed run is returned, never cached as good
        store.put(fields, result.to_dict())
        if after_cached is not None and store.usable:
            after_cached()
    return result


def measure(arch: Architecture, target: Target | str, *, cache: MeasurementCache | bool | None = None,
            budget_s: float | None = None, num_classes: int = NUM_CLASSES) -> Measurement:
    """Measure ``arch`` on ``target`` (a :class:`Target` or a target name) at its batch and input size.

    ``cache``: ``None`` uses the default cache under ``$SHUFFLENAS_HOME``, ``False`` disables it,
    or pass a :class:`MeasurementCache`. ``budget_s`` is the timed-runs budget (default 1 s).
    """
    target = get_target(target)
    shape = (target.batch, 3, target.input_size, target.input_size)

    def make_module() -> Any:
        from search_space import build_model

        return build_model(arch, num_classes, target.input_size)

    return _measure(arch.arch_id, arch.to_string(), target, shape, cache=cache, budget_s=budget_s,
                    num_classes=num_classes,
                    make_onnx=lambda keep: onnx_bytes(arch, target.input_size, target.batch, num_classes, keep=keep),
                    make_module=make_module,
                    after_cached=lambda: drop_export(arch, target.input_size, target.batch, num_classes))


def measure_module(module: Any, input_shape: Sequence[int], target: Target | str, *, key: str,
                   budget_s: float | None = None, cache: MeasurementCache | bool | None = None) -> Measurement:
    """Measure any torch module (e.g. a guideline micro-benchmark) on ``target`` for a full (N, C, H, W) shape.

    ``key`` is the caller's cache key: it must change whenever the module's structure does. The
    target's batch and input size are ignored; ``input_shape`` decides.
    """
    target = get_target(target)
    if len(input_shape) != 4:
        raise MeasurementError(f"input_shape must be (N, C, H, W), got {tuple(input_shape)}")
    return _measure(key, None, target, input_shape, cache=cache, budget_s=budget_s, num_classes=None,
                    make_onnx=lambda keep: export_module_bytes(module, input_shape), make_module=lambda: module)


def lookup(arch: Architecture, target: Target | str, cache: MeasurementCache | None = None,
           num_classes: int = NUM_CLASSES) -> Measurement | None:
    """A cached measurement of ``arch`` on ``target`` for the current software, or ``None``
    (for a remote target: the last one collected from its board)."""
    target = get_target(target)
    store = cache if cache is not None else MeasurementCache()
    hit = store.get(cache_fields(arch.arch_id, target, input_size=target.input_size, batch=target.batch,
                                 num_classes=num_classes))
    if hit is None or hit.get("stable", True) is False:
        return None
    try:
        return dataclasses.replace(Measurement.from_dict(hit), cached=True)
    except TypeError:
        return None


def from_device_result(result: Mapping[str, Any], arch: Architecture, target: Target | str, *,
                       cache: MeasurementCache | bool | None = None) -> Measurement:
    """Turn a :func:`device_runtime.measure_onnx` result (e.g. from a remote board) into a
    :class:`Measurement`, storing it in the cache under the target's key unless it is unstable.

    A board's own warnings do not reach this process, so a niced board is warned about here.
    """
    from latency_models.measurement.backends.onnxruntime import device_stats

    target = get_target(target)
    stats = device_stats(result)
    if isinstance(stats.niceness, int) and stats.niceness > 0:
        warnings.warn(f"{target.name} measured at niceness {stats.niceness} (load average {stats.load_avg}): "
                      "other work on the board comes first and inflates the latency; start Ray on the board "
                      "with RAY_worker_niceness=0", device_runtime.NicedWarning, stacklevel=2)
    m = Measurement.from_stats(stats, arch=arch.to_string(), arch_id=arch.arch_id, target=target,
                               input_size=target.input_size, batch=target.batch, versions={})
    store = resolve_cache(cache)
    if store is not None and m.stable:
        store.put(cache_fields(arch.arch_id, target, input_size=target.input_size, batch=target.batch), m.to_dict())
    return m
