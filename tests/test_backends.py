"""Latency backends behind their protocol, RunStats, and latency_for's measure-or-estimate rule.

Real ONNX Runtime sessions and real torch eager runs on a 16 px network; estimates from the
shipped paper calibrations. Nothing is mocked.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest

from latency_models.estimation.base import Estimate
from latency_models.estimation.estimators import NoEstimatorError
from latency_models.latency import LatencyError, latency_for, plan_latency
from latency_models.measurement.backends import (BACKENDS, Backend, LatencyBackend, MeasurementError, ModelSource,
                                                 RunStats, UnknownBackendError, get_backend, register_backend)
from latency_models.measurement.backends.base import BACKENDS as REGISTRY
from latency_models.measurement.backends.torch import time_module
from latency_models.measurement.export_cache import onnx_path
from latency_models.measurement.measure import Measurement, measure
from latency_models.measurement.measure_cache import MeasurementCache
from latency_models.measurement.onnx_export import export_module_bytes
from latency_models.measurement.targets import Target, TargetError, get_target, load_targets
from search_space import Architecture, build_model

TINY = Architecture(widths=(8, 16, 32), depths=(1, 1, 1), stem=8, conv5=32)
SHAPE = (1, 3, 16, 16)
FAST = 0.03


def target_file(tmp_path, body: str) -> str:
    path = tmp_path / "targets.toml"
    path.write_text(body)
    return str(path)


def tiny(tmp_path, backend: str = "onnxruntime", name: str = "tiny-cpu") -> Target:
    return get_target(name, target_file(tmp_path, f'[targets.{name}]\ndescription = "16 px"\nkind = "measure"\n'
                                                  f'backend = "{backend}"\ndevice = "cpu"\ninput_size = 16\n'))


def source(num_classes: int = 10) -> ModelSource:
    module = build_model(TINY, num_classes, 16)
    return ModelSource("tiny", onnx=lambda: export_module_bytes(module, SHAPE), module=lambda: module)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SHUFFLENAS_TARGETS", raising=False)
    return tmp_path / "home"


# -- the two built-in backends ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["onnxruntime", "torch"])
def test_builtin_backend_times_a_tiny_network(tmp_path, name):
    backend = get_backend(name)
    assert isinstance(backend, LatencyBackend) and backend.name == name
    target = tiny(tmp_path, name, name=f"tiny-{name}")
    assert backend.unavailable_reason(target) is None
    versions = backend.versions(target)
    assert versions["machine"] and versions["cpu"] and versions[name]  # the runtime's own version
    stats = backend.time(source(), SHAPE, target, FAST)
    assert isinstance(stats, RunStats) and stats.runs >= 10 and stats.attempts >= 1
    assert 0 < stats.p10_ms <= stats.median_ms <= stats.p90_ms and stats.iqr_ms >= 0
    assert isinstance(stats.stable, bool) and isinstance(stats.niceness, int)
    if name == "onnxruntime":  # what the run learned about its providers joins the versions
        assert stats.versions == {"providers": ["CPUExecutionProvider"]}


def test_backends_report_what_is_missing_here(tmp_path):
    ort_cuda = Target("x", "d", "measure", "onnxruntime", "cpu", ("NoSuchExecutionProvider",))
    assert "lacks NoSuchExecutionProvider" in get_backend("onnxruntime").unavailable_reason(ort_cuda)
    import torch

    cuda = Target("y", "d", "measure", "torch", "cuda")
    reason = get_backend("torch").unavailable_reason(cuda)
    assert (reason is None) == torch.cuda.is_available()
    assert cuda.unavailable_reason() == reason  # Target asks its backend


def test_only_the_onnxruntime_backend_normalises_and_runs_remotely():
    ort, eager = get_backend("onnxruntime"), get_backend("torch")
    assert ort.supports_reference and ort.supports_remote and ort.default_providers("cuda") == ("CUDAExecutionProvider",)
    assert not eager.supports_reference and not eager.supports_remote and eager.default_providers("cpu") is None
    with pytest.raises(MeasurementError, match="torch backend has no reference normalisation"):
        eager.draw_anchor(get_target("local-cpu-torch"), MeasurementCache(), {})


# -- the registry ---------------------------------------------------------------------------------------
def test_registry_knows_the_builtins_without_importing_a_runtime():
    code = ("import sys; from latency_models.measurement.targets import load_targets; "
            "from latency_models.measurement.backends import BACKENDS; t = load_targets(); "
            "assert list(BACKENDS) == ['onnxruntime', 'torch'], list(BACKENDS); "
            "bad = [m for m in ('onnxruntime', 'torch') if m in sys.modules]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_registry_errors_name_the_known_backends():
    assert BACKENDS is REGISTRY and "torch" in BACKENDS and "tflite" not in BACKENDS
    with pytest.raises(UnknownBackendError, match=r"unknown latency backend 'tflite' \(known: onnxruntime, torch\)"):
        get_backend("tflite")
    with pytest.raises(ValueError, match="already exists"):
        register_backend(get_backend("torch"))
    with pytest.raises(TypeError, match="LatencyBackend protocol"):
        register_backend(object())  # type: ignore[arg-type]


def test_a_target_naming_an_unknown_backend_is_one_line_naming_the_known_ones(tmp_path, cli_here):
    path = target_file(tmp_path, '[targets.phone]\ndescription = "d"\nkind = "measure"\nbackend = "tflite"\n'
                                 'device = "cpu"\n')
    with pytest.raises(TargetError, match="backend must be one of onnxruntime, torch, got 'tflite'"):
        load_targets(path)
    result = cli_here("latency", "targets", "--targets-file", path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "backend must be one of onnxruntime, torch, got 'tflite'" in result.stderr


def test_capability_checks_follow_the_backend(tmp_path):
    base = '[targets.t]\ndescription = "d"\nkind = "measure"\nbackend = "torch"\ndevice = "cpu"\n'
    for extra, message in (('providers = ["CPUExecutionProvider"]\n', "providers only apply to the onnxruntime"),
                           ('resources = { "device:b" = 1 }\n', "remote targets .* run the onnxruntime backend only"),
                           ('reference = "1.0x"\n', "reference applies to local onnxruntime cpu targets only")):
        with pytest.raises(TargetError, match=message):
            load_targets(target_file(tmp_path, base + extra))


class EagerCopy(Backend):
    """A backend added at run time: eager torch under another name (what a new runtime file does)."""

    name = "eager-copy"

    def unavailable_reason(self, target: Target) -> str | None:
        return None

    def versions(self, target: Target) -> dict[str, Any]:
        return {"eager-copy": "1"}

    def time(self, model: ModelSource, input_shape: Sequence[int], target: Target, budget: float, *,
             anchor: Any = None) -> RunStats:
        return RunStats.from_dict(time_module(model.module(), input_shape, target, budget))


@pytest.fixture
def eager_copy():
    backend = register_backend(EagerCopy())
    yield backend
    REGISTRY.unregister(backend.name)
    assert "eager-copy" not in BACKENDS


def test_a_registered_backend_is_accepted_by_targets_and_measured(tmp_path, eager_copy):
    target = tiny(tmp_path, "eager-copy", name="copy-cpu")
    assert target.backend == "eager-copy" and target.providers == () and target.unavailable_reason() is None
    m = measure(TINY, target, budget_s=FAST)
    assert m.backend == "eager-copy" and m.versions == {"eager-copy": "1"} and m.runs >= 10 and not m.cached
    assert measure(TINY, target, budget_s=FAST).cached or not m.stable  # cached under the backend's versions
    assert not onnx_path(TINY, 16, 1).exists()  # an eager backend never asked for an export


# -- RunStats and Measurement round trips ---------------------------------------------------------------
def test_run_stats_round_trip_and_measurement_fields(tmp_path):
    stats = get_backend("onnxruntime").time(source(), SHAPE, tiny(tmp_path), FAST)
    assert RunStats.from_dict(stats.to_dict()) == stats
    extra = {**stats.to_dict(), "std_ms": 1.0, "input_shape": [1, 3, 16, 16]}  # a device result's other keys
    assert RunStats.from_dict(extra) == stats
    target = tiny(tmp_path)
    m = Measurement.from_stats(stats, arch=TINY.to_string(), arch_id=TINY.arch_id, target=target, input_size=16,
                               batch=1, versions={"onnxruntime": "x"})
    assert m.versions == {"onnxruntime": "x", "providers": ["CPUExecutionProvider"]} and m.backend == "onnxruntime"
    assert m.stats == RunStats(**{**stats.to_dict(), "versions": {}})
    data = m.to_dict()
    assert data["measured"] is True and data["per_image_ms"] == m.median_ms
    assert Measurement.from_dict(data) == m


# -- latency_for -----------------------------------------------------------------------------------------
def test_latency_for_measures_a_measure_target(tmp_path):
    target = tiny(tmp_path)
    m = latency_for(TINY, target, budget_s=FAST)
    assert isinstance(m, Measurement) and m.target == "tiny-cpu" and m.runs >= 10 and not m.cached
    if m.stable:  # a disturbed run (a busy machine) is never cached
        again = latency_for(TINY, target, budget_s=FAST, allow_measure=False)
        assert isinstance(again, Measurement) and again.cached and again.median_ms == m.median_ms
    assert plan_latency(target).source == "measured"


def test_latency_for_estimates_an_estimate_target():
    est = latency_for(TINY, "paper-arm-sd810")
    assert isinstance(est, Estimate) and est.estimated and est.model == "guideline" and est.median_ms > 0
    plan = plan_latency("paper-arm-sd810")
    assert not plan.measured and plan.source == "estimate:guideline" and plan.reason == "paper-arm-sd810 is estimate-only"
    assert plan.latency(TINY) == est
    with pytest.raises(MeasurementError, match="estimate-only target; use `shufflenas latency predict`"):
        latency_for(TINY, "paper-arm-sd810", mode="measure")


def test_allow_measure_false_never_measures(tmp_path, home):
    target = tiny(tmp_path)
    with pytest.raises(NoEstimatorError, match="no calibrated latency model"):
        latency_for(TINY, target, allow_measure=False)  # not cached, no model: refused, not timed
    with pytest.raises(MeasurementError, match="not in the measurement cache, and measuring is not allowed"):
        latency_for(TINY, target, allow_measure=False, mode="measure")
    assert len(MeasurementCache()) == 0 and not onnx_path(TINY, 16, 1).exists()
    est = latency_for(TINY, "paper-gpu-1080ti", allow_measure=False)
    assert isinstance(est, Estimate) and len(MeasurementCache()) == 0


def test_modes_refuse_with_one_line(tmp_path):
    with pytest.raises(LatencyError, match="unknown latency mode 'sometimes'"):
        latency_for(TINY, tiny(tmp_path), mode="sometimes")
    with pytest.raises(MeasurementError, match="rpi4 runs on a remote device"):
        latency_for(TINY, "rpi4")  # auto: remote targets go through Ray, never estimated silently
    with pytest.raises(LatencyError, match=r"'rpi4' cannot be measured here \(rpi4 runs on a remote device.*"
                                           r"has no calibrated latency model$"):
        plan_latency("rpi4", mode="fallback")
    with pytest.raises(NoEstimatorError, match="no calibrated latency model"):
        latency_for(TINY, tiny(tmp_path), mode="estimate")


def test_importing_latency_models_stays_cheap():
    code = ("import sys, latency_models; "
            "assert 'latency_models.latency' not in sys.modules and 'torch' not in sys.modules; "
            "from latency_models import latency_for; assert callable(latency_for); "
            "assert 'latency_for' in dir(latency_models)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# -- docs/backends.md's worked example is the code it shows -------------------------------------------
def _doc_backend_code() -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "backends.md").read_text(encoding="utf-8")
    part = text.split("## Worked example 2", 1)[1]
    return part.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_documented_tflite_backend_is_one_registrable_file(tmp_path):
    namespace: dict[str, Any] = {"__name__": "tflite_example"}
    exec(compile(_doc_backend_code(), "docs/backends.md", "exec"), namespace)
    backend = namespace["BACKEND"]
    assert isinstance(backend, LatencyBackend) and backend.name == "tflite"
    register_backend(backend)
    try:
        target = tiny(tmp_path, "tflite", name="local-cpu-tflite")
        assert target.backend == "tflite" and target.providers == ()
        reason = target.unavailable_reason()
        try:
            import ai_edge_litert  # noqa: F401
        except ImportError:
            assert reason is not None and "ai-edge-litert is not installed" in reason
            with pytest.raises(MeasurementError, match="unavailable here: ai-edge-litert is not installed"):
                latency_for(TINY, target)
        with pytest.raises(TargetError, match="reference applies to local onnxruntime cpu targets only"):
            load_targets(target_file(tmp_path, '[targets.t]\ndescription = "d"\nkind = "measure"\n'
                                               'backend = "tflite"\ndevice = "cpu"\nreference = "1.0x"\n'))
    finally:
        REGISTRY.unregister("tflite")
