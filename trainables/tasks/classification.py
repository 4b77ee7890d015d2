"""Classification with an MLP, and the dense baselines a sparse version of it is compared with.

Seed 001 (section 3) compares a sparse network of layer sizes ``full`` with
two dense networks:

- neuron-equivalent: the same layer sizes, dense. This is model ``full``
  trained without a sparse technique;
- parameter-equivalent: equal hidden widths, the narrowest with at least as
  many weights as the sparse network has active ones at a given density
  (biases not counted; a layer the model keeps dense counts in full). This is
  model ``param-equivalent-D`` for density D, for any D: at 0.1 it gives the
  paper's 784-33-33-10 for KMNIST and 21-79-79-79-1 for HIGGS.

A one-output network is a binary classifier on logits (the sigmoid is in the
loss), and its output layer stays dense, as in the paper's HIGGS network.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F

from greentune.techniques.masks import balanced_count

from ..data import DeviceData
from ..models import create_model
from ..models.mlp import equal_width_mlp
from . import Task

PARAM_EQUIVALENT = "param-equivalent-"


def sparse_weights(sizes: Sequence[int], density: float, dense_output: bool) -> int:
    """Active weights of the balanced sparse MLP (``techniques.masks.balanced_mask``) at ``density``."""
    shapes = [torch.Size((fan_out, fan_in)) for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    counts = [balanced_count(shape, density) for shape in shapes]
    if dense_output:
        counts[-1] = shapes[-1].numel()
    return sum(counts)


class MLPClassification(Task):
    """An MLP classifier task; subclasses set ``inputs``, ``classes`` and provide the data."""

    quality = "accuracy"
    metrics = ("accuracy", "test_loss")
    mode = "max"
    models = ("full", f"{PARAM_EQUIVALENT}<density>")
    default_model = "full"
    inputs: ClassVar[int]
    classes: ClassVar[int]

    def __init__(self, hidden: Sequence[int]):
        if not hidden or any(not isinstance(width, int) or width < 1 for width in hidden):
            raise ValueError(f"hidden must be a list of positive layer widths, got {hidden!r}")
        self.sizes = [self.inputs, *hidden, 1 if self.classes == 2 else self.classes]

    @property
    def dense_output(self) -> bool:
        return self.sizes[-1] == 1

    def layer_sizes(self, variant: str) -> list[int]:
        if variant == "full":
            return list(self.sizes)
        if variant.startswith(PARAM_EQUIVALENT):
            try:
                density = float(variant.removeprefix(PARAM_EQUIVALENT))
            except ValueError:
                density = -1.0
            if 0.0 < density <= 1.0:
                weights = sparse_weights(self.sizes, density, self.dense_output)
                return equal_width_mlp(self.sizes[0], self.sizes[-1], len(self.sizes) - 2, weights)
        raise ValueError(
            f"task {self.name!r} has no model {variant!r}; choose 'full' (layers {self.sizes}) "
            f"or '{PARAM_EQUIVALENT}D' with a density D in (0, 1], e.g. {PARAM_EQUIVALENT}0.1"
        )

    def check_model(self, variant: str) -> None:
        self.layer_sizes(variant)

    def build_model(self, variant: str):
        return create_model("mlp", sizes=self.layer_sizes(variant), dense_output=self.dense_output)

    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.dense_output:
            return F.binary_cross_entropy_with_logits(outputs.squeeze(-1), targets.to(outputs.dtype))
        return F.cross_entropy(outputs, targets)

    def evaluate(self, model, train: DeviceData, held_out: DeviceData) -> dict[str, float]:
        correct, loss, count = 0, 0.0, 0
        for inputs, targets in held_out.batches():
            outputs = model(inputs)
            predicted = (outputs.squeeze(-1) > 0).long() if self.dense_output else outputs.argmax(-1)
            correct += int((predicted == targets).sum())
            loss += float(self.loss_fn(outputs, targets)) * len(targets)
            count += len(targets)
        return {"accuracy": correct / count, "test_loss": loss / count}
