"""Closed-form sizes of a network, and the memory this machine has: checked before allocating.

An architecture at the top of the string form's ranges (8192-wide, 64-deep stages), or a modest
one with a billion classes or a 100000-px input, needs terabytes; torch would only find out inside
its allocator, with a traceback. These formulas count what ``build_model`` would allocate with
O(1) work per stage (one unit's layers, times its repeats; no torch), so they can run before
anything is built. They are the one home of the size formulas: ``latency_models.costs.memory`` turns them into bytes for export, measurement
and training; tests check them against ``latency_models.costs.analytic`` and against torch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from search_space.architecture import Architecture
from search_space.blocks import network
from search_space.blocks.layers import Layer
from search_space.errors import ShufflenasError

#: Bytes per element: every weight and activation is float32.
FLOAT_BYTES = 4


class MemoryBudgetError(ShufflenasError):
    """A network, input size or batch would need more memory than this machine has available."""


@dataclasses.dataclass(frozen=True)
class ModelSize:
    """Element counts of ``build_model(arch, num_classes, input_size)``; activations are per image.

    Attributes:
        params: trainable parameters (equals ``count_parameters(build_model(...))``).
        buffers: BatchNorm running statistics (two per normalised channel).
        input: elements of one input image (3 x H x W).
        outputs: elements written by every fused op (conv+BN+ReLU, split, concat, shuffle, pooling,
            SE), i.e. the sum of the analytic layer list's output sizes.
        saved: elements training keeps for the backward pass: every op's output, plus the
            pre-BatchNorm conv output of every conv.
        peak: the largest input + output of one op: what inference holds at once.
    """

    params: int
    buffers: int
    input: int
    outputs: int
    saved: int
    peak: int


class _Tally:
    """Accumulates the layers of one op list, ``times`` identical copies at once (stride-1 units repeat)."""

    def __init__(self) -> None:
        self.params = self.buffers = self.outputs = self.conv_outputs = self.peak = 0

    def add(self, layers: Iterable[Layer], times: int = 1) -> None:
        for layer in layers:
            out = layer.out_elems
            if layer.kind in ("conv", "fc"):
                self.params += times * layer.params
                if layer.bn:
                    self.buffers += times * 2 * layer.c_out
                    self.conv_outputs += times * out
            self.outputs += times * out
            self.peak = max(self.peak, layer.in_elems + out)


def model_size(arch: Architecture, input_size: int = 224, num_classes: int = 1000) -> ModelSize:
    """Element counts of the network in closed form: O(stages) work for any depth or width.

    The layers are the specs' own (:mod:`search_space.blocks`): one unit's layers per run of
    identical units, counted ``count`` times.
    """
    t = _Tally()
    layers, h, w = network.stem(arch, input_size).layers(input_size, input_size)
    t.add(layers)
    for run in network.runs(arch, input_size):
        t.add(run.spec.layers(run.prefix, run.stage_name, run.h, run.w)[0], run.count)
    head, h, w = network.head(arch, input_size, num_classes)
    t.add(head.layers(h, w)[0])
    return ModelSize(params=t.params, buffers=t.buffers, input=3 * input_size * input_size, outputs=t.outputs,
                     saved=t.outputs + t.conv_outputs, peak=t.peak)


def parameter_count(arch: Architecture, num_classes: int = 1000) -> int:
    """Trainable parameters of ``build_model(arch, num_classes)`` (independent of the input size)."""
    return model_size(arch, 224, num_classes).params


# -- the memory this machine has --------------------------------------------------------------------
def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room() -> int | None:
    """What the process's cgroup (v2, else v1) still allows, where a limit is set."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and limit < 1 << 60:  # v1 reports "no limit" as a huge number
            return max(0, limit - (usage or 0))
    return None


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable (or free pages), capped by its cgroup.

    None when the system says nothing (then nothing is refused).
    """
    found = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        found = None
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            found = None
    room = _cgroup_room()
    if room is not None:
        found = room if found is None else min(found, room)
    return found


_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def format_bytes(count: int) -> str:
    """``3.8 TiB``; exact integer arithmetic, so any size prints (no float overflow)."""
    count = max(0, int(count))
    if count < 1024:
        return f"{count} bytes"
    for power, unit in enumerate(_UNITS[1:], start=1):
        if count < 1024 ** (power + 1) or unit == _UNITS[-1]:
            scale = 1024 ** power
            if count // scale >= 10 ** 6:
                return f"more than a million {unit}"
            return f"{(count * 10 + scale // 2) // scale / 10:.1f} {unit}"
    raise AssertionError("unreachable")


def require_bytes(needed: int, *, what: str, subject: str, detail: str = "") -> None:
    """Raise :class:`MemoryBudgetError` when ``needed`` bytes exceed what this machine has available."""
    available = available_memory()
    if available is None or needed <= available:
        return
    detail = f" ({detail})" if detail else ""
    raise MemoryBudgetError(f"{subject} would need about {format_bytes(needed)} of memory to {what}{detail}; "
                            f"this machine has {format_bytes(available)} available")


def describe(arch: Architecture, input_size: int, num_classes: int, batch: int = 1) -> str:
    """``1.0x with 1000000000 classes at 224x224`` (a preset by name, anything else by its string)."""
    from search_space.presets import preset_name

    name = preset_name(arch) or arch.to_string()
    text = f"{name} with {num_classes} classes at {input_size}x{input_size}"
    return text + (f", batch {batch}" if batch != 1 else "")


def require_weights_fit(arch: Architecture, num_classes: int, input_size: int = 224) -> None:
    """The cheap guard of ``build_model``: the weights alone (parameters and buffers) must fit."""
    size = model_size(arch, input_size, num_classes)
    weights = FLOAT_BYTES * (size.params + size.buffers)
    require_bytes(weights, what="build", subject=describe(arch, input_size, num_classes),
                  detail=f"weights {format_bytes(weights)}")
