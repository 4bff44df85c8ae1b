"""What a measurement records about the process that timed it, and what a disturbed run becomes.

Real ONNX Runtime sessions on a 16x16 network; niceness is raised for real with ``os.nice`` in a
subprocess (a process can never lower it again, so never in the test process itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from latency_models.measurement import device_runtime
from latency_models.measurement.measure import Measurement, cache_fields, from_device_result, measure, onnx_path
from latency_models.measurement.measure_cache import MeasurementCache
from latency_models.measurement.onnx_export import export_bytes
from latency_models.measurement.targets import TargetError, get_target, load_targets
from search_space import Architecture, get_preset

TINY = Architecture(widths=(8, 16, 32), depths=(1, 1, 1), stem=8, conv5=32)
FAST = 0.05

# Per-run milliseconds as seen on real machines: a quiet in-process run of 0.5x (2.4 ms), and the
# busy niced board whose median came back at 90-118 ms (runs fast only now and then).
QUIET = [2.38, 2.41, 2.40, 2.39, 2.44, 2.42, 2.37, 2.45, 2.40, 2.43, 2.39, 2.52]
BUSY_BOARD = [2.5, 2.6, 95.0, 110.0, 2.4, 118.0, 90.0, 60.0, 104.0, 2.7, 99.0, 3.1]
SOMETIMES_FAST = [2.4] * 3 + [5.5] * 9  # every run slowed alike after the first few: median 2.3x p10


def test_the_stability_rule_on_real_timing_lists():
    assert device_runtime.unstable_reason(device_runtime.robust_stats(QUIET)) is None
    busy = device_runtime.unstable_reason(device_runtime.robust_stats(BUSY_BOARD))
    assert busy is not None and busy.startswith("robust cv")
    shifted = device_runtime.unstable_reason(device_runtime.robust_stats(SOMETIMES_FAST))
    assert shifted is not None and "x p10" in shifted
    # a 20-microsecond block whose runs jitter by a few microseconds: large relative spread, no disturbance
    jitter = [0.014, 0.015, 0.013, 0.030, 0.014, 0.026, 0.013, 0.031, 0.014, 0.028, 0.013, 0.029]
    assert device_runtime.robust_stats(jitter)["cv"] > device_runtime.MAX_STABLE_CV
    assert device_runtime.unstable_reason(device_runtime.robust_stats(jitter)) is None


_NICED = """
import json, os, sys, warnings
from latency_models.measurement import device_runtime
os.nice({nice})
model = open({model!r}, "rb").read()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        r = device_runtime.measure_onnx(model, (1, 3, 16, 16), min_runs=3, max_runs=5, niced={policy!r})
    except device_runtime.DeviceRuntimeError as exc:
        print(json.dumps({{"error": str(exc)}}))
        sys.exit(0)
print(json.dumps({{"niceness": r["niceness"], "load_avg": r["load_avg"], "stable": r["stable"],
                  "warnings": [str(w.message) for w in caught if issubclass(w.category, device_runtime.NicedWarning)]}}))
