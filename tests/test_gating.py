"""Gated pruning (seed 004): the STE head, the regularisers, and the exported static network."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from greentune import techniques
from greentune.techniques.gates import Gate, activation, polarisation, ste
from greentune.techniques.gating import Gating
from greentune.trainables.energy import CpuTimeEstimate, EnergyMeter
from greentune.trainables.loop import Training
from greentune.trainables.models import create_model
from greentune.trainables.tasks import create_task

from helpers import make_training, run_to_end, uninterrupted_and_resumed


def test_ste_forward_is_eq4_and_backward_passes_gradient_only_inside_the_insensitive_region():
    logits = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    outputs = ste(logits)
    assert outputs.tolist() == [0, 0, 0, 0, 1, 1, 1]
    upstream = torch.arange(1.0, 8.0)
    outputs.backward(upstream)
    assert logits.grad.tolist() == [0, 2, 3, 4, 5, 6, 0]


def test_polarisation_is_zero_at_unified_gates_and_largest_at_one_half():
    assert float(polarisation([torch.ones(4), torch.zeros(3)])) == 0
    grid = torch.linspace(0, 1, 11)
    values = torch.stack([polarisation([torch.full((5,), float(g))]) for g in grid])
    assert int(values.argmax()) == 5 and float(values.max()) == pytest.approx(0.25)
    assert float(polarisation([torch.tensor([0.5, 1.0])])) == pytest.approx(0.125)
    assert float(activation([torch.tensor([1.0, 0.0]), torch.tensor([1.0])])) == pytest.approx(0.75)


def test_gates_are_per_input_in_training_and_static_in_eval():
    torch.manual_seed(0)
    gate = Gate(4, 3)
    features = torch.randn(8, 4, 5, 5)
    decisions = gate(features)
    assert decisions.shape == (8, 3) and set(decisions.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(gate.take_batch_mean(), decisions.mean(dim=0)) and gate.batch_mean is None
    gate.open_rate.copy_(torch.tensor([0.9, 0.2, 0.6]))
    assert gate.eval()(features).tolist() == [[1.0, 0.0, 1.0]] * 8


def gated(granularity, **options):
    torch.manual_seed(0)
    model = create_model("gated_resnet20", width=8)
    technique = Gating(granularity=granularity, **options)
    model = technique.prepare(model, run=None)
    model(torch.randn(16, 3, 16, 16))  # one training batch sets BatchNorm statistics
    return model, technique


def inference_flops(model, inputs):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(inputs)
    return counter.get_total_flops()


def export_exactly(model, technique):
    """Export, checked gate-free and equal to the gated network in eval mode; with the full network and the FLOPs removed."""
    exported = technique.export(model)
    assert not any(isinstance(module, Gate) for module in exported.modules())
    inputs = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(exported.eval()(inputs), model.eval()(inputs), atol=1e-5)
    full = technique._static(model, force_open=True)
    return exported, full, inference_flops(full, inputs[:1]) - inference_flops(exported, inputs[:1])


def test_a_block_closed_at_an_epochs_end_runs_no_forward_and_no_backward_until_it_reopens():
    model, technique = gated("layer")
    run = SimpleNamespace(model=model, structure_changed=lambda: None)
    technique.gates[1].open_rate.fill_(0.2)  # static decision: closed
    technique.on_epoch_end(run)
    calls = []
    for block in model.blocks:
        block.conv1.register_forward_hook(lambda module, inputs, output: calls.append(module))
    model.train()
    model(torch.randn(8, 3, 16, 16)).sum().backward()
    skipped = model.blocks[1]
    assert skipped.conv1 not in calls and len(calls) == len(model.blocks) - 1
    assert skipped.conv1.weight.grad is None and skipped.conv2.weight.grad is None
    assert model.blocks[0].conv1.weight.grad is not None
    assert technique.gates[1].take_batch_mean() is not None  # the gate still decides, for the regularisers
    calls.clear()
    technique._static(model, force_open=True).eval()(torch.randn(2, 3, 16, 16))  # the full network, for FLOP ratios
    assert len(calls) == len(model.blocks)
    technique.gates[1].open_rate.fill_(0.9)
    technique.on_epoch_end(run)
    calls.clear()
    model(torch.randn(8, 3, 16, 16))
    assert skipped.conv1 in calls


def test_layer_export_removes_exactly_the_closed_blocks_and_matches_the_gated_network():
    model, technique = gated("layer")
    closed = {1, 4, 6}  # plain blocks in stages 1 and 2, and stage 3's downsampling block
    for index, gate in enumerate(technique.gates):
        gate.open_rate.fill_(0.1 if index in closed else 0.8)
    exported, full, removed = export_exactly(model, technique)
    kinds = [type(block).__name__ for block in exported.blocks]
    assert [index for index, kind in enumerate(kinds) if kind != "Block"] == sorted(closed)
    # Each closed block loses its two 3x3 convs (2 FLOPs per multiply-add): 8->8 at 16 px, 16->16 at 8 px,
    # and 16->32 (strided) plus 32->32 at 4 px; the downsampling shortcut stays.
    expected = 2 * 9 * (8 * 8 * 16 * 16 * 2 + 16 * 16 * 8 * 8 * 2 + (16 * 32 + 32 * 32) * 4 * 4)
    assert removed == expected


@pytest.mark.parametrize("position", ["before", "middle"])
def test_channel_export_keeps_exactly_the_open_channels_and_matches_the_gated_network(position):
    model, technique = gated("channel", position=position, depth=1)
    generator = torch.Generator().manual_seed(1)
    for gate in technique.gates:
        gate.open_rate.copy_(torch.rand(gate.open_rate.shape, generator=generator))
    technique.gates[2].open_rate.zero_()  # every channel closed: one is kept, with zero weights into conv2
    exported, full, removed = export_exactly(model, technique)
    for index, gate in enumerate(technique.gates):
        block = exported.blocks[index]
        assert block.conv1.out_channels == block.bn1.num_features == block.conv2.in_channels == max(1, int(gate.decision().sum()))
    expected = 0
    for index, gate in enumerate(technique.gates):
        conv1, conv2 = full.blocks[index].conv1, full.blocks[index].conv2
        side = 16 // 2 ** (index // 3)  # output size of the block's convs
        closed = min(int((gate.decision() == 0).sum()), conv1.out_channels - 1)
        expected += 2 * closed * 9 * side * side * (conv1.in_channels + conv2.out_channels)
    assert removed == expected


def test_after_gates_export_conv2_with_only_the_open_channels_added_into_the_full_shortcut():
    model, technique = gated("channel", position="after", depth=2)
    generator = torch.Generator().manual_seed(2)
    for gate in technique.gates:
        gate.open_rate.copy_(torch.rand(gate.open_rate.shape, generator=generator))
    technique.gates[4].open_rate.zero_()  # nothing left to add: the block goes, as a closed layer would
    technique.gates[7].open_rate.fill_(1.0)  # nothing closed: the block stays whole
    exported, full, removed = export_exactly(model, technique)
    for index, gate in enumerate(technique.gates):
        block, open_channels = exported.blocks[index], torch.nonzero(gate.decision()).flatten()
        if index == 4:
            assert type(block).__name__ != "Block"
            continue
        assert block.conv1.out_channels == block.conv2.in_channels == 8 * 2 ** (index // 3)  # conv1 untouched
        assert block.conv2.out_channels == block.bn2.num_features == len(open_channels)
        assert block.branch_channels is None if index == 7 else torch.equal(block.branch_channels, open_channels)
    expected = 0
    for index, gate in enumerate(technique.gates):
        conv1, conv2 = full.blocks[index].conv1, full.blocks[index].conv2
        side = 16 // 2 ** (index // 3)
        if index == 4:  # the whole branch: both convs
            expected += 2 * 9 * side * side * conv2.out_channels * (conv1.in_channels + conv2.in_channels)
        else:
            expected += 2 * int((gate.decision() == 0).sum()) * 9 * side * side * conv2.in_channels
    assert removed == expected


def test_training_on_the_mlp_reports_the_static_network_and_exports_it_exactly(tmp_path):
    technique = Gating(polar_weight=3.0, act_weight=0.5)
    training = make_training(technique, steps=40, eval_every=20)
    last = run_to_end(training)[-1]
    assert 0 <= last["gate_open_ratio"] <= 1 and 0 <= last["gate_polarisation"] <= 0.25
    assert last["export_params"] <= last["params_total"] and 0 < last["export_flops_ratio"] <= 1
    training.export(tmp_path / "model.pt")  # what a trial leaves in its final checkpoint
    exported = torch.load(tmp_path / "model.pt", weights_only=False)
    assert not exported.training and not any(isinstance(module, Gate) for module in exported.modules())
    assert sum(parameter.numel() for parameter in exported.parameters()) == last["export_params"]
    inputs = training.held_out.inputs[:7]
    with torch.no_grad():
        assert torch.allclose(exported(inputs), training.model.eval()(inputs), atol=1e-5)


def test_rising_schedule_switches_polarisation_on_later():
    technique = Gating(polar_weight=3.0, polar_schedule="rising")

    class Progress:
        total_steps = 350

    run = Progress()
    weights = []
    for step in (0, 124, 125, 189, 190, 349):
        run.step = step
        weights.append(technique.polar_weight_at(run))
    assert weights == [0.0, 0.0, 2.0, 2.0, 3.0, 3.0]


def test_layer_gating_on_a_model_without_blocks_is_a_clear_error():
    with pytest.raises(ValueError, match="gated_resnet"):
        Gating(granularity="layer").prepare(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), run=None)


def test_layer_gating_trains_a_resnet_on_synthetic_images_and_resumes_from_a_checkpoint(tmp_path):
    def build():
        task = create_task("synthetic_images", n_train=64, n_test=32, size=8, width=4)
        settings = task.defaults.override({"epochs": None, "steps": 8, "eval_every": 4, "batch_size": 16})
        technique = techniques.create(["gating"], {"gating": {"granularity": "layer", "act_weight": 0.5}})
        return Training(task, technique, settings, model="gated_resnet8", seed=0, meter=EnergyMeter([CpuTimeEstimate()]))

    expected, final = uninterrupted_and_resumed(build, tmp_path / "training.pt")
    assert [final[f"gate_rate_{index}"] for index in range(3)] == [expected[f"gate_rate_{index}"] for index in range(3)]
    assert final["quality"] == expected["quality"] and final["export_flops"] == expected["export_flops"]


def test_blocks_closed_during_training_stop_costing_training_flops():
    task = create_task("synthetic_images", n_train=64, n_test=32, size=8, width=4)
    settings = task.defaults.override({"epochs": None, "steps": 24, "eval_every": 4, "batch_size": 16, "lr": 0.05, "momentum": 0.9})
    technique = techniques.create(["gating"], {"gating": {"granularity": "layer", "act_weight": 1.5, "polar_weight": 2.0}})
    training = Training(task, technique, settings, model="gated_resnet8", seed=0, meter=EnergyMeter([CpuTimeEstimate()]))
    history = run_to_end(training)
    window_flops = [later["flops"] - earlier["flops"] for earlier, later in zip(history, history[1:])]
    closed = [block.branch_closed for _, block, _ in training.model.gated_blocks()]
    assert any(closed) and not all(closed)
    assert window_flops[-1] < 0.6 * window_flops[0]  # the skipped branches are counted out once they close
    assert history[-1]["export_flops_ratio"] < 0.6
