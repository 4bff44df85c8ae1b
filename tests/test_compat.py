"""Backward compatibility as a tested property: values and files of the code before block specs.

``tests/data/compat/`` was written by that code (``make_compat.py`` says how): every preset's
compact string, arch_id, JSON, parameter count, costs, sizes and lookup-table keys; 50 strings
sampled from the default space with their ids and Optuna parameters; latency features; and a real
lookup table, calibration, predictor and measurement cache measured on the tiny test target. The
code of today must read every one of them and compute the same numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from latency_models.costs.analytic import architecture_layers, summary
from latency_models.costs.memory import estimate_bytes
from latency_models.estimation import guideline, lut, predictor
from latency_models.estimation.features import FEATURE_NAMES, features
from latency_models.measurement.measure import Measurement
from latency_models.measurement.measure_cache import FILENAME, MeasurementCache
from latency_models.measurement.targets import get_target
from latency_models.paths import cache_dir, calibration_dir
from search_space import DEFAULT_SPACE, PRESETS, Architecture, build_model, count_parameters
from search_space.sizes import model_size

DATA = Path(__file__).parent / "data" / "compat"
EXPECTED = json.loads((DATA / "expected.json").read_text())
OLD_PRESETS = sorted(EXPECTED["presets"])


def digest(layers) -> str:
    return hashlib.sha1(json.dumps([dataclasses.astuple(layer) for layer in layers]).encode()).hexdigest()


# -- values ------------------------------------------------------------------------------------------

def test_every_old_preset_is_still_there():
    assert set(OLD_PRESETS) <= set(PRESETS) and len(OLD_PRESETS) == 9


@pytest.mark.parametrize("name", OLD_PRESETS)
def test_preset_forms_and_ids_are_unchanged(name):
    old, arch = EXPECTED["presets"][name], PRESETS[name]
    assert arch.to_string() == old["string"] and arch.arch_id == old["arch_id"] and arch.to_json() == old["json"]
    assert Architecture.from_string(old["string"]) == arch == Architecture.from_json(old["json"])
    assert DEFAULT_SPACE.contains(arch) == (old["optuna_params"] is not None)
    if old["optuna_params"] is not None:
        assert DEFAULT_SPACE.params_of(arch) == old["optuna_params"]


@pytest.mark.parametrize("name", OLD_PRESETS)
def test_preset_costs_sizes_and_lut_keys_are_unchanged(name):
    old, arch = EXPECTED["presets"][name], PRESETS[name]
    assert summary(arch, 224) == old["summary_224"] and summary(arch, 32) == old["summary_32"]
    assert digest(architecture_layers(arch, 224)) == old["layers_224"]  # every layer: name, kind, shapes
    assert digest(architecture_layers(arch, 16, 10)) == old["layers_16"]
    assert dataclasses.asdict(model_size(arch, 224)) == old["size_224"]
    assert dataclasses.asdict(model_size(arch, 16, 10)) == old["size_16"]
    assert estimate_bytes(arch, input_size=224, num_classes=1000) == old["inference_bytes_224"]
    assert estimate_bytes(arch, input_size=32, num_classes=10, batch=64, training=True) == old["training_bytes_32"]
    assert [[b.key, n] for b, n in lut.decompose(arch, 224)] == old["lut_224"]
    assert [[b.key, n] for b, n in lut.decompose(arch, 16)] == old["lut_16"]


@pytest.mark.parametrize("name", ["0.5x", "1.0x*", "2.0x-se"])
def test_preset_torch_parameter_counts_are_unchanged(name):
    assert count_parameters(build_model(PRESETS[name])) == EXPECTED["presets"][name]["torch_params"]


def test_sampled_default_space_strings_keep_their_ids_and_optuna_parameters():
    sampled = EXPECTED["sampled"]
    assert len(sampled) == 50
    # the default space draws the same sequence: a seeded study or benchmark sees the same networks
    again = DEFAULT_SPACE.sample_many(len(sampled), seed=EXPECTED["sample_seed"])
    assert [a.to_string() for a in again] == [s["string"] for s in sampled]
    assert DEFAULT_SPACE.size() == EXPECTED["space_size"]
    for old in sampled:
        arch = Architecture.from_string(old["string"])
        assert arch.arch_id == old["arch_id"] and arch.to_string() == old["string"]
        assert summary(arch, 224)["params"] == old["params"]
        if "json" in old:
            assert Architecture.from_json(old["json"]).arch_id == old["arch_id"] and arch.to_json() == old["json"]
            assert DEFAULT_SPACE.params_of(arch) == old["optuna_params"]


@pytest.mark.parametrize("name", sorted(EXPECTED["features"]))
def test_latency_features_are_unchanged(name):
    if name == "tiny@16":
        got = features(Architecture.from_string(EXPECTED["artifacts"]["archs"][0]), 16)
    else:
        got = features(PRESETS[name])
    assert list(got) == list(FEATURE_NAMES)
    assert got == pytest.approx(EXPECTED["features"][name], rel=1e-12)


# -- files -------------------------------------------------------------------------------------------

@pytest.fixture
def old_files(tiny_targets):
    """The old lookup table, calibration, predictor and measurement cache where today's code looks for them."""
    folder = calibration_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tiny-cpu.json", "tiny-cpu.lut.json", "tiny-cpu.predictor.json"):
        shutil.copy(DATA / name, folder / name)
    cache = cache_dir("measurements") / FILENAME
    cache.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / "measurements.sqlite", cache)
    return get_target("tiny-cpu")


def _archs(names) -> list[tuple[Architecture, float]]:
    return [(Architecture.from_string(text), ms) for text, ms in sorted(names.items())]


def test_old_calibration_predicts_what_it_predicted(old_files):
    model = guideline.load(old_files)
    assert model is not None
    for arch, ms in _archs(EXPECTED["artifacts"]["predictions"]["guideline"]):
        assert model.predict(arch) == pytest.approx(ms, rel=1e-9)


def test_old_lookup_table_has_every_block_and_predicts_what_it_predicted(old_files):
    table = lut.load(old_files)
    assert table is not None and table.blocks
    for arch, ms in _archs(EXPECTED["artifacts"]["predictions"]["lut"]):
        assert table.missing([arch]) == []  # the blocks' keys are the ones the old code wrote
        assert table.predict(arch, allow_measure=False) == pytest.approx(ms, rel=1e-9)


#: A predictor file stores its training set and is refitted on load (no pickle). The refit is
#: deterministic on one machine, but the positive least squares and the boosted trees run on the
#: CPU's own floating-point kernels: the file was written on an AMD EPYC, and an Intel Xeon refits
#: it to predictions 4e-4 apart. Same architecture ids, same model, so 1e-3 is "what it predicted".
REFIT_REL = 1e-3


def test_old_predictor_refits_and_predicts_what_it_predicted(old_files):
    model = predictor.load(old_files)
    assert model is not None and model.guideline is not None  # it was trained with the calibration as a feature
    for arch, ms in _archs(EXPECTED["artifacts"]["predictions"]["predictor"]):
        assert model.predict(arch) == pytest.approx(ms, rel=REFIT_REL)


def test_old_measurement_cache_opens_and_every_entry_reads_back(old_files):
    path = cache_dir("measurements") / FILENAME
    cache = MeasurementCache(path)
    assert len(cache) == EXPECTED["artifacts"]["cache_rows"] > 0
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT key_json, record FROM measurements").fetchall()
    for key_json, record in rows:
        found = cache.get(json.loads(key_json))
        assert found == json.loads(record)
        m = Measurement.from_dict(found)
        assert m.median_ms > 0 and m.runs > 0
    assert cache.usable
