"""Feather (seed 002): sparse training with a straight-through estimator.

Every Linear and Conv2d weight is kept dense and trained; the forward pass
uses its thresholded copy P_T(w) = sign(w)·(|w|^p − T^p)^(1/p) for |w| > T,
else 0. p = 1 is soft thresholding (shrinks every kept weight by T), p → ∞
("hard") is hard thresholding (a jump at T); the paper's p = 3 keeps the
transition continuous with little bias. The backward pass treats P_T as the
identity, so pruned weights keep learning and can come back, but scales
their gradients by θ: a smaller θ makes the mask steadier, which the paper
finds helps at very high sparsity (θ = "auto": 0.5 from 95 % on, else 1).

Two backbones choose T:

- ``global``: one threshold for all layers, the magnitude quantile of the
  scheduled sparsity over all prunable weights, recomputed after every step.
- ``asl``: ASL+ (Retsinas et al. 2021, as extended in the paper): a learnable
  parameter r_l per layer whose Gaussian estimate erf(r_l/√2) of the layer's
  sparsity is pulled to the schedule by a sparsity loss, and which also
  learns from the task loss through the threshold (ASL's estimate
  ∂L/∂T = −Σ_pruned g·w / T). The sorting-based correction turns the
  estimates into exact thresholds: a common shift δ makes the estimates'
  weighted mean equal the scheduled sparsity, and each layer's threshold is
  the empirical quantile of its |w| at its corrected estimate, so the
  network has exactly the scheduled sparsity whatever the weights' law.

Sparsity rises as a cubic from 0 to the target at ``target_fraction`` of
training (no dense warm-up, as in the paper). After the last step the
thresholded weights are written back as plain parameters, so the model the
run ends with, and exports, is truly sparse.

The reparametrisation is a forward pre-hook: the trained parameter is
``dense_weight`` and ``weight`` is recomputed before each forward, so the
layers stay ordinary ``nn.Linear``/``nn.Conv2d`` (the FLOP counter sees
them) and the hooks, plain objects, pickle with the model.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import torch
from torch import nn

from .base import LayerDensity, Run, Technique
from .masks import prunable_layers
from .registry import register
from .schedules import cubic_sparsity
from .space import Choice, Float

BACKBONES = ("global", "asl")


def threshold_weights(weight: torch.Tensor, threshold: torch.Tensor | float, power: float) -> torch.Tensor:
    """P_T(w): 0 where |w| <= T, else sign(w)·(|w|^p − T^p)^(1/p), written as w·(1 − (T/|w|)^p)^(1/p).

    Where |w| <= T the ratio T/|w| is clamped to 1, so the shrink factor is
    exactly 0 and no separate mask is needed; every step after the first
    works in place on one temporary, since this runs in every forward pass.
    """
    if math.isinf(power):
        return weight * (weight.abs() > threshold)
    ratio = torch.div(threshold, weight.abs().clamp_min_(torch.finfo(weight.dtype).tiny))
    shrink = ratio.clamp_(max=1.0).pow_(power).neg_().add_(1.0).pow_(1.0 / power)
    return shrink.mul_(weight)


def kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """``values.kthvalue(k).values`` (1-dim ``values``); on a CPU through NumPy's introselect, about 8x faster there."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.partition(values.numpy(), k - 1)[k - 1 : k]).reshape(())
    return values.kthvalue(k).values


def counts(values: list[torch.Tensor]) -> list[int] | list[torch.Tensor]:
    """Per-layer counts as ints on a CPU, where reading them costs nothing; as device tensors elsewhere, to avoid a synchronisation."""
    return [int(value) for value in values] if values[0].device.type == "cpu" else values


class ThresholdSTE(torch.autograd.Function):
    """P_T in the forward pass; identity to the dense weights in the backward, times θ where pruned."""

    @staticmethod
    def forward(ctx, weight, threshold, power, pruned_scale):
        ctx.save_for_backward(weight, threshold)
        ctx.pruned_scale = pruned_scale
        return threshold_weights(weight, threshold, power)

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.pruned_scale == 1.0 and not ctx.needs_input_grad[1]:
            return grad_output, None, None, None  # the plain straight-through estimator
        weight, threshold = ctx.saved_tensors
        pruned = weight.abs() <= threshold
        grad_weight = grad_output if ctx.pruned_scale == 1.0 else torch.where(pruned, grad_output * ctx.pruned_scale, grad_output)
        grad_threshold = None
        if ctx.needs_input_grad[1]:
            # ASL's estimate: raising T acts on the pruned weights as if they were scaled by T.
            grad_threshold = -(grad_output * weight * pruned).sum() / threshold.clamp_min(1e-12)
        return grad_weight, grad_threshold, None, None


