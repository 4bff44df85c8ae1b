"""Memory needed to export, measure or train a network, estimated before anything is allocated.

Built on the closed-form element counts of :mod:`search_space.sizes` (no layer list, no torch),
so the estimate costs microseconds even for a 64-deep, 8192-wide network. Every place that
allocates a network calls :func:`require_fits` first; what cannot fit ends in one line that says
how much it would need and how much there is, instead of a ``DefaultCPUAllocator`` traceback.

The estimate is deliberately rough (float32 everywhere, framework overhead ignored):

- inference (``training=False``: export, measurement): the weights four times (the torch
  module, the BatchNorm-folded copy the ONNX exporter makes, the serialised model, the runtime
  session's copy) plus, per image, the input and the largest input + output of one op;
- training: the weights three times (parameters, gradients, the SGD momentum; the BatchNorm
  buffers are counted with them), plus, per image, the input, every activation kept for the
  backward pass and the largest op's working set.
"""

from __future__ import annotations

from search_space import Architecture
from search_space.sizes import (
    FLOAT_BYTES,
    MemoryBudgetError,
    available_memory,
    describe,
    format_bytes,
    model_size,
    require_bytes,
)

#: Copies of the weights alive at once while exporting to ONNX and opening the session.
INFERENCE_WEIGHT_COPIES = 4
#: Parameters, their gradients and the momentum buffer of SGD.
TRAINING_WEIGHT_COPIES = 3


def _parts(arch: Architecture, input_size: int, num_classes: int, batch: int,
           training: bool) -> tuple[int, int, int]:
    """(bytes of one copy of the weights, copies alive at once, activation bytes) of one estimate."""
    size = model_size(arch, input_size, num_classes)
    weights = FLOAT_BYTES * (size.params + size.buffers)
    if training:
        return weights, TRAINING_WEIGHT_COPIES, FLOAT_BYTES * batch * (size.input + size.saved + size.peak)
    return weights, INFERENCE_WEIGHT_COPIES, FLOAT_BYTES * batch * (size.input + size.peak)


def estimate_bytes(arch: Architecture, *, input_size: int, num_classes: int, batch: int = 1,
                   training: bool = False) -> int:
    """Bytes needed to run ``arch`` for inference, or (``training``) to train it on ``batch`` images."""
    weights, copies, activations = _parts(arch, input_size, num_classes, batch, training)
    return copies * weights + activations


def require_fits(arch: Architecture, *, input_size: int, num_classes: int, batch: int = 1, training: bool = False,
                 what: str = "build") -> None:
    """Raise :class:`MemoryBudgetError` (one line) when the estimate exceeds the available memory."""
    weights, copies, activations = _parts(arch, input_size, num_classes, batch, training)
    held = "with gradients and momentum" if training else "copies at once"
    require_bytes(copies * weights + activations, what=what, subject=describe(arch, input_size, num_classes, batch),
                  detail=f"weights {format_bytes(weights)} x{copies} {held}, activations {format_bytes(activations)}")


__all__ = ["INFERENCE_WEIGHT_COPIES", "MemoryBudgetError", "TRAINING_WEIGHT_COPIES", "available_memory",
           "estimate_bytes", "format_bytes", "require_fits"]
