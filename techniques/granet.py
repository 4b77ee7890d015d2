"""GraNet (seed 003): gradual magnitude pruning with zero-cost neuroregeneration.

Gradual pruning (Zhu & Gupta): every Δt steps from t_0 to t_f the network is
pruned by global magnitude to s_t = s_f + (s_i − s_f)(1 − (t − t_0)/(nΔt))³,
so layers end at different sparsities. t_f is rounded to t_0 + nΔt, the last
pruning step, where s_f is reached exactly.

Zero-cost neuroregeneration: right after each pruning step, and every Δt
steps to the end of training, each layer drops the fraction r of its active
weights with the smallest magnitude and regrows as many at inactive
positions with the largest gradient magnitude, starting from zero (RigL's
criterion). The active count never changes, and r decays along a cosine.
The gradients are the dense ones of that step, which masked dense kernels
produce anyway; a sparse implementation would need them only on those
steps, and the FLOP accounting charges them only there.

s_i = 0 trains dense-to-sparse; s_i > 0 starts sparse with ERK layer
densities (sparse-to-sparse). Without regeneration this is plain GMP, the
paper's baseline, registered as ``gmp``.
"""

from __future__ import annotations

from typing import Annotated

import torch

from .base import LayerDensity, Run, Technique
from .masks import WeightMasks, erdos_renyi_densities, layer_shapes, prunable_layers, random_mask
from .registry import parameter_names, register
from .schedules import cosine_decay, cubic_sparsity
from .space import Choice, Float, Int


