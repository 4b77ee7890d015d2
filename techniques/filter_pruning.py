"""L1-norm structured filter pruning during training (seed 000, III-A-4; Li et al. 2017).

The opposite of GradMax growing, on the same schedule: training starts from
the wide model (baseline big) and, at each resize step, every width group
loses the units whose producer weights have the smallest L1 norm, until it
is ``width_ratio`` times its starting width (baseline small). Removal is
physical: the filters, their BatchNorm entries and the next layer's input
channels are sliced away, so the rest of training runs a smaller network.
On WRN-28-1 only the first conv of each block is pruned (its width groups).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .base import Run
from .registry import register
from .resizing import ScheduledResize
from .surgery import Resized, WidthGroup, select_units


@register
class FilterPruning(ScheduledResize):
    name = "filter_pruning"

    def __init__(self, width_ratio: float = 0.5, **schedule):
        super().__init__(width_ratio, **schedule)
        if width_ratio >= 1:
            raise ValueError(f"filter pruning shrinks: width_ratio must be below 1, got {width_ratio}")

    def resize_groups(self, run: Run, todo: Sequence[tuple[WidthGroup, int, int]]) -> list[Resized]:
        changes: list[Resized] = []
        for group, _, target in todo:
            weight = run.model.get_submodule(group.producer).weight.detach()
            l1 = weight.abs().flatten(1).sum(dim=1)
            keep = torch.topk(l1, target).indices.sort().values
            changes += select_units(run.model, group, keep)
        return changes
