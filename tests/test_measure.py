"""Measurement: real ONNX Runtime sessions and torch eager on tiny networks, the export and result caches."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from latency_models.measurement import device_runtime
from latency_models.measurement.measure import Measurement, MeasurementError, lookup, measure, measure_module, onnx_path
from latency_models.measurement.measure_cache import MeasurementCache, MeasurementCacheWarning
from latency_models.measurement.onnx_export import export_module_bytes
from latency_models.measurement.targets import Target, get_target
from search_space import Architecture, build_model

TINY = Architecture(widths=(8, 16, 32), depths=(1, 1, 1), stem=8, conv5=32)
FAST = 0.05  # seconds of timed runs: enough for statistics, keeps the suite fast
STATS = ("median_ms", "mean_ms", "p10_ms", "p90_ms", "iqr_ms", "cv", "runs")


def until_stable(m: Measurement, again, tries: int = 5) -> Measurement:
    """A disturbed run (a busy machine) is never cached: measure again, a few times, until one is stable;
    skip when none is (bounded, so a loaded CI machine cannot hang the suite)."""
    for _ in range(tries):
        if m.stable:
            return m
        m = again()
    if not m.stable:
        pytest.skip(f"{tries + 1} measurements in a row were disturbed (a busy machine): nothing to cache")
    return m


def tiny_target(backend: str = "onnxruntime", name: str = "tiny-cpu", batch: int = 1) -> Target:
    providers = ("CPUExecutionProvider",) if backend == "onnxruntime" else ()
    return Target(name, "16 px test target", "measure", backend, "cpu", providers, 1, batch, 16, {}, None)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_measure_onnx_statistics_and_output():
    model = build_model(TINY, num_classes=10, input_size=16).eval()
    shape = (2, 3, 16, 16)
    data = export_module_bytes(model, shape)
    run = device_runtime.measure_onnx(data, shape, threads=1, warmup=2, min_runs=5, budget_s=FAST,
                                      return_output=True)
    for key in STATS:
        assert key in run
    assert run["runs"] >= 5 and run["p10_ms"] <= run["median_ms"] <= run["p90_ms"]
    assert run["providers"][0] == "CPUExecutionProvider" and run["threads"] == 1
    assert run["onnxruntime"] and run["cpu"]
    with torch.no_grad():
        expected = model(torch.from_numpy(device_runtime.example_input(shape))).numpy()
    np.testing.assert_allclose(run["output"], expected, rtol=1e-3, atol=1e-4)
    capped = device_runtime.measure_onnx(data, None, min_runs=3, max_runs=3, budget_s=60)
    assert capped["runs"] == 3 and capped["input_shape"] == list(shape)


def test_device_runtime_errors():
    with pytest.raises(device_runtime.DeviceRuntimeError, match="lacks NoSuchExecutionProvider"):
        device_runtime.measure_onnx(b"", (1, 3, 16, 16), providers=("NoSuchExecutionProvider",))
    with pytest.raises(device_runtime.DeviceRuntimeError, match="cannot load"):
        device_runtime.measure_onnx(b"not a model", (1, 3, 16, 16))
    stats = device_runtime.robust_stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert stats["median_ms"] == 3.0 and stats["iqr_ms"] == 2.0
    assert stats["cv"] == pytest.approx(2.0 / 1.349 / 3.0)


def test_measure_caches_export_and_result(home):
    target = tiny_target(batch=2)
    first = measure(TINY, target, budget_s=FAST)
    assert isinstance(first, Measurement) and not first.cached
    assert (first.arch, first.arch_id, first.target, first.batch, first.input_size) == (
        TINY.to_string(), TINY.arch_id, "tiny-cpu", 2, 16)
    assert first.median_ms > 0 and first.versions["onnxruntime"]
    assert not onnx_path(TINY, 16, 2).exists()  # measured from bytes: a cached candidate keeps no export
    data = first.to_dict()
    assert json.loads(json.dumps(data))["median_ms"] == first.median_ms
    for key in STATS + ("target", "device", "versions"):
        assert key in data
    first = until_stable(first, lambda: measure(TINY, target, budget_s=FAST))
    second = measure(TINY, target, budget_s=FAST)
    assert second.cached and second.median_ms == first.median_ms
    assert lookup(TINY, target) == second
    fresh = measure(TINY, target, cache=False, budget_s=FAST)
    assert not fresh.cached
    changed = Target("tiny-cpu", "same name, 2 threads", "measure", "onnxruntime", "cpu", ("CPUExecutionProvider",),
                     2, 2, 16, {}, None)
    assert not measure(TINY, changed, budget_s=FAST).cached  # a different config is a different key


def test_measure_torch_backend_and_module():
    result = measure(TINY, tiny_target("torch"), cache=False, budget_s=FAST)
    assert result.backend == "torch" and result.runs >= device_runtime.DEFAULT_MIN_RUNS
    block = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 1), torch.nn.ReLU())
    cache = MeasurementCache()
    for backend in ("onnxruntime", "torch"):
        m = measure_module(block, (1, 8, 8, 8), tiny_target(backend, name=f"t-{backend}"), key="g1-8x8",
                           budget_s=FAST, cache=cache)
        assert m.arch is None and m.arch_id == "g1-8x8" and m.input_size == 8 and not m.cached
    assert measure_module(block, (1, 8, 8, 8), tiny_target("torch", name="t-torch"), key="g1-8x8",
                          cache=cache).cached
    with pytest.raises(MeasurementError, match="N, C, H, W"):
        measure_module(block, (8, 8), tiny_target(), key="bad")


def test_measure_refuses_what_it_cannot_time():
    with pytest.raises(MeasurementError, match="paper-gpu-1080ti is an estimate-only target; use `shufflenas latency predict`"):
        measure(TINY, "paper-gpu-1080ti")
    with pytest.raises(MeasurementError, match="remote device"):
        measure(TINY, "rpi4")
    if not torch.cuda.is_available():
        with pytest.raises(MeasurementError, match="unavailable here"):
            measure(TINY, get_target("local-cuda"))


WRITER = """
import sys
from latency_models.measurement.measure_cache import MeasurementCache
cache, worker = MeasurementCache(sys.argv[1]), int(sys.argv[2])
for i in range(20):
    cache.put({"key": f"{worker}-{i}"}, {"median_ms": float(i), "worker": worker})
