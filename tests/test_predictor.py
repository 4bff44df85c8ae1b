"""The learned latency predictor: real ONNX Runtime measurements on tiny networks, JSON round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latency_models.estimation import predictor
from latency_models.estimation.estimators import estimate, get_estimator
from latency_models.estimation.features import FEATURE_NAMES, feature_frame, features
from latency_models.measurement.targets import get_target
from search_space import DEFAULT_SPACE, PRESETS, Architecture
from search_space.errors import ShufflenasError

@pytest.fixture
def tiny(tiny_targets):
    return get_target("tiny-cpu")


def tiny_archs(n: int) -> list[Architecture]:
    widths = [(8, 16, 32), (8, 16, 48), (12, 24, 32), (16, 16, 32), (8, 24, 48), (16, 32, 64), (12, 16, 24),
              (8, 32, 32), (16, 24, 48), (20, 24, 40)]
    return [Architecture(widths=w, depths=(1, 1 + i % 2, 1), stem=8, conv5=32) for i, w in enumerate(widths[:n])]


def test_features_are_complete_and_consistent():
    f = features(PRESETS["1.0x"])
    assert list(f) == list(FEATURE_NAMES)
    assert f["flops"] == pytest.approx(sum(f[f"{s}_flops"] for s in ("stem", "stage2", "stage3", "stage4", "head")))
    assert f["flops"] == pytest.approx(sum(f[f"{op}_flops"] for op in
                                           ("pointwise", "depthwise", "dense", "fc", "movement", "pool")))
    assert f["w3"] == 232 and f["d3"] == 8 and f["num_units"] == 16
    frame = feature_frame([PRESETS["0.5x"], PRESETS["1.0x"]], input_size=16)
    assert frame.shape == (2, len(FEATURE_NAMES)) and (frame["input_size"] == 16).all()


def test_predictor_learns_a_known_cost_law_on_held_out_architectures():
    """Latency that is a (nonlinear) function of the analytic costs is learned to within a few percent."""
    archs = DEFAULT_SPACE.sample_many(70, seed=5)
    frame = feature_frame(archs)
    law = (frame["pointwise_flops"] / 4e8 + frame["depthwise_flops"] / 5e7 + frame["movement_mac"] / 3e8
           + frame["kernels"] * 0.004 + 0.3).to_numpy()
    model = predictor.LatencyPredictor("law", 224, 1, archs[:50], list(law[:50]))
    quality = predictor.accuracy(law[50:], model.predict_many(archs[50:]))
    assert quality["within_10"] >= 0.9 and quality["spearman"] > 0.95


def test_train_save_load_and_registry(tiny):
    archs = tiny_archs(8)
    trained = predictor.train(tiny, archs, budget_s=0.02)
    path = predictor.predictor_path("tiny-cpu")
    assert path.is_file()
    data = json.loads(path.read_text())
    assert data["format"] == predictor.FORMAT and len(data["training"]) == 8
    assert {"created", "software", "measured_with"} <= set(data["provenance"])
    assert {"mape", "within_10", "within_5", "spearman", "n"} <= set(data["quality"])
    loaded = predictor.load(tiny)
    assert loaded is not None and loaded.name == "predictor" and loaded.target == "tiny-cpu"
    probe = Architecture(widths=(12, 20, 36), depths=(1, 2, 1), stem=8, conv5=32)
    assert loaded.predict(probe) == pytest.approx(trained.predict(probe))  # deterministic refit
    assert loaded.predict(probe) > 0
    assert get_estimator(tiny, "predictor").quality == loaded.quality
    assert predictor.load(tiny) is loaded  # fitted once per process while the file is unchanged
    trained.quality = {**trained.quality, "note": "retrained"}
    trained.save()
    assert predictor.load(tiny).quality.get("note") == "retrained"
    est = estimate(probe, tiny, "predictor")
    assert est.model == "predictor" and est.estimated and est.median_ms == pytest.approx(loaded.predict(probe))


def test_load_without_a_file_is_none(tiny):
    assert predictor.load(tiny) is None


@pytest.mark.parametrize("content, message", [
    ('{"format": "shufflenas-latency-predictor", "version": 1, "tra', "corrupted or truncated"),
    ("\x00\x01garbage", "corrupted or truncated"),
    ('{"format": "something-else"}', "invalid"),
    ('{"format": "shufflenas-latency-predictor", "version": 1, "target": "tiny-cpu", "input_size": 16, "batch": 1,'
     ' "training": [{"arch": "not-an-arch", "latency_ms": 1}]}', "invalid"),
])
def test_bad_files_raise_one_line_errors_naming_the_file(tiny, content, message):
    path = predictor.predictor_path("tiny-cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    with pytest.raises(ShufflenasError) as info:
        predictor.load(tiny)
    text = str(info.value)
    assert str(path) in text and message in text and "\n" not in text


def test_fit_rejects_bad_input(tiny):
    with pytest.raises(ShufflenasError, match="at least 4"):
        predictor.fit(tiny, tiny_archs(3), [1.0, 2.0, 3.0])
    with pytest.raises(ShufflenasError, match="positive"):
        predictor.LatencyPredictor("t", 16, 1, tiny_archs(5), [1.0, 2.0, -1.0, 3.0, 4.0])


def test_cli_train_predictor_errors(cli_here, tmp_path):
    env = {"SHUFFLENAS_HOME": str(tmp_path)}
    result = cli_here("latency", "train-predictor", "--target", "paper-arm-sd810", "--samples", "5", env=env)
    assert result.returncode == 2 and result.stderr.startswith("error:") and "estimate-only" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli_here("latency", "train-predictor", "--target", "local-cpu", "--samples", "0", env=env)
    assert result.returncode == 2 and "samples" in result.stderr and "Traceback" not in result.stderr


def test_accuracy_metrics():
    q = predictor.accuracy([10.0, 20.0, 30.0, 40.0], [10.5, 23.0, 30.0, 39.0])
    assert q["within_10"] == pytest.approx(0.75) and q["within_5"] == pytest.approx(0.75)
    assert q["mape"] == pytest.approx(100 * np.mean([0.05, 0.15, 0.0, 0.025]))
    assert q["spearman"] == pytest.approx(1.0)
