"""The per-epoch files of a supernet run: ``metrics.csv`` and ``curves.png``, rewritten atomically
from the rows held in the checkpoint (the checkpoint is the source of truth, as for ``train``).

A supernet has no single validation accuracy: the columns ``val_top1_<probe>`` hold the one-shot
top-1 of a few fixed candidates (the smallest, the largest, the paper presets inside the space).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from evaluator.supernet.session import SupernetEpoch
from latency_models.atomic import atomic_write_csv, atomic_write_figure
from evaluator.training.outputs import CURVES_NAME, METRICS_NAME

BASE_COLUMNS = ("epoch", "train_loss", "lr", "images_per_s", "seconds")
PROBE_PREFIX = "val_top1_"


def write_metrics(folder: Path, rows: Sequence[SupernetEpoch]) -> Path:
    names = [n for n, _ in rows[0].probes] if rows else []
    return atomic_write_csv(folder / METRICS_NAME, [*BASE_COLUMNS, *(PROBE_PREFIX + n for n in names)], (
        [row.epoch, repr(row.train_loss), repr(row.lr), f"{row.images_per_s:.1f}", f"{row.seconds:.3f}",
         *(repr(a) for _, a in row.probes)] for row in rows))


def read_metrics(folder: Path) -> list[SupernetEpoch]:
    """The rows of ``folder/metrics.csv`` (what a DDP driver shows while rank 0 trains)."""
    with open(folder / METRICS_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for raw in rows:
        probes = tuple((k[len(PROBE_PREFIX):], float(v)) for k, v in raw.items() if k.startswith(PROBE_PREFIX))
        out.append(SupernetEpoch(int(raw["epoch"]), float(raw["train_loss"]), float(raw["lr"]),
                                 float(raw["images_per_s"]), float(raw["seconds"]), probes))
    return out


def write_curves(folder: Path, rows: Sequence[SupernetEpoch], title: str) -> Path | None:
    """Training loss and each probe's one-shot top-1 per epoch, side by side (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:
        return None
    epochs = [r.epoch for r in rows]
    fig = Figure(figsize=(9, 3.4), dpi=100)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [r.train_loss for r in rows], marker="o", color="tab:red")
    loss_ax.set(xlabel="epoch", ylabel="training loss (summed over a step's paths)", title="training loss")
    names = [n for n, _ in rows[0].probes] if rows else []
    for i, name in enumerate(names):
        acc_ax.plot(epochs, [100 * r.probes[i][1] for r in rows], marker="o", label=name)
    acc_ax.set(xlabel="epoch", ylabel="validation top-1 (%)", title="one-shot accuracy of fixed probes")
    if names:
        acc_ax.legend(loc="best", fontsize=7)  # probes near chance sit low: "lower right" hid them
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 12 else epochs[:: max(1, len(epochs) // 10)])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return atomic_write_figure(folder / CURVES_NAME, fig)


__all__ = ["CURVES_NAME", "METRICS_NAME", "read_metrics", "write_curves", "write_metrics"]
