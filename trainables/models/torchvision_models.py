"""torchvision's models by name (``torchvision:resnet18``), untrained, with the widths surgery may resize.

``torchvision.models.get_model`` builds the network with ``weights=None``
(nothing is downloaded) and the given options (``num_classes``, ...). A
ResNet is handed back as ``ResizableResNet``: the same object, whose class
adds only ``width_groups()``, so its state_dict still loads into
torchvision's own ResNet. Inside each residual block the inner widths
(conv1's filters, and conv2's in a bottleneck) resize; the widths that feed
a residual sum stay, as in WRN-28-1 here.
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, Bottleneck

from greentune.techniques.surgery import WidthGroup

PREFIX = "torchvision:"


class ResizableResNet(models.ResNet):
    """torchvision's ResNet, naming the inner widths of its blocks for growing and filter pruning."""

    def width_groups(self) -> list[WidthGroup]:
        groups = []
        for name, block in self.named_modules():
            if isinstance(block, BasicBlock):
                groups.append(WidthGroup(f"{name}.conv1", (f"{name}.conv2",), f"{name}.bn1"))
            elif isinstance(block, Bottleneck) and block.conv2.groups == 1:  # grouped convs (ResNeXt) cannot resize
                groups.append(WidthGroup(f"{name}.conv1", (f"{name}.conv2",), f"{name}.bn1"))
                groups.append(WidthGroup(f"{name}.conv2", (f"{name}.conv3",), f"{name}.bn2"))
        return groups


def torchvision_model(name: str, **options: Any) -> nn.Module:
    """torchvision model ``name`` with random weights; unknown names and options are one clear error."""
    if name not in models.list_models():
        close = difflib.get_close_matches(name, models.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see torchvision.models.list_models()"
        raise ValueError(f"torchvision has no model {name!r}{hint}")
    try:
        model = models.get_model(name, weights=None, **options)
    except (TypeError, ValueError, RuntimeError) as error:  # RuntimeError: a size torch cannot build, num_classes: -1
        raise ValueError(f"model torchvision:{name}: {error}") from None
    if type(model) is models.ResNet:
        model.__class__ = ResizableResNet
    return model
