"""Calibrating the guideline model: from the paper's published speeds, or by measuring a target.

``fit_paper_calibration("gpu")`` fits the GTX 1080Ti model and ``fit_paper_calibration("arm")``
the Snapdragon 810 one; ``python -m latency_models.estimation.calibrate`` rewrites the shipped JSON files
from them (deterministic, so the files can be checked against the code). ``calibrate_target``
measures the G1-G4 micro-benchmarks and a few whole networks on a measurable target and fits.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latency_models.paper import microbench

from latency_models.paper import paper_data
from latency_models.costs.analytic import architecture_layers
from latency_models.estimation.guideline import CalibrationError, FitSample, GuidelineModel, fit
from latency_models.estimation.quality import prediction_quality
from latency_models.paper.paper_data import Device
from latency_models.paths import SHIPPED_CALIBRATIONS, calibration_dir, safe_file
from search_space import DEFAULT_SPACE, PAPER_PRESETS, Architecture, get_preset

if TYPE_CHECKING:
    from latency_models.measurement.targets import Target

PAPER_TARGETS: dict[str, str] = {"gpu": "paper-gpu-1080ti", "arm": "paper-arm-sd810"}
#: Table 8 rows count this many times as much as one micro-benchmark cell in the shipped fits:
#: they are the whole networks the model is used for, and there are 5 of them against 51 cells.
NETWORK_WEIGHT = 8.0

#: Prefix of micro-benchmark measurement cache keys; bump when a benchmark's structure changes.
MICRO_KEY = "microbench-v1"  # also used by experiments.studies.guidelines: one shared cache

Progress = Callable[[str], None]


def paper_micro_samples(device: Device, tables: Sequence[str] = paper_data.MICRO_TABLES) -> list[FitSample]:
    """Tables 1-4 as fit samples: each cell's network at the device's channel counts."""
    guidelines = [t.upper() for t in tables if t in paper_data.MICRO_TABLES]
    return [FitSample(tuple(b.layers()), paper_data.to_ms(b.paper_value(device)), paper_data.MICRO_BATCH[device],
                      1.0, b.key)
            for b in microbench.benchmarks(device, guidelines=guidelines)] if guidelines else []


def paper_network_samples(device: Device, weight: float = 1.0) -> list[FitSample]:
    """Table 8's ShuffleNetV2 rows (the networks this project can build) at 224x224."""
    return [FitSample(tuple(architecture_layers(get_preset(preset), paper_data.NETWORK_INPUT)),
                      paper_data.to_ms(speed), paper_data.NETWORK_BATCH[device], weight, preset)
            for preset, speed in paper_data.network_speeds(device).items()]


def paper_samples(device: Device, tables: Sequence[str] = paper_data.TABLES,
                  network_weight: float = NETWORK_WEIGHT) -> list[FitSample]:
    unknown = [t for t in tables if t not in paper_data.TABLES]
    if unknown:
        raise CalibrationError(f"unknown paper table(s) {', '.join(unknown)} (known: {', '.join(paper_data.TABLES)})")
    samples = paper_micro_samples(device, tables)
    if "t8" in tables:
        samples += paper_network_samples(device, network_weight)
    return samples


def network_quality(model: GuidelineModel, device: Device) -> dict[str, Any]:
    """Per-network prediction vs Table 8 (ms per batch) and the summary statistics."""
    rows = []
    for preset, speed in paper_data.network_speeds(device).items():
        predicted = model.predict_layers(architecture_layers(get_preset(preset), paper_data.NETWORK_INPUT),
                                         paper_data.NETWORK_BATCH[device])
        paper_ms = paper_data.to_ms(speed)
        rows.append({"preset": preset, "paper_ms": round(paper_ms, 4), "predicted_ms": round(predicted, 4),
                     "error_pct": round((predicted - paper_ms) / paper_ms * 100, 2)})
    summary = prediction_quality([r["paper_ms"] for r in rows], [r["predicted_ms"] for r in rows])
    return {"networks": rows, **summary}


def _leave_one_network_out(device: Device, tables: Sequence[str], network_weight: float) -> dict[str, Any]:
    """Held-out error on Table 8: refit without each network in turn and predict it."""
    micro = paper_micro_samples(device, tables)
    networks = paper_network_samples(device, network_weight)
    predicted, measured = [], []
    for i, held in enumerate(networks):
        model = fit(micro + networks[:i] + networks[i + 1:], paper_data.NETWORK_BATCH[device])
        predicted.append(model.predict_layers(held.layers, held.batch))
        measured.append(held.ms)
    return prediction_quality(measured, predicted)


def fit_paper_calibration(device: Device, tables: Sequence[str] = paper_data.TABLES,
                          network_weight: float = NETWORK_WEIGHT) -> GuidelineModel:
    """The guideline model of the paper's GPU or ARM device, fitted to the chosen tables.

    Quality: ``fit`` (every sample, in-sample), ``networks`` (Table 8 rows, per network) and,
    when Table 8 is used, ``heldout``: leave-one-network-out error, which is also ``mape``.
    """
    device = paper_data.check_device(device)
    samples = paper_samples(device, tables, network_weight)
    provenance = (f"paper Tables {','.join(t[1] for t in tables)} ({'GTX 1080Ti, batches/s' if device == 'gpu' else 'Snapdragon 810, images/s'}); "
                  f"micro-benchmarks read at batch {paper_data.MICRO_BATCH[device]}, Table 8 at batch "
                  f"{paper_data.NETWORK_BATCH[device]}; Table 8 rows weighted x{network_weight:g}")
    model = fit(samples, paper_data.NETWORK_BATCH[device], target_name=PAPER_TARGETS[device],
                input_size=paper_data.NETWORK_INPUT, provenance=provenance)
    quality = dict(model.quality)
    quality["networks"] = network_quality(model, device)
    if "t8" in tables:
        quality["heldout"] = _leave_one_network_out(device, tables, network_weight)
        quality["heldout"]["kind"] = "leave one Table 8 network out"
        quality["mape"] = quality["heldout"]["mape"]
    quality["tables"] = list(tables)
    return dataclasses.replace(model, quality=quality)


