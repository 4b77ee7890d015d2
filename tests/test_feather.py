"""Feather: the power thresholding operator, θ-scaled straight-through gradients, both backbones' schedules, export."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from greentune import techniques
from greentune.techniques.feather import (
    AdaptiveSparsityLoss,
    Feather,
    FlatWeights,
    SparsityLoss,
    solve_shift,
    threshold_weights,
)
from greentune.techniques.nearby_selection import NearbySelection

from helpers import make_training, run_to_end


def feather(**params) -> Feather:
    return techniques.create(["feather"], {"feather": params})


def formula(weight: torch.Tensor, threshold: float, power: float) -> torch.Tensor:
    """Eq. 3 of the paper, term by term, in float64."""
    weight = weight.double()
    magnitude = weight.abs()
    shrunk = torch.sign(weight) * (magnitude.pow(power) - threshold**power).clamp_min(0).pow(1 / power)
    return torch.where(magnitude > threshold, shrunk, 0.0)


@pytest.mark.parametrize("power", [1.0, 3.0, 8.0])
def test_the_operator_matches_the_formula(power):
    weight = torch.randn(2000, generator=torch.Generator().manual_seed(0))
    result = threshold_weights(weight, torch.tensor(0.7), power)
    torch.testing.assert_close(result.double(), formula(weight, 0.7, power), rtol=1e-5, atol=1e-6)
    assert torch.equal(result == 0, weight.abs() <= 0.7)


def test_power_one_is_soft_and_large_powers_approach_hard_thresholding():
    weight = torch.randn(2000, generator=torch.Generator().manual_seed(1))
    threshold = torch.tensor(0.5)
    soft = torch.sign(weight) * (weight.abs() - 0.5).clamp_min(0)
    hard = weight * (weight.abs() > 0.5)
    torch.testing.assert_close(threshold_weights(weight, threshold, 1.0), soft)
    assert torch.equal(threshold_weights(weight, threshold, math.inf), hard)
    gaps = [float((threshold_weights(weight, threshold, power) - hard).abs().mean()) for power in (1, 3, 10, 100)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-3 < gaps[0]


@pytest.mark.parametrize("power", [1.0, 3.0, "hard"])
def test_gradients_pass_straight_through_and_are_scaled_by_theta_exactly_where_pruned(power):
    technique = feather(sparsity=0.5, power=power, pruned_gradient_scale=0.3, target_fraction=0.1)
    training = make_training(technique, steps=20, model="wide")
    for _ in range(3):
        training._train_step()
    layer = technique.layers[0]
    upstream = torch.randn(layer.weight.shape, generator=torch.Generator().manual_seed(3))
    layer.dense_weight.grad, layer.weight.grad = None, upstream.clone()  # ∂L/∂P_T(w), as a backward pass leaves it
    technique.after_backward(training)
    pruned = layer.dense_weight.detach().abs() <= technique.thresholds.threshold(0)
    assert 0.2 < float(pruned.float().mean()) < 0.8
    assert torch.equal(layer.dense_weight.grad[pruned], 0.3 * upstream[pruned])
    assert torch.equal(layer.dense_weight.grad[~pruned], upstream[~pruned])
    assert layer.weight.grad is None


def test_the_model_computes_with_thresholded_weights_and_trains_the_dense_ones():
    training = make_training(feather(sparsity=0.8, target_fraction=0.1), steps=20, model="wide")
    for _ in range(5):
        training._train_step()
    layer = training.model[0]
    inputs = training.held_out.inputs[:4]
    threshold = training.technique.thresholds.threshold(0)
    expected = nn.functional.linear(inputs, threshold_weights(layer.dense_weight, threshold, 3.0), layer.bias)
    torch.testing.assert_close(layer(inputs), expected)
    assert any(parameter is layer.dense_weight for parameter in training.optimizer.param_groups[0]["params"])


@pytest.mark.parametrize("backbone", ["global", "asl"])
def test_the_schedule_reaches_the_target_sparsity_at_the_scheduled_step(backbone):
    steps, fraction = 40, 0.5
    technique = feather(sparsity=0.9, target_fraction=fraction, backbone=backbone)
    training = make_training(technique, steps=steps, model="wide")
    total = sum(layer.weight.numel() for layer in technique.layers)
    sparsities = []
    for _ in range(steps - 1):
        training._train_step()
        sparsities.append(training.technique.metrics(training)["sparsity"])
    target_step = round(fraction * steps)
    assert sparsities[target_step // 2 - 1] < 0.85
    for sparsity in sparsities[target_step - 1 :]:
        assert sparsity == pytest.approx(0.9, abs=len(technique.layers) / total)


def test_asl_learns_different_sparsities_per_layer():
    technique = feather(sparsity=0.9, target_fraction=0.5, backbone="asl")
    training = make_training(technique, steps=60, model="wide")
    for _ in range(59):
        training._train_step()
    state = technique.thresholds
    per_layer = [float((layer.dense_weight.abs() <= state.threshold(i).detach()).float().mean()) for i, layer in enumerate(technique.layers)]
    assert per_layer[0] != pytest.approx(per_layer[1], abs=0.02)  # 100x100 and 100x10 are pruned differently


@pytest.mark.parametrize("start", [-15.0, 0.0, 0.4, 15.0])
@pytest.mark.parametrize("sparsity", [0.3, 0.9, 0.99])
def test_asl_correction_makes_the_weighted_mean_sparsity_exact_from_any_previous_shift(start, sparsity):
    relative, sizes = [-0.7, 0.2, 1.3], [2000, 400, 10]
    shift = solve_shift(relative, sizes, sparsity, start)
    mean = sum(size * math.erf(max(r + shift, 0.0) / math.sqrt(2)) for r, size in zip(relative, sizes)) / sum(sizes)
    assert mean == pytest.approx(sparsity, abs=1e-9)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.97])
def test_asl_sparsity_loss_has_the_value_and_gradient_of_its_formula(sparsity):
    relative = torch.tensor([-0.4, 0.0, 0.3, 1.2, 2.5], requires_grad=True)
    sizes = [30.0, 1000.0, 250.0, 4.0, 800.0]
    loss = SparsityLoss.apply(relative, sizes, sparsity, 10.0)
    (2 * loss).backward()  # the backward pass scales by the gradient it receives
    reference = relative.detach().double().requires_grad_()
    mean = (torch.erf(reference.clamp_min(0.0) / math.sqrt(2)) * torch.tensor(sizes, dtype=torch.float64)).sum() / sum(sizes)
    expected = 10.0 * (mean - sparsity) ** 2
    expected.backward()
    assert loss.detach().item() == pytest.approx(expected.detach().item(), rel=1e-6, abs=1e-12)
    torch.testing.assert_close(relative.grad, 2 * reference.grad.float())
    assert relative.grad[0] == 0 and relative.grad[1] == 0  # no gradient at or below zero, as clamp's


def test_writing_back_keeps_the_function_and_leaves_plain_sparse_parameters():
    technique = feather(sparsity=0.9, target_fraction=0.5)
    training = make_training(technique, steps=30, model="wide")
    for _ in range(20):
        training._train_step()
    inputs = training.held_out.inputs[:8]
    with torch.no_grad():
        before = training.model(inputs)
        after = technique.export(training.model)(inputs)
    torch.testing.assert_close(after, before)
    assert all(isinstance(layer.weight, nn.Parameter) and not hasattr(layer, "dense_weight") for layer in technique.layers)


def test_the_run_ends_truly_sparse_at_the_reported_sparsity():
    technique = feather(sparsity=0.9, target_fraction=0.5)
    training = make_training(technique, steps=30, eval_every=30, model="wide")
    final = run_to_end(training)[-1]
    layers = technique.layers
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers)
    assert zeros / sum(layer.weight.numel() for layer in layers) == pytest.approx(final["sparsity"])
    assert final["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert final["params"] == sum(int(torch.count_nonzero(p)) for p in training.model.parameters())
    assert {id(p) for p in training.optimizer.param_groups[0]["params"]} == {id(p) for p in training.model.parameters()}


def test_a_checkpoint_written_before_the_solver_kept_its_shift_still_resumes(tmp_path):
    technique = feather(sparsity=0.9, target_fraction=0.5, backbone="asl")
    training = make_training(technique, steps=40, eval_every=20, model="wide")
    next(training.evaluations())
    del technique.thresholds.shift, technique._counted  # what an earlier release's checkpoint lacks
    training.save(tmp_path / "old.pt")
    resumed = make_training(feather(sparsity=0.9, target_fraction=0.5, backbone="asl"), steps=40, eval_every=20, model="wide")
    resumed.load(tmp_path / "old.pt")
    assert run_to_end(resumed)[-1]["sparsity"] == pytest.approx(0.9, abs=1e-3)


def test_the_densities_mapping_is_new_exactly_when_a_kept_count_changes():
    technique = feather(sparsity=0.9, target_fraction=0.25)
    training = make_training(technique, steps=80, model="wide")
    changes = reused = 0
    for _ in range(79):
        before, counts = technique.layer_densities(training), list(technique.kept)
        training._train_step()
        after = technique.layer_densities(training)
        changed = technique.kept != counts
        assert (after is not before) == changed
        assert [density.weights * layer.weight.numel() for layer, density in after.items()] == pytest.approx(technique.kept)
        changes, reused = changes + changed, reused + (not changed)
    assert changes > 10 and reused > 10  # the schedule moves the counts, then they mostly hold


def test_feather_flops_use_sparse_forwards_and_dense_weight_gradients():
    training = make_training(feather(sparsity=0.9, target_fraction=0.5), steps=40, eval_every=40, model="wide")
    final = run_to_end(training)[-1]
    assert final["inference_flops"] == pytest.approx(0.1 * final["inference_flops_dense"], rel=1e-3)
    # At least the dense weight gradient (a third of a linear layer's work) is always paid.
    assert final["flops"] / 3 < final["flops_sparse"] < final["flops"]


@pytest.mark.parametrize("params", [{"pruned_gradient_scale": 0.5}, {"backbone": "asl", "power": "hard"}])
def test_a_checkpoint_resumes_exactly_though_the_flat_buffers_are_not_saved(params, tmp_path):
    def training():
        return make_training(feather(sparsity=0.9, target_fraction=0.5, **params), steps=40, eval_every=20, model="wide")

    expected = training()
    run_to_end(expected)
    first = training()
    next(first.evaluations())
    first.save(tmp_path / "training.pt")
    resumed = training()
    resumed.load(tmp_path / "training.pt")
    assert resumed.technique.weights.magnitudes is None  # derived, rebuilt on the next step
    run_to_end(resumed)
    for layer, reference in zip(resumed.technique.layers, expected.technique.layers):
        assert torch.equal(layer.weight, reference.weight)


@pytest.mark.parametrize("backbone", ["global", "asl"])
def test_the_tensor_path_for_accelerators_agrees_with_the_numpy_path(backbone, monkeypatch):
    def trained(on_cpu: bool) -> Feather:
        monkeypatch.setattr(FlatWeights, "on_cpu", property(lambda self: on_cpu))
        monkeypatch.setattr(NearbySelection, "on_cpu", property(lambda self: on_cpu))
        technique = feather(sparsity=0.9, target_fraction=0.5, pruned_gradient_scale=0.5, backbone=backbone)
        training = make_training(technique, steps=30, model="wide")
        for _ in range(20):
            training._train_step()
        return technique

    numpy_path, tensor_path = trained(True), trained(False)
    assert [int(count) for count in tensor_path.kept] == numpy_path.kept
    assert all(isinstance(count, torch.Tensor) for count in tensor_path.kept)  # no synchronisation to read them
    for layer, reference in zip(tensor_path.layers, numpy_path.layers):
        assert torch.equal(layer.weight, reference.weight) and torch.equal(layer.dense_weight, reference.dense_weight)


def test_asl_leaves_the_task_gradient_on_the_device_for_the_update_to_read():
    """``meta`` stands in for a GPU: the copy to the host that ASL+ made after every backward pass fails on it.
    The update reads the gradient together with the selection's counts instead, in one copy a step."""
    layers = [nn.Linear(4, 3, device="meta"), nn.Linear(3, 2, device="meta")]
    for layer in layers:
        layer.dense_weight = layer.weight
    state = AdaptiveSparsityLoss(layers, loss_weight=1.0, learning_rate=0.1)
    weights = [layer.dense_weight for layer in layers]
    state.after_backward([torch.ones_like(w) for w in weights], weights, [torch.ones_like(w, dtype=torch.bool) for w in weights])
    assert state.task_gradient.device.type == "meta" and state.relative.grad is None


