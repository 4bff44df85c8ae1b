"""MobileNetV2's inverted residual (Sandler et al. 2018), token ``mb<t>`` with expansion t = 1..8.

torchvision's ``InvertedResidual``: [1x1 expand to t*c_in + BN + ReLU6, left out when t == 1] ->
kxk depthwise (the unit's stride) + BN + ReLU6 -> 1x1 project + BN, linear (no activation: the
"linear bottleneck"); the input is added back when the stride is 1 and the widths match. With
``se`` a squeeze-and-excitation sits after the depthwise conv (as in MnasNet / MobileNetV3).

This file is the worked example of docs/blocks.md: the ops tuple below is the one description
that yields the torch module, the analytic layers and the lookup-table key.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, ClassVar

from search_space.blocks.base import UnitSpec, register_block, token_option
from search_space.blocks.layers import Layer
from search_space.blocks.ops import SE, ConvBN, Op, depthwise, path_layers, path_modules
from search_space.errors import ArchitectureError

if TYPE_CHECKING:
    from torch import nn

EXPANSIONS = range(1, 9)


@register_block
@dataclasses.dataclass(frozen=True)
class MobileNetV2Unit(UnitSpec):
    """An inverted residual block; ``expansion`` is t (the hidden width is ``t * c_in``)."""

    expansion: int = 6

    family: ClassVar[str] = "mb"
    title: ClassVar[str] = "MobileNetV2 inverted residual, expansion t: mb1..mb8"
    activation: ClassVar[str] = "relu6"

    @classmethod
    def from_token(cls, token: str, *, c_in: int, c_out: int, stride: int, ratio: float = 0.5, kernel: int = 3,
                   se: bool = False, extra_dw: bool = False) -> MobileNetV2Unit:
        expansion = token_option(token, cls.family, "expansion")
        if expansion not in EXPANSIONS:  # a token-level fact: checked even where shapes are not known yet
            raise ArchitectureError(f"block token {token!r}: mb takes an expansion t in 1..8 (mb1 .. mb8)")
        return cls(c_in, c_out, stride, kernel, se, extra_dw, expansion=expansion)

    @property
    def token(self) -> str:
        return f"{self.family}{self.expansion}"

    @property
    def hidden(self) -> int:
        return self.c_in * self.expansion

    @property
    def residual(self) -> bool:
        """torchvision's ``use_res_connect``: the input is added back only where the shapes allow."""
        return self.stride == 1 and self.c_in == self.c_out

    def check(self) -> None:
        super().check()
        if self.expansion not in EXPANSIONS:
            raise ArchitectureError(f"an mb unit takes an expansion t in 1..8, got {self.expansion!r}")
        if self.extra_dw:
            raise ArchitectureError(f"{self.token} units have no extra-depthwise (ShuffleNetV2*) variant")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ArchitectureError(f"{self.token} units take an odd depthwise kernel, got {self.kernel}")

    def ops(self) -> tuple[Op, ...]:
        """The path, in order: the one description of this unit."""
        expand = (ConvBN(self.c_in, self.hidden, 1, act="relu6"),) if self.expansion != 1 else ()
        se = (SE(self.hidden),) if self.se else ()
        return (*expand, depthwise(self.hidden, self.kernel, self.stride, act="relu6"), *se,
                ConvBN(self.hidden, self.c_out, 1, act=None))

    def _conv_names(self) -> tuple[str, ...]:
        return (*(("expand",) if self.expansion != 1 else ()), "dw", "project")

    def module(self) -> nn.Module:
        return _torch_class()(path_modules(self.ops()), self.residual)

    def layers(self, prefix: str, stage: str, h: int, w: int) -> tuple[list[Layer], int, int]:
        layers, h_out, w_out = path_layers(self.ops(), f"{prefix}.conv", stage, h, w, self._conv_names())
        if self.residual:
            layers.append(Layer(f"{prefix}.add", "add", self.c_out, self.c_out, h_out, w_out, h_out, w_out,
                                inputs=2, stage=stage))
        return layers, h_out, w_out

    def key(self, h: int, w: int) -> str:
        return (f"unit:{self.token}:{self.c_in}-{self.c_out}:h{h}x{w}:s{self.stride}:k{self.kernel}"
                f":se{int(self.se)}")


@functools.cache
def _torch_class() -> Any:
    """The torch module class, made on first use so that importing this file needs no torch."""
    import torch
    from torch import nn

    class InvertedResidual(nn.Module):
        """``conv`` is the whole path (torchvision's order of tensors); the input is added back when
        ``use_res_connect``."""

        def __init__(self, path: list[nn.Module], residual: bool) -> None:
            super().__init__()
            self.use_res_connect = residual
            self.conv = nn.Sequential(*path)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    InvertedResidual.__module__, InvertedResidual.__qualname__ = __name__, "InvertedResidual"
    return InvertedResidual


def __getattr__(name: str) -> Any:
    """``InvertedResidual`` on demand (PEP 562), so pickle finds the class by its name."""
    if name == "InvertedResidual":
        return _torch_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
