"""The trained supernet on disk: ``DIR/supernet.pt``, what a search and ``--init supernet:DIR`` read.

One file, written atomically at the end of ``shufflenas supernet train`` (the per-epoch resume
state is that run's ``checkpoint.pt``, a separate file). It holds the bank and the supernet's
identity: its space, class count and input size, the data set it was trained on, the training
method and epochs. Its checksum (the first 16 hex digits of the file's SHA-256) is what a trial
records, so scores from two different supernets are never mixed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from evaluator.datasets import DataSplit
from evaluator.supernet.weights import Supernet, SupernetError, SupernetSpec
from evaluator.training.checkpoint import LOAD_ERRORS
from latency_models.atomic import atomic_write

SUPERNET_FORMAT = "shufflenas-supernet"
SUPERNET_VERSION = 1
SUPERNET_NAME = "supernet.pt"


@dataclasses.dataclass(frozen=True)
class SupernetInfo:
    """A stored supernet's identity (everything but the weights)."""

    spec: SupernetSpec
    dataset: Mapping[str, Any]   # evaluator.training.loop.dataset_identity of the training data
    method: str                  # "spos" | "sandwich"
    epochs: int
    checksum: str
    path: Path
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # recipe, versions, metrics

    @property
    def dataset_name(self) -> str:
        return str(self.dataset.get("name"))

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "checksum": self.checksum, "method": self.method, "epochs": self.epochs,
                "dataset": dict(self.dataset), **self.spec.to_dict(), "nested_rows": self.spec.nested_rows}

    def check_data(self, data: DataSplit) -> None:
        """Refuse, in one line, data this supernet was not trained for (another set, size or classes)."""
        ours = {"name": data.name, "input_size": data.input_size, "num_classes": data.num_classes}
        for key, value in ours.items():
            if self.dataset.get(key) != value:
                raise SupernetError(f"supernet {self.path} was trained on {self.dataset.get('name')} at "
                                    f"{self.dataset.get('input_size')} px ({self.dataset.get('num_classes')} classes); "
                                    f"this run uses {data.name} at {data.input_size} px ({data.num_classes} classes)")


def supernet_file(path: str | os.PathLike) -> Path:
    """``DIR/supernet.pt`` for a directory, the path itself for a file."""
    path = Path(path)
    return path / SUPERNET_NAME if path.is_dir() or not path.suffix else path


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def save_supernet(out_dir: str | os.PathLike, supernet: Supernet, *, dataset: Mapping[str, Any], method: str,
                  epochs: int, **extra: Any) -> SupernetInfo:
    """Write ``out_dir/supernet.pt`` atomically; the info carries the new file's checksum."""
    payload = {"format": SUPERNET_FORMAT, "version": SUPERNET_VERSION, "spec": supernet.spec.to_dict(),
               "dataset": dict(dataset), "method": method, "epochs": int(epochs), "extra": extra,
               "state": supernet.state_dict()}
    path = atomic_write(Path(out_dir) / SUPERNET_NAME, lambda fh: torch.save(payload, fh))
    return SupernetInfo(supernet.spec, dict(dataset), method, int(epochs), file_checksum(path), path, extra)


def _read(path: str | os.PathLike) -> tuple[dict[str, Any], SupernetInfo]:
    file = supernet_file(path)
    if not file.is_file():
        raise SupernetError(f"no supernet at {path} (expected {file}; `shufflenas supernet train --out DIR` "
                            "writes one)")
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
    except LOAD_ERRORS:
        raise SupernetError(f"supernet {file} is unreadable (corrupt, truncated or not a supernet file)") from None
    if not isinstance(data, dict) or data.get("format") != SUPERNET_FORMAT:
        raise SupernetError(f"{file} is not a shufflenas supernet file")
    if data.get("version") != SUPERNET_VERSION:
        raise SupernetError(f"supernet {file} has format version {data.get('version')!r}; this build reads "
                            f"version {SUPERNET_VERSION}")
    missing = [k for k in ("spec", "dataset", "method", "epochs", "state") if k not in data]
    if missing:
        raise SupernetError(f"supernet {file} is incomplete (no {', '.join(missing)})")
    spec = SupernetSpec.from_dict(data["spec"])
    info = SupernetInfo(spec, dict(data["dataset"]), str(data["method"]), int(data["epochs"]), file_checksum(file),
                        file, dict(data.get("extra") or {}))
    return data, info


def read_info(path: str | os.PathLike) -> SupernetInfo:
    """The identity of the supernet at ``path`` (a directory or its supernet.pt)."""
    return _read(path)[1]


def load_supernet(path: str | os.PathLike) -> tuple[Supernet, SupernetInfo]:
    """The stored supernet, rebuilt from its spec and loaded strictly, with its identity."""
    data, info = _read(path)
    spec = info.spec
    state = data["state"]
    shapes = {key[len("bank."):].replace(":", "."): tuple(t.shape) for key, t in state.items() if key.startswith("bank.")}
    supernet = Supernet(spec.space, spec.num_classes, spec.input_size, kernel_transform=spec.kernel_transform,
                        channel_ids=spec.channel_ids, nested_rows=spec.nested_rows,
                        shapes=shapes)
    try:
        supernet.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise SupernetError(f"supernet {info.path} does not fit its own space "
                            f"({' '.join(str(exc).split())[:160]})") from None
    return supernet, info


__all__ = ["SUPERNET_NAME", "SupernetInfo", "file_checksum", "load_supernet", "read_info", "save_supernet",
           "supernet_file"]
