"""Gated layer and channel pruning with polarisation, exported as a static sub-network (seed 004).

Training is dynamic pruning: binary gates (``techniques.gates``) decide per
input whether each residual branch (``granularity="layer"``) or each
channel of a block (``"channel"``) is used. At each epoch's end a block
whose layer gate's static decision is closed stops computing its branch
(its gate keeps deciding, and the block comes back if the decision
reopens), so once polarisation has unified the decisions the training
steps themselves get cheaper. The check reads the decision once an epoch,
not once a batch, because a per-batch check would stall a GPU's queue at
every block. The
polarisation regulariser (Eqs. 8-9) pushes every gate's mean over the batch
to 0 or 1, so the decisions stop depending on the input; the activation
regulariser (Eq. 11) prices open gates to set the pruning rate. ``λ↑``
(``polar_schedule="rising"``, Table 5) leaves polarisation off for the first
125/350 of training, then uses 2/3 of ``polar_weight`` until 190/350, then
all of it.

Export freezes each gate's static decision and removes what it closed:
closed blocks are replaced by their shortcut, closed channels are sliced
out through ``techniques.surgery``; no gate remains. Gated models are the
``gated_resnet*`` models (their ``gated_blocks()``); on a plain
``nn.Sequential`` (the teacher–student MLP) channel gates sit after each
hidden layer and read its output.

Channel gates sit at one of the paper's three positions (Figure 3):
deciding conv1's filters from the block input (``position="before"``) or
from conv1's activations (``"middle"``), or deciding conv2's filters from
the branch output (``"after"``; with two dense layers, the paper's best on
CIFAR-10, Table 6). Export slices "after" channels out of conv2 and adds the
rest into the shortcut at their places; a block with every "after" channel
closed adds nothing and is removed like a closed layer. Gates pool their
input instead of flattening it (Table 1), so their size does not grow with
the feature map.
"""

from __future__ import annotations

import copy
from typing import Annotated

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .base import Run, Technique
from .gates import HEADS, Gate, activation, polarisation
from .registry import register
from .space import Choice, Float
from .surgery import WidthGroup, select_units, width_groups

RISING = ((125 / 350, 0.0), (190 / 350, 2 / 3))  # (until this fraction of training, this share of the weight)


class GatedUnits(nn.Module):
    """Multiplies a layer's outputs by its gate's decisions (a Sequential's channel gate)."""

    def __init__(self, gate: Gate):
        super().__init__()
        self.gate = gate

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs * self.gate(inputs)


