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

The forward and backward passes cost what a dense model's do: the trained
parameter is ``dense_weight``, and the layer's ``weight`` is a plain tensor
holding P_T(dense_weight) that requires a gradient, so the layers stay
ordinary ``nn.Linear``/``nn.Conv2d`` (the FLOP counter sees them) with no
hook and no autograd function. The backward pass leaves ∂L/∂P_T in
``weight.grad``, which ``after_backward`` hands to ``dense_weight``, times θ
where pruned: the straight-through estimator. After each optimizer step,
``FlatWeights`` does the bookkeeping for all layers at once (threshold, kept
counts, P_T) and overwrites each ``weight`` in place.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import torch
from torch import nn

from .base import LayerDensity, Run, Technique
from .masks import prunable_layers
from .nearby_selection import NearbySelection
from .registry import register
from .schedules import cubic_sparsity
from .space import Choice, Float

BACKBONES = ("global", "asl")
SQRT2 = math.sqrt(2.0)
GAUSSIAN_DENSITY = math.sqrt(2.0 / math.pi)  # d/dx erf(x/√2) = √(2/π)·exp(−x²/2)


def threshold_weights(weight: torch.Tensor, threshold: torch.Tensor, power: float) -> torch.Tensor:
    """P_T(w): 0 where |w| <= T, else sign(w)·(|w|^p − T^p)^(1/p), written as w·(1 − (T/|w|)^p)^(1/p).

    Without a gradient: Feather's backward pass is the straight-through estimator.
    """
    weight = weight.detach()
    magnitudes = weight.abs()
    if math.isinf(power):
        return weight * (magnitudes > threshold)
    return weight * shrink_factors(magnitudes, [magnitudes], [threshold], power)


def shrink_factors(magnitudes: torch.Tensor, parts: list[torch.Tensor], thresholds: list[torch.Tensor], power: float) -> torch.Tensor:
    """P_T(w) / w for a finite power p, computed in place in |w| ``magnitudes``.

    ``parts`` are views of ``magnitudes``, one per layer, and ``thresholds``
    their thresholds. Where |w| <= T the ratio T/|w| is clamped to 1, so the
    factor is exactly 0 and no separate mask is needed.
    """
    magnitudes.clamp_min_(torch.finfo(magnitudes.dtype).tiny)
    for part, threshold in zip(parts, thresholds):
        torch.div(threshold, part, out=part)
    magnitudes.clamp_(max=1.0)
    magnitudes.pow_(power)
    magnitudes.neg_().add_(1.0)
    return magnitudes.pow_(1.0 / power)


