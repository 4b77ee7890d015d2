"""Binary weight masks: the one mask set every sparse technique shares.

Pruning at initialisation, dynamic sparse training, gradual pruning and STE
sparsification all keep a boolean mask per prunable weight and need the
same few operations: apply it after each optimizer step, keep the
optimizer's state for pruned weights at zero, drop and grow single weights
(a grown weight starts at zero), count density, draw layer-wise densities
(Erdős–Rényi, ERK) and initial topologies (exact random counts, or Ertl's
balanced per-neuron topology with its fan-in initialisation). Techniques
decide *which* entries a mask holds; this module does the *how*.
"""

from __future__ import annotations

import math
import operator
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from .selection import top_positions

PRUNABLE = (nn.Linear, nn.Conv2d)
FLOAT_MASK_SIZE = 2**18  # weights in the largest float mask kept, and in a chunk converted: 1 MiB in float32


def keep_dense(layer: nn.Module) -> nn.Module:
    """Mark ``layer`` as never masked, e.g. a one-neuron output layer.

    A sparse single output would silently discard most of the penultimate
    layer's neurons, so a model declares such a layer dense itself and every
    mask technique skips it.
    """
    layer.keep_dense = True
    return layer


def prunable_layers(model: nn.Module) -> list[nn.Module]:
    """Every Linear and Conv2d layer in module order, except those marked ``keep_dense``.

    Biases and norms are never masked.
    """
    return [
        module for module in model.modules() if isinstance(module, PRUNABLE) and not getattr(module, "keep_dense", False)
    ]


