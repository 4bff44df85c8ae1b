"""Reports of a study: tables (CSV, Parquet), the Pareto front, PNG plots and a short summary.

Everything is read from the storage, so a report works on a study that is still running (it only
reads). One row per trial holds its state, objective values, constraints, parameters and every
user attr the driver stored (arch, costs, every target's latency and its source, accuracy, curve).

Per-epoch curves are user attrs (``curve``: validation accuracy, ``loss_curve``: training loss),
not Optuna intermediate values: ``trial.report`` is not supported in multi-objective studies.
Trials over a budget (infeasible) stay in every table with ``feasible = False`` and are drawn
hollow; the front is taken among feasible trials.

Every point says which accuracy it carries: ``accuracy`` with its ``accuracy_source`` (``proxy``
or ``supernet``), and for the finalists (``experiments.finalists``, study attrs ``finalist:<n>``)
also ``trained_accuracy`` with ``trained_accuracy_source`` (epochs, data set, input size).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latency_models.atomic import atomic_write_figure, atomic_write_frame, atomic_write_text
from experiments import trial_record as keys
from experiments.report_plots import _flag, _pyplot, _source, curves_plot, scatter_figure, write_plots  # noqa: F401
from experiments.trial_record import TrialRecord, finalist_records

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


def hypervolume(points: Sequence[Sequence[float | None]], maximize: Sequence[bool], ref: Sequence[float]) -> float:
    """Area the points dominate up to ``ref`` (two objectives; arguments as :func:`non_dominated`).

    The project's one front-quality measure. A point with a missing or non-finite value is left out
    (it is on no front), and so is one that does not improve on ``ref`` in both objectives.
    """
    if len(maximize) != 2 or len(ref) != 2:
        raise ValueError("hypervolume is defined here for two objectives")
    sign = [-1.0 if up else 1.0 for up in maximize]
    r = (sign[0] * ref[0], sign[1] * ref[1])
    pts = sorted((sign[0] * p[0], sign[1] * p[1]) for p in points
                 if all(v is not None and math.isfinite(v) for v in p))
    area, best_y = 0.0, r[1]
    for x, y in pts:
        if x < r[0] and y < best_y:
            area += (r[0] - x) * (best_y - y)
            best_y = y
    return area


def comparable(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials whose accuracies compare: all of them, or in a successive-halving study (trials
    carry ``rung``) those at the highest rung any of them reached (1 epoch does not compare with 9)."""
    top = max((t.user_attrs[keys.RUNG] for t in trials if t.user_attrs.get(keys.RUNG) is not None), default=None)
    return list(trials) if top is None else [t for t in trials if t.user_attrs.get(keys.RUNG) == top]


def front_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Non-dominated feasible COMPLETE trials, by trial number (among :func:`comparable` ones)."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    trials = comparable([t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                         if t.values is not None and _feasible(t)])
    maximize = [d == StudyDirection.MAXIMIZE for d in study.directions]
    index = non_dominated([t.values for t in trials], maximize)
    return sorted((trials[i] for i in index), key=lambda t: t.number)


def front_numbers(study: optuna.Study) -> list[int]:
    return [t.number for t in front_trials(study)]


def objective_names(study: optuna.Study) -> list[str]:
    names = study.user_attrs.get("objectives")
    return list(names) if names else [f"value{i}" for i in range(len(study.directions))]


def over_budget_front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE trials over a budget that no trial dominates: what the budgets cost."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]
    maximize = [d == StudyDirection.MAXIMIZE for d in study.directions]
    index = non_dominated([t.values for t in trials], maximize)
    return sorted((trials[i] for i in index if not _feasible(trials[i])), key=lambda t: t.number)


