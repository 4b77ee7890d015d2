"""The Feather floor benchmark compares like with like: a stand-in kernel must match Feather before it is timed."""

from __future__ import annotations

import pytest
import torch

from helpers import benchmark_module


@pytest.fixture(scope="module")
def floor():
    with benchmark_module("feather_floor") as module:
        yield module


def warmed_feather(floor):
    return floor.warmed_training("mlp", "feather", steps=1, warmup=5, device="cpu")  # a run of 25 steps


def feathers_own_update(feather):
    """A kernel that does what Feather does, through Feather's own code."""

    def kernel(dense, out, count, power):
        feather._update(count / sum(weight.numel() for weight in dense))
        return list(feather.kept)

    return kernel


def test_a_kernel_that_matches_feather_takes_over_its_bookkeeping(floor):
    training = warmed_feather(floor)
    feather = training.technique
    assert floor.use_kernel(training, feathers_own_update(feather)) == 0.0
    before = [layer.weight.detach().clone() for layer in feather.layers]
    training._train_step()  # the kernel now writes P_T for the new weights
    assert all(not torch.equal(layer.weight, old) for layer, old in zip(feather.layers, before))


def test_a_kernel_that_keeps_other_weights_is_refused(floor):
    training = warmed_feather(floor)

    def keeps_everything(dense, out, count, power):
        for source, target in zip(dense, out):
            target.copy_(source)
        return [weight.numel() for weight in dense]

    with pytest.raises(AssertionError, match="kept"):
        floor.use_kernel(training, keeps_everything)


def test_the_floor_leaves_the_thresholded_weights_as_they_were(floor):
    training = floor.bare_after_step(warmed_feather(floor))
    feather = training.technique
    before = [layer.weight.detach().clone() for layer in feather.layers]
    training._train_step()
    assert all(torch.equal(layer.weight, old) for layer, old in zip(feather.layers, before))
    assert any(not torch.equal(layer.dense_weight, old) for layer, old in zip(feather.layers, before))
