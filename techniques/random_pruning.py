"""Random pruning at initialisation with Erdős–Rényi layer densities (seed 000, III-A-3).

Liu et al. (2022) show that pruning a network at random before training is
a strong baseline when the layer-wise densities follow ER (Mocanu et al.
2018) or ERK: larger layers lose more. The masks are drawn once, with exact
counts per layer, and never change; pruned weights, their gradients and
their optimizer state stay exactly zero for the whole run. The paper prunes
the teacher–student 100:100:10 student by 50%, which leaves as many weights
as 100:50:10. The model keeps its dense shapes, so the arithmetic (FLOPs,
time) is that of the dense model.
"""

from __future__ import annotations

from typing import Annotated

import torch

from .base import Run, Technique
from .masks import WeightMasks, erdos_renyi_densities, layer_shapes, prunable_layers, random_mask
from .registry import register
from .space import Choice, Float

DISTRIBUTIONS = {"er": False, "erk": True}  # name -> whether kernel dimensions count


@register
class RandomPruning(Technique):
    name = "random_pruning"
    reports = frozenset({"density"})
    # Fixed masks need fixed shapes, so this also holds the width.
    claims = frozenset({"weights", "width"})
    stage = 20

    def __init__(
        self,
        sparsity: Annotated[float, Float(0.1, 0.95)] = 0.5,
        distribution: Annotated[str, Choice(tuple(DISTRIBUTIONS))] = "er",
    ):
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
        self.sparsity, self.distribution = sparsity, distribution
        self.masks: WeightMasks | None = None

    def prepare(self, model, run: Run):
        layers = prunable_layers(model)
        self.masks = WeightMasks(layers)
        densities = erdos_renyi_densities(layer_shapes(layers), 1.0 - self.sparsity, kernel=DISTRIBUTIONS[self.distribution])
        # A stream of its own, so the model's initialisation is the baseline's.
        generator = torch.Generator().manual_seed(run.seed + 7_919)
        for index, (layer, density) in enumerate(zip(layers, densities)):
            self.masks.masks[index] = random_mask(layer.weight.shape, density, generator, device=layer.weight.device)
        self.masks.apply()
        return model

    def after_backward(self, run: Run) -> None:
        # Enough on its own: a weight that is zero, with zero gradient and zero
        # optimizer state, stays exactly zero under SGD (momentum, weight decay)
        # and Adam, so the weights and the state need no masking after the step.
        self.masks.apply_to_gradients()

    def metrics(self, run: Run) -> dict[str, float]:
        return {"density": self.masks.density()}

    def __repr__(self) -> str:
        return f"RandomPruning(sparsity={self.sparsity}, distribution={self.distribution!r})"
