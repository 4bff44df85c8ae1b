"""`shufflenas report`: tables, front and plots of a study (read-only; works while it runs)."""

from __future__ import annotations

from pathlib import Path

import click

from experiments.cli.common import emit_json, json_option


@click.command()
@click.option("--storage", required=True, help="Optuna storage URL: sqlite:///F.db, journal:///F.log, postgresql://... "
                   "(three slashes: a path relative to the working directory; four: absolute, journal:////abs/F.log).")
@click.option("--study", "studies", required=True, multiple=True,
              help="Study name; repeat to report several studies and compare their fronts.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@json_option
def report(storage: str, studies: tuple[str, ...], out: str, as_json: bool) -> None:
    """Write trials.csv/.parquet, pareto.csv, PNG plots and summary.md for a study."""
    from experiments.report import compare_fronts, write_report
    from experiments.storage import load_study, open_storage

    backend = open_storage(storage, create=False)
    loaded = [load_study(backend, name) for name in studies]  # every name checked before writing anything
    out_dir = Path(out)
    summaries = []
    for study in loaded:
        target = out_dir if len(loaded) == 1 else out_dir / study.study_name
        summary = write_report(study, target)
        summary["out"] = str(target)
        summaries.append(summary)
    compared = [str(p) for p in compare_fronts(loaded, out_dir)] if len(loaded) > 1 else []
    if as_json:
        emit_json(summaries[0] if len(summaries) == 1 else {"studies": summaries, "compare": compared})
        return
    for s in summaries:
        states = ", ".join(f"{k.lower()} {v}" for k, v in s["states"].items()) or "no trials"
        click.echo(f"study {s['study']}: {s['trials']} trials ({states}), front {len(s['front'])}: "
                   f"{', '.join(s['files'])} in {s['out']}")
    for path in compared:
        click.echo(f"wrote {path}")
