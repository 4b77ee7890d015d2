"""GraNet: the cubic schedule's end point, constant counts through regeneration, ERK start, and GMP as its special case."""

from __future__ import annotations

import pytest
import torch

from greentune import techniques
from greentune.techniques import Technique
from greentune.techniques.granet import GraNet
from greentune.techniques.masks import WeightMasks, erdos_renyi_densities, prunable_layers

from helpers import make_training, run_to_end


def granet(name="granet", **params):
    return techniques.create([name], {name: params})


def active(training) -> int:
    return sum(int((layer.weight != 0).sum()) for layer in prunable_layers(training.model))


def test_the_schedule_reaches_the_final_sparsity_exactly_at_its_last_pruning_step():
    technique = granet(final_sparsity=0.95, end_fraction=0.5, interval=7, regenerate=False)
    training = make_training(technique, steps=60, model="wide")
    history = {}
    while training.step < 60:
        training._train_step()
        history[training.step] = technique.metrics(training)["sparsity"]
    assert technique.end_step == 28  # t_0 + nΔt with n = floor(30 / 7)
    assert history[27] < 0.95
    assert all(history[step] == pytest.approx(0.95, abs=1 / 11000) for step in range(28, 61))
    assert history[14] == pytest.approx(technique.scheduled_sparsity(14), abs=1 / 11000)


def test_regeneration_keeps_the_active_count_and_regrows_the_largest_gradients_at_zero():
    model = torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.ReLU(), torch.nn.Linear(20, 5))
    masks = WeightMasks(prunable_layers(model))
    masks.prune_global_magnitude(0.8)
    masks.apply()
    model(torch.randn(16, 30)).pow(2).sum().backward()
    gradients = [layer.weight.grad.clone() for layer in masks.layers]
    before = [mask.clone() for mask in masks.masks]
    counts = masks.drop_smallest_magnitude(0.3)
    masks.apply()
    masks.grow_largest(gradients, counts)
    assert masks.active() == [int(mask.sum()) for mask in before]
    for layer, old, new, gradient in zip(masks.layers, before, masks.masks, gradients):
        grown = new & ~old
        assert torch.all(layer.weight[grown] == 0)
        # No inactive position had a larger gradient than the smallest one grown.
        if grown.any():
            assert gradient.abs()[~new].max() <= gradient.abs()[grown].min()


def test_granet_keeps_the_parameter_budget_through_every_regeneration():
    technique = granet(final_sparsity=0.9, end_fraction=0.3, interval=5, regrow_fraction=0.5)
    training = make_training(technique, steps=60, model="wide")
    counts = {}
    while training.step < 60:
        training._train_step()
        counts[training.step] = sum(technique.masks.active())
    after_pruning = [counts[step] for step in range(technique.end_step, 61)]
    assert len(set(after_pruning)) == 1 and after_pruning[0] == round(0.1 * 11000)
    assert active(training) <= after_pruning[0]  # regrown weights start at zero


def test_masks_changed_by_regeneration_after_pruning_ends():
    technique = granet(final_sparsity=0.9, end_fraction=0.3, interval=5, regrow_fraction=0.5)
    training = make_training(technique, steps=40, model="wide")
    while training.step < technique.end_step:
        training._train_step()
    snapshot = [mask.clone() for mask in technique.masks.masks]
    while training.step < technique.end_step + 5:
        training._train_step()
    assert any(not torch.equal(a, b) for a, b in zip(snapshot, technique.masks.masks))


def test_sparse_to_sparse_starts_from_erk_densities():
    technique = granet(initial_sparsity=0.5, final_sparsity=0.9)
    training = make_training(technique, steps=20, model="wide")
    shapes = [layer.weight.shape for layer in technique.masks.layers]
    expected = erdos_renyi_densities(shapes, 0.5)
    assert technique.masks.densities() == pytest.approx(expected, abs=1e-3)
    assert active(training) == pytest.approx(0.5 * 11000, abs=2)


