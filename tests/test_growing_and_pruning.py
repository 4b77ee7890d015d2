"""GradMax growing, L1 filter pruning and random pruning at init, in the loop and on their own."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from greentune import techniques
from greentune.techniques.gradmax import consumer_weights, growth_matrices, top_right_singular_vectors
from greentune.techniques.surgery import add_units, width_groups, widths
from greentune.trainables.models import create_model
from greentune.trainables.models.layers import UnitSlopeReLU

from helpers import make_training, run_to_end

MSE = nn.functional.mse_loss


def gradmax(**params):
    return techniques.create(["gradmax"], {"gradmax": params})


def statistics_run(model, inputs, targets):
    """What ``growth_matrices`` reads from a run, around a fixed batch."""
    return SimpleNamespace(model=model, sample_batch=lambda: (inputs, targets), loss_fn=MSE)


NETWORKS = {
    "linear": lambda: (nn.Sequential(nn.Linear(7, 5), UnitSlopeReLU(), nn.Linear(5, 3)), (11, 7), (11, 3)),
    "strided convs into a linear": lambda: (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), UnitSlopeReLU(), nn.Conv2d(4, 6, 3, padding=1, stride=2), UnitSlopeReLU(),
            nn.Flatten(), nn.Linear(6 * 4 * 4, 3),
        ),
        (4, 3, 8, 8), (4, 3),
    ),
}


@pytest.mark.parametrize("network", NETWORKS)
def test_the_growth_matrix_maps_outgoing_weights_to_the_new_units_incoming_gradient(network):
    """M w must be exactly the gradient a new unit with outgoing weights w gets on its zero incoming weights."""
    torch.manual_seed(0)
    model, input_shape, target_shape = NETWORKS[network]()
    inputs, targets = torch.randn(input_shape), torch.randn(target_shape)
    groups = width_groups(model)
    for group, matrix in zip(groups, growth_matrices(statistics_run(model, inputs, targets), groups, batches=1)):
        grown = copy.deepcopy(model)
        shape = consumer_weights(grown, group, group.consumers[0]).shape
        outgoing = torch.randn(shape[0], 1, shape[2])
        add_units(grown, group, 1, outgoing={group.consumers[0]: outgoing})
        MSE(grown(inputs), targets).backward()
        new_incoming_gradient = grown.get_submodule(group.producer).weight.grad[-1].flatten()
        torch.testing.assert_close(new_incoming_gradient, matrix @ outgoing.transpose(0, 1).flatten(), rtol=1e-4, atol=1e-6)


def test_the_growth_matrices_leave_batchnorm_statistics_as_they_were():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), UnitSlopeReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    statistics = [buffer.clone() for buffer in model.buffers()]
    groups = width_groups(model)
    growth_matrices(statistics_run(model, torch.randn(4, 3, 8, 8), torch.randn(4, 3)), groups, batches=3)
    assert all(torch.equal(buffer, saved) for buffer, saved in zip(model.buffers(), statistics))


def test_gradmax_grows_on_schedule_to_the_target_width_and_keeps_the_function():
    training = make_training(gradmax(start=0.2, span=0.4, steps=3), model="small", steps=50, eval_every=50)
    assert sorted(training.technique.plan) == [10, 20, 30]
    assert [targets[0] for _, targets in sorted(training.technique.plan.items())] == [33, 42, 50]
    probe = torch.randn(32, 100)
    while training.step < 9:
        training._train_step()
    before = training.model(probe)
    hidden = training.model[0]
    training.step = 10
    training.technique.after_step(training)  # the growth at step 10, without the optimizer step before it
    assert hidden.out_features == hidden.weight.shape[0] == 33 and training.model[2].in_features == 33
    torch.testing.assert_close(training.model(probe), before)
    assert torch.all(hidden.weight[25:] == 0) and torch.all(hidden.bias[25:] == 0)
    final = run_to_end(training)[-1]
    assert training.model[0].out_features == 50
    assert final["params_total"] == 100 * 50 + 50 + 50 * 10 + 10


def grown_teacher_student(activation: type[nn.Module]):
    training = make_training(gradmax(scale=1.0), model="small", steps=35, eval_every=35)
    training.model[1] = activation()
    while training.step < 4:
        training._train_step()
    training.step = 5
    training.technique.after_step(training)  # the first growth
    training.optimizer.zero_grad()
    training.loss_fn(training.model(*training.sample_batch()[:1]), training.sample_batch()[1]).backward()
    return training


def test_new_units_get_gradients_on_their_incoming_weights():
    grown = grown_teacher_student(UnitSlopeReLU).model[0]
    assert grown.out_features == 30
    assert torch.all(grown.weight.grad[25:].norm(dim=1) > 0)
    assert torch.all(grown.bias.grad[25:] != 0)


def test_with_pytorchs_relu_new_units_would_be_dead():
    """Why the models use UnitSlopeReLU: ReLU'(0) = 0 stops all gradient to a unit that outputs exactly 0."""
    grown = grown_teacher_student(nn.ReLU).model[0]
    assert torch.all(grown.weight.grad[25:] == 0)


