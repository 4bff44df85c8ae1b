"""Measure an architecture's latency on a target: export once, time with the target's backend, cache.

Backends:
- ``onnxruntime``: the ONNX export (cached on disk per arch id + input size + batch) is timed by
  :func:`latency_models.measurement.device_runtime.measure_onnx` - the same code a remote board runs.
- ``torch``: eager PyTorch. On CPU each run is timed with ``time.perf_counter``; on CUDA with
  ``torch.cuda.Event`` pairs after ``torch.cuda.synchronize()``, cuDNN benchmark mode on (as in the
  paper's GPU setup). Warm-up runs are never timed.

Results are cached per (arch id, target, input size, batch, backend, software versions, CPU/GPU
model) in a :class:`MeasurementCache`, so nothing is measured twice on the same software stack.
Estimate-only targets are refused here: they have no hardware to time.

Reference-normalised targets (``reference = "1.0x"``, the default for ``local-cpu``) report every
measurement at the reference network's anchored speed: see :mod:`latency_models.measurement.reference`.

A measurement records the niceness and load average of the process that timed it, and whether its
spread was stable (:func:`latency_models.measurement.device_runtime.unstable_reason`); a disturbed run is
repeated, and one that stays disturbed is returned with ``stable=False`` and never cached.

A candidate's ONNX export is only kept on disk until its measurement is cached: nothing needs it
afterwards (11-12 MB each at 224x224). A measurement that will be cached is exported in memory and
any export already on disk is deleted once the result is stored; an uncached one (``cache=False``)
keeps its export for next time. The reference networks' exports are always kept, since every
normalised measurement times them again.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from latency_models.measurement import device_runtime

from latency_models.measurement import reference
from latency_models.measurement.measure_cache import MeasurementCache
from latency_models.measurement.onnx_export import OPSET, export_bytes, export_module_bytes, write_atomic
from latency_models.paths import cache_dir
from latency_models.measurement.targets import Target, get_target
from search_space import Architecture
from search_space.errors import ShufflenasError

NUM_CLASSES = 1000
DEFAULT_BUDGET_S = device_runtime.DEFAULT_BUDGET_S


class MeasurementError(ShufflenasError):
    """A measurement cannot run: estimate-only target, unavailable device, remote target, bad model."""


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
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _torch_versions(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "machine": platform.machine(),
                            "cpu": device_runtime.cpu_model()}
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def software_versions(target: Target) -> dict[str, Any]:
    """The software and hardware a local measurement on ``target`` depends on (part of the cache key)."""
    if target.is_remote:
        return {"remote": dict(sorted(target.resources.items()))}
    if target.backend == "onnxruntime":
        import onnxruntime as ort

        info = {"onnxruntime": ort.__version__, "machine": platform.machine(), "cpu": device_runtime.cpu_model()}
        if target.device == "cuda":
            info.update({k: v for k, v in _torch_versions("cuda").items() if k == "gpu"})
        return info
    return _torch_versions(target.device)


def cache_fields(key: str, target: Target, *, input_size: int, batch: int,
                 versions: Mapping[str, Any] | None = None, num_classes: int | None = NUM_CLASSES) -> dict[str, Any]:
    """The cache key of a measurement (see :class:`MeasurementCache`); ``num_classes`` is ``None``
    for :func:`measure_module`, whose caller-chosen key already names the network."""
    return {"key": key, "target": target.name, "input_size": input_size, "batch": batch, "backend": target.backend,
            "num_classes": num_classes, "config": target.fingerprint(),
            "versions": dict(versions if versions is not None else software_versions(target))}


def _resolve_cache(cache: MeasurementCache | bool | None) -> MeasurementCache | None:
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


def onnx_bytes(arch: Architecture, input_size: int = 224, batch: int = 1, num_classes: int = NUM_CLASSES, *,
               keep: bool = True) -> bytes:
    """The ONNX export of ``arch``, cached on disk per arch id + input size + batch (+ classes, opset).

    With ``keep=False`` an existing export is still read, but a new one stays in memory: a
    candidate is measured once, and its export is not needed once the measurement is cached.
    """
    path = onnx_path(arch, input_size, batch, num_classes)
    if path.exists():
        try:
            cached = path.read_bytes()
            if _is_model(cached):
                return cached
        except OSError:
            pass  # unreadable or damaged: export again and replace it
    data = export_bytes(arch, input_size, num_classes, batch)
    if not keep:
        return data
    try:
        write_atomic(path, data)
    except OSError:
        pass  # a read-only cache only costs a re-export next time
    return data


def _is_model(data: bytes) -> bool:
    """Whether cached bytes still parse as an ONNX model with a graph (a damaged file is re-exported)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.ModelProto.FromString(data)
    except (DecodeError, ValueError, RuntimeError):
        return False
    return len(model.graph.node) > 0 and len(model.graph.output) > 0


