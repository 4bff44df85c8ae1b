"""The guideline model: prediction, fitting, JSON round trip, loading and corrupted files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from latency_models.estimation import guideline

from latency_models.paper import microbench
from latency_models.costs.analytic import architecture_layers
from latency_models.estimation.guideline import CalibrationError, FitSample, GuidelineModel, GuidelineParams, fit
from latency_models.measurement.targets import get_target
from search_space import DEFAULT_SPACE, PRESETS
from search_space.errors import ShufflenasError

TRUE = GuidelineParams(peak_gmacs=40.0, dw_gmacs=4.0, bandwidth_gelems=3.0, movement_gelems=1.0, kernel_us=20.0,
                       elementwise_ns=0.05, offset_ms=0.3)


def _samples(model: GuidelineModel) -> list[FitSample]:
    layers = [tuple(b.layers()) for b in microbench.quick_benchmarks("arm")]
    layers += [tuple(architecture_layers(a, 64)) for a in [*PRESETS.values()][:4] + DEFAULT_SPACE.sample_many(4, seed=1)]
    return [FitSample(ls, model.predict_layers(ls)) for ls in layers]


def test_roofline_terms_add_up():
    model = GuidelineModel(TRUE, "t", batch=1, input_size=224)
    layers = architecture_layers(PRESETS["1.0x"], 224)
    parts = model.breakdown(layers)
    assert sum(parts.values()) == pytest.approx(model.predict_layers(layers))
    assert model.predict(PRESETS["1.0x"]) == pytest.approx(model.predict_layers(layers))
    # a bigger network costs more; batch 8 costs more than batch 1 but less than 8x (weights, overheads)
    assert model.predict(PRESETS["2.0x"]) > model.predict(PRESETS["1.0x"]) > model.predict(PRESETS["0.5x"])
    b8 = model.predict_layers(layers, batch=8)
    assert model.predict_layers(layers) < b8 < 8 * model.predict_layers(layers)


def test_fit_recovers_a_known_model():
    truth = GuidelineModel(TRUE, "t")
    model = fit(_samples(truth), 1, target_name="t", provenance="synthetic")
    quality = model.quality["fit"]
    assert quality["mape"] < 2.0 and quality["spearman"] > 0.99 and quality["n"] == 25
    for arch in DEFAULT_SPACE.sample_many(5, seed=9):
        assert model.predict_layers(architecture_layers(arch, 64)) == pytest.approx(
            truth.predict_layers(architecture_layers(arch, 64)), rel=0.05)


def test_fit_ties_depthwise_when_no_sample_has_one():
    micro_only = _samples(GuidelineModel(TRUE, "t"))[:17]  # the 17 quick micro-benchmarks: no depthwise conv
    model = fit(micro_only, 1)
    assert model.quality["depthwise_tied"] is True
    assert model.params.dw_gmacs == pytest.approx(model.params.peak_gmacs)


def test_fit_rejects_bad_samples():
    layers = tuple(microbench.quick_benchmarks("arm")[0].layers())
    with pytest.raises(CalibrationError):
        fit([(layers, 1.0), (layers, 2.0)], 1)
    with pytest.raises(CalibrationError):
        fit([(layers, 1.0), (layers, 2.0), (layers, -1.0)], 1)


def test_json_round_trip_and_corrupted_files(tmp_path):
    model = GuidelineModel(TRUE, "t", 8, 224, {"fit": {"mape": 1.0}}, "synthetic")
    again = GuidelineModel.from_json(model.to_json())
    assert again.params.to_dict() == model.params.to_dict() and again.batch == 8
    assert again.provenance == "synthetic" and again.name == "guideline" and again.target == "t"
    bad = tmp_path / "broken.json"
    for text in (model.to_json()[:40], "[]", model.to_json().replace('"peak_gmacs": 40.0', '"peak_gmacs": -1')):
        bad.write_text(text)
        with pytest.raises(ShufflenasError, match="broken.json") as info:
            guideline.load_file(bad)
        assert "\n" not in str(info.value)


def test_load_prefers_the_user_calibration(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path))
    paper = get_target("paper-gpu-1080ti")
    shipped = guideline.load(paper)
    assert shipped is not None and shipped.batch == 8 and "paper" in shipped.provenance
    assert guideline.load(get_target("local-cpu")) is None
    user = dataclasses.replace(shipped, params=TRUE, provenance="user")
    user.save(tmp_path / "calibrations" / "paper-gpu-1080ti.json")
    assert guideline.load(paper).provenance == "user"
    (tmp_path / "calibrations" / "local-cpu.json").write_text("{not json")
    with pytest.raises(ShufflenasError, match="local-cpu.json"):
        guideline.load(get_target("local-cpu"))


def test_fit_quality_statistics():
    from latency_models.estimation.quality import prediction_quality

    q = prediction_quality([1.0, 2.0, 3.0], [1.0, 2.2, 2.7])  # measured first, as everywhere
    assert q["mape"] == pytest.approx((0 + 10 + 10) / 3, abs=0.01)
    assert q["max_error"] == pytest.approx(10.0) and q["spearman"] == pytest.approx(1.0)
    assert np.isfinite(q["mape"])


def test_fit_recovers_a_known_misalignment_slowdown():
    truth = GuidelineModel(dataclasses.replace(TRUE, misaligned_slowdown=2.5), "t")
    samples = _samples(truth)
    model = fit(samples, 1, fit_alignment=True)
    assert model.quality["alignment_fitted"] is True
    assert model.params.misaligned_slowdown == pytest.approx(2.5, rel=0.05)
    # without the term the same data fits clearly worse
    assert fit(samples, 1).quality["fit"]["mape"] > 2 * model.quality["fit"]["mape"]


def test_misaligned_convs_and_old_calibration_files():
    from latency_models.costs.analytic import Layer, is_misaligned

    assert not is_misaligned(Layer("a", "conv", 32, 64, 8, 8, 8, 8))
    assert is_misaligned(Layer("b", "conv", 22, 44, 8, 8, 8, 8))
    assert is_misaligned(Layer("dw", "conv", 116, 116, 8, 8, 8, 8, k=3, groups=116))
    assert not is_misaligned(Layer("dw", "conv", 64, 64, 8, 8, 8, 8, k=3, groups=64))
    assert not is_misaligned(Layer("cat", "concat", 22, 22, 8, 8, 8, 8))
    # files written without the term (the shipped paper calibrations) load with no slowdown, and a
    # model without the term writes no key for it
    data = json.loads(GuidelineModel(TRUE, "t").to_json())
    assert "misaligned_slowdown" not in data["params"]
    assert GuidelineModel.from_json(json.dumps(data)).params.misaligned_slowdown == 1.0
