"""`shufflenas study flops-vs-speed`: FLOPs, MAC and measured latency of random architectures."""

from __future__ import annotations

import shlex
import sys

import click

from experiments.cli.common import emit_json, json_option, positive


@click.command("flops-vs-speed")
@click.option("--samples", "samples", required=True, type=int, callback=positive("samples"),
              help="Random architectures to sample (the 4 paper presets are added).")
@click.option("--target", "target_names", required=True, multiple=True,
              help="Target name (repeatable). Measurable targets are measured, estimate-only ones estimated.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=True, dir_okay=True),
              help="Output directory (created).")
@click.option("--seed", default=0, show_default=True, type=int, help="Sampling seed (same seed, same architectures).")
@click.option("--budget-s", "--budget", "budget_s", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Seconds of timed runs per measurement (default: the measurement module's).")
@click.option("--targets-file", type=click.Path(dir_okay=False), default=None,
              help="Extra targets TOML (added to the built-in targets).")
@json_option
def flops_vs_speed(samples: int, target_names: tuple[str, ...], out: str, seed: int, budget_s: float | None,
                   targets_file: str | None, as_json: bool) -> None:
    """Why FLOPs is not speed: sample architectures, measure (or estimate) them per target and write
    flops_vs_speed.csv/.parquet, correlations.csv, same_flops_pairs.csv, scatter PNGs and summary.md."""
    from experiments.studies.flops_vs_speed import check_out_dir, run_study
    from latency_models.targets import get_target

    targets = [get_target(name, targets_file) for name in dict.fromkeys(target_names)]
    check_out_dir(out)

    def progress(done: int, total: int, row: dict) -> None:
        note = "cached" if row.get("cached") else row["source"]
        label = row["preset"] or row["arch_id"]
        click.echo(f"[{done:>{len(str(total))}}/{total}] {row['target']:<14s} {label:<12s} "
                   f"{row['flops'] / 1e6:8.1f} MFLOPs {row['latency_ms']:9.3f} ms  ({note})", err=True)

    command = "shufflenas " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    result = run_study(targets, samples, out, seed=seed, budget_s=budget_s, command=command, on_progress=progress)
    if as_json:
        emit_json({
            "out": str(result.out_dir), "files": [str(p) for p in result.files], "rows": len(result.table),
            "correlations": result.correlations.to_dict(orient="records"),
            "same_flops_pairs": result.pairs[result.pairs["rank"] == 1].to_dict(orient="records"),
        })
        return
    corr = result.correlations.pivot(index="target", columns="metric", values="spearman")
    width = max(len("target"), *(len(str(t)) for t in corr.index))
    click.echo("Spearman rank correlation with latency")
    click.echo(f"{'target':{width}s} " + " ".join(f"{m:>12s}" for m in corr.columns))
    for target, row in corr.iterrows():
        click.echo(f"{target:{width}s} " + " ".join(f"{v:12.3f}" for v in row))
    for _, row in result.pairs[result.pairs["rank"] == 1].iterrows():
        click.echo(f"{row['target']}: same FLOPs (+-{row['flops_diff_pct']:.1f}%), {row['latency_ratio']:.2f}x "
                   f"latency spread ({row['fast_ms']:.2f} vs {row['slow_ms']:.2f} ms)")
    click.echo(f"wrote {len(result.files)} files to {result.out_dir}")


COMMANDS = [flops_vs_speed]
