"""The primitives a block spec is made of, each with its two forms: torch modules and analytic layers.

A spec lists its paths as tuples of these ops; :func:`path_modules` and :func:`path_layers` turn one
path into an ``nn.Sequential``'s modules (flat, so the indices equal torchvision's) and into
:class:`Layer` records. Because both come from the same tuple, the model and its costs cannot drift.
torch is imported only inside ``modules()``: costs and the cheap commands start without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Union

from search_space.blocks.layers import Layer

if TYPE_CHECKING:
    from torch import nn

ACTIVATIONS = ("relu", "relu6")


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output size of a conv or pool with 'same' padding ``kernel // 2``."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


@dataclasses.dataclass(frozen=True)
class ConvBN:
    """A k x k conv (no bias) + BatchNorm (+ ReLU or ReLU6), 'same' padding."""

    c_in: int
    c_out: int
    k: int = 1
    stride: int = 1
    groups: int = 1
    act: str | None = "relu"

    def out_size(self, h: int) -> int:
        return conv_out(h, self.k, self.stride)

    def modules(self) -> list[nn.Module]:
        from torch import nn

        parts: list[nn.Module] = [
            nn.Conv2d(self.c_in, self.c_out, self.k, self.stride, self.k // 2, groups=self.groups, bias=False),
            nn.BatchNorm2d(self.c_out),
        ]
        if self.act == "relu":
            parts.append(nn.ReLU(inplace=True))
        elif self.act == "relu6":
            parts.append(nn.ReLU6(inplace=True))
        return parts

    def layer(self, name: str, stage: str, h: int, w: int) -> tuple[Layer, int, int]:
        h_out, w_out = self.out_size(h), self.out_size(w)
        layer = Layer(name, "conv", self.c_in, self.c_out, h, w, h_out, w_out, self.k, self.stride, self.groups,
                      bn=True, relu=self.act is not None, stage=stage)
        return layer, h_out, w_out


def depthwise(channels: int, kernel: int, stride: int = 1, act: str | None = None) -> ConvBN:
    """A depthwise conv + BN (no activation unless asked: the paper's units keep it linear)."""
    return ConvBN(channels, channels, kernel, stride, groups=channels, act=act)


@dataclasses.dataclass(frozen=True)
class SE:
    """Squeeze-and-excitation; the one home of its hidden width."""

    channels: int
    reduction: int = 4

    @property
    def hidden(self) -> int:
        return max(8, self.channels // self.reduction)

    def out_size(self, h: int) -> int:
        return h

    def modules(self) -> list[nn.Module]:
        from search_space.blocks.modules import SqueezeExcite

        return [SqueezeExcite(self.channels, self.hidden)]

    def layers(self, prefix: str, stage: str, h: int, w: int) -> list[Layer]:
        c, hidden = self.channels, self.hidden
        return [
            Layer(f"{prefix}.se.pool", "gap", c, c, h, w, 1, 1, stage=stage),
            Layer(f"{prefix}.se.fc1", "conv", c, hidden, 1, 1, 1, 1, relu=True, bias=True, stage=stage),
            Layer(f"{prefix}.se.fc2", "conv", hidden, c, 1, 1, 1, 1, bias=True, stage=stage),
            Layer(f"{prefix}.se.scale", "mul", c, c, h, w, h, w, inputs=2, stage=stage),
        ]


@dataclasses.dataclass(frozen=True)
class Shuffle:
    """A channel shuffle inside a path (ShuffleNetV1 shuffles between its group convs)."""

    channels: int
    groups: int

    def out_size(self, h: int) -> int:
        return h

    def modules(self) -> list[nn.Module]:
        from search_space.blocks.modules import ChannelShuffle

        return [ChannelShuffle(self.groups)]

    def layers(self, prefix: str, stage: str, h: int, w: int) -> list[Layer]:
        c = self.channels
        return [Layer(f"{prefix}.shuffle", "shuffle", c, c, h, w, h, w, stage=stage)]


Op = Union[ConvBN, SE, Shuffle]


def path_modules(ops: Sequence[Op]) -> list[nn.Module]:
    """The flat module list of a path (``nn.Sequential(*path_modules(ops))``)."""
    return [module for op in ops for module in op.modules()]


def path_layers(ops: Sequence[Op], prefix: str, stage: str, h: int, w: int,
                names: Sequence[str] | None = None) -> tuple[list[Layer], int, int]:
    """The analytic layers of a path, with the map size after it; ``names`` label the convs in order."""
    layers: list[Layer] = []
    conv_names = iter(names or ())
    for i, op in enumerate(ops):
        if isinstance(op, ConvBN):
            layer, h, w = op.layer(f"{prefix}.{next(conv_names, f'conv{i}')}", stage, h, w)
            layers.append(layer)
        else:
            layers += op.layers(prefix, stage, h, w)
    return layers, h, w
