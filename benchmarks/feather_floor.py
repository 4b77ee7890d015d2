"""How low Feather's step time can go on this machine, and what it would take to get there.

``sparse_step_time.py`` says what Feather's step costs against dense, and
``step_profile.py`` that its bookkeeping after each optimizer step (the
global |w| quantile, the kept counts, P_T written into every layer) is
what it adds. This bounds what any implementation of that bookkeeping
could reach. On the teacher-student MLP at sparsity 0.9, in one run,
taking turns block by block, it times the steps of:

- dense training;
- Feather as greentune runs it (NumPy selection, ATen powers);
- Feather with its bookkeeping as one native kernel, compiled here with
  ``torch.utils.cpp_extension.load_inline`` (it needs a C++ compiler): one
  call, one pass for |w|, the exact k-th smallest |w| searched first among
  the weights near the last step's threshold (within twice its last move
  plus 1%: it moves little from step to step) and over all of them only
  when it left that band, and one pass writing P_T. Before timing, its P_T is checked against Feather's own
  for the same weights;
- Feather with no bookkeeping at all (``after_step`` does nothing: its
  maths is then wrong): the floor of everything else in its step.

It answers a design question rather than measuring greentune: whether
Feather's CPU target needs compiled code. Nothing here is used by
greentune itself. One thread.

    python benchmarks/feather_floor.py [--rounds 10] [--block 40] [--no-native]
"""

from __future__ import annotations

import argparse
import math
import statistics
from typing import Callable

import torch

from sparse_step_time import setups, timed_steps
from step_profile import warmed_training
from greentune.trainables.loop import Training

STEPS = 40  # sparse_step_time's run length: the MLP's run is 25 times as many steps
WARMUP = 20  # steps before timing: the first one counts FLOPs

KERNEL = r"""
#include <torch/extension.h>
#include <algorithm>
#include <cmath>
#include <vector>

static std::vector<float> magnitudes, candidates;
static float last_threshold = -1.0f, last_move = 0.0f;

// Feather's global update: T = the k-th smallest |w| over all layers, then out = P_T(dense), layer by layer.
std::vector<int64_t> update(const std::vector<torch::Tensor>& dense, const std::vector<torch::Tensor>& out, int64_t k, double power) {
    int64_t total = 0;
    for (const auto& weight : dense) total += weight.numel();
    magnitudes.resize(total);
    candidates.resize(total);
    int64_t at = 0;
    for (const auto& weight : dense) {
        const float* w = weight.data_ptr<float>();
        for (int64_t i = 0; i < weight.numel(); ++i) magnitudes[at + i] = std::fabs(w[i]);
        at += weight.numel();
    }
    float threshold = 0.0f;
    if (k > 0) {
        int64_t below = 0, inside = 0;
        if (last_threshold > 0.0f) {
            const float reach = 2.0f * last_move + 0.01f * last_threshold;
            const float low = last_threshold - reach, high = last_threshold + reach;
            for (int64_t i = 0; i < total; ++i) {
                const float m = magnitudes[i];
                below += m < low;
                candidates[inside] = m;
                inside += (m >= low) & (m <= high);
            }
        }
        if (last_threshold > 0.0f && below < k && k <= below + inside) {
            std::nth_element(candidates.begin(), candidates.begin() + (k - below - 1), candidates.begin() + inside);
            threshold = candidates[k - below - 1];
        } else {
            std::copy(magnitudes.begin(), magnitudes.end(), candidates.begin());
            std::nth_element(candidates.begin(), candidates.begin() + (k - 1), candidates.end());
            threshold = candidates[k - 1];
        }
    }
    last_move = last_threshold > 0.0f ? std::fabs(threshold - last_threshold) : 0.0f;
    last_threshold = threshold;
    const float p = static_cast<float>(power), inverse = static_cast<float>(1.0 / power);
    std::vector<int64_t> kept;
    at = 0;
    for (size_t layer = 0; layer < dense.size(); ++layer) {
        const float* w = dense[layer].data_ptr<float>();
        float* y = out[layer].data_ptr<float>();
        int64_t count = 0;
        for (int64_t i = 0; i < dense[layer].numel(); ++i) {
            const float m = magnitudes[at + i];
            if (m > threshold) {
                const float r = threshold / m, powered = p == 3.0f ? r * r * r : std::pow(r, p);
                y[i] = w[i] * std::pow(1.0f - powered, inverse);
                ++count;
            } else {
                y[i] = 0.0f;
            }
        }
        kept.push_back(count);
        at += dense[layer].numel();
    }
    return kept;
}
"""


