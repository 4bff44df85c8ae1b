"""The per-epoch files of a run: ``metrics.csv`` and ``curves.png``, each rewritten atomically
from the metrics held in the checkpoint (the checkpoint is the source of truth)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from latency_models.atomic import atomic_write_csv, atomic_write_figure

METRICS_NAME = "metrics.csv"
CURVES_NAME = "curves.png"


@dataclasses.dataclass(frozen=True)
class EpochMetrics:
    """One row of ``metrics.csv``; ``epoch`` counts from 1, ``lr`` is the rate at the epoch's last step."""

    epoch: int
    train_loss: float
    val_top1: float
    val_top5: float
    lr: float
    images_per_s: float
    seconds: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EpochMetrics:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


METRIC_COLUMNS = tuple(f.name for f in dataclasses.fields(EpochMetrics))


def write_metrics(folder: Path, rows: Sequence[EpochMetrics]) -> Path:
    return atomic_write_csv(folder / METRICS_NAME, METRIC_COLUMNS, (
        [row.epoch, repr(row.train_loss), repr(row.val_top1), repr(row.val_top5), repr(row.lr),
         f"{row.images_per_s:.1f}", f"{row.seconds:.3f}"] for row in rows))


def write_curves(folder: Path, rows: Sequence[EpochMetrics], title: str) -> Path | None:
    """Training loss and validation top-1 per epoch, side by side (None without matplotlib)."""
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
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    acc_ax.plot(epochs, [100 * r.val_top1 for r in rows], marker="o", color="tab:blue", label="top-1")
    acc_ax.plot(epochs, [100 * r.val_top5 for r in rows], marker=".", color="tab:gray", label="top-5")
    acc_ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation accuracy")
    acc_ax.legend(loc="lower right")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 12 else epochs[:: max(1, len(epochs) // 10)])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return atomic_write_figure(folder / CURVES_NAME, fig)


__all__ = ["CURVES_NAME", "EpochMetrics", "METRICS_NAME", "METRIC_COLUMNS", "write_curves", "write_metrics"]