@register
class Gating(Technique):
    name = "gating"
    claims = frozenset({"gates"})
    reports = frozenset({"gate_open_ratio", "gate_polarisation", "gate_rate_*", "export_flops", "export_flops_ratio",
                         "export_params"})
    stage = 10

    def __init__(
        self,
        granularity: Annotated[str, Choice(["layer", "channel"])] = "channel",
        head: Annotated[str, Choice(list(HEADS))] = "ste",
        position: Annotated[str, Choice(["before", "middle", "after"])] = "middle",
        depth: Annotated[int, Choice([1, 2])] = 2,
        polar_weight: Annotated[float, Float(0.0, 3.0)] = 1.0,
        act_weight: Annotated[float, Float(0.0, 2.0)] = 0.0,  # the paper sweeps [0, 1]; small tasks need more
        polar_schedule: Annotated[str, Choice(["constant", "rising"])] = "constant",
    ):
        for label, value, valid in (("granularity", granularity, ("layer", "channel")), ("head", head, HEADS),
                                    ("position", position, ("before", "middle", "after")), ("depth", depth, (1, 2)),
                                    ("polar_schedule", polar_schedule, ("constant", "rising"))):
            if value not in valid:
                raise ValueError(f"gating {label} must be one of {list(valid)}, got {value!r}")
        if polar_weight < 0 or act_weight < 0:
            raise ValueError(f"gating weights must be non-negative, got polar {polar_weight}, act {act_weight}")
        self.granularity, self.head, self.position, self.depth = granularity, head, position, depth
        self.polar_weight, self.act_weight, self.polar_schedule = polar_weight, act_weight, polar_schedule
        self.gates: list[Gate] = []
        self._full_flops: float | None = None

    # --- training ---

    def prepare(self, model: nn.Module, run: Run) -> nn.Module:
        device = next(model.parameters()).device
        if hasattr(model, "gated_blocks"):
            for _, block, _ in model.gated_blocks():
                self._gate_block(block)
        elif self.granularity == "channel" and isinstance(model, nn.Sequential):
            model = self._gate_sequential(model)
        else:
            raise ValueError(
                f"{self.granularity} gating needs a model with gated blocks (a gated_resnet* model), not "
                f"{type(model).__name__}; on a plain nn.Sequential use granularity='channel'"
            )
        model.to(device)
        return model

    def _gate_block(self, block: nn.Module) -> None:
        filters = block.conv1.out_channels
        if self.granularity == "layer":
            block.layer_gate = self._new_gate(block.conv1.in_channels, 1)
        else:
            block.gate_position = self.position
            block.channel_gate = self._new_gate(block.conv1.in_channels if self.position == "before" else filters, filters)

    def _gate_sequential(self, model: nn.Sequential) -> nn.Sequential:
        producers = {group.producer for group in width_groups(model)}
        layers = []
        for name, layer in model.named_children():
            layers.append(layer)
            if name in producers:
                width = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
                layers.append(GatedUnits(self._new_gate(width, width)))
        return nn.Sequential(*layers)

    def _new_gate(self, features: int, units: int) -> Gate:
        gate = Gate(features, units, self.head, self.depth)
        self.gates.append(gate)
        return gate

    def on_epoch_end(self, run: Run) -> None:
        if not hasattr(run.model, "gated_blocks"):
            return
        changed = False
        for _, block, _ in run.model.gated_blocks():
            if block.layer_gate is not None:
                closed = not bool(block.layer_gate.decision().any())
                changed |= closed != block.branch_closed
                block.branch_closed = closed
        if changed:
            run.structure_changed()  # the step's FLOPs are counted again

    def polar_weight_at(self, run: Run) -> float:
        if self.polar_schedule == "constant":
            return self.polar_weight
        progress = run.step / run.total_steps
        share = next((share for until, share in RISING if progress < until), 1.0)
        return self.polar_weight * share

    def extra_loss(self, run, outputs, targets):
        means = [mean for mean in (gate.take_batch_mean() for gate in self.gates) if mean is not None]
        if not means:
            return None
        return self.polar_weight_at(run) * polarisation(means) + self.act_weight * activation(means)

    def metrics(self, run):
        rates = [gate.open_rate for gate in self.gates]
        decisions = torch.cat([gate.decision() for gate in self.gates])
        exported = self.export(run.model)
        sample = run.sample_batch()[0][:1]
        flops = _inference_flops(exported, sample)
        if self._full_flops is None:
            self._full_flops = _inference_flops(self._static(run.model, force_open=True), sample)
        return {
            "gate_open_ratio": float(decisions.mean()),
            "gate_polarisation": float(polarisation(rates)),
            **{f"gate_rate_{index}": float(rate.mean()) for index, rate in enumerate(rates)},
            "export_flops": flops,
            "export_flops_ratio": flops / self._full_flops,
            "export_params": sum(parameter.numel() for parameter in exported.parameters()),
        }

    # --- export ---

    def export(self, model: nn.Module) -> nn.Module:
        return self._static(model, force_open=False)

    def _static(self, model: nn.Module, force_open: bool) -> nn.Module:
        """A copy of ``model`` without gates, keeping what the frozen decisions (or all, ``force_open``) left open."""
        model = copy.deepcopy(model)

        def kept(gate: Gate) -> torch.Tensor:
            decision = torch.ones_like(gate.open_rate) if force_open else gate.decision()
            return torch.nonzero(decision).flatten()

        if hasattr(model, "gated_blocks"):
            closed = []
            for name, block, group in model.gated_blocks():
                if block.channel_gate is not None:
                    keep = kept(block.channel_gate)
                    if block.gate_position != "after":
                        _keep_units(model, group, keep)
                    elif not len(keep):
                        closed.append((name, block))
                    elif len(keep) < len(block.channel_gate.open_rate):
                        select_units(model, group, keep)
                        block.branch_channels = keep
                    block.channel_gate = None
                if block.layer_gate is not None:
                    if not len(kept(block.layer_gate)):
                        closed.append((name, block))
                    block.layer_gate = None
                block.branch_closed = False  # a closed block is replaced below; the rest compute
            for name, block in closed:
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent), child, block.bypass())
            return model
        gates = [layer.gate for layer in model if isinstance(layer, GatedUnits)]
        model = nn.Sequential(*[layer for layer in model if not isinstance(layer, GatedUnits)])
        for group, gate in zip(width_groups(model), gates):
            _keep_units(model, group, kept(gate))
        return model

    def __repr__(self) -> str:
        return (f"Gating(granularity={self.granularity!r}, head={self.head!r}, position={self.position!r}, "
                f"depth={self.depth}, polar_weight={self.polar_weight}, act_weight={self.act_weight}, "
                f"polar_schedule={self.polar_schedule!r})")


def _keep_units(model: nn.Module, group: WidthGroup, keep: torch.Tensor) -> None:
    """Slice ``group`` down to ``keep``; with none kept, one unit the consumers ignore (a layer needs a unit).

    All channels closed is not a closed branch: the BatchNorm after the
    consumer still adds its constant, so the consumer must stay.
    """
    if len(keep):
        select_units(model, group, keep)
        return
    select_units(model, group, torch.zeros(1, dtype=torch.long))
    with torch.no_grad():
        for name in group.consumers:
            model.get_submodule(name).weight.zero_()


def _inference_flops(model: nn.Module, sample: torch.Tensor) -> float:
    training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(sample)
    model.train(training)
    return float(counter.get_total_flops())
