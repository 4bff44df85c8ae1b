"""Analytic costs per layer: params, FLOPs, MAC, kernels and element-wise volume.

MAC follows the paper (Sec. 2): a conv with BN/ReLU fused reads its input and weights and writes
its output once, ``h_in*w_in*c_in + h_out*w_out*c_out + k*k*c_in*c_out/g`` (activations times the
batch); data-movement and element-wise ops (split, concat, shuffle, pooling, SE scaling) cost the
elements they read plus those they write. ``kernels`` counts the ops left after fusion (G3
fragmentation); ``elementwise`` counts the elements touched by element-wise work, fused epilogues
(BN, ReLU) included (G4). FLOPs are multiply-adds of convs and FC layers, as in the paper.

Layers are plain records (:class:`search_space.blocks.layers.Layer`, re-exported here), so the
guideline micro-benchmarks can be costed with the same code as whole architectures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pandas as pd

from search_space import Architecture
from search_space.blocks import network
from search_space.blocks.layers import COST_COLUMNS, Layer, LayerKind  # noqa: F401  (re-exported: their old home)

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


def architecture_layers(arch: Architecture, input_size: int = 224, num_classes: int = 1000) -> list[Layer]:
    """The fused op list of ``build_model(arch, num_classes, input_size)``, in execution order.

    Each unit's layers come from its spec (:mod:`search_space.blocks`), placed by the same walk
    as ``build_model``'s, so the costs cannot drift from the module.
    """
    layers, h, w = network.stem(arch, input_size).layers(input_size, input_size)
    for unit in network.units(arch, input_size):
        layers += unit.spec.layers(unit.prefix, unit.stage_name, unit.h, unit.w)[0]
    head, h, w = network.head(arch, input_size, num_classes)
    return layers + head.layers(h, w)[0]


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
    """Totals for one architecture: ``{"params", "flops", "mac", "kernels", "elementwise"}``.

    ``totals(costs(...))`` without the per-layer table: every search trial calls this, and the
    DataFrame was most of its cost (the costs are ints, so the sums are the same).
    """
    sums = dict.fromkeys(COST_COLUMNS, 0)
    for layer in architecture_layers(arch, input_size, num_classes):
        for column, value in layer.costs(batch).items():
            sums[column] += value
    return sums


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
