"""The plots of a study report: accuracy against each target's latency, and the per-epoch curves.

Kept apart from the tables and the summary (``experiments.report``) because it is all matplotlib;
``report`` re-exports the names callers use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latency_models.atomic import atomic_write_figure
from experiments import trial_record as keys
from experiments.plotting import label_points

if TYPE_CHECKING:
    import pandas as pd


def latency_targets(frame: pd.DataFrame) -> list[str]:
    return keys.latency_targets(frame.columns)


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
    atomic_write_figure(path, fig, dpi=fig.dpi)
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
        from experiments.report import non_dominated

        ok = done[feasible]
        points = ok[[x, y]].values.tolist()
        front_pts = sorted((points[i] for i in non_dominated(points, list(front_by))), key=lambda p: p[0])
    finalists = _finalists(done, y)
    limits = None
    if front_by is not None and front_by[1]:  # y maximised (accuracy): zoom onto the front, presets, finalists
        limits = _zoom(done[y].tolist(), [p[1] for p in front_pts] + done.loc[is_preset, y].tolist()
                       + finalists[keys.TRAINED_ACCURACY].tolist())
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
    if not finalists.empty:
        _draw_finalists(ax, finalists, x, shown_y)
    if is_preset.any():
        for mask, kwargs in ((is_preset & feasible, {"color": "tab:orange", "label": "paper presets"}),
                             (is_preset & ~feasible, {"facecolors": "none", "edgecolors": "tab:orange",
                                                      "label": "paper presets, over budget"})):
            if mask.any():
                ax.scatter(done.loc[mask, x], shown_y[mask], s=90, marker="*", zorder=5, linewidths=1.0, **kwargs)
    if limits:
        ax.set_ylim(*limits)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel}; trained (finalists)" if not finalists.empty else ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    labels = [(r[x], float(shown_y[i]), str(r[keys.PRESET])) for i, r in done[is_preset].iterrows()]
    labels += [(r[x], r[keys.TRAINED_ACCURACY], f"#{r['number']}") for _, r in finalists.iterrows()
               if "number" in finalists.columns]  # which trial each diamond re-scores
    if labels:
        drawn = list(zip(done[x], shown_y)) + list(zip(finalists[x], finalists[keys.TRAINED_ACCURACY]))
        label_points(ax, labels, drawn)
    return fig


def _finalists(done: pd.DataFrame, y: str) -> pd.DataFrame:
    """The rows of ``done`` with a trained accuracy, when ``y`` is the accuracy (else none)."""
    if y != keys.ACCURACY or keys.TRAINED_ACCURACY not in done.columns:
        return done.iloc[0:0].assign(**{keys.TRAINED_ACCURACY: []})
    rows = done[done[keys.TRAINED_ACCURACY].notna()].copy()
    rows[keys.TRAINED_ACCURACY] = rows[keys.TRAINED_ACCURACY].astype(float)
    return rows


def finalist_label(finalists: pd.DataFrame) -> str:
    """The legend entry of the finalists: where their accuracy came from (one source, or several)."""
    column = keys.TRAINED_ACCURACY_SOURCE
    sources = sorted({str(s) for s in finalists[column].dropna()}) if column in finalists.columns else []
    return f"finalists: {sources[0]}" if len(sources) == 1 else f"finalists: trained ({len(sources)} setups)"


def _draw_finalists(ax: Any, finalists: pd.DataFrame, x: str, shown_y: pd.Series, color: str = "tab:green",
                    label: str | None = None) -> None:
    """Each finalist's trained accuracy as a diamond, joined by a dotted line to the point the search gave it."""
    for i, row in finalists.iterrows():
        ax.plot([row[x], row[x]], [float(shown_y[i]), row[keys.TRAINED_ACCURACY]], ls=":", lw=1.1, color=color,
                zorder=4)
    ax.scatter(finalists[x], finalists[keys.TRAINED_ACCURACY], marker="D", s=34, color=color, edgecolors="black",
               linewidths=0.6, zorder=6, label=label or finalist_label(finalists))


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
    atomic_write_figure(path, fig, dpi=fig.dpi)
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