class _ThresholdedWeight:
    """Forward pre-hook: ``weight`` = P_T(``dense_weight``) with the layer's current threshold."""

    def __init__(self, feather: "Feather", index: int):
        self.feather, self.index = feather, index

    def __call__(self, module, inputs):
        feather = self.feather
        module.weight = ThresholdSTE.apply(
            module.dense_weight, feather.thresholds.threshold(self.index), feather.power, feather.pruned_scale
        )


def _detach_weight(module, inputs, output):
    """Forward hook: keep only the values of ``weight`` between passes (picklable, deep-copyable)."""
    module.weight = module.weight.detach()


class GlobalThreshold:
    """One threshold for every layer: the |w| quantile of the target sparsity over all weights."""

    def __init__(self, layers: list[nn.Module]):
        self.layers = layers
        self.value = torch.zeros((), device=layers[0].dense_weight.device)

    @torch.no_grad()
    def update(self, sparsity: float) -> None:
        magnitudes = torch.cat([layer.dense_weight.view(-1) for layer in self.layers]).abs_()
        count = round(sparsity * magnitudes.numel())
        self.value = kth_smallest(magnitudes, count) if count > 0 else torch.zeros_like(self.value)
        above = magnitudes > self.value
        self.kept = counts([part.sum() for part in above.split([layer.dense_weight.numel() for layer in self.layers])])

    def threshold(self, index: int) -> torch.Tensor:
        return self.value

    def extra_loss(self, sparsity: float) -> torch.Tensor | None:
        return None

    def after_step(self) -> None:
        pass


class AdaptiveSparsityLoss:
    """ASL+: learned per-layer sparsities, a scheduled sparsity loss and a sorting-based correction."""

    def __init__(self, layers: list[nn.Module], loss_weight: float, learning_rate: float):
        self.layers, self.loss_weight, self.learning_rate = layers, loss_weight, learning_rate
        self.sizes = torch.tensor([float(layer.dense_weight.numel()) for layer in layers])
        self.relative = torch.zeros(len(layers), requires_grad=True)  # r_l = T_l / std(w_l) under the Gaussian model
        device = layers[0].dense_weight.device
        self.values = torch.zeros(len(layers), device=device)
        self.scales = torch.ones(len(layers), device=device)

    def estimated_sparsities(self, shift: torch.Tensor | float = 0.0) -> torch.Tensor:
        """erf(r/√2): a zero-mean Gaussian layer's fraction of weights below r standard deviations."""
        return torch.erf((self.relative + shift).clamp_min(0.0) / math.sqrt(2.0))

    @torch.no_grad()
    def update(self, sparsity: float) -> None:
        # The bisection runs on Python floats: a few small tensors' worth of
        # work, which as 40 rounds of tensor operations cost more than the step.
        relative, sizes = self.relative.detach().tolist(), self.sizes.tolist()

        def mean_sparsity(shift: float) -> float:
            estimates = (math.erf(max(r + shift, 0.0) / math.sqrt(2.0)) for r in relative)
            return sum(size * estimate for size, estimate in zip(sizes, estimates)) / sum(sizes)

        low, high = -20.0, 20.0
        for _ in range(40):  # bisection for the shift δ that makes the weighted mean exact (to 1e-10)
            middle = (low + high) / 2
            low, high = (middle, high) if mean_sparsity(middle) < sparsity else (low, middle)
        corrected = self.estimated_sparsities(high).tolist()
        kept = []
        for index, layer in enumerate(self.layers):
            magnitudes = layer.dense_weight.view(-1).abs()
            count = min(magnitudes.numel(), round(corrected[index] * magnitudes.numel()))
            self.values[index] = kth_smallest(magnitudes, count) if count > 0 else 0.0
            kept.append(torch.count_nonzero(magnitudes > self.values[index]))
        self.kept = counts(kept)
        torch.stack([layer.dense_weight.std() for layer in self.layers], out=self.scales)

    def threshold(self, index: int) -> torch.Tensor:
        # The sorted value, with the Gaussian model's dT/dr = σ for the task gradient to r.
        relative = self.relative[index]
        return self.values[index] + self.scales[index] * (relative - relative.detach()).to(self.values.device)

    def extra_loss(self, sparsity: float) -> torch.Tensor:
        mean = (self.estimated_sparsities() * self.sizes).sum() / self.sizes.sum()
        return self.loss_weight * (mean - sparsity) ** 2

    @torch.no_grad()
    def after_step(self) -> None:
        if self.relative.grad is not None:
            self.relative -= self.learning_rate * self.relative.grad
            self.relative.grad = None


