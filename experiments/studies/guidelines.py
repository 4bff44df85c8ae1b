"""The paper's guideline experiments (G1-G4, Tables 1-4) on your own target.

Builds the four benchmark networks (``latency_models.microbench``) at the paper's channel counts -
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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from latency_models import guideline as guideline_model
from latency_models import microbench
from latency_models.calibrate import MICRO_KEY
from latency_models.analytic import layer_costs
from experiments.studies.common import StudyError, check_out_dir

if TYPE_CHECKING:
    from latency_models.targets import Target

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
    """("measured" | "estimate", the target's guideline model or None)."""
    model = guideline_model.load(target)
    if target.is_estimate:
        if model is None:
            raise StudyError(f"target {target.name!r} is estimate-only and has no guideline calibration")
        return "estimate", model
    from latency_models.measure import check_measurable

    check_measurable(target)
    return "measured", model


def _batch(target: Target, source: str) -> int:
    # the paper's micro-benchmark figures are read at batch 1 (paper_data.MICRO_BATCH); measured
    # targets run at their own batch
    return 1 if source == "estimate" else target.batch


def run_study(target: Target, out_dir: str | Path, *, quick: bool = False, budget_s: float | None = None,
              progress: Progress | None = None, command: str = "") -> GuidelineStudy:
    """Measure (or estimate) every benchmark cell on ``target`` and write the tables, charts and summary."""
    out = check_out_dir(out_dir)
    source, model = _plan(target)
    column = channel_column(target)
    benches = microbench.quick_benchmarks(column) if quick else microbench.benchmarks(column)
    batch = _batch(target, source)
    rows: list[dict[str, Any]] = []
    for i, bench in enumerate(benches, 1):
        layers = bench.layers()
        totals = layer_costs(layers, batch)[["flops", "mac", "kernels"]].sum()
        estimate_ms = model.predict_layers(layers, batch) if model is not None else None
        if source == "measured":
            from latency_models.measure import measure_module

            m = measure_module(bench.module(), (batch, *bench.input_shape), target, key=f"{MICRO_KEY}-{bench.key}",
                               budget_s=budget_s)
            ms, note = float(m.median_ms), ("cached" if m.cached else "measured")
        else:
            ms, note = float(estimate_ms), "estimate"
        rows.append({
            "guideline": bench.guideline, "config": bench.config, "scale": bench.scale, "channels": column,
            "structure": bench.describe(), "flops": int(totals["flops"]), "mac": int(totals["mac"]),
            "kernels": int(totals["kernels"]), "paper_gpu_batches_per_s": bench.paper_gpu,
            "paper_arm_images_per_s": bench.paper_arm, "target": target.name, "source": source, "batch": batch,
            "ms": round(ms, 5), "images_per_s": round(batch * 1000.0 / ms, 3), "batches_per_s": round(1000.0 / ms, 3),
            "guideline_ms": None if estimate_ms is None else round(float(estimate_ms), 5),
        })
        if progress:
            progress(i, len(benches), f"{bench.key}: {ms:.3f} ms ({note})")
    table = pd.DataFrame(rows)
    tables = {g: _relative(table[table["guideline"] == g].reset_index(drop=True))
              for g in microbench.GUIDELINES if (table["guideline"] == g).any()}
    files: list[Path] = []
    for g, t in tables.items():
        path = out / f"{g.lower()}.csv"
        t.to_csv(path, index=False)
        files.append(path)
        files.append(_chart(t, g, target.name, out / f"{g.lower()}.png"))
    files.append(_summary(tables, target, source, model, out / "summary.md", command))
    return GuidelineStudy(tables, out, files, source)


def _relative(table: pd.DataFrame) -> pd.DataFrame:
    """Speeds relative to the first row of each column (scale): 1.0 = as fast as the baseline."""
    table = table.copy()
    for column, speed in (("paper_gpu_rel", "paper_gpu_batches_per_s"), ("paper_arm_rel", "paper_arm_images_per_s"),
                          ("rel_speed", "images_per_s")):
        first = table.groupby("scale")[speed].transform("first")
        table[column] = (table[speed] / first).round(3)
    if table["guideline_ms"].notna().all():
        first = table.groupby("scale")["guideline_ms"].transform("first")
        table["guideline_rel"] = (first / table["guideline_ms"]).round(3)
    else:
        table["guideline_rel"] = None
    return table


def _chart(table: pd.DataFrame, guideline: str, target: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scales = list(dict.fromkeys(table["scale"]))
    fig, axes = plt.subplots(1, len(scales), figsize=(4.5 * len(scales), 3.6), squeeze=False)
    series = [("paper_gpu_rel", "paper GPU"), ("paper_arm_rel", "paper ARM"), ("rel_speed", target)]
    if table["guideline_rel"].notna().all():
        series.append(("guideline_rel", f"{target} (model)"))
    for ax, scale in zip(axes[0], scales):
        part = table[table["scale"] == scale]
        x = np.arange(len(part))
        width = 0.8 / len(series)
        for j, (column, label) in enumerate(series):
            ax.bar(x + (j - (len(series) - 1) / 2) * width, part[column].astype(float), width, label=label)
        ax.set_xticks(x, [c.replace(" shortcut", "\nshortcut") for c in part["config"]], fontsize=7)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_title(f"{guideline} {scale}")
        ax.set_ylabel("speed relative to first row")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{guideline}: {CLAIMS[guideline]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def verdicts(tables: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Per guideline and scale: is the row the guideline says is fastest actually fastest here?"""
    out = []
    for g, table in tables.items():
        for scale, part in table.groupby("scale", sort=False):
            fastest = part.loc[part["images_per_s"].idxmax(), "config"]
            paper_fastest = {d: part.loc[part[c].idxmax(), "config"]
                             for d, c in (("gpu", "paper_gpu_batches_per_s"), ("arm", "paper_arm_images_per_s"))}
            spread = float(part["images_per_s"].max() / part["images_per_s"].min())
            out.append({"guideline": g, "scale": scale, "expected_fastest": EXPECTED_FASTEST[g], "fastest_here": fastest,
                        "holds": fastest == EXPECTED_FASTEST[g], "paper_gpu_fastest": paper_fastest["gpu"],
                        "paper_arm_fastest": paper_fastest["arm"], "spread_here": round(spread, 2)})
    return out


def _summary(tables: dict[str, pd.DataFrame], target: Target, source: str,
             model: guideline_model.GuidelineModel | None, path: Path, command: str) -> Path:
    lines = [f"# Guideline study (paper Tables 1-4) on `{target.name}`", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    label = "measured" if source == "measured" else "ESTIMATED with the guideline model (not measured)"
    lines += [f"Target: {target.description} - {label}. Date: {_dt.date.today().isoformat()}.", "",
              "Relative speed = speed / speed of the first row in the same column (1.0 = as fast; higher = faster).",
              "Paper figures: GPU batches/s (GTX 1080Ti), ARM images/s (Snapdragon 810).", ""]
    if model is not None:
        lines += [f"Guideline model: {model.provenance}.", ""]
    lines += ["## Does each guideline hold here?", "",
              "| guideline | scale | expected fastest | fastest here | holds | paper GPU fastest | paper ARM fastest | spread here |",
              "|---|---|---|---|---|---|---|---|"]
    for v in verdicts(tables):
        lines.append(f"| {v['guideline']} | {v['scale']} | {v['expected_fastest']} | {v['fastest_here']} | "
                     f"{'yes' if v['holds'] else 'no'} | {v['paper_gpu_fastest']} | {v['paper_arm_fastest']} | "
                     f"{v['spread_here']}x |")
    for g, table in tables.items():
        lines += ["", f"## {g}: {CLAIMS[g]}", "",
                  "| config | scale | structure | ms | paper GPU rel | paper ARM rel | here rel | model rel |",
                  "|---|---|---|---|---|---|---|---|"]
        for _, r in table.iterrows():
            model_rel = "-" if pd.isna(r["guideline_rel"]) else f"{r['guideline_rel']:.2f}"
            lines.append(f"| {r['config']} | {r['scale']} | {r['structure']} | {r['ms']:.3f} | {r['paper_gpu_rel']:.2f} | "
                         f"{r['paper_arm_rel']:.2f} | {r['rel_speed']:.2f} | {model_rel} |")
    path.write_text("\n".join(lines) + "\n")
    return path


__all__ = ["GuidelineStudy", "StudyError", "check_out_dir", "run_study", "verdicts"]