def test_gradmax_outgoing_weights_are_scaled_and_beat_random_directions():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(20, 6), UnitSlopeReLU(), nn.Linear(6, 8))
    before = copy.deepcopy(model)
    inputs, targets = torch.randn(64, 20), torch.randn(64, 8)
    group = width_groups(model)[0]
    mean_norm = model[2].weight.detach().norm(dim=0).mean()
    gradmax(scale=0.5).resize_groups(statistics_run(model, inputs, targets), [(group, 6, 9)])
    torch.testing.assert_close(model[2].weight[:, 6:].norm(dim=0), torch.full((3,), float(0.5 * mean_norm)))
    MSE(model(inputs), targets).backward()
    gradmax_norm = model[0].weight.grad[6:].norm()
    for _ in range(20):
        random_growth = copy.deepcopy(before)
        directions = torch.randn(8, 3)
        add_units(random_growth, group, 3, outgoing={"2": directions / directions.norm(dim=0) * 0.5 * mean_norm})
        MSE(random_growth(inputs), targets).backward()
        assert random_growth[0].weight.grad[6:].norm() <= gradmax_norm + 1e-6


def test_the_randomized_svd_of_a_wide_layer_gives_the_exact_svds_gradient_norm():
    """On a real M too large for the exact path, the directions are as good as the exact top ones."""
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.5, batchnorm=True, num_classes=10)
    inputs, targets = torch.randn(16, 3, 32, 32), torch.randn(16, 10)
    group = width_groups(model)[3]
    (matrix,) = growth_matrices(statistics_run(model, inputs, targets), [group], batches=1)
    count = 8
    assert matrix.shape == (1152, 2304) and torch.linalg.matrix_rank(matrix) > 1000  # no shortcut: a full spectrum
    exact = torch.linalg.svd(matrix, full_matrices=False)[2][:count]
    randomized = top_right_singular_vectors(matrix, count)
    torch.testing.assert_close(randomized @ randomized.T, torch.eye(count), atol=1e-4, rtol=0)
    achieved, best = (matrix @ randomized.T).norm(dim=0), (matrix @ exact.T).norm(dim=0)
    assert torch.all(achieved >= 0.99 * best) and achieved.norm() >= 0.995 * best.norm()


def test_gradmax_grows_every_vgg_layer_and_carries_momentum():
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.125, batchnorm=True, num_classes=4)
    inputs, targets = torch.randn(8, 3, 16, 16), torch.randn(8, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    run = SimpleNamespace(model=model, sample_batch=lambda: (inputs, targets), loss_fn=MSE, optimizer=optimizer,
                          make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9),
                          structure_changed=lambda: None, step=0)
    optimizer.zero_grad()
    MSE(model(inputs), targets).backward()
    optimizer.step()
    model.eval()
    before = model(inputs)
    technique = gradmax()
    groups = width_groups(model)
    technique.groups = groups
    technique.plan = {0: [width + 8 for width in widths(model, groups)]}
    technique.after_step(run)
    assert widths(model, groups) == [16, 24, 40, 40, 72, 72, 72, 72]
    torch.testing.assert_close(model(inputs), before)
    first = model[0].weight
    assert torch.all(run.optimizer.state[first]["momentum_buffer"][8:] == 0)
    assert torch.any(run.optimizer.state[first]["momentum_buffer"][:8] != 0)