def onnx_path(arch: Architecture, input_size: int = 224, batch: int = 1, num_classes: int = NUM_CLASSES) -> Path:
    """Where :func:`onnx_bytes` keeps the export of ``arch``."""
    return cache_dir("onnx") / f"{arch.arch_id}_s{input_size}_b{batch}_c{num_classes}_op{OPSET}.onnx"


def _reference_archs() -> set[str]:
    """The compact strings of every target's reference network (their exports are kept)."""
    from latency_models.measurement.targets import load_targets

    try:
        return {t.reference for t in load_targets().values() if t.reference is not None}
    except ShufflenasError:
        return set()


def drop_export(arch: Architecture, input_size: int = 224, batch: int = 1, num_classes: int = NUM_CLASSES) -> bool:
    """Delete the cached export of ``arch`` unless it is a reference network; True when one was deleted."""
    if arch.to_string() in _reference_archs():
        return False
    try:
        onnx_path(arch, input_size, batch, num_classes).unlink()
    except OSError:
        return False
    return True


_OPTIONAL = ("raw_median_ms", "slowdown", "reference", "attempts", "anchor_ms", "stable", "unstable", "niceness",
             "load_avg")


def _stats_from_run(run: Mapping[str, Any]) -> dict[str, Any]:
    stats = {k: run[k] for k in ("median_ms", "mean_ms", "p10_ms", "p90_ms", "iqr_ms", "cv", "runs")}
    return {**stats, **{k: run[k] for k in _OPTIONAL if k in run}}


def _niced_policy(target: Target) -> str:
    return str(getattr(target, "niced", "warn") or "warn")


