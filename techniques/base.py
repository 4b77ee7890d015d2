"""The hook protocol between the training loop and every technique.

The loop in ``trainables/loop.py`` knows no technique by name. It calls the
hooks of one ``Technique`` object (possibly a ``Stack`` of several) at fixed
points, and everything a paper does to cut training energy is expressed
through them. A new technique subclasses ``Technique``, overrides the hooks
it needs, declares its search space, and registers itself with
``@register``; nothing else in the code base changes.

One training step, in the order the loop runs it::

    keep_batch(run)                    False: the batch is never fetched, no
                                       forward, no backward; then
    on_skipped_batch(run) -> bool      says whether the optimizer still steps
                                       with the gradients left in ``.grad``
    -- forward --
    extra_loss(run, outputs, targets)  a tensor added to the task loss
    -- backward --
    after_backward(run)                read or rewrite ``p.grad``
    -- optimizer.step() --
    after_step(run)                    re-apply masks, change structure
    on_epoch_end(run)                  every ``run.steps_per_epoch`` steps

Around the run: ``prepare(model, run)`` once before the optimizer is built
(may return a different model), ``metrics(run)`` at each evaluation,
``export(model)`` at the end.

For FLOP accounting the loop also asks ``layer_densities(run)`` after each
kept batch's backward (and at each evaluation): which fraction of each
layer's weights the step used (``LayerDensity``). A layer left out counts
as dense. Masked dense kernels still do the dense arithmetic, so these
FLOPs are what a sparse kernel would need (GraNet's Table 3 accounting),
reported beside the measured energy, never instead of it. The loop
multiplies the FLOPs out only when the mapping it gets is a different
object from the last one, so return the same mapping while the densities
hold and a new one when they change; never change one in place.

A checkpoint pickles the model, the technique and the optimizer together in
one object graph, so a layer a technique widened or narrowed comes back with
its new shape, and a technique's references to the model's layers (masks,
gates) still point at the restored layers. Keep techniques picklable: no
lambdas, open files or threads as attributes.

A technique that replaces parameters (growing, filter pruning) resizes
through ``techniques.surgery`` and calls its ``rebuild_optimizer(run,
changes)``, which tells the loop (``run.structure_changed()``: FLOPs counted
again, memory format re-applied) and builds a new optimizer carrying the
old one's state.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, Protocol

import torch
from torch import nn

from .space import Param, SearchedDomains


class Run(Protocol):
    """What a hook may read or change about the training in progress."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: int  # optimizer steps taken so far, skipped batches included
    total_steps: int
    steps_per_epoch: int
    seed: int
    device: torch.device
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]

    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch outside the step sequence, for statistics."""

    def structure_changed(self) -> None:
        """Tell the loop that parameters were replaced."""


class LayerDensity(NamedTuple):
    """Fraction of one layer's weights that a training step uses.

    ``weights`` scales the forward pass and the gradient with respect to the
    layer's input; ``gradients`` scales the gradient with respect to the
    weights, which is dense for straight-through estimators and for steps
    that score regrowth by gradient. Either may be a 0-dim tensor, so a
    technique need not synchronise the device to report it.
    """

    weights: float | torch.Tensor
    gradients: float | torch.Tensor


ALL_DENSE: Mapping[nn.Module, LayerDensity] = MappingProxyType({})  # one object, so it is never taken for a change


class Technique:
    """Base class: every hook does nothing, so the base class is the baseline.

    A technique's parameters are its constructor's keyword arguments, each
    declared once in the signature with its default and, when a search may
    sample it, its domain: ``Annotated[float, Float(0.1, 1.0)] = 0.5`` (see
    ``techniques.space``). ``space`` reads them back as ``{parameter: Float |
    Int | Choice}``.

    Class attributes a subclass sets:

    - ``name``: the registry key used in configs.
    - ``pinned``: ``{parameter: value}`` a variant fixes in its parent's
      constructor, so they are not its parameters.
    - ``claims``: what the technique takes control of (``"batches"``,
      ``"weights"`` for masks on weights, ``"width"``, ``"gates"``). Two
      techniques in one ``Stack`` may not claim the same thing.
    - ``stage``: position in a ``Stack``; lower runs first. Data selection
      is 0, structural changes 10, weight masks 20, regularisers 30.
    - ``reports``: the names ``metrics`` returns, so a search can check its
      objectives and constraints before any trial runs (a name with ``*``
      stands for a family, ``gate_rate_*``). ``None``: not declared.
    """

    name: ClassVar[str] = "baseline"
    space: ClassVar[Mapping[str, Param]] = SearchedDomains()
    pinned: ClassVar[Mapping[str, Any]] = {}
    claims: ClassVar[frozenset[str]] = frozenset()
    stage: ClassVar[int] = 50
    reports: ClassVar[frozenset[str] | None] = frozenset()

    def prepare(self, model: nn.Module, run: Run) -> nn.Module:
        return model

    def keep_batch(self, run: Run) -> bool:
        return True

    def on_skipped_batch(self, run: Run) -> bool:
        return True

    def extra_loss(self, run: Run, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        return None

    def after_backward(self, run: Run) -> None:
        pass

    def after_step(self, run: Run) -> None:
        pass

    def on_epoch_end(self, run: Run) -> None:
        pass

    def metrics(self, run: Run) -> dict[str, float]:
        return {}

    def layer_densities(self, run: Run) -> Mapping[nn.Module, LayerDensity]:
        return ALL_DENSE

    def export(self, model: nn.Module) -> nn.Module:
        return model

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def declared_reports(cls: type[Technique]) -> frozenset[str] | None:
    """The metric names ``cls.metrics`` returns; None where a class overrides ``metrics`` and declares no ``reports``."""
    def owner(attribute: str) -> int:
        return next(index for index, klass in enumerate(cls.__mro__) if attribute in vars(klass))

    return cls.reports if owner("reports") <= owner("metrics") else None


class Stack(Technique):
    """Several techniques in one trial, called in ``stage`` order.

    A batch is kept only if every member keeps it; every member is still
    asked, so each one's random stream advances the same way it would alone.
    The optimizer steps on a skipped batch only if every member agrees.
    """

    name = "stack"

    def __init__(self, members: list[Technique]):
        if len(members) < 2:
            raise ValueError("a stack needs at least two techniques")
        owner: dict[str, str] = {}
        for member in members:
            for claim in member.claims:
                if claim in owner:
                    raise ValueError(
                        f"techniques {owner[claim]!r} and {member.name!r} both control the {claim}; "
                        "keep one of them in this combination"
                    )
                owner[claim] = member.name
        self.members = sorted(members, key=lambda member: member.stage)
        self.claims = frozenset(owner)

    def prepare(self, model, run):
        for member in self.members:
            model = member.prepare(model, run)
        return model

    def keep_batch(self, run):
        return all([member.keep_batch(run) for member in self.members])

    def on_skipped_batch(self, run):
        return all([member.on_skipped_batch(run) for member in self.members])

    def extra_loss(self, run, outputs, targets):
        terms = [member.extra_loss(run, outputs, targets) for member in self.members]
        terms = [term for term in terms if term is not None]
        return sum(terms) if terms else None

    def after_backward(self, run):
        for member in self.members:
            member.after_backward(run)

    def after_step(self, run):
        for member in self.members:
            member.after_step(run)

    def on_epoch_end(self, run):
        for member in self.members:
            member.on_epoch_end(run)

    def metrics(self, run):
        merged: dict[str, float] = {}
        for member in self.members:
            merged.update(member.metrics(run))
        return merged

    def layer_densities(self, run):
        # Only the member that claims the weights reports densities. The merged
        # mapping is made again only when a member's changes, as the loop expects.
        parts = [member.layer_densities(run) for member in self.members]
        cached_parts, merged = getattr(self, "_densities", ((), {}))
        if len(parts) != len(cached_parts) or any(part is not cached for part, cached in zip(parts, cached_parts)):
            merged = {layer: density for part in parts for layer, density in part.items()}
            self._densities = (parts, merged)
        return merged

    def export(self, model):
        for member in self.members:
            model = member.export(model)
        return model

    def __getstate__(self) -> dict:
        # The merged densities are a cache (and ``ALL_DENSE``, a read-only view, does not pickle): a
        # checkpointed stack merges them again after it is loaded.
        return {key: value for key, value in self.__dict__.items() if key != "_densities"}

    def __repr__(self) -> str:
        return f"Stack({self.members!r})"
