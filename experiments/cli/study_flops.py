"""`shufflenas study flops-vs-speed`: FLOPs, MAC and measured latency of random architectures."""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from experiments.cli.common import emit_json, json_option, positive

#: Keys of a recipe's ``[flops_vs_speed]`` table: key -> (types, what it is).
CONFIG_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "samples": ((int,), "an integer > 0"), "targets": ((list, str), "a list of target names"),
    "seed": ((int,), "an integer"), "out": ((str,), "a directory path"),
    "budget_s": ((int, float), "a number of seconds > 0"), "targets_file": ((str,), "a TOML file path"),
    "family": ((bool,), "true or false"),
}


def read_study_config(path: str) -> dict[str, Any]:
    """The ``[flops_vs_speed]`` table of a recipe, checked; a bad key or value is one ConfigError line."""
    from experiments.config import ConfigError, read_toml

    table = read_toml(path)
    if "flops_vs_speed" not in table:
        raise ConfigError(f"config file {path} has no [flops_vs_speed] table")
    section = table["flops_vs_speed"]
    if not isinstance(section, dict):
        raise ConfigError(f"flops_vs_speed in {path} must be a table ([flops_vs_speed]), got {section!r}")
    unknown = sorted(set(section) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(repr(f'flops_vs_speed.{k}') for k in unknown)} in {path} "
                          f"(known: {', '.join(CONFIG_KEYS)})")
    for key, value in section.items():
        types, meaning = CONFIG_KEYS[key]
        ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
        if ok and key == "targets":
            ok = isinstance(value, str) or (bool(value) and all(isinstance(t, str) and t for t in value))
        if ok and key in ("samples", "budget_s"):
            ok = value > 0 and math.isfinite(value)
        if ok and key in ("out", "targets_file"):
            ok = bool(value.strip())
        if not ok:
            raise ConfigError(f"flops_vs_speed.{key} in {path} must be {meaning}, got {value!r}")
    if isinstance(section.get("targets"), str):
        section["targets"] = [section["targets"]]
    return section


@click.command("flops-vs-speed")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Recipe whose [flops_vs_speed] table gives samples, targets, seed, out, budget_s, targets_file "
                   "(e.g. experiments/configs/flops_vs_speed.toml). Flags override it; its paths are read like "
                   "the flags they stand for (relative to the working directory).")
@click.option("--samples", "samples", type=int, callback=positive("samples"), default=None,
              help="Random architectures to sample (the 4 paper presets are added). Required without --config.")
@click.option("--target", "target_names", multiple=True,
              help="Target name (repeatable; replaces the config's targets). Measurable targets are measured, "
                   "estimate-only ones estimated.")
@click.option("--out", "out", type=click.Path(file_okay=True, dir_okay=True), default=None,
              help="Output directory (created).")
