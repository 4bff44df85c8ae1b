"""The per-block lookup table: decomposition, real block measurements (ONNX Runtime, 16x16), files."""

from __future__ import annotations

import json
import os

import pytest
import torch

from latency_models.estimation import lut
from latency_models.costs.analytic import architecture_layers
from latency_models.estimation.estimators import estimate
from latency_models.measurement.targets import get_target
from search_space import PRESETS, Architecture, build_model
from search_space.errors import ShufflenasError

A = Architecture(widths=(8, 16, 32), depths=(2, 2, 1), stem=8, conv5=32)
B = Architecture(widths=(8, 16, 48), depths=(2, 3, 1), stem=8, conv5=32)   # shares stem + stage-2 + stage-3 s2 unit
C = Architecture(widths=(12, 24, 32), depths=(1, 1, 2), stem=8, conv5=32)


@pytest.fixture
def tiny(tiny_targets):
    return get_target("tiny-cpu")


@pytest.mark.parametrize("size", [224, 16])
def test_decomposition_covers_the_network(size):
    arch = PRESETS["1.0x"]
    blocks = lut.decompose(arch, size)
    assert sum(count for _, count in blocks) == 2 + arch.num_units
    keys = [b.key for b, _ in blocks]
    assert len(keys) == len(set(keys)) == 8  # stem, 3 x (stride-2, stride-1), head
    units = [b for b, _ in blocks if b.kind == "unit"]
    first_h = {224: 56, 16: 16}[size]
    assert [u.h for u in units] == [first_h, first_h // 2, first_h // 2, first_h // 4, first_h // 4, first_h // 8]
    # the shapes agree with the analytic layer list of the whole network
    layers = architecture_layers(arch, size)
    assert blocks[-1][0].h == next(l for l in layers if l.name == "conv5").h_in


def test_blocks_chain_into_the_whole_network():
    """Each block's output has the next block's input shape, and the parameters add up to the network's."""
    blocks = lut.decompose(A, 16)
    x = torch.zeros(blocks[0][0].input_shape(1))
    params = 0
    for i, (block, count) in enumerate(blocks):
        module = block.module().eval()
        params += count * sum(p.numel() for p in module.parameters())
        for _ in range(count):
            with torch.no_grad():
                x = module(x)
        if block.kind != "head":
            assert tuple(x.shape) == blocks[i + 1][0].input_shape(1)
    assert tuple(x.shape) == (1, lut.NUM_CLASSES)
    assert params == sum(p.numel() for p in build_model(A, 1000, 16).parameters())


def test_incremental_build_calibrate_save_and_load(tiny):
    assert lut.load(tiny) is None
    table = lut.open_table(tiny)
    table.auto_extend = False
    measured = table.extend([A], budget_s=0.02)
    assert measured == len(lut.decompose(A, 16)) == len(table.blocks)
    missing_b = table.missing([B])
    assert 0 < len(missing_b) < len(lut.decompose(B, 16))  # only B's new blocks
    assert table.extend([B], budget_s=0.02) == len(missing_b)
    assert table.extend([A, B]) == 0
    assert all(entry["ms"] > 0 for entry in table.blocks.values())

    expected = 2.0 * table.block_sum(A) + 0.5
    fit = table.calibrate([A, B], [expected, 2.0 * table.block_sum(B) + 0.5])
    assert table.scale == pytest.approx(2.0) and table.offset == pytest.approx(0.5)
    assert fit["mape"] == pytest.approx(0.0, abs=1e-6)
    assert table.predict(A) == pytest.approx(expected)
    path = table.save()
    assert path == lut.lut_path("tiny-cpu")
    data = json.loads(path.read_text())
    assert data["format"] == lut.FORMAT and data["target"] == "tiny-cpu" and "created" in data["provenance"]

    loaded = lut.load(tiny)
    assert loaded is not None and loaded.name == "lut"
    assert loaded.predict(A) == pytest.approx(expected)
    assert estimate(A, tiny, "lut").median_ms == pytest.approx(expected)
    # a new architecture measures its missing blocks on demand and the table grows on disk
    before = len(loaded.blocks)
    assert loaded.predict(C) > 0
    assert len(json.loads(path.read_text())["blocks"]) > before


def test_build_measures_whole_networks_for_the_offset(tiny):
    D = Architecture(widths=(16, 16, 32), depths=(1, 2, 1), stem=8, conv5=32)
    table = lut.build(tiny, [A, B], calibration_archs=[A, B, C, D], budget_s=0.02)
    assert len(table.networks) == 4 and table.scale > 0
    assert "calibration_fit" in table.quality
    assert table.quality["n"] == 4 and table.quality["mape"] >= 0  # leave-one-out, used by estimate("auto")
    assert "software" in table.provenance
    assert lut.load(tiny).blocks.keys() == table.blocks.keys()


@pytest.mark.parametrize("content, message", [
    ('{"format": "shufflenas-latency-lut", "version": 1, "blocks": {"stem:', "corrupted or truncated"),
    ("", "corrupted or truncated"),
    ('[1, 2, 3]', "invalid"),
    ('{"format": "shufflenas-latency-lut", "version": 1, "target": "tiny-cpu", "scale": 1, "offset": 0,'
     ' "blocks": {"stem:x": {"ms": "fast"}}}', "invalid"),
    ('{"format": "shufflenas-latency-lut", "version": 1, "target": "other", "scale": 1, "offset": 0, "blocks": {}}',
     "not 'tiny-cpu'"),
])
def test_bad_files_raise_one_line_errors_naming_the_file(tiny, content, message):
    path = lut.lut_path("tiny-cpu")
    path.write_text(content)
    with pytest.raises(ShufflenasError) as info:
        lut.load(tiny)
    text = str(info.value)
    assert str(path) in text and message in text and "\n" not in text


def test_estimate_only_target_cannot_build(tiny):
    with pytest.raises(ShufflenasError, match="estimate-only"):
        lut.build(get_target("paper-arm-sd810"), [A])


def test_cli_build_lut_bad_input(cli_here, tmp_path):
    env = {"SHUFFLENAS_HOME": str(tmp_path)}
    result = cli_here("latency", "build-lut", "--target", "nope", env=env)
    assert result.returncode == 2 and result.stderr.startswith("error:") and "nope" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_blocks_on_a_normalised_target_are_timed_against_the_reference(tiny_targets):
    """On a target with a reference, block timings go through the same normalisation as networks."""
    from latency_models.measurement.measure import MeasurementCache, reference_anchor

    target = get_target("tiny-ref")
    table = lut.open_table(target)
    table.auto_extend = False
    assert table.extend([A], budget_s=0.02) == len(lut.decompose(A, 16))
    assert all(entry["ms"] > 0 for entry in table.blocks.values())
    anchor = reference_anchor(target)
    assert len(MeasurementCache()) == lut.BLOCK_PASSES * len(table.blocks) + 1  # each sweep and the one anchor
    assert table.provenance["anchor_ms"] == anchor.anchor_ms


def test_a_block_entry_is_the_geometric_mean_of_its_sweeps_each_cached(tiny):
    """Two sweeps, each cached under its own key: a rebuilt table measures nothing and agrees."""
    from latency_models.measurement.measure import MeasurementCache

    table = lut.LookupTable(tiny, auto_extend=False)
    progress = []
    n = table.extend([A], budget_s=0.02, passes=2, on_progress=lambda i, total, b, m: progress.append((i, total)))
    assert progress == [(i, 2 * n) for i in range(1, 2 * n + 1)]
    for entry in table.blocks.values():
        first, second = entry["passes_ms"]
        assert entry["ms"] == pytest.approx((first * second) ** 0.5)
    assert len(MeasurementCache()) == 2 * n
    saved = lut.read_file(table.save(), tiny)
    assert saved.blocks == table.blocks
    again = lut.LookupTable(tiny, auto_extend=False)
    again.extend([A], budget_s=0.02, passes=2)
    assert again.blocks == table.blocks and len(MeasurementCache()) == 2 * n  # all from the cache
    with pytest.raises(lut.LutError, match="passes must be >= 1"):
        again.extend([B], passes=0)


def test_fit_terms_recovers_scale_weight_cost_and_offset():
    """Whole networks cost scale * block sum + a weight-streaming term + offset; with enough
    networks the relative-error fit recovers all three."""
    import numpy as np

    rng = np.random.default_rng(0)
    sums, weights = rng.uniform(1, 10, 12), rng.uniform(0.5, 5, 12)
    y = 1.2 * sums + 0.07 * weights - 0.1
    assert lut.fit_terms(sums, weights, y) == pytest.approx((1.2, 0.07, -0.1))
    # too few networks for three terms: scale and offset only
    few = lut.fit_terms(sums[:lut.MIN_NETWORKS_FOR_WEIGHTS - 1], weights[:lut.MIN_NETWORKS_FOR_WEIGHTS - 1],
                        (1.2 * sums + 0.3)[:lut.MIN_NETWORKS_FOR_WEIGHTS - 1])
    assert few == pytest.approx((1.2, 0.0, 0.3))
    # a negative weight cost is not physical: fall back to two terms
    scale, per_mparam, _ = lut.fit_terms(sums, weights, 1.2 * sums - 0.2 * weights + 3.0)
    assert per_mparam == 0.0 and scale > 0


def test_weight_term_is_saved_and_loaded(tiny):
    table = lut.open_table(tiny)
    table.auto_extend = False
    table.extend([A, B], budget_s=0.02)
    table.scale, table.offset, table.ms_per_mparam = 1.1, 0.05, 0.5
    from latency_models.costs.analytic import parameter_count, summary

    assert lut.weights_m(A, tiny.input_size) == pytest.approx(summary(A, tiny.input_size)["params"] / 1e6)
    assert all(parameter_count(arch) == summary(arch)["params"] for arch in (A, B, C))
    expected = 1.1 * table.block_sum(A) + 0.05 + 0.5 * lut.weights_m(A, tiny.input_size)
    assert table.predict(A) == pytest.approx(expected)
    table.save()
    assert lut.load(tiny).predict(A) == pytest.approx(expected)
    # a table written before the weight term existed loads with no weight cost
    data = json.loads(lut.lut_path("tiny-cpu").read_text())
    del data["ms_per_mparam"]
    lut.lut_path("tiny-cpu").write_text(json.dumps(data))
    assert lut.load(tiny).ms_per_mparam == 0.0
    data["ms_per_mparam"] = "NaN"
    lut.lut_path("tiny-cpu").write_text(json.dumps(data))
    with pytest.raises(ShufflenasError, match="not finite"):
        lut.load(tiny)


def _tiny_with_guideline(tmp_path):
    """tiny-cpu with a guideline calibration too (the paper's SD810 fit, found by calibration name)."""
    path = tmp_path / "targets-guideline.toml"
    path.write_text('[targets.tiny-cpu]\ncalibration = "paper-arm-sd810"\n')
    return get_target("tiny-cpu", path)


def test_recording_an_estimate_never_measures(tiny_targets, tmp_path):
    from latency_models.estimation.estimators import NoEstimatorError
    from latency_models.measurement.measure_cache import MeasurementCache

    table = lut.build(get_target("tiny-cpu"), [A], budget_s=0.02, block_budget_s=0.02, passes=1)
    path, cache = lut.lut_path("tiny-cpu"), MeasurementCache()
    before, rows = path.read_bytes(), len(cache)
    assert table.missing_blocks(C) > 0
    tiny = get_target("tiny-cpu")
    # only the table is calibrated: it cannot answer for C without measuring
    with pytest.raises(NoEstimatorError, match="without measuring") as info:
        estimate(C, tiny, allow_measure=False)
    assert "\n" not in str(info.value)
    with pytest.raises(NoEstimatorError, match="lacks"):
        estimate(C, tiny, "lut", allow_measure=False)
    assert estimate(A, tiny, allow_measure=False).model == "lut"  # nothing missing: the table answers
    # with a guideline calibration as well, the next model that needs no measurement answers
    tiny = _tiny_with_guideline(tmp_path)
    answered = estimate(C, tiny, "auto", allow_measure=False)
    assert answered.model == "guideline" and answered.median_ms > 0
    assert path.read_bytes() == before and len(cache) == rows  # nothing timed, nothing written
    # a caller that allows measuring hears about it
    heard: list[str] = []
    grown = estimate(C, tiny, "lut", notify=heard.append)
    assert grown.model == "lut" and heard == [f"measuring {table.missing_blocks(C)} missing blocks of the lookup "
                                              "table for tiny-cpu"]
    assert len(cache) > rows


def test_cli_predict_is_readable_and_says_when_it_measures(cli_here, tiny_targets, tmp_path):
    env = {"SHUFFLENAS_HOME": os.environ["SHUFFLENAS_HOME"], "SHUFFLENAS_TARGETS": str(tiny_targets)}
    lut.build(get_target("tiny-cpu"), [A], budget_s=0.02, block_budget_s=0.02, passes=1)
    done = cli_here("latency", "predict", C.to_string(), "--target", "tiny-cpu", "--model", "lut", env=env)
    assert done.returncode == 0, done.stderr
    assert "measuring" in done.stderr and "missing blocks of the lookup table" in done.stderr
    assert "{" not in done.stdout and "ms per batch" in done.stdout and "lookup table" in done.stdout
    paper = cli_here("latency", "predict", "1.0x", "--target", "paper-arm-sd810", env=env)
    assert paper.returncode == 0 and "{" not in paper.stdout and "model: guideline model" in paper.stdout


def test_cli_build_lut_prints_the_held_out_figure(cli_here, tiny_targets):
    env = {"SHUFFLENAS_HOME": os.environ["SHUFFLENAS_HOME"], "SHUFFLENAS_TARGETS": str(tiny_targets)}
    done = cli_here("latency", "build-lut", "--target", "tiny-cpu", "--samples", "1", "--calibrate", "1",
               "--budget-s", "0.02", "--block-budget-s", "0.02", "--passes", "1", env=env)
    assert done.returncode == 0, done.stderr
    assert "calibration fit, in sample (5 networks)" in done.stdout
    assert "held out, leave one network out (5 networks): MAPE" in done.stdout
    saved = json.loads(lut.lut_path("tiny-cpu").read_text())["quality"]
    assert saved["n"] == 5 and saved["held_out"].startswith("leave-one-out")