"""


def test_cache_concurrent_writers(tmp_path):
    """Four processes (importing only the cache module, so they start fast) write at once."""
    path = tmp_path / "c.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w)], stderr=subprocess.PIPE)
             for w in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
    cache = MeasurementCache(path)
    assert len(cache) == 80 and cache.get({"key": "3-19"})["worker"] == 3


def test_corrupted_cache_is_ignored_with_a_warning(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    cache = MeasurementCache(path)
    with pytest.warns(MeasurementCacheWarning, match="unusable"):
        assert cache.get({"key": "x"}) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.put({"key": "x"}, {"a": 1})  # already disabled: no second warning, no error
    assert not cache.usable
    with pytest.warns(MeasurementCacheWarning):
        assert not measure(TINY, tiny_target(), cache=MeasurementCache(path), budget_s=FAST).cached


def _tiny_targets_file(tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text('[targets.tiny]\ndescription = "16 px"\nkind = "measure"\nbackend = "onnxruntime"\n'
                    'device = "cpu"\ninput_size = 16\n')
    return path


def test_cli_measure(cli_here, tmp_path, home):
    env = {"SHUFFLENAS_HOME": str(home)}
    targets = str(_tiny_targets_file(tmp_path))
    args = ("latency", "measure", TINY.to_string(), "--target", "tiny", "--targets-file", targets, "--budget-s", "0.05")
    first = cli_here(*args, "--json", env=env)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["target"] == "tiny" and data["median_ms"] > 0 and not data["cached"]
    second = cli_here(*args, env=env)
    assert second.returncode == 0 and "(cached)" in second.stdout and "median" in second.stdout


@pytest.mark.parametrize("target, needle", [
    ("paper-arm-sd810", "estimate-only"), ("rpi4", "--ray-address")])
def test_cli_measure_errors(cli_here, target, needle, home):
    result = cli_here("latency", "measure", "0.5x", "--target", target, env={"SHUFFLENAS_HOME": str(home), "RAY_ADDRESS": ""})
    assert result.returncode == 2 and needle in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_num_classes_is_part_of_the_key():
    target = tiny_target()
    cache = MeasurementCache()
    ten = measure(TINY, target, cache=cache, budget_s=FAST, num_classes=10)
    assert not ten.cached
    ten = until_stable(ten, lambda: measure(TINY, target, cache=cache, budget_s=FAST, num_classes=10))
    assert not measure(TINY, target, cache=cache, budget_s=FAST).cached
    assert measure(TINY, target, cache=cache, budget_s=FAST, num_classes=10).cached
    assert lookup(TINY, target, cache, num_classes=10) is not None


def ref_target(reference: str = "0.5x") -> Target:
    return Target("tiny-ref", "16 px test target with a reference", "measure", "onnxruntime", "cpu",
                  ("CPUExecutionProvider",), 1, 1, 16, {}, None, reference)


def test_time_runs_alternates_chunks_within_the_budget():
    calls: list[str] = []
    timed = device_runtime.time_runs(lambda: calls.append("c"), lambda: calls.append("r"),
                                     min_runs=4, max_runs=50, budget_s=0.0, chunk_s=0.0)
    assert len(timed.times_ms) == 4 and len(timed.reference_ms) == 4 and len(timed.pair_ratios) == 4
    assert "".join(calls) == "crcrcrcr"  # one call per chunk when chunks are empty of time
    assert timed.relative == pytest.approx(float(np.median(timed.pair_ratios)))
    alone = device_runtime.time_runs(lambda: None, min_runs=7, max_runs=7, budget_s=60)
    assert len(alone.times_ms) == 7 and alone.reference_ms == [] and alone.pair_ratios == []
    with pytest.raises(device_runtime.DeviceRuntimeError, match="no reference"):
        _ = alone.relative


def test_measure_onnx_with_a_reference_reports_the_ratio():
    shape = (1, 3, 16, 16)
    small = export_module_bytes(build_model(TINY, num_classes=10, input_size=16).eval(), shape)
    big = export_module_bytes(build_model(Architecture(widths=(32, 64, 128), depths=(2, 2, 2), stem=16, conv5=128),
                                          num_classes=10, input_size=16).eval(), shape)
    run = device_runtime.measure_onnx(small, shape, budget_s=FAST, reference_bytes=big)
    assert run["reference_runs"] >= 1 and run["reference_median_ms"] > 0
    assert run["chunk_pairs"] >= 1 and run["relative"] > 0
    medians = device_runtime.chunk_medians(big, shape, chunks=3, chunk_s=0.01)
    assert len(medians) == 3 and min(medians) > 0
    with pytest.raises(device_runtime.DeviceRuntimeError, match="chunks"):
        device_runtime.chunk_medians(big, shape, chunks=0)


def test_reference_target_reports_medians_at_the_anchor_speed():
    from latency_models.measurement.measure import reference_anchor

    target = ref_target()
    cache = MeasurementCache()
    first = measure(TINY, target, budget_s=FAST, cache=False)
    anchor = reference_anchor(target)
    assert reference_anchor(target) == anchor and first.anchor_ms == anchor.anchor_ms  # drawn once, then read back
    assert len(anchor.chunk_medians_ms) == 12 and anchor.anchor_ms == min(anchor.chunk_medians_ms)
    assert first.reference == "0.5x"  # as given (targets read from TOML hold the canonical string)
    assert first.raw_median_ms > 0 and first.slowdown > 0 and 1 <= first.attempts <= 3
    assert first.median_ms == pytest.approx(first.raw_median_ms / first.slowdown)
    assert first.p10_ms <= first.median_ms <= first.p90_ms
    second = measure(TINY, target, budget_s=FAST)
    assert lookup(TINY, target, cache).raw_median_ms == second.raw_median_ms  # the new fields survive the cache
    plain = measure(TINY, tiny_target(), budget_s=FAST, cache=False)
    assert plain.raw_median_ms is None and plain.slowdown is None and plain.reference is None


def test_a_redrawn_anchor_rescales_cached_measurements():
    from latency_models.measurement import reference
    from latency_models.measurement.measure import reference_anchor

    target = ref_target()
    stored = until_stable(measure(TINY, target, budget_s=FAST), lambda: measure(TINY, target, budget_s=FAST))
    old = reference_anchor(target)
    new = reference_anchor(target, redraw=True)
    assert reference_anchor(target) == new
    again = measure(TINY, target, budget_s=FAST)
    assert again.cached and again.anchor_ms == new.anchor_ms
    assert again.median_ms == pytest.approx(stored.median_ms * new.anchor_ms / old.anchor_ms)
    assert again.raw_median_ms == stored.raw_median_ms  # what the run saw does not change
    moved = reference.rescale({"median_ms": 2.0, "mean_ms": 2.0, "p10_ms": 1.0, "p90_ms": 3.0, "iqr_ms": 1.0,
                               "slowdown": 1.0, "anchor_ms": 4.0}, dataclasses.replace(new, anchor_ms=8.0))
    assert moved["median_ms"] == 4.0 and moved["slowdown"] == 0.5 and moved["anchor_ms"] == 8.0


def test_heavily_disturbed_runs_are_repeated():
    from latency_models.measurement import reference

    anchor = reference.Anchor(1.0, "0.5x", (1.0,), 0.0)
    slowdowns = iter([2.0, 1.5, 1.3])
    runs = []

    def run_once():  # a result as measure_onnx gives it: the candidate is always 2x the reference,
        slow = next(slowdowns)  # whose own time is `slow` x the anchor on this run
        runs.append(slow)
        return {"median_ms": 2.0 * slow, "mean_ms": 2.0 * slow, "p10_ms": 1.8 * slow, "p90_ms": 2.2 * slow,
                "iqr_ms": 0.1 * slow, "relative": 2.0}

    best = reference.measure_normalised(run_once, anchor)
    assert runs == [2.0, 1.5, 1.3] and best["attempts"] == 3
    assert best["slowdown"] == pytest.approx(1.3) and best["median_ms"] == pytest.approx(2.0)
    calm = reference.measure_normalised(lambda: {"median_ms": 2.2, "mean_ms": 2.2, "p10_ms": 2.0, "p90_ms": 2.4,
                                                 "iqr_ms": 0.1, "relative": 2.0}, anchor)
    assert calm["attempts"] == 1 and calm["slowdown"] == pytest.approx(1.1)


def test_cli_anchor(cli_here, tiny_targets):
    env = {"SHUFFLENAS_HOME": os.environ["SHUFFLENAS_HOME"], "SHUFFLENAS_TARGETS": str(tiny_targets)}
    shown = cli_here("latency", "anchor", "--target", "tiny-ref", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["target"] == "tiny-ref" and data["anchor_ms"] == min(data["chunk_medians_ms"])
    again = cli_here("latency", "anchor", "--target", "tiny-ref", env=env)
    assert again.returncode == 0 and f"{data['anchor_ms']:.3f} ms" in again.stdout and "reference 0.5x" in again.stdout
    measured = cli_here("latency", "measure", "0.5x", "--target", "tiny-ref", "--budget-s", "0.05", env=env)
    assert measured.returncode == 0 and "at the anchor of reference 0.5x" in measured.stdout
    for target in ("tiny-cpu", "no-such-target"):
        bad = cli_here("latency", "anchor", "--target", target, env=env)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
