"""FLOPs vs speed: the paper's Figure 1 point, measured on your own targets.

Samples random architectures from the default space (plus the four paper presets), records the
analytic costs (FLOPs, params, MAC, kernels) and, per target, the measured latency (targets that can
be measured here) or the calibrated estimate (estimate-only targets, always labelled). From that
table it derives rank correlations of each cost with latency and the widest latency spread among
architectures whose FLOPs agree within +-5%.

Outputs (all under ``out_dir``): ``flops_vs_speed.csv`` / ``.parquet`` (one row per architecture and
target), ``correlations.csv``, ``same_flops_pairs.csv``, ``scatter_<target>.png`` and ``summary.md``.
With ``families`` the Table 8 networks of the other families join (:mod:`experiments.studies.families`),
and ``family_pairs.csv`` / ``table8.csv`` say how they compare.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from latency_models.atomic import atomic_write_figure, atomic_write_frame, atomic_write_text
from latency_models.costs.analytic import summary
from search_space import DEFAULT_SPACE, PAPER_PRESETS, Architecture, SearchSpace, preset_name
from search_space.presets import FAMILIES
from experiments.plotting import label_points
from experiments.studies import families as fam
from experiments.studies.common import StudyError, check_out_dir

if TYPE_CHECKING:
    from latency_models.measurement.targets import Target

COST_METRICS = ("flops", "mac", "params", "kernels")
#: marker and colour per preset family on the scatter plots (ShuffleNetV2 keeps the paper presets' star)
_FAMILY_STYLE = (("shufflenetv2", "*", "tab:red"), ("mobilenetv2", "D", "tab:green"),
                 ("shufflenetv1", "s", "tab:purple"), ("xception", "^", "tab:brown"))
CORRELATED = (*COST_METRICS, "guideline_ms")
FLOPS_TOLERANCE = 0.05
PAIRS_PER_TARGET = 5

Progress = Callable[[int, int, dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """Every table the study writes, plus where it wrote them."""

    table: pd.DataFrame
    correlations: pd.DataFrame
    pairs: pd.DataFrame
    out_dir: Path
    files: tuple[Path, ...]


# -- inputs ------------------------------------------------------------------------------------------
def study_architectures(samples: int, seed: int = 0, space: SearchSpace = DEFAULT_SPACE,
                        presets: bool = True, families: bool = False) -> list[Architecture]:
    """``samples`` random architectures from ``space`` plus the paper presets (no duplicates); with
    ``families`` every Table 8 network (MobileNetV2, ShuffleNetV1, Xception, SE-ShuffleNetV2) too."""
    if samples <= 0:
        raise StudyError(f"--samples must be > 0, got {samples}")
    archs = list(PAPER_PRESETS.values()) if presets else []
    if families:
        archs += [a for a in fam.family_architectures() if a not in archs]
    for arch in space.sample_many(samples, seed=seed):
        if arch not in archs:
            archs.append(arch)
    return archs


@dataclasses.dataclass
class _TargetPlan:
    latency: Any              # latency_models.latency.LatencyPlan: measured here, or estimated
    guideline: Any = None     # guideline estimator when calibrated (a correlation column)

    @property
    def target(self) -> Target:
        return self.latency.target


def _plan(target: Target) -> _TargetPlan:
    """Measure where the target can be measured here; otherwise use its best calibrated estimate."""
    from latency_models.estimation.estimators import NoEstimatorError, get_estimator
    from latency_models.latency import plan_latency
    from search_space.errors import ShufflenasError

    try:
        guideline = get_estimator(target, "guideline")
    except NoEstimatorError:
        guideline = None
    try:
        return _TargetPlan(plan_latency(target, mode="fallback"), guideline=guideline)
    except ShufflenasError as exc:
        raise StudyError(str(exc)) from None


# -- collection --------------------------------------------------------------------------------------
def collect(archs: Sequence[Architecture], targets: Sequence[Target], *, budget_s: float | None = None,
            on_progress: Progress | None = None) -> pd.DataFrame:
    """One row per (architecture, target): costs at the target's input size, latency and its source."""
    plans = [_plan(t) for t in targets]  # fail on a bad target before any measurement
    total = len(archs) * len(plans)
    rows: list[dict[str, Any]] = []
    cost_cache: dict[tuple[Architecture, int], dict[str, int]] = {}
    for plan in plans:
        target = plan.target
        for arch in archs:
            key = (arch, target.input_size)
            if key not in cost_cache:
                cost_cache[key] = summary(arch, target.input_size)
            row: dict[str, Any] = {
                "target": target.name, "arch": arch.to_string(), "arch_id": arch.arch_id,
                "preset": preset_name(arch) or "", "family": fam.family_label(preset_name(arch) or ""),
                "input_size": target.input_size, "batch": target.batch,
                **{m: cost_cache[key][m] for m in COST_METRICS},
            }
            row.update(_latency(arch, plan, budget_s))
            row["guideline_ms"] = float(plan.guideline.predict(arch)) if plan.guideline is not None else np.nan
            rows.append(row)
            if on_progress is not None:
                on_progress(len(rows), total, row)
    return pd.DataFrame(rows)


