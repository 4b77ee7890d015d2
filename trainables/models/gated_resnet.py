"""CIFAR ResNets (He et al. 2015: 6n+2 layers, 16/32/64 channels) whose blocks take gates (seed 004).

A block is conv1-BN-ReLU-conv2-BN added to its shortcut (a 1x1 conv and BN
where it downsamples), then ReLU. It has two empty gate slots that the
``gating`` technique fills: ``layer_gate`` (block input to one decision that
scales the whole residual branch; while ``branch_closed`` is set, from the
gate's static decision, the branch is not computed at all) and
``channel_gate``, at one of the paper's three positions (Figure 3),
``gate_position``:

- ``"before"``: one decision per conv1 filter, reading the block input;
- ``"middle"``: one decision per conv1 filter, reading conv1's activations;
- ``"after"``: one decision per conv2 filter, reading the branch's output.
  A closed channel adds nothing to the residual sum, so an exported block
  computes only the open ones and adds them into the shortcut at their
  places (``branch_channels``); the shortcut keeps every channel.

With no gates it is a plain ResNet block. The model names what export may
remove: ``gated_blocks()`` gives each block with the width group its channel
decisions slice (surgery), and ``bypass()`` the module that replaces a block
whose branch is closed.
"""

from __future__ import annotations

import torch
from torch import nn

from greentune.techniques.surgery import WidthGroup

from . import register_model
from .vgg import he_conv


class Block(nn.Module):
    def __init__(self, fan_in: int, filters: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = he_conv(fan_in, filters, stride), nn.BatchNorm2d(filters)
        self.conv2, self.bn2 = he_conv(filters, filters), nn.BatchNorm2d(filters)
        self.relu = nn.ReLU()
        downsample = stride > 1 or fan_in != filters
        self.shortcut = nn.Sequential(he_conv(fan_in, filters, stride, kernel=1), nn.BatchNorm2d(filters)) if downsample else nn.Identity()
        self.layer_gate: nn.Module | None = None
        self.channel_gate: nn.Module | None = None
        self.gate_position = "middle"
        self.branch_closed = False  # a host-side flag, so skipping needs no GPU synchronisation
        self.register_buffer("branch_channels", None)  # after export of "after" gates: where the branch adds

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        layer_decision = None
        if self.layer_gate is not None:
            layer_decision = self.layer_gate(inputs)[:, :, None, None]
        if self.branch_closed:  # the gate's static decision: skip the branch, forward and backward
            return self.relu(self.shortcut(inputs))
        hidden = self.relu(self.bn1(self.conv1(inputs)))
        gate = self.channel_gate
        if gate is not None and self.gate_position != "after":
            hidden = hidden * gate(inputs if self.gate_position == "before" else hidden)[:, :, None, None]
        branch = self.bn2(self.conv2(hidden))
        if gate is not None and self.gate_position == "after":
            branch = branch * gate(branch)[:, :, None, None]
        if layer_decision is not None:
            branch = branch * layer_decision
        shortcut = self.shortcut(inputs)
        if self.branch_channels is not None:
            return self.relu(shortcut.index_add(1, self.branch_channels, branch))
        return self.relu(shortcut + branch)

    def bypass(self) -> nn.Module:
        """This block with its branch closed: the shortcut alone (its input is already >= 0 after a ReLU)."""
        if isinstance(self.shortcut, nn.Identity):
            return nn.Identity()
        return nn.Sequential(self.shortcut, nn.ReLU())


class GatedResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int, width: int, in_channels: int):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n+2 (20, 56, 110), got {depth}")
        self.stem = nn.Sequential(he_conv(in_channels, width), nn.BatchNorm2d(width), nn.ReLU())
        blocks, channels = [], width
        for filters, stride in zip((width, 2 * width, 4 * width), (1, 2, 2)):
            for index in range((depth - 2) // 6):
                blocks.append(Block(channels, filters, stride if index == 0 else 1))
                channels = filters
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(inputs)))

    def gated_blocks(self) -> list[tuple[str, Block, WidthGroup]]:
        """Each remaining gateable block: its name, itself, and the width group its channel decisions slice."""
        return [
            (name, block, _branch_output(name) if block.gate_position == "after" else _inner_width(name))
            for name, block in self._blocks()
        ]

    def width_groups(self) -> list[WidthGroup]:
        """The widths surgery may change: conv1's filters (conv2's outputs must match the shortcut)."""
        return [_inner_width(name) for name, _ in self._blocks()]

    def _blocks(self) -> list[tuple[str, Block]]:
        return [(f"blocks.{index}", block) for index, block in enumerate(self.blocks) if isinstance(block, Block)]


def _inner_width(block: str) -> WidthGroup:
    return WidthGroup(f"{block}.conv1", (f"{block}.conv2",), f"{block}.bn1")


def _branch_output(block: str) -> WidthGroup:
    return WidthGroup(f"{block}.conv2", (), f"{block}.bn2")


@register_model
def gated_resnet20(num_classes: int = 10, width: int = 16, in_channels: int = 3) -> GatedResNet:
    return GatedResNet(20, num_classes, width, in_channels)


@register_model
def gated_resnet56(num_classes: int = 10, width: int = 16, in_channels: int = 3) -> GatedResNet:
    return GatedResNet(56, num_classes, width, in_channels)


@register_model
def gated_resnet110(num_classes: int = 10, width: int = 16, in_channels: int = 3) -> GatedResNet:
    return GatedResNet(110, num_classes, width, in_channels)


@register_model
def gated_resnet8(num_classes: int = 10, width: int = 8, in_channels: int = 3) -> GatedResNet:
    """A tiny ResNet-8 (one block per stage) for CPU runs of the method."""
    return GatedResNet(8, num_classes, width, in_channels)