def _row(trial: optuna.trial.FrozenTrial, names: Sequence[str]) -> dict[str, Any]:
    record = TrialRecord.from_user_attrs(trial.user_attrs)
    row: dict[str, Any] = {"trial": trial.number, keys.PRESET: record.preset}
    row.update({n: v for n, v in zip(names, trial.values)})
    row.update({k: record.costs.get(k) for k in (keys.MAC, keys.FLOPS, keys.PARAMS)})
    row["feasible"] = _feasible(trial)
    row[keys.ARCH] = record.arch
    return row


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The front as small flat dicts (for the search summary and ``--json``)."""
    names = objective_names(study)
    return [_row(t, names) for t in front_trials(study)]


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
    over = {t.number for t in over_budget_front(study)}
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
        row["over_budget_front"] = t.number in over
        row.update({f"param:{k}": v for k, v in t.params.items()})
        columns = TrialRecord.from_user_attrs(t.user_attrs).report_columns()
        row.update({key: _cell(value) for key, value in sorted(columns.items())})  # sorted, as Optuna returns them
        row.setdefault(keys.PRESET, None)
        row.setdefault(keys.FAIL_REASON, None)
        if t.state.name == "COMPLETE" and row.get(keys.ACCURACY) is not None:
            row.setdefault(keys.ACCURACY_SOURCE, "proxy")  # trials of earlier versions were all proxy-trained
        rows.append(row)
    _add_finalists(rows, study)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["number", "state", *[f"value:{n}" for n in names], keys.PRESET, keys.FAIL_REASON])
    return frame


def _add_finalists(rows: list[dict[str, Any]], study: optuna.Study) -> None:
    """The finalists' trained accuracy beside the proxy one (columns only when the study has finalists)."""
    found = finalist_records(study.user_attrs)
    if not found:
        return
    for row in rows:
        record = found.get(row["number"])
        row[keys.FINALIST] = record is not None
        row[keys.FINALIST_FOR] = ";".join(record.picked_for) if record else None
        row[keys.TRAINED_ACCURACY] = record.accuracy if record else None
        row[keys.TRAINED_ACCURACY_SOURCE] = record.describe() if record else None


def finalist_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The finalists as flat rows: both accuracies and where each came from."""
    return [{"trial": n, "picked_for": ", ".join(r.picked_for), "picked_by": r.picked_by, "accuracy": r.proxy_accuracy,
             keys.ACCURACY_SOURCE: r.proxy_source, keys.TRAINED_ACCURACY: r.accuracy,
             keys.TRAINED_ACCURACY_SOURCE: r.describe(), keys.ARCH: r.arch}
            for n, r in finalist_records(study.user_attrs).items()]


def latency_targets(frame: pd.DataFrame) -> list[str]:
    return keys.latency_targets(frame.columns)


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
            "budgets": study.user_attrs.get("budgets", {}), "front": front_rows(study),
            "over_budget": [_row(t, objective_names(study)) for t in over_budget_front(study)],
            "finalists": finalist_rows(study)}


def write_report(study: optuna.Study, out: str | Path) -> dict[str, Any]:
    """Write trials.csv/.parquet, pareto.csv, PNG plots and summary.md into ``out``; return a summary."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from search_space.errors import ShufflenasError

        raise ShufflenasError(f"cannot create the report directory {out}: {exc.strerror or exc}") from None
    frame = trials_frame(study)
    atomic_write_frame(out / "trials.csv", frame, index=False)
    parquet = frame.copy()
    for column in parquet.columns:  # mixed-type object columns -> strings, so Arrow takes them
        if parquet[column].dtype == object and column not in ("datetime_start", "datetime_complete"):
            parquet[column] = parquet[column].map(lambda v: None if v is None else str(v))
    atomic_write_frame(out / "trials.parquet", parquet, index=False)
    if "on_front" in frame.columns:
        pareto = frame[frame["on_front"] | frame["over_budget_front"]]
    else:
        pareto = frame.iloc[0:0]
    atomic_write_frame(out / "pareto.csv", pareto, index=False)
    plots = write_plots(frame, out)
    summary = study_summary(study, frame)
    summary["files"] = sorted(p.name for p in out.iterdir() if p.is_file())
    summary["plots"] = [p.name for p in plots]
    atomic_write_text(out / "summary.md", summary_markdown(summary, frame))
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
    over = summary.get("over_budget", [])
    lines += ["", f"## Pareto front ({len(summary['front'])} feasible trials; presets flagged)", ""]
    columns = ["trial", keys.PRESET, *names, "feasible", keys.MAC, keys.FLOPS, keys.PARAMS, keys.ARCH]
    lines.append(markdown_table(summary["front"], columns))
    if over:
        lines += ["", f"Over budget (infeasible) but not dominated by any trial: {len(over)} (`pareto.csv` holds "
                  "them with `feasible = False`; hollow markers in the plots).", "",
                  markdown_table(over, columns)]
    presets = (frame[frame[keys.PRESET].notna() & (frame["state"] == "COMPLETE")] if keys.PRESET in frame.columns
               else frame.iloc[0:0])
    if not presets.empty:
        lines += ["", "## Paper presets", ""]
        cols = ["number", keys.PRESET, *[f"value:{n}" for n in names], "feasible", "on_front"]
        lines.append(markdown_table(presets[[c for c in cols if c in presets.columns]].to_dict("records"),
                                    [c for c in cols if c in presets.columns]))
    finalists = summary.get("finalists") or []
    if finalists:
        from experiments.finalists import RULES

        rules = "; ".join(f"{pick}: {RULES.get(pick, pick)}" for pick in sorted({f["picked_by"] for f in finalists}))
        lines += ["", f"## Finalists ({len(finalists)}: re-scored by stand-alone training)", "",
                  f"Picked per latency target ({rules}). `accuracy` is what the search scored (its source beside "
                  "it); `trained_accuracy` is the stand-alone training's validation top-1. In the plots: diamonds, "
                  "joined to their search point by a dotted line.", ""]
        lines.append(markdown_table(finalists, ["trial", "picked_for", "picked_by", "accuracy", keys.ACCURACY_SOURCE,
                                                keys.TRAINED_ACCURACY, keys.TRAINED_ACCURACY_SOURCE, keys.ARCH]))
    failed = frame[frame["state"] == "FAIL"] if "state" in frame.columns else frame.iloc[0:0]
    if not failed.empty:
        lines += ["", "## Failed trials", ""]
        lines.append(markdown_table(failed[["number", keys.FAIL_REASON]].to_dict("records"), ["number", keys.FAIL_REASON]))
    if summary.get("plots"):
        lines += ["", "## Plots", ""]
        if "curves.png" in summary["plots"]:
            lines += ["`curves.png`: validation accuracy and training loss per epoch of every trial (the `curve` and "
                      "`loss_curve` columns of trials.csv).", ""]
        lines += [f"![{p}]({p})" for p in summary["plots"]]
    return "\n".join(lines) + "\n"


