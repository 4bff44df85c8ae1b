"""`shufflenas latency predict` and `shufflenas latency calibrate`: estimated latency and the
calibration of the guideline model (registered by ``experiments.cli.latency``)."""

from __future__ import annotations

import time

import click

from experiments.cli.common import ARCH, emit_json, json_option, on_device_option, resolve_target, targets_file_option
from latency_models.estimation.estimators import ESTIMATORS
from latency_models.estimation.quality import fmt
from search_space import Architecture, preset_name


def _paper_ms(arch: Architecture, target_name: str) -> float | None:
    """The paper's Table 8 figure in ms per batch, for a preset on a paper target."""
    from latency_models.estimation.calibrate import PAPER_TARGETS
    from latency_models.paper import paper_data

    device = {v: k for k, v in PAPER_TARGETS.items()}.get(target_name)
    preset = preset_name(arch)
    if device is None or preset is None:
        return None
    speed = paper_data.network_speeds(device).get(preset)  # type: ignore[arg-type]
    return None if speed is None else paper_data.to_ms(speed)


_WHAT = {
    "guideline": "guideline model: FLOPs and memory access per fused layer, plus per-kernel and per-element costs",
    "lut": "lookup table: sum of per-block latencies measured on the target, scaled and offset",
    "predictor": "learned predictor: gradient boosting on architecture features, trained on measured networks",
}


def describe_model(name: str, estimator: object) -> str:
    """One readable line on what answered: the model, how it was calibrated, its held-out error."""
    parts = [_WHAT.get(name, f"{name} model")]
    provenance = getattr(estimator, "provenance", None)
    if isinstance(provenance, str) and provenance:
        parts.append(f"calibrated on {provenance}")
    elif isinstance(provenance, dict):
        measured = provenance.get("measured_with") or {}
        if isinstance(measured, dict) and measured.get("cpu"):
            parts.append(f"measured on {measured['cpu']}")
        for key in ("updated", "created"):
            if provenance.get(key):
                parts.append(f"{key} {provenance[key]}")
                break
    blocks = getattr(estimator, "blocks", None)
    if isinstance(blocks, dict):
        parts.append(f"{len(blocks)} blocks")
    quality = getattr(estimator, "quality", None) or {}
    if isinstance(quality.get("mape"), (int, float)):
        parts.append(f"held-out MAPE {float(quality['mape']):.1f}%")
    return "; ".join(parts)


@click.command()
@click.argument("architecture", type=ARCH)
@click.option("--target", "target_name", required=True, help="Target name (see `shufflenas latency targets`).")
@click.option("--model", default="auto", show_default=True,
              type=click.Choice(["auto", *ESTIMATORS.names()]),
              help="Latency model; auto picks the best calibrated one for the target.")
@targets_file_option
@json_option
def predict(architecture: Architecture, target_name: str, model: str, targets_file: str | None, as_json: bool) -> None:
    """Estimate the latency of ARCHITECTURE on a target (ms per batch) with a calibrated model."""
    from latency_models.estimation.estimators import get_estimator
    from latency_models.latency import latency_for

    target = resolve_target(target_name, targets_file)
    result = latency_for(architecture, target, mode="estimate", estimate_model=model,
                         notify=lambda message: click.echo(message, err=True))
    estimator = get_estimator(target, result.model)
    info = {"median_ms": round(result.median_ms, 4), "model": result.model, "target": target.name,
            "estimated": True, "arch": architecture.to_string(), "arch_id": architecture.arch_id,
            "preset": preset_name(architecture), "batch": target.batch, "input_size": target.input_size,
            "per_image_ms": round(result.median_ms / target.batch, 4),
            "calibration": getattr(estimator, "provenance", None),
            "model_description": describe_model(result.model, estimator)}
    paper = _paper_ms(architecture, target.name)
    if paper is not None:
        info["paper_ms"] = round(paper, 4)
        info["paper_error_pct"] = round((result.median_ms - paper) / paper * 100, 2)
    if as_json:
        emit_json(info)
        return
    label = info["preset"] or architecture.arch_id
    click.echo(f"{label} on {target.name}: {result.median_ms:.3f} ms per batch of {target.batch} at "
               f"{target.input_size}x{target.input_size} (estimate, {result.model} model)")
    if paper is not None:
        click.echo(f"paper (Table 8): {paper:.3f} ms per batch, estimate off by {info['paper_error_pct']:+.1f}%")
    click.echo(f"model: {info['model_description']}")


@click.command()
@click.option("--target", "target_name", required=True, help="A measurable target (e.g. local-cpu).")
@click.option("--quick", is_flag=True, help="x1 micro-benchmarks and 4 networks only: 29 s of CPU time (about 30 s on an idle "
                   "core, longer on a busy machine).")
@click.option("--budget", "budget_s", type=click.FloatRange(min=0.01), default=None,
              help="Seconds of timed runs per measurement (default 0.5, --quick 0.25).")
@targets_file_option
@on_device_option
@json_option
def calibrate(target_name: str, quick: bool, budget_s: float | None, targets_file: str | None, on_device: bool,
              as_json: bool) -> None:
    """Measure the G1-G4 micro-benchmarks and a few whole networks on a target, fit its guideline
    model and save it as a user calibration (used by `latency predict` and the search)."""
    from latency_models.estimation.calibrate import calibrate_target, save_user_calibration

    target = resolve_target(target_name, targets_file, on_device)
    started = time.perf_counter()

    def progress(message: str) -> None:
        click.echo(f"{time.perf_counter() - started:6.1f}s {message}", err=True)

    model = calibrate_target(target, quick=quick, progress=None if as_json else progress,
                             budget_s=budget_s or (0.25 if quick else 0.5))
    path = save_user_calibration(model)
    if as_json:
        emit_json({"target": target.name, "path": str(path), "params": model.params.to_dict(),
                   "quality": model.quality, "provenance": model.provenance,
                   "seconds": round(time.perf_counter() - started, 1)})
        return
    fit_q = model.quality["fit"]
    click.echo(f"wrote {path}")
    click.echo("parameters: " + ", ".join(f"{k}={v:g}" for k, v in model.params.to_dict().items()))
    click.echo(f"fit (all {fit_q['n']} samples): MAPE {fmt(fit_q['mape'], '.2f')}%, "
               f"Spearman {fmt(fit_q['spearman'], '.4f')}, max error {fmt(fit_q['max_error'], '.2f')}%")
    held = model.quality.get("heldout")
    if held:
        click.echo(f"held out (leave one network out, {held['n']} networks): MAPE {fmt(held['mape'], '.2f')}%, "
                   f"Spearman {fmt(held['spearman'], '.4f')}, max error {fmt(held['max_error'], '.2f')}%")


COMMANDS = [predict, calibrate]
