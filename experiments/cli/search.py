"""`shufflenas search`: run or resume a latency-aware architecture search."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from experiments import trial_record as keys
from experiments.cli.common import emit_json, json_option
from experiments.cli.finalists import echo_result, finalists_for_storage
from experiments.config import EVALUATORS, SAMPLERS


def _front_table(result: Any) -> str:
    """The final front as a fixed-width text table (stdout)."""
    names = result.objectives
    header = ["trial", "preset", *names, "MAC", "FLOPs", "arch"]
    rows = []
    for row in result.front:
        cells = [str(row["trial"]), row.get(keys.PRESET) or "-"]
        for name in names:
            value = row.get(name)
            cells.append("-" if value is None else (f"{value:.4f}" if name == "accuracy" else f"{value:.4g}"))
        cells += [f"{row[keys.MAC] / 1e6:.1f}M" if row.get(keys.MAC) else "-",
                  f"{row[keys.FLOPS] / 1e6:.1f}M" if row.get(keys.FLOPS) else "-", row.get(keys.ARCH) or "-"]
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML recipe (see experiments/configs/).")
@click.option("--run", "run_name", help="Only this [[run]] entry of the config.")
@click.option("--trials", type=int, help="Total finished trials the study should reach (resume continues to it).")
@click.option("--budget-s", type=float,
              help="Stop starting trials (and promotions) once the study's proxy trainings have cost this many "
                   "CPU-seconds; work in flight finishes, --trials stays the upper bound [default: no budget].")
@click.option("--storage", help="Optuna storage URL: sqlite:///F.db, journal:///F.log, postgresql://... "
                                "(three slashes: a path relative to the working directory; four: absolute, "
                                "journal:////abs/F.log) [default: sqlite:///<out>/study.db]")
@click.option("--study", help="Study name [default: shufflenas].")
@click.option("--out", help="Output directory [default: runs/search].")
@click.option("--epochs", type=int, help="Proxy-training epochs per candidate.")
@click.option("--dataset", help="Proxy data set: digits, fashion-mnist, mnist, kmnist, cifar10, cifar100, imagefolder, ... "
                                "(overrides [proxy] dataset).")
@click.option("--data-root", help="Folder of the data set (overrides [proxy] data_root; relative to the working directory).")
@click.option("--workers", type=int, help="Parallel proxy trainings (1 = in-process, sequential).")
@click.option("--evaluator", type=click.Choice(EVALUATORS), help="Training back-end [default: auto].")
@click.option("--ray-address", help="Connect to this Ray cluster (HOST:PORT, ray://HOST:PORT or auto).")
@click.option("--supernet", "supernet_dir", type=click.Path(), multiple=True,
              help="Score candidates with this trained supernet (the folder `shufflenas supernet train --out` "
                   "wrote; relative to the working directory): sets --evaluator supernet and [supernet] checkpoint. "
                   "Repeat it for an ensemble: each candidate scores the mean of the supernets' scores.")
@click.option("--sampler", type=click.Choice(SAMPLERS), help="Optuna sampler [default: tpe].")
@click.option("--seed", type=int, help="Sampler and proxy-training seed.")
@click.option("--targets-file", type=click.Path(dir_okay=False), help="Extra/overriding latency targets (TOML).")
@click.option("--finalists", "finalists_k", type=int,
              help="After the search, train the top K of each target's front on their own ([finalists] table: "
                   "recipe, epochs, ...; K overrides its k) and record their trained accuracy [default: off, or on "
                   "with k = 5 when the config has a [finalists] table].")
@click.option("--no-finalists", is_flag=True, help="Do not run the config's [finalists] after the search.")
@click.option("--no-progress", is_flag=True, help="No progress bar or per-trial lines on stderr.")
@json_option
def search(config_path: str | None, run_name: str | None, trials: int | None, budget_s: float | None,
           storage: str | None, study: str | None,
           out: str | None, epochs: int | None, dataset: str | None, data_root: str | None, workers: int | None, evaluator: str | None, ray_address: str | None,
           sampler: str | None, seed: int | None, targets_file: str | None, supernet_dir: tuple[str, ...],
           finalists_k: int | None, no_finalists: bool, no_progress: bool, as_json: bool) -> None:
    """Search ShuffleNetV2 architectures for proxy accuracy vs latency on your targets.

    With no arguments: 24 trials on the digits data set (16x16 proxy, 2 epochs), latency measured on
    this CPU (224x224, ONNX Runtime) and estimated for the paper's GTX 1080Ti and Snapdragon 810, the
    four paper presets seeded into the study, stored in runs/search/study.db. Running the same command
    again resumes the study up to --trials. With --finalists K (or a [finalists] table) the top K of
    each target's front are then trained on their own and their trained accuracy recorded.
    """
    from experiments.config import load_configs
    from experiments.finalists import check_options, raise_failures
    from experiments.search import run_search

    overrides: dict[str, Any] = {"trials": trials, "budget_s": budget_s, "storage": storage, "study": study, "out": out,
                                 "workers": workers, "evaluator": evaluator, "ray_address": ray_address,
                                 "sampler": sampler, "seed": seed, "targets_file": targets_file}
    proxy = {"epochs": epochs, "dataset": dataset, "data_root": data_root}
    if any(v is not None for v in proxy.values()):
        overrides["proxy"] = {k: v for k, v in proxy.items() if v is not None}
    if no_progress:
        overrides["progress"] = False
    if supernet_dir:
        if evaluator not in (None, "supernet"):
            raise click.UsageError(f"--supernet scores with the supernet evaluator, not --evaluator {evaluator}")
        overrides["evaluator"] = "supernet"
        overrides["supernet"] = {"checkpoint": list(supernet_dir)}
    if finalists_k is not None and no_finalists:
        raise click.UsageError("give either --finalists K or --no-finalists, not both")
    if finalists_k is not None:
        overrides["finalists"] = {"k": finalists_k}
    configs = load_configs(config_path, overrides, run=run_name)
    if no_finalists:
        configs = [dataclasses.replace(c, finalists=None) for c in configs]
    for config in configs:  # a bad recipe is refused now, not after the search
        if config.finalists is not None:
            check_options(config.finalists)
    results, finals = [], []
    for config in configs:
        result = run_search(config)
        results.append(result)
        final = None
        if config.finalists is not None:
            final = finalists_for_storage(result.storage, result.study, config.finalists, config.out,
                                          address=config.ray_address, progress=config.progress)
        finals.append(final)
        if not as_json:
            click.echo(f"study {result.study} ({result.storage}): {result.headline()} "
                       f"({result.complete} complete, {result.failed} failed), {result.new_trials} new this run, "
                       f"{result.wall_s:.0f} s")
            for note in result.notes:
                click.echo(f"note: {note}")
            if result.seconds_per_candidate is not None:
                verb = "scored" if result.accuracy_source == "supernet" else "trained"
                click.echo(f"accuracy from {result.accuracy_source}: {result.seconds_per_candidate:.2f} s per candidate "
                           f"{verb} this run")
            click.echo(f"Pareto front ({len(result.front)} trials, objectives: {', '.join(result.objectives)}):")
            click.echo(_front_table(result))
            if result.infeasible:
                click.echo(f"INFEASIBLE (over a budget, kept off the front): {len(result.infeasible)} trial(s)")
                for row in result.infeasible:
                    preset = f" [{row[keys.PRESET]}]" if row.get(keys.PRESET) else ""
                    click.echo(f"  trial {row['trial']}{preset}: {'; '.join(row['violations'])}")
            if final is not None:
                echo_result(final)
            click.echo(f"report: shufflenas report --storage {result.storage} --study {result.study} "
                       f"--out {config.out}/report")
            click.echo("")
    if as_json:
        data = [{**r.to_dict(), **({"finalists": f.to_dict()} if f is not None else {})}
                for r, f in zip(results, finals)]
        emit_json(data[0] if len(data) == 1 else data)
    for final in finals:
        if final is not None:
            raise_failures(final)
