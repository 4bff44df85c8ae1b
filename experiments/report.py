"""Reports of a study: tables (CSV, Parquet), the Pareto front, PNG plots and a short summary.

Everything is read from the storage, so a report works on a study that is still running (it only
reads). One row per trial holds its state, objective values, constraints, parameters and every
user attr the driver stored (arch, costs, every target's latency and its source, accuracy, curve).

Per-epoch curves are user attrs (``curve``: validation accuracy, ``loss_curve``: training loss),
not Optuna intermediate values: ``trial.report`` is not supported in multi-objective studies.
Trials over a budget (infeasible) stay in every table with ``feasible = False`` and are drawn
hollow; the front is taken among feasible trials.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import trial_record as keys
from experiments.plotting import label_points
from experiments.trial_record import TrialRecord

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
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["number", "state", *[f"value:{n}" for n in names], keys.PRESET, keys.FAIL_REASON])
    return frame


def latency_targets(frame: pd.DataFrame) -> list[str]:
    return keys.latency_targets(frame.columns)


# -- plots ------------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _flag(series: pd.Series) -> pd.Series:
    """A boolean column that may hold None/NaN or strings (from CSV): True only where True."""
    return series.map(lambda v: v is True or v == 1 or str(v).lower() == "true")


def _zoom(values: Sequence[float], keep: Sequence[float], *, margin: float = 0.12,
          floor: float = 0.01) -> tuple[float, float] | None:
    """Axis limits around ``keep`` (the front and the presets) when ``values`` reach far below them.

    ``None`` when nothing lies further than the margin below (no zoom needed).
    """
    if not keep:
        return None
    lo, hi = min(keep), max(max(values), max(keep))
    pad = max((hi - lo) * margin, floor)
    if min(values) >= lo - 2 * pad:
        return None
    return lo - pad, hi + pad


def _scatter(frame: pd.DataFrame, x: str, y: str, path: Path, title: str, xlabel: str, ylabel: str,
             front_by: tuple[bool, bool] | None = None, x_scale: float = 1.0) -> Path | None:
    """:func:`scatter_figure` written to ``path`` (None when there is nothing to draw)."""
    fig = scatter_figure(frame, x, y, title, xlabel, ylabel, front_by, x_scale)
    if fig is None:
        return None
    fig.savefig(path, dpi=fig.dpi)
    _pyplot().close(fig)
    return path


def scatter_figure(frame: pd.DataFrame, x: str, y: str, title: str, xlabel: str, ylabel: str,
                   front_by: tuple[bool, bool] | None = None, x_scale: float = 1.0) -> Any:
    """Scatter of COMPLETE trials; presets labelled; infeasible trials hollow; the 2-D front of (x, y)
    among feasible trials drawn when asked, and a maximised y axis zoomed to the front and the presets
    (points far below stay visible as markers on the bottom edge, counted in a corner note).
    ``x_scale`` divides x (1e6: FLOPs and MAC in millions, no offset notation on the axis)."""
    if x not in frame.columns or y not in frame.columns:
        return None
    import pandas as pd

    done = frame[(frame["state"] == "COMPLETE")].dropna(subset=[x, y]).copy()
    if done.empty:
        return None
    plt = _pyplot()
    done[x], done[y] = done[x].astype(float) / x_scale, done[y].astype(float)
    feasible = _flag(done["feasible"]) if "feasible" in done.columns else pd.Series(True, index=done.index)
    is_preset = done[keys.PRESET].notna() if keys.PRESET in done.columns else pd.Series(False, index=done.index)
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    front_pts: list[list[float]] = []
    if front_by is not None:
        ok = done[feasible]
        points = ok[[x, y]].values.tolist()
        front_pts = sorted((points[i] for i in non_dominated(points, list(front_by))), key=lambda p: p[0])
    limits = None
    if front_by is not None and front_by[1]:  # y maximised (accuracy): zoom onto the front and the presets
        limits = _zoom(done[y].tolist(), [p[1] for p in front_pts] + done.loc[is_preset, y].tolist())
    shown_y = done[y].clip(lower=limits[0]) if limits else done[y]
    below = done[y] < limits[0] if limits else pd.Series(False, index=done.index)
    for mask, kwargs in (
        (~is_preset & feasible & ~below, {"s": 22, "alpha": 0.6, "color": "tab:blue", "label": "searched"}),
        (~is_preset & ~feasible & ~below, {"s": 24, "facecolors": "none", "edgecolors": "tab:blue", "alpha": 0.8,
                                           "label": "over budget (infeasible)"}),
    ):
        if mask.any():
            ax.scatter(done.loc[mask, x], shown_y[mask], **kwargs)
    if below.any():
        low = done.loc[below, y]
        ax.scatter(done.loc[below, x], shown_y[below], marker="v", s=30, color="0.45", clip_on=False, zorder=4,
                   label=f"below the axis ({int(below.sum())})")
        ax.annotate(f"{int(below.sum())} trial(s) below {limits[0]:.3g}, lowest {low.min():.3g}",
                    xy=(0.01, 0.015), xycoords="axes fraction", fontsize=7, color="0.3")
    if front_pts:
        ax.plot([p[0] for p in front_pts], [p[1] for p in front_pts], "-", color="tab:red", lw=1.2, zorder=3,
                label="front (feasible; this plot's two axes)")
        ax.scatter([p[0] for p in front_pts], [p[1] for p in front_pts], s=26, color="tab:red", zorder=3)
    if is_preset.any():
        for mask, kwargs in ((is_preset & feasible, {"color": "tab:orange", "label": "paper presets"}),
                             (is_preset & ~feasible, {"facecolors": "none", "edgecolors": "tab:orange",
                                                      "label": "paper presets, over budget"})):
            if mask.any():
                ax.scatter(done.loc[mask, x], shown_y[mask], s=90, marker="*", zorder=5, linewidths=1.0, **kwargs)
    if limits:
        ax.set_ylim(*limits)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    if is_preset.any():
        presets = done[is_preset]
        label_points(ax, [(r[x], float(shown_y[i]), str(r[keys.PRESET])) for i, r in presets.iterrows()],
                       list(zip(done[x], shown_y)))
    return fig


def _curve(value: Any) -> list[float]:
    """A stored per-epoch curve (a list, or its JSON text in a frame) as floats; [] when absent."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, (list, tuple)):
        return []
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return []


