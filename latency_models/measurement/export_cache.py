"""The on-disk cache of ONNX exports every ONNX-based backend (and a remote board) is fed from.

An export is kept per arch id + input size + batch (+ classes, opset). A candidate's export is
only kept until its measurement is cached: nothing needs it afterwards (11-12 MB each at 224x224).
The reference networks' exports are always kept, since every normalised measurement times them.
"""

from __future__ import annotations

from pathlib import Path

from latency_models.measurement.onnx_export import OPSET, export_bytes, write_atomic
from latency_models.paths import cache_dir
from search_space import Architecture
from search_space.errors import ShufflenasError

NUM_CLASSES = 1000


def onnx_bytes(arch: Architecture, input_size: int = 224, batch: int = 1, num_classes: int = NUM_CLASSES, *,
               keep: bool = True) -> bytes:
    """The ONNX export of ``arch``, cached on disk per arch id + input size + batch (+ classes, opset).

    With ``keep=False`` an existing export is still read, but a new one stays in memory: a
    candidate is measured once, and its export is not needed once the measurement is cached.
    """
    path = onnx_path(arch, input_size, batch, num_classes)
    if path.exists():
        try:
            cached = path.read_bytes()
            if _is_model(cached):
                return cached
        except OSError:
            pass  # unreadable or damaged: export again and replace it
    data = export_bytes(arch, input_size, num_classes, batch)
    if not keep:
        return data
    try:
        write_atomic(path, data)
    except OSError:
        pass  # a read-only cache only costs a re-export next time
    return data


def _is_model(data: bytes) -> bool:
    """Whether cached bytes still parse as an ONNX model with a graph (a damaged file is re-exported)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.ModelProto.FromString(data)
    except (DecodeError, ValueError, RuntimeError):
        return False
    return len(model.graph.node) > 0 and len(model.graph.output) > 0


def onnx_path(arch: Architecture, input_size: int = 224, batch: int = 1, num_classes: int = NUM_CLASSES) -> Path:
    """Where :func:`onnx_bytes` keeps the export of ``arch``."""
    return cache_dir("onnx") / f"{arch.arch_id}_s{input_size}_b{batch}_c{num_classes}_op{OPSET}.onnx"


def _reference_archs() -> set[str]:
    """The compact strings of every target's reference network (their exports are kept)."""
    from latency_models.measurement.targets import load_targets

    try:
        return {t.reference for t in load_targets().values() if t.reference is not None}
    except ShufflenasError:
        return set()


def drop_export(arch: Architecture, input_size: int = 224, batch: int = 1, num_classes: int = NUM_CLASSES) -> bool:
    """Delete the cached export of ``arch`` unless it is a reference network; True when one was deleted."""
    if arch.to_string() in _reference_archs():
        return False
    try:
        onnx_path(arch, input_size, batch, num_classes).unlink()
    except OSError:
        return False
    return True
