"""Eager PyTorch: the torch module itself, no export.

On CPU each run is timed with ``time.perf_counter``; on CUDA with ``torch.cuda.Event`` pairs after
``torch.cuda.synchronize()``, cuDNN benchmark mode on (as in the paper's GPU setup). Warm-up runs
are never timed. The thread count comes from the target and is restored afterwards. A disturbed
run is repeated like ONNX Runtime's (:func:`device_runtime.unstable_reason` decides).

torch is imported inside the methods, so listing targets does not load it.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from latency_models.measurement.backends.base import Backend, ModelSource, RunStats, niced_policy

if TYPE_CHECKING:
    from latency_models.measurement.reference import Anchor
    from latency_models.measurement.targets import Target


def gpu_versions() -> dict[str, Any]:
    """The first CUDA GPU's name and the CUDA / cuDNN versions torch uses (empty without a GPU)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


class TorchBackend(Backend):
    name = "torch"

    def unavailable_reason(self, target: Target) -> str | None:
        try:
            import torch
        except ImportError:
            return "torch is not installed"
        if target.device == "cuda" and not torch.cuda.is_available():
            return f"no CUDA device visible to torch {torch.__version__}"
        return None

    def versions(self, target: Target) -> dict[str, Any]:
        import torch

        from latency_models.measurement import device_runtime

        info: dict[str, Any] = {"torch": torch.__version__, "machine": platform.machine(),
                                "cpu": device_runtime.cpu_model()}
        if target.device == "cuda":
            info.update(gpu_versions())
        return info

    def time(self, model: ModelSource, input_shape: Sequence[int], target: Target, budget: float, *,
             anchor: Anchor | None = None) -> RunStats:
        """:func:`time_module` repeated until stable, at most ``device_runtime.STABLE_ATTEMPTS`` times."""
        from latency_models.measurement import device_runtime

        module = model.module()
        state = device_runtime.check_niceness(niced_policy(target))
        best: dict[str, Any] | None = None
        for attempt in range(1, device_runtime.STABLE_ATTEMPTS + 1):
            run = time_module(module, input_shape, target, budget)
            if best is None or run["stable"] or run["cv"] < best["cv"]:
                best = run
            if run["stable"]:
                break
        assert best is not None
        return RunStats.from_dict({**best, **state, "attempts": attempt})


def time_module(module: Any, input_shape: Sequence[int], target: Target, budget_s: float, *,
                warmup: int | None = None, min_runs: int | None = None, max_runs: int | None = None) -> dict[str, Any]:
    """One eager timing: perf_counter on CPU, CUDA events after synchronize on GPU (robust statistics)."""
    import torch

    from latency_models.measurement import device_runtime

    warmup = device_runtime.DEFAULT_WARMUP if warmup is None else warmup
    min_runs = device_runtime.DEFAULT_MIN_RUNS if min_runs is None else min_runs
    max_runs = device_runtime.DEFAULT_MAX_RUNS if max_runs is None else max_runs
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


BACKEND = TorchBackend()