"""


def _device_side(tmp_path, nice: int, policy: str) -> dict:
    model = tmp_path / "tiny.onnx"
    model.write_bytes(export_bytes(TINY, 16))
    code = _NICED.format(nice=nice, model=str(model), policy=policy)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_device_side_records_niceness_and_load_and_warns_when_niced(tmp_path):
    niced = _device_side(tmp_path, 7, "warn")
    assert niced["niceness"] >= 7 and len(niced["load_avg"]) == 3
    assert len(niced["warnings"]) == 1 and "niceness" in niced["warnings"][0]
    assert "RAY_worker_niceness=0" in niced["warnings"][0]
    refused = _device_side(tmp_path, 7, "refuse")
    assert refused["error"].startswith("refusing to measure") and "\n" not in refused["error"]


def test_an_unniced_process_records_zero_and_does_not_warn(tmp_path):
    if os.nice(0) > 0:
        pytest.skip("the test process itself runs niced")
    plain = _device_side(tmp_path, 0, "refuse")
    assert plain["niceness"] == 0 and plain["warnings"] == []


def test_niced_target_option(tmp_path):
    good = tmp_path / "t.toml"
    good.write_text('[targets.strict]\ndescription = "refuses niced runs"\nkind = "measure"\n'
                    'backend = "onnxruntime"\ndevice = "cpu"\ninput_size = 16\nniced = "refuse"\n')
    assert load_targets(good)["strict"].niced == "refuse"
    assert get_target("local-cpu").niced == "warn"  # the default
    bad = tmp_path / "bad.toml"
    bad.write_text('[targets.local-cpu]\nniced = "sometimes"\n')
    with pytest.raises(TargetError, match="niced must be one of warn, refuse"):
        load_targets(bad)


def test_a_niced_process_refuses_a_refusing_target(tmp_path):
    targets = tmp_path / "t.toml"
    targets.write_text('[targets.strict]\ndescription = "refuses niced runs"\nkind = "measure"\n'
                       'backend = "onnxruntime"\ndevice = "cpu"\ninput_size = 16\nniced = "refuse"\n')
    code = ("import os\nos.nice(5)\nfrom experiments.cli.main import main\n"
            f"raise SystemExit(main(['latency', 'measure', '0.5x', '--target', 'strict', '--targets-file', "
            f"{str(targets)!r}, '--budget-s', '0.05']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SHUFFLENAS_HOME": str(tmp_path / "home")})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "refusing to measure" in lines[0], done.stderr


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_measurements_keep_their_provenance_in_the_cache(home, tiny_targets):
    target = get_target("tiny-cpu")
    cache = MeasurementCache()
    first = measure(TINY, target, cache=cache, budget_s=FAST)
    while not first.stable:  # a disturbed run is not cached: measure until one is
        first = measure(TINY, target, cache=cache, budget_s=FAST)
    assert first.niceness == os.nice(0) and len(first.load_avg) == 3
    data = first.to_dict()
    assert data["stable"] is True and data["niceness"] == os.nice(0) and "load_avg" in data
    again = measure(TINY, target, cache=cache, budget_s=FAST)
    assert again.cached and again.niceness == first.niceness and again.load_avg == first.load_avg


def test_an_unstable_result_is_returned_but_never_cached(home, tiny_targets, monkeypatch):
    target = get_target("tiny-cpu")
    cache = MeasurementCache()
    # a rule no real run passes: every attempt is "disturbed"
    monkeypatch.setattr(device_runtime, "MAX_STABLE_CV", -1.0)
    monkeypatch.setattr(device_runtime, "JITTER_FLOOR_MS", -1.0)
    m = measure(TINY, target, cache=cache, budget_s=0.02)
    assert not m.stable and m.unstable.startswith("robust cv") and m.attempts == device_runtime.STABLE_ATTEMPTS
    assert len(cache) == 0 and not measure(TINY, target, cache=cache, budget_s=0.02).cached
    # a board's result with the busy spread: converted, not stored
    real = device_runtime.measure_onnx(export_bytes(TINY, 16), (1, 3, 16, 16), budget_s=0.02)
    busy = {**real, **device_runtime.robust_stats(BUSY_BOARD), "stable": False, "unstable": "robust cv 1.1 > 0.4"}
    collected = from_device_result(busy, TINY, target, cache=cache)
    assert not collected.stable and collected.median_ms > 50 and len(cache) == 0


def test_old_cache_rows_without_the_new_fields_still_load(home, tiny_targets):
    target = get_target("tiny-cpu")
    cache = MeasurementCache()
    old = {"arch": TINY.to_string(), "arch_id": TINY.arch_id, "target": target.name, "backend": "onnxruntime",
           "device": "cpu", "input_size": 16, "batch": 1, "median_ms": 0.5, "mean_ms": 0.5, "p10_ms": 0.45,
           "p90_ms": 0.55, "iqr_ms": 0.05, "cv": 0.07, "runs": 100, "versions": {}, "cached": False}
    from latency_models.measurement.measure import software_versions

    cache.put(cache_fields(TINY.arch_id, target, input_size=16, batch=1, versions=software_versions(target)), old)
    hit = measure(TINY, target, cache=cache, budget_s=FAST)
    assert hit.cached and hit.median_ms == 0.5 and hit.stable and hit.niceness is None and hit.load_avg is None
    assert Measurement.from_dict(old).stable


def test_a_measured_candidate_leaves_no_export_but_the_reference_keeps_its_own(home, tiny_targets):
    target = get_target("tiny-ref")  # normalised to the 0.5x reference
    candidate_export = onnx_path(TINY, 16, 1)
    candidate_export.parent.mkdir(parents=True, exist_ok=True)
    candidate_export.write_bytes(export_bytes(TINY, 16))  # left by an earlier run
    m = measure(TINY, target, budget_s=FAST)
    while not m.stable:
        m = measure(TINY, target, budget_s=FAST)
    assert not candidate_export.exists()
    assert onnx_path(get_preset("0.5x"), 16, 1).exists()  # the reference is timed with every candidate
    other = Architecture(widths=(12, 24, 32), depths=(1, 1, 1), stem=8, conv5=32)
    measure(other, get_target("tiny-cpu"), budget_s=FAST)
    assert not onnx_path(other, 16, 1).exists()  # exported in memory, never written
    measure(other, get_target("tiny-cpu"), cache=False, budget_s=FAST)
    assert onnx_path(other, 16, 1).exists()  # uncached: the export is kept for next time


def test_measure_onnx_stable_repeats_a_disturbed_run(monkeypatch):
    model = export_bytes(TINY, 16)
    monkeypatch.setattr(device_runtime, "MAX_STABLE_CV", -1.0)
    monkeypatch.setattr(device_runtime, "JITTER_FLOOR_MS", -1.0)
    r = device_runtime.measure_onnx_stable(model, (1, 3, 16, 16), attempts=2, budget_s=0.02)
    assert r["attempts"] == 2 and r["stable"] is False and "unstable" in r
    monkeypatch.setattr(device_runtime, "MAX_STABLE_CV", 1e9)
    monkeypatch.setattr(device_runtime, "MAX_MEDIAN_OVER_P10", 1e9)
    calm = device_runtime.measure_onnx_stable(model, (1, 3, 16, 16), budget_s=0.02)
    assert calm["attempts"] == 1 and calm["stable"] is True
    with pytest.raises(device_runtime.DeviceRuntimeError, match="attempts"):
        device_runtime.measure_onnx_stable(model, (1, 3, 16, 16), attempts=0)


def test_unknown_niced_policy_is_refused():
    with pytest.raises(device_runtime.DeviceRuntimeError, match="niced must be one of"):
        device_runtime.check_niceness("maybe")