class WeightMasks:
    """One boolean mask per layer weight; True keeps a weight.

    The masks hold references to the layers, so they must be pickled
    together with the model (the training checkpoint does this).
    """

    def __init__(self, layers: Sequence[nn.Module], masks: Sequence[torch.Tensor] | None = None):
        if not layers:
            raise ValueError("no prunable layers: masks need at least one Linear or Conv2d")
        self.layers = list(layers)
        if masks is None:
            masks = [torch.ones_like(layer.weight, dtype=torch.bool) for layer in self.layers]
        if [mask.shape for mask in masks] != [layer.weight.shape for layer in self.layers]:
            raise ValueError("give one mask per layer, each of its layer's weight shape")
        # Contiguous whatever the weights' layout, so that a mask's flat positions are a view of it.
        self.masks = [
            mask.to(device=layer.weight.device, dtype=torch.bool).contiguous() for layer, mask in zip(self.layers, masks)
        ]

    @classmethod
    def of_nonzero(cls, layers: Sequence[nn.Module]) -> "WeightMasks":
        """Masks that keep exactly the weights that are not zero now, e.g. of a model pruned earlier."""
        masks = cls(layers)
        masks.masks = [(layer.weight.detach() != 0).contiguous() for layer in masks.layers]
        return masks

    def __iter__(self):
        return iter(zip(self.layers, self.masks))

    # Pruned entries are zeroed every step, so this is the hot path. On a
    # CPU, multiplying by a float mask is several times faster than
    # masked_fill_ (whose cost also grows as the mask gets less regular), but
    # a float copy of every mask would cost four bytes a weight. So a small
    # layer keeps one; a large layer's bool mask is converted a chunk at a
    # time into one reused buffer and multiplied, nearly as fast and with no
    # copy of the mask; on a GPU, where masked_fill_ is as fast, a large
    # layer keeps its inverted mask (one byte a weight). x * 1.0 is x exactly
    # and x * 0.0 a zero (of x's sign; NaN where x is NaN or infinite, when
    # the run has diverged anyway). What zeroes each layer is cached with
    # its weight and rebuilt only when a mask is replaced or written in place
    # (its version counter moves); a mask that keeps every weight is skipped.
    # Run right after the backward pass, with cold caches, every lookup saved
    # here shows in a small network's step time.

    def _key(self) -> list[tuple[int, int]]:
        """What the caches of this section are valid for; they hold the masks too, so no id is reused."""
        return [(id(mask), mask._version) for mask in self.masks]

    def _zeroing(self) -> list[tuple[nn.Parameter, torch.Tensor, Callable]]:
        """(weight, tensor, function zeroing a tensor of the weight's shape with it) per mask that prunes something."""
        key = self._key()
        if key != getattr(self, "_zeroing_key", None):
            self._zeroing_cache = [
                (layer.weight, *self._zeroer(layer.weight.dtype, mask))
                for (layer, mask), active in zip(self, self.active())
                if active < mask.numel()
            ]
            self._zeroing_masks, self._zeroing_key = list(self.masks), key
        return self._zeroing_cache

    def _zeroer(self, dtype: torch.dtype, mask: torch.Tensor) -> tuple[torch.Tensor, Callable]:
        # Converted as bytes: conversions of bool tensors are several times slower on a CPU.
        if mask.numel() <= FLOAT_MASK_SIZE:
            return mask.view(torch.uint8).to(dtype), torch.Tensor.mul_
        if mask.device.type == "cpu":
            return mask.view(torch.uint8), self._multiply_in_chunks
        return ~mask, _fill_zero

    def _multiply_in_chunks(self, tensor: torch.Tensor, mask_bytes: torch.Tensor) -> None:
        """Multiply ``tensor`` by the mask, a chunk of rows at a time converted into one reused buffer."""
        row = mask_bytes[0].numel()
        buffer = getattr(self, "_zeroing_buffer", None)
        if buffer is None or buffer.dtype != tensor.dtype or len(buffer) < row:
            buffer = self._zeroing_buffer = torch.empty(max(FLOAT_MASK_SIZE, row), dtype=tensor.dtype)
        rows = len(buffer) // row
        for part, chunk in zip(tensor.split(rows), mask_bytes.split(rows)):
            part.mul_(buffer[: chunk.numel()].view(chunk.shape).copy_(chunk))

    def _zero_pruned(self, tensor_of: Callable[[nn.Parameter], torch.Tensor | None]) -> None:
        for weight, zeroing, zero in self._zeroing():
            tensor = tensor_of(weight)
            if tensor is not None and tensor.shape == zeroing.shape:
                zero(tensor, zeroing)

    def __getstate__(self) -> dict:
        # Checkpoints carry the masks only, not what is cached from them.
        return {key: value for key, value in self.__dict__.items() if not key.startswith(("_zeroing", "_active"))}

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every pruned weight (call after each optimizer step)."""
        self._zero_pruned(_itself)

    # Gradients and optimizer state never require gradients themselves, so
    # these two need no torch.no_grad(), whose wrapper costs as much as the
    # multiplications in a small network's every step.

    def apply_to_gradients(self) -> None:
        """Zero the gradients of pruned weights."""
        self._zero_pruned(_gradient)

    def apply_to_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero the optimizer state (momentum, Adam moments) of pruned weights.

        Without this, momentum keeps pushing a weight that the mask just
        removed, and a regrown weight would not start from zero state.
        """
        states = [optimizer.state.get(layer.weight, {}) for layer in self.layers]
        for name in {name for state in states for name, value in state.items() if isinstance(value, torch.Tensor)}:
            self._zero_pruned(lambda weight, name=name: optimizer.state.get(weight, {}).get(name))

    @torch.no_grad()
    def drop(self, index: int, positions: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Deactivate the active weights at flat ``positions`` of layer ``index``; they become zero."""
        self._switch(index, positions, False, optimizer)

    @torch.no_grad()
    def grow(self, index: int, positions: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Activate the inactive weights at flat ``positions`` of layer ``index``, starting at zero.

        A new weight starts at zero with zero optimizer state, so it joins the
        network without changing its output (RigL; seed 001, section 2).
        """
        self._switch(index, positions, True, optimizer)

    def _switch(self, index: int, positions: torch.Tensor, active: bool, optimizer) -> None:
        flat = self.masks[index].view(-1)
        positions = positions.to(flat.device)
        previous, before = flat.index_select(0, positions), torch.count_nonzero(flat)
        flat.index_fill_(0, positions, active)
        # Only distinct positions, all in the other state, change the count by their number (no sort needed).
        if int(torch.count_nonzero(flat) - before) != (len(positions) if active else -len(positions)):
            flat.index_copy_(0, positions, previous)  # repeated positions carry equal values
            state = "inactive" if active else "active"
            raise ValueError(f"layer {index}: every position must be distinct and currently {state}")
        # A dropped weight's gradient too: a skipped batch may step again with it (data selection's "last").
        self._zero_at(index, positions, optimizer, gradient=not active)

    def _zero_at(self, index: int, positions: torch.Tensor, optimizer, gradient: bool = False) -> None:
        """Zero layer ``index``'s weight and optimizer state (and gradient) at flat ``positions``."""
        weight = self.layers[index].weight
        tensors = [weight, weight.grad if gradient else None]
        if optimizer is not None:
            tensors += optimizer.state.get(weight, {}).values()
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor) and tensor.shape == weight.shape:
                write_at(tensor, positions, 0)

    def active(self) -> list[int]:
        """Active weights per layer, counted again only after a mask changes (counting syncs a GPU)."""
        key = self._key()
        if key != getattr(self, "_active_key", None):
            self._active_counts = [int(torch.count_nonzero(mask)) for mask in self.masks]  # a bool sum() copies to int64
            self._active_masks, self._active_key = list(self.masks), key
        return list(self._active_counts)

    def density(self) -> float:
        """Kept weights over maskable weights, over all layers."""
        return sum(self.active()) / sum(mask.numel() for mask in self.masks)

    def densities(self) -> list[float]:
        return [active / mask.numel() for active, mask in zip(self.active(), self.masks)]

    @torch.no_grad()
    def prune_global_magnitude(self, sparsity: float) -> None:
        """Keep the ``round((1 - sparsity) * N)`` largest-magnitude active weights over all layers together.

        One threshold for the whole network lets layers end at different
        sparsities (global pruning). A weight already pruned is never
        revived, so a sparsity below the current one changes nothing.
        """
        if not 0.0 <= sparsity <= 1.0:
            raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
        keep = round((1.0 - sparsity) * sum(mask.numel() for mask in self.masks))
        if keep >= sum(self.active()):
            return
        # All layers in one tensor, so each step is one call whatever their number; masked_fill_ rather
        # than torch.where, the same scores up to three times faster on a CPU.
        kept = torch.cat([mask.reshape(-1) for mask in self.masks])
        scores = torch.cat([layer.weight.reshape(-1) for layer in self.layers]).abs_().masked_fill_(~kept, -1.0)
        kept.zero_().index_fill_(0, top_positions(scores, keep), True)
        for mask, part in zip(self.masks, kept.split([mask.numel() for mask in self.masks])):
            mask.copy_(part.view_as(mask))

    @torch.no_grad()
    def drop_smallest_magnitude(self, fraction: float) -> list[int]:
        """In each layer, deactivate ``ceil(fraction * active)`` active weights of smallest magnitude.

        Returns how many each layer lost, so the same numbers can be grown
        back (RigL, GraNet's neuroregeneration). Call ``apply`` afterwards.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        counts = [math.ceil(fraction * active) for active in self.active()]
        for (layer, mask), count in zip(self, counts):
            scores = layer.weight.abs().masked_fill_(~mask, math.inf).flatten()
            mask.view(-1).index_fill_(0, top_positions(scores, count, largest=False), False)
        return counts

    @torch.no_grad()
    def grow_largest(
        self, scores: Sequence[torch.Tensor], counts: Sequence[int], optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        """In each layer, activate ``counts[i]`` inactive entries of largest ``scores[i]``; they start at zero.

        With the gradient magnitude as score this is RigL's regrowth: the
        connections that would reduce the loss fastest come back, with a
        zero weight (and zero optimizer state, given the optimizer) so the
        network's function does not jump.
        """
        for index, (mask, score, count) in enumerate(zip(self.masks, scores, counts)):
            grown = top_positions(score.abs().masked_fill_(mask, -math.inf).flatten(), count)
            mask.view(-1).index_fill_(0, grown, True)
            self._zero_at(index, grown, optimizer)


def _fill_zero(tensor: torch.Tensor, pruned: torch.Tensor) -> None:
    tensor.masked_fill_(pruned, 0)


def _itself(weight: nn.Parameter) -> torch.Tensor:
    return weight


_gradient = operator.attrgetter("grad")


def write_at(tensor: torch.Tensor, positions: torch.Tensor, values: torch.Tensor | float) -> None:
    """Write ``values`` at the row-major flat ``positions`` of ``tensor`` in place, in any memory layout.

    A channels-last weight (``train: {channels_last: true}``) has no flat
    view; its positions are unravelled into coordinates instead.
    """
    if not tensor.is_contiguous():
        tensor[torch.unravel_index(positions, tensor.shape)] = values
    elif isinstance(values, torch.Tensor):
        tensor.view(-1)[positions] = values
    else:
        tensor.view(-1).index_fill_(0, positions, values)


def erdos_renyi_densities(shapes: Sequence[torch.Size], density: float, kernel: bool = True) -> list[float]:
    """Layer densities whose weighted mean is ``density`` (ER, or ERK with ``kernel``).

    A layer's density is proportional to sum(shape)/prod(shape) (Mocanu et
    al. 2018; ERK, Evci et al. 2020, includes the kernel dimensions), so large
    layers are pruned more. A layer whose density would exceed 1 is made
    dense, and the rest are scaled again to keep the overall count exact.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    sizes = [math.prod(shape) for shape in shapes]
    scores = [sum(shape if kernel else shape[:2]) / math.prod(shape if kernel else shape[:2]) for shape in shapes]
    dense: set[int] = set()
    while True:
        budget = density * sum(sizes) - sum(sizes[index] for index in dense)
        weighted = sum(scores[index] * sizes[index] for index in range(len(sizes)) if index not in dense)
        scale = budget / weighted if weighted else 0.0
        overflow = {index for index in range(len(sizes)) if index not in dense and scale * scores[index] > 1.0}
        if not overflow:
            break
        dense |= overflow
    return [1.0 if index in dense else scale * scores[index] for index in range(len(sizes))]


