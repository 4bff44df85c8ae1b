"""Per-architecture feature vectors from the analytic costs, shared by the predictor and the studies.

A latency model needs more than total FLOPs: the paper's guidelines say *where* the work is
(pointwise vs depthwise convs, data movement, small fragmented kernels, element-wise volume) drives
speed. Every feature here is computed from :mod:`latency_models.costs.analytic`, so it is cheap, local and
the same on every machine. Features are plain floats keyed by name; :data:`FEATURE_NAMES` fixes the
column order a model is trained with (stored predictor files name it, so it never changes).

The per-stage features (``stage2_flops`` ... ``stage4_*``, ``w2..w4``, ``d2..d4``, ``r2..r4``,
``k2..k4``) are three slots: early, middle and late stages. A three-stage network fills them one
stage each, as always. With L stages, stage j (0-based) goes to slot ``j * 3 // L`` (seven
MobileNetV2 stages: 3 + 2 + 2): a slot sums its stages' costs and depths, takes its last stage's
width, its largest kernel and its stages' mean split ratio. With fewer than three stages the
late slots stay 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from latency_models.costs.analytic import COST_COLUMNS, Layer, architecture_layers, is_misaligned
from search_space import Architecture
from search_space.architecture import NUM_STAGES

STAGES = ("stem", "stage2", "stage3", "stage4", "head")
STAGE_COSTS = ("flops", "mac", "kernels", "elementwise")
OP_CLASSES = ("pointwise", "depthwise", "dense", "fc", "movement", "pool")

FEATURE_NAMES: tuple[str, ...] = (
    *COST_COLUMNS,
    *(f"{stage}_{cost}" for stage in STAGES for cost in STAGE_COSTS),
    *(f"{op}_{cost}" for op in OP_CLASSES for cost in ("flops", "mac", "kernels")),
    "small_kernels",      # kernels touching < 16k elements: launch overhead dominates (G3)
    "roofline_sum",       # sum over layers of max(flops, mac): a unit-free roofline proxy
    "intensity",          # total FLOPs / total MAC
    "misaligned_pointwise_flops", "misaligned_depthwise_mac",  # channels off the SIMD tile (analytic.ALIGN)
    "w2", "w3", "w4", "d2", "d3", "d4", "r2", "r3", "r4", "k2", "k3", "k4",
    "stem", "conv5", "se", "extra_dw", "num_units", "input_size", "batch",
)


def _op_class(layer: Layer) -> str:
    if layer.kind == "conv":
        if layer.groups > 1 and layer.groups == layer.c_in:
            return "depthwise"
        return "pointwise" if layer.k == 1 else "dense"
    if layer.kind == "fc":
        return "fc"
    if layer.kind in ("maxpool", "gap"):
        return "pool"
    return "movement"  # split, concat, shuffle, add, mul, relu


def stage_slots(arch: Architecture) -> list[int]:
    """The feature slot (0, 1, 2: early, middle, late) of each stage of ``arch`` (see the module doc)."""
    stages = arch.num_stages
    return [j * NUM_STAGES // stages for j in range(stages)]


def features_from_layers(arch: Architecture, layers: Sequence[Layer], input_size: int, batch: int) -> dict[str, float]:
    """Feature dict from the fused layer list of ``arch`` (plain loops: this runs per trial)."""
    out: dict[str, float] = dict.fromkeys(FEATURE_NAMES, 0.0)
    slots = stage_slots(arch)
    group = {"stem": "stem", "head": "head", **{name: f"stage{slot + 2}" for name, slot in zip(arch.stage_names, slots)}}
    for layer in layers:
        cost = layer.costs(batch)
        for column in COST_COLUMNS:
            out[column] += cost[column]
        stage = group.get(layer.stage)
        if stage is not None:
            for column in STAGE_COSTS:
                out[f"{stage}_{column}"] += cost[column]
        op = _op_class(layer)
        for column in ("flops", "mac", "kernels"):
            out[f"{op}_{column}"] += cost[column]
        if batch * layer.out_elems < 16384:
            out["small_kernels"] += cost["kernels"]
        out["roofline_sum"] += max(cost["flops"], cost["mac"])
        if is_misaligned(layer):
            if op == "depthwise":
                out["misaligned_depthwise_mac"] += cost["mac"]
            elif op == "pointwise":
                out["misaligned_pointwise_flops"] += cost["flops"]
    out["intensity"] = out["flops"] / max(out["mac"], 1.0)
    for slot in range(NUM_STAGES):
        members = [j for j, s in enumerate(slots) if s == slot]
        if not members:
            continue
        out[f"w{slot + 2}"] = float(arch.widths[members[-1]])
        out[f"d{slot + 2}"] = float(sum(arch.depths[j] for j in members))
        out[f"r{slot + 2}"] = float(sum(arch.split_ratios[j] for j in members) / len(members))
        out[f"k{slot + 2}"] = float(max(arch.kernels[j] for j in members))
    out.update(stem=float(arch.stem), conv5=float(arch.conv5), se=float(arch.se), extra_dw=float(arch.extra_dw),
               num_units=float(arch.num_units), input_size=float(input_size), batch=float(batch))
    return {name: float(out[name]) for name in FEATURE_NAMES}


def features(arch: Architecture, input_size: int = 224, batch: int = 1, num_classes: int = 1000) -> dict[str, float]:
    """The feature vector of one architecture at a deploy resolution and batch size."""
    return features_from_layers(arch, architecture_layers(arch, input_size, num_classes), input_size, batch)


def feature_frame(archs: Iterable[Architecture], input_size: int = 224, batch: int = 1,
                  num_classes: int = 1000) -> pd.DataFrame:
    """One row per architecture (index: compact string), columns :data:`FEATURE_NAMES`."""
    archs = list(archs)
    rows = [features(a, input_size, batch, num_classes) for a in archs]
    return pd.DataFrame(rows, index=[a.to_string() for a in archs], columns=list(FEATURE_NAMES))
