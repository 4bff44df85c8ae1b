"""Time an ONNX model with ONNX Runtime: the only code a measuring device runs.

This module imports numpy, onnxruntime and the standard library, nothing else, so a board that
only measures needs ``pip install onnxruntime numpy ray``. The Ray driver ships these functions to
the board by value (it does not need shufflenas installed).

Statistics are robust because shared and small machines are noisy: the headline is the median,
spread is the inter-quartile range, and ``cv`` is the robust coefficient of variation
``(IQR / 1.349) / median`` (1.349 makes IQR/1.349 equal the standard deviation for normal data),
so one descheduled run does not inflate it. ``std_ms`` and ``mean_ms`` are reported as well.

On a shared machine the whole CPU speeds up and slows down with its neighbours. A *reference*
model timed in alternating chunks with the candidate sees the same slowdown, so their ratio is far
steadier than either median (:mod:`latency_models.measurement.reference` has the measured figures). Pass
``reference_bytes`` to get that ratio (``relative``) next to the raw statistics.

Every result records the state of the process that timed it (:func:`process_state`): its
niceness and the node's load average. Ray starts its workers at niceness 15 by default, and a niced
measurement on a busy board came back 40x slower than in-process, so a niced run warns (or, with
``niced="refuse"``, refuses). A run whose spread says the device was disturbed
(:func:`unstable_reason`) is repeated by :func:`measure_onnx_stable` and, if it stays disturbed,
returned with ``stable: False`` so the caller never caches it as good.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

DEFAULT_WARMUP = 5
DEFAULT_MIN_RUNS = 10
DEFAULT_MAX_RUNS = 1000
DEFAULT_BUDGET_S = 1.0
DEFAULT_CHUNK_S = 0.02
#: A run is disturbed when its robust cv exceeds this... On the 2-core development VM with two busy
#: neighbours (load 3.5) single runs reached cv 0.35 and median/p10 1.8; the busy board whose
#: results were 40x off had cv 0.55-1.1.
MAX_STABLE_CV = 0.4
#: ...or when its median exceeds this multiple of its 10th percentile (runs that were fast at
#: times and slow at others: the machine was shared for part of the run).
MAX_MEDIAN_OVER_P10 = 2.0
#: ...unless the spread itself (median - p10, and the IQR) stays under this many milliseconds:
#: timer and scheduler jitter of a few microseconds makes a 0.02 ms block look "unsteady" in
#: relative terms on any machine, without the device having been disturbed.
JITTER_FLOOR_MS = 0.05
#: How many runs :func:`measure_onnx_stable` makes at most before it returns an unstable one.
STABLE_ATTEMPTS = 3
NICED_POLICIES = ("warn", "refuse")


class DeviceRuntimeError(RuntimeError):
    """The device cannot run the measurement (missing provider, bad model or input shape)."""


class NicedWarning(UserWarning):
    """The measuring process runs at a raised niceness: a busy device will slow it down."""


def process_state() -> dict[str, Any]:
    """The niceness of this process and the node's 1/5/15-minute load average (None where unknown)."""
    try:
        niceness: int | None = os.nice(0)
    except (AttributeError, OSError):  # not on POSIX
        niceness = None
    try:
        load: list[float] | None = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {"niceness": niceness, "load_avg": load}


def check_niceness(niced: str = "warn") -> dict[str, Any]:
    """:func:`process_state`, after warning (``niced="warn"``) or refusing (``"refuse"``) when niced."""
    if niced not in NICED_POLICIES:
        raise DeviceRuntimeError(f"niced must be one of {', '.join(NICED_POLICIES)}, got {niced!r}")
    state = process_state()
    if state["niceness"] is not None and state["niceness"] > 0:
        message = (f"the measuring process runs at niceness {state['niceness']} (load average {state['load_avg']}): "
                   "other work on the device comes first and inflates the latency; start Ray on the board with "
                   "RAY_worker_niceness=0")
        if niced == "refuse":
            raise DeviceRuntimeError(f"refusing to measure: {message}")
        warnings.warn(message, NicedWarning, stacklevel=2)
    return state