def _end_labels(ax: Any, labels: Sequence[tuple[int, float, str]], fontsize: float = 7) -> None:
    """Preset names at the end of their curves, pushed apart vertically so none overlaps another."""
    if not labels:
        return
    fig = ax.figure
    fig.canvas.draw()
    gap = fontsize * 1.3 * fig.dpi / 72.0  # pixels between label centres
    placed = sorted(((ax.transData.transform((e, v))[1], e, v, t) for e, v, t in labels))
    ys = [p[0] for p in placed]
    for i in range(1, len(ys)):
        ys[i] = max(ys[i], ys[i - 1] + gap)
    px_per_pt = fig.dpi / 72.0
    for y_px, (orig, epoch, value, text) in zip(ys, placed):
        ax.annotate(text, (epoch, value), textcoords="offset points", xytext=(6, (y_px - orig) / px_per_pt),
                    fontsize=fontsize, va="center", color="tab:orange",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "tab:orange"} if y_px - orig > 1 else None)


def curves_plot(frame: pd.DataFrame, path: Path) -> Path | None:
    """Per-epoch validation accuracy (and training loss) of every COMPLETE trial; presets and the
    front highlighted, infeasible trials dashed. None when no trial stored a curve."""
    if keys.CURVE not in frame.columns:
        return None
    done = frame[frame["state"] == "COMPLETE"]
    series = [(row, _curve(row[keys.CURVE]), _curve(row.get(keys.LOSS_CURVE))) for _, row in done.iterrows()]
    series = [s for s in series if s[1]]
    if not series:
        return None
    plt = _pyplot()
    with_loss = any(loss for _, _, loss in series)
    fig, axes = plt.subplots(1, 2 if with_loss else 1, figsize=(11 if with_loss else 6.4, 4.4), squeeze=False,
                             dpi=110)
    seen: dict[str, dict[str, Any]] = {}
    labels = []
    for row, acc, loss in sorted(series, key=lambda s: (s[0].get(keys.PRESET) is not None, bool(s[0].get("on_front")))):
        preset = row.get(keys.PRESET)
        preset = None if preset is None or (isinstance(preset, float) and math.isnan(preset)) else str(preset)
        feasible = row.get("feasible") is not False and str(row.get("feasible")).lower() != "false"
        if preset is not None:
            style, kind = {"color": "tab:orange", "lw": 2.0, "alpha": 0.95, "marker": "*", "ms": 7,
                           "zorder": 5}, "paper preset"
        elif row.get("on_front") is True:
            style, kind = {"color": "tab:red", "lw": 1.5, "alpha": 0.9, "marker": "o", "ms": 3, "zorder": 4}, "on the front"
        else:
            style, kind = {"color": "tab:blue", "lw": 0.9, "alpha": 0.35, "zorder": 2}, "searched"
        if not feasible:
            style["ls"] = "--"
        seen.setdefault(kind, {k: v for k, v in style.items() if k not in ("ls", "zorder")})
        for ax, values in ((axes[0][0], acc), *(((axes[0][1], loss),) if with_loss else ())):
            if values:
                ax.plot(range(1, len(values) + 1), values, **style)
        if preset is not None:
            labels.append((len(acc), acc[-1], preset))
    epochs = max(len(acc) for _, acc, _ in series)
    axes[0][0].set_ylabel("validation accuracy (proxy)")
    axes[0][0].set_title(f"validation accuracy per epoch ({len(series)} trials)", fontsize=10)
    if with_loss:
        axes[0][1].set_ylabel("mean training loss")
        axes[0][1].set_title("training loss per epoch", fontsize=10)
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.set_xticks(range(1, epochs + 1))
        ax.set_xlim(0.8, epochs + 0.6)
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], label=kind, **seen[kind]) for kind in ("searched", "on the front", "paper preset")
               if kind in seen]
    if any(str(row.get("feasible")).lower() == "false" for row, _, _ in series):
        handles.append(Line2D([], [], color="0.4", lw=1.0, ls="--", label="over budget (dashed)"))
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))  # the legend sits below the panels: it covers no curve
    _end_labels(axes[0][0], labels)
    fig.savefig(path, dpi=fig.dpi)
    plt.close(fig)
    return path