@click.option("--seed", default=None, type=int, help="Sampling seed (same seed, same architectures) [default: 0].")
@click.option("--budget-s", "--budget", "budget_s", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Seconds of timed runs per measurement (default: the measurement module's).")
@click.option("--targets-file", type=click.Path(dir_okay=False), default=None,
              help="Extra targets TOML (added to the built-in targets).")
@click.option("--family/--no-family", "family", default=None,
              help="Also the paper's Table 8 networks of other families (MobileNetV2 1.0/1.4, ShuffleNetV1 "
                   "1.0x/2.0x g3, Xception, SE-ShuffleNetV2): writes family_pairs.csv (same FLOPs, different "
                   "family) and table8.csv (the paper's figures beside this study's) [default: off].")
@json_option
def flops_vs_speed(config_path: str | None, samples: int | None, target_names: tuple[str, ...], out: str | None,
                   seed: int | None, budget_s: float | None, targets_file: str | None, family: bool | None,
                   as_json: bool) -> None:
    """Why FLOPs is not speed: sample architectures, measure (or estimate) them per target and write
    flops_vs_speed.csv/.parquet, correlations.csv, same_flops_pairs.csv, scatter PNGs and summary.md."""
    from experiments.studies.flops_vs_speed import check_out_dir, run_study
    from latency_models.measurement.targets import get_target

    recipe = read_study_config(config_path) if config_path else {}
    samples = samples if samples is not None else recipe.get("samples")
    target_names = target_names or tuple(recipe.get("targets", ()))
    out = out if out is not None else recipe.get("out")
    seed = seed if seed is not None else recipe.get("seed", 0)
    budget_s = budget_s if budget_s is not None else recipe.get("budget_s")
    targets_file = targets_file if targets_file is not None else recipe.get("targets_file")
    family = family if family is not None else recipe.get("family", False)
    where = " (or in the --config file's [flops_vs_speed])"
    for value, flag in ((samples, "--samples"), (target_names, "--target"), (out, "--out")):
        if not value:
            raise click.UsageError(f"missing option {flag}{where if not config_path else ''}"
                                   + (f": {config_path} does not set it either" if config_path else ""))
    assert samples is not None and out is not None
    targets = [get_target(name, targets_file) for name in dict.fromkeys(target_names)]
    check_out_dir(out)

    def progress(done: int, total: int, row: dict) -> None:
        note = "cached" if row.get("cached") else row["source"]
        if not row.get("stable", True):
            note += ", disturbed: not cached"
        label = row["preset"] or row["arch_id"]
        click.echo(f"[{done:>{len(str(total))}}/{total}] {row['target']:<14s} {label:<12s} "
                   f"{row['flops'] / 1e6:8.1f} MFLOPs {row['latency_ms']:9.3f} ms  ({note})", err=True)

    command = "shufflenas " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    result = run_study(targets, samples, out, seed=seed, budget_s=budget_s, command=command, on_progress=progress,
                       families=family)
    if as_json:
        emit_json({
            "out": str(result.out_dir), "files": [str(p) for p in result.files], "rows": len(result.table),
            "samples": samples, "seed": seed, "targets": [t.name for t in targets],
            "correlations": result.correlations.to_dict(orient="records"),
            "same_flops_pairs": result.pairs[result.pairs["rank"] == 1].to_dict(orient="records"),
            **(_family_json(result.table) if family else {}),
        })
        return
    _print_table(result)
    if family:
        _print_families(result.table)
    click.echo(f"wrote {len(result.files)} files to {Path(result.out_dir)}")


def _family_json(table: Any) -> dict[str, Any]:
    from experiments.studies.families import cross_family_pairs, table8_comparison
    from experiments.studies.flops_vs_speed import FLOPS_TOLERANCE

    t8 = table8_comparison(table)
    return {"family_pairs": cross_family_pairs(table, FLOPS_TOLERANCE).to_dict(orient="records"),
            "table8": t8.astype(object).where(t8.notna(), None).to_dict(orient="records")}


def _print_families(table: Any) -> None:
    """The widest same-FLOPs, different-family pair per target (the paper's point across families)."""
    from experiments.studies.families import cross_family_pairs
    from experiments.studies.flops_vs_speed import FLOPS_TOLERANCE

    pairs = cross_family_pairs(table, FLOPS_TOLERANCE)
    for target, group in pairs.groupby("target", sort=False):
        top = group.iloc[0]
        kind = "" if top["source"] == "measured" else f" ({top['source']})"
        click.echo(f"{target}{kind}: {top['slow_preset']} is {top['latency_ratio']:.2f}x slower than "
                   f"{top['fast_preset']} at {top['flops_diff_pct']:.1f}% FLOPs difference "
                   f"({top['slow_ms']:.2f} vs {top['fast_ms']:.2f} ms); see table8.csv")


def _print_table(result: Any) -> None:
    """Spearman per measured target; estimate-only targets say they have no measured ranking."""
    corr = result.correlations
    from experiments.studies.flops_vs_speed import CORRELATED

    measured = corr[corr["source"] == "measured"].pivot(index="target", columns="metric", values="spearman")
    measured = measured.reindex(columns=[m for m in CORRELATED if m in measured.columns])
    estimated = list(dict.fromkeys(corr.loc[corr["source"] != "measured", "target"]))
    names = [*measured.index, *estimated]
    width = max(len("target"), *(len(str(t)) for t in names))
    if len(measured):
        click.echo("Spearman rank correlation with measured latency")
        click.echo(f"{'target':{width}s} " + " ".join(f"{m:>12s}" for m in measured.columns))
        for target, row in measured.iterrows():
            click.echo(f"{target:{width}s} " + " ".join(f"{v:12.3f}" for v in row))
    for target in estimated:
        source = corr.loc[corr["target"] == target, "source"].iloc[0]
        click.echo(f"{target:{width}s} estimate only ({source}): no measured ranking; see summary.md")
    for _, row in result.pairs[result.pairs["rank"] == 1].iterrows():
        if row["source"] != "measured":
            continue
        click.echo(f"{row['target']}: same FLOPs (+-{row['flops_diff_pct']:.1f}%), {row['latency_ratio']:.2f}x "
                   f"latency spread ({row['fast_ms']:.2f} vs {row['slow_ms']:.2f} ms)")


COMMANDS = [flops_vs_speed]