def _latency(arch: Architecture, plan: _TargetPlan, budget_s: float | None) -> dict[str, Any]:
    result = plan.latency.latency(arch, budget_s=budget_s)
    if plan.latency.measured:
        return {"latency_ms": float(result.median_ms), "source": "measured", "cv": float(result.cv),
                "cached": bool(result.cached), "stable": bool(result.stable)}
    return {"latency_ms": float(result.median_ms), "source": f"estimate:{result.model}", "cv": np.nan,
            "cached": False, "stable": True}


# -- analysis ----------------------------------------------------------------------------------------
def _is_self(metric: str, source: str) -> bool:
    """The guideline estimate ranked against itself (an estimate-only target's latency is that estimate)."""
    return metric == "guideline_ms" and source == "estimate:guideline"


def correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Spearman and Kendall of each cost (and the guideline estimate) with latency, per target.

    The guideline estimate is not ranked against itself: on a target whose latency is that
    estimate, its row is left out.
    """
    from scipy.stats import kendalltau, spearmanr

    rows = []
    for target, group in table.groupby("target", sort=False):
        source = group["source"].iloc[0]
        for metric in CORRELATED:
            if _is_self(metric, source):
                continue
            values = group[[metric, "latency_ms"]].dropna()
            if len(values) < 3 or values[metric].nunique() < 2 or values["latency_ms"].nunique() < 2:
                rho = tau = np.nan
            else:
                rho = float(spearmanr(values[metric], values["latency_ms"]).statistic)
                tau = float(kendalltau(values[metric], values["latency_ms"]).statistic)
            rows.append({"target": target, "metric": metric, "n": len(values), "spearman": rho, "kendall": tau,
                         "source": source})
    return pd.DataFrame(rows, columns=["target", "metric", "n", "spearman", "kendall", "source"])


def same_flops_pairs(table: pd.DataFrame, tolerance: float = FLOPS_TOLERANCE,
                     top: int = PAIRS_PER_TARGET) -> pd.DataFrame:
    """Per target, the pairs with FLOPs within ``tolerance`` of each other and the widest latency ratio."""
    columns = ["target", "rank", "fast_arch", "slow_arch", "fast_preset", "slow_preset", "fast_mflops",
               "slow_mflops", "flops_diff_pct", "fast_ms", "slow_ms", "latency_ratio", "source"]
    rows = []
    for target, group in table.groupby("target", sort=False):
        g = group.sort_values("flops").reset_index(drop=True)
        flops = g["flops"].to_numpy(dtype=float)
        lat = g["latency_ms"].to_numpy(dtype=float)
        found = []
        for i in range(len(g)):
            j = i + 1
            while j < len(g) and flops[j] <= flops[i] * (1 + tolerance):
                fast, slow = (i, j) if lat[i] <= lat[j] else (j, i)
                found.append((lat[slow] / lat[fast], fast, slow))
                j += 1
        found.sort(reverse=True)
        for rank, (ratio, fast, slow) in enumerate(found[:top], start=1):
            rows.append({
                "target": target, "rank": rank, "fast_arch": g.at[fast, "arch"], "slow_arch": g.at[slow, "arch"],
                "fast_preset": g.at[fast, "preset"], "slow_preset": g.at[slow, "preset"],
                "fast_mflops": flops[fast] / 1e6, "slow_mflops": flops[slow] / 1e6,
                "flops_diff_pct": 100 * abs(flops[slow] - flops[fast]) / min(flops[slow], flops[fast]),
                "fast_ms": lat[fast], "slow_ms": lat[slow], "latency_ratio": ratio, "source": g.at[fast, "source"],
            })
    return pd.DataFrame(rows, columns=columns)


# -- outputs -----------------------------------------------------------------------------------------
def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def scatter_plots(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One PNG per target: latency vs FLOPs and vs MAC, presets marked and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for target, group in table.groupby("target", sort=False):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
        source = group["source"].iloc[0]
        ylabel = "latency (ms / batch)" if source == "measured" else f"estimated latency (ms, {source})"
        for ax, metric, label in ((axes[0], "flops", "MFLOPs (multiply-adds)"), (axes[1], "mac", "MAC (M elements)")):
            x = group[metric] / 1e6
            random_rows = group["preset"] == ""
            ax.scatter(x[random_rows], group.loc[random_rows, "latency_ms"], s=18, alpha=0.7, label="random")
            presets = group[~random_rows]
            family = presets["preset"].map(lambda name: FAMILIES.get(name, "shufflenetv2"))
            for fam_name, marker, color in _FAMILY_STYLE:
                rows = presets[family == fam_name]
                if len(rows):
                    ax.scatter(rows[metric] / 1e6, rows["latency_ms"], s=70, marker=marker, color=color,
                               label="paper presets" if fam_name == "shufflenetv2" else f"{fam_name} presets",
                               zorder=3)
            ax.set_xlabel(label)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.margins(0.06)
        axes[0].legend(loc="upper left", fontsize=8)
        fig.suptitle(f"{target}: latency vs FLOPs and MAC ({len(group)} architectures)")
        for ax, metric in ((axes[0], "flops"), (axes[1], "mac")):
            label_points(ax, [(r[metric] / 1e6, r["latency_ms"], r["preset"]) for _, r in presets.iterrows()],
                         list(zip(group[metric] / 1e6, group["latency_ms"])))
        path = out_dir / f"scatter_{_slug(str(target))}.png"
        atomic_write_figure(path, fig, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _md_table(frame: pd.DataFrame, floats: str = "{:.3f}") -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    lines = [header, "|" + "---|" * len(frame.columns)]
    for _, row in frame.iterrows():
        cells = [("-" if np.isnan(v) else floats.format(v)) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_markdown(table: pd.DataFrame, corr: pd.DataFrame, pairs: pd.DataFrame, *, command: str = "",
                     load: tuple[float, float] | None = None) -> str:
    """A short human-readable report of the study."""
    lines = ["# FLOPs vs speed", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines.append(f"Date: {_dt.date.today().isoformat()}; machine: {platform.machine()}, {os.cpu_count()} CPUs"
                 + (f"; load average {load[0]:.2f} before, {load[1]:.2f} after" if load else ""))
    lines.append("")
    measured = set(table.loc[table["source"] == "measured", "target"])
    for title, keep in (("## Rank correlation with measured latency (Spearman)", True),
                        ("## Estimate-only targets: how each cost ranks the model's estimate (Spearman; estimate "
                         "only: no measured ranking)", False)):
        part = corr[corr["target"].isin(measured) == keep]
        if part.empty:
            continue
        metrics = [m for m in CORRELATED if m in set(part["metric"])]
        wide = part.pivot(index="target", columns="metric", values="spearman").reindex(columns=metrics)
        wide = wide.reindex(list(dict.fromkeys(part["target"]))).reset_index()
        wide.columns = ["target", *(f"spearman {m}" for m in metrics)]
        wide.insert(1, "latency from", [table.loc[table["target"] == t, "source"].iloc[0] for t in wide["target"]])
        wide.insert(2, "n", [int((table["target"] == t).sum()) for t in wide["target"]])
        lines += [title, "", _md_table(wide), ""]
    best = pairs[pairs["rank"] == 1] if len(pairs) else pairs
    if len(best):
        view = best[["target", "source", "fast_mflops", "slow_mflops", "fast_ms", "slow_ms", "latency_ratio"]].copy()
        lines += [f"## Same FLOPs (within +-{FLOPS_TOLERANCE:.0%}), different speed", "",
                  _md_table(view, "{:.2f}"), ""]
        for _, row in best.iterrows():
            lines.append(_pair_sentence(row))
        lines.append("")
    presets = table[table["preset"] != ""][["target", "preset", "flops", "mac", "latency_ms", "source"]].copy()
    if len(presets):
        presets["flops"] = presets["flops"] / 1e6
        presets["mac"] = presets["mac"] / 1e6
        presets = presets.rename(columns={"flops": "MFLOPs", "mac": "MAC (M)", "latency_ms": "ms"})
        lines += ["## Paper presets", "", _md_table(presets, "{:.2f}"), ""]
    lines += fam.families_markdown(table, FLOPS_TOLERANCE, _md_table)
    return "\n".join(lines)


def _pair_sentence(row: pd.Series) -> str:
    """One line per target's widest same-FLOPs pair; an estimate says it is one."""
    measured = row["source"] == "measured"
    where = row["target"] if measured else f"{row['target']} ({row['source']}; estimate only: no measured ranking)"
    if row["latency_ratio"] < 1.005:
        return f"- {where}: no latency spread among architectures within +-{FLOPS_TOLERANCE:.0%} FLOPs."
    return (f"- {where}: `{row['slow_arch']}` is {'' if measured else 'estimated '}{row['latency_ratio']:.2f}x "
            f"slower than `{row['fast_arch']}` at {row['flops_diff_pct']:.1f}% FLOPs difference.")


