"""The Xception-style unit, token ``xc``: SPOS's Xception choice block in ShuffleNetV2's split structure.

Single Path One-Shot (Guo et al. 2019) searches it beside the ShuffleNetV2 units; the ShuffleNet V2
paper compares against Xception in Table 8. Stride 1: the input is split (the stage's ratio), the
branch is three separable convs ``[kxk depthwise + BN, 1x1 + BN + ReLU] x 3`` on its channels, the
rest passes unchanged (the residual path); concat, shuffle. Stride 2: branch 1 is ShuffleNetV2's
(depthwise + 1x1), branch 2 the three separable convs with the stride on the first depthwise.
SE and the extra 3x3 depthwise (ShuffleNetV2*) work as in the ``v2`` unit. Only branch 2 differs
from the ``v2`` unit, so this spec is that unit with another branch 2 (same checks, same module).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from search_space.blocks.base import register_block
from search_space.blocks.layers import Layer
from search_space.blocks.ops import SE, ConvBN, Op, depthwise
from search_space.blocks.shufflenet_v2 import ShuffleNetV2Unit
from search_space.errors import ArchitectureError

SEPARABLE = 3


@register_block
@dataclasses.dataclass(frozen=True)
class XceptionUnit(ShuffleNetV2Unit):
    """An Xception unit; ``ratio`` is the share of the output channels made by the conv branch."""

    family: ClassVar[str] = "xc"
    title: ClassVar[str] = "Xception-style unit, three separable convs: xc"

    @classmethod
    def from_token(cls, token: str, *, c_in: int, c_out: int, stride: int, ratio: float = 0.5, kernel: int = 3,
                   se: bool = False, extra_dw: bool = False) -> XceptionUnit:
        if token != cls.family:
            raise ArchitectureError(f"block token {token!r}: the Xception unit takes no option (write xc)")
        return cls(c_in, c_out, stride, kernel, se, extra_dw, ratio=ratio)

    def branch2_ops(self) -> tuple[Op, ...]:
        """The three separable convs (the stride on the first depthwise), then SE if asked."""
        b_in = self.c_in if self.stride == 2 else self.branch
        ops: list[Op] = [depthwise(b_in, 3)] if self.extra_dw else []
        for i in range(SEPARABLE):
            c = b_in if i == 0 else self.branch
            ops += [depthwise(c, self.kernel, self.stride if i == 0 else 1), ConvBN(c, self.branch)]
        if self.se:
            ops.append(SE(self.branch))
        return tuple(ops)

    def layers(self, prefix: str, stage: str, h: int, w: int) -> tuple[list[Layer], int, int]:
        """The v2 unit's layers with branch 2's convs named ``dw1 pw1 dw2 pw2 dw3 pw3`` (``dw0`` first)."""
        layers, h_out, w_out = super().layers(prefix, stage, h, w)
        names = iter((*(("dw0",) if self.extra_dw else ()),
                      *(f"{p}{i}" for i in range(1, SEPARABLE + 1) for p in ("dw", "pw"))))
        branch2 = f"{prefix}.branch2."
        return [dataclasses.replace(layer, name=branch2 + next(names))
                if layer.kind == "conv" and layer.name.startswith(branch2) and ".se." not in layer.name else layer
                for layer in layers], h_out, w_out

    def key(self, h: int, w: int) -> str:
        return (f"unit:{self.token}:{self.c_in}-{self.c_out}:h{h}x{w}:s{self.stride}:k{self.kernel}:r{self.ratio:g}"
                f":se{int(self.se)}:xdw{int(self.extra_dw)}")
