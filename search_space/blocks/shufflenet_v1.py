"""ShuffleNetV1's unit (Zhang et al. 2018), token ``v1g<g>`` with g in 1, 2, 3, 4, 8 groups.

megvii's ShuffleNetV1 layout: 1x1 group conv to the bottleneck (``c_out // 4``) + BN + ReLU ->
channel shuffle (g groups) -> kxk depthwise (the unit's stride) + BN -> 1x1 group conv + BN.
Stride 1: ``relu(x + branch(x))``. Stride 2: ``cat(avgpool3x3s2(x), relu(branch(x)))``, the branch
making ``c_out - c_in`` channels. The unit that reads the stem ("first_group") keeps its first
1x1 ungrouped: a 24-channel input split into groups would leave each group too few channels.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, ClassVar

from search_space.blocks.base import UnitSpec, register_block, token_option
from search_space.blocks.layers import Layer
from search_space.blocks.ops import ConvBN, Op, Shuffle, depthwise, path_layers, path_modules
from search_space.errors import ArchitectureError

if TYPE_CHECKING:
    from torch import nn

GROUPS = (1, 2, 3, 4, 8)


@register_block
@dataclasses.dataclass(frozen=True)
class ShuffleNetV1Unit(UnitSpec):
    """A ShuffleNetV1 bottleneck unit with ``groups`` 1x1 groups; ``first_group``: the stem's reader."""

    groups: int = 3
    first_group: bool = False

    family: ClassVar[str] = "v1g"
    title: ClassVar[str] = "ShuffleNetV1 unit, g groups: v1g1 v1g2 v1g3 v1g4 v1g8"

    @classmethod
    def from_token(cls, token: str, *, c_in: int, c_out: int, stride: int, ratio: float = 0.5, kernel: int = 3,
                   se: bool = False, extra_dw: bool = False) -> ShuffleNetV1Unit:
        groups = token_option(token, cls.family, "groups")
        if groups not in GROUPS:
            raise ArchitectureError(f"block token {token!r}: v1g takes its groups as one of "
                                    f"{', '.join(f'v1g{g}' for g in GROUPS)}")
        return cls(c_in, c_out, stride, kernel, se, extra_dw, groups=groups)

    def after_stem(self) -> ShuffleNetV1Unit:
        """The same unit as the first one after the stem: its first 1x1 is not grouped."""
        return dataclasses.replace(self, first_group=True)

    @property
    def token(self) -> str:
        return f"{self.family}{self.groups}"

    @property
    def mid(self) -> int:
        """Bottleneck width: a quarter of the unit's (the stage's) output width."""
        return self.c_out // 4

    @property
    def branch_out(self) -> int:
        return self.c_out - self.c_in if self.stride == 2 else self.c_out

    def check(self) -> None:
        super().check()
        g, name = self.groups, self.token
        if g not in GROUPS:
            raise ArchitectureError(f"a v1g unit takes {', '.join(map(str, GROUPS))} groups, got {g!r}")
        if self.se or self.extra_dw:
            raise ArchitectureError(f"{name} units have no {'SE' if self.se else 'extra-depthwise'} variant")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ArchitectureError(f"{name} units take an odd depthwise kernel, got {self.kernel}")
        if self.stride == 1 and self.c_in != self.c_out:
            raise ArchitectureError(f"a stride-1 {name} unit adds its input back: c_in {self.c_in} != "
                                    f"c_out {self.c_out}")
        if self.stride == 2 and self.c_out <= self.c_in:
            raise ArchitectureError(f"a stride-2 {name} unit concatenates its input: width {self.c_out} must exceed "
                                    f"its input's {self.c_in}")
        if self.mid < 1 or self.mid % g:
            raise ArchitectureError(f"{name}: the bottleneck ({self.c_out} // 4 = {self.mid} channels) is not a "
                                    f"multiple of {g} groups")
        if self.branch_out % g:
            raise ArchitectureError(f"{name}: the branch's {self.branch_out} output channels are not a multiple of "
                                    f"{g} groups")
        if not self.first_group and self.c_in % g:
            raise ArchitectureError(f"{name}: the {self.c_in} input channels are not a multiple of {g} groups")

    def ops(self) -> tuple[Op, ...]:
        """The branch, in order; at stride 2 its ReLU is the one applied after the concat's branch."""
        g, mid = self.groups, self.mid
        shuffle = (Shuffle(mid, g),) if g > 1 else ()
        return (ConvBN(self.c_in, mid, 1, groups=1 if self.first_group else g), *shuffle,
                depthwise(mid, self.kernel, self.stride),
                ConvBN(mid, self.branch_out, 1, groups=g, act="relu" if self.stride == 2 else None))

    def module(self) -> nn.Module:
        return _torch_class()(path_modules(self.ops()), self.stride == 2)

    def layers(self, prefix: str, stage: str, h: int, w: int) -> tuple[list[Layer], int, int]:
        layers, h_out, w_out = path_layers(self.ops(), f"{prefix}.branch_main", stage, h, w, ("pw1", "dw", "pw2"))
        c = self.c_out
        if self.stride == 2:
            layers.insert(0, Layer(f"{prefix}.branch_proj", "avgpool", self.c_in, self.c_in, h, w, h_out, w_out,
                                   3, 2, stage=stage))
            layers.append(Layer(f"{prefix}.concat", "concat", c, c, h_out, w_out, h_out, w_out, inputs=2, stage=stage))
        else:
            layers.append(Layer(f"{prefix}.add", "add", c, c, h_out, w_out, h_out, w_out, inputs=2, stage=stage))
            layers.append(Layer(f"{prefix}.relu", "relu", c, c, h_out, w_out, h_out, w_out, stage=stage))
        return layers, h_out, w_out

    def key(self, h: int, w: int) -> str:
        return (f"unit:{self.token}:{self.c_in}-{self.c_out}:h{h}x{w}:s{self.stride}:k{self.kernel}"
                + (":first" if self.first_group else ""))


@functools.cache
def _torch_class() -> Any:
    """The torch module class, made on first use so that importing this file needs no torch."""
    import torch
    from torch import nn

    class ShuffleV1Block(nn.Module):
        """``branch_main`` is the path of :meth:`ShuffleNetV1Unit.ops`; ``branch_proj`` the stride-2 shortcut."""

        def __init__(self, path: list[nn.Module], downsample: bool) -> None:
            super().__init__()
            self.branch_main = nn.Sequential(*path)
            self.branch_proj = nn.AvgPool2d(3, 2, 1) if downsample else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.branch_proj is not None:
                return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)
            return torch.relu(x + self.branch_main(x))

    ShuffleV1Block.__module__, ShuffleV1Block.__qualname__ = __name__, "ShuffleV1Block"
    return ShuffleV1Block


def __getattr__(name: str) -> Any:
    """``ShuffleV1Block`` on demand (PEP 562), so pickle finds the class by its name."""
    if name == "ShuffleV1Block":
        return _torch_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
