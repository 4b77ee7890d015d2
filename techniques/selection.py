"""Choosing positions in layer-sized tensors with memory proportional to what is chosen.

Redistribution picks the k largest scores of a layer (weights to drop,
gradients to grow at) or k random free positions. ``torch.topk`` on a CPU
sorts a full copy with 64-bit indices, about 16 bytes a score, which for a
4096x4096 layer is more than the layer, its gradient and its Adam state
together. ``largest_positions`` ranks only the scores above a threshold
placed from a small sample (one byte a score, plus the candidates), and
``random_free_positions`` draws positions directly (bytes per chosen
position only). ``top_positions`` is the plain selection, for scores
small or short-lived enough that its memory does not matter.
``RunningTopK`` keeps the k largest over several layers, one layer at a
time, so a network-wide choice never holds two layers.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SAMPLE = 1 << 14  # scores sampled to place the threshold
NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)  # bfloat16 has no NumPy type


def top_positions(scores: torch.Tensor, k: int, largest: bool = True) -> torch.Tensor:
    """Positions of the ``k`` largest (or smallest) of the 1-dim ``scores``, in any order, ties broken arbitrarily.

    ``torch.topk``'s set; on a CPU through NumPy's introselect, several times
    faster there, which matters because gradual pruning selects every Δt steps.
    """
    if scores.device.type == "cpu" and scores.dtype in NUMPY_FLOATS and 0 < k < len(scores):
        values = scores.numpy()
        return torch.from_numpy(np.argpartition(-values if largest else values, k - 1)[:k])
    return scores.topk(k, largest=largest, sorted=False).indices


def largest_positions(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Flat positions of the ``k`` largest ``scores`` (any order; ties broken arbitrarily).

    A strided sample of the scores gives a threshold that slightly more than
    k scores reach; only those candidates are ranked. Should too few reach
    it, the threshold is lowered and the pass repeated, so the result is
    always exactly torch.topk's set (up to ties).

    >>> sorted(largest_positions(torch.tensor([0.5, -1.0, 2.0, 0.1, float("-inf")]), 2).tolist())
    [0, 2]
    """
    flat = scores.reshape(-1)
    if k >= len(flat):
        return torch.arange(len(flat), device=flat.device)
    if len(flat) <= 8 * SAMPLE:  # small: a full selection's memory does not matter
        return top_positions(flat, k)
    ranked = flat[:: len(flat) // SAMPLE].sort(descending=True).values
    rank = int(1.25 * k / len(flat) * len(ranked)) + 8
    while True:
        threshold = ranked[rank] if rank < len(ranked) else -math.inf
        candidates = (flat >= threshold).nonzero().squeeze(1)
        if len(candidates) >= k:
            return candidates[torch.topk(flat[candidates], k).indices]
        rank *= 2


def random_free_positions(mask: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` distinct positions where ``mask`` is False, uniformly at random.

    Positions are drawn uniformly with replacement and the taken ones
    discarded; the distinct free ones are a uniform subset given their
    number, and a uniform subsample of them is again uniform.
    """
    flat = mask.reshape(-1)
    free = len(flat) - int(torch.count_nonzero(flat))
    if count > free:
        raise ValueError(f"cannot choose {count} of {free} free positions")
    chosen = torch.empty(0, dtype=torch.long)
    while len(chosen) < count:
        needed = count - len(chosen)
        draws = torch.randint(len(flat), (int(needed * len(flat) / free * 1.25) + 16,), generator=generator)
        draws = draws[~flat[draws.to(flat.device)].cpu()]
        chosen = torch.unique(torch.cat([chosen, draws]))
    return chosen[torch.randperm(len(chosen), generator=generator)[:count]].to(flat.device)


class RunningTopK:
    """The k largest scores over several layers, seen one layer at a time."""

    def __init__(self, k: int, device):
        self.k = k
        self.scores = torch.empty(0, device=device)
        self.layer_ids = torch.empty(0, dtype=torch.long, device=device)
        self.positions = torch.empty(0, dtype=torch.long, device=device)

    def add(self, index: int, scores: torch.Tensor, positions: torch.Tensor | None = None) -> None:
        """Offer a layer's ``scores`` (``-inf`` where ineligible) at ``positions`` (default: every flat index).

        The layer's own top k is taken first, so only 2k candidates are
        ever joined, never a copy of the layer.
        """
        scores = scores.reshape(-1)
        best = largest_positions(scores, self.k)
        chosen = best if positions is None else positions[best]
        joined = torch.cat([self.scores, scores[best].to(self.scores)])
        kept = largest_positions(joined, self.k)
        self.scores = joined[kept]
        self.layer_ids = torch.cat([self.layer_ids, torch.full_like(chosen, index)])[kept]
        self.positions = torch.cat([self.positions, chosen])[kept]

    def per_layer(self, layers: int) -> list[torch.Tensor]:
        eligible = torch.isfinite(self.scores)
        return [self.positions[eligible & (self.layer_ids == index)] for index in range(layers)]