def test_filter_pruning_removes_the_lowest_l1_filters_and_shrinks_the_next_layers_inputs():
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.125, batchnorm=True, num_classes=4)
    run = SimpleNamespace(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                          make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1), structure_changed=lambda: None)
    technique = techniques.create(["filter_pruning"], {"filter_pruning": {"width_ratio": 0.25}})
    l1 = model[0].weight.abs().sum(dim=(1, 2, 3))
    strongest = model[0].weight[l1.argsort(descending=True)[:2].sort().values].clone()
    groups = width_groups(model)
    technique.groups, technique.plan = groups, {0: [width // 4 for width in widths(model, groups)]}
    run.step = 0
    technique.after_step(run)
    assert (model[0].out_channels, model[2].num_features, model[3].in_channels) == (2, 2, 2)
    assert model[0].weight.shape == (2, 3, 3, 3) and model[3].weight.shape[1] == 2
    torch.testing.assert_close(model[0].weight, strongest)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 4)


def test_filter_pruning_on_wrn_shrinks_only_the_first_conv_of_each_block():
    model = create_model("wrn28_1", num_classes=3)
    run = SimpleNamespace(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                          make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1), structure_changed=lambda: None, step=0)
    technique = techniques.create(["filter_pruning"], {"filter_pruning": {"width_ratio": 0.25}})
    technique.groups = width_groups(model)
    technique.plan = {0: [width // 4 for width in widths(model, technique.groups)]}
    technique.after_step(run)
    block = model.blocks[5]
    assert (block.conv1.out_channels, block.conv2.in_channels, block.conv2.out_channels) == (8, 8, 32)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)


def test_filter_pruning_runs_the_reverse_of_gradmaxs_schedule():
    schedule = {"start": 0.2, "span": 0.4, "steps": 3}
    grow = make_training(gradmax(**schedule), model="small", steps=50, eval_every=50)
    prune = make_training(techniques.create(["filter_pruning"], {"filter_pruning": schedule}), model="big", steps=50, eval_every=50)
    assert sorted(grow.technique.plan) == sorted(prune.technique.plan) == [10, 20, 30]
    assert [t[0] for _, t in sorted(prune.technique.plan.items())] == [42, 33, 25]
    run_to_end(prune)
    assert prune.model[0].out_features == 25 and prune.model[2].in_features == 25


def test_a_schedule_past_the_end_of_training_is_refused():
    with pytest.raises(ValueError, match="span"):
        gradmax(start=0.5, span=0.6)


def test_a_checkpoint_after_growth_resumes_to_the_same_result(tmp_path):
    def build():
        return make_training(gradmax(start=0.2, span=0.4, steps=3), model="small", steps=60, eval_every=20)

    expected = run_to_end(build())[-1]
    first = build()
    evaluations = first.evaluations()
    next(evaluations), next(evaluations)  # step 40: grown three times
    first.save(tmp_path / "training.pt")
    resumed = build()
    resumed.load(tmp_path / "training.pt")
    assert resumed.model[0].out_features == 50
    assert resumed.optimizer.param_groups[0]["params"][0] is resumed.model[0].weight
    final = run_to_end(resumed)[-1]
    assert final["quality"] == pytest.approx(expected["quality"], rel=1e-6)


def random_pruning(**params):
    return techniques.create(["random_pruning"], {"random_pruning": params})


def test_random_pruning_gives_each_layer_the_er_density_with_exact_counts():
    """The paper's 100:100:10 at 50%: ER asks 1.95 for the small layer, so it is dense and the big one takes 0.45."""
    training = make_training(random_pruning(sparsity=0.5), model="wide", steps=1)
    masks = training.technique.masks
    assert masks.active() == [4500, 1000]
    assert masks.density() == pytest.approx(0.5)
    assert int((training.model[0].weight == 0).sum()) == 10000 - 4500


def test_pruned_weights_and_their_optimizer_state_stay_zero_through_training():
    stack = techniques.create(
        ["random_pruning", "data_selection"],
        {"random_pruning": {"sparsity": 0.7, "distribution": "erk"}, "data_selection": {"selectivity": 0.5}},
    )
    training = make_training(stack, model="wide", steps=40, momentum=0.9, weight_decay=1e-3)
    masks = next(member for member in training.technique.members if member.name == "random_pruning").masks
    run_to_end(training)
    for layer, mask in masks:
        assert torch.all(layer.weight[~mask] == 0)
        assert torch.all(training.optimizer.state[layer.weight]["momentum_buffer"][~mask] == 0)
        assert torch.any(layer.weight[mask] != 0)


def test_fixed_masks_and_resizing_cannot_be_stacked():
    with pytest.raises(ValueError, match="both control the width"):
        techniques.Stack([random_pruning(), gradmax()])


def test_growing_more_units_per_step_than_m_has_directions_is_refused_before_training():
    with pytest.raises(ValueError, match="only 10 directions"):
        make_training(gradmax(steps=1), model="small", steps=35)


def test_resizes_that_round_onto_one_step_are_moved_apart_and_keep_their_size():
    # 16 growth steps within 0.1% of 3500 steps: before, they collapsed onto
    # four optimizer steps, one of them adding 12 units where M has 10 directions.
    training = make_training(gradmax(start=0.3, span=0.001, steps=16), model="small", steps=3500, eval_every=3500)
    plan = sorted(training.technique.plan.items())
    assert [step for step, _ in plan] == list(range(1050, 1066))
    widths_in_order = [25] + [targets[0] for _, targets in plan]
    assert widths_in_order[-1] == 50 and max(b - a for a, b in zip(widths_in_order, widths_in_order[1:])) <= 2
