"""The paper's G1-G4 micro-benchmark networks, from one description to two forms.

Each benchmark is a small tuple of block descriptions (:class:`Series`, :class:`Parallel`,
:class:`Bottleneck`) stacked ``MICRO_BLOCKS`` (10) times on a 56x56 input. The same description
builds the torch module to measure (:meth:`MicroBenchmark.module`) and the
:class:`~latency_models.costs.analytic.Layer` list the guideline model costs
(:meth:`MicroBenchmark.layers`), so the two cannot drift apart.

Interpretations where the paper is silent (its Tables 1-4):

- every conv is conv (no bias) + BatchNorm + ReLU (BN folds into the conv when exported);
- G1: two 1x1 convs per block, c1 -> c2 -> c1; x2/x4 multiply both channel counts;
- G2: one 1x1 group conv c -> c per block (its g=1 row equals G3's 1-fragment row in the paper);
  c is rounded to the nearest multiple of g (the ARM column's c=180 at g=8 becomes 184);
- G3: the 1-fragment block is one 1x1 conv c -> c. n fragments in series are n 1x1 convs of
  round(c/sqrt(n)) channels; n in parallel are n 1x1 convs c -> c/n on the same input,
  concatenated back to c channels: equal FLOPs in all five;
- G4: a ResNet bottleneck with c channels in and out and c/4 inside (1x1 -> 3x3 -> 1x1), ReLU
  after each conv and after the add; "no ReLU" drops all three, "no shortcut" drops the add
  (the last conv then keeps its ReLU when ReLU is on). Input 56x56 (the paper does not say).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import nn

from latency_models.paper import paper_data
from latency_models.costs.analytic import Layer
from search_space.blocks.ops import ConvBN
from latency_models.paper.paper_data import MICRO_BLOCKS, MICRO_INPUT, SCALES
from search_space.errors import ShufflenasError

GUIDELINES: tuple[str, ...] = ("G1", "G2", "G3", "G4")
_FACTORS = {"x1": 1, "x2": 2, "x4": 4}


def Conv(c_in: int, c_out: int, k: int = 1, groups: int = 1, relu: bool = True) -> ConvBN:  # noqa: N802
    """A k x k conv (no bias) + BN (+ ReLU), stride 1, 'same' padding: the units' own primitive."""
    return ConvBN(c_in, c_out, k, 1, groups, "relu" if relu else None)


@dataclasses.dataclass(frozen=True)
class Series:
    """Convs one after another."""

    convs: tuple[ConvBN, ...]

    @property
    def c_in(self) -> int:
        return self.convs[0].c_in

    def layers(self, prefix: str, h: int, w: int) -> list[Layer]:
        return [conv.layer(f"{prefix}.conv{i}", "bench", h, w)[0] for i, conv in enumerate(self.convs)]

    def module(self) -> nn.Module:
        return nn.Sequential(*(nn.Sequential(*conv.modules()) for conv in self.convs))