def unstable_reason(stats: dict[str, Any]) -> str | None:
    """Why a run's spread says the device was disturbed, or ``None`` when it looks steady.

    The rule: robust cv > :data:`MAX_STABLE_CV`, or median > :data:`MAX_MEDIAN_OVER_P10` x p10, and
    in either case a spread (median - p10, IQR) of at least :data:`JITTER_FLOOR_MS`.
    """
    cv, median, p10 = float(stats["cv"]), float(stats["median_ms"]), float(stats["p10_ms"])
    spread = max(median - p10, float(stats.get("iqr_ms") or 0.0))
    if spread < JITTER_FLOOR_MS:
        return None
    if cv > MAX_STABLE_CV:
        return f"robust cv {cv:.2f} > {MAX_STABLE_CV:g}"
    if p10 > 0 and median > MAX_MEDIAN_OVER_P10 * p10:
        return f"median {median:.3g} ms > {MAX_MEDIAN_OVER_P10:g} x p10 {p10:.3g} ms"
    return None


def cpu_model() -> str:
    """A human-readable CPU name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def host_info() -> dict[str, Any]:
    """What a measurement ran on: ORT version, machine, CPU model, core count."""
    return {"onnxruntime": ort.__version__, "numpy": np.__version__, "machine": platform.machine(),
            "cpu": cpu_model(), "cpu_count": os.cpu_count() or 0, "python": platform.python_version()}


def robust_stats(times_ms: Sequence[float]) -> dict[str, float]:
    """median, mean, std, p10, p90, IQR, min and robust cv of per-run milliseconds."""
    values = np.asarray(times_ms, dtype=np.float64)
    if values.size == 0:
        raise DeviceRuntimeError("no timed runs")
    p10, q1, median, q3, p90 = np.percentile(values, [10, 25, 50, 75, 90])
    iqr = float(q3 - q1)
    return {"median_ms": float(median), "mean_ms": float(values.mean()), "std_ms": float(values.std()),
            "p10_ms": float(p10), "p90_ms": float(p90), "iqr_ms": iqr, "min_ms": float(values.min()),
            "cv": float(iqr / 1.349 / median) if median > 0 else 0.0, "runs": int(values.size)}


def make_session(model_bytes: bytes, *, threads: int = 1,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> ort.InferenceSession:
    """A session tuned for stable timing: fixed threads, no spinning, sequential, all optimisations."""
    have = ort.get_available_providers()
    missing = [p for p in providers if p not in have]
    if missing:
        raise DeviceRuntimeError(f"onnxruntime {ort.__version__} on {platform.machine()} lacks "
                                 f"{', '.join(missing)} (has: {', '.join(have)})")
    if threads < 1:
        raise DeviceRuntimeError(f"threads must be >= 1, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model_bytes, sess_options=options, providers=list(providers))
    except Exception as exc:  # ORT raises its own exception types for invalid models
        raise DeviceRuntimeError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0]}") from None
    dropped = [p for p in providers if p not in session.get_providers()]
    if dropped:  # e.g. the CUDA EP is installed but no GPU is visible: ORT silently falls back to CPU
        raise DeviceRuntimeError(f"onnxruntime could not enable {', '.join(dropped)} on this machine")
    return session


def example_input(input_shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """The deterministic float32 input every measurement feeds (same on every platform)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(tuple(int(d) for d in input_shape)).astype(np.float32)


def _session_runner(session: ort.InferenceSession, input_shape: Sequence[int] | None,
                    input_data: np.ndarray | None) -> tuple[Callable[[], Any], tuple[int, ...]]:
    """A zero-argument call that runs ``session`` once on a fixed input, and that input's shape."""
    model_input = session.get_inputs()[0]
    if input_data is None:
        if input_shape is None:
            if not all(isinstance(d, int) for d in model_input.shape):
                raise DeviceRuntimeError(f"the model input has a dynamic shape {model_input.shape}; pass input_shape")
            input_shape = model_input.shape
        input_data = example_input(input_shape)
    feed = {model_input.name: np.ascontiguousarray(input_data, dtype=np.float32)}
    return (lambda: session.run(None, feed)), tuple(input_data.shape)


