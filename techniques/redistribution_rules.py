"""Which weights a redistribution removes and which it adds (seed 001, section 2).

The algorithms of the paper differ only here, so each is a pair of small
strategy objects: a ``Removal`` that returns, per layer, the flat positions
of active weights to drop (and may move the remaining weights), and a
``Growth`` that returns the flat positions of inactive weights to add. The
masks, the schedule and zero-initialising new weights are shared and live in
``techniques.masks`` and ``techniques.redistribution``.

Gradients for growth come from one batch. They are never taken as weight
gradients of the whole model at once: a forward pass records each layer's
input and the loss gradient at its output, and a layer's dense weight
gradient is formed from those two only when that layer is scored, then
dropped. Global growth keeps a running top-k across layers, so the largest
thing held is one layer's gradient plus k candidates.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from .masks import WeightMasks, write_at
from .selection import RunningTopK, largest_positions, random_free_positions
from .woodfisher import BlockFisherInverse

Positions = list[torch.Tensor]  # per layer, flat indices into its weight


# --- shared pieces -----------------------------------------------------------


class LayerSignals:
    """Each masked layer's input and output gradient for one batch, with no weight gradient formed."""

    def __init__(self, model: nn.Module, layers: Sequence[nn.Module], inputs, targets, loss_fn: Callable):
        recorded: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

        def record(module, args, output):
            recorded[module] = (args[0].detach(), output)

        handles = [layer.register_forward_hook(record) for layer in layers]
        try:
            with torch.enable_grad():
                loss = loss_fn(model(inputs), targets)
                outputs = [recorded[layer][1] for layer in layers]
                gradients = torch.autograd.grad(loss, outputs)
        finally:
            for handle in handles:
                handle.remove()
        self.layers = list(layers)
        self.inputs = [recorded[layer][0] for layer in layers]
        self.output_gradients = [gradient.detach() for gradient in gradients]

    def weight_gradient(self, index: int, neurons: torch.Tensor | None = None) -> torch.Tensor:
        """Layer ``index``'s dense weight gradient, for the output ``neurons`` only if given."""
        layer, inputs, gradient = self.layers[index], self.inputs[index], self.output_gradients[index]
        if neurons is not None:
            gradient = gradient.index_select(1 if isinstance(layer, nn.Conv2d) else -1, neurons)
        if isinstance(layer, nn.Conv2d):
            shape = (gradient.shape[1], *layer.weight.shape[1:])
            return torch.nn.grad.conv2d_weight(
                inputs, shape, gradient, layer.stride, layer.padding, layer.dilation, layer.groups
            )
        return gradient.reshape(-1, gradient.shape[-1]).T @ inputs.reshape(-1, inputs.shape[-1])

    def neuron_errors(self, index: int) -> torch.Tensor:
        """|∂L/∂b_j|: the loss gradient at each output neuron, summed over the batch (and positions)."""
        gradient = self.output_gradients[index]
        if isinstance(self.layers[index], nn.Conv2d):
            return gradient.sum((0, 2, 3)).abs()
        return gradient.reshape(-1, gradient.shape[-1]).sum(0).abs()


