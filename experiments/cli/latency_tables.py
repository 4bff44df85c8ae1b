"""`shufflenas latency build-lut` and `train-predictor`: build the measured latency models."""

from __future__ import annotations

from typing import Any

import click

from experiments.cli.common import (
    ARCH,
    emit_json,
    json_option,
    on_device_option,
    positive,
    resolve_target,
    targets_file_option,
)
from latency_models.estimation.quality import fmt
from search_space import DEFAULT_SPACE, PAPER_PRESETS, Architecture

budget_option = click.option("--budget-s", "budget_s", type=click.FloatRange(min=0.0, min_open=True), default=None,
                             help="Seconds of timed runs per whole-network measurement (default 1).")


def _fmt_quality(quality: dict[str, Any]) -> str:
    if "mape" not in quality:
        return "held-out quality: not enough samples for a held-out split"
    return (f"held-out ({quality['n']} archs): MAPE {quality['mape']:.1f}%, within +-10% "
            f"{100 * quality['within_10']:.0f}%, within +-5% {100 * quality['within_5']:.0f}%, "
            f"Spearman {fmt(quality['spearman'])}")


@click.command("build-lut")
@click.option("--target", "target_name", required=True, help="Target name (see `latency targets`).")
@click.option("--samples", default=10, show_default=True, type=int, callback=positive("samples"),
              help="Random architectures whose blocks are added (besides the paper presets and --arch).")
@click.option("--arch", "extra", multiple=True, type=ARCH, help="Also add the blocks of this architecture (repeatable).")
@click.option("--calibrate", "n_calibrate", default=16, show_default=True, type=click.IntRange(min=0),
              help="How many of the --samples architectures are also measured as whole networks (with the "
                   "presets) to fit the table's scale, offset and weight term (which needs 10 networks in all).")
@click.option("--seed", default=0, show_default=True, type=int)
@budget_option
@click.option("--block-budget-s", "block_budget_s", type=click.FloatRange(min=0.0, min_open=True), default=0.3,
              show_default=True, help="Seconds of timed runs per block and sweep.")
@click.option("--passes", default=2, show_default=True, type=click.IntRange(min=1),
              help="Sweeps over the missing blocks; a block's entry is the geometric mean of its sweeps.")
@targets_file_option
@on_device_option
@json_option
def build_lut(target_name: str, samples: int, extra: tuple[Architecture, ...], n_calibrate: int, seed: int,
              budget_s: float | None, block_budget_s: float, passes: int, targets_file: str | None,
              on_device: bool, as_json: bool) -> None:
    """Measure the per-block lookup table for the presets + SAMPLES random architectures (only missing
    blocks are measured) and calibrate it on whole networks; saved as <target>.lut.json."""
    from latency_models.estimation import lut

    target = resolve_target(target_name, targets_file, on_device)
    randoms = DEFAULT_SPACE.sample_many(samples, seed=seed)
    archs = [*PAPER_PRESETS.values(), *extra, *randoms]
    calibration = [*PAPER_PRESETS.values(), *randoms[:n_calibrate]]

    def on_block(i: int, n: int, block: Any, m: Any) -> None:
        click.echo(f"block [{i}/{n}] {block.key:48s} {m.median_ms:8.3f} ms{' (cached)' if m.cached else ''}", err=True)

    def on_network(i: int, n: int, arch: Architecture, m: Any) -> None:
        click.echo(f"network [{i}/{n}] {arch.arch_id} {m.median_ms:8.3f} ms{' (cached)' if m.cached else ''}", err=True)

    table = lut.build(target, archs, calibration_archs=calibration, budget_s=budget_s,
                      block_budget_s=block_budget_s, passes=passes, on_block=on_block,
                      on_network=on_network)
    info = {"target": target.name, "path": str(lut.lut_path(target.name)), "blocks": len(table.blocks),
            "scale": table.scale, "offset_ms": table.offset, "ms_per_mparam": table.ms_per_mparam,
            "calibration_networks": len(table.networks),
            "calibration_fit": table.quality.get("calibration_fit", {}),
            "held_out": {k: v for k, v in table.quality.items() if k != "calibration_fit"}}
    if as_json:
        emit_json(info)
        return
    fit = info["calibration_fit"]
    click.echo(f"lookup table for {target.name}: {info['blocks']} blocks, scale {table.scale:.3f}, "
               f"offset {table.offset:.3f} ms, weights {table.ms_per_mparam:.3f} ms per M parameters -> {info['path']}")
    if fit:
        click.echo(f"calibration fit, in sample ({fit['n']} networks): MAPE {fit['mape']:.1f}%, within +-10% "
                   f"{100 * fit['within_10']:.0f}%")
    held = info["held_out"]
    if "mape" in held:  # the figure `latency predict --model auto` compares models by
        click.echo(f"held out, leave one network out ({held['n']} networks): MAPE {held['mape']:.1f}%, within +-10% "
                   f"{100 * held['within_10']:.0f}%, Spearman {fmt(held['spearman'])}")
    elif fit:
        click.echo("held out: fewer than 4 calibration networks, no leave-one-out figure "
                   "(`latency predict --model auto` then prefers other models by their order)")


@click.command("train-predictor")
@click.option("--target", "target_name", required=True, help="Target name (see `latency targets`).")
@click.option("--samples", required=True, type=int, callback=positive("samples"),
              help="Random architectures to measure and train on (a quarter is held out for the quality numbers).")
@click.option("--seed", default=0, show_default=True, type=int)
@budget_option
@targets_file_option
@on_device_option
@json_option
def train_predictor(target_name: str, samples: int, seed: int, budget_s: float | None, targets_file: str | None,
                    on_device: bool, as_json: bool) -> None:
    """Measure SAMPLES random architectures and train the gradient-boosting latency predictor
    (saved as <target>.predictor.json, with its held-out quality)."""
    from latency_models.estimation import predictor

    target = resolve_target(target_name, targets_file, on_device)
    archs = DEFAULT_SPACE.sample_many(samples, seed=seed)

    def on_progress(i: int, n: int, arch: Architecture, m: Any) -> None:
        click.echo(f"[{i}/{n}] {arch.arch_id} {m.median_ms:8.3f} ms{' (cached)' if m.cached else ''}", err=True)

    model = predictor.train(target, archs, budget_s=budget_s, on_progress=on_progress, seed=seed)
    path = predictor.predictor_path(target.name)
    if as_json:
        emit_json({"target": target.name, "path": str(path), "samples": len(archs), "quality": model.quality})
        return
    click.echo(f"predictor for {target.name} trained on {len(archs)} measured architectures -> {path}")
    click.echo(_fmt_quality(model.quality))


COMMANDS = [build_lut, train_predictor]
