"""Reports of a study: tables (CSV, Parquet), the Pareto front, PNG plots and a short summary.

Everything is read from the storage, so a report works on a study that is still running (it only
reads). One row per trial holds its state, objective values, constraints, parameters and every
user attr the driver stored (arch, costs, every target's latency and its source, accuracy, curve).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.storage import FAIL_REASON_ATTR, OWNER_ATTR

if TYPE_CHECKING:
    import optuna
    import pandas as pd


# -- the front --------------------------------------------------------------------------------------
def _feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def non_dominated(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[int]:
    """Indices of the points no other point dominates (ties are kept)."""
    signed = [[(-v if up else v) for v, up in zip(p, maximize)] for p in points]
    front = []
    for i, p in enumerate(signed):
        dominated = False
        for j, q in enumerate(signed):
            if j != i and all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p)):
                dominated = True
                break
        if not dominated:
            front.append(i)
    return front


def front_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Non-dominated feasible COMPLETE trials, by trial number."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.values is not None and _feasible(t)]
    maximize = [d == StudyDirection.MAXIMIZE for d in study.directions]
    index = non_dominated([t.values for t in trials], maximize)
    return sorted((trials[i] for i in index), key=lambda t: t.number)


def front_numbers(study: optuna.Study) -> list[int]:
    return [t.number for t in front_trials(study)]


def objective_names(study: optuna.Study) -> list[str]:
    names = study.user_attrs.get("objectives")
    return list(names) if names else [f"value{i}" for i in range(len(study.directions))]


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The front as small flat dicts (for the search summary and ``--json``)."""
    names = objective_names(study)
    rows = []
    for t in front_trials(study):
        row: dict[str, Any] = {"trial": t.number, "preset": t.user_attrs.get("preset")}
        row.update({n: v for n, v in zip(names, t.values)})
        row.update({k: t.user_attrs.get(k) for k in ("mac", "flops", "params")})
        row["arch"] = t.user_attrs.get("arch")
        rows.append(row)
    return rows