def write_paper_calibrations(directory: Path = SHIPPED_CALIBRATIONS) -> list[Path]:
    """Regenerate ``paper-gpu-1080ti.json`` and ``paper-arm-sd810.json`` (all tables)."""
    return [fit_paper_calibration(device).save(directory / f"{PAPER_TARGETS[device]}.json")
            for device in paper_data.DEVICES]


# ------------------------------------------------------------------------------------- measured targets

def calibration_networks(random_count: int = 6, seed: int = 0) -> dict[str, Architecture]:
    """Whole networks measured during calibration: the paper presets plus random architectures."""
    nets: dict[str, Architecture] = dict(PAPER_PRESETS)
    for i, arch in enumerate(DEFAULT_SPACE.sample_many(random_count, seed=seed)):
        nets[f"random{i}"] = arch
    return nets


def _versions() -> str:
    try:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        return "onnxruntime (not installed)"


def calibrate_target(target: Target, *, quick: bool = False, progress: Progress | None = None,
                     budget_s: float | None = None) -> GuidelineModel:
    """Measure micro-benchmarks and whole networks on ``target``, fit, return the model (not saved).

    Full: all 51 micro-benchmark cells (the ARM column's channel counts on CPUs, the GPU column's
    on CUDA) + the 4 presets + 6 random architectures. ``quick``: x1 cells + 2 presets + 2 random.
    Held-out quality: leave-one-network-out over the whole networks (``quality["heldout"]``).
    """
    from latency_models.measurement.measure import check_measurable, measure, measure_module

    if target.is_estimate:
        raise CalibrationError(f"target {target.name!r} is estimate-only: it cannot be measured, so it cannot be "
                               f"calibrated (its shipped calibration comes from the paper's figures)")
    check_measurable(target)
    column = "gpu" if getattr(target, "device", "cpu") == "cuda" else "arm"
    benches = microbench.quick_benchmarks(column) if quick else microbench.benchmarks(column)
    nets = calibration_networks(2 if quick else 6)
    if quick:
        nets = {k: v for k, v in nets.items() if k in ("0.5x", "1.0x", "random0", "random1")}
    say = progress or (lambda message: None)
    total = len(benches) + len(nets)
    micro: list[FitSample] = []
    for i, bench in enumerate(benches, 1):
        kwargs = {"budget_s": budget_s} if budget_s else {}
        m = measure_module(bench.module(), (target.batch, *bench.input_shape), target, key=f"{MICRO_KEY}-{bench.key}",
                           **kwargs)
        micro.append(FitSample(tuple(bench.layers()), float(m.median_ms), target.batch, 1.0, bench.key))
        say(f"[{i}/{total}] {bench.key}: {m.median_ms:.3f} ms")
    networks: list[FitSample] = []
    for j, (name, arch) in enumerate(nets.items(), len(benches) + 1):
        kwargs = {"budget_s": budget_s} if budget_s else {}
        m = measure(arch, target, **kwargs)
        networks.append(FitSample(tuple(architecture_layers(arch, target.input_size)), float(m.median_ms),
                                  target.batch, 2.0, name))
        say(f"[{j}/{total}] {name}: {m.median_ms:.3f} ms")
    return fit_measured(target, micro, networks)


def fit_measured(target: Target, micro: list[FitSample], networks: list[FitSample]) -> GuidelineModel:
    """Fit on measured samples; record where they came from and the held-out error on networks."""
    provenance = (f"measured on {platform.processor() or platform.machine()} ({platform.system()}) with "
                  f"{_versions()}, target {target.name}, {len(micro)} micro-benchmarks + {len(networks)} networks")
    model = fit(micro + networks, target.batch, target_name=target.name, input_size=target.input_size,
                provenance=provenance, fit_alignment=True)
    quality = dict(model.quality)
    if len(networks) >= 2:
        predicted, measured = [], []
        for i, held in enumerate(networks):
            refit = fit(micro + networks[:i] + networks[i + 1:], target.batch, fit_alignment=True)
            predicted.append(refit.predict_layers(held.layers, held.batch))
            measured.append(held.ms)
        quality["heldout"] = {**prediction_quality(measured, predicted), "kind": "leave one network out"}
        quality["mape"] = quality["heldout"]["mape"]
    network_pred = [model.predict_layers(s.layers, s.batch) for s in networks]
    quality["networks"] = {**prediction_quality([s.ms for s in networks], network_pred),
                           "networks": [{"name": s.label, "measured_ms": round(s.ms, 4), "predicted_ms": round(p, 4)}
                                        for s, p in zip(networks, network_pred)]}
    return dataclasses.replace(model, quality=quality)


def save_user_calibration(model: GuidelineModel) -> Path:
    """Write ``calibration_dir()/<target>.json`` (where :func:`guideline.load` looks first)."""
    return model.save(safe_file(calibration_dir(), model.target_name, ".json", "target"))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m latency_models.estimation.calibrate``: regenerate the shipped paper calibrations."""
    for path in write_paper_calibrations():
        model = GuidelineModel.from_json(path.read_text(), str(path))
        fit_q, nets = model.quality["fit"], model.quality["networks"]
        print(f"wrote {path}: fit MAPE {fit_q['mape']}% (n={fit_q['n']}), Table 8 MAPE {nets['mape']}%, "
              f"held-out {model.quality.get('mape')}%")
    del argv
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
