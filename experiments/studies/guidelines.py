"""The paper's guideline experiments (G1-G4, Tables 1-4) on your own target.

Builds the four benchmark networks (``latency_models.paper.microbench``) at the paper's channel counts -
the GPU column's on CUDA targets and the paper GPU, the ARM column's on CPU targets and the paper
ARM - measures them on a measurable target or estimates them with the guideline model on an
estimate-only one, and lines the result up against the paper's GPU and ARM figures. Speeds are
also given relative to the first row of each table column, so shapes compare across devices
whose absolute speed differs by 100x.

Outputs under ``out_dir``: ``g1.csv`` ... ``g4.csv``, ``g1.png`` ... ``g4.png`` and ``summary.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from latency_models.atomic import atomic_write_figure, atomic_write_frame, atomic_write_text
from latency_models.estimation import guideline as guideline_model
from latency_models.paper import microbench
from latency_models.estimation.calibrate import MICRO_KEY
from latency_models.costs.analytic import layer_costs
from experiments.studies.common import StudyError, check_out_dir

if TYPE_CHECKING:
    from latency_models.measurement.targets import Target

#: What each guideline predicts: the row that should be fastest in every column.
EXPECTED_FASTEST = {"G1": "1:1", "G2": "g=1", "G3": "1-fragment", "G4": "relu=no shortcut=no"}
CLAIMS = {"G1": "equal channel width minimises MAC", "G2": "excessive group convolution increases MAC",
          "G3": "network fragmentation reduces parallelism", "G4": "element-wise operations are non-negligible"}

Progress = Callable[[int, int, str], None]


@dataclasses.dataclass(frozen=True)
class GuidelineStudy:
    """One table per guideline (G1..G4) and the files written."""

    tables: dict[str, pd.DataFrame]
    out_dir: Path
    files: list[Path]
    source: str   # "measured" or "estimate"


def channel_column(target: Target) -> str:
    """Whose channel counts to build: the paper's GPU ones on CUDA targets, the ARM ones otherwise."""
    return "gpu" if target.device == "cuda" else "arm"


def _plan(target: Target) -> tuple[str, guideline_model.GuidelineModel | None]:
    """("measured" | "estimate", the target's guideline model or None): a measure target must be
    measurable here; an estimate-only one needs its guideline calibration."""
    from latency_models.estimation.estimators import NoEstimatorError
    from latency_models.latency import plan_latency

    try:
        plan = plan_latency(target, estimate_model="guideline")
    except NoEstimatorError:
        raise StudyError(f"target {target.name!r} is estimate-only and has no guideline calibration") from None
    if not plan.measured:
        return "estimate", plan.estimator
    return "measured", guideline_model.load(target)


def _batch(target: Target, source: str) -> int:
    # the paper's micro-benchmark figures are read at batch 1 (paper_data.MICRO_BATCH); measured
    # targets run at their own batch
    return 1 if source == "estimate" else target.batch


#: Repeats of every benchmark cell on a measured target (normal, ``--quick``): enough for an interval.
REPEATS = 5
QUICK_REPEATS = 3


