"""Export an Architecture (or any torch module) to ONNX, the format every latency backend runs.

Two exporters exist in torch 2.13: the TorchScript-based one (``dynamo=False``, called "legacy"
here) and the dynamo one (the torch default; it needs ``onnxscript``). ``benchmarks/measure_speed.py``
times both on ShuffleNetV2 1.0x and checks they give the same outputs in ONNX Runtime; the legacy
exporter is the default because it is about an order of magnitude faster on these plain conv nets
(see benchmarks/results/measure.md), and export time is part of every new candidate's measurement.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import torch

from latency_models.atomic import atomic_write_bytes
from latency_models.costs.memory import require_fits
from search_space import Architecture, build_model
from search_space.errors import ShufflenasError
from search_space.sizes import FLOAT_BYTES, describe, format_bytes, parameter_count

OPSET = 17
#: A single ONNX file is one protobuf message, which cannot exceed 2 GiB; the graph itself takes
#: a little of it (a ShuffleNetV2 graph is well under 1 MiB).
ONNX_LIMIT_BYTES = 2**31 - 2**20
Exporter = Literal["legacy", "dynamo"]
EXPORTERS = ("legacy", "dynamo")


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def export_module_bytes(module: torch.nn.Module, input_shape: Sequence[int], *,
                        exporter: Exporter = "legacy") -> bytes:
    """ONNX bytes of ``module`` (put in eval mode) for a fixed input shape (N, C, H, W).

    Tracing runs one forward pass; it runs on one torch thread because on small shared CPUs a
    multi-threaded pass under load took 3-5x longer (benchmarks/results/measure.md).
    """
    if exporter not in EXPORTERS:
        raise ShufflenasError(f"unknown ONNX exporter {exporter!r} (known: {', '.join(EXPORTERS)})")
    module = module.eval()
    example = torch.randn(*[int(d) for d in input_shape])
    with warnings.catch_warnings(), torch.no_grad(), _torch_threads(1):
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            buffer = io.BytesIO()
            torch.onnx.export(module, (example,), buffer, input_names=["input"], output_names=["logits"],
                              opset_version=OPSET, dynamo=False)
            return buffer.getvalue()
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter needs it)
        except ImportError:
            raise ShufflenasError("the dynamo ONNX exporter needs onnxscript (pip install onnxscript)") from None
        program = torch.onnx.export(module, (example,), input_names=["input"], output_names=["logits"],
                                    opset_version=max(OPSET, 18), dynamo=True, verbose=False)
        return program.model_proto.SerializeToString()


class OnnxSizeError(ShufflenasError):
    """The network's weights do not fit into one ONNX file (the 2 GiB protobuf limit)."""


def check_exportable(arch: Architecture, input_size: int = 224, num_classes: int = 1000, batch: int = 1) -> None:
    """Refuse, before anything is allocated, what cannot fit in memory or in one ONNX file."""
    require_fits(arch, input_size=input_size, num_classes=num_classes, batch=batch, what="export")
    weights = FLOAT_BYTES * parameter_count(arch, num_classes)
    if weights > ONNX_LIMIT_BYTES:
        raise OnnxSizeError(f"{describe(arch, input_size, num_classes, batch)} has {format_bytes(weights)} of "
                            f"weights; one ONNX file holds at most 2 GiB (the protobuf limit)")


def export_bytes(arch: Architecture, input_size: int = 224, num_classes: int = 1000, batch: int = 1, *,
                 exporter: Exporter = "legacy") -> bytes:
    """ONNX bytes of ``build_model(arch)`` in eval mode, batch dimension fixed to ``batch``.

    Checked first (:func:`check_exportable`): what cannot fit is refused with one line.
    """
    check_exportable(arch, input_size, num_classes, batch)
    model = build_model(arch, num_classes, input_size)
    return export_module_bytes(model, (batch, 3, input_size, input_size), exporter=exporter)


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a unique temporary file and a rename (safe for concurrent writers)."""
    return atomic_write_bytes(path, data)


def export_file(arch: Architecture, path: str | Path, input_size: int = 224, num_classes: int = 1000,
                batch: int = 1) -> Path:
    """Write the ONNX model to ``path`` (parents created); returns the path."""
    return write_atomic(Path(path), export_bytes(arch, input_size, num_classes, batch))