def padded(count: int) -> int:
    """``count`` rounded up to a whole number of ATen's unrolled vector loops, on any CPU.

    ATen rounds a power differently in its vectorised loop and in the loop's
    scalar tail. Over a length with no tail every element is rounded alike
    wherever it sits, so powers of all weights and of the kept ones alone agree.
    """
    return -(-count // 64) * 64


class FlatWeights:
    """Every layer's |w| in one flat buffer, one layer after another, and each step's work on it.

    After each optimizer step the threshold is found, the kept weights are
    counted and P_T is written into each layer's ``weight``, with as few
    distinct ops as can be: in a small model's training step each costs
    some 5-8 µs, far more than its arithmetic, so the global quantile and
    the steps of P_T that need no per-layer value run once over the buffer.
    The thresholds are found in it by ``NearbySelection``. On a CPU, NumPy
    does the counting and the comparisons, and P_T's powers are taken of
    the kept weights only; elsewhere tensor ops do all of it over every
    weight, without waiting for the device. The buffers are reused
    from step to step (a large model's would otherwise be fresh pages every
    step) and rebuilt after unpickling; only the pruned mask, which the next
    backward pass reads, is pickled.
    """

    def __init__(self, layers: list[nn.Module]):
        self.layers = layers
        self.sizes = [layer.dense_weight.numel() for layer in layers]
        self.bounds = np.cumsum([0, *self.sizes]).tolist()
        self.pruned: torch.Tensor | None = None
        self.magnitudes: torch.Tensor | None = None

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_") and key != "magnitudes"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, magnitudes=None)

    def _build(self) -> None:
        """The buffers and views that are not pickled, on first use and after unpickling."""
        self._dense = [layer.dense_weight for layer in self.layers]
        dtype, device, total = self._dense[0].dtype, self._dense[0].device, self.bounds[-1]
        self._padded = torch.ones(padded(total), dtype=dtype, device=device)  # the tail stays finite
        self.magnitudes = self._padded[:total]
        self._parts = self.magnitudes.split(self.sizes)
        self._layer_parts = self.views(self.magnitudes)
        self._pruned_parts = None if self.pruned is None else self.views(self.pruned)
        if self.on_cpu:
            above = torch.empty_like(self.magnitudes, dtype=torch.bool)
            self._above_parts = self.views(above)
            self._numpy = self.magnitudes.numpy(), above.numpy()
            self._kept_values = torch.empty_like(self._padded)

    @property
    def on_cpu(self) -> bool:
        return self.magnitudes.device.type == "cpu"

    def dense(self) -> list[nn.Parameter]:
        if self.magnitudes is None:
            self._build()
        return self._dense

    def pruned_parts(self) -> list[torch.Tensor]:
        """Per layer, its part of ``pruned`` in the layer's shape."""
        if self.magnitudes is None:
            self._build()
        return self._pruned_parts

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Per layer, its part of a flat tensor laid out like this buffer, in the layer's shape."""
        return [part.view(layer.dense_weight.shape) for layer, part in zip(self.layers, flat.split(self.sizes))]

    def gather(self) -> torch.Tensor:
        """|w| of the weights as they are now (each layer's entries in its logical order)."""
        for weight, part in zip(self.dense(), self._layer_parts):
            torch.abs(weight, out=part)
        return self.magnitudes

    def mark_pruned(self, thresholds: list[torch.Tensor]) -> None:
        """``pruned`` = |w| <= T, with each layer's threshold, for the backward pass."""
        if self.pruned is None:
            self.pruned = torch.empty_like(self.magnitudes, dtype=torch.bool)
            self._pruned_parts = self.views(self.pruned)
        if self.on_cpu:
            magnitudes, pruned = self._numpy[0], self.pruned.numpy()
            for threshold, start, end in zip(thresholds, self.bounds[:-1], self.bounds[1:]):
                np.less_equal(magnitudes[start:end], threshold.numpy(), out=pruned[start:end])
        else:
            for part, mask, threshold in zip(self._parts, self.pruned.split(self.sizes), thresholds):
                torch.le(part, threshold, out=mask)

    def write_thresholded(self, thresholds: list[torch.Tensor], power: float) -> list[int] | list[torch.Tensor]:
        """Write P_T(w) into each layer's ``weight``, with each layer's threshold; the kept count per layer.

        Counts are ints on a CPU, 0-dim tensors elsewhere. The |w| buffer is used up.
        """
        if self.on_cpu:
            (magnitudes, above), kept = self._numpy, []
            for threshold, start, end in zip(thresholds, self.bounds[:-1], self.bounds[1:]):
                kept.append(int(np.count_nonzero(np.greater(magnitudes[start:end], threshold.numpy(), out=above[start:end]))))
            masks = self._above_parts
        else:
            masks = [part > threshold for part, threshold in zip(self._layer_parts, thresholds)]
            kept = [mask.count_nonzero() for mask in masks]
        if math.isinf(power):
            factors = masks
        else:
            if self.on_cpu:
                self._shrink_kept(thresholds, kept, power)
            else:
                shrink_factors(self._padded, self._parts, thresholds, power)
            factors = self._layer_parts
        for layer, weight, factor in zip(self.layers, self._dense, factors):
            if layer.weight.stride() != weight.stride():  # the model went channels-last: P_T follows its layout
                layer.weight = torch.empty_like(weight).requires_grad_()
            torch.mul(weight, factor, out=layer.weight)
        return kept

    def _shrink_kept(self, thresholds: list[torch.Tensor], kept: list[int], power: float) -> None:
        """``shrink_factors`` on a CPU, over the kept weights alone: a pruned weight's factor is 0
        whatever its |w|, and at high sparsity the kept ones are few. Each kept factor comes from
        the same correctly rounded operations, and powers over a tail-free length (``padded``), so
        the factors agree bit for bit. Reads ``above`` as ``write_thresholded`` leaves it.
        """
        magnitudes, above = self._numpy
        positions = np.flatnonzero(above)
        values = self._kept_values[: padded(len(positions))]
        ratios = values.numpy()
        np.take(magnitudes, positions, out=ratios[: len(positions)])
        ratios[len(positions) :] = 1.0
        start = 0
        for threshold, count in zip(thresholds, kept):  # |w| > T, so T/|w| <= 1 needs no clamp
            np.divide(threshold.numpy(), ratios[start : start + count], out=ratios[start : start + count])
            start += count
        values.pow_(power)
        np.subtract(1.0, ratios, out=ratios)
        values.pow_(1.0 / power)
        magnitudes.fill(0.0)
        magnitudes[positions] = ratios[: len(positions)]


def estimated_sparsity(relative: float) -> float:
    """erf(max(r, 0)/√2): a zero-mean Gaussian layer's fraction of weights below r standard deviations."""
    return math.erf(max(relative, 0.0) / SQRT2)


def solve_shift(relative: list[float], sizes: list[int], sparsity: float, start: float) -> float:
    """The shift δ that makes the size-weighted mean of erf(max(r + δ, 0)/√2) the scheduled sparsity.

    Newton's method from ``start``, the last step's δ, which moves little
    from step to step, kept inside a bisection bracket: two or three rounds
    where a bisection from scratch took forty. On Python floats, since a
    few small tensors' worth of work costs more as tensor operations than
    the step. Where the mean is flat at the target (no layer above zero, at
    sparsity 0) any δ there gives the same thresholds.
    """
    total, erf, exp = float(sum(sizes)), math.erf, math.exp
    low, high, shift = -20.0, 20.0, min(max(start, -20.0), 20.0)
    for _ in range(100):
        value = slope = 0.0
        for r, size in zip(relative, sizes):
            if r + shift > 0.0:
                value += size * erf((r + shift) / SQRT2)
                slope += size * exp(-0.5 * (r + shift) ** 2)
        error = value / total - sparsity
        if abs(error) <= 1e-12 or high - low <= 1e-10:
            break
        if error < 0.0:
            low = shift
        else:
            high = shift
        step = shift - error / (slope * GAUSSIAN_DENSITY / total) if slope > 0.0 else math.nan
        shift = step if low < step < high else (low + high) / 2
    return shift


class GlobalThreshold:
    """One threshold for every layer: the |w| quantile of the target sparsity over all weights."""

    selection: NearbySelection | None = None  # made on first use; on the class, so older checkpoints load

    def __init__(self, layers: list[nn.Module]):
        self.value = torch.zeros((), device=layers[0].dense_weight.device)

    def update(self, weights: FlatWeights, sparsity: float) -> list[torch.Tensor]:
        """The threshold of each layer (the same) for the weights' |w|."""
        if self.selection is None:
            self.selection = NearbySelection([0, weights.bounds[-1]])
        counts = self.selection.count(weights.magnitudes)
        [value] = self.selection.select(weights.magnitudes, [round(sparsity * weights.bounds[-1])], counts)
        if weights.on_cpu:  # written in place through NumPy, no tensor op
            self.value.numpy()[()] = value
        else:
            self.value = value
        return [self.value] * len(weights.sizes)

    def threshold(self, index: int) -> torch.Tensor:
        return self.value.clone()

    def extra_loss(self, sparsity: float) -> None:
        return None

    def after_backward(self, grads, weights, pruned) -> None:
        pass


class SparsityLoss(torch.autograd.Function):
    """ASL+'s sparsity loss λ(m − s)², m the size-weighted mean of the layers' ``estimated_sparsity``.

    Value and gradient are worked out on Python floats:
    ∂/∂r_l = 2λ(m − s)·(n_l/N)·√(2/π)·exp(−r_l²/2) where r_l > 0, else 0,
    as clamp's gradient is. As tensor ops, the same maths took eight tiny
    ops forward and as many backward, every step.
    """

    @staticmethod
    def forward(ctx, relative: torch.Tensor, sizes: list[float], sparsity: float, weight: float) -> torch.Tensor:
        values, total = relative.tolist(), sum(sizes)
        error = sum(size * estimated_sparsity(r) for r, size in zip(values, sizes)) / total - sparsity
        scale = 2.0 * weight * error * GAUSSIAN_DENSITY / total
        ctx.gradient = [scale * size * math.exp(-0.5 * r * r) if r > 0.0 else 0.0 for r, size in zip(values, sizes)]
        return relative.new_tensor(weight * error * error)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output * grad_output.new_tensor(ctx.gradient), None, None, None


class AdaptiveSparsityLoss:
    """ASL+: learned per-layer sparsities, a scheduled sparsity loss and a sorting-based correction."""

    # On the class, so older checkpoints load: the last correction δ, where the next search for it starts;
    # the thresholds' selection, made on first use; the task loss's gradient to r since the last update.
    shift = 0.0
    selection: NearbySelection | None = None
    task_gradient: torch.Tensor | None = None

    def __init__(self, layers: list[nn.Module], loss_weight: float, learning_rate: float):
        self.layers, self.loss_weight, self.learning_rate = layers, loss_weight, learning_rate
        self.sizes = torch.tensor([float(layer.dense_weight.numel()) for layer in layers])
        self.relative = torch.zeros(len(layers), requires_grad=True)  # r_l = T_l / std(w_l) under the Gaussian model
        device = layers[0].dense_weight.device
        self.values = torch.zeros(len(layers), device=device)
        self.scales = torch.ones(len(layers), device=device)

    @torch.no_grad()
    def update(self, weights: FlatWeights, sparsity: float) -> list[torch.Tensor]:
        """One step of r on its gradients, then the threshold of each layer for the weights' |w|."""
        if self.selection is None:
            self.selection = NearbySelection(weights.bounds)
        band_counts = self.selection.count(weights.magnitudes)
        task_gradient, self.task_gradient = self.task_gradient, None
        if task_gradient is not None and isinstance(band_counts, torch.Tensor):  # on an accelerator
            # One copy to the host a step, of the bands' counts and the gradient together.
            both = torch.cat([band_counts.double(), task_gradient.double()]).tolist()
            band_counts, task_gradient = [int(count) for count in both[: len(band_counts)]], torch.tensor(both[len(band_counts) :])
        self._descend(task_gradient)
        relative = self.relative.tolist()
        self.shift = solve_shift(relative, weights.sizes, sparsity, start=self.shift)
        # In the solver's float64, so the counts add up to the sparsity it solved for, without four tiny tensor ops.
        corrected = [estimated_sparsity(r + self.shift) for r in relative]
        counts = [min(size, round(estimate * size)) for size, estimate in zip(weights.sizes, corrected)]
        values = self.selection.select(weights.magnitudes, counts, band_counts)
        if weights.on_cpu:  # written in place through NumPy, no tensor op
            self.values.numpy()[:] = values
        else:
            self.values = torch.stack(values)
        torch.stack([layer.dense_weight.std() for layer in self.layers], out=self.scales)
        return list(self.values.unbind())

    def _descend(self, task_gradient: torch.Tensor | None) -> None:
        """r −= learning rate · (the sparsity loss's gradient, which its backward pass left, + the task loss's)."""
        grad = self.relative.grad
        if task_gradient is not None:
            grad = task_gradient if grad is None else grad + task_gradient
        if grad is not None:
            self.relative -= self.learning_rate * grad
            self.relative.grad = None

    def after_backward(self, grads, weights, pruned) -> None:
        """ASL's estimate of the task gradient to r: ∂L/∂T = −Σ_pruned g·w / T, times the Gaussian model's dT/dr = σ."""
        # Raising T acts on the pruned weights as if they were scaled by T.
        zero = self.values.new_zeros(())
        sums = [zero if grad is None else (grad * weight * mask).sum() for grad, weight, mask in zip(grads, weights, pruned)]
        grad_thresholds = torch.stack(sums).neg_().div_(self.values.clamp_min(1e-12))
        grad = grad_thresholds * self.scales  # on the weights' device, where it stays until the next update reads it
        self.task_gradient = grad if self.task_gradient is None else self.task_gradient + grad

    def threshold(self, index: int) -> torch.Tensor:
        return self.values[index].clone()

    def extra_loss(self, sparsity: float) -> torch.Tensor:
        return SparsityLoss.apply(self.relative, self.sizes.tolist(), sparsity, self.loss_weight)


@register
class Feather(Technique):
    name = "feather"
    reports = frozenset({"sparsity", "sparsity_scheduled"})
    claims = frozenset({"weights"})
    stage = 20
    _counted: list[int] | None = None  # the kept counts ``_densities`` was made from; on the class, so older checkpoints load

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
        for layer in self.layers:
            dense = layer.weight
            del layer.weight
            layer.dense_weight = dense
            layer.weight = dense.new_empty(dense.shape).requires_grad_()  # P_T(dense_weight), set by _update
        self.weights = FlatWeights(self.layers)
        self.thresholds = (
            GlobalThreshold(self.layers)
            if self.backbone == "global"
            else AdaptiveSparsityLoss(self.layers, self.asl_loss_weight, self.asl_learning_rate)
        )
        self.target_step = max(1, round(self.target_fraction * run.total_steps))
        self._update(self.scheduled_sparsity(0))
        return model

    def scheduled_sparsity(self, step: int) -> float:
        return cubic_sparsity(0.0, self.sparsity, step, 0, self.target_step)

    @torch.no_grad()
    def _update(self, sparsity: float) -> None:
        """New thresholds for the weights as they are now, the kept counts, and each layer's ``weight`` = P_T(w)."""
        self.weights.gather()
        thresholds = self.thresholds.update(self.weights, sparsity)
        if self.pruned_scale != 1.0 or self.backbone == "asl":  # the backward pass reads the pruned mask
            self.weights.mark_pruned(thresholds)
        self.kept = self.weights.write_thresholded(thresholds, self.power)

    def extra_loss(self, run, outputs, targets):
        return None if self.finished else self.thresholds.extra_loss(self.scheduled_sparsity(run.step))

    @torch.no_grad()
    def after_backward(self, run: Run) -> None:
        """The straight-through estimator: ∂L/∂P_T(w), which the backward pass left in ``weight.grad``, becomes ∂L/∂w, times θ where pruned."""
        if self.finished:
            return
        grads, dense = [layer.weight.grad for layer in self.layers], self.weights.dense()
        pruned = None if self.weights.pruned is None else self.weights.pruned_parts()
        self.thresholds.after_backward(grads, dense, pruned)
        for index, (layer, weight, grad) in enumerate(zip(self.layers, dense, grads)):
            if grad is None:  # the layer took no part in the pass
                continue
            layer.weight.grad = None
            if self.pruned_scale != 1.0:
                grad = torch.where(pruned[index], grad * self.pruned_scale, grad)
            # On a channels-last weight, torch.where above follows the contiguous pruned mask's layout,
            # and fused optimizers read a gradient in its weight's.
            if grad.stride() != weight.stride():
                grad = torch.empty_like(weight).copy_(grad)
            weight.grad = grad if weight.grad is None else weight.grad + grad

    def after_step(self, run: Run) -> None:
        if self.finished:
            return
        self._update(self.scheduled_sparsity(run.step))
        if run.step >= run.total_steps:
            self.write_back(run.model)
            run.optimizer = run.make_optimizer(run.model)

    @torch.no_grad()
    def write_back(self, model: nn.Module) -> nn.Module:
        """Replace each reparametrised weight by its thresholded values, as a plain parameter."""
        if self.finished:
            return model
        for layer in self.layers:
            sparse = layer.weight.detach()  # P_T at the current threshold, set after the last step
            del layer.weight, layer.dense_weight
            layer.weight = nn.Parameter(sparse)
        self.weights = None
        self.finished = True
        return model

    def export(self, model):
        return self.write_back(model)

    @torch.no_grad()
    def _kept(self) -> list[int] | list[torch.Tensor]:
        """Per layer, the number of weights the forward pass uses, as counted when the threshold was set."""
        if self.finished:
            kept = [torch.count_nonzero(layer.weight) for layer in self.layers]
            return [int(count) for count in kept] if kept[0].device.type == "cpu" else kept
        return self.kept

    def layer_densities(self, run):
        # Read every step by the loop's FLOP count: the same mapping while the counts hold, as they mostly do
        # once the schedule is at its target. Counts on an accelerator are tensors, and comparing them would wait for it.
        kept = self._kept()
        if not (isinstance(kept[0], int) and kept == self._counted):
            self._counted = kept
            self._densities = {
                layer: LayerDensity(weights=count / layer.weight.numel(), gradients=1.0)  # STE: weight gradients are dense
                for layer, count in zip(self.layers, kept)
            }
        return self._densities

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
