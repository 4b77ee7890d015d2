"""Training step time of resized VGG-11s relative to baseline big, next to their FLOPs ratios.

Growing (GradMax) and filter pruning change tensor shapes, so the FLOPs they
save should come back as time. Random pruning at initialisation only zeroes
weights through masks: its FLOPs and shapes stay dense, and so, on dense
kernels, does its time. Every variant here is made by the techniques'
own code (filter pruning's L1 choice, GradMax's growth, random pruning's ER
masks) and timed on the same synthetic batch, variants interleaved over
rounds so that machine drift hits all alike; medians are printed.

    python benchmarks/resize_speed.py [--size 16] [--batch 32] [--steps 5] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from greentune import techniques
from greentune.techniques.surgery import width_groups, widths
from greentune.trainables.models import create_model
from record import record


def optimizer_for(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=True)


def statistics_run(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> SimpleNamespace:
    """The few parts of a training run that the techniques' resizing and masking read."""
    run = SimpleNamespace(model=model, seed=0, step=0, loss_fn=nn.functional.cross_entropy, sample_batch=lambda: batch)
    run.make_optimizer, run.structure_changed = optimizer_for, lambda: None
    run.optimizer = optimizer_for(model)
    return run


def resized(start: str, name: str, width_ratio: float, batch, steps: int = 1) -> nn.Module:
    """VGG-11 ``start`` taken to ``width_ratio`` of its widths by technique ``name`` in ``steps`` resizes."""
    model = create_model("vgg11", width=1.0 if start == "big" else 0.25)
    technique = techniques.create([name], {name: {"width_ratio": width_ratio}})
    run, groups = statistics_run(model, batch), width_groups(model)
    initial = widths(model, groups)
    for step in range(1, steps + 1):
        targets = [round(width * (1 + (width_ratio - 1) * step / steps)) for width in initial]
        technique.resize_groups(run, list(zip(groups, widths(model, groups), targets)))
    return model


def masked(sparsity: float, batch) -> tuple[nn.Module, techniques.Technique]:
    model = create_model("vgg11")
    technique = techniques.create(["random_pruning"], {"random_pruning": {"sparsity": sparsity}})
    technique.prepare(model, statistics_run(model, batch))
    return model, technique


class Variant:
    def __init__(self, label: str, model: nn.Module, technique: techniques.Technique | None = None):
        self.label, self.model, self.technique = label, model, technique or techniques.Technique()
        self.run = statistics_run(model, None)
        self.times: list[float] = []

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """One training step as the loop takes it, with the technique's per-step hooks."""
        self.run.optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(self.model(inputs), targets).backward()
        self.technique.after_backward(self.run)
        self.run.optimizer.step()
        self.technique.after_step(self.run)

    def flops(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        with FlopCounterMode(display=False) as counter:
            nn.functional.cross_entropy(self.model(inputs), targets).backward()
        return float(counter.get_total_flops())

    def weights(self) -> int:
        return sum(int(torch.count_nonzero(parameter)) for parameter in self.model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    inputs, targets = torch.randn(args.batch, 3, args.size, args.size), torch.randint(0, 10, (args.batch,))
    batch = (inputs, targets)

    variants = [Variant("baseline big (width 1)", create_model("vgg11"))]
    for ratio in (0.75, 0.5, 0.25):
        variants.append(Variant(f"filter-pruned to {ratio:g}", resized("big", "filter_pruning", ratio, batch)))
    variants.append(Variant("GradMax-grown 1/4 -> 1/2", resized("small", "gradmax", 2.0, batch, steps=2)))
    half_weights = variants[2].weights()
    sparsity = 1 - half_weights / variants[0].weights()
    variants.append(Variant(f"masked, {sparsity:.0%} sparse (ER)", *masked(sparsity, batch)))

    for variant in variants:  # warm-up: allocator, kernels, optimizer state
        for _ in range(2):
            variant.step(inputs, targets)
    for _ in range(args.rounds):
        for variant in variants:
            start = time.perf_counter()
            for _ in range(args.steps):
                variant.step(inputs, targets)
            variant.times.append((time.perf_counter() - start) / args.steps)

    big = variants[0]
    big_time, big_flops = statistics.median(big.times), big.flops(inputs, targets)
    print(f"VGG-11, batch {args.batch} of {args.size}x{args.size}, {args.threads} thread(s), "
          f"{args.rounds} interleaved rounds of {args.steps} steps, medians")
    print(f"{'variant':<30} {'nonzero w':>10} {'step ms':>9} {'time / big':>11} {'FLOPs / big':>12}")
    figures = []
    for variant in variants:
        step = statistics.median(variant.times)
        flops = variant.flops(inputs, targets)
        print(f"{variant.label:<30} {variant.weights():>10} {1e3 * step:>9.1f} {step / big_time:>11.3f} {flops / big_flops:>12.3f}")
        if variant is not big:
            figures.append((f"{variant.label}: step time / FLOPs vs baseline big", f"{step / big_time:.2f}× / {flops / big_flops:.2f}×"))
    record(
        "resize_speed",
        figures,
        what=f"VGG-11 training step (batch {args.batch} of {args.size}×{args.size}, {args.threads} thread(s)) vs baseline big, "
        f"medians of {args.rounds} interleaved rounds of {args.steps} steps.",
    )


if __name__ == "__main__":
    main()