class _Concat(nn.Module):
    def __init__(self, branches: Sequence[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


@dataclasses.dataclass(frozen=True)
class Parallel:
    """Convs reading the same input, outputs concatenated along channels."""

    convs: tuple[ConvBN, ...]

    @property
    def c_in(self) -> int:
        return self.convs[0].c_in

    def layers(self, prefix: str, h: int, w: int) -> list[Layer]:
        layers = [conv.layer(f"{prefix}.branch{i}", "bench", h, w)[0] for i, conv in enumerate(self.convs)]
        total = sum(conv.c_out for conv in self.convs)
        layers.append(Layer(f"{prefix}.concat", "concat", total, total, h, w, h, w, inputs=len(self.convs),
                            stage="bench"))
        return layers

    def module(self) -> nn.Module:
        return _Concat([nn.Sequential(*conv.modules()) for conv in self.convs])


class _Bottleneck(nn.Module):
    def __init__(self, body: nn.Module, shortcut: bool, relu: bool) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.shortcut:
            y = y + x
            if self.relu:
                y = torch.relu(y)
        return y


@dataclasses.dataclass(frozen=True)
class Bottleneck:
    """ResNet bottleneck: 1x1 (c -> c/4), 3x3, 1x1 (-> c), optional ReLUs and identity shortcut."""

    c: int
    relu: bool = True
    shortcut: bool = True

    @property
    def c_in(self) -> int:
        return self.c

    def _convs(self) -> tuple[ConvBN, ...]:
        mid = max(1, self.c // 4)
        last_relu = self.relu and not self.shortcut
        return (Conv(self.c, mid, relu=self.relu), Conv(mid, mid, k=3, relu=self.relu),
                Conv(mid, self.c, relu=last_relu))

    def layers(self, prefix: str, h: int, w: int) -> list[Layer]:
        layers = Series(self._convs()).layers(prefix, h, w)
        if self.shortcut:
            layers.append(Layer(f"{prefix}.add", "add", self.c, self.c, h, w, h, w, inputs=2, stage="bench"))
            if self.relu:
                layers.append(Layer(f"{prefix}.relu", "relu", self.c, self.c, h, w, h, w, stage="bench"))
        return layers

    def module(self) -> nn.Module:
        return _Bottleneck(Series(self._convs()).module(), self.shortcut, self.relu)


Block = Series | Parallel | Bottleneck


@dataclasses.dataclass(frozen=True)
class MicroBenchmark:
    """One cell of the paper's Tables 1-4: a block repeated ``repeats`` times on an input."""

    guideline: str           # "G1" ... "G4"
    config: str              # the table row: "1:2", "g=4", "2-fragment-series", "relu=yes shortcut=no"
    scale: str               # "x1", "x2", "x4" (the table column)
    column: str              # whose channel counts: "gpu" or "arm"
    block: Block
    paper_gpu: float         # the paper's figure in this cell (batches/s)
    paper_arm: float         # (images/s)
    input_size: int = MICRO_INPUT
    repeats: int = MICRO_BLOCKS

    @property
    def key(self) -> str:
        """A stable, file-name-safe id, e.g. ``g1-1_2-x1-gpu``."""
        config = self.config.replace(":", "_").replace("=", "").replace(" ", "-")
        return f"{self.guideline.lower()}-{config}-{self.scale}-{self.column}"

    @property
    def channels(self) -> int:
        return self.block.c_in

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input image."""
        return (self.channels, self.input_size, self.input_size)

    def paper_value(self, device: str) -> float:
        return self.paper_gpu if device == "gpu" else self.paper_arm

    def describe(self) -> str:
        """Human-readable structure, e.g. ``10 x [1x1 128->128, 1x1 128->128]``."""
        block = self.block
        if isinstance(block, Bottleneck):
            inner = f"bottleneck c={block.c} relu={'yes' if block.relu else 'no'} shortcut={'yes' if block.shortcut else 'no'}"
        else:
            parts = [f"{c.k}x{c.k} {c.c_in}->{c.c_out}" + (f" g{c.groups}" if c.groups > 1 else "")
                     for c in block.convs]
            inner = (" || " if isinstance(block, Parallel) else ", ").join(parts)
        return f"{self.repeats} x [{inner}] @ {self.input_size}x{self.input_size}"

    def layers(self) -> list[Layer]:
        """The fused op list the analytic cost model and the guideline model read."""
        out: list[Layer] = []
        for i in range(self.repeats):
            out += self.block.layers(f"block{i}", self.input_size, self.input_size)
        return out

    def module(self) -> nn.Module:
        """A randomly initialised torch module in eval mode taking ``(N, C, H, W)``."""
        torch.manual_seed(0)
        return nn.Sequential(*(self.block.module() for _ in range(self.repeats))).eval()


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(math.floor(value / multiple + 0.5)) * multiple)


def g1(column: str, scale: str) -> list[MicroBenchmark]:
    f = _FACTORS[scale]
    out = []
    for ratio, cols in paper_data.TABLE1.items():
        c1, c2 = (c * f for c in cols[column][0])
        i = SCALES.index(scale)
        out.append(MicroBenchmark("G1", ratio, scale, column, Series((Conv(c1, c2), Conv(c2, c1))),
                                  cols["gpu"][1][i], cols["arm"][1][i]))
    return out


def g2(column: str, scale: str) -> list[MicroBenchmark]:
    f = _FACTORS[scale]
    i = SCALES.index(scale)
    out = []
    for groups, cols in paper_data.TABLE2.items():
        c = _round_to(cols[column][0] * f, groups)
        out.append(MicroBenchmark("G2", f"g={groups}", scale, column, Series((Conv(c, c, groups=groups),)),
                                  cols["gpu"][1][i], cols["arm"][1][i]))
    return out


def g3(column: str, scale: str) -> list[MicroBenchmark]:
    i = SCALES.index(scale)
    c = paper_data.TABLE3_CHANNELS[column][i]
    out = []
    for structure, cols in paper_data.TABLE3.items():
        n = int(structure[0])
        if "parallel" in structure:
            block: Block = Parallel(tuple(Conv(c, c // n) for _ in range(n)))
        else:
            cf = int(round(c / math.sqrt(n)))
            block = Series(tuple(Conv(cf, cf) for _ in range(n)))
        out.append(MicroBenchmark("G3", structure, scale, column, block, cols["gpu"][i], cols["arm"][i]))
    return out


def g4(column: str, scale: str) -> list[MicroBenchmark]:
    i = SCALES.index(scale)
    c = paper_data.TABLE4_CHANNELS[column][i]
    out = []
    for (relu, shortcut), cols in paper_data.TABLE4.items():
        config = f"relu={'yes' if relu else 'no'} shortcut={'yes' if shortcut else 'no'}"
        out.append(MicroBenchmark("G4", config, scale, column, Bottleneck(c, relu, shortcut),
                                  cols["gpu"][i], cols["arm"][i]))
    return out


_BUILDERS = {"G1": g1, "G2": g2, "G3": g3, "G4": g4}


def benchmarks(column: str = "arm", scales: Sequence[str] = SCALES,
               guidelines: Sequence[str] = GUIDELINES) -> list[MicroBenchmark]:
    """Every benchmark cell for one channel column ("gpu" or "arm"), in table order."""
    if column not in ("gpu", "arm"):
        raise ShufflenasError(f"unknown channel column {column!r} (known: gpu, arm)")
    bad = [s for s in scales if s not in _FACTORS] + [g for g in guidelines if g not in _BUILDERS]
    if bad:
        raise ShufflenasError(f"unknown benchmark scale or guideline: {', '.join(bad)}")
    return [bench for guideline in guidelines for scale in scales for bench in _BUILDERS[guideline](column, scale)]


def quick_benchmarks(column: str = "arm") -> list[MicroBenchmark]:
    """The ``--quick`` subset: every row at x1 only (18 small networks)."""
    return benchmarks(column, scales=("x1",))
