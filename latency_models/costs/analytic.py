"""Analytic costs per layer: params, FLOPs, MAC, kernels and element-wise volume.

MAC follows the paper (Sec. 2): a conv with BN/ReLU fused reads its input and weights and writes
its output once, ``h_in*w_in*c_in + h_out*w_out*c_out + k*k*c_in*c_out/g`` (activations times the
batch); data-movement and element-wise ops (split, concat, shuffle, pooling, SE scaling) cost the
elements they read plus those they write. ``kernels`` counts the ops left after fusion (G3
fragmentation); ``elementwise`` counts the elements touched by element-wise work, fused epilogues
(BN, ReLU) included (G4). FLOPs are multiply-adds of convs and FC layers, as in the paper.

Layers are plain records, so the guideline micro-benchmarks can be costed with the same code as
whole architectures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Literal

import pandas as pd

from search_space import Architecture, branch_channels, stem_layout

LayerKind = Literal["conv", "fc", "maxpool", "gap", "split", "concat", "shuffle", "add", "relu", "mul"]
COST_COLUMNS = ("params", "flops", "mac", "kernels", "elementwise")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One op after BN/ReLU fusion, with its input and output shapes (NCHW, batch excluded)."""

    name: str
    kind: LayerKind
    c_in: int
    c_out: int
    h_in: int
    w_in: int
    h_out: int
    w_out: int
    k: int = 1
    stride: int = 1
    groups: int = 1
    bn: bool = False        # a fused BatchNorm (params 2*c_out, one element-wise pass)
    relu: bool = False      # a fused activation (one element-wise pass)
    bias: bool = False
    inputs: int = 1         # tensors read by an element-wise op (concat: 2, add: 2)
    stage: str = ""

    @property
    def in_elems(self) -> int:
        return self.c_in * self.h_in * self.w_in

    @property
    def out_elems(self) -> int:
        return self.c_out * self.h_out * self.w_out

    def costs(self, batch: int = 1) -> dict[str, int]:
        """params, flops, mac, kernels, elementwise of this layer for a batch."""
        if self.kind in ("conv", "fc"):
            weights = self.k * self.k * self.c_in * self.c_out // self.groups
            params = weights + (2 * self.c_out if self.bn else 0) + (self.c_out if self.bias else 0)
            flops = batch * self.h_out * self.w_out * weights
            mac = batch * (self.in_elems + self.out_elems) + weights
            epilogue = int(self.bn) + int(self.relu) + int(self.bias)
            return {"params": params, "flops": flops, "mac": mac, "kernels": 1,
                    "elementwise": batch * self.out_elems * epilogue}
        if self.kind == "split":  # two slices: each reads and writes its part
            return {"params": 0, "flops": 0, "mac": 2 * batch * self.in_elems, "kernels": 2,
                    "elementwise": batch * self.in_elems}
        moved = batch * (self.in_elems * self.inputs + self.out_elems)
        if self.kind == "concat":
            moved = batch * (self.in_elems + self.out_elems)  # c_in = sum of the inputs' channels
        elif self.kind == "mul":  # SE scaling: the map times a broadcast per-channel vector (c_in values)
            moved = batch * (self.in_elems + self.c_in + self.out_elems)
        return {"params": 0, "flops": 0, "mac": moved, "kernels": 1, "elementwise": batch * self.out_elems}


#: Channel tile of CPU conv kernels (8 fp32 lanes with AVX2). Convs whose channels are not a multiple
#: of it run several times slower per FLOP on ONNX Runtime's x86 kernels (G1's 22/44-channel row ran
#: 5x slower than 32/32), something neither FLOPs nor MAC see.
ALIGN = 8


def is_misaligned(layer: Layer) -> bool:
    """A conv whose channel counts are off the :data:`ALIGN` tile (depthwise: its channels)."""
    if layer.kind != "conv":
        return False
    if layer.groups > 1 and layer.groups == layer.c_in:
        return layer.c_in % ALIGN != 0
    return layer.c_in % ALIGN != 0 or layer.c_out % ALIGN != 0


def _conv(name: str, stage: str, c_in: int, c_out: int, h: int, w: int, k: int = 1, stride: int = 1,
          groups: int = 1, relu: bool = True) -> tuple[Layer, int, int]:
    pad = k // 2
    h_out = (h + 2 * pad - k) // stride + 1
    w_out = (w + 2 * pad - k) // stride + 1
    layer = Layer(name, "conv", c_in, c_out, h, w, h_out, w_out, k, stride, groups, bn=True, relu=relu, stage=stage)
    return layer, h_out, w_out


