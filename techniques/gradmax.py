"""GradMax growing (seed 000, III-A-2; Evci et al. 2022).

Training starts from a narrow model (the approach's ``model``, e.g. the
teacher–student 100:25:10) and, on the shared resize schedule, adds units to
every width group until each is ``width_ratio`` times as wide (100:50:10).

A new unit gets zero incoming weights and zero bias, so the network's
function is unchanged at the moment of growth. Its outgoing weights are
chosen to maximise the gradient norm of those zero incoming weights, which
is what lets the loss fall fastest once training resumes. For a unit with
outgoing weights ``w`` that gradient is ``M w`` with

    M = sum over the batch of h_{l-1} (dL/dz_{l+1})^T,

the gradient of an auxiliary zero layer from layer l-1's output to layer
l+1's pre-activation (for convolutions, over patches: rows are an incoming
filter's entries, columns an outgoing filter's). The best ``w``s are M's top
right singular vectors; each is normalised and scaled to ``scale`` times the
mean norm of the existing units' outgoing weights.

This assumes the activation between the layers has f(0) = 0 and f'(0) = 1
(the models here use ``UnitSlopeReLU``; with PyTorch's ReLU, f'(0) = 0 and
the new units could never learn) and treats a BatchNorm between them as the
identity, as GradMax does.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Annotated, Sequence

import torch
from torch import nn

from .base import Run
from .probes import buffers_kept
from .registry import register
from .resizing import ScheduledResize
from .space import Float, Int
from .surgery import Resized, WidthGroup, add_units, units, widths

MAX_CHUNK_ELEMENTS = 1 << 26  # bounds the patch tensor built per chunk of the batch
OVERSAMPLING = 10  # extra directions the randomized SVD keeps, so the top ones it returns are accurate


@register
class GradMax(ScheduledResize):
    name = "gradmax"

    def __init__(
        self,
        width_ratio: float = 2.0,
        batches: Annotated[int, Int(1, 8)] = 1,
        scale: Annotated[float, Float(0.05, 2.0, log=True)] = 0.5,
        **schedule,
    ):
        super().__init__(width_ratio, **schedule)
        if width_ratio <= 1:
            raise ValueError(f"GradMax grows: width_ratio must be above 1, got {width_ratio}")
        if not isinstance(batches, int) or batches < 1:
            raise ValueError(f"batches must be a positive integer, got {batches!r}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.batches, self.scale = batches, scale

    def prepare(self, model: nn.Module, run: Run) -> nn.Module:
        model = super().prepare(model, run)
        previous = widths(model, self.groups)
        for targets in (self.plan[step] for step in sorted(self.plan)):
            for group, before, after in zip(self.groups, previous, targets):
                columns = sum(consumer_weights(model, group, name)[:, 0].numel() for name in group.consumers)
                directions = min(columns, model.get_submodule(group.producer).weight[0].numel())
                if after - before > directions:
                    raise ValueError(
                        f"GradMax would add {after - before} units to {group.producer!r} in one step, but M has only "
                        f"{directions} directions (its rank is at most its smaller side); use more steps"
                    )
            previous = targets
        return model

    def resize_groups(self, run: Run, todo: Sequence[tuple[WidthGroup, int, int]]) -> list[Resized]:
        model = run.model
        matrices = growth_matrices(run, [group for group, _, _ in todo], self.batches)
        with torch.no_grad():
            # Every direction comes from the network before any growth; a
            # consumer that grew meanwhile gets zero weights into its new
            # units, which are new units' incoming weights.
            plans = [self._outgoing(model, group, matrix, target - now) for (group, now, target), matrix in zip(todo, matrices)]
            changes: list[Resized] = []
            for (group, now, target), outgoing in zip(todo, plans):
                for name, weights in outgoing.items():
                    missing = model.get_submodule(name).weight.shape[0] - len(weights)
                    outgoing[name] = torch.cat([weights, weights.new_zeros(missing, *weights.shape[1:])])
                changes += add_units(model, group, target - now, outgoing=outgoing)
        return changes

    def _outgoing(self, model: nn.Module, group: WidthGroup, matrix: torch.Tensor, count: int) -> dict[str, torch.Tensor]:
        """Outgoing weights of ``count`` new units, ``(outputs, count, entries)``: M's top right singular vectors, scaled."""
        if count > min(matrix.shape):
            raise ValueError(f"GradMax can add at most {min(matrix.shape)} units to {group.producer!r} at once; use more steps")
        right = top_right_singular_vectors(matrix, count)
        existing = [consumer_weights(model, group, name) for name in group.consumers]
        norms = torch.cat([weights.transpose(0, 1).flatten(1) for weights in existing], dim=1).norm(dim=1)
        directions = right[:count] * self.scale * norms.mean()  # right's rows have unit norm
        outgoing, column = {}, 0
        for name, weights in zip(group.consumers, existing):
            size = weights.shape[0] * weights.shape[2]
            outgoing[name] = directions[:, column : column + size].reshape(count, weights.shape[0], -1).transpose(0, 1)
            column += size
        return outgoing

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", batches={self.batches}, scale={self.scale})"