@register
class Feather(Technique):
    name = "feather"
    claims = frozenset({"weights"})
    stage = 20

    def __init__(
        self,
        sparsity: Annotated[float, Float(0.5, 0.99)] = 0.9,
        power: Annotated[float | str, Choice((1.0, 2.0, 3.0, 5.0, "hard"))] = 3.0,
        pruned_gradient_scale: Annotated[float | str, Choice(("auto", 0.25, 0.5, 0.75, 1.0))] = "auto",
        target_fraction: Annotated[float, Float(0.2, 0.9)] = 0.5,
        backbone: Annotated[str, Choice(BACKBONES)] = "global",
        asl_loss_weight: float = 10.0,
        asl_learning_rate: float = 0.01,
    ):
        if not 0.0 < sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1), got {sparsity}")
        if power == "hard":
            power = math.inf
        if isinstance(power, bool) or not isinstance(power, (int, float)) or power < 1:
            raise ValueError(f"power must be a number >= 1 or 'hard', got {power!r}")
        if pruned_gradient_scale == "auto":
            pruned_gradient_scale = 0.5 if sparsity >= 0.95 else 1.0  # the paper's step function g(S)
        if isinstance(pruned_gradient_scale, str) or not 0.0 <= pruned_gradient_scale <= 1.0:
            raise ValueError(f"pruned_gradient_scale must be in [0, 1] or 'auto', got {pruned_gradient_scale!r}")
        if not 0.0 < target_fraction <= 1.0:
            raise ValueError(f"target_fraction must be in (0, 1], got {target_fraction}")
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
        self.sparsity, self.power, self.pruned_scale = sparsity, float(power), float(pruned_gradient_scale)
        self.target_fraction, self.backbone = target_fraction, backbone
        self.asl_loss_weight, self.asl_learning_rate = asl_loss_weight, asl_learning_rate
        self.layers: list[nn.Module] = []
        self.target_step = 1
        self.finished = False

    def prepare(self, model, run: Run):
        self.layers = prunable_layers(model)
        if not self.layers:
            raise ValueError("feather needs a model with at least one Linear or Conv2d layer")
        self.hooks = []
        for index, layer in enumerate(self.layers):
            dense = layer.weight
            del layer.weight
            layer.dense_weight = dense
            layer.weight = dense.detach()
            self.hooks.append(layer.register_forward_pre_hook(_ThresholdedWeight(self, index)))
            self.hooks.append(layer.register_forward_hook(_detach_weight))
        self.thresholds = (
            GlobalThreshold(self.layers)
            if self.backbone == "global"
            else AdaptiveSparsityLoss(self.layers, self.asl_loss_weight, self.asl_learning_rate)
        )
        self.target_step = max(1, round(self.target_fraction * run.total_steps))
        self.thresholds.update(self.scheduled_sparsity(0))
        return model

    def scheduled_sparsity(self, step: int) -> float:
        return cubic_sparsity(0.0, self.sparsity, step, 0, self.target_step)

    def extra_loss(self, run, outputs, targets):
        return None if self.finished else self.thresholds.extra_loss(self.scheduled_sparsity(run.step))

    def after_step(self, run: Run) -> None:
        if self.finished:
            return
        self.thresholds.after_step()
        self.thresholds.update(self.scheduled_sparsity(run.step))
        if run.step >= run.total_steps:
            self.write_back(run.model)
            run.optimizer = run.make_optimizer(run.model)

    @torch.no_grad()
    def write_back(self, model: nn.Module) -> nn.Module:
        """Replace each reparametrised weight by its thresholded values, as a plain parameter."""
        if self.finished:
            return model
        for hook in self.hooks:
            hook.remove()
        for index, layer in enumerate(self.layers):
            sparse = threshold_weights(layer.dense_weight, self.thresholds.threshold(index).detach(), self.power)
            del layer.weight, layer.dense_weight
            layer.weight = nn.Parameter(sparse)
        self.finished = True
        return model

    def export(self, model):
        return self.write_back(model)

    @torch.no_grad()
    def _kept(self) -> list[int] | list[torch.Tensor]:
        """Per layer, the number of weights the forward pass uses, as counted when the threshold was set."""
        if self.finished:
            return counts([torch.count_nonzero(layer.weight) for layer in self.layers])
        return self.thresholds.kept

    def layer_densities(self, run):
        return {
            layer: LayerDensity(weights=kept / layer.weight.numel(), gradients=1.0)  # STE: weight gradients are dense
            for layer, kept in zip(self.layers, self._kept())
        }

    def metrics(self, run):
        kept = sum(int(count) for count in self._kept())
        total = sum(layer.weight.numel() for layer in self.layers)
        return {"sparsity": 1.0 - kept / total, "sparsity_scheduled": self.scheduled_sparsity(run.step)}

    def __repr__(self) -> str:
        power = "hard" if math.isinf(self.power) else self.power
        return (
            f"Feather(sparsity={self.sparsity}, power={power}, pruned_gradient_scale={self.pruned_scale}, "
            f"target_fraction={self.target_fraction}, backbone={self.backbone!r})"
        )
