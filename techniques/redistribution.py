"""Dynamic sparse training by weight redistribution (seed 001), and static sparse training.

The network is sparse from the first step: every masked layer starts with
Ertl's balanced topology (each neuron has the same number of inputs, spread
over its fan-in) at ``density``, weights uniform in ±1/k and biases in
±1/sqrt(k) for k active inputs. Pruned weights, their gradients and their
optimizer state stay exactly zero.

Every ``interval`` epochs a fraction α of the active weights is
redistributed: removed, then the same number added back, new weights at
zero. α starts at ``alpha`` and is cosine-annealed to zero at ``end`` (3/4)
of training, so the last quarter fine-tunes a fixed topology (after RigL).
The algorithms differ only in which weights they remove and add; each is a
thin subclass naming its two rules from ``redistribution_rules``:

=========================  ========================  =================================
registry name              removal                   growth
=========================  ========================  =================================
``static_sparse``          none (the baseline)       none
``redr_random`` (SET)      magnitude, per layer      random, per layer
``redr_gradient`` (RigL)   magnitude, per layer      largest |gradient|, per layer
``redr_gradient_global``   magnitude, per layer      largest |gradient|, whole network
``redr_loss``              magnitude, per layer      top 30% neurons by error, evenly
``redr_woodfisher``        OBS cost, whole network   random, in proportion to layer size
``redr_woodtaylor``        OBS cost with gradient    random, in proportion to layer size
=========================  ========================  =================================

The training loss is measured on one batch right before and right after
each redistribution (the induced loss of the paper's Fig. 3).
"""

from __future__ import annotations

from typing import Annotated

import torch

from .base import LayerDensity, Run, Technique
from .masks import WeightMasks, balanced_mask, fan_in_uniform_, prunable_layers
from .probes import buffers_kept
from .redistribution_rules import (
    GlobalGradientGrowth,
    GradientGrowth,
    Growth,
    LayerSignals,
    LossGrowth,
    MagnitudeRemoval,
    ProportionalRandomGrowth,
    RandomGrowth,
    Removal,
    SecondOrderRemoval,
)
from .registry import register
from .schedules import cosine_decay
from .space import Float, Int

TOPOLOGY_SEED_OFFSET = 7_919  # the topology stream differs from the loop's weight stream


@register
class StaticSparse(Technique):
    """A fixed random sparse topology, trained as is: the baseline of seed 001."""

    name = "static_sparse"
    claims = frozenset({"weights"})
    reports = frozenset({"density"})
    stage = 20

    def __init__(self, density: Annotated[float, Float(0.01, 0.5, log=True)] = 0.1):
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density}")
        self.density = density
        self.masks: WeightMasks | None = None
        self._layer_densities: dict = {}  # per masked layer, rebuilt whenever the masks change
        self.generator = torch.Generator()

    def prepare(self, model, run: Run):
        self.generator.manual_seed(run.seed + TOPOLOGY_SEED_OFFSET)
        layers = prunable_layers(model)
        masks = [balanced_mask(layer.weight.shape, self.density, self.generator) for layer in layers]
        for layer, mask in zip(layers, masks):
            fan_in_uniform_(layer, mask, self.generator)
        self.masks = WeightMasks(layers, masks)
        self._set_densities()
        return model

    def after_backward(self, run: Run) -> None:
        # Enough on its own: a pruned weight is zero with zero optimizer state
        # (drop and grow see to that), and with a zero gradient it stays exactly
        # zero under SGD and Adam, so no masking is needed after the step.
        self.masks.apply_to_gradients()

    def metrics(self, run: Run) -> dict[str, float]:
        return {"density": self.masks.density()}

    def _set_densities(self) -> None:
        # A training step needs only the active weights and their gradients;
        # the dense gradient that growth scores is taken once per
        # redistribution, outside the training steps, and is not counted.
        pairs = zip(self.masks.layers, self.masks.densities())
        self._layer_densities = {layer: LayerDensity(weights=density, gradients=density) for layer, density in pairs}
        self._active_weights = sum(self.masks.active())  # a redistribution moves weights, never changes their number

    def layer_densities(self, run: Run):
        # Read every step by the loop's FLOP count: a new mapping only when the masks change.
        return self._layer_densities

    def settings(self) -> dict:
        """The constructor's arguments, for ``repr``."""
        return {"density": self.density}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{key}={value!r}' for key, value in self.settings().items())})"


