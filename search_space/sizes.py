"""Closed-form sizes of a network, and the memory this machine has: checked before allocating.

An architecture at the top of the string form's ranges (8192-wide, 64-deep stages), or a modest
one with a billion classes or a 100000-px input, needs terabytes; torch would only find out inside
its allocator, with a traceback. These formulas count what ``build_model`` would allocate in O(1)
per stage (no layer list, no torch), so they can run before anything is built. They are the one
home of the size formulas: ``latency_models.costs.memory`` turns them into bytes for export, measurement
and training; tests check them against ``latency_models.costs.analytic`` and against torch.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from search_space.architecture import Architecture, branch_channels
from search_space.errors import ShufflenasError
from search_space.layout import stem_layout

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
    """Accumulates one op at a time, ``times`` identical copies at once (stride-1 units repeat)."""

    def __init__(self) -> None:
        self.params = self.buffers = self.outputs = self.conv_outputs = self.peak = 0

    def conv(self, c_in: int, c_out: int, hw_in: int, hw_out: int, k: int = 1, groups: int = 1, *,
             bn: bool = True, bias: bool = False, times: int = 1) -> None:
        self.params += times * (k * k * c_in * c_out // groups + (2 * c_out if bn else 0) + (c_out if bias else 0))
        self.buffers += times * (2 * c_out if bn else 0)
        self.op(c_in * hw_in, c_out * hw_out, times)
        if bn:
            self.conv_outputs += times * c_out * hw_out

    def op(self, in_elems: int, out_elems: int, times: int = 1) -> None:
        if times > 0:
            self.outputs += times * out_elems
            self.peak = max(self.peak, in_elems + out_elems)


def _down(size: int, k: int, stride: int) -> int:
    return (size + 2 * (k // 2) - k) // stride + 1


def _unit(t: _Tally, c_in: int, c_out: int, hw: int, hw_out: int, stride: int, ratio: float, k: int,
          se: bool, extra_dw: bool, times: int) -> None:
    """One ShuffleNetV2 unit, op for op as ``latency_models.costs.analytic._unit`` lists it."""
    branch = branch_channels(c_out, ratio)
    if stride == 1:
        t.op(c_in * hw, c_in * hw, times)                     # split
        b_in = branch
    else:
        if extra_dw:
            t.conv(c_in, c_in, hw, hw, 3, c_in, times=times)
        t.conv(c_in, c_in, hw, hw_out, k, c_in, times=times)
        t.conv(c_in, c_out - branch, hw_out, hw_out, times=times)
        b_in = c_in
    if extra_dw:
        t.conv(b_in, b_in, hw, hw, 3, b_in, times=times)
    t.conv(b_in, branch, hw, hw, times=times)
    t.conv(branch, branch, hw, hw_out, k, branch, times=times)
    t.conv(branch, branch, hw_out, hw_out, times=times)
    if se:
        hidden = max(8, branch // 4)
        t.op(branch * hw_out, branch, times)                  # global pool
        t.conv(branch, hidden, 1, 1, bn=False, bias=True, times=times)
        t.conv(hidden, branch, 1, 1, bn=False, bias=True, times=times)
        t.op(branch * hw_out, branch * hw_out, times)           # scale
    t.op(c_out * hw_out, c_out * hw_out, times)               # concat
    t.op(c_out * hw_out, c_out * hw_out, times)               # shuffle


def model_size(arch: Architecture, input_size: int = 224, num_classes: int = 1000) -> ModelSize:
    """Element counts of the network in closed form: O(stages) work for any depth or width."""
    t = _Tally()
    stride, use_pool = stem_layout(input_size)
    side = _down(input_size, 3, stride)
    t.conv(3, arch.stem, input_size * input_size, side * side, 3)
    if use_pool:
        pooled = _down(side, 3, 2)
        t.op(arch.stem * side * side, arch.stem * pooled * pooled)
        side = pooled
    c = arch.stem
    for width, depth, ratio, k in zip(arch.widths, arch.depths, arch.split_ratios, arch.kernels):
        out = _down(side, k, 2)
        _unit(t, c, width, side * side, out * out, 2, ratio, k, arch.se, arch.extra_dw, 1)
        _unit(t, width, width, out * out, out * out, 1, ratio, k, arch.se, arch.extra_dw, depth - 1)
        c, side = width, out
    t.conv(c, arch.conv5, side * side, side * side)
    t.op(arch.conv5 * side * side, arch.conv5)                # global pool
    t.conv(arch.conv5, num_classes, 1, 1, bn=False, bias=True)
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
