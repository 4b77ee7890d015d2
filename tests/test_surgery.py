"""Layer surgery: coupled layers resize together, the function is kept, optimizer state follows."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from greentune.techniques.surgery import (
    WidthGroup,
    add_units,
    carry_optimizer_state,
    select_units,
    width_groups,
    widths,
)
from greentune.trainables.models import create_model
from greentune.trainables.models.layers import UnitSlopeReLU


def conv_net() -> nn.Sequential:
    """conv+BN -> conv -> flatten -> linear: every coupling surgery must handle."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), UnitSlopeReLU(),
        nn.Conv2d(6, 5, 3, padding=1, stride=2), UnitSlopeReLU(),
        nn.Flatten(), nn.Linear(5 * 4 * 4, 4),
    )
    model.train()
    model(torch.randn(16, 3, 8, 8))  # non-trivial BatchNorm running statistics
    return model.eval()


def zero_outgoing(model: nn.Module, group: WidthGroup, units: list[int]) -> nn.Module:
    """The same network with ``units`` silenced: what removing them must compute."""
    silenced = copy.deepcopy(model)
    for name in group.consumers:
        consumer = silenced.get_submodule(name)
        view = consumer.weight.data.view(consumer.weight.shape[0], widths(model, [group])[0], -1)
        view[:, units] = 0
    return silenced


def test_groups_are_inferred_for_sequential_models_and_declared_by_wrn():
    assert width_groups(conv_net()) == [WidthGroup("0", ("3",), "1"), WidthGroup("3", ("6",), None)]
    vgg = create_model("vgg11", width=0.25, batchnorm=True)
    assert len(width_groups(vgg)) == 8  # every conv but the classifier
    wrn = create_model("wrn28_1", block_width=0.25)
    groups = width_groups(wrn)
    assert [group.producer for group in groups] == [f"blocks.{index}.conv1" for index in range(12)]
    assert widths(wrn, groups) == [4] * 4 + [8] * 4 + [16] * 4


def test_a_model_that_declares_nothing_gets_a_clear_error():
    class Opaque(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 3)

    with pytest.raises(ValueError, match="width_groups"):
        width_groups(Opaque())


@pytest.mark.parametrize("group_index", [0, 1])
def test_pruned_units_are_really_gone_and_the_rest_computes_the_same(group_index):
    model = conv_net()
    group = width_groups(model)[group_index]
    producer, consumer = model.get_submodule(group.producer), model.get_submodule(group.consumers[0])
    before_units, before_inputs = producer.out_channels, consumer.weight.shape[1]
    removed = [1, 3]
    keep = [unit for unit in range(before_units) if unit not in removed]
    expected = zero_outgoing(model, group, removed)
    inputs = torch.randn(4, 3, 8, 8)

    select_units(model, group, torch.tensor(keep))

    assert producer.out_channels == producer.weight.shape[0] == producer.bias.shape[0] == before_units - 2
    block = before_inputs // before_units  # 1 for a conv, 16 for the linear reading the flattened conv
    assert consumer.weight.shape[1] == before_inputs - 2 * block
    if group.norm is not None:
        norm = model.get_submodule(group.norm)
        assert norm.num_features == norm.weight.shape[0] == norm.running_var.shape[0] == before_units - 2
    torch.testing.assert_close(model(inputs), expected(inputs))


def test_added_units_leave_the_function_unchanged_in_train_and_eval_mode():
    model = conv_net()
    reference = copy.deepcopy(model)
    inputs = torch.randn(8, 3, 8, 8)
    for group in width_groups(model):
        weight = model.get_submodule(group.consumers[0]).weight
        per_unit = weight[0].numel() // widths(model, [group])[0]  # a 3x3 kernel, or a flattened 4x4 block
        add_units(model, group, 2, outgoing={group.consumers[0]: torch.randn(weight.shape[0], 2, per_unit)})
    assert widths(model, width_groups(model)) == [8, 7]
    assert model[6].in_features == 7 * 16
    torch.testing.assert_close(model(inputs), reference(inputs))
    model.train(), reference.train()
    torch.testing.assert_close(model(inputs), reference(inputs))


@pytest.mark.parametrize("optimizer_class", [torch.optim.SGD, torch.optim.Adam])
def test_optimizer_state_follows_surviving_units_and_is_zero_for_new_ones(optimizer_class):
    model = conv_net().train()
    options = {"lr": 0.01, "momentum": 0.9} if optimizer_class is torch.optim.SGD else {"lr": 0.01}
    optimizer = optimizer_class(model.parameters(), **options)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 3, 8, 8)).pow(2).mean().backward()
        optimizer.step()
    optimizer.param_groups[0]["lr"] = 0.123  # a scheduler's change must survive too
    key = "momentum_buffer" if optimizer_class is torch.optim.SGD else "exp_avg"
    middle = model[3]  # consumer of group 0 and producer of group 1: resized twice
    old_state = optimizer.state[middle.weight][key].clone()

    groups = width_groups(model)
    changes = select_units(model, groups[0], torch.tensor([0, 2, 3, 5]))
    changes += add_units(model, groups[1], 3)
    new_optimizer = optimizer_class(model.parameters(), **options)
    carry_optimizer_state(optimizer, new_optimizer, changes)

    state = new_optimizer.state[middle.weight][key]
    assert state.shape == middle.weight.shape == (8, 4, 3, 3)
    torch.testing.assert_close(state[:5], old_state[:, [0, 2, 3, 5]])
    assert torch.all(state[5:] == 0)
    assert new_optimizer.param_groups[0]["lr"] == 0.123
    assert all(parameter in new_optimizer.state for parameter in model.parameters())
    new_optimizer.step()  # the carried state has the shapes the optimizer needs
