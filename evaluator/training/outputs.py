"""The per-epoch files of a run: ``metrics.csv`` and ``curves.png``, each rewritten atomically
from the metrics held in the checkpoint (the checkpoint is the source of truth)."""

from __future__ import annotations

import csv
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

    def line(self, epochs: int) -> str:
        """The epoch's progress line."""
        return (f"epoch {self.epoch}/{epochs}: loss {self.train_loss:.4f}  val top-1 {self.val_top1:.4f}  "
                f"top-5 {self.val_top5:.4f}  lr {self.lr:.4g}  {self.images_per_s:.0f} img/s  {self.seconds:.1f} s")


METRIC_COLUMNS = tuple(f.name for f in dataclasses.fields(EpochMetrics))


def write_metrics(folder: Path, rows: Sequence[EpochMetrics]) -> Path:
    return atomic_write_csv(folder / METRICS_NAME, METRIC_COLUMNS, (
        [row.epoch, repr(row.train_loss), repr(row.val_top1), repr(row.val_top5), repr(row.lr),
         f"{row.images_per_s:.1f}", f"{row.seconds:.3f}"] for row in rows))


def read_metrics(folder: Path) -> list[EpochMetrics]:
    """The rows of ``folder/metrics.csv`` (what a DDP driver shows while rank 0 trains)."""
    with open(folder / METRICS_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [EpochMetrics(int(raw["epoch"]), *(float(raw[k]) for k in METRIC_COLUMNS[1:])) for raw in rows]


def write_curves(folder: Path, rows: Sequence[EpochMetrics], title: str) -> Path | None:
    """Training loss and validation top-1 per epoch, side by side (None without matplotlib)."""
    series = [("top-1", [100 * r.val_top1 for r in rows], {"marker": "o", "color": "tab:blue"}),
              ("top-5", [100 * r.val_top5 for r in rows], {"marker": ".", "color": "tab:gray"})]
    return write_loss_and_accuracy(folder / CURVES_NAME, rows, series, title, loss_label="training loss",
                                   accuracy_label="validation accuracy (%)", accuracy_title="validation accuracy",
                                   legend="lower right")


def write_loss_and_accuracy(path: Path, rows: Sequence, series: Sequence[tuple[str, Sequence[float], dict]],
                            title: str, *, loss_label: str, accuracy_label: str, accuracy_title: str,
                            legend: str, legend_size: float | None = None) -> Path | None:
    """A run's two panels: ``rows``' training loss, and each accuracy series (label, values, line style)."""
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
    loss_ax.set(xlabel="epoch", ylabel=loss_label, title="training loss")
    for label, values, style in series:
        acc_ax.plot(epochs, values, label=label, **style)
    acc_ax.set(xlabel="epoch", ylabel=accuracy_label, title=accuracy_title)
    if series:
        acc_ax.legend(loc=legend, fontsize=legend_size)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 12 else epochs[:: max(1, len(epochs) // 10)])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return atomic_write_figure(path, fig)


__all__ = ["CURVES_NAME", "EpochMetrics", "METRICS_NAME", "METRIC_COLUMNS", "read_metrics", "write_curves",
           "write_loss_and_accuracy", "write_metrics"]
