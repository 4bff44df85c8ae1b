"""Report plots on a real Optuna study (SQLite) with budgets, an accuracy outlier and curves.

The trials are told directly (values, constraints, the user attrs the search driver stores), so
each plot's behaviour is pinned: infeasible trials hollow, the accuracy axis zoomed to the front
with the outlier kept on the edge, preset labels clear of every point, curves.png drawn.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import optuna
import pandas as pd
import pytest

from experiments.report import curves_plot, scatter_figure, trials_frame, write_report
from experiments.storage import load_study, open_storage

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BUDGET_MS = 10.0
#: (preset, accuracy, latency ms); two over the 10 ms budget, one accuracy outlier.
TRIALS = [("0.5x", 0.90, 4.0), ("1.0x", 0.94, 8.0), ("2.0x", 0.95, 20.0), (None, 0.93, 6.0), (None, 0.92, 9.0),
          (None, 0.91, 5.0), (None, 0.334, 7.0), (None, 0.96, 15.0), (None, 0.935, 8.2), (None, 0.905, 4.1)]
Y = "accuracy"
X = "latency_ms:local-cpu"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('plots') / 'study.db'}"
    study = optuna.create_study(study_name="plots", storage=open_storage(url), directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["accuracy", "latency:local-cpu"])
    study.set_user_attr("budgets", {"local-cpu": BUDGET_MS})
    for i, (preset, acc, ms) in enumerate(TRIALS):
        curve = [round(acc * f, 4) for f in (0.5, 0.8, 1.0)]
        attrs = {"accuracy": acc, X: ms, "latency_source:local-cpu": "measured", "flops": int(1e8 + 1e7 * i),
                 "mac": int(5e6 + 1e6 * i), "curve": curve, "loss_curve": [2.0, 1.0, 0.6 + i / 100]}
        if preset:
            attrs["preset"] = preset
        study.add_trial(optuna.trial.create_trial(values=[acc, ms], user_attrs=attrs,
                                                  constraints={"budget:local-cpu": ms - BUDGET_MS}))
    return load_study(url, "plots")


def test_over_budget_trials_are_flagged_in_the_front_csv_and_summary(study, tmp_path):
    summary = write_report(study, tmp_path)
    pareto = pd.read_csv(tmp_path / "pareto.csv")
    assert "feasible" in pareto.columns
    feasible = pareto[pareto["feasible"]]
    # the feasible front: 0.5x (4 ms), 0.905 @ 4.1, 0.91 @ 5, 0.93 @ 6, 1.0x (8 ms); nothing over budget
    assert sorted(feasible["accuracy"]) == [0.9, 0.905, 0.91, 0.93, 0.94]
    # the over-budget trial no trial dominates (0.96 @ 15 ms) is listed, flagged infeasible; 2.0x is dominated
    assert list(pareto.loc[~pareto["feasible"], "accuracy"]) == [0.96]
    assert [r["accuracy"] for r in summary["over_budget"]] == [0.96]
    text = (tmp_path / "summary.md").read_text()
    assert "Over budget (infeasible) but not dominated" in text and "| feasible |" in text
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert trials.loc[trials["preset"] == "2.0x", "feasible"].item() == False  # noqa: E712
    assert "curves.png" in summary["plots"] and (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def _collections(ax):
    return {c.get_label(): c for c in ax.collections}


def test_accuracy_axis_zooms_to_the_front_and_keeps_the_outlier_on_the_edge(study):
    fig = scatter_figure(trials_frame(study), X, Y, "t", "latency", "accuracy", front_by=(False, True))
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert 0.334 < low < 0.90 and high >= 0.96  # zoomed: the 0.334 outlier does not squeeze the front
    assert 0.90 - low < 0.1  # the front fills the axis
    below = _collections(ax)["below the axis (1)"]
    (point,) = below.get_offsets()
    assert point[0] == 7.0 and point[1] == pytest.approx(low)  # drawn on the bottom edge, at its latency
    assert any("lowest 0.334" in t.get_text() for t in ax.texts)
    plt.close(fig)


def test_infeasible_trials_are_hollow(study):
    fig = scatter_figure(trials_frame(study), X, Y, "t", "latency", "accuracy", front_by=(False, True))
    found = _collections(fig.axes[0])
    hollow = found["over budget (infeasible)"]
    assert [tuple(p) for p in hollow.get_offsets()] == [(15.0, 0.96)]
    assert (hollow.get_facecolors()[:, 3] == 0).all()  # no fill
    preset_hollow = found["paper presets, over budget"]
    assert [tuple(p) for p in preset_hollow.get_offsets()] == [(20.0, 0.95)]
    assert (preset_hollow.get_facecolors()[:, 3] == 0).all()
    filled = found["searched"]
    assert (filled.get_facecolors()[:, 3] > 0).all() and (15.0, 0.96) not in [tuple(p) for p in filled.get_offsets()]
    # the front line runs through feasible trials only
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_label().startswith("front")]
    assert max(line.get_xdata()) <= BUDGET_MS
    plt.close(fig)


def test_preset_labels_cover_no_point_and_no_other_label(study):
    fig = scatter_figure(trials_frame(study), X, Y, "t", "latency", "accuracy", front_by=(False, True))
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if t.get_text() in ("0.5x", "1.0x", "2.0x")]
    assert sorted(t.get_text() for t in labels) == ["0.5x", "1.0x", "2.0x"]
    points = np.vstack([c.get_offsets() for c in ax.collections])
    pixels = ax.transData.transform(points)
    boxes = [t.get_window_extent(renderer) for t in labels]
    for box in boxes:
        assert not any(box.x0 <= px <= box.x1 and box.y0 <= py <= box.y1 for px, py in pixels), box
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1:])
    plt.close(fig)


def test_curves_plot_draws_every_trial_and_needs_curves(study, tmp_path):
    frame = trials_frame(study)
    assert curves_plot(frame, tmp_path / "curves.png") == tmp_path / "curves.png"
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert curves_plot(frame.drop(columns=["curve"]), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
