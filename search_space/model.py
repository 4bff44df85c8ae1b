"""`build_model`: an Architecture -> a torch network, laid out like torchvision's ShuffleNetV2.

Module names follow torchvision (``conv1, maxpool, stage2.., conv5, fc``) and the paper presets
have exactly torchvision's parameter counts and state-dict keys. Every unit is its spec's module
(:mod:`search_space.blocks`), placed by :mod:`search_space.blocks.network`, the same walk the cost
models use. Proxy resolutions (input < 64 px) use a small stem: conv1 at stride 1 and no max-pool,
so a 16x16 digit still reaches stage 4 as a 2x2 map. Without a head conv (``conv5 == 0``) the
``conv5`` attribute is an ``Identity``: the state dict holds no ``conv5`` keys.
"""

from __future__ import annotations

import torch
from torch import nn

from search_space.architecture import Architecture
from search_space.blocks import network
from search_space.blocks.modules import channel_shuffle
from search_space.blocks.ops import SE, ConvBN
from search_space.blocks.shufflenet_v2 import ShuffleNetV2Unit
from search_space.errors import ArchitectureError
from search_space.layout import SMALL_INPUT_LIMIT, stem_layout  # noqa: F401  (re-exported here too)
from search_space.sizes import require_weights_fit


class ShuffleNetV2(nn.Module):
    """The whole network: stem, ``arch.num_stages`` stages of unit modules, head."""

    def __init__(self, arch: Architecture, num_classes: int = 1000, input_size: int = 224) -> None:
        super().__init__()
        self.arch = arch
        stem = network.stem(arch, input_size)
        self.conv1 = nn.Sequential(*stem.conv_modules())
        self.maxpool = stem.pool_module()
        stages: dict[str, list[nn.Module]] = {name: [] for name in arch.stage_names}
        for placement in network.units(arch, input_size):
            stages[placement.stage_name].append(placement.spec.module())
        self.stage_names = arch.stage_names
        for name, modules in stages.items():
            setattr(self, name, nn.Sequential(*modules))
        head, _, _ = network.head(arch, input_size, num_classes)
        conv5 = head.conv_modules()
        self.conv5 = nn.Sequential(*conv5) if conv5 else nn.Identity()
        self.fc = head.fc_module()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        x = self.conv5(x).mean((2, 3))
        return self.fc(x)


def build_model(arch: Architecture, num_classes: int = 1000, input_size: int = 224) -> ShuffleNetV2:
    """Build the torch module for ``arch``; ``input_size`` picks the stem (see :func:`stem_layout`).

    Weights that cannot fit in the available memory are refused before torch allocates them
    (:class:`~search_space.sizes.MemoryBudgetError`); running the model is checked by its callers.
    """
    if num_classes < 1:
        raise ArchitectureError(f"num_classes must be >= 1, got {num_classes}")  # a ValueError too
    if input_size < 8:
        raise ArchitectureError(f"input_size must be >= 8, got {input_size}")
    require_weights_fit(arch, num_classes, input_size)
    return ShuffleNetV2(arch, num_classes, input_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- names of the code before block specs, for old callers (nothing in the package uses them) ----------
def InvertedResidual(c_in: int, c_out: int, stride: int, split_ratio: float = 0.5, kernel: int = 3,  # noqa: N802
                     se: bool = False, extra_dw: bool = False) -> nn.Module:
    """One ShuffleNetV2 unit module (now :class:`~search_space.blocks.shufflenet_v2.ShuffleNetV2Unit`'s)."""
    return ShuffleNetV2Unit(c_in, c_out, stride, kernel, se, extra_dw, ratio=split_ratio).module()


def SqueezeExcite(channels: int, reduction: int = 4) -> nn.Module:  # noqa: N802
    """SE with the hidden width of :class:`~search_space.blocks.ops.SE` (the one home of that rule)."""
    return SE(channels, reduction).modules()[0]


def _conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
             relu: bool = True) -> list[nn.Module]:
    """Conv + BN (+ ReLU) modules (now :class:`~search_space.blocks.ops.ConvBN`)."""
    return ConvBN(c_in, c_out, kernel, stride, groups, "relu" if relu else None).modules()


__all__ = ["InvertedResidual", "ShuffleNetV2", "SqueezeExcite", "build_model", "channel_shuffle", "count_parameters"]