def compile_kernel() -> Callable:
    from torch.utils.cpp_extension import load_inline

    module = load_inline("greentune_feather_floor", cpp_sources=KERNEL, functions=["update"], extra_cflags=["-O3", "-march=native"])
    return module.update


def use_kernel(training: Training, kernel: Callable) -> float:
    """Make ``kernel`` do the Feather run's bookkeeping; the largest difference from Feather's own P_T."""
    feather = training.technique
    if feather.backbone != "global" or feather.pruned_scale != 1.0 or math.isinf(feather.power):
        raise ValueError("the kernel does Feather's global backbone with a finite power and no pruned-gradient scale")
    dense = [layer.dense_weight.detach() for layer in feather.layers]
    out = [layer.weight.detach() for layer in feather.layers]
    total = sum(weight.numel() for weight in dense)

    def after_step(run) -> None:
        feather.kept = kernel(dense, out, round(feather.scheduled_sparsity(run.step) * total), feather.power)

    expected = [weight.clone() for weight in out]  # Feather's P_T for the weights as they are
    kept = feather.kept
    after_step(training)  # the same step, so the same sparsity
    if feather.kept != kept:
        raise AssertionError(f"the kernel kept {feather.kept} weights per layer, Feather {kept}")
    feather.after_step = after_step
    return max(float((ours - theirs).abs().max()) for ours, theirs in zip(out, expected))


def bare_after_step(training: Training) -> Training:
    training.technique.after_step = lambda run: None
    return training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=40, help="steps per variant per round")
    parser.add_argument("--no-native", action="store_true", help="skip the compiled kernel (no C++ compiler)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    label, _, _, settings = setups(STEPS)["mlp"]
    if WARMUP + args.rounds * args.block >= settings.steps:  # Feather writes its weights back after its last step
        parser.error(f"rounds x block must stay below {settings.steps - WARMUP} steps")
    runs = {
        "dense": warmed_training("mlp", "dense", STEPS, WARMUP, "cpu"),
        "feather": warmed_training("mlp", "feather", STEPS, WARMUP, "cpu"),
    }
    if not args.no_native:
        try:
            kernel = compile_kernel()
        except (RuntimeError, OSError) as error:
            parser.error(f"the native kernel did not build ({str(error).splitlines()[0]}); install a C++ compiler or pass --no-native")
        runs["feather, one native kernel"] = native = warmed_training("mlp", "feather", STEPS, WARMUP, "cpu")
        difference = use_kernel(native, kernel)
        print(f"native kernel: same kept counts as Feather, P_T within {difference:.1e}")
    runs["feather, no bookkeeping (floor)"] = bare_after_step(warmed_training("mlp", "feather", STEPS, WARMUP, "cpu"))
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, training in runs.items():
            times[name].append(timed_steps(training, args.block))
    print(f"{label}, sparsity 0.9: {args.rounds} rounds of {args.block} steps each, medians of per-round ratios; one thread")
    print(f"{'':>32} {'µs / step':>10} {'/ dense':>8}")
    for name, seconds in times.items():
        ratio = statistics.median(mine / dense for mine, dense in zip(seconds, times["dense"]))
        print(f"{name:>32} {statistics.median(seconds) * 1e6:>10.1f} {ratio:>8.2f}")


if __name__ == "__main__":
    main()
