"""The step profiler attributes each profiled step's time to the technique hooks that spent it."""

from __future__ import annotations

import pytest

from helpers import benchmark_module


@pytest.fixture(scope="module")
def step_profile():
    with benchmark_module("step_profile") as module:
        yield module


def test_every_profiled_step_runs_each_hook_once_and_the_hooks_fit_in_the_step(step_profile):
    step_us, hooks, _ = step_profile.profile_steps("mlp", "feather", steps=2, warmup=5, device="cpu")  # 50 steps
    for name in ("keep_batch", "extra_loss", "after_backward", "layer_densities", "after_step"):
        assert hooks[name].calls == 45, name
    assert hooks["on_epoch_end"].calls == 5  # an epoch is 10 batches: after steps 10, 20, 30, 40 and 50
    assert 0 < hooks["after_step"].aten_us < hooks["after_step"].total_us  # P_T's powers are ATen ops, its selection NumPy
    assert sum(hook.total_us for hook in hooks.values()) < step_us


def test_the_baseline_hooks_run_no_op(step_profile):
    _, hooks, _ = step_profile.profile_steps("mlp", "dense", steps=1, warmup=1, device="cpu")
    assert all(hook.aten_us == 0 for hook in hooks.values())
    assert hooks["after_step"].calls == 24


def test_unprofiled_timing_splits_each_step_into_its_hooks_and_the_rest(step_profile):
    step_us, hooks_us = step_profile.time_steps("mlp", "feather", steps=1, warmup=5, device="cpu")  # 25 steps
    assert 0 < hooks_us < step_us
    dense_step_us, dense_hooks_us = step_profile.time_steps("mlp", "dense", steps=1, warmup=5, device="cpu")
    assert dense_hooks_us < hooks_us / 10  # the baseline's hooks do nothing; Feather's after_step sets P_T
