"""The training checkpoint: one file, written atomically every epoch, that a run resumes from.

It holds everything the next epoch depends on (weights, optimiser, schedule position, EMA, loss
scaler, every random generator, the metrics so far) plus the run's identity (architecture, data
set, recipe). A run never resumes from, or overwrites, the checkpoint of another run.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latency_models.atomic import atomic_write, atomic_write_bytes, remove_stale_temporaries  # noqa: F401  (re-exported)
from search_space.errors import ShufflenasError

CHECKPOINT_FORMAT = "shufflenas-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
#: What ``torch.load`` raises on a damaged, truncated or foreign file (a stream starting with ``a``
#: gives IndexError); its own messages are advice for developers, so callers say one line instead.
LOAD_ERRORS = (OSError, RuntimeError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
               zipfile.BadZipFile, pickle.UnpicklingError)


class CheckpointError(ShufflenasError):
    """A checkpoint is missing, unreadable, not ours, or belongs to another run."""


# -- random generators ------------------------------------------------------------------------------
def capture_rng(data_generator: torch.Generator) -> dict[str, Any]:
    """Every generator the loop may draw from, as plain data (loadable with ``weights_only``)."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "data": data_generator.get_state(),
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any], data_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    data_generator.set_state(state["data"])
    np_state = state["numpy"]
    np.random.set_state({"bit_generator": np_state["bit_generator"],
                         "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
                         "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]})
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- save / load ------------------------------------------------------------------------------------
#: what a training checkpoint must hold
REQUIRED = ("arch", "dataset", "recipe", "epoch", "metrics", "model", "optimizer", "rng")


def save_tagged(path: str | os.PathLike, state: Mapping[str, Any], fmt: str, version: int) -> Path:
    """Write ``state`` under a format tag and version, atomically (a kill leaves the old file or the new one)."""
    payload = {"format": fmt, "version": version, **state}
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def load_tagged(path: str | os.PathLike, fmt: str, version: int, required: tuple[str, ...], what: str,
                foreign: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read a file :func:`save_tagged` wrote; anything unreadable or foreign is a one-line :class:`CheckpointError`.

    ``what`` names the kind in the message ("training checkpoint"); ``foreign`` maps another format tag
    to the message its file gets here (a supernet's checkpoint handed to training, and the reverse).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" if not path.exists()
                              else f"checkpoint {path} is not a file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS:
        raise CheckpointError(f"checkpoint {path} is unreadable (corrupt, truncated or not a shufflenas "
                              "checkpoint); remove it to start over") from None
    tag = data.get("format") if isinstance(data, dict) else None
    if tag != fmt:  # a tag of another kind is named; anything else (a foreign pickle, a non-string) is not ours
        hint = (foreign or {}).get(tag) if isinstance(tag, str) else None
        raise CheckpointError(f"{path} {hint or f'is not a shufflenas {what}'}")
    if data.get("version") != version:
        raise CheckpointError(f"checkpoint {path} has format version {data.get('version')!r}; this build reads "
                              f"version {version}")
    missing = [k for k in required if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete (no {', '.join(missing)})")
    return data


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write a training run's ``state`` (tensors and plain data) with the format tag, atomically."""
    return save_tagged(path, state, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint; anything unreadable or foreign is a one-line :class:`CheckpointError`."""
    return load_tagged(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, REQUIRED, "training checkpoint")


def check_identity(data: Mapping[str, Any], path: Path, *, arch: str, dataset: Mapping[str, Any],
                   recipe: Mapping[str, Any]) -> None:
    """Refuse a checkpoint written by another run; name the first thing that differs."""
    def differ(kind: str, key: str, theirs: Any, ours: Any) -> CheckpointError:
        return CheckpointError(f"{path} belongs to another run ({kind} {key}: checkpoint has {theirs!r}, this "
                               f"run has {ours!r}); choose another --out, or remove that directory to start over")

    if data["arch"] != arch:
        raise CheckpointError(f"{path} belongs to another architecture ({data['arch']}; this run trains {arch}); "
                              "choose another --out, or remove that directory to start over")
    theirs_ds = dict(data["dataset"])
    for key in sorted(set(theirs_ds) | set(dataset)):
        if theirs_ds.get(key) != dataset.get(key):
            raise differ("data set", key, theirs_ds.get(key), dataset.get(key))
    theirs = dict(data["recipe"])
    for key in sorted(set(theirs) | set(recipe)):
        if theirs.get(key) != recipe.get(key):
            raise differ("recipe option", key, theirs.get(key), recipe.get(key))


__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "CHECKPOINT_VERSION", "LOAD_ERRORS", "CheckpointError", "atomic_write",
           "atomic_write_bytes", "capture_rng", "check_identity", "load_checkpoint", "load_tagged",
           "remove_stale_temporaries", "restore_rng", "save_checkpoint", "save_tagged"]