class Redistribution(StaticSparse):
    """The shared schedule; subclasses name their removal and growth in ``rules``."""

    reports = StaticSparse.reports | {
        "redistributions", "loss_before_redistribution", "loss_after_redistribution", "induced_loss_mean"
    }

    def __init__(
        self,
        interval: Annotated[int, Int(1, 10)] = 1,
        alpha: Annotated[float, Float(0.05, 0.9)] = 0.5,
        end: float = 0.75,
        **sparsity,
    ):
        super().__init__(**sparsity)
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval (epochs between redistributions) must be a positive integer, got {interval!r}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha (fraction redistributed at first) must be in (0, 1), got {alpha}")
        if not 0.0 < end <= 1.0:
            raise ValueError(f"end (fraction of training where alpha reaches 0) must be in (0, 1], got {end}")
        self.interval, self.alpha, self.end = interval, alpha, end
        self.removal, self.growth = self.rules()
        self.end_step = 0
        self.induced: list[tuple[float, float]] = []  # training loss (before, after) each redistribution

    def rules(self) -> tuple[Removal, Growth]:
        raise NotImplementedError

    def prepare(self, model, run):
        model = super().prepare(model, run)
        self.end_step = round(self.end * run.total_steps)
        self._plan(run, 0)
        return model

    def after_backward(self, run):
        super().after_backward(run)
        self.removal.observe(self.masks)

    def on_epoch_end(self, run):
        fraction = self._fraction(run, run.step)
        if fraction:
            self.redistribute(run, fraction)
        self._plan(run, run.step)

    def _fraction(self, run: Run, step: int) -> float:
        """α of a redistribution at ``step``; 0 where none is due or it would move no weight."""
        if step == 0 or step % (self.interval * run.steps_per_epoch):
            return 0.0
        fraction = cosine_decay(self.alpha, step, self.end_step)
        return fraction if round(fraction * self._active_weights) else 0.0

    def _plan(self, run: Run, step: int) -> None:
        """Let the removal gather statistics over an epoch that ends in a redistribution."""
        if self._fraction(run, step + run.steps_per_epoch):
            self.removal.begin(self.masks, run.steps_per_epoch)

    def redistribute(self, run: Run, fraction: float) -> None:
        """Remove ``fraction`` of the active weights and grow as many, new ones at zero.

        The loss is measured on one batch before removal and after growth;
        new weights are zero, so the difference is what the removal (with
        OBS's update of the others) cost: the paper's induced loss.
        """
        inputs, targets = run.sample_batch()
        with buffers_kept(run.model):  # these passes measure; BatchNorm statistics follow training alone
            before = self._loss(run, inputs, targets)
            removed = self.removal.choose(self.masks, fraction)
            for index, positions in enumerate(removed):
                self.masks.drop(index, positions, run.optimizer)
            signals = (
                LayerSignals(run.model, self.masks.layers, inputs, targets, run.loss_fn) if self.growth.needs_signals else None
            )
            grown = self.growth.choose(self.masks, [len(positions) for positions in removed], signals, self.generator)
            for index, positions in enumerate(grown):
                self.masks.grow(index, positions, run.optimizer)
            self._set_densities()
            self.induced.append((before, self._loss(run, inputs, targets)))

    @staticmethod
    @torch.no_grad()
    def _loss(run: Run, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        return float(run.loss_fn(run.model(inputs), targets))

    def metrics(self, run):
        metrics = {**super().metrics(run), "redistributions": len(self.induced)}
        if self.induced:
            before, after = self.induced[-1]
            metrics.update(
                loss_before_redistribution=before,
                loss_after_redistribution=after,
                induced_loss_mean=sum(a - b for b, a in self.induced) / len(self.induced),
            )
        return metrics

    def settings(self) -> dict:
        return {**super().settings(), "interval": self.interval, "alpha": self.alpha, "end": self.end}


@register
class RedrRandom(Redistribution):
    """SET: drop the smallest weights of each layer, regrow at random positions in it."""

    name = "redr_random"

    def rules(self):
        return MagnitudeRemoval(), RandomGrowth()


@register
class RedrGradient(Redistribution):
    """RigL: drop the smallest weights of each layer, regrow at its largest gradients."""

    name = "redr_gradient"

    def rules(self):
        return MagnitudeRemoval(), GradientGrowth()


@register
class RedrGradientGlobal(Redistribution):
    """Global RigL: drop per layer, regrow at the largest gradients of the whole network."""

    name = "redr_gradient_global"

    def rules(self):
        return MagnitudeRemoval(), GlobalGradientGrowth()


@register
class RedrLoss(Redistribution):
    """Ertl's Redr-Loss: drop per layer, regrow evenly over the 30% neurons of largest error."""

    name = "redr_loss"

    def rules(self):
        return MagnitudeRemoval(), LossGrowth(neuron_fraction=0.3)


@register
class RedrWoodfisher(Redistribution):
    """Drop the weights of least OBS cost network-wide, moving the rest; regrow at random by layer size.

    ``block_size`` (34 in the paper) sets the Fisher's blocks, ``dampening``
    its λ; unset, λ is the class's ``default_dampening``.
    """

    name = "redr_woodfisher"
    taylor = False
    default_dampening = 1e-4

    def __init__(
        self,
        block_size: Annotated[int, Int(4, 256, log=True)] = 34,
        dampening: Annotated[float | None, Float(1e-6, 10.0, log=True)] = None,
        **schedule,
    ):
        dampening = self.default_dampening if dampening is None else dampening
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        if dampening <= 0:
            raise ValueError(f"dampening (λ) must be positive, got {dampening}")
        self.block_size, self.dampening = block_size, dampening
        super().__init__(**schedule)

    def rules(self):
        return SecondOrderRemoval(self.block_size, self.dampening, taylor=self.taylor), ProportionalRandomGrowth()

    def settings(self) -> dict:
        return {**super().settings(), "block_size": self.block_size, "dampening": self.dampening}


@register
class RedrWoodtaylor(RedrWoodfisher):
    """WoodFisher with the gradient term: the removal cost and the update include F⁻¹ḡ.

    Its Newton step F⁻¹ḡ grows as 1/λ, so it needs far more dampening than
    WoodFisher: on digits λ = 1e-6 diverges and λ = 1 works best, as the
    paper found on KMNIST (section 4.3.3).
    """

    name = "redr_woodtaylor"
    taylor = True
    default_dampening = 1.0