def run_study(targets: Sequence[Target], samples: int, out_dir: str | Path, *, seed: int = 0,
              budget_s: float | None = None, space: SearchSpace = DEFAULT_SPACE, command: str = "",
              on_progress: Progress | None = None, families: bool = False) -> StudyResult:
    """Sample, measure or estimate, analyse and write every output; returns the tables."""
    if not targets:
        raise StudyError("give at least one --target")
    out = check_out_dir(out_dir)
    archs = study_architectures(samples, seed, space, families=families)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    table = collect(archs, targets, budget_s=budget_s, on_progress=on_progress)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    corr = correlations(table)
    pairs = same_flops_pairs(table)
    files = [out / "flops_vs_speed.csv", out / "flops_vs_speed.parquet", out / "correlations.csv",
             out / "same_flops_pairs.csv", out / "summary.md"]
    for path, frame in zip(files, (table, table, corr, pairs)):
        atomic_write_frame(path, frame, index=False)
    load = (load_before, load_after) if load_before is not None else None
    atomic_write_text(files[4], summary_markdown(table, corr, pairs, command=command, load=load))
    if families:
        files += [out / "family_pairs.csv", out / "table8.csv"]
        atomic_write_frame(files[-2], fam.cross_family_pairs(table, FLOPS_TOLERANCE), index=False)
        atomic_write_frame(files[-1], fam.table8_comparison(table), index=False)
    files += scatter_plots(table, out)
    return StudyResult(table, corr, pairs, out, tuple(files))
