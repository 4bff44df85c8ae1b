"""The stem (conv1 + max-pool) and the head (conv5 + global pool + FC), in the three forms of a unit.

Their lookup-table keys for the networks of the code before block specs are that code's strings
(``stem:3-24:h224x224:s2:pool1``, ``head:464-1024:h7x7:fc1000``); only new variants add text
(``:relu6`` for MobileNetV2's activation; ``head:960-0:...`` when there is no head conv, as in
ShuffleNetV1).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

from search_space.blocks.layers import Layer
from search_space.blocks.ops import ConvBN, conv_out

if TYPE_CHECKING:
    from torch import nn


def _act_suffix(act: str) -> str:
    return "" if act == "relu" else f":{act}"


@dataclasses.dataclass(frozen=True)
class StemSpec:
    """conv1 (3x3, ``stride``, + BN + activation) and, with ``pool``, a 3x3 stride-2 max-pool."""

    c_out: int
    stride: int = 2
    pool: bool = True
    act: str = "relu"

    c_in = 3

    @property
    def conv(self) -> ConvBN:
        return ConvBN(3, self.c_out, 3, self.stride, act=self.act)

    def out_size(self, h: int) -> int:
        h = self.conv.out_size(h)
        return conv_out(h, 3, 2) if self.pool else h

    def conv_modules(self) -> list[nn.Module]:
        return self.conv.modules()

    def pool_module(self) -> nn.Module:
        from torch import nn

        return nn.MaxPool2d(3, 2, 1) if self.pool else nn.Identity()

    def module(self) -> nn.Module:
        from torch import nn

        return nn.Sequential(*self.conv_modules(), self.pool_module())

    def layers(self, h: int, w: int) -> tuple[list[Layer], int, int]:
        conv, h, w = self.conv.layer("conv1", "stem", h, w)
        layers = [conv]
        if self.pool:
            h2, w2 = conv_out(h, 3, 2), conv_out(w, 3, 2)
            layers.append(Layer("maxpool", "maxpool", self.c_out, self.c_out, h, w, h2, w2, 3, 2, stage="stem"))
            h, w = h2, w2
        return layers, h, w

    def key(self, h: int, w: int) -> str:
        return f"stem:3-{self.c_out}:h{h}x{w}:s{self.stride}:pool{int(self.pool)}{_act_suffix(self.act)}"


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """conv5 (1x1 + BN + activation; none when ``conv5 == 0``), global average pool, FC with bias."""

    c_in: int
    conv5: int
    num_classes: int = 1000
    act: str = "relu"

    @property
    def features(self) -> int:
        """Channels the FC layer reads."""
        return self.conv5 or self.c_in

    @property
    def c_out(self) -> int:
        return self.num_classes

    @property
    def conv(self) -> ConvBN | None:
        return ConvBN(self.c_in, self.conv5, act=self.act) if self.conv5 else None

    def conv_modules(self) -> list[nn.Module]:
        """conv5's modules (empty without a head conv)."""
        return self.conv.modules() if self.conv is not None else []

    def fc_module(self) -> nn.Module:
        from torch import nn

        return nn.Linear(self.features, self.num_classes)

    def module(self) -> nn.Module:
        return _head_class()(self.conv_modules(), self.fc_module())

    def layers(self, h: int, w: int) -> tuple[list[Layer], int, int]:
        layers = []
        if self.conv is not None:
            layers.append(self.conv.layer("conv5", "head", h, w)[0])
        c = self.features
        layers.append(Layer("gap", "gap", c, c, h, w, 1, 1, stage="head"))
        layers.append(Layer("fc", "fc", c, self.num_classes, 1, 1, 1, 1, bias=True, stage="head"))
        return layers, 1, 1

    def key(self, h: int, w: int) -> str:
        return f"head:{self.c_in}-{self.conv5}:h{h}x{w}:fc{self.num_classes}{_act_suffix(self.act)}"


@functools.cache
def _head_class() -> Any:
    """The standalone head module (lookup-table blocks), made on first use: no torch at import."""
    import torch
    from torch import nn

    class Head(nn.Module):
        """conv5 (an ``Identity`` without a head conv), global mean, FC."""

        def __init__(self, conv5: list[nn.Module], fc: nn.Module) -> None:
            super().__init__()
            self.conv5 = nn.Sequential(*conv5) if conv5 else nn.Identity()
            self.fc = fc

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv5(x).mean((2, 3)))

    Head.__module__, Head.__qualname__ = __name__, "Head"
    return Head


def __getattr__(name: str) -> Any:
    """``Head`` on demand (PEP 562), so pickle finds the class by its name."""
    if name == "Head":
        return _head_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
