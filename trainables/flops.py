"""FLOPs of a training step, dense as executed and scaled by weight sparsity.

``torch.utils.flop_counter`` counts one real step: the forward pass with
its per-module breakdown, the backward pass as a total (its per-module
attribution is unreliable where a tensor feeds two branches, as in a
residual block). A Linear or Conv2d layer's backward is two GEMMs the size
of its forward one: the gradient with respect to its weights, and, unless
its input is data, the gradient with respect to its input. Sparse training
FLOPs then follow GraNet's Table 3 (after RigL's appendix): each layer's
forward and input-gradient FLOPs scale with the fraction of weights in use,
its weight-gradient FLOPs with the fraction of weight gradients needed, and
everything else stays dense.

These are the FLOPs a sparse kernel would need. The loop runs masked dense
kernels, whose cost the measured energy shows; reporting both keeps the
simulated saving and the realised one side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Mapping

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook
from torch.utils.flop_counter import FlopCounterMode

from greentune.techniques.base import LayerDensity
from greentune.techniques.masks import PRUNABLE

FlopCounts = Mapping[str, Mapping[object, int]]


@dataclass(frozen=True)
class LayerFlops:
    forward: float
    input_gradient: float

    @property
    def weight_gradient(self) -> float:
        return self.forward


@dataclass(frozen=True)
class StepFlops:
    """One training step's FLOPs: per prunable layer, and the rest of the step."""

    layers: dict[nn.Module, LayerFlops]
    other_forward: float
    other_backward: float
    batch_size: int

    @classmethod
    def from_counts(
        cls, model: nn.Module, forward: FlopCounts, backward_total: float, input_gradients: Mapping[nn.Module, bool], batch_size: int
    ) -> "StepFlops":
        """From the forward pass's per-module counts, the backward total, and which layers' inputs needed gradients."""
        names = _tracker_names(model)
        layers = {}
        for module in model.modules():
            if isinstance(module, PRUNABLE) and names[module] in forward:
                flops = _total(forward, names[module])
                layers[module] = LayerFlops(flops, flops if input_gradients.get(module, True) else 0.0)
        other_forward = _total(forward, "Global") - sum(layer.forward for layer in layers.values())
        layer_backward = sum(layer.weight_gradient + layer.input_gradient for layer in layers.values())
        return cls(layers, other_forward, backward_total - layer_backward, batch_size)

    @cached_property  # read every step
    def dense(self) -> float:
        return self.sparse({})

    def sparse(self, densities: Mapping[nn.Module, LayerDensity]) -> float | torch.Tensor:
        """FLOPs of the step if each layer used only its ``densities`` fraction (missing: dense).

        A Python float, or a float64 tensor where a density is a tensor (an
        accelerator's kept count, not read every step): a run's total adds
        up tens of thousands of steps, and in float32 it drifted by 0.1 %.
        """
        if not densities and "dense" in self.__dict__:
            return self.dense
        total = self.other_forward + self.other_backward
        for layer, flops in self.layers.items():
            density = densities.get(layer)
            if density is None:
                total += 2 * flops.forward + flops.input_gradient
            else:
                total = total + density.weights * (flops.forward + flops.input_gradient)
                total = total + density.gradients * flops.weight_gradient
        return total.double() if isinstance(total, torch.Tensor) else total

    def inference(self, densities: Mapping[nn.Module, LayerDensity]) -> float | torch.Tensor:
        """Forward FLOPs for one example with the weights in use (a pruned model's test FLOPs)."""
        total = self.other_forward
        for layer, flops in self.layers.items():
            density = densities.get(layer)
            total = total + (flops.forward if density is None else density.weights * flops.forward)
        return total / self.batch_size


def measure_step(model: nn.Module, loss_of_batch: Callable[[], torch.Tensor], batch_size: int) -> tuple[torch.Tensor, StepFlops]:
    """Compute a batch's loss and its backward pass once under the FLOP counter."""
    input_gradients: dict[nn.Module, bool] = {}

    def record(module, inputs):
        if isinstance(module, PRUNABLE):
            input_gradients[module] = inputs[0].requires_grad

    hook = register_module_forward_pre_hook(record)
    try:
        with FlopCounterMode(display=False) as forward:
            loss = loss_of_batch()
    finally:
        hook.remove()
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    flops = StepFlops.from_counts(model, forward.get_flop_counts(), backward.get_total_flops(), input_gradients, batch_size)
    return loss, flops


def _tracker_names(model: nn.Module) -> dict[nn.Module, str]:
    """The names ``FlopCounterMode`` gives modules: the root's class name, then attribute paths."""
    root = type(model).__name__
    return {module: f"{root}.{name}" if name else root for name, module in model.named_modules()}


def _total(counts: FlopCounts, name: str) -> float:
    return float(sum(counts.get(name, {}).values()))
