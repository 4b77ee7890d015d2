"""The shared mask core: ER/ERK densities, exact counts, masks applied to weights and optimizer state."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from greentune.techniques.masks import WeightMasks, erdos_renyi_densities, prunable_layers, random_mask


def brute_force_er(shapes, density):
    """Reference: density_i = eps * score_i, eps found by bisection, capped at 1."""
    sizes = [math.prod(shape) for shape in shapes]
    scores = [sum(shape) / math.prod(shape) for shape in shapes]
    low, high = 0.0, 1e6
    for _ in range(200):
        eps = (low + high) / 2
        kept = sum(min(1.0, eps * score) * size for score, size in zip(scores, sizes))
        low, high = (eps, high) if kept < density * sum(sizes) else (low, eps)
    return [min(1.0, eps * score) for score in scores]


@pytest.mark.parametrize("density", [0.05, 0.3, 0.5, 0.9])
def test_erk_densities_match_a_bisection_reference_and_keep_the_total(density):
    shapes = [torch.Size(s) for s in [(16, 3, 3, 3), (32, 16, 3, 3), (64, 32, 3, 3), (10, 256)]]
    densities = erdos_renyi_densities(shapes, density)
    assert densities == pytest.approx(brute_force_er(shapes, density), rel=1e-6)
    sizes = [math.prod(shape) for shape in shapes]
    assert sum(d * n for d, n in zip(densities, sizes)) == pytest.approx(density * sum(sizes))
    assert all(0 < d <= 1 for d in densities)


def test_a_small_layer_that_would_exceed_density_one_becomes_dense():
    shapes = [torch.Size((100, 100)), torch.Size((10, 100))]  # the teacher-student 100:100:10 student
    densities = erdos_renyi_densities(shapes, 0.5)
    assert densities[1] == 1.0 or densities[0] < densities[1]
    assert densities[0] * 10000 + densities[1] * 1000 == pytest.approx(0.5 * 11000)


def test_random_masks_have_exact_counts():
    generator = torch.Generator().manual_seed(0)
    mask = random_mask(torch.Size((50, 100)), 0.37, generator)
    assert int(mask.sum()) == round(0.37 * 5000)


def test_masks_zero_weights_gradients_and_optimizer_state():
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
    masks = WeightMasks(prunable_layers(model))
    masks.masks[0] = random_mask(model[0].weight.shape, 0.5, torch.Generator().manual_seed(1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 8)).pow(2).sum().backward()
        masks.apply_to_gradients()
        optimizer.step()
        masks.apply()
        masks.apply_to_optimizer(optimizer)
    pruned = ~masks.masks[0]
    assert torch.all(model[0].weight[pruned] == 0)
    assert torch.all(optimizer.state[model[0].weight]["momentum_buffer"][pruned] == 0)
    assert masks.density() == pytest.approx((24 + 12) / (48 + 12))


@pytest.mark.parametrize("name, params", [("random_pruning", {"sparsity": 0.8}), ("static_sparse", {"density": 0.2})])
@pytest.mark.parametrize("train", [
    {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-3},
    {"optimizer": "adam", "lr": 1e-2, "weight_decay": 1e-3},
])
def test_fixed_masks_keep_pruned_weights_and_their_state_exactly_zero_from_the_gradients_alone(name, params, train):
    from greentune import techniques
    from helpers import make_training, run_to_end

    technique = techniques.create([name], {name: params})
    training = make_training(technique, steps=30, eval_every=30, model="wide", **train)
    final = run_to_end(training)[-1]
    for layer, mask in technique.masks:
        assert torch.all(layer.weight[~mask] == 0) and torch.count_nonzero(layer.weight[mask]) == int(mask.sum())
        for value in training.optimizer.state[layer.weight].values():
            if value.shape == mask.shape:
                assert torch.all(value[~mask] == 0)
    assert final["params"] == sum(int(torch.count_nonzero(p)) for p in training.model.parameters())


def sparse_linear_model_and_masks(density=0.3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
    layers = prunable_layers(model)
    masks = WeightMasks(layers, [random_mask(layer.weight.shape, density, generator) for layer in layers])
    model(torch.randn(4, 8, generator=generator)).pow(2).sum().backward()
    return model, masks


def test_a_mask_changed_in_place_or_replaced_is_what_the_next_zeroing_uses():
    model, masks = sparse_linear_model_and_masks()
    masks.apply_to_gradients()
    counts = masks.active()
    active = masks.masks[0].nonzero()[0].tolist()
    masks.masks[0][tuple(active)] = False  # in place, behind the masks' back
    masks.masks[1] = torch.zeros_like(masks.masks[1])  # replaced
    masks.apply()
    assert model[0].weight[tuple(active)] == 0 and torch.all(model[2].weight == 0)
    assert masks.active() == [counts[0] - 1, 0]
    masks.masks[1] = torch.ones_like(masks.masks[1])  # keeps everything: nothing to zero
    model[2].weight.grad = torch.ones_like(model[2].weight)
    masks.apply_to_gradients()
    assert torch.all(model[2].weight.grad == 1)


# The 6x8 layer converted a row at a time, or five rows then one; the 2x6 one kept as a float mask from 40.
@pytest.mark.parametrize("float_mask_size", [0, 40, 10**9])
def test_every_way_of_zeroing_gives_masked_fill_values(float_mask_size, monkeypatch):
    monkeypatch.setattr("greentune.techniques.masks.FLOAT_MASK_SIZE", float_mask_size)
    model, masks = sparse_linear_model_and_masks()
    expected = [layer.weight.grad.masked_fill(~mask, 0) for layer, mask in masks]
    masks.apply_to_gradients()
    for (layer, _), gradient in zip(masks, expected):
        assert torch.equal(layer.weight.grad, gradient)


def test_switching_refuses_repeated_or_wrong_positions_and_leaves_the_mask_as_it_was():
    model, masks = sparse_linear_model_and_masks()
    before = masks.masks[0].clone()
    active = before.view(-1).nonzero().squeeze(1)
    inactive = (~before).view(-1).nonzero().squeeze(1)
    for positions, grow in [(active[:2], True), (inactive[:2], False), (inactive[[0, 0]], True), (active[[0, 1, 0]], False)]:
        with pytest.raises(ValueError, match="distinct and currently"):
            (masks.grow if grow else masks.drop)(0, positions)
        assert torch.equal(masks.masks[0], before)


def test_a_dropped_weight_loses_its_value_state_and_gradient_and_a_grown_one_starts_from_zero():
    model, masks = sparse_linear_model_and_masks()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer.step()
    weight, mask = model[0].weight, masks.masks[0]
    dropped, grown = mask.view(-1).nonzero()[:3].squeeze(1), (~mask).view(-1).nonzero()[:3].squeeze(1)
    masks.drop(0, dropped, optimizer)
    masks.grow(0, grown, optimizer)
    momentum = optimizer.state[weight]["momentum_buffer"]
    for positions in (dropped, grown):
        assert torch.all(weight.view(-1)[positions] == 0) and torch.all(momentum.view(-1)[positions] == 0)
    # A skipped batch may step again with these gradients, which must not revive what was dropped.
    assert torch.all(weight.grad.view(-1)[dropped] == 0)
    assert not mask.view(-1)[dropped].any() and mask.view(-1)[grown].all()


def test_a_channels_last_conv_switches_the_same_logical_weights_and_state_as_a_contiguous_one():
    """``train: {channels_last: true}`` leaves conv weights without a flat view; positions stay row-major."""
    positions, scores = torch.tensor([0, 5, 17, 100]), torch.arange(8 * 3 * 3 * 3.0).view(8, 3, 3, 3)

    def switched(channels_last: bool):
        conv = nn.Conv2d(3, 8, 3)
        torch.nn.init.normal_(conv.weight, generator=torch.Generator().manual_seed(0))
        if channels_last:
            conv.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9)
        conv.weight.grad = torch.ones_like(conv.weight)
        optimizer.step()
        masks = WeightMasks.of_nonzero([conv])
        masks.drop(0, positions, optimizer)
        masks.grow(0, positions[:2], optimizer)
        masks.grow_largest([scores], [2], optimizer)  # the two largest scores among the inactive: 100, then 17
        return conv.weight.detach().contiguous(), optimizer.state[conv.weight]["momentum_buffer"].contiguous(), masks.masks[0]

    for contiguous, channels_last in zip(switched(False), switched(True)):
        torch.testing.assert_close(channels_last, contiguous, rtol=0, atol=0)
    weight, momentum, mask = switched(True)
    assert mask.is_contiguous() and mask.reshape(-1)[positions].all() and int(mask.sum()) == mask.numel()
    assert not weight.reshape(-1)[positions].any() and not momentum.reshape(-1)[positions].any()