def _time_torch(module: Any, input_shape: Sequence[int], target: Target, budget_s: float,
                warmup: int = device_runtime.DEFAULT_WARMUP, min_runs: int = device_runtime.DEFAULT_MIN_RUNS,
                max_runs: int = device_runtime.DEFAULT_MAX_RUNS) -> dict[str, Any]:
    """Eager torch timing: perf_counter on CPU, CUDA events after synchronize on GPU."""
    import torch

    device = torch.device("cuda" if target.device == "cuda" else "cpu")
    previous_threads = torch.get_num_threads()
    previous_benchmark = torch.backends.cudnn.benchmark
    torch.set_num_threads(target.threads)
    try:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        module = module.eval().to(device)
        x = torch.from_numpy(device_runtime.example_input(input_shape)).to(device)
        times: list[float] = []
        with torch.inference_mode():
            for _ in range(max(1, warmup)):
                module(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            while len(times) < max_runs:
                if device.type == "cuda":
                    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    begin.record()
                    module(x)
                    end.record()
                    end.synchronize()
                    times.append(float(begin.elapsed_time(end)))
                else:
                    t0 = time.perf_counter()
                    module(x)
                    times.append((time.perf_counter() - t0) * 1e3)
                if len(times) >= min_runs and time.perf_counter() - started >= budget_s:
                    break
    finally:
        torch.set_num_threads(previous_threads)
        torch.backends.cudnn.benchmark = previous_benchmark
    stats: dict[str, Any] = device_runtime.robust_stats(times)
    reason = device_runtime.unstable_reason(stats)
    return {**stats, "stable": reason is None, **({"unstable": reason} if reason else {})}


def _time_torch_stable(module: Any, input_shape: Sequence[int], target: Target, budget_s: float) -> dict[str, Any]:
    """:func:`_time_torch` repeated until stable, at most ``device_runtime.STABLE_ATTEMPTS`` times."""
    state = device_runtime.check_niceness(_niced_policy(target))
    best: dict[str, Any] | None = None
    for attempt in range(1, device_runtime.STABLE_ATTEMPTS + 1):
        run = _time_torch(module, input_shape, target, budget_s)
        if best is None or run["stable"] or run["cv"] < best["cv"]:
            best = run
        if run["stable"]:
            break
    assert best is not None
    return {**best, **state, "attempts": attempt}


def _reference_shape(target: Target) -> tuple[int, int, int, int]:
    return (target.batch, 3, target.input_size, target.input_size)


def _reference_bytes(target: Target) -> bytes:
    from search_space import resolve_arch

    return onnx_bytes(resolve_arch(str(target.reference)), target.input_size, target.batch)


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
    try:
        return reference.draw_anchor(store, target, versions, _reference_bytes(target), _reference_shape(target),
                                     replace=redraw)
    except device_runtime.DeviceRuntimeError as exc:
        raise MeasurementError(f"target {target.name}: reference {target.reference}: {exc}") from None


def _time_onnx(model: bytes, input_shape: Sequence[int], target: Target, budget_s: float,
               anchor: reference.Anchor | None = None) -> dict[str, Any]:
    """Time with ONNX Runtime; with an anchor, alongside the target's reference and normalised."""
    reference_model = _reference_bytes(target) if anchor is not None else None  # read once for every attempt

    options = {"threads": target.threads, "providers": target.providers, "budget_s": budget_s,
               "niced": _niced_policy(target)}
    try:
        if anchor is None:
            return device_runtime.measure_onnx_stable(model, input_shape, **options)

        def run_once() -> dict[str, Any]:
            return device_runtime.measure_onnx(model, input_shape, reference_bytes=reference_model,
                                               reference_shape=_reference_shape(target), **options)

        return reference.measure_normalised(run_once, anchor)
    except device_runtime.DeviceRuntimeError as exc:
        raise MeasurementError(f"target {target.name}: {exc}") from None


def _measure(key: str, arch_text: str | None, target: Target, input_shape: Sequence[int], *,
             make_onnx: Any, make_module: Any, cache: MeasurementCache | bool | None,
             budget_s: float | None, num_classes: int | None,
             after_cached: Any = None) -> Measurement:
    check_measurable(target)
    if budget_s is not None and not (0 < float(budget_s) < math.inf):
        raise MeasurementError(f"the measurement budget must be a finite number of seconds > 0, got {budget_s}")
    store = _resolve_cache(cache)
    batch, input_size = int(input_shape[0]), int(input_shape[-1])
    versions = software_versions(target)
    fields = cache_fields(key, target, input_size=input_size, batch=batch, versions=versions, num_classes=num_classes)
    anchor = None
    if target.reference is not None and target.backend == "onnxruntime":  # one anchor per cache, even uncached runs
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
    if target.backend == "onnxruntime":
        run = _time_onnx(make_onnx(store is None), input_shape, target, budget, anchor)
        versions = {**versions, "providers": run["providers"]}
    else:
        run = _time_torch_stable(make_module(), input_shape, target, budget)
    result = Measurement(arch=arch_text, arch_id=key, target=target.name, backend=str(target.backend),
                         device=target.device, input_size=input_size, batch=batch, versions=versions,
                         **_stats_from_run(run))
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
    target = get_target(target)
    niceness = result.get("niceness")
    if isinstance(niceness, int) and niceness > 0:
        warnings.warn(f"{target.name} measured at niceness {niceness} (load average {result.get('load_avg')}): "
                      "other work on the board comes first and inflates the latency; start Ray on the board "
                      "with RAY_worker_niceness=0", device_runtime.NicedWarning, stacklevel=2)
    versions = {k: result[k] for k in ("onnxruntime", "machine", "cpu", "cpu_count", "providers") if k in result}
    m = Measurement(arch=arch.to_string(), arch_id=arch.arch_id, target=target.name, backend=str(target.backend),
                    device=target.device, input_size=target.input_size, batch=target.batch, versions=versions,
                    **_stats_from_run(result))
    store = _resolve_cache(cache)
    if store is not None and m.stable:
        store.put(cache_fields(arch.arch_id, target, input_size=target.input_size, batch=target.batch), m.to_dict())
    return m
