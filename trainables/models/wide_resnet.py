"""WRN-28-1 for 32x32 images as in GradMax's implementation (Evci et al. 2022).

Pre-activation blocks: BN, ReLU, conv1, ReLU (slope 1 at zero), conv2, with
a 1x1 strided conv on the shortcut where the block downsamples. GradMax's
version drops the BatchNorm between conv1 and conv2 (``block_norm=False``).
``block_width`` multiplies only conv1's filters (GradMax's seed network is
1/4), so the residual sums keep their sizes; for the same reason conv1 is
the only layer the model offers for growing or pruning (``width_groups``).
"""

from __future__ import annotations

import torch
from torch import nn

from greentune.techniques.surgery import WidthGroup

from . import register_model
from .layers import UnitSlopeReLU
from .vgg import he_conv


class Block(nn.Module):
    def __init__(self, fan_in: int, filters: int, stride: int, block_width: float, block_norm: bool):
        super().__init__()
        inner = max(1, round(filters * block_width))
        self.norm1, self.relu1 = nn.BatchNorm2d(fan_in), nn.ReLU()
        self.conv1 = he_conv(fan_in, inner, stride)
        self.norm2 = nn.BatchNorm2d(inner) if block_norm else nn.Identity()
        self.relu2 = UnitSlopeReLU()
        self.conv2 = he_conv(inner, filters)
        self.shortcut = he_conv(fan_in, filters, stride, kernel=1) if stride > 1 or fan_in != filters else nn.Identity()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        branch = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(inputs))))))
        return self.shortcut(inputs) + branch


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int, block_width: float, block_norm: bool, in_channels: int):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4 (16, 22, 28, 40), got {depth}")
        self.stem = he_conv(in_channels, 16)
        blocks, channels = [], 16
        for filters, stride in zip((16 * widen, 32 * widen, 64 * widen), (1, 2, 2)):
            for index in range((depth - 4) // 6):
                blocks.append(Block(channels, filters, stride if index == 0 else 1, block_width, block_norm))
                channels = filters
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, num_classes)
        nn.init.kaiming_normal_(self.classifier.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.classifier.bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.blocks(self.stem(inputs))))

    def width_groups(self) -> list[WidthGroup]:
        """Only each block's conv1 resizes; everything else feeds a residual sum."""
        groups = []
        for index, block in enumerate(self.blocks):
            norm = f"blocks.{index}.norm2" if isinstance(block.norm2, nn.BatchNorm2d) else None
            groups.append(WidthGroup(f"blocks.{index}.conv1", (f"blocks.{index}.conv2",), norm))
        return groups


@register_model
def wrn28_1(num_classes: int = 10, block_width: float = 1.0, block_norm: bool = False, in_channels: int = 3) -> WideResNet:
    return WideResNet(28, 1, num_classes, block_width, block_norm, in_channels)