def _source(frame: pd.DataFrame, target: str) -> str:
    column = keys.latency_key(target, "source")
    if column not in frame.columns:
        return "?"
    values = sorted({str(v) for v in frame[column].dropna()})
    return ", ".join(values) or "?"


def write_plots(frame: pd.DataFrame, out: Path) -> list[Path]:
    written = [p for p in (curves_plot(frame, out / "curves.png"),) if p is not None]
    for target in latency_targets(frame):
        col = keys.latency_key(target)
        label = f"latency on {target} (ms, {_source(frame, target)})"
        safe = target.replace("/", "_")
        for path in (
            _scatter(frame, col, keys.ACCURACY, out / f"accuracy_vs_latency_{safe}.png",
                     f"proxy accuracy vs latency: {target}", label, "proxy accuracy", front_by=(False, True)),
            _scatter(frame, keys.FLOPS, col, out / f"flops_vs_latency_{safe}.png",
                     f"FLOPs vs latency: {target}", "MFLOPs (multiply-adds)", label, x_scale=1e6),
            _scatter(frame, keys.MAC, col, out / f"mac_vs_latency_{safe}.png",
                     f"MAC vs latency: {target}", "MAC (memory access cost, M elements)", label, x_scale=1e6),
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
            "budgets": study.user_attrs.get("budgets", {}), "front": front_rows(study),
            "over_budget": [_row(t, objective_names(study)) for t in over_budget_front(study)]}


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
    if "on_front" in frame.columns:
        pareto = frame[frame["on_front"] | frame["over_budget_front"]]
    else:
        pareto = frame.iloc[0:0]
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
    """One plot per shared target: each study's accuracy-vs-latency front (device-specific searches)."""
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
            points = done[[col, keys.ACCURACY]].astype(float).values.tolist()
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