class ReferenceGMP(Technique):
    """Gradual magnitude pruning written out directly: global top-k of |w| every Δt steps."""

    name = "test_reference_gmp"

    def __init__(self, final, interval, end_step):
        self.final, self.interval, self.end_step = final, interval, end_step

    def prepare(self, model, run):
        self.layers = prunable_layers(model)
        self.masks = [torch.ones_like(layer.weight, dtype=torch.bool) for layer in self.layers]
        return model

    @torch.no_grad()
    def after_step(self, run):
        step = run.step
        if step % self.interval == 0 and step <= self.end_step:
            sparsity = self.final * (1 - (1 - step / self.end_step) ** 3)
            weights = torch.cat([layer.weight.abs().flatten() for layer in self.layers])
            keep = round((1 - sparsity) * weights.numel())
            kept = torch.zeros_like(weights, dtype=torch.bool)
            kept[weights.argsort(descending=True)[:keep]] = True
            self.masks = [part.view_as(mask) & mask for part, mask in zip(kept.split([m.numel() for m in self.masks]), self.masks)]
        for layer, mask in zip(self.layers, self.masks):
            layer.weight.mul_(mask)
            buffer = run.optimizer.state.get(layer.weight, {}).get("momentum_buffer")
            if buffer is not None:
                buffer.mul_(mask)


@pytest.mark.parametrize("name, params", [("granet", {"regenerate": False}), ("gmp", {})])
def test_dense_start_without_regeneration_is_plain_gradual_magnitude_pruning(name, params):
    settings = {"steps": 50, "model": "wide", "momentum": 0.9}
    sparse = make_training(granet(name, initial_sparsity=0.0, final_sparsity=0.95, end_fraction=0.6, interval=6, **params), **settings)
    reference = make_training(ReferenceGMP(0.95, 6, 30), **settings)
    assert sparse.technique.end_step == 30
    run_to_end(sparse)
    run_to_end(reference)
    for ours, theirs in zip(sparse.model.parameters(), reference.model.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_gradients_are_charged_dense_only_on_regeneration_steps():
    technique = granet(final_sparsity=0.9, end_fraction=0.5, interval=10)
    training = make_training(technique, steps=40, model="wide")
    while training.step < 25:
        training._train_step()
    layer = technique.masks.layers[0]
    assert technique.layer_densities(training)[layer].gradients < 1.0  # step 26 is not an update step
    while training.step < 29:
        training._train_step()
    assert technique.layer_densities(training)[layer].gradients == 1.0  # step 30 regrows by gradient


@pytest.mark.parametrize(
    "params, message",
    [
        ({"initial_sparsity": 0.6, "final_sparsity": 0.5}, "initial_sparsity <= final_sparsity"),
        ({"start_fraction": 0.6, "end_fraction": 0.5}, "start_fraction < end_fraction"),
        ({"interval": 0}, "interval"),
    ],
)
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(ValueError, match=message):
        GraNet(**params)


@pytest.mark.parametrize("name", ["granet", "gmp"])
@pytest.mark.parametrize("train", [
    {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-3},
    {"optimizer": "adam", "lr": 1e-2, "weight_decay": 1e-3},
])
@pytest.mark.parametrize("selectivity", [1.0, 0.5])  # 0.5: skipped batches step again with the last gradients
def test_pruned_weights_and_their_state_stay_exactly_zero_at_every_step(name, train, selectivity):
    stack = techniques.create(
        [name, "data_selection"],
        {name: {"final_sparsity": 0.9, "end_fraction": 0.5, "interval": 4}, "data_selection": {"selectivity": selectivity}},
    )
    training = make_training(stack, steps=40, model="wide", **train)
    technique = next(member for member in stack.members if member.name == name)
    while training.step < 40:
        training._train_step()
        for layer, mask in technique.masks:
            assert torch.all(layer.weight[~mask] == 0)
            for value in training.optimizer.state[layer.weight].values():
                if value.shape == mask.shape:
                    assert torch.all(value[~mask] == 0)
    assert technique.masks.density() == pytest.approx(0.1, abs=1 / 11000)
