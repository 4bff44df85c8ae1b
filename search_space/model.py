"""`build_model`: an Architecture -> a torch ShuffleNetV2, laid out like torchvision's.

Module names follow torchvision (``conv1, maxpool, stage2..4, conv5, fc``) and the paper presets
have exactly torchvision's parameter counts. Proxy resolutions (input < 64 px) use a small stem:
conv1 at stride 1 and no max-pool, so a 16x16 digit still reaches stage 4 as a 2x2 map.
"""

from __future__ import annotations

import torch
from torch import nn

from search_space.architecture import Architecture, branch_channels
from search_space.errors import ArchitectureError
from search_space.layout import SMALL_INPUT_LIMIT, stem_layout  # noqa: F401  (re-exported here too)
from search_space.sizes import require_weights_fit


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channel groups so information crosses the two branches of the next unit."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batch, channels, height, width)


def _conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


def _depthwise(channels: int, kernel: int, stride: int) -> list[nn.Module]:
    return _conv_bn(channels, channels, kernel, stride, groups=channels, relu=False)


class SqueezeExcite(nn.Module):
    """Channel attention on the conv branch (the paper's SE-ShuffleNetV2, Table 8)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * scale


class InvertedResidual(nn.Module):
    """One ShuffleNetV2 unit (paper Fig. 3c for stride 1, Fig. 3d for stride 2).

    Stride 1: split the input, keep ``c - b`` channels, send ``b`` through
    1x1 conv -> kxk depthwise -> 1x1 conv, concatenate and shuffle.
    Stride 2: both branches see the whole input and downsample; the concat widens the map.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, split_ratio: float = 0.5, kernel: int = 3,
                 se: bool = False, extra_dw: bool = False) -> None:
        super().__init__()
        self.stride = stride
        branch = branch_channels(c_out, split_ratio)
        self.kept = c_out - branch  # stride 1: channels passed through; stride 2: branch1's output
        if stride == 1 and c_in != c_out:
            raise ValueError("a stride-1 unit keeps its width")
        if stride > 1:
            pre = _depthwise(c_in, 3, 1) if extra_dw else []
            self.branch1 = nn.Sequential(*pre, *_depthwise(c_in, kernel, stride), *_conv_bn(c_in, self.kept))
        else:
            self.branch1 = nn.Sequential()
        branch_in = c_in if stride > 1 else branch
        pre = _depthwise(branch_in, 3, 1) if extra_dw else []
        self.branch2 = nn.Sequential(
            *pre,
            *_conv_bn(branch_in, branch),
            *_depthwise(branch, kernel, stride),
            *_conv_bn(branch, branch),
            *([SqueezeExcite(branch)] if se else []),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x[:, : self.kept], x[:, self.kept :]
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """The whole network; readable in one screen, like torchvision's."""

    def __init__(self, arch: Architecture, num_classes: int = 1000, input_size: int = 224) -> None:
        super().__init__()
        self.arch = arch
        stride, use_pool = stem_layout(input_size)
        self.conv1 = nn.Sequential(*_conv_bn(3, arch.stem, 3, stride))
        self.maxpool = nn.MaxPool2d(3, 2, 1) if use_pool else nn.Identity()
        c_in = arch.stem
        stages = []
        for width, depth, ratio, kernel in zip(arch.widths, arch.depths, arch.split_ratios, arch.kernels):
            units = [InvertedResidual(c_in, width, 2, ratio, kernel, arch.se, arch.extra_dw)]
            units += [InvertedResidual(width, width, 1, ratio, kernel, arch.se, arch.extra_dw) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*units))
            c_in = width
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = nn.Sequential(*_conv_bn(c_in, arch.conv5))
        self.fc = nn.Linear(arch.conv5, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
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
