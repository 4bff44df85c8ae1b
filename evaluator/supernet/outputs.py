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
from evaluator.training.outputs import CURVES_NAME, METRICS_NAME, write_loss_and_accuracy
from latency_models.atomic import atomic_write_csv

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
    names = [n for n, _ in rows[0].probes] if rows else []
    series = [(name, [100 * r.probes[i][1] for r in rows], {"marker": "o"}) for i, name in enumerate(names)]
    # probes near chance sit low: a legend at "lower right" hid them
    return write_loss_and_accuracy(folder / CURVES_NAME, rows, series, title,
                                   loss_label="training loss (summed over a step's paths)",
                                   accuracy_label="validation top-1 (%)",
                                   accuracy_title="one-shot accuracy of fixed probes", legend="best", legend_size=7)


__all__ = ["CURVES_NAME", "METRICS_NAME", "read_metrics", "write_curves", "write_metrics"]