def random_mask(
    shape: torch.Size, density: float, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A boolean mask with exactly round(density * numel) True entries, placed uniformly."""
    count = math.prod(shape)
    mask = torch.zeros(count, dtype=torch.bool)
    mask[torch.randperm(count, generator=generator)[: round(density * count)]] = True
    return mask.view(shape).to(device)


def balanced_mask(
    shape: torch.Size, density: float, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Every output neuron gets the same number n of inputs, one drawn uniformly in each of n partitions.

    Ertl's topology (seed 001, section 3): n = round(density * fan_in), at
    least 1; a neuron's fan_in inputs are split into n contiguous partitions
    of near-equal size, so its inputs are spread evenly over the previous
    layer rather than clumped. The count is exact: ``balanced_count``.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    outputs, fan_in = shape[0], math.prod(shape[1:])
    per_neuron = inputs_per_neuron(fan_in, density)
    bounds = torch.div(torch.arange(per_neuron + 1) * fan_in, per_neuron, rounding_mode="floor")
    widths = (bounds[1:] - bounds[:-1]).to(torch.float64)
    offsets = (torch.rand(outputs, per_neuron, generator=generator, dtype=torch.float64) * widths).long()
    mask = torch.zeros(outputs, fan_in, dtype=torch.bool)
    mask.scatter_(1, bounds[:-1] + offsets, True)
    return mask.view(shape).to(device)


def inputs_per_neuron(fan_in: int, density: float) -> int:
    return min(fan_in, max(1, round(density * fan_in)))


def balanced_count(shape: torch.Size, density: float) -> int:
    """Active weights of a ``balanced_mask`` of this shape and density."""
    return shape[0] * inputs_per_neuron(math.prod(shape[1:]), density)


@torch.no_grad()
def fan_in_uniform_(layer: nn.Module, mask: torch.Tensor, generator: torch.Generator | None = None) -> None:
    """Initialise a sparse layer: weights uniform in ±1/k_i, biases in ±1/sqrt(k_i).

    k_i is neuron i's number of active inputs (seed 001, section 3). With
    weights bounded by 1/k_i, a neuron's weighted sum never exceeds its
    largest input, however many inputs the density gives it.
    """
    weight = layer.weight
    active_inputs = torch.count_nonzero(mask.reshape(len(mask), -1), dim=1).clamp(min=1).to(torch.float32)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    uniform = torch.rand(weight.shape, generator=generator).mul_(2).sub_(1)  # one temporary the size of the layer
    weight.copy_(uniform.div_(active_inputs.view(shape)).mul_(mask.cpu()))
    if layer.bias is not None:
        uniform = torch.rand(layer.bias.shape, generator=generator).mul_(2).sub_(1)
        layer.bias.copy_(uniform.div_(active_inputs.sqrt()))


def layer_shapes(layers: Iterable[nn.Module]) -> list[torch.Size]:
    return [layer.weight.shape for layer in layers]
