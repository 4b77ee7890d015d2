"""Block-diagonal inverse empirical Fisher and Optimal-Brain-Surgeon removal (WoodFisher).

After Singh & Alistarh (2020), as seed 001 (section 2.5) uses it for weight
redistribution. The Hessian of the loss is approximated by the dampened
empirical Fisher F = λI + (1/N) Σ g gᵀ over N gradients g, kept only in
diagonal blocks of ``block_size`` consecutive weights so that its memory is
block_size times the weight count rather than the square of it. Its inverse
is never formed by inversion: starting from I/λ, each gradient is folded in
with the Sherman–Morrison formula

    F⁻¹ ← F⁻¹ - (F⁻¹g)(F⁻¹g)ᵀ / (N + gᵀF⁻¹g),

which costs one block matrix-vector product per gradient, so the gradients
the training loop computes anyway can be accumulated as they come.

Removing a set Q of weights with the smallest quadratic loss increase, and
moving the remaining weights to compensate, is the OBS solution per block:
with h = F⁻¹ḡ (zero for WoodFisher, the mean gradient's Newton step for
WoodTaylor) and μ solving [F⁻¹]_QQ μ = (w - h)_Q, the update is
δw = -h - F⁻¹ E_Q μ, which sets exactly the weights of Q to zero. One weight
q alone costs (w_q - h_q)² / (2 [F⁻¹]_qq), the score removal ranks by (the
constant -½ ḡᵀF⁻¹ḡ of WoodTaylor is the same for every q and is left out).
"""

from __future__ import annotations

import math

import torch

SOLVE_CHUNK = 1024  # blocks per batched solve: 1024 x 34 x 34 floats is 4.7 MB, and the solver copies it twice


class BlockFisherInverse:
    """The inverse of λI + (1/N) Σ g gᵀ over blocks of one flat weight vector.

    ``samples`` is N, the number of gradients that will be folded in; it
    must be known in advance because every Sherman–Morrison step divides by it.
    """

    def __init__(self, size: int, block_size: int, dampening: float, samples: int, device=None, dtype=torch.float32):
        if block_size < 1 or dampening <= 0 or samples < 1:
            raise ValueError(f"need block_size >= 1, dampening > 0, samples >= 1; got {block_size}, {dampening}, {samples}")
        self.size, self.block_size, self.samples = size, block_size, samples
        blocks = max(1, math.ceil(size / block_size))
        # Scaled before it is repeated: dividing the repeated blocks would hold two copies of them at once.
        self.inverse = torch.eye(block_size, device=device, dtype=dtype).div_(dampening).repeat(blocks, 1, 1)
        self.gradient_sum = torch.zeros(blocks * block_size, device=device, dtype=dtype)
        self.count = 0

    def _blocks(self, vector: torch.Tensor) -> torch.Tensor:
        padded = torch.zeros_like(self.gradient_sum)
        padded[: self.size] = vector
        return padded.view(len(self.inverse), self.block_size)

    def _times(self, blocks: torch.Tensor) -> torch.Tensor:
        return torch.bmm(self.inverse, blocks.unsqueeze(2)).squeeze(2)

    @torch.no_grad()
    def add(self, gradient: torch.Tensor) -> None:
        """Fold one gradient (of length ``size``) into the inverse."""
        g = self._blocks(gradient.to(self.gradient_sum))
        u = self._times(g)  # F⁻¹g; F⁻¹ is symmetric, so gᵀF⁻¹ = uᵀ
        v = u / (self.samples + (g * u).sum(1, keepdim=True)).sqrt()  # the denominator is > N > 0
        self.inverse.baddbmm_(v.unsqueeze(2), v.unsqueeze(1), alpha=-1)  # in place: no block-sized temporary
        self.gradient_sum += g.view(-1)
        self.count += 1

    def dense(self) -> torch.Tensor:
        """The block-diagonal inverse as one matrix, for checking on small sizes."""
        return torch.block_diag(*self.inverse)[: self.size, : self.size]

    def newton_step(self) -> torch.Tensor:
        """F⁻¹ḡ for the mean ḡ of the gradients folded in so far (zero if none)."""
        mean = self.gradient_sum / max(self.count, 1)
        return self._times(mean.view(len(self.inverse), self.block_size)).view(-1)[: self.size]

    @torch.no_grad()
    def removal_costs(self, weights: torch.Tensor, taylor: bool) -> torch.Tensor:
        """The quadratic loss increase of removing each weight alone (and re-fitting the rest)."""
        diagonal = torch.diagonal(self.inverse, dim1=1, dim2=2).reshape(-1)[: self.size]
        target = weights.to(diagonal) - (self.newton_step() if taylor else 0)
        return target.pow(2) / (2 * diagonal)

    @torch.no_grad()
    def remove(self, weights: torch.Tensor, removed: torch.Tensor, taylor: bool) -> torch.Tensor:
        """``weights`` after removing those where ``removed`` is True, the rest moved to compensate.

        Blocks with a removal solve their systems in batches of
        ``SOLVE_CHUNK``: rows and columns of the kept weights are replaced by
        the identity, so each block's μ is zero outside Q and a batch has one
        shape, and no copy of the whole inverse is made.
        """
        h = self.newton_step() if taylor else torch.zeros_like(weights, dtype=self.inverse.dtype)
        chosen = self._blocks(removed.to(self.inverse.dtype))
        target = self._blocks(weights.to(self.inverse.dtype) - h).mul_(chosen)
        multipliers = torch.zeros_like(target)
        for blocks in chosen.any(1).nonzero().squeeze(1).split(SOLVE_CHUNK):
            part = chosen[blocks]
            system = self.inverse[blocks].mul_(part.unsqueeze(2)).mul_(part.unsqueeze(1))
            system.diagonal(dim1=1, dim2=2).add_(1 - part)
            multipliers[blocks] = torch.linalg.solve(system, target[blocks])
        update = self._times(multipliers).view(-1)[: self.size].add_(h).neg_()
        return (weights + update.to(weights)).masked_fill(removed, 0)