def _first_run(run: Callable[[], Any], shape: Sequence[int]) -> Any:
    try:
        return run()[0]
    except Exception as exc:
        raise DeviceRuntimeError(f"onnxruntime cannot run the model on input {tuple(shape)}: "
                                 f"{str(exc).splitlines()[0]}") from None


@dataclasses.dataclass
class TimedRuns:
    """Per-call milliseconds of a model (and of its reference), and each chunk pair's median ratio."""

    times_ms: list[float]
    reference_ms: list[float] = dataclasses.field(default_factory=list)
    pair_ratios: list[float] = dataclasses.field(default_factory=list)

    @property
    def relative(self) -> float:
        """The median over chunk pairs of candidate median / reference median.

        Each pair ran within a few tens of milliseconds, so a burst of contention that hits one
        pair is outvoted instead of leaking into a ratio of whole-run medians.
        """
        if not self.pair_ratios:
            raise DeviceRuntimeError("no reference runs to compare with")
        return float(np.median(self.pair_ratios))


def time_runs(run: Callable[[], Any], reference: Callable[[], Any] | None = None, *,
              min_runs: int = DEFAULT_MIN_RUNS, max_runs: int = DEFAULT_MAX_RUNS, budget_s: float = DEFAULT_BUDGET_S,
              chunk_s: float = DEFAULT_CHUNK_S) -> TimedRuns:
    """Time ``run`` (and ``reference``, when given) after the caller's warm-up.

    Without a reference, ``run`` is timed back to back. With one, the two alternate in chunks of at
    least one call and ``chunk_s`` seconds, so both see the same machine state; the budget covers
    both. Stops once ``run`` has ``min_runs`` calls and the budget is spent, or at ``max_runs``.
    """
    clock = time.perf_counter
    timed = TimedRuns([])
    started = clock()
    while len(timed.times_ms) < max_runs:
        chunk_medians = []
        for call, out in ((run, timed.times_ms), (reference, timed.reference_ms)):
            if call is None:
                continue
            chunk: list[float] = []
            chunk_started = clock()
            while True:
                t0 = clock()
                call()
                t1 = clock()
                chunk.append((t1 - t0) * 1e3)
                if (reference is None or t1 - chunk_started >= chunk_s
                        or (out is timed.times_ms and len(out) + len(chunk) >= max_runs)):
                    break
            out.extend(chunk)
            chunk_medians.append(float(np.median(chunk)))
        if reference is not None:
            timed.pair_ratios.append(chunk_medians[0] / chunk_medians[1])
        if len(timed.times_ms) >= min_runs and clock() - started >= budget_s:
            break
    return timed


