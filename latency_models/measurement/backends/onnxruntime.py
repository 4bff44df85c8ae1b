"""ONNX Runtime: the ONNX export timed by :mod:`latency_models.measurement.device_runtime`.

The same timing code runs here and on a remote board (``supports_remote``: targets with
``resources`` are shipped to a Ray node by :mod:`evaluator.remote_latency`). Execution providers
come from the target (``providers``; CPU or CUDA EP by default), as does the thread count. This is
the one backend with reference normalisation: a target's ``reference`` network is timed in
alternating chunks with every measurement and reported at its anchor's speed
(:mod:`latency_models.measurement.reference`).

ONNX Runtime itself is imported inside the methods, so listing targets does not load it.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from latency_models.measurement.backends.base import Backend, MeasurementError, ModelSource, RunStats, niced_policy

if TYPE_CHECKING:
    from latency_models.measurement.reference import Anchor
    from latency_models.measurement.targets import Target

#: The host keys of a ``device_runtime`` result that a remote measurement records as its versions.
DEVICE_VERSION_KEYS = ("onnxruntime", "machine", "cpu", "cpu_count", "providers")


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    supports_reference = True
    supports_remote = True

    def default_providers(self, device: str) -> tuple[str, ...]:
        return ("CUDAExecutionProvider",) if device == "cuda" else ("CPUExecutionProvider",)

    def unavailable_reason(self, target: Target) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed"
        have = set(ort.get_available_providers())
        missing = [p for p in target.providers if p not in have]
        if missing:
            return f"ONNX Runtime {ort.__version__} lacks {', '.join(missing)} (has: {', '.join(sorted(have))})"
        if target.device == "cuda" and "CUDAExecutionProvider" not in target.providers:
            return "a cuda target needs CUDAExecutionProvider in providers"
        return None

    def versions(self, target: Target) -> dict[str, Any]:
        import onnxruntime as ort

        from latency_models.measurement import device_runtime

        info: dict[str, Any] = {"onnxruntime": ort.__version__, "machine": platform.machine(),
                                "cpu": device_runtime.cpu_model()}
        if target.device == "cuda":
            from latency_models.measurement.backends.torch import gpu_versions

            info.update({k: v for k, v in gpu_versions().items() if k == "gpu"})
        return info

    def time(self, model: ModelSource, input_shape: Sequence[int], target: Target, budget: float, *,
             anchor: Anchor | None = None) -> RunStats:
        """Time with ONNX Runtime; with an anchor, alongside the target's reference and normalised."""
        from latency_models.measurement import device_runtime, reference

        data = model.onnx()
        reference_model = reference_bytes(target) if anchor is not None else None  # read once for every attempt
        options = {"threads": target.threads, "providers": target.providers, "budget_s": budget,
                   "niced": niced_policy(target)}
        try:
            if anchor is None:
                run = device_runtime.measure_onnx_stable(data, input_shape, **options)
            else:
                def run_once() -> dict[str, Any]:
                    return device_runtime.measure_onnx(data, input_shape, reference_bytes=reference_model,
                                                       reference_shape=reference_shape(target), **options)

                run = reference.measure_normalised(run_once, anchor)
        except device_runtime.DeviceRuntimeError as exc:
            raise MeasurementError(f"target {target.name}: {exc}") from None
        return RunStats.from_dict({**run, "versions": {"providers": run["providers"]}})

    def draw_anchor(self, target: Target, store: Any, versions: Mapping[str, Any], *, replace: bool = False) -> Anchor:
        from latency_models.measurement import device_runtime, reference

        try:
            return reference.draw_anchor(store, target, versions, reference_bytes(target), reference_shape(target),
                                         replace=replace)
        except device_runtime.DeviceRuntimeError as exc:
            raise MeasurementError(f"target {target.name}: reference {target.reference}: {exc}") from None


def reference_shape(target: Target) -> tuple[int, int, int, int]:
    return (target.batch, 3, target.input_size, target.input_size)


def reference_bytes(target: Target) -> bytes:
    """The export of ``target``'s reference network (kept on disk: every normalised run times it)."""
    from latency_models.measurement.export_cache import onnx_bytes
    from search_space import resolve_arch

    return onnx_bytes(resolve_arch(str(target.reference)), target.input_size, target.batch)


def device_stats(result: Mapping[str, Any]) -> RunStats:
    """A ``device_runtime`` result from a board as :class:`RunStats`, with the board's versions."""
    return RunStats.from_dict({**result, "versions": {k: result[k] for k in DEVICE_VERSION_KEYS if k in result}})


BACKEND = OnnxRuntimeBackend()