def _se(prefix: str, stage: str, c: int, h: int, w: int) -> list[Layer]:
    hidden = max(8, c // 4)
    return [
        Layer(f"{prefix}.se.pool", "gap", c, c, h, w, 1, 1, stage=stage),
        Layer(f"{prefix}.se.fc1", "conv", c, hidden, 1, 1, 1, 1, relu=True, bias=True, stage=stage),
        Layer(f"{prefix}.se.fc2", "conv", hidden, c, 1, 1, 1, 1, bias=True, stage=stage),
        Layer(f"{prefix}.se.scale", "mul", c, c, h, w, h, w, inputs=2, stage=stage),
    ]


def _unit(prefix: str, stage: str, c_in: int, c_out: int, h: int, w: int, stride: int, ratio: float,
          kernel: int, se: bool, extra_dw: bool) -> tuple[list[Layer], int, int]:
    branch = branch_channels(c_out, ratio)
    kept = c_out - branch
    layers: list[Layer] = []
    if stride == 1:
        layers.append(Layer(f"{prefix}.split", "split", c_in, c_in, h, w, h, w, stage=stage))
        b_in, hh, ww = branch, h, w
    else:
        hh, ww = h, w
        if extra_dw:
            l, hh, ww = _conv(f"{prefix}.branch1.dw0", stage, c_in, c_in, hh, ww, 3, 1, c_in, relu=False)
            layers.append(l)
        l, hh, ww = _conv(f"{prefix}.branch1.dw", stage, c_in, c_in, hh, ww, kernel, stride, c_in, relu=False)
        layers.append(l)
        l, hh, ww = _conv(f"{prefix}.branch1.pw", stage, c_in, kept, hh, ww)
        layers.append(l)
        b_in, hh, ww = c_in, h, w
    if extra_dw:
        l, hh, ww = _conv(f"{prefix}.branch2.dw0", stage, b_in, b_in, hh, ww, 3, 1, b_in, relu=False)
        layers.append(l)
    l, hh, ww = _conv(f"{prefix}.branch2.pw1", stage, b_in, branch, hh, ww)
    layers.append(l)
    l, hh, ww = _conv(f"{prefix}.branch2.dw", stage, branch, branch, hh, ww, kernel, stride, branch, relu=False)
    layers.append(l)
    l, hh, ww = _conv(f"{prefix}.branch2.pw2", stage, branch, branch, hh, ww)
    layers.append(l)
    if se:
        layers += _se(f"{prefix}.branch2", stage, branch, hh, ww)
    layers.append(Layer(f"{prefix}.concat", "concat", c_out, c_out, hh, ww, hh, ww, inputs=2, stage=stage))
    layers.append(Layer(f"{prefix}.shuffle", "shuffle", c_out, c_out, hh, ww, hh, ww, stage=stage))
    return layers, hh, ww


def architecture_layers(arch: Architecture, input_size: int = 224, num_classes: int = 1000) -> list[Layer]:
    """The fused op list of ``build_model(arch, num_classes, input_size)``, in execution order."""
    stride, use_pool = stem_layout(input_size)
    layers: list[Layer] = []
    l, h, w = _conv("conv1", "stem", 3, arch.stem, input_size, input_size, 3, stride)
    layers.append(l)
    if use_pool:
        h2, w2 = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
        layers.append(Layer("maxpool", "maxpool", arch.stem, arch.stem, h, w, h2, w2, 3, 2, stage="stem"))
        h, w = h2, w2
    c = arch.stem
    for i, (width, depth, ratio, kernel) in enumerate(zip(arch.widths, arch.depths, arch.split_ratios, arch.kernels)):
        stage = f"stage{i + 2}"
        for j in range(depth):
            unit, h, w = _unit(f"{stage}.{j}", stage, c, width, h, w, 2 if j == 0 else 1, ratio, kernel,
                               arch.se, arch.extra_dw)
            layers += unit
            c = width
    l, h, w = _conv("conv5", "head", c, arch.conv5, h, w)
    layers.append(l)
    layers.append(Layer("gap", "gap", arch.conv5, arch.conv5, h, w, 1, 1, stage="head"))
    layers.append(Layer("fc", "fc", arch.conv5, num_classes, 1, 1, 1, 1, bias=True, stage="head"))
    return layers


def layer_costs(layers: Iterable[Layer], batch: int = 1) -> pd.DataFrame:
    """One row per layer: its shape fields plus params, flops, mac, kernels, elementwise."""
    rows = []
    for layer in layers:
        row = dataclasses.asdict(layer)
        row.update(layer.costs(batch))
        rows.append(row)
    return pd.DataFrame(rows)


def costs(arch: Architecture, input_size: int = 224, num_classes: int = 1000, batch: int = 1) -> pd.DataFrame:
    """Per-layer costs of an architecture (see :func:`layer_costs`)."""
    return layer_costs(architecture_layers(arch, input_size, num_classes), batch)


def totals(table: pd.DataFrame) -> dict[str, int]:
    """Sum of every cost column of a :func:`costs` table, as plain ints."""
    return {column: int(table[column].sum()) for column in COST_COLUMNS}


def summary(arch: Architecture, input_size: int = 224, num_classes: int = 1000, batch: int = 1) -> dict[str, int]:
    """Totals for one architecture: ``{"params", "flops", "mac", "kernels", "elementwise"}``."""
    return totals(costs(arch, input_size, num_classes, batch))


def parameter_count(arch: Architecture, input_size: int = 224, num_classes: int = 1000) -> int:
    """``summary(...)["params"]`` without building the per-layer table (for per-prediction use)."""
    return sum(layer.costs()["params"] for layer in architecture_layers(arch, input_size, num_classes))


def per_stage(table: pd.DataFrame) -> pd.DataFrame:
    """Costs grouped by stage (stem, stage2..4, head), in network order."""
    order = list(dict.fromkeys(table["stage"]))
    grouped = table.groupby("stage", sort=False)[list(COST_COLUMNS)].sum()
    return grouped.loc[order]


def conv1x1_mac(h: int, w: int, c1: int, c2: int, groups: int = 1) -> int:
    """The paper's MAC of a 1x1 (group) conv: hw(c1 + c2) + c1*c2/g (G1, G2)."""
    return h * w * (c1 + c2) + c1 * c2 // groups


def conv1x1_flops(h: int, w: int, c1: int, c2: int, groups: int = 1) -> int:
    """FLOPs (multiply-adds) B of a 1x1 (group) conv: hw*c1*c2/g."""
    return h * w * c1 * c2 // groups