@register
class GraNet(Technique):
    name = "granet"
    reports = frozenset({"sparsity", "regrow_fraction"})
    claims = frozenset({"weights"})
    stage = 20

    def __init__(
        self,
        # Disjoint ranges, so every sampled point satisfies s_i <= s_f and t_0 < t_f.
        initial_sparsity: Annotated[float, Float(0.0, 0.5)] = 0.0,
        final_sparsity: Annotated[float, Float(0.5, 0.99)] = 0.9,
        start_fraction: Annotated[float, Float(0.0, 0.25)] = 0.0,
        end_fraction: Annotated[float, Float(0.3, 0.9)] = 0.5,
        interval: Annotated[int, Int(10, 2000, log=True)] = 100,
        regrow_fraction: Annotated[float, Float(0.05, 0.7)] = 0.5,
        regenerate: Annotated[bool, Choice((True, False))] = True,
    ):
        if not 0.0 <= initial_sparsity <= final_sparsity < 1.0:
            raise ValueError(
                f"need 0 <= initial_sparsity <= final_sparsity < 1, got {initial_sparsity} and {final_sparsity}"
            )
        if not 0.0 <= start_fraction < end_fraction <= 1.0:
            raise ValueError(f"need 0 <= start_fraction < end_fraction <= 1, got {start_fraction} and {end_fraction}")
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval (steps between pruning rounds) must be a positive integer, got {interval!r}")
        if not 0.0 <= regrow_fraction <= 1.0:
            raise ValueError(f"regrow_fraction must be in [0, 1], got {regrow_fraction}")
        self.initial_sparsity, self.final_sparsity = initial_sparsity, final_sparsity
        self.start_fraction, self.end_fraction, self.interval = start_fraction, end_fraction, interval
        self.regrow_fraction, self.regenerate = regrow_fraction, regenerate
        self.start_step = self.end_step = self.total_steps = 0
        self._layer_densities: dict[bool, dict] = {}  # with dense gradients or not -> per layer

    def prepare(self, model, run: Run):
        self.masks = WeightMasks(prunable_layers(model))
        if self.initial_sparsity > 0:
            generator = torch.Generator().manual_seed(run.seed)
            densities = erdos_renyi_densities(layer_shapes(self.masks.layers), 1.0 - self.initial_sparsity)
            self.masks.masks = [
                random_mask(layer.weight.shape, density, generator, layer.weight.device)
                for layer, density in zip(self.masks.layers, densities)
            ]
            self.masks.apply()
        self.total_steps = run.total_steps
        self.start_step = round(self.start_fraction * run.total_steps)
        rounds = max(1, int((self.end_fraction - self.start_fraction) * run.total_steps) // self.interval)
        self.end_step = self.start_step + rounds * self.interval
        self._set_densities()
        return model

    def is_update_step(self, step: int) -> bool:
        return step > self.start_step and (step - self.start_step) % self.interval == 0

    def scheduled_sparsity(self, step: int) -> float:
        return cubic_sparsity(self.initial_sparsity, self.final_sparsity, step, self.start_step, self.end_step)

    def current_regrow_fraction(self, step: int) -> float:
        return cosine_decay(self.regrow_fraction, step, self.total_steps) if self.regenerate else 0.0

    def regrows(self, step: int) -> bool:
        """Whether the update after ``step``'s optimizer step regrows by gradient, so needs its gradients dense."""
        return self.is_update_step(step) and self.current_regrow_fraction(step) > 0

    def after_backward(self, run: Run) -> None:
        # Between mask updates the masks are fixed, and masking the gradients
        # is enough, as for random pruning: a pruned weight is zero with zero
        # optimizer state (the update zeroes both), so with a zero gradient it
        # stays exactly zero under SGD and Adam. Only a step whose gradients
        # score the regrowth keeps them dense; its update zeroes what they moved.
        if not self.regrows(run.step + 1):
            self.masks.apply_to_gradients()

    def after_step(self, run: Run) -> None:
        pruning = self.is_update_step(run.step) and run.step <= self.end_step
        if not (pruning or self.regrows(run.step)):
            return  # no mask changes here (GMP after its last pruning step)
        if pruning:
            self.masks.prune_global_magnitude(self.scheduled_sparsity(run.step))
        self.regenerate_connections(run)
        # Pruned and dropped weights and their state are zeroed once, with the final masks; regrown
        # ones were zeroed as they grew. So are their gradients: a skipped batch may step again with
        # them (data selection's "last").
        self.masks.apply()
        self.masks.apply_to_optimizer(run.optimizer)
        self.masks.apply_to_gradients()
        self._set_densities()

    @torch.no_grad()
    def regenerate_connections(self, run: Run) -> None:
        """Swap the weakest fraction r of each layer's weights for the inactive ones of largest gradient."""
        fraction = self.current_regrow_fraction(run.step)
        gradients = [layer.weight.grad for layer in self.masks.layers]
        if fraction == 0.0 or any(gradient is None for gradient in gradients):
            return
        counts = self.masks.drop_smallest_magnitude(fraction)
        self.masks.grow_largest(gradients, counts, run.optimizer)

    def _set_densities(self) -> None:
        # Read every step by the loop's FLOP count: both answers are built once per mask update, new
        # mappings when the densities change and the same ones otherwise, as the loop expects.
        pairs = list(zip(self.masks.layers, self.masks.densities()))
        self._layer_densities = {
            dense: {layer: LayerDensity(weights=density, gradients=1.0 if dense else density) for layer, density in pairs}
            for dense in (False, True)
        }

    def layer_densities(self, run):
        # The step whose gradients score the regrowth needs them dense.
        return self._layer_densities[self.regrows(run.step + 1)]

    def metrics(self, run):
        return {"sparsity": 1.0 - self.masks.density(), "regrow_fraction": self.current_regrow_fraction(run.step)}

    def __repr__(self) -> str:
        arguments = ", ".join(f"{name}={getattr(self, name)!r}" for name in parameter_names(type(self)))
        return f"{type(self).__name__}({arguments})"


@register
class GradualMagnitudePruning(GraNet):
    """GMP (Zhu & Gupta 2017; Gale et al. 2019): GraNet's schedule without regeneration."""

    name = "gmp"
    pinned = {"regrow_fraction": 0.0, "regenerate": False}

    def __init__(self, **schedule):
        super().__init__(**schedule, **self.pinned)