# -- tables -----------------------------------------------------------------------------------------
def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, objective values, constraints, params, user attrs."""
    import pandas as pd

    names = objective_names(study)
    front = set(front_numbers(study))
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name,
                               "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete,
                               "duration_s": t.duration.total_seconds() if t.duration else None}
        values = t.values or [None] * len(names)
        row.update({f"value:{n}": v for n, v in zip(names, values)})
        row.update({f"constraint:{k}": v for k, v in t.constraints.items()})
        row["feasible"] = _feasible(t) if t.state.name == "COMPLETE" else None
        row["on_front"] = t.number in front
        row.update({f"param:{k}": v for k, v in t.params.items()})
        for key, value in t.user_attrs.items():
            if key != OWNER_ATTR:
                row[key] = _cell(value)
        row.setdefault("preset", None)
        row.setdefault(FAIL_REASON_ATTR, None)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["number", "state", *[f"value:{n}" for n in names], "preset", FAIL_REASON_ATTR])
    return frame


def latency_targets(frame: pd.DataFrame) -> list[str]:
    return [c.split(":", 1)[1] for c in frame.columns if c.startswith("latency_ms:")]


# -- plots ------------------------------------------------------------------------------------------
def _scatter(frame: pd.DataFrame, x: str, y: str, path: Path, title: str, xlabel: str, ylabel: str,
             front_by: tuple[bool, bool] | None = None) -> Path | None:
    """Scatter of COMPLETE trials; presets labelled; the 2-D front of (x, y) drawn when asked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x not in frame.columns or y not in frame.columns:
        return None
    done = frame[(frame["state"] == "COMPLETE")].dropna(subset=[x, y])
    if done.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    plain = done[done["preset"].isna()]
    ax.scatter(plain[x], plain[y], s=22, alpha=0.6, color="tab:blue", label="searched")
    if front_by is not None:
        points = done[[x, y]].astype(float).values.tolist()
        idx = non_dominated(points, list(front_by))
        pts = sorted((points[i] for i in idx), key=lambda p: p[0])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color="tab:red", ms=5, lw=1.2,
                    label="front (this plot's two axes)")
    presets = done[done["preset"].notna()]
    if not presets.empty:
        ax.scatter(presets[x], presets[y], s=70, marker="*", color="tab:orange", zorder=5, label="paper presets")
        for _, row in presets.iterrows():
            ax.annotate(str(row["preset"]), (row[x], row[y]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _source(frame: pd.DataFrame, target: str) -> str:
    column = f"latency_source:{target}"
    if column not in frame.columns:
        return "?"
    values = sorted({str(v) for v in frame[column].dropna()})
    return ", ".join(values) or "?"


def write_plots(frame: pd.DataFrame, out: Path) -> list[Path]:
    written = []
    for target in latency_targets(frame):
        col = f"latency_ms:{target}"
        label = f"latency on {target} (ms, {_source(frame, target)})"
        safe = target.replace("/", "_")
        for path in (
            _scatter(frame, col, "accuracy", out / f"accuracy_vs_latency_{safe}.png",
                     f"proxy accuracy vs latency: {target}", label, "proxy accuracy", front_by=(False, True)),
            _scatter(frame, "flops", col, out / f"flops_vs_latency_{safe}.png",
                     f"FLOPs vs latency: {target}", "FLOPs (multiply-adds)", label),
            _scatter(frame, "mac", col, out / f"mac_vs_latency_{safe}.png",
                     f"MAC vs latency: {target}", "MAC (memory access cost, elements)", label),
        ):
            if path is not None:
                written.append(path)
    return written


# -- summary ----------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and abs(value) >= 10000:
        return f"{value / 1e6:.1f}M"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def study_summary(study: optuna.Study, frame: pd.DataFrame) -> dict[str, Any]:
    states = frame["state"].value_counts().to_dict() if not frame.empty else {}
    return {"study": study.study_name, "objectives": objective_names(study),
            "directions": [d.name.lower() for d in study.directions], "trials": int(len(frame)),
            "states": {k: int(v) for k, v in states.items()}, "targets": latency_targets(frame),
            "budgets": study.user_attrs.get("budgets", {}), "front": front_rows(study)}


def write_report(study: optuna.Study, out: str | Path) -> dict[str, Any]:
    """Write trials.csv/.parquet, pareto.csv, PNG plots and summary.md into ``out``; return a summary."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from search_space.errors import ShufflenasError

        raise ShufflenasError(f"cannot create the report directory {out}: {exc.strerror or exc}") from None
    frame = trials_frame(study)
    frame.to_csv(out / "trials.csv", index=False)
    parquet = frame.copy()
    for column in parquet.columns:  # mixed-type object columns -> strings, so Arrow takes them
        if parquet[column].dtype == object and column not in ("datetime_start", "datetime_complete"):
            parquet[column] = parquet[column].map(lambda v: None if v is None else str(v))
    parquet.to_parquet(out / "trials.parquet", index=False)
    pareto = frame[frame["on_front"]] if "on_front" in frame.columns else frame.iloc[0:0]
    pareto.to_csv(out / "pareto.csv", index=False)
    plots = write_plots(frame, out)
    summary = study_summary(study, frame)
    summary["files"] = sorted(p.name for p in out.iterdir() if p.is_file())
    summary["plots"] = [p.name for p in plots]
    (out / "summary.md").write_text(summary_markdown(summary, frame))
    summary["files"] = sorted(p.name for p in out.iterdir() if p.is_file())
    return summary


def summary_markdown(summary: dict[str, Any], frame: pd.DataFrame) -> str:
    names = summary["objectives"]
    lines = [f"# Study `{summary['study']}`", "",
             f"Objectives: {', '.join(f'{n} ({d})' for n, d in zip(names, summary['directions']))}.",
             f"Trials: {summary['trials']} ({', '.join(f'{k.lower()} {v}' for k, v in summary['states'].items())}).", ""]
    if summary["budgets"]:
        lines += ["Budgets: " + ", ".join(f"{k} <= {v}" for k, v in summary["budgets"].items()), ""]
    for target in summary["targets"]:
        lines.append(f"- latency on `{target}`: {_source(frame, target)}")
    lines += ["", f"## Pareto front ({len(summary['front'])} trials; presets flagged)", ""]
    lines.append(markdown_table(summary["front"], ["trial", "preset", *names, "mac", "flops", "params", "arch"]))
    presets = frame[frame["preset"].notna() & (frame["state"] == "COMPLETE")] if "preset" in frame.columns else frame.iloc[0:0]
    if not presets.empty:
        lines += ["", "## Paper presets", ""]
        cols = ["number", "preset", *[f"value:{n}" for n in names], "on_front"]
        lines.append(markdown_table(presets[[c for c in cols if c in presets.columns]].to_dict("records"),
                                    [c for c in cols if c in presets.columns]))
    failed = frame[frame["state"] == "FAIL"] if "state" in frame.columns else frame.iloc[0:0]
    if not failed.empty:
        lines += ["", "## Failed trials", ""]
        lines.append(markdown_table(failed[["number", FAIL_REASON_ATTR]].to_dict("records"), ["number", FAIL_REASON_ATTR]))
    if summary.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in summary["plots"]]
    return "\n".join(lines) + "\n"


def compare_fronts(studies: Sequence[optuna.Study], out: str | Path) -> list[Path]:
    """One plot per shared target: each study's accuracy-vs-latency front (device-specific searches)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    frames = {s.study_name: trials_frame(s) for s in studies}
    targets = sorted(set().union(*(latency_targets(f) for f in frames.values())))
    written = []
    for target in targets:
        col = f"latency_ms:{target}"
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        drawn = False
        for name, frame in frames.items():
            if col not in frame.columns or "accuracy" not in frame.columns:
                continue
            done = frame[frame["state"] == "COMPLETE"].dropna(subset=[col, "accuracy"])
            if done.empty:
                continue
            points = done[[col, "accuracy"]].astype(float).values.tolist()
            pts = sorted((points[i] for i in non_dominated(points, [False, True])), key=lambda p: p[0])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", ms=4, label=name)
            drawn = True
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel(f"latency on {target} (ms)")
        ax.set_ylabel("proxy accuracy")
        ax.set_title(f"fronts of each study on {target}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"compare_fronts_{target.replace('/', '_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
