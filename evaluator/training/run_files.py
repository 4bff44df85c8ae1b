"""The files of a run other than the per-epoch ones: its folder, ``model.pt`` and ``model.onnx``.

Shared by the single-process loop and rank 0 of a DDP run, which write the same files.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from evaluator.datasets import DataSplit
from evaluator.training.checkpoint import remove_stale_temporaries
from evaluator.training.outputs import CURVES_NAME, METRICS_NAME, EpochMetrics
from evaluator.training.recipe import DataSpec, TrainRecipe
from evaluator.training.session import TrainError
from search_space import Architecture

try:  # model.pt / model.onnx I/O; the loop itself runs without it
    from evaluator.training import weights
except ImportError:  # pragma: no cover - only while weights.py is not part of the build
    weights = None  # type: ignore[assignment]

MODEL_NAME = "model.pt"
ONNX_NAME = "model.onnx"
#: Files whose presence without a checkpoint means DIR holds some other run's results.
OUTPUT_NAMES = (MODEL_NAME, ONNX_NAME, METRICS_NAME, CURVES_NAME)


def run_title(arch: Architecture, data: DataSplit) -> str:
    """The title of a run's plots."""
    return f"{arch.to_string()} on {data.name} ({data.input_size}x{data.input_size})"


def software_versions() -> dict[str, str]:
    """What a checkpoint and a model file record about the software that wrote them."""
    found = weights.current_versions() if weights is not None else {"torch": torch.__version__}
    return {str(k): str(v) for k, v in found.items()}  # plain strings: torch.__version__ is not


@contextlib.contextmanager
def claim_out(out: Path) -> Iterator[None]:
    """Hold ``out`` for one training process: a second one writing there is refused in one line.

    Two trainings in one folder would overwrite each other's checkpoint and metrics rows, and the
    second one's start would delete the first one's half-written temporaries. The lock is ``flock``
    on the folder itself (no file is created); the kernel drops it when the process dies, so a run
    killed with kill -9 resumes at once. It is taken before :func:`prepare_out` cleans up.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        prepare_out(out)
        yield
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise TrainError(f"another training is writing to {out}; wait for it to end (a killed one resumes "
                             "from there) or give another --out") from None
        prepare_out(out)
        yield
    finally:
        os.close(fd)  # releases the lock


def prepare_out(out: Path) -> None:
    """Create ``out`` and prove a file can be written there (a read-only mount fails here, not later)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise TrainError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    remove_stale_temporaries(out)


def write_model_files(final: torch.nn.Module, arch: Architecture, data: DataSplit, recipe: TrainRecipe,
                      rows: list[EpochMetrics], out: Path,
                      data_spec: DataSpec | None = None) -> tuple[str | None, str | None]:
    """``model.pt`` and ``model.onnx`` of the trained weights; files already there are kept as they are."""
    if weights is None:
        return None, None
    model_pt, model_onnx = out / MODEL_NAME, out / ONNX_NAME
    if model_pt.exists() and model_onnx.exists():
        return str(model_pt), str(model_onnx)
    module = copy.deepcopy(final).float().cpu().to(memory_format=torch.contiguous_format).eval()
    last = rows[-1]
    info = weights.ModelInfo(
        arch=arch.to_string(), num_classes=data.num_classes, input_size=data.input_size, classes=tuple(data.classes),
        mean=tuple(data.mean), std=tuple(data.std), dataset=data.name,
        recipe={**recipe.to_dict(), **({"data": data_spec.to_dict()} if data_spec is not None else {})},
        metrics={"val_top1": last.val_top1, "val_top5": last.val_top5, "train_loss": last.train_loss,
                 "epochs": last.epoch},
        versions=software_versions())
    if not model_pt.exists():
        weights.save_model(model_pt, module, info)
    if not model_onnx.exists():
        weights.export_onnx(module, info, model_onnx)
    return str(model_pt), str(model_onnx)