def top_right_singular_vectors(matrix: torch.Tensor, count: int) -> torch.Tensor:
    """M's ``count`` leading right singular vectors, as rows.

    A wide layer's M is large (4608 x 4608 between 512-channel 3x3 convs;
    a full SVD of it took 17 s on this project's 2-core CPU), while a growth
    step needs only the few directions it adds. A randomized SVD with power
    iterations (Halko et al. 2011; ``torch.svd_lowrank``) finds those in
    0.34 s, and their gradient norms are within 1% of the exact ones (tested
    on a real M). A small M gets the exact SVD.
    """
    rank = min(matrix.shape)
    sketch = count + OVERSAMPLING
    if 2 * sketch >= rank:
        return torch.linalg.svd(matrix, full_matrices=False)[2][:count]
    _, _, right = torch.svd_lowrank(matrix, q=sketch, niter=8)
    return right.T[:count]


def consumer_weights(model: nn.Module, group: WidthGroup, name: str) -> torch.Tensor:
    """A consumer's weight as ``(outputs, the group's units, entries per unit)``: kernel or flattened block."""
    weight = model.get_submodule(name).weight.detach()
    return weight.reshape(weight.shape[0], units(model.get_submodule(group.producer)), -1)


def growth_matrices(run: Run, groups: Sequence[WidthGroup], batches: int) -> list[torch.Tensor]:
    """Each group's M, summed over ``batches`` training batches; the model is left as it was.

    One forward and one backward per batch serve every group: hooks keep the
    producers' inputs and the consumers' outputs, and ``autograd.grad``
    takes the gradients at those outputs without touching any ``.grad``.
    """
    model = run.model
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    consumers = [name for group in groups for name in group.consumers]
    handles = [model.get_submodule(group.producer).register_forward_hook(partial(_keep, seen, group.producer)) for group in groups]
    handles += [model.get_submodule(name).register_forward_hook(partial(_keep, seen, name)) for name in consumers]
    totals: list[torch.Tensor | None] = [None] * len(groups)
    try:
        with buffers_kept(model):  # BatchNorm statistics
            for _ in range(batches):
                inputs, targets = run.sample_batch()
                loss = run.loss_fn(model(inputs), targets)
                gradients = dict(zip(consumers, torch.autograd.grad(loss, [seen[name][1] for name in consumers])))
                with torch.no_grad():
                    for index, group in enumerate(groups):
                        matrix = _growth_matrix(model, group, seen, gradients)
                        totals[index] = matrix if totals[index] is None else totals[index] + matrix
                seen.clear()
    finally:
        for handle in handles:
            handle.remove()
    return totals


def _keep(seen: dict, name: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
    seen[name] = (inputs[0], output)


def _growth_matrix(model: nn.Module, group: WidthGroup, seen: dict, gradients: dict) -> torch.Tensor:
    producer = model.get_submodule(group.producer)
    produced, output = seen[group.producer]
    patches = _producer_patches(producer, produced.detach(), output.shape)  # (N, rows, H, W)
    columns = [
        _consumer_product(model, group, name, patches, output.shape[1], seen[name][0].shape, gradients[name])
        for name in group.consumers
    ]
    return torch.cat(columns, dim=1)


def _producer_patches(producer: nn.Module, inputs: torch.Tensor, output_shape: torch.Size) -> torch.Tensor:
    """Layer l-1's output as each output position of the producer sees it: (N, incoming entries, H, W)."""
    if isinstance(producer, nn.Linear):
        return inputs.reshape(len(inputs), -1, 1, 1)
    if producer.padding_mode != "zeros" or isinstance(producer.padding, str):
        raise ValueError("GradMax needs producer convolutions with numeric zero padding")
    unfolded = nn.functional.unfold(inputs, producer.kernel_size, producer.dilation, producer.padding, producer.stride)
    return unfolded.reshape(len(inputs), unfolded.shape[1], *output_shape[2:])


def _consumer_product(model, group, name, patches, produced_units, consumer_input_shape, gradient) -> torch.Tensor:
    """Sum over the batch of patches x gradient at the consumer's output: M's columns for one consumer."""
    consumer = model.get_submodule(name)
    count, rows, height, width = patches.shape
    if isinstance(consumer, nn.Linear):
        if consumer.in_features != produced_units * height * width:
            raise ValueError(f"GradMax needs {name!r} to read {group.producer!r}'s output at its own resolution")
        return torch.einsum("nrk,no->rok", patches.reshape(count, rows, height * width), gradient).reshape(rows, -1)
    if tuple(consumer_input_shape[2:]) != (height, width):
        raise ValueError(f"GradMax needs {name!r} to read {group.producer!r}'s output at its own resolution (no pooling between)")
    kernel = math.prod(consumer.kernel_size)
    gradient = gradient.reshape(count, gradient.shape[1], -1)
    chunk = max(1, MAX_CHUNK_ELEMENTS // (rows * kernel * gradient.shape[2]))
    total = None
    for begin in range(0, count, chunk):
        unfolded = nn.functional.unfold(
            patches[begin : begin + chunk], consumer.kernel_size, consumer.dilation, consumer.padding, consumer.stride
        )
        product = torch.einsum("nrkl,nol->rok", unfolded.reshape(len(unfolded), rows, kernel, -1), gradient[begin : begin + chunk])
        total = product if total is None else total + product
    return total.reshape(rows, -1)