def compare_fronts(studies: Sequence[optuna.Study], out: str | Path) -> list[Path]:
    """One plot per shared target: each study's accuracy-vs-latency front (device-specific searches),
    with its paper presets (stars) and finalists (trained accuracy: diamonds) in the study's colour."""
    from experiments.report_plots import _draw_finalists, _finalists

    plt = _pyplot()

    out = Path(out)
    frames = {s.study_name: trials_frame(s) for s in studies}
    targets = sorted(set().union(*(latency_targets(f) for f in frames.values())))
    written = []
    for target in targets:
        col = keys.latency_key(target)
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        drawn = False
        for name, frame in frames.items():
            if col not in frame.columns or keys.ACCURACY not in frame.columns:
                continue
            done = frame[frame["state"] == "COMPLETE"].dropna(subset=[col, keys.ACCURACY])
            if "feasible" in done.columns:
                done = done[_flag(done["feasible"])]  # a front within the study's budgets
            if done.empty:
                continue
            done = done.assign(**{col: done[col].astype(float), keys.ACCURACY: done[keys.ACCURACY].astype(float)})
            points = done[[col, keys.ACCURACY]].values.tolist()
            pts = sorted((points[i] for i in non_dominated(points, [False, True])), key=lambda p: p[0])
            (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", ms=4, label=name)
            presets = done[done[keys.PRESET].notna()] if keys.PRESET in done.columns else done.iloc[0:0]
            if not presets.empty:
                ax.scatter(presets[col], presets[keys.ACCURACY], marker="*", s=90, color=line.get_color(),
                           edgecolors="black", linewidths=0.5, zorder=5, label=f"{name}: paper presets")
            finalists = _finalists(done, keys.ACCURACY)
            if not finalists.empty:  # its search point too: a finalist picked for another target is off this front
                ax.scatter(finalists[col], finalists[keys.ACCURACY], s=16, facecolors="none",
                           edgecolors=line.get_color(), zorder=4)
                _draw_finalists(ax, finalists, col, done[keys.ACCURACY], color=line.get_color(),
                                label=f"{name}: finalists (trained)")
            drawn = True
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel(f"latency on {target} (ms)")
        ax.set_ylabel("proxy accuracy; trained (finalists)" if any(
            keys.TRAINED_ACCURACY in f.columns for f in frames.values()) else "proxy accuracy")
        ax.set_title(f"fronts of each study on {target}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"compare_fronts_{target.replace('/', '_')}.png"
        atomic_write_figure(path, fig, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
