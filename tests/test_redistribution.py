"""Dynamic sparse training: topology, exact densities, zero new weights, the Fisher inverse, global top-k."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from greentune import techniques
from greentune.techniques import Fixed
from greentune.techniques.masks import WeightMasks, balanced_count, balanced_mask, fan_in_uniform_, prunable_layers, random_mask
from greentune.techniques.redistribution import Redistribution
from greentune.techniques.redistribution_rules import GlobalGradientGrowth, LayerSignals, LossGrowth, SecondOrderRemoval
from greentune.techniques.registry import available
from greentune.techniques.schedules import cosine_decay
from greentune.techniques.selection import largest_positions, random_free_positions, top_positions
from greentune.techniques import woodfisher
from greentune.techniques.woodfisher import BlockFisherInverse

from helpers import make_training, run_to_end

ALGORITHMS = sorted(name for name, cls in available().items() if issubclass(cls, Redistribution))
LAYER_WISE = {"redr_random", "redr_gradient", "redr_loss"}


def test_every_paper_algorithm_is_registered():
    assert ALGORITHMS == [
        "redr_gradient", "redr_gradient_global", "redr_loss", "redr_random", "redr_woodfisher", "redr_woodtaylor",
    ]
    assert "static_sparse" in available()


def test_balanced_topology_gives_each_neuron_one_input_per_partition():
    mask = balanced_mask(torch.Size((40, 100)), 0.07, torch.Generator().manual_seed(0))
    assert mask.sum(1).tolist() == [7] * 40  # round(0.07 * 100) inputs for every neuron
    bounds = [100 * j // 7 for j in range(8)]
    for row in mask:
        partitions = [int(row[low:high].sum()) for low, high in zip(bounds[:-1], bounds[1:])]
        assert partitions == [1] * 7
    assert int(mask.sum()) == balanced_count(mask.shape, 0.07)


def test_fan_in_initialisation_scales_by_active_inputs():
    layer = nn.Linear(50, 30)
    mask = balanced_mask(layer.weight.shape, 0.2, torch.Generator().manual_seed(1))
    fan_in_uniform_(layer, mask, torch.Generator().manual_seed(2))
    assert torch.all(layer.weight[~mask] == 0)
    assert layer.weight.abs().max() <= 1 / 10 and layer.weight.abs().max() > 0.8 / 10  # k = 10 inputs
    assert layer.bias.abs().max() <= 10**-0.5


def redistribution_log(technique):
    """Wraps ``redistribute`` to record α and the per-layer active counts after each call."""
    log = []
    original = technique.redistribute

    def recorded(run, fraction):
        before = [mask.clone() for mask in technique.masks.masks]
        original(run, fraction)
        moved = sum(int((mask & ~old).sum()) for old, mask in zip(before, technique.masks.masks))
        log.append((fraction, technique.masks.active(), moved))

    technique.redistribute = recorded
    return log


@pytest.mark.parametrize("name", ALGORITHMS)
def test_redistribution_keeps_exact_density_through_the_schedule(name):
    technique = techniques.create([name], {name: {"density": 0.2}})
    log = redistribution_log(technique)
    training = make_training(technique, steps=60, eval_every=20, optimizer="adam", lr=0.01)  # 10 steps an epoch
    initial = technique.masks.active()
    metrics = run_to_end(training)[-1]

    # one redistribution per epoch until 3/4 of training: after epochs 1-4
    assert [round(fraction, 6) for fraction, _, _ in log] == [round(cosine_decay(0.5, step, 45), 6) for step in (10, 20, 30, 40)]
    assert metrics["redistributions"] == 4 and metrics["density"] == pytest.approx(sum(initial) / (5000 + 500))
    for _, active, moved in log:
        assert sum(active) == sum(initial) and moved > 0
        if name in LAYER_WISE:
            assert active == initial
    for layer, mask in technique.masks:
        assert torch.all(layer.weight[~mask] == 0)
        state = training.optimizer.state[layer.weight]
        assert torch.all(state["exp_avg"][~mask] == 0) and torch.all(state["exp_avg_sq"][~mask] == 0)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_new_weights_start_at_zero_with_zero_optimizer_state(name):
    technique = techniques.create([name], {name: {"density": 0.2}})
    training = make_training(technique, steps=20, eval_every=20, optimizer="adam", lr=0.01)
    run_to_end(training)  # Adam state now exists for every weight
    before = [mask.clone() for mask in technique.masks.masks]
    technique.removal.begin(technique.masks, 5)
    for _ in range(5):
        training.optimizer.zero_grad()
        training.loss_fn(training.model(training.train_data.inputs[:20]), training.train_data.targets[:20]).backward()
        technique.after_backward(training)
    technique.redistribute(training, 0.5)
    for layer, old, mask in zip(technique.masks.layers, before, technique.masks.masks):
        new = mask & ~old
        assert new.any()
        assert torch.all(layer.weight[new] == 0)
        assert torch.all(training.optimizer.state[layer.weight]["exp_avg"][new] == 0)


@pytest.mark.parametrize("name", ["redr_random", "redr_gradient"])
def test_measuring_a_redistribution_leaves_batchnorm_statistics_as_training_left_them(name):
    def model():
        return nn.Sequential(nn.Linear(100, 50), nn.BatchNorm1d(50), nn.ReLU(), nn.Linear(50, 10))

    technique = techniques.create([name], {name: {"density": 0.3}})
    training = make_training(technique, steps=20, eval_every=20, model=model)
    run_to_end(training)
    training.model.train()  # as in the training window, where redistributions happen
    statistics = [buffer.clone() for buffer in training.model.buffers()]
    count = len(technique.induced)
    technique.redistribute(training, 0.5)  # three passes in train mode: loss before, layer signals, loss after
    assert len(technique.induced) == count + 1
    assert all(torch.equal(buffer, saved) for buffer, saved in zip(training.model.buffers(), statistics))


def test_sherman_morrison_equals_the_direct_inverse_of_the_dampened_fisher():
    generator = torch.Generator().manual_seed(0)
    size, block, samples, dampening = 75, 34, 20, 1e-2  # the last block is partial
    gradients = torch.randn(samples, size, generator=generator, dtype=torch.float64) * 0.3
    fisher = BlockFisherInverse(size, block, dampening, samples, dtype=torch.float64)
    for gradient in gradients:
        fisher.add(gradient)
    for start in range(0, size, block):
        g = gradients[:, start : start + block]
        direct = torch.linalg.inv(dampening * torch.eye(g.shape[1], dtype=torch.float64) + g.T @ g / samples)
        torch.testing.assert_close(fisher.dense()[start : start + block, start : start + block], direct)
    assert torch.all(fisher.dense()[:block, block:] == 0)  # nothing outside the blocks


def test_sherman_morrison_in_float32_stays_within_float32_tolerance():
    gradients = torch.randn(50, 34, generator=torch.Generator().manual_seed(1))
    fisher = BlockFisherInverse(34, 34, 0.1, 50)
    for gradient in gradients:
        fisher.add(gradient)
    direct = torch.linalg.inv(0.1 * torch.eye(34, dtype=torch.float64) + gradients.double().T @ gradients.double() / 50)
    torch.testing.assert_close(fisher.dense().double(), direct, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("taylor", [False, True])
@pytest.mark.parametrize("chunk", [1, 4096])  # blocks solved one batch at a time, or all in one
def test_obs_removal_solves_the_constrained_quadratic_exactly(taylor, chunk, monkeypatch):
    """Against the KKT system of min gᵀδ + ½δᵀFδ subject to w_Q + δ_Q = 0, per block."""
    monkeypatch.setattr(woodfisher, "SOLVE_CHUNK", chunk)
    generator = torch.Generator().manual_seed(2)
    size, block, samples = 20, 10, 30
    gradients = torch.randn(samples, size, generator=generator, dtype=torch.float64)
    fisher = BlockFisherInverse(size, block, 0.5, samples, dtype=torch.float64)
    for gradient in gradients:
        fisher.add(gradient)
    weights = torch.randn(size, generator=generator, dtype=torch.float64)
    removed = torch.zeros(size, dtype=torch.bool)
    removed[[1, 4, 12]] = True
    result = fisher.remove(weights, removed, taylor)

    mean = gradients.mean(0) if taylor else torch.zeros(size, dtype=torch.float64)
    for start in (0, 10):
        part = slice(start, start + block)
        F = 0.5 * torch.eye(block, dtype=torch.float64) + gradients[:, part].T @ gradients[:, part] / samples
        chosen = removed[part].nonzero().squeeze(1)
        E = torch.eye(block, dtype=torch.float64)[:, chosen]
        kkt = torch.cat([torch.cat([F, E], 1), torch.cat([E.T, torch.zeros(len(chosen), len(chosen), dtype=torch.float64)], 1)])
        rhs = torch.cat([-mean[part], -weights[part][chosen]])
        delta = torch.linalg.solve(kkt, rhs)[:block]
        torch.testing.assert_close(result[part], (weights[part] + delta).masked_fill(removed[part], 0))
    assert torch.all(result[removed] == 0)


def test_a_single_removal_costs_what_the_quadratic_model_says():
    generator = torch.Generator().manual_seed(3)
    gradients = torch.randn(40, 8, generator=generator, dtype=torch.float64)
    fisher = BlockFisherInverse(8, 8, 0.1, 40, dtype=torch.float64)
    for gradient in gradients:
        fisher.add(gradient)
    F = torch.linalg.inv(fisher.dense())
    weights = torch.randn(8, generator=generator, dtype=torch.float64)
    costs = fisher.removal_costs(weights, taylor=False)
    for q in range(8):
        removed = torch.zeros(8, dtype=torch.bool)
        removed[q] = True
        delta = fisher.remove(weights, removed, taylor=False) - weights
        assert float(0.5 * delta @ F @ delta) == pytest.approx(float(costs[q]))


def small_network_with_masks(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 9), nn.ReLU(), nn.Linear(9, 7), nn.ReLU(), nn.Linear(7, 5))
    generator = torch.Generator().manual_seed(seed)
    layers = prunable_layers(model)
    masks = WeightMasks(layers, [random_mask(layer.weight.shape, 0.4, generator) for layer in layers])
    masks.apply()
    return model, masks


def test_layer_signals_give_the_dense_weight_gradient_of_autograd():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 4))
    inputs, targets = torch.randn(6, 2, 5, 5), torch.randint(0, 4, (6,))
    loss_fn = nn.functional.cross_entropy
    signals = LayerSignals(model, prunable_layers(model), inputs, targets, loss_fn)
    assert all(layer.weight.grad is None for layer in prunable_layers(model))  # no weight gradient formed
    loss_fn(model(inputs), targets).backward()
    for index, layer in enumerate(prunable_layers(model)):
        torch.testing.assert_close(signals.weight_gradient(index), layer.weight.grad)
        neurons = torch.tensor([2, 0])
        torch.testing.assert_close(signals.weight_gradient(index, neurons), layer.weight.grad[neurons])
        torch.testing.assert_close(signals.neuron_errors(index), layer.bias.grad.abs())


def test_global_top_k_growth_matches_a_dense_reference():
    model, masks = small_network_with_masks()
    inputs, targets = torch.randn(16, 12), torch.randint(0, 5, (16,))
    loss_fn = nn.functional.cross_entropy
    signals = LayerSignals(model, masks.layers, inputs, targets, loss_fn)
    chosen = GlobalGradientGrowth().choose(masks, [6, 5, 4], signals, None)

    loss_fn(model(inputs), targets).backward()
    scores = torch.cat([layer.weight.grad.abs().masked_fill(mask, -1).view(-1) for layer, mask in masks])
    reference = set(torch.topk(scores, 15).indices.tolist())
    offsets = [0, 9 * 12, 9 * 12 + 7 * 9]
    picked = {offset + position for offset, positions in zip(offsets, chosen) for position in positions.tolist()}
    assert picked == reference
    assert sum(len(positions) for positions in chosen) == 15


def test_loss_growth_spreads_new_weights_evenly_over_the_neurons_of_largest_error():
    model, masks = small_network_with_masks(seed=1)
    inputs, targets = torch.randn(16, 12), torch.randint(0, 5, (16,))
    signals = LayerSignals(model, masks.layers, inputs, targets, nn.functional.cross_entropy)
    chosen = LossGrowth(0.3).choose(masks, [7, 6, 1], signals, None)
    for index, (positions, count) in enumerate(zip(chosen, [7, 6, 1])):
        fan_in = masks.masks[index].shape[1]
        neurons = (positions // fan_in).tolist()
        top = set(torch.topk(signals.neuron_errors(index), round(0.3 * masks.masks[index].shape[0])).indices.tolist())
        assert len(positions) == count and set(neurons) <= top
        shares = [neurons.count(neuron) for neuron in top]
        assert max(shares) - min(shares) <= 1
        assert not masks.masks[index].view(-1)[positions].any()


def test_static_sparse_never_changes_its_topology_and_keeps_pruned_weights_zero():
    technique = techniques.create(["static_sparse"], {"static_sparse": {"density": 0.1}})
    training = make_training(technique, steps=40, eval_every=40, optimizer="adam", lr=0.01)
    initial = [mask.clone() for mask in technique.masks.masks]
    metrics = run_to_end(training)[-1]
    assert metrics["flops_sparse"] / metrics["flops"] == pytest.approx(0.1, abs=0.01)  # both layers at density 0.1
    for layer, mask, start in zip(technique.masks.layers, technique.masks.masks, initial):
        assert torch.equal(mask, start)
        assert torch.all(layer.weight[~mask] == 0)


def test_a_checkpoint_in_the_middle_of_gathering_the_fisher_resumes_identically(tmp_path):
    def build():
        technique = techniques.create(["redr_woodfisher"], {"redr_woodfisher": {"density": 0.2, "block_size": 8}})
        return make_training(technique, steps=40, eval_every=15, optimizer="adam", lr=0.01)

    expected = run_to_end(build())[-1]
    first = build()
    next(first.evaluations())  # step 15: half way through the second epoch's Fisher
    first.save(tmp_path / "training.pt")
    resumed = build()
    resumed.load(tmp_path / "training.pt")
    final = run_to_end(resumed)[-1]
    assert final["quality"] == pytest.approx(expected["quality"], rel=1e-6)
    assert final["loss_after_redistribution"] == pytest.approx(expected["loss_after_redistribution"], rel=1e-6)


def test_induced_loss_is_reported_and_bad_settings_are_refused():
    technique = techniques.create(["redr_gradient"], {"redr_gradient": {"density": 0.2}})
    metrics = run_to_end(make_training(technique, steps=40, eval_every=40))[-1]
    assert {"loss_before_redistribution", "loss_after_redistribution", "induced_loss_mean"} <= set(metrics)
    with pytest.raises(ValueError, match="density"):
        techniques.create(["redr_random"], {"redr_random": {"density": 0.0}})
    with pytest.raises(ValueError, match="interval"):
        techniques.create(["redr_random"], {"redr_random": {"interval": 0}})
    with pytest.raises(ValueError, match="dampening"):
        techniques.create(["redr_woodtaylor"], {"redr_woodtaylor": {"dampening": -1.0}})
    assert techniques.create(["redr_woodtaylor"]).dampening == 1.0


@pytest.mark.parametrize("preset", ["redistribution-digits", "redistribution-kmnist"])
def test_the_presets_are_a_grid_of_every_algorithm_and_both_dense_baselines(preset):
    from greentune.search.config import load_search
    from greentune.search.presets import preset_path

    search = load_search(preset_path(preset))
    # a grid of one point per approach, repeated over seeds: nothing is left to sample
    assert search.settings.searcher.name == "grid" and search.settings.repeats > 1
    assert search.settings.budgets.num_trials == len(search.approaches)
    assert all(isinstance(domain, Fixed) for a in search.approaches for d in a.space.values() for domain in d.values())
    used = {technique for approach in search.approaches for technique in approach.techniques}
    assert used == {"baseline", "static_sparse", *ALGORITHMS}
    models = {approach.model for approach in search.approaches}
    assert "full" in models and any(model.startswith("param-equivalent-") for model in models)


@pytest.mark.parametrize("size", [5000, 300_000])  # a full selection, and the sampled threshold
def test_largest_positions_equals_topk_including_ties_and_minus_infinity(size):
    generator = torch.Generator().manual_seed(4)
    scores = torch.randn(size, generator=generator)
    scores[torch.randint(0, size, (size // 6,), generator=generator)] = -math.inf
    scores[:300] = scores[300]  # a block of ties
    for k in (1, 17, 300, size // 2, size - 1):
        picked = largest_positions(scores, k)
        assert len(picked) == len(set(picked.tolist())) == k
        assert torch.equal(scores[picked].sort().values, torch.topk(scores, k).values.sort().values)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])  # NumPy's selection, or topk where NumPy has no type
@pytest.mark.parametrize("largest", [True, False])
def test_top_positions_are_topks_set_in_either_direction(dtype, largest):
    scores = torch.randn(3000, generator=torch.Generator().manual_seed(5)).to(dtype)
    for k in (1, 40, 2999):
        picked = top_positions(scores, k, largest=largest)
        assert len(set(picked.tolist())) == k
        expected = torch.topk(scores, k, largest=largest).values
        assert torch.equal(scores[picked].sort().values, expected.sort().values)


def test_largest_positions_lowers_a_threshold_that_the_sample_misplaced():
    scores = torch.zeros(300_000)
    scores[:: 300_000 // 2**14] = 1.0  # every sampled score is high, almost no other is
    scores[5] = 0.5
    picked = largest_positions(scores, 20_000)
    assert len(set(picked.tolist())) == 20_000 and 5 in picked.tolist()


def test_random_free_positions_are_distinct_free_and_uniform():
    mask = torch.zeros(40, 50, dtype=torch.bool)
    mask[:, :10] = True
    generator = torch.Generator().manual_seed(5)
    hits = torch.zeros(2000)
    for _ in range(300):
        picked = random_free_positions(mask, 100, generator)
        assert len(set(picked.tolist())) == 100 and not mask.view(-1)[picked].any()
        hits[picked] += 1
    free = hits[~mask.view(-1)]
    assert free.mean() == pytest.approx(300 * 100 / 1600) and free.std() < 0.3 * free.mean()


def test_the_fisher_inverse_keeps_one_triangle_per_block_and_unpacking_in_chunks_changes_nothing(monkeypatch):
    generator = torch.Generator().manual_seed(6)
    size, block, samples = 7 * 10 + 3, 10, 12  # eight blocks, the last partial
    gradients = torch.randn(samples, size, generator=generator)
    weights = torch.randn(size, generator=generator)
    removed = torch.rand(size, generator=generator) < 0.3
    results = []
    for chunk in (1, 3, 4096):
        monkeypatch.setattr(woodfisher, "SOLVE_CHUNK", chunk)
        fisher = BlockFisherInverse(size, block, 0.1, samples)
        for gradient in gradients:
            fisher.add(gradient)
        assert fisher.packed.shape == (8, block * (block + 1) // 2)
        results.append([fisher.dense(), fisher.removal_costs(weights, True), fisher.remove(weights, removed, True)])
    dense = results[0][0]
    assert torch.equal(dense, dense.T)
    for result in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(result, results[0]))


@pytest.mark.parametrize("taylor", [False, True])
def test_second_order_removal_drops_the_globally_cheapest_weights_and_moves_the_rest_by_obs(taylor):
    model, masks = small_network_with_masks(seed=2)
    removal = SecondOrderRemoval(block_size=4, dampening=0.5, taylor=taylor)
    removal.begin(masks, samples=3)
    for _ in range(3):
        model.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(8, 12)), torch.randint(0, 5, (8,))).backward()
        masks.apply_to_gradients()
        removal.observe(masks)
    fishers, actives = removal.fishers, removal.active
    weights = [layer.weight.detach().view(-1)[active].clone() for layer, active in zip(masks.layers, actives)]
    costs = torch.cat([fisher.removal_costs(w, taylor) for fisher, w in zip(fishers, weights)])
    count = round(0.3 * sum(masks.active()))
    cheapest = set(torch.topk(-costs, count).indices.tolist())

    chosen = removal.choose(masks, 0.3)
    offset = 0
    for fisher, active, w, layer, positions in zip(fishers, actives, weights, masks.layers, chosen):
        removed = torch.isin(active, positions)
        assert {offset + i for i in removed.nonzero().squeeze(1).tolist()} == cheapest & set(range(offset, offset + len(active)))
        assert torch.equal(layer.weight.detach().view(-1)[active], fisher.remove(w, removed, taylor))
        offset += len(active)
    assert sum(len(positions) for positions in chosen) == count


@pytest.mark.parametrize("name, params", [("redr_woodfisher", {}), ("redr_gradient", {}), ("granet", {"interval": 10})])
def test_a_channels_last_conv_model_moves_its_weights_and_keeps_the_pruned_ones_zero(name, params):
    """A channels-last conv weight has no flat view; removal, OBS updates and growth write through its coordinates."""

    def model():
        return nn.Sequential(nn.Unflatten(1, (4, 5, 5)), nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 10))

    technique = techniques.create([name], {name: params})
    training = make_training(technique, steps=40, eval_every=20, model=model, channels_last=True)
    start = [mask.clone() for mask in technique.masks.masks]
    history = run_to_end(training)
    assert technique.masks.layers[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert any(not torch.equal(before, mask) for before, mask in zip(start, technique.masks.masks)), "the topology moved"
    for layer, mask in technique.masks:
        assert not layer.weight[~mask].any()
    assert math.isfinite(history[-1]["quality"])