def run_study(target: Target, out_dir: str | Path, *, quick: bool = False, budget_s: float | None = None,
              progress: Progress | None = None, command: str = "", repeats: int | None = None) -> GuidelineStudy:
    """Measure (or estimate) every benchmark cell on ``target`` and write the tables, charts and summary.

    A measured target times every cell ``repeats`` times (default 5, ``--quick`` 3), in rounds over
    all cells (odd rounds in reverse order), so drift of the machine's speed hits every variant
    alike; each round's ratios give the intervals the verdicts are read from.
    """
    out = check_out_dir(out_dir)
    source, model = _plan(target)
    if repeats is None:
        repeats = QUICK_REPEATS if quick else REPEATS
    if repeats < 1:
        raise StudyError(f"--repeats must be >= 1, got {repeats}")
    if source == "estimate":
        repeats = 1  # the model gives one number: nothing to repeat
    column = channel_column(target)
    benches = microbench.quick_benchmarks(column) if quick else microbench.benchmarks(column)
    batch = _batch(target, source)
    rows: list[dict[str, Any]] = []
    for bench in benches:
        layers = bench.layers()
        totals = layer_costs(layers, batch)[["flops", "mac", "kernels"]].sum()
        estimate_ms = model.predict_layers(layers, batch) if model is not None else None
        rows.append({
            "guideline": bench.guideline, "config": bench.config, "scale": bench.scale, "channels": column,
            "structure": bench.describe(), "flops": int(totals["flops"]), "mac": int(totals["mac"]),
            "kernels": int(totals["kernels"]), "paper_gpu_batches_per_s": bench.paper_gpu,
            "paper_arm_images_per_s": bench.paper_arm, "target": target.name, "source": source, "batch": batch,
            "guideline_ms": None if estimate_ms is None else round(float(estimate_ms), 5),
            "ms_repeats": [],
        })
    done, total = 0, len(benches) * repeats
    for round_ in range(repeats):
        order = list(range(len(benches)))
        for i in (order if round_ % 2 == 0 else order[::-1]):
            bench, row = benches[i], rows[i]
            if source == "measured":
                from latency_models.measurement.measure import measure_module

                m = measure_module(bench.module(), (batch, *bench.input_shape), target,
                                   key=f"{MICRO_KEY}-{bench.key}", budget_s=budget_s, cache=False)
                ms, note = float(m.median_ms), f"measured, repeat {round_ + 1}/{repeats}"
            else:
                ms, note = float(row["guideline_ms"]), "estimate"
            row["ms_repeats"].append(round(ms, 5))
            done += 1
            if progress:
                progress(done, total, f"{bench.key}: {ms:.3f} ms ({note})")
    for row in rows:
        ms = float(np.median(row["ms_repeats"]))
        row.update({"repeats": len(row["ms_repeats"]), "ms": round(ms, 5), "ms_min": min(row["ms_repeats"]),
                    "ms_max": max(row["ms_repeats"]), "images_per_s": round(batch * 1000.0 / ms, 3),
                    "batches_per_s": round(1000.0 / ms, 3)})
    table = pd.DataFrame(rows)
    tables = {g: _relative(table[table["guideline"] == g].reset_index(drop=True))
              for g in microbench.GUIDELINES if (table["guideline"] == g).any()}
    files: list[Path] = []
    for g, t in tables.items():
        path = out / f"{g.lower()}.csv"
        atomic_write_frame(path, t.assign(ms_repeats=t["ms_repeats"].map(json.dumps)), index=False)
        files.append(path)
        files.append(_chart(t, g, target.name, out / f"{g.lower()}.png"))
    files.append(_summary(tables, target, source, model, out / "summary.md", command))
    return GuidelineStudy(tables, out, files, source)


def _relative(table: pd.DataFrame) -> pd.DataFrame:
    """Speeds relative to the first row of each column (scale): 1.0 = as fast as the baseline.

    ``rel_speed`` is the median over repeats of (baseline ms / row ms) within the same round, with
    ``rel_lo``/``rel_hi`` its smallest and largest value.
    """
    table = table.copy()
    for column, speed in (("paper_gpu_rel", "paper_gpu_batches_per_s"), ("paper_arm_rel", "paper_arm_images_per_s")):
        first = table.groupby("scale")[speed].transform("first")
        table[column] = (table[speed] / first).round(3)
    rel, lo, hi = [], [], []
    for _, row in table.iterrows():
        base = table.loc[table["scale"] == row["scale"], "ms_repeats"].iloc[0]
        ratios = np.asarray(base, dtype=float) / np.asarray(row["ms_repeats"], dtype=float)
        rel.append(round(float(np.median(ratios)), 3))
        lo.append(round(float(ratios.min()), 3))
        hi.append(round(float(ratios.max()), 3))
    table["rel_speed"], table["rel_lo"], table["rel_hi"] = rel, lo, hi
    if table["guideline_ms"].notna().all():
        first = table.groupby("scale")["guideline_ms"].transform("first")
        table["guideline_rel"] = (first / table["guideline_ms"]).round(3)
    else:
        table["guideline_rel"] = None
    return table


