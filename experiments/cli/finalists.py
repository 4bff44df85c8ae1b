"""`shufflenas finalists`: re-score the top k of a study's fronts by stand-alone training (after any search)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from experiments.cli.common import emit_json, json_option
from experiments.config import FINALIST_PICKS


def finalists_for_storage(storage: str, study_name: str, options: Any, out: str | None, *,
                          address: str | None = None, progress: bool = True) -> Any:
    """Load the study, hold its storage's single-writer lock (SQLite) and run the finalists.

    ``out`` None: the ``out`` folder the search recorded (finalists go to ``<out>/finalists/``).
    """
    from experiments.finalists import FinalistError, run_finalists
    from experiments.storage import check_writer_free, load_study, open_storage, writer_lock

    study = load_study(open_storage(storage, create=False), study_name)
    if out is None:
        out = (study.user_attrs.get("config") or {}).get("out")
        if not isinstance(out, str) or not out:
            raise FinalistError(f"study {study_name!r} records no output folder; give --out DIR")
    check_writer_free(storage)
    with writer_lock(storage):
        return run_finalists(study, options, out, address=address, progress=progress)


def echo_result(result: Any) -> None:
    """The finalists as a small table on stdout: which accuracy each carries."""
    click.echo(f"finalists of {result.study} ({len(result.records)} with a trained accuracy; {len(result.trained)} "
               f"trained now, {len(result.skipped)} already done; {result.setup}) in {result.out}:")
    header = ("trial", "picked for", "proxy acc", "trained acc", "arch")
    rows = [(str(r.trial), ",".join(r.picked_for),
             "-" if r.proxy_accuracy is None else f"{r.proxy_accuracy:.4f} ({r.proxy_source})",
             f"{r.accuracy:.4f}", r.arch) for r in result.records]
    rows += [(str(n), "-", "-", f"failed: {e}", "-") for n, e in result.failed]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    click.echo("  ".join("-" * w for w in widths))
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)))


@click.command()
@click.option("--storage", required=True,
              help="Optuna storage URL of the study: sqlite:///F.db, journal:///F.log, postgresql://... (three "
                   "slashes: a path relative to the working directory; four: absolute, journal:////abs/F.log).")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--k", "k", type=int, help="Finalists per latency target [default: 5, or the config's].")
@click.option("--pick", type=click.Choice(FINALIST_PICKS),
              help="Which finalists per target: K spread along its front; front+bands adds the most accurate "
                   "trial of each of K log-latency bands those leave empty (hedges against a cheap accuracy that "
                   "favours small networks) [default: front].")
@click.option("--epochs", type=int, help="Training epochs per finalist [default: the recipe's].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="A TOML file with a [finalists] table (k, epochs, recipe, dataset, data_root, limit, input_size, "
                   "workers); flags override it.")
@click.option("--recipe", type=click.Path(dir_okay=False),
              help="A [train] TOML recipe, e.g. experiments/configs/train_fashion.toml [default: the built-in one].")
@click.option("--dataset", help="Data set to train on [default: the study's proxy data set, root, limit and input size].")
@click.option("--data-root", type=click.Path(file_okay=False), help="Where the data set's files are.")
@click.option("--limit", type=int, help="Use at most N images (train + val, stratified).")
@click.option("--input-size", type=int, help="Input resolution [default: the study's proxy input size].")
@click.option("--workers", type=int, help="Trainings at once, as Ray tasks when > 1 [default: the search's workers].")
@click.option("--ray-address", help="Run the trainings on this Ray cluster (HOST:PORT or auto).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output folder; runs go to OUT/finalists/trial-<n>/ [default: the search's out].")
@click.option("--no-progress", is_flag=True, help="No progress lines on stderr.")
@json_option
def finalists(storage: str, study_name: str, k: int | None, pick: str | None, epochs: int | None, config_path: str | None,
              recipe: str | None, dataset: str | None, data_root: str | None, limit: int | None,
              input_size: int | None, workers: int | None, ray_address: str | None, out: str | None,
              no_progress: bool, as_json: bool) -> None:
    """Train the top K of each latency target's front on their own (a full [train] recipe) and record the
    trained accuracy on the study, next to the proxy one. Rerun to resume: finalists already re-scored
    with the same data and recipe are not trained again."""
    from experiments.config import load_finalist_options
    from experiments.finalists import check_options, raise_failures

    overrides = {"k": k, "pick": pick, "epochs": epochs, "recipe": recipe, "dataset": dataset, "data_root": data_root,
                 "limit": limit, "input_size": input_size, "workers": workers}
    options = load_finalist_options(config_path, overrides)
    check_options(options)
    result = finalists_for_storage(storage, study_name, options, out, address=ray_address,
                                   progress=not no_progress)
    if as_json:
        emit_json(result.to_dict())
    else:
        echo_result(result)
        click.echo(f"report: shufflenas report --storage {storage} --study {study_name} "
                   f"--out {Path(result.out).parent / 'report'}")
    raise_failures(result)
