"""Remote measurement through a real local Ray instance that advertises ``device:test-board``."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from latency_models.measure import Measurement, MeasurementError, lookup  # noqa: E402
from latency_models.measure_cache import MeasurementCache  # noqa: E402
from latency_models.targets import Target  # noqa: E402
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