@pytest.mark.parametrize("power", [1.0, 2.0, 3.0, 5.0])
def test_powers_of_the_kept_weights_alone_match_powers_of_all_weights_bit_for_bit(power, monkeypatch):
    """ATen rounds a power differently in its vector loop's tail; the padded buffers leave no tail to differ in."""
    generator = torch.Generator().manual_seed(int(power))

    def thresholded(on_cpu: bool, sizes: list[int], thresholds: list[torch.Tensor]) -> list[torch.Tensor]:
        monkeypatch.setattr(FlatWeights, "on_cpu", property(lambda self: on_cpu))
        layers = []
        for size in sizes:
            layer = nn.Linear(size, 1)
            del layer.weight
            layer.dense_weight = nn.Parameter(torch.randn(1, size, generator=torch.Generator().manual_seed(size)))
            layer.weight = torch.empty(1, size)
            layers.append(layer)
        weights = FlatWeights(layers)
        with torch.no_grad():
            weights.gather()
            weights.write_thresholded(thresholds, power)
        return [layer.weight for layer in layers]

    for _ in range(20):
        sizes = torch.randint(1, 700, (3,), generator=generator).tolist()
        thresholds = [torch.rand((), generator=generator) * 2 for _ in sizes]
        for numpy_part, tensor_part in zip(thresholded(True, sizes, thresholds), thresholded(False, sizes, thresholds)):
            assert torch.equal(numpy_part, tensor_part), sizes


