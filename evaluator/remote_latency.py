"""Measure latency on remote devices through Ray, placed by the target's resource label.

The driver (the search process, which has torch) exports the ONNX bytes and ships them; the task
runs :func:`latency_models.measurement.device_runtime.measure_onnx` on a node that advertises the target's
custom resource (e.g. a Raspberry Pi started with ``ray start --resources='{"device:rpi4": 1}'``).
``device_runtime`` is pickled by value, so a board needs only ``onnxruntime numpy ray`` - neither
shufflenas nor torch. ORT threads are set explicitly inside the task (Ray sets OMP_NUM_THREADS).

The task is :func:`device_runtime.measure_onnx_stable`: a run whose spread says the board was busy
is repeated on the board, and one that stays disturbed comes back with ``stable: False`` and is not
cached. The result records the worker's niceness and the board's load average; Ray nices its
workers to 15 unless the board's ``ray start`` sets ``RAY_worker_niceness=0``, and a niced result
warns (or, with ``niced = "refuse"`` on the target, the board refuses to measure).
The export is made in memory and shipped; it is not written to the ONNX cache.

Typical use from a search driver::

    ref = submit_measurement(arch, target)            # non-blocking
    ...                                               # ray.wait on many refs
    m = collect(ray.get(ref), arch, target)           # -> Measurement, stored in the cache
"""

from __future__ import annotations

from typing import Any

import ray

from latency_models.measurement import device_runtime
from latency_models.measurement.backends.base import capability, get_backend, niced_policy
from latency_models.measurement.measure import (Measurement, MeasurementError, from_device_result, lookup, onnx_bytes,
                                                resolve_cache)
from latency_models.measurement.measure_cache import MeasurementCache
from latency_models.measurement.targets import Target, get_target
from search_space import Architecture

# Ship the device code itself, not a reference to a module the board would have to import.
ray.cloudpickle.register_pickle_by_value(device_runtime)


_remote_task = None


def _task() -> Any:
    global _remote_task
    if _remote_task is None:
        # measure_onnx sets the ORT thread count itself (threads=...), whatever OMP_NUM_THREADS says.
        _remote_task = ray.remote(max_retries=1)(device_runtime.measure_onnx_stable)
    return _remote_task


def check_placeable(target: Target) -> None:
    """Fail fast when no node of the Ray cluster advertises the target's resources."""
    if not ray.is_initialized():
        raise MeasurementError(f"target {target.name} needs Ray: call ray.init(address=...) first "
                               "(or pass --ray-address to `shufflenas latency measure`)")
    if target.is_estimate:
        raise MeasurementError(f"{target.name} is an estimate-only target; use `shufflenas latency predict`")
    if not capability(get_backend(str(target.backend)), "supports_remote"):
        raise MeasurementError(f"target {target.name} uses the {target.backend} backend; remote measurement runs "
                               "ONNX Runtime only")
    available = ray.cluster_resources()
    for name, amount in target.resources.items():
        if available.get(name, 0) < amount:
            raise MeasurementError(
                f"no Ray node advertises {name}={amount:g} for target {target.name}; start the board with "
                f"RAY_worker_niceness=0 ray start --address=HEAD:6379 --resources='{{\"{name}\": {amount:g}}}'")
    if available.get("CPU", 0) < target.threads:
        raise MeasurementError(f"target {target.name} needs {target.threads} CPUs; the cluster has "
                               f"{available.get('CPU', 0):g}")


def submit_measurement(arch: Architecture, target: Target | str, *, budget_s: float | None = None) -> ray.ObjectRef:
    """Export ``arch`` here and start its measurement on a node carrying ``target.resources``.

    The ref resolves to the ``measure_onnx`` result dict; pass it to :func:`collect`.
    """
    target = get_target(target)
    check_placeable(target)
    data = onnx_bytes(arch, target.input_size, target.batch, keep=False)
    shape = (target.batch, 3, target.input_size, target.input_size)
    budget = device_runtime.DEFAULT_BUDGET_S if budget_s is None else float(budget_s)
    return _task().options(resources=dict(target.resources), num_cpus=target.threads).remote(
        data, shape, threads=target.threads, providers=tuple(target.providers), budget_s=budget,
        niced=niced_policy(target))


def collect(result: dict[str, Any], arch: Architecture, target: Target | str, *,
            cache: MeasurementCache | bool | None = None) -> Measurement:
    """A finished task's dict as a :class:`Measurement`, stored in the measurement cache."""
    return from_device_result(result, arch, target, cache=cache)


def measure_remote(arch: Architecture, target: Target | str, *, budget_s: float | None = None,
                   cache: MeasurementCache | bool | None = None, timeout_s: float | None = 600) -> Measurement:
    """Blocking convenience: cached result if any, else submit, wait and collect."""
    target = get_target(target)
    store = resolve_cache(cache)
    if store is not None:
        hit = lookup(arch, target, store)
        if hit is not None:
            return hit
    ref = submit_measurement(arch, target, budget_s=budget_s)
    try:
        result = ray.get(ref, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        raise MeasurementError(f"measurement on {target.name} did not finish within {timeout_s:g} s") from None
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
        message = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        raise MeasurementError(f"measurement on {target.name} failed on the device: {message}") from None
    return collect(result, arch, target, cache=store if store is not None else False)
