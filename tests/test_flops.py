"""Training FLOPs under sparsity (GraNet's Table 3 accounting) against a hand count on the two-layer student."""

from __future__ import annotations

import pytest
import torch

from greentune import techniques
from greentune.techniques import LayerDensity, Stack, Technique

from helpers import make_training, run_to_end

BATCH, STEPS = 20, 10


class FixedDensities(Technique):
    """Reports fixed densities for the student 100:50:10, as a sparse technique would."""

    name = "test_fixed_densities"
    claims = frozenset({"weights"})

    def layer_densities(self, run):
        return {run.model[0]: LayerDensity(weights=0.5, gradients=1.0), run.model[2]: LayerDensity(weights=0.25, gradients=0.25)}


def test_sparse_training_and_inference_flops_match_a_hand_count():
    metrics = run_to_end(make_training(FixedDensities(), steps=STEPS, eval_every=STEPS))[-1]
    first, second = 2 * BATCH * 100 * 50, 2 * BATCH * 50 * 10  # one GEMM of each layer
    # First layer: forward and weight gradient, no input gradient (its input is data).
    # Second layer: forward, weight gradient and the gradient for the hidden activations.
    dense = (2 * first) + (3 * second)
    sparse = (0.5 * first + 1.0 * first) + (0.25 * second + 0.25 * second + 0.25 * second)
    assert metrics["flops"] == STEPS * dense
    assert metrics["flops_sparse"] == pytest.approx(STEPS * sparse)
    assert metrics["inference_flops_dense"] == pytest.approx((first + second) / BATCH)
    assert metrics["inference_flops"] == pytest.approx((0.5 * first + 0.25 * second) / BATCH)


def test_the_baseline_counts_the_same_flops_dense_and_sparse():
    metrics = run_to_end(make_training(steps=STEPS, eval_every=STEPS))[-1]
    assert metrics["flops_sparse"] == metrics["flops"] > 0
    assert metrics["inference_flops"] == metrics["inference_flops_dense"]


def test_a_stack_passes_its_weight_technique_densities_on():
    class Other(Technique):
        name = "test_other"

    metrics = run_to_end(make_training(Stack([Other(), FixedDensities()]), steps=STEPS, eval_every=STEPS))[-1]
    assert metrics["flops_sparse"] < metrics["flops"]


def test_a_stack_hands_out_one_mapping_while_its_members_densities_hold():
    # The loop multiplies FLOPs out whenever the mapping is a new object, so an unchanged stack must return the same one.
    training = make_training(techniques.create(["data_selection", "granet"], {"granet": {"interval": 5}}), steps=20)
    stack, granet = training.technique, training.technique.members[1]
    stacked, alone = [], []
    while training.step < 12:
        training._train_step()
        stacked.append(stack.layer_densities(training))
        alone.append(granet.layer_densities(training))
    unchanged = [now is before for before, now in zip(alone, alone[1:])]
    assert any(unchanged) and not all(unchanged)
    assert [now is before for before, now in zip(stacked, stacked[1:])] == unchanged
    assert all(merged == own for merged, own in zip(stacked, alone))


def test_densities_that_change_mid_window_are_charged_for_the_steps_that_ran_under_them():
    class Halving(Technique):
        """The same mapping object for three steps, then a new one: the first layer at half its weights."""

        name = "test_halving"
        claims = frozenset({"weights"})

        def __init__(self):
            self.dense, self.half = {}, {}

        def layer_densities(self, run):
            if not self.half:
                self.half = {run.model[0]: LayerDensity(weights=0.5, gradients=0.5)}
            return self.dense if run.step < 3 else self.half

    metrics = run_to_end(make_training(Halving(), steps=STEPS, eval_every=STEPS))[-1]
    first, second = 2 * BATCH * 100 * 50, 2 * BATCH * 50 * 10
    dense = (2 * first) + (3 * second)
    assert metrics["flops"] == STEPS * dense
    assert metrics["flops_sparse"] == 3 * dense + (STEPS - 3) * (first + 3 * second)


class TensorDensities(Technique):
    """A float32 tensor density in a new mapping every step, as Feather reports its kept counts on an accelerator."""

    name = "test_tensor_densities"
    claims = frozenset({"weights"})

    def layer_densities(self, run):
        return {run.model[0]: LayerDensity(weights=torch.tensor(0.3), gradients=1.0)}


def test_flop_totals_over_many_steps_of_tensor_densities_add_up_in_float64():
    steps = 3000
    training = make_training(TensorDensities(), steps=steps, eval_every=steps)
    final = run_to_end(training)[-1]
    per_step = training._step_flops.sparse(TensorDensities().layer_densities(training))
    assert per_step.dtype == torch.float64 and training.totals["flops_sparse"].dtype == torch.float64
    assert final["flops_sparse"] == pytest.approx(steps * float(per_step), rel=1e-12)