def test_channels_last_convolutions_are_thresholded_in_their_logical_order():
    def model():
        return nn.Sequential(nn.Unflatten(1, (4, 5, 5)), nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 10))

    technique = feather(sparsity=0.8, target_fraction=0.5)
    training = make_training(technique, steps=20, model=model, channels_last=True)
    for _ in range(12):
        training._train_step()
    conv = technique.layers[0]
    assert conv.dense_weight.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last), "the forward pass gets P_T in the model's layout"
    threshold = technique.thresholds.threshold(0)
    for layer in technique.layers:
        torch.testing.assert_close(layer.weight, threshold_weights(layer.dense_weight.detach(), threshold, 3.0))
    assert technique.metrics(training)["sparsity"] == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize("params", [{}, {"pruned_gradient_scale": 0.5}, {"backbone": "asl"}])
def test_a_channels_last_conv_trains_as_the_contiguous_one_does(params):
    """Fused optimizers read a gradient in its parameter's memory layout; one in another layout would be scrambled."""

    def model():
        return nn.Sequential(nn.Unflatten(1, (4, 5, 5)), nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 10))

    def trained(channels_last: bool) -> torch.Tensor:
        technique = feather(sparsity=0.8, target_fraction=0.5, **params)
        training = make_training(technique, steps=20, model=model, channels_last=channels_last)
        for _ in range(8):
            training._train_step()
        conv = technique.layers[0]
        assert conv.dense_weight.grad.stride() == conv.dense_weight.stride()
        return conv.dense_weight.detach().contiguous()

    torch.testing.assert_close(trained(True), trained(False), rtol=1e-4, atol=1e-5)


