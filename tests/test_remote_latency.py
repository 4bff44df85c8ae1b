"""Remote measurement through a real local Ray instance that advertises ``device:test-board``."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from latency_models.measurement.measure import Measurement, MeasurementError, lookup  # noqa: E402
from latency_models.measurement.measure_cache import MeasurementCache  # noqa: E402
from latency_models.measurement.targets import Target  # noqa: E402
from search_space import Architecture  # noqa: E402

TINY = Architecture(widths=(8, 16, 32), depths=(1, 1, 1), stem=8, conv5=32)


def board(name: str = "test-board", providers: tuple[str, ...] = ("CPUExecutionProvider",),
          resources: dict | None = None) -> Target:
    return Target(name, "a board joined through Ray (test)", "measure", "onnxruntime", "cpu", providers, 1, 1, 16,
                  {"device:test-board": 1} if resources is None else resources, None)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))


def test_measurement_is_placed_on_the_board_and_cached(ray_session):
    from evaluator.remote_latency import collect, measure_remote, submit_measurement

    target = board()
    cache = MeasurementCache()
    ref = submit_measurement(TINY, target, budget_s=0.05)
    result = ray_session.get(ref, timeout=120)
    assert result["median_ms"] > 0 and result["threads"] == 1 and result["runs"] >= 1
    m = collect(result, TINY, target, cache=cache)
    assert isinstance(m, Measurement) and m.target == "test-board" and m.versions["onnxruntime"]
    if not m.stable:  # a disturbed board result is never cached: measure until one is stable
        m = measure_remote(TINY, target, cache=cache, budget_s=0.05)
    assert lookup(TINY, target, cache) is not None
    again = measure_remote(TINY, target, cache=cache)
    assert again.cached and again.median_ms == m.median_ms
    fresh = measure_remote(TINY, target, cache=False, budget_s=0.05)
    assert not fresh.cached and fresh.arch_id == TINY.arch_id


def test_device_failure_is_one_line_and_not_cached(ray_session):
    from evaluator.remote_latency import measure_remote

    cache = MeasurementCache()
    with pytest.raises(MeasurementError, match="failed on the device: .*lacks NoSuchExecutionProvider") as info:
        measure_remote(TINY, board("broken", providers=("NoSuchExecutionProvider",)), cache=cache)
    assert "\n" not in str(info.value)
    assert len(cache) == 0


def test_missing_board_fails_fast(ray_session):
    from evaluator.remote_latency import measure_remote, submit_measurement

    with pytest.raises(MeasurementError, match="no Ray node advertises device:absent"):
        submit_measurement(TINY, board("absent", resources={"device:absent": 1}))
    with pytest.raises(MeasurementError, match="estimate-only"):
        measure_remote(TINY, "paper-gpu-1080ti", cache=False)


def test_an_unreachable_ray_address_fails_in_seconds_with_one_line(cli, tmp_path):
    done = cli("latency", "measure", "0.5x", "--target", "rpi4", "--ray-address", "127.0.0.1:1",
               env={"SHUFFLENAS_HOME": str(tmp_path / "home")}, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: no Ray cluster answers at '127.0.0.1:1'")
    bad = cli("latency", "measure", "0.5x", "--target", "rpi4", "--ray-address", "nowhere",
              env={"SHUFFLENAS_HOME": str(tmp_path / "home")}, timeout=60)
    assert bad.returncode == 2 and "bad Ray address 'nowhere'" in bad.stderr and bad.stderr.count("\n") == 1


def test_check_ray_address_is_one_helper():
    from evaluator.ray_evaluator import RayConnectionError, check_ray_address
    from search_space.errors import ShufflenasError

    assert issubclass(RayConnectionError, ShufflenasError)
    check_ray_address("auto")
    with pytest.raises(RayConnectionError, match="does not answer|no Ray cluster answers"):
        check_ray_address("127.0.0.1:1", timeout=1.0)


def test_a_board_result_carries_its_process_state_and_leaves_no_export(ray_session):
    import warnings

    from evaluator.remote_latency import collect, submit_measurement
    from latency_models.measurement import device_runtime
    from latency_models.measurement.measure import onnx_path

    target = board()
    result = ray_session.get(submit_measurement(TINY, target, budget_s=0.05), timeout=120)
    assert not onnx_path(TINY, 16, 1).exists()  # shipped from memory
    assert isinstance(result["niceness"], int) and len(result["load_avg"]) == 3
    assert isinstance(result["stable"], bool) and result["attempts"] >= 1
    cache = MeasurementCache()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = collect(result, TINY, target, cache=cache)
    niced = [w for w in caught if issubclass(w.category, device_runtime.NicedWarning)]
    assert len(niced) == (1 if result["niceness"] > 0 else 0)  # Ray nices workers unless told not to
    assert m.niceness == result["niceness"] and m.load_avg == result["load_avg"]
    assert (lookup(TINY, target, cache) is not None) == m.stable  # an unstable result is never cached
    if result["niceness"] > 0:
        strict = Target("strict-board", "refuses niced runs", "measure", "onnxruntime", "cpu",
                        ("CPUExecutionProvider",), 1, 1, 16, {"device:test-board": 1}, None, niced="refuse")
        from evaluator.remote_latency import measure_remote

        with pytest.raises(MeasurementError, match="refusing to measure"):
            measure_remote(TINY, strict, cache=False, budget_s=0.02)
