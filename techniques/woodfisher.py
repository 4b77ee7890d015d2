"""Block-diagonal inverse empirical Fisher and Optimal-Brain-Surgeon removal (WoodFisher).

After Singh & Alistarh (2020), as seed 001 (section 2.5) uses it for weight
redistribution. The Hessian of the loss is approximated by the dampened
empirical Fisher F = λI + (1/N) Σ g gᵀ over N gradients g, kept only in
diagonal blocks of ``block_size`` consecutive weights, and of each symmetric
block only one triangle, so that its memory is (block_size + 1) / 2 floats
per weight rather than the weight count squared. Its inverse
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

SOLVE_CHUNK = 1024  # blocks unpacked at a time, to multiply or solve: 1024 full 34 x 34 blocks are 4.7 MB


class BlockFisherInverse:
    """The inverse of λI + (1/N) Σ g gᵀ over blocks of one flat weight vector.

    ``samples`` is N, the number of gradients that will be folded in; it
    must be known in advance because every Sherman–Morrison step divides by it.

    Every block is symmetric, so only its upper triangle is kept: ``packed``
    holds one row of block_size (block_size + 1) / 2 floats per block, about
    half of the full blocks, and it is the largest thing a redistribution
    holds. ``SOLVE_CHUNK`` blocks at a time are unpacked to full matrices to
    be multiplied or solved, so no full copy of the inverse ever exists.
    """

    def __init__(self, size: int, block_size: int, dampening: float, samples: int, device=None, dtype=torch.float32):
        if block_size < 1 or dampening <= 0 or samples < 1:
            raise ValueError(f"need block_size >= 1, dampening > 0, samples >= 1; got {block_size}, {dampening}, {samples}")
        self.size, self.block_size, self.samples = size, block_size, samples
        blocks = max(1, math.ceil(size / block_size))
        rows, columns = torch.triu_indices(block_size, block_size, device=device)
        self.diagonal = (rows == columns).nonzero().squeeze(1)  # where a packed row holds the diagonal
        self.upper = rows * block_size + columns  # where a full block holds each packed entry
        entries = torch.empty(block_size, block_size, dtype=torch.long, device=device)
        entries[rows, columns] = entries[columns, rows] = torch.arange(len(rows), device=device)
        self.entries = entries.view(-1)  # for each entry of a full block, where its packed row holds it
        # Scaled before it is repeated: dividing the repeated blocks would hold two copies of them at once.
        self.packed = (rows == columns).to(dtype).div_(dampening).repeat(blocks, 1)
        self.gradient_sum = torch.zeros(blocks * block_size, device=device, dtype=dtype)
        self.count = 0

    def _blocks(self, vector: torch.Tensor) -> torch.Tensor:
        padded = torch.zeros_like(self.gradient_sum)
        padded[: self.size] = vector
        return padded.view(len(self.packed), self.block_size)

    def _unpacked(self, packed: torch.Tensor) -> torch.Tensor:
        """Full blocks, a new tensor, from rows of ``packed``."""
        return packed.index_select(1, self.entries).view(len(packed), self.block_size, self.block_size)

    def _times(self, blocks: torch.Tensor) -> torch.Tensor:
        """F⁻¹x for every block's x, one row of ``blocks`` each."""
        product = torch.empty_like(blocks)
        for start in range(0, len(blocks), SOLVE_CHUNK):
            part = slice(start, start + SOLVE_CHUNK)
            product[part] = torch.bmm(self._unpacked(self.packed[part]), blocks[part].unsqueeze(2)).squeeze(2)
        return product

    @torch.no_grad()
    def add(self, gradient: torch.Tensor) -> None:
        """Fold one gradient (of length ``size``) into the inverse."""
        g = self._blocks(gradient.to(self.gradient_sum))
        for start in range(0, len(g), SOLVE_CHUNK):
            part = slice(start, start + SOLVE_CHUNK)
            inverse = self._unpacked(self.packed[part])
            u = torch.bmm(inverse, g[part].unsqueeze(2)).squeeze(2)  # F⁻¹g; F⁻¹ is symmetric, so gᵀF⁻¹ = uᵀ
            v = u / (self.samples + (g[part] * u).sum(1, keepdim=True)).sqrt()  # the denominator is > N > 0
            inverse.baddbmm_(v.unsqueeze(2), v.unsqueeze(1), alpha=-1)
            torch.index_select(inverse.view(len(inverse), -1), 1, self.upper, out=self.packed[part])
        self.gradient_sum += g.view(-1)
        self.count += 1

    def dense(self) -> torch.Tensor:
        """The block-diagonal inverse as one matrix, for checking on small sizes."""
        return torch.block_diag(*self._unpacked(self.packed))[: self.size, : self.size]

    def newton_step(self) -> torch.Tensor:
        """F⁻¹ḡ for the mean ḡ of the gradients folded in so far (zero if none)."""
        mean = self.gradient_sum / max(self.count, 1)
        return self._times(mean.view(len(self.packed), self.block_size)).view(-1)[: self.size]

    @torch.no_grad()
    def removal_costs(self, weights: torch.Tensor, taylor: bool) -> torch.Tensor:
        """The quadratic loss increase of removing each weight alone (and re-fitting the rest)."""
        diagonal = self.packed.index_select(1, self.diagonal).reshape(-1)[: self.size]
        target = weights.to(diagonal) - (self.newton_step() if taylor else 0)
        return target.pow(2) / (2 * diagonal)

    @torch.no_grad()
    def remove(self, weights: torch.Tensor, removed: torch.Tensor, taylor: bool) -> torch.Tensor:
        """``weights`` after removing those where ``removed`` is True, the rest moved to compensate.

        Blocks with a removal solve their systems in batches of
        ``SOLVE_CHUNK``: rows and columns of the kept weights are replaced by
        the identity, so each block's μ is zero outside Q and a batch has one
        shape.
        """
        h = self.newton_step() if taylor else torch.zeros_like(weights, dtype=self.packed.dtype)
        chosen = self._blocks(removed.to(self.packed.dtype))
        target = self._blocks(weights.to(self.packed.dtype) - h).mul_(chosen)
        multipliers = torch.zeros_like(target)
        for blocks in chosen.any(1).nonzero().squeeze(1).split(SOLVE_CHUNK):
            part = chosen[blocks]
            system = self._unpacked(self.packed.index_select(0, blocks)).mul_(part.unsqueeze(2)).mul_(part.unsqueeze(1))
            system.diagonal(dim1=1, dim2=2).add_(1 - part)
            multipliers[blocks] = torch.linalg.solve(system, target[blocks])
        update = self._times(multipliers).view(-1)[: self.size].add_(h).neg_()
        return (weights + update.to(weights)).masked_fill(removed, 0)