def measure_onnx(model_bytes: bytes, input_shape: Sequence[int] | None = None, *, threads: int = 1,
                 providers: Sequence[str] = ("CPUExecutionProvider",), warmup: int = DEFAULT_WARMUP,
                 min_runs: int = DEFAULT_MIN_RUNS, max_runs: int = DEFAULT_MAX_RUNS,
                 budget_s: float = DEFAULT_BUDGET_S, input_data: np.ndarray | None = None,
                 return_output: bool = False, reference_bytes: bytes | None = None,
                 reference_shape: Sequence[int] | None = None, niced: str = "warn") -> dict[str, Any]:
    """Time ``model_bytes`` and return robust statistics in milliseconds per call (one batch).

    ``warmup`` untimed runs come first (first runs allocate memory and pick kernels), then timed
    runs continue until at least ``min_runs`` were made and ``budget_s`` seconds of timed runs have
    passed, or ``max_runs`` were made. ``input_shape`` defaults to the model's fixed input shape;
    ``input_data`` overrides the generated input. With ``return_output`` the dict also carries
    ``output`` (the first output of one run, a numpy array) so callers can check correctness.

    With ``reference_bytes`` a second model (on ``reference_shape``, default its own input shape)
    is timed in alternating chunks (:func:`time_runs`); the result adds ``reference_median_ms``,
    ``reference_runs``, ``chunk_pairs`` and ``relative`` (median over chunk pairs of candidate /
    reference median; :attr:`TimedRuns.relative`).

    The result also holds ``niceness`` and ``load_avg`` (:func:`check_niceness`, which warns or,
    with ``niced="refuse"``, refuses when this process is niced), ``stable`` and, when unstable,
    ``unstable`` (:func:`unstable_reason`).
    """
    if min_runs < 1 or max_runs < min_runs:
        raise DeviceRuntimeError(f"need 1 <= min_runs <= max_runs, got {min_runs} and {max_runs}")
    state = check_niceness(niced)
    session = make_session(model_bytes, threads=threads, providers=providers)
    run, shape = _session_runner(session, input_shape, input_data)
    output = _first_run(run, shape)
    reference_run = None
    if reference_bytes is not None:
        reference_run, reference_input = _session_runner(
            make_session(reference_bytes, threads=threads, providers=providers), reference_shape, None)
        _first_run(reference_run, reference_input)
    for _ in range(max(0, warmup - 1)):
        run()
        if reference_run is not None:
            reference_run()
    started = time.perf_counter()
    timed = time_runs(run, reference_run, min_runs=min_runs, max_runs=max_runs, budget_s=budget_s)
    result: dict[str, Any] = robust_stats(timed.times_ms)
    result.update({"warmup": int(warmup), "timed_s": time.perf_counter() - started, "threads": int(threads),
                   "providers": list(session.get_providers()), "input_shape": list(shape), **host_info(), **state})
    reason = unstable_reason(result)
    result["stable"] = reason is None
    if reason is not None:
        result["unstable"] = reason
    if reference_run is not None:
        result.update({"reference_median_ms": float(np.median(timed.reference_ms)),
                       "reference_runs": len(timed.reference_ms), "relative": timed.relative,
                       "chunk_pairs": len(timed.pair_ratios)})
    if return_output:
        result["output"] = np.asarray(output)
    return result


def measure_onnx_stable(model_bytes: bytes, input_shape: Sequence[int] | None = None, *,
                        attempts: int = STABLE_ATTEMPTS, **options: Any) -> dict[str, Any]:
    """:func:`measure_onnx` repeated, at most ``attempts`` times, until a run is stable.

    Returns the first stable run, or else the least disturbed one (lowest cv) with ``stable:
    False``; ``attempts`` says how many runs were made. This is the function a remote board runs.
    """
    if attempts < 1:
        raise DeviceRuntimeError(f"attempts must be >= 1, got {attempts}")
    best: dict[str, Any] | None = None
    for attempt in range(1, attempts + 1):
        run = measure_onnx(model_bytes, input_shape, **options)
        if best is None or run["stable"] or run["cv"] < best["cv"]:
            best = run
        if run["stable"]:
            break
    assert best is not None
    return {**best, "attempts": attempt}


def chunk_medians(model_bytes: bytes, input_shape: Sequence[int] | None = None, *, threads: int = 1,
                  providers: Sequence[str] = ("CPUExecutionProvider",), chunks: int = 8, chunk_s: float = 0.25,
                  warmup: int = DEFAULT_WARMUP) -> list[float]:
    """Median milliseconds of ``model_bytes`` in each of ``chunks`` back-to-back timing windows.

    The lowest of them is the model's latency in the fastest machine state seen, which is how a
    reference model's anchor is drawn (see :mod:`latency_models.measurement.measure`).
    """
    if chunks < 1 or chunk_s <= 0:
        raise DeviceRuntimeError(f"need chunks >= 1 and chunk_s > 0, got {chunks} and {chunk_s}")
    run, shape = _session_runner(make_session(model_bytes, threads=threads, providers=providers), input_shape, None)
    _first_run(run, shape)
    for _ in range(max(0, warmup - 1)):
        run()
    return [float(np.median(time_runs(run, min_runs=3, budget_s=chunk_s).times_ms)) for _ in range(chunks)]