def apportion(total: int, sizes: Sequence[int], capacities: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``sizes`` (largest remainders), never above ``capacities``.

    >>> apportion(10, [100, 400], [10, 10]), apportion(10, [100, 400], [10, 4])
    ([2, 8], [6, 4])
    """
    if total > sum(capacities):
        raise ValueError(f"cannot place {total} weights in {sum(capacities)} free positions")
    counts, open_ = [0] * len(sizes), [i for i in range(len(sizes)) if capacities[i] > 0]
    remaining = total
    while remaining and open_:
        weight = sum(sizes[i] for i in open_)
        shares = {i: remaining * sizes[i] / weight for i in open_}
        floors = {i: min(int(shares[i]), capacities[i] - counts[i]) for i in open_}
        left = remaining - sum(floors.values())
        for i in sorted(open_, key=lambda i: shares[i] - int(shares[i]), reverse=True):
            if left and counts[i] + floors[i] < capacities[i]:
                floors[i] += 1
                left -= 1
        for i in open_:
            counts[i] += floors[i]
        remaining = left
        open_ = [i for i in open_ if counts[i] < capacities[i]]
    return counts


def only_inactive_(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``scores``, in place, with every active position at -inf, so only inactive ones can be chosen."""
    return scores.masked_fill_(mask, -math.inf)


# --- removal -------------------------------------------------------------------


class Removal:
    """Chooses the active weights to drop; may move the others (OBS)."""

    def begin(self, masks: WeightMasks, samples: int) -> None:
        """A redistribution follows after ``samples`` more gradients."""

    def observe(self, masks: WeightMasks) -> None:
        """Called after each backward pass, with the masked gradients in ``.grad``."""

    def choose(self, masks: WeightMasks, fraction: float) -> Positions:
        raise NotImplementedError


class MagnitudeRemoval(Removal):
    """The fraction of each layer's active weights closest to zero (SET, RigL, Loss)."""

    def choose(self, masks, fraction):
        chosen = []
        for layer, mask in masks:
            count = round(fraction * int(torch.count_nonzero(mask)))
            smallness = layer.weight.detach().abs().neg_().masked_fill_(~mask, -math.inf)
            chosen.append(largest_positions(smallness, count))
        return chosen


class SecondOrderRemoval(Removal):
    """Globally the weights whose removal costs least under the block inverse Fisher (WoodFisher).

    The Fisher is built from the gradients of the epoch before the
    redistribution, over the active weights only (the sparse parameter
    vector), and discarded afterwards. ``taylor`` adds the gradient term
    (WoodTaylor).
    """

    def __init__(self, block_size: int, dampening: float, taylor: bool):
        self.block_size, self.dampening, self.taylor = block_size, dampening, taylor
        self.fishers: list[BlockFisherInverse] | None = None
        self.active: list[torch.Tensor] = []

    def begin(self, masks, samples):
        self.active = [mask.view(-1).nonzero().squeeze(1) for mask in masks.masks]
        self.fishers = [
            BlockFisherInverse(len(active), self.block_size, self.dampening, samples, device=active.device)
            for active in self.active
        ]

    def observe(self, masks):
        if self.fishers is None:
            return
        for fisher, active, layer in zip(self.fishers, self.active, masks.layers):
            if layer.weight.grad is not None:
                fisher.add(layer.weight.grad.reshape(-1)[active])

    def choose(self, masks, fraction):
        if self.fishers is None:
            raise RuntimeError("second-order removal needs the gradients of an epoch; begin() was never called")
        count = round(fraction * sum(masks.active()))
        cheapest = RunningTopK(count, masks.masks[0].device)
        for index, (fisher, active, layer) in enumerate(zip(self.fishers, self.active, masks.layers)):
            weights = layer.weight.detach().reshape(-1)[active]
            cheapest.add(index, -fisher.removal_costs(weights, self.taylor))
        # Indices into each layer's active weights, which make its removal mask directly:
        # matching positions against the active ones (torch.isin) sorts copies of both.
        picked = cheapest.per_layer(len(masks.layers))
        fishers, actives, self.fishers, self.active = self.fishers, self.active, None, []
        chosen = []
        with torch.no_grad():
            for layer, picks in zip(masks.layers, picked):
                fisher, active = fishers.pop(0), actives.pop(0)  # a layer's inverse is freed once it is used
                removed = torch.zeros_like(active, dtype=torch.bool).index_fill_(0, picks, True)
                write_at(layer.weight, active, fisher.remove(layer.weight.reshape(-1)[active], removed, self.taylor))
                chosen.append(active[picks])
        return chosen


# --- growth --------------------------------------------------------------------


class Growth:
    """Chooses inactive weights to add, given how many each layer lost."""

    needs_signals = False

    def choose(self, masks: WeightMasks, removed: list[int], signals: LayerSignals | None, generator) -> Positions:
        raise NotImplementedError


class RandomGrowth(Growth):
    """As many as each layer lost, at uniformly random inactive positions (SET)."""

    def choose(self, masks, removed, signals, generator):
        return [random_free_positions(mask, count, generator) for mask, count in zip(masks.masks, removed)]


class ProportionalRandomGrowth(Growth):
    """All that was lost, spread over layers in proportion to their size, at random positions (WoodFisher)."""

    def choose(self, masks, removed, signals, generator):
        free = [mask.numel() - active for mask, active in zip(masks.masks, masks.active())]
        counts = apportion(sum(removed), [mask.numel() for mask in masks.masks], free)
        return [random_free_positions(mask, count, generator) for mask, count in zip(masks.masks, counts)]


class GradientGrowth(Growth):
    """As many as each layer lost, at its largest gradient magnitudes (RigL)."""

    needs_signals = True

    def choose(self, masks, removed, signals, generator):
        chosen = []
        for index, (mask, count) in enumerate(zip(masks.masks, removed)):
            chosen.append(largest_positions(only_inactive_(signals.weight_gradient(index).abs_(), mask), count))
        return chosen


class GlobalGradientGrowth(Growth):
    """All that was lost, at the network's largest gradient magnitudes, one layer at a time (global RigL)."""

    needs_signals = True

    def choose(self, masks, removed, signals, generator):
        largest = RunningTopK(sum(removed), masks.masks[0].device)
        for index, mask in enumerate(masks.masks):
            largest.add(index, only_inactive_(signals.weight_gradient(index).abs_(), mask))
        return largest.per_layer(len(masks.masks))


class LossGrowth(Growth):
    """As many as each layer lost, spread evenly over its neurons of largest error (Ertl's Redr-Loss).

    A neuron's "loss" is taken as |∂L/∂b_j|, the batch's summed loss
    gradient at its pre-activation. The top ``neuron_fraction`` of neurons
    each receive an equal share, at their largest-gradient inactive inputs;
    only those neurons' gradient rows are ever formed. A neuron whose row is
    full passes its share on to the next neuron by error.
    """

    needs_signals = True

    def __init__(self, neuron_fraction: float = 0.3):
        self.neuron_fraction = neuron_fraction

    def choose(self, masks, removed, signals, generator):
        chosen = []
        for index, (mask, count) in enumerate(zip(masks.masks, removed)):
            rows = mask.reshape(len(mask), -1)
            ranked = torch.argsort(signals.neuron_errors(index), descending=True)
            free = (rows.shape[1] - torch.count_nonzero(rows, dim=1))[ranked].tolist()
            selected = max(1, round(self.neuron_fraction * len(rows)))
            while sum(free[:selected]) < count:
                selected += 1
            shares = even_shares(count, free[:selected])
            neurons = ranked[:selected]
            gradient = signals.weight_gradient(index, neurons).abs_().reshape(selected, -1)
            scores = only_inactive_(gradient, rows[neurons])
            order = torch.argsort(scores, dim=1, descending=True)
            take = torch.arange(rows.shape[1], device=order.device) < torch.tensor(shares, device=order.device).view(-1, 1)
            columns = order[take]
            chosen.append(neurons.repeat_interleave(torch.count_nonzero(take, dim=1)) * rows.shape[1] + columns)
        return chosen


def even_shares(total: int, capacities: Sequence[int]) -> list[int]:
    """``total`` split as evenly as ``capacities`` allow; a leftover unit goes to earlier entries.

    >>> even_shares(10, [5, 5, 5]), even_shares(10, [1, 8, 8])
    ([4, 3, 3], [1, 5, 4])
    """
    if total > sum(capacities):
        raise ValueError(f"cannot place {total} weights in {sum(capacities)} free positions")
    low, high = 0, max(capacities, default=0)
    while low < high:  # the highest level that every capacity is filled to without exceeding total
        level = (low + high + 1) // 2
        low, high = (level, high) if sum(min(c, level) for c in capacities) <= total else (low, level - 1)
    shares = [min(c, low) for c in capacities]
    remaining = total - sum(shares)
    for index, capacity in enumerate(capacities):
        if remaining and capacity > low:
            shares[index] += 1
            remaining -= 1
    return shares