def _wrap(label: str) -> str:
    """Bar labels on two lines where they would run into each other ("2-fragment-series" & co)."""
    label = label.replace(" shortcut", "\nshortcut")
    return label.replace("-fragment-", "-fragment\n") if "-fragment-" in label else label


def _chart(table: pd.DataFrame, guideline: str, target: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = list(dict.fromkeys(table["scale"]))
    rows_per_scale = max(len(table[table["scale"] == s]) for s in scales)
    panel_w = max(4.5, 1.05 * rows_per_scale)
    fig, axes = plt.subplots(1, len(scales), figsize=(panel_w * len(scales), 4.2), squeeze=False)
    repeated = int(table["repeats"].max()) > 1
    here = f"{target} (median, min-max of {int(table['repeats'].max())})" if repeated else target
    series = [("paper_gpu_rel", "paper GPU"), ("paper_arm_rel", "paper ARM"), ("rel_speed", here)]
    if table["guideline_rel"].notna().all():
        series.append(("guideline_rel", f"{target} (model)"))
    for ax, scale in zip(axes[0], scales):
        part = table[table["scale"] == scale]
        x = np.arange(len(part))
        width = 0.8 / len(series)
        for j, (column, label) in enumerate(series):
            values = part[column].astype(float)
            err = None
            if column == "rel_speed" and repeated:
                err = np.vstack([values - part["rel_lo"].astype(float), part["rel_hi"].astype(float) - values])
            ax.bar(x + (j - (len(series) - 1) / 2) * width, values, width, label=label, yerr=err,
                   capsize=2 if err is not None else 0, error_kw={"elinewidth": 0.8})
        ax.set_xticks(x, [_wrap(c) for c in part["config"]], fontsize=7)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_title(f"{guideline} {scale}", fontsize=9)
        ax.set_ylabel("speed relative to first row")
        ax.margins(y=0.08)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(series), fontsize=7, frameon=False)
    fig.suptitle(f"{guideline}: {CLAIMS[guideline]}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    atomic_write_figure(path, fig, dpi=100)
    plt.close(fig)
    return path


def _ratios(part: pd.DataFrame, fast: str, slow: str) -> np.ndarray:
    """Per round: how much faster ``fast`` ran than ``slow`` (slow ms / fast ms)."""
    by = part.set_index("config")["ms_repeats"]
    return np.asarray(by[slow], dtype=float) / np.asarray(by[fast], dtype=float)


def verdicts(tables: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Per guideline and scale: is the row the guideline says is fastest actually fastest here?

    ``margin`` is the median over rounds of the winner's speed over the other one's: the expected
    fastest over the runner-up when it won, the fastest over the expected one when it did not.
    The verdict is "holds" / "does not hold" when every round agrees (the min-max interval of
    that ratio stays above 1), else "within noise".
    """
    out = []
    for g, table in tables.items():
        for scale, part in table.groupby("scale", sort=False):
            ranked = part.sort_values("ms", kind="stable")["config"].tolist()
            fastest, expected = ranked[0], EXPECTED_FASTEST[g]
            other = ranked[1] if fastest == expected else expected
            ratios = _ratios(part, fastest, other)
            decided = bool(ratios.min() > 1.0)
            verdict = ("holds" if fastest == expected else "does not hold") if decided else "within noise"
            spreads = [max(ms) / min(ms) for ms in zip(*part["ms_repeats"])]  # slowest / fastest, per round
            paper_fastest = {d: part.loc[part[c].idxmax(), "config"]
                             for d, c in (("gpu", "paper_gpu_batches_per_s"), ("arm", "paper_arm_images_per_s"))}
            out.append({"guideline": g, "scale": scale, "expected_fastest": expected, "fastest_here": fastest,
                        "verdict": verdict, "holds": verdict == "holds", "compared_with": other,
                        "margin": round(float(np.median(ratios)), 3), "margin_lo": round(float(ratios.min()), 3),
                        "margin_hi": round(float(ratios.max()), 3), "repeats": int(part["repeats"].max()),
                        "paper_gpu_fastest": paper_fastest["gpu"], "paper_arm_fastest": paper_fastest["arm"],
                        "spread_here": round(float(np.median(spreads)), 2),
                        "spread_lo": round(float(min(spreads)), 2), "spread_hi": round(float(max(spreads)), 2)})
    return out


def interval(value: float, lo: float, hi: float, repeats: int, digits: int = 2) -> str:
    """``1.23 (1.18-1.30)``, or the bare value when there was one run (an estimate)."""
    if repeats <= 1:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def _summary(tables: dict[str, pd.DataFrame], target: Target, source: str,
             model: guideline_model.GuidelineModel | None, path: Path, command: str) -> Path:
    lines = [f"# Guideline study (paper Tables 1-4) on `{target.name}`", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    label = "measured" if source == "measured" else "ESTIMATED with the guideline model (not measured)"
    checks = verdicts(tables)
    repeats = max((v["repeats"] for v in checks), default=1)
    lines += [f"Target: {target.description} - {label}. Date: {_dt.date.today().isoformat()}.", "",
              "Relative speed = speed / speed of the first row in the same column (1.0 = as fast; higher = faster).",
              "Paper figures: GPU batches/s (GTX 1080Ti), ARM images/s (Snapdragon 810).", ""]
    if repeats > 1:
        lines += [f"Every cell was timed {repeats} times, in rounds over all cells. Figures are medians over the "
                  "rounds, with the smallest and largest round in brackets. Margin = how much faster the winner "
                  "ran than the expected fastest (or, when the expected one won, than the runner-up). The verdict "
                  "is 'holds' or 'does not hold' only when every round agrees, else 'within noise'.", ""]
    if model is not None:
        lines += [f"Guideline model: {model.provenance}.", ""]
    lines += ["## Does each guideline hold here?", "",
              "| guideline | scale | expected fastest | fastest here | verdict | margin | paper GPU fastest | "
              "paper ARM fastest | spread here |",
              "|---|---|---|---|---|---|---|---|---|"]
    for v in checks:
        margin = interval(v["margin"], v["margin_lo"], v["margin_hi"], v["repeats"])
        spread = interval(v["spread_here"], v["spread_lo"], v["spread_hi"], v["repeats"])
        lines.append(f"| {v['guideline']} | {v['scale']} | {v['expected_fastest']} | {v['fastest_here']} | "
                     f"{v['verdict']} | {margin}x vs {v['compared_with']} | {v['paper_gpu_fastest']} | "
                     f"{v['paper_arm_fastest']} | {spread}x |")
    for g, table in tables.items():
        lines += ["", f"## {g}: {CLAIMS[g]}", "",
                  "| config | scale | structure | ms | paper GPU rel | paper ARM rel | here rel | model rel |",
                  "|---|---|---|---|---|---|---|---|"]
        for _, r in table.iterrows():
            model_rel = "-" if pd.isna(r["guideline_rel"]) else f"{r['guideline_rel']:.2f}"
            here = interval(r["rel_speed"], r["rel_lo"], r["rel_hi"], int(r["repeats"]))
            lines.append(f"| {r['config']} | {r['scale']} | {r['structure']} | {r['ms']:.3f} | {r['paper_gpu_rel']:.2f} | "
                         f"{r['paper_arm_rel']:.2f} | {here} | {model_rel} |")
    return atomic_write_text(path, "\n".join(lines) + "\n")


__all__ = ["GuidelineStudy", "StudyError", "check_out_dir", "interval", "run_study", "verdicts"]