def test_a_model_in_training_can_be_deep_copied():
    training = make_training(feather(sparsity=0.9), steps=20, model="wide")
    training._train_step()
    training.optimizer.zero_grad(set_to_none=True)
    training._loss(*training.train_data.take(training.train_data.next_indices())).backward()  # gradients pending
    copied = copy.deepcopy(training.model)
    assert torch.equal(copied[0].weight, training.model[0].weight)


@pytest.mark.parametrize("sparsity, theta", [(0.9, 1.0), (0.95, 0.5), (0.99, 0.5)])
def test_auto_theta_follows_the_papers_step_function(sparsity, theta):
    assert feather(sparsity=sparsity).pruned_scale == theta


@pytest.mark.parametrize(
    "params, message",
    [
        ({"power": 0.5}, "power must be a number >= 1 or 'hard'"),
        ({"pruned_gradient_scale": 2.0}, "pruned_gradient_scale must be in"),
        ({"backbone": "layerwise"}, "backbone must be one of global, asl"),
        ({"sparsity": 1.0}, "sparsity must be in"),
    ],
)
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(ValueError, match=message):
        feather(**params)


def test_a_compiled_forward_sees_each_steps_new_thresholded_weights():
    """P_T is a plain tensor attribute, rewritten in place every step: torch.compile must read it, not bake it in."""

    def trained(**train) -> Feather:
        technique = feather(sparsity=0.8, target_fraction=0.5)
        training = make_training(technique, steps=20, model="wide", **train)
        for _ in range(12):
            training._train_step()
        return technique

    compiled, eager = trained(compile=True), trained()
    for ours, theirs in zip(compiled.layers, eager.layers):
        torch.testing.assert_close(ours.dense_weight, theirs.dense_weight, rtol=1e-4, atol=1e-6)
        assert torch.equal(ours.weight == 0, theirs.weight == 0)
