"""`shufflenas study guidelines`: the paper's G1-G4 experiments on a target."""

from __future__ import annotations

import shlex
import sys
import time

import click

from experiments.cli.common import emit_json, json_option


@click.command()
@click.option("--target", "target_name", required=True,
              help="Target name. Measurable targets are measured, estimate-only ones (paper-*) estimated.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=True, dir_okay=True),
              help="Output directory (created).")
@click.option("--quick", is_flag=True, help="x1 networks only, 3 repeats (under a minute on a CPU).")
@click.option("--repeats", type=click.IntRange(min=1), default=None,
              help="Times every cell is measured, in rounds over all cells [default: 5, --quick 3]. The verdict "
                   "reads the min-max interval over the rounds.")
@click.option("--budget", "budget_s", type=click.FloatRange(min=0.01), default=None,
              help="Seconds of timed runs per measurement (default 0.5, --quick 0.25).")
@click.option("--targets-file", type=click.Path(dir_okay=False), default=None,
              help="Extra targets TOML (added to the built-in targets).")
@json_option
def guidelines(target_name: str, out: str, quick: bool, repeats: int | None, budget_s: float | None,
               targets_file: str | None, as_json: bool) -> None:
    """Rebuild the paper's guideline benchmarks (Tables 1-4), run them on a target and write
    g1.csv..g4.csv, bar charts and summary.md next to the paper's GPU and ARM figures."""
    from experiments.studies.guidelines import check_out_dir, interval, run_study, verdicts
    from latency_models.measurement.targets import get_target

    target = get_target(target_name, targets_file) if targets_file else get_target(target_name)
    check_out_dir(out)
    started = time.perf_counter()

    def progress(done: int, total: int, message: str) -> None:
        click.echo(f"[{done:>{len(str(total))}}/{total}] {time.perf_counter() - started:6.1f}s {message}", err=True)

    command = "shufflenas " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    result = run_study(target, out, quick=quick, budget_s=budget_s or (0.25 if quick else 0.5), progress=progress,
                       command=command, repeats=repeats)
    checks = verdicts(result.tables)
    if as_json:
        emit_json({"out": str(result.out_dir), "target": target.name, "source": result.source,
                   "estimated": result.source != "measured", "files": [str(p) for p in result.files],
                   "verdicts": checks})
        return
    kind = "measured" if result.source == "measured" else "estimate"
    repeats = max((v["repeats"] for v in checks), default=1)
    head = f"median (min-max of {repeats} rounds)" if repeats > 1 else kind
    margins = [f"{interval(v['margin'], v['margin_lo'], v['margin_hi'], v['repeats'])}x vs {v['compared_with']}"
               for v in checks]
    width = max([len("margin"), *map(len, margins)])
    click.echo(f"{'guideline':9s} {'scale':5s} {'expected fastest':20s} {'fastest here':20s} {'verdict':13s} "
               f"{'margin':{width}s} spread, {head}")
    for v, margin in zip(checks, margins):
        spread = interval(v["spread_here"], v["spread_lo"], v["spread_hi"], v["repeats"])
        click.echo(f"{v['guideline']:9s} {v['scale']:5s} {v['expected_fastest']:20s} {v['fastest_here']:20s} "
                   f"{v['verdict']:13s} {margin:{width}s} {spread}x")
    click.echo(f"wrote {len(result.files)} files to {result.out_dir}")


COMMANDS = [guidelines]
