"""Regenerate the backward-compatibility fixtures of tests/test_compat.py (run with the OLD code).

The files here were written by the code before the block specs (commit a5f4efc), so they prove that
what that version wrote keeps loading and that every value it computed stays the same:

    git archive a5f4efc | tar -x -C /tmp/old
    cd /tmp/old && PYTHONPATH=/tmp/old python /path/to/make_compat.py /path/to/tests/data/compat

Do not rerun it with newer code: the point of the fixtures is that an older version made them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

TINY_CPU = """kind = "measure"
backend = "onnxruntime"
device = "cpu"
threads = 1
batch = 1
input_size = 16
"""
TINY_TARGETS = f'[targets.tiny-cpu]\ndescription = "test: ONNX Runtime CPU, 1 thread, 16x16 input"\n{TINY_CPU}\n'

#: The tiny networks the fixtures were measured on (16x16 inputs: seconds, not minutes).
TINY_ARCHS = ["stem8_w8-16-32_d2-2-1_r0.5-0.5-0.5_k3-3-3_c32",
              "stem8_w8-16-48_d2-3-1_r0.5-0.5-0.5_k3-3-3_c32",
              "stem8_w12-24-32_d1-1-2_r0.5-0.5-0.5_k3-3-3_c32",
              "stem8_w16-16-32_d1-2-1_r0.5-0.5-0.5_k3-3-3_c32",
              "stem8_w8-24-48_d1-1-1_r0.5-0.5-0.5_k3-3-3_c32",
              "stem8_w16-32-64_d1-2-1_r0.5-0.5-0.5_k3-3-3_c32",
              "stem8_w12-16-24_d1-1-1_r0.5-0.5-0.5_k3-3-3_c32",
              "stem8_w8-32-32_d1-2-1_r0.5-0.5-0.5_k3-3-3_c32"]
SAMPLE_SEED = 14
SAMPLES = 50


def layer_digest(layers) -> str:
    rows = [dataclasses.astuple(layer) for layer in layers]
    return hashlib.sha1(json.dumps(rows).encode()).hexdigest()


def values() -> dict:
    """Everything the old code computed that the new code must reproduce exactly."""
    from latency_models.costs.analytic import architecture_layers, summary
    from latency_models.costs.memory import estimate_bytes
    from latency_models.estimation import lut
    from latency_models.estimation.features import features
    from search_space import DEFAULT_SPACE, PRESETS, Architecture, build_model, count_parameters
    from search_space.sizes import model_size

    presets = {}
    for name, arch in PRESETS.items():
        presets[name] = {
            "string": arch.to_string(), "arch_id": arch.arch_id, "json": arch.to_json(),
            "torch_params": count_parameters(build_model(arch)),
            "summary_224": summary(arch, 224), "summary_32": summary(arch, 32),
            "layers_224": layer_digest(architecture_layers(arch, 224)),
            "layers_16": layer_digest(architecture_layers(arch, 16, 10)),
            "size_224": dataclasses.asdict(model_size(arch, 224)),
            "size_16": dataclasses.asdict(model_size(arch, 16, 10)),
            "inference_bytes_224": estimate_bytes(arch, input_size=224, num_classes=1000),
            "training_bytes_32": estimate_bytes(arch, input_size=32, num_classes=10, batch=64, training=True),
            "lut_224": [[b.key, n] for b, n in lut.decompose(arch, 224)],
            "lut_16": [[b.key, n] for b, n in lut.decompose(arch, 16)],
            "optuna_params": DEFAULT_SPACE.params_of(arch) if DEFAULT_SPACE.contains(arch) else None,
        }
    sampled = [{"string": a.to_string(), "arch_id": a.arch_id, "params": summary(a, 224)["params"],
                **({"json": a.to_json(), "optuna_params": DEFAULT_SPACE.params_of(a)} if i < 10 else {})}
               for i, a in enumerate(DEFAULT_SPACE.sample_many(SAMPLES, seed=SAMPLE_SEED))]
    feats = {name: features(PRESETS[name]) for name in ("1.0x", "2.0x-se", "0.5x*")}
    feats["tiny@16"] = features(Architecture.from_string(TINY_ARCHS[0]), 16)
    return {"sample_seed": SAMPLE_SEED, "presets": presets, "sampled": sampled, "features": feats,
            "space_size": DEFAULT_SPACE.size()}


def artifacts(out: Path) -> dict:
    """A lookup table, calibration, predictor and measurement cache, measured for real on tiny-cpu."""
    home = Path(tempfile.mkdtemp(prefix="compat-home-"))
    targets = home / "targets.toml"
    targets.write_text(TINY_TARGETS)
    os.environ["SHUFFLENAS_HOME"] = str(home / "home")
    os.environ["SHUFFLENAS_TARGETS"] = str(targets)

    from latency_models.estimation import calibrate, guideline, lut, predictor
    from latency_models.measurement.measure_cache import FILENAME
    from latency_models.measurement.targets import get_target
    from latency_models.paths import cache_dir, calibration_dir
    from search_space import Architecture

    tiny = get_target("tiny-cpu")
    archs = [Architecture.from_string(s) for s in TINY_ARCHS]
    model = calibrate.calibrate_target(tiny, quick=True, budget_s=0.02)
    calibrate.save_user_calibration(model)
    table = lut.build(tiny, archs[:2], calibration_archs=archs[:4], budget_s=0.02, block_budget_s=0.02, passes=1)
    trained = predictor.train(tiny, archs, budget_s=0.02)
    calib = guideline.load(tiny)
    predictions = {"guideline": {s: calib.predict(a) for s, a in zip(TINY_ARCHS, archs)},
                   "lut": {s: table.predict(a, allow_measure=False) for s, a in zip(TINY_ARCHS[:4], archs[:4])},
                   "predictor": {s: trained.predict(a) for s, a in zip(TINY_ARCHS, archs)}}
    for name in ("tiny-cpu.json", "tiny-cpu.lut.json", "tiny-cpu.predictor.json"):
        shutil.copy(calibration_dir() / name, out / name)
    cache = cache_dir("measurements") / FILENAME
    with sqlite3.connect(cache) as conn:  # fold the WAL into the file, then copy one self-contained file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("VACUUM")
        rows = conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
    shutil.copy(cache, out / "measurements.sqlite")
    shutil.rmtree(home)
    return {"predictions": predictions, "cache_rows": rows, "archs": TINY_ARCHS}


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    data = values()
    data["artifacts"] = artifacts(out)
    (out / "expected.json").write_text(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
