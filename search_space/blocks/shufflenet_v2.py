"""ShuffleNetV2's unit (Ma et al. 2018, Fig. 3c/3d), token ``v2``: the default unit of every stage.

Stride 1: split the input, keep ``c - b`` channels, send ``b`` through 1x1 conv -> kxk depthwise ->
1x1 conv, concatenate and shuffle. Stride 2: both branches see the whole input and downsample; the
concat widens the map. ``ratio`` (the paper's c'/c = 0.5) sets ``b``; ``se`` adds SE-ShuffleNetV2's
channel attention to the conv branch, ``extra_dw`` ShuffleNetV2*'s extra 3x3 depthwise at the start
of each branch. The module tree and state-dict keys are torchvision's (``branch1``/``branch2`` with
its indices), so the paper presets load its weights; the layers and the lookup-table key are those
of the code before block specs, so every cost and table entry stays the same.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, ClassVar

from search_space.architecture import branch_channels  # (architecture imports the block registry lazily)
from search_space.blocks.base import UnitError, UnitSpec, register_block
from search_space.blocks.layers import Layer
from search_space.blocks.ops import SE, ConvBN, Op, depthwise, path_layers, path_modules
from search_space.errors import ArchitectureError

if TYPE_CHECKING:
    from torch import nn


@register_block
@dataclasses.dataclass(frozen=True)
class ShuffleNetV2Unit(UnitSpec):
    """A ShuffleNetV2 unit; ``ratio`` is the share of the output channels made by the conv branch."""

    ratio: float = 0.5

    family: ClassVar[str] = "v2"
    title: ClassVar[str] = "ShuffleNetV2 unit: v2"
    uses_ratio: ClassVar[bool] = True

    @classmethod
    def from_token(cls, token: str, *, c_in: int, c_out: int, stride: int, ratio: float = 0.5, kernel: int = 3,
                   se: bool = False, extra_dw: bool = False) -> ShuffleNetV2Unit:
        if token != cls.family:
            raise ArchitectureError(f"block token {token!r}: the ShuffleNetV2 unit takes no option (write v2)")
        return cls(c_in, c_out, stride, kernel, se, extra_dw, ratio=ratio)

    @property
    def branch(self) -> int:
        """Channels made by the conv branch (branch 2)."""
        return branch_channels(self.c_out, self.ratio)

    @property
    def kept(self) -> int:
        """Stride 1: channels passed through unchanged; stride 2: branch 1's output."""
        return self.c_out - self.branch

    def check(self) -> None:
        super().check()
        if self.c_out % 2:
            raise UnitError("widths", self.c_out, "is odd: a stride-2 unit concatenates two equal halves")
        if not 1 <= self.branch < self.c_out:
            raise UnitError("split_ratios", self.ratio,
                            f"leaves no channel on one side of a {self.c_out}-channel unit")
        if self.stride == 1 and self.c_in != self.c_out:
            raise ArchitectureError(f"a stride-1 {self.token} unit keeps its width: c_in {self.c_in} != c_out {self.c_out}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ArchitectureError(f"{self.token} units take an odd depthwise kernel, got {self.kernel}")

    def branch1_ops(self) -> tuple[Op, ...]:
        """Stride 2 only: depthwise (stride) + 1x1 to ``kept`` channels."""
        if self.stride == 1:
            return ()
        pre = (depthwise(self.c_in, 3),) if self.extra_dw else ()
        return (*pre, depthwise(self.c_in, self.kernel, self.stride), ConvBN(self.c_in, self.kept))

    def branch2_ops(self) -> tuple[Op, ...]:
        """1x1 -> kxk depthwise (stride) -> 1x1 (-> SE) on the branch channels."""
        b_in = self.c_in if self.stride > 1 else self.branch
        pre = (depthwise(b_in, 3),) if self.extra_dw else ()
        se = (SE(self.branch),) if self.se else ()
        return (*pre, ConvBN(b_in, self.branch), depthwise(self.branch, self.kernel, self.stride),
                ConvBN(self.branch, self.branch), *se)

    def module(self) -> nn.Module:
        return _torch_class()(self.stride, self.kept, path_modules(self.branch1_ops()),
                              path_modules(self.branch2_ops()))

    def layers(self, prefix: str, stage: str, h: int, w: int) -> tuple[list[Layer], int, int]:
        pre = ("dw0",) if self.extra_dw else ()
        layers: list[Layer] = []
        if self.stride == 1:
            layers.append(Layer(f"{prefix}.split", "split", self.c_in, self.c_in, h, w, h, w, stage=stage))
        else:
            layers += path_layers(self.branch1_ops(), f"{prefix}.branch1", stage, h, w, (*pre, "dw", "pw"))[0]
        branch2, h_out, w_out = path_layers(self.branch2_ops(), f"{prefix}.branch2", stage, h, w,
                                            (*pre, "pw1", "dw", "pw2"))
        layers += branch2
        c = self.c_out
        layers.append(Layer(f"{prefix}.concat", "concat", c, c, h_out, w_out, h_out, w_out, inputs=2, stage=stage))
        layers.append(Layer(f"{prefix}.shuffle", "shuffle", c, c, h_out, w_out, h_out, w_out, stage=stage))
        return layers, h_out, w_out

    def key(self, h: int, w: int) -> str:
        """The key of the code before block specs, verbatim: existing lookup tables keep their entries."""
        return (f"unit:{self.c_in}-{self.c_out}:h{h}x{w}:s{self.stride}:r{self.ratio:g}:k{self.kernel}"
                f":se{int(self.se)}:xdw{int(self.extra_dw)}")


@functools.cache
def _torch_class() -> Any:
    """The torch module class, made on first use so that importing this file needs no torch."""
    import torch
    from torch import nn

    from search_space.blocks.modules import channel_shuffle

    class InvertedResidual(nn.Module):
        """torchvision's ShuffleNetV2 unit: ``branch1`` (empty at stride 1) and ``branch2``, concat, shuffle."""

        def __init__(self, stride: int, kept: int, branch1: list[nn.Module], branch2: list[nn.Module]) -> None:
            super().__init__()
            self.stride, self.kept = stride, kept
            self.branch1 = nn.Sequential(*branch1)
            self.branch2 = nn.Sequential(*branch2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.stride == 1:
                out = torch.cat((x[:, : self.kept], self.branch2(x[:, self.kept :])), dim=1)
            else:
                out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
            return channel_shuffle(out, 2)

    InvertedResidual.__module__, InvertedResidual.__qualname__ = __name__, "InvertedResidual"
    return InvertedResidual


def __getattr__(name: str) -> Any:
    """``InvertedResidual`` on demand (PEP 562), so pickle finds the class by its name."""
    if name == "InvertedResidual":
        return _torch_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
