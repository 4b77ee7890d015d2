"""Where a technique's training step spends its time, by ``torch.profiler``, in greentune's own loop.

``sparse_step_time.py`` says how much slower a technique's step is than a
dense one; this says why. It runs one of that script's setups and
variants (same models, data, technique parameters and run length), with
each technique hook marked by ``torch.profiler.record_function``, and
profiles every step after a few unprofiled ones (the first counts FLOPs).
It prints, per hook, its CPU time per step and how much of it ran in ATen
ops; the rest of a hook's time is Python and NumPy, which the profiler
does not see inside. Then the ATen ops that cost the most, all step long.

Last, without the profiler, it times the same steps and hooks with
``perf_counter`` for the variant and for dense, and compares what lies
outside the hooks (data, forward, backward, optimizer: the same work in
both). Where that rest is slower than dense's, the hooks cost the step
more than their own time: on a small model their memory traffic and code
leave the caches colder for the model's work.

The profiler records every op, which adds a few microseconds to each: the
times are inflated, most for a small model's many small ops, so read the
shares, not the absolute figures, and take ratios from ``sparse_step_time.py``.

    python benchmarks/step_profile.py [--setup mlp] [--variant feather] [--steps 40] [--warmup 5] [--rows 15]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from greentune import techniques
from sparse_step_time import VARIANTS, setups, timed_steps, variant_technique
from greentune.trainables.energy import open_meter
from greentune.trainables.loop import Training

HOOKS = ("keep_batch", "extra_loss", "after_backward", "layer_densities", "after_step", "on_epoch_end")
STEP = "training step"


@dataclass
class HookTime:
    calls: int
    total_us: float  # per profiled step, with the ops it ran
    aten_us: float  # per profiled step, in the ATen ops it ran


def wrap_hooks(technique: techniques.Technique, around: Callable[[str], ContextManager]) -> None:
    """Run each hook of this technique object inside ``around(its name)``."""
    for name in HOOKS:
        hook = getattr(technique, name)

        def wrapped(*args, _hook=hook, _name=name, **kwargs):
            with around(_name):
                return _hook(*args, **kwargs)

        setattr(technique, name, wrapped)


class Stopwatch:
    """Adds the ``perf_counter`` seconds spent inside it to ``totals[name]``."""

    def __init__(self, totals: dict[str, float], name: str):
        self.totals, self.name = totals, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exception) -> None:
        self.totals[self.name] += time.perf_counter() - self.start


def warmed_training(
    setup: str, variant: str, steps: int, warmup: int, device: str, around: Callable[[str], ContextManager] | None = None
) -> Training:
    """A run of ``sparse_step_time.py``'s setup and variant, its hooks inside ``around`` if given, ``warmup`` steps in.

    ``steps`` as in ``sparse_step_time.py``: the run's length, 25 times as many for the MLP.
    """
    _, task, model, settings = setups(steps)[setup]
    technique = variant_technique(variant)
    if around is not None:
        wrap_hooks(technique, around)
    training = Training(task, technique, settings, model=model, seed=0, meter=open_meter(device == "cuda"), device=device)
    training.model.train()
    for _ in range(warmup):
        training._train_step()
    return training


def time_steps(setup: str, variant: str, steps: int, warmup: int, device: str) -> tuple[float, float]:
    """Microseconds per step after ``warmup``, and of them in the technique's hooks, unprofiled."""
    totals = dict.fromkeys(HOOKS, 0.0)
    training = warmed_training(setup, variant, steps, warmup, device, lambda name: Stopwatch(totals, name))
    totals.update(dict.fromkeys(HOOKS, 0.0))
    timed = training.total_steps - warmup
    return 1e6 * timed_steps(training, timed), 1e6 * sum(totals.values()) / timed


def profile_steps(setup: str, variant: str, steps: int, warmup: int, device: str) -> tuple[float, dict[str, HookTime], profile]:
    """Microseconds per profiled step, each hook's time in them, and the profile itself."""
    training = warmed_training(setup, variant, steps, warmup, device, lambda name: record_function(f"hook {name}"))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    profiled = training.total_steps - warmup
    with profile(activities=activities) as profiler:
        for _ in range(profiled):
            with record_function(STEP):
                training._train_step()
    events = {event.key: event for event in profiler.key_averages()}
    hooks = {
        key.removeprefix("hook "): HookTime(
            calls=event.count,
            total_us=event.cpu_time_total / profiled,
            aten_us=(event.cpu_time_total - event.self_cpu_time_total) / profiled,
        )
        for key, event in events.items()
        if key.startswith("hook ")
    }
    return events[STEP].cpu_time_total / profiled, hooks, profiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", choices=("mlp", "resnet20", "vgg11"), default="mlp")
    parser.add_argument("--variant", choices=list(VARIANTS), default="feather")
    parser.add_argument("--steps", type=int, default=40, help="the run's steps (ResNet, VGG); the MLP runs 25x as many")
    parser.add_argument("--warmup", type=int, default=5, help="steps trained before profiling the rest")
    parser.add_argument("--rows", type=int, default=15, help="ATen ops listed")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    step_us, hooks, profiler = profile_steps(args.setup, args.variant, args.steps, args.warmup, args.device)
    print(f"{args.variant} on {args.setup}: every step after the first {args.warmup}, device {args.device}; "
          f"a step takes {step_us:.0f} µs under the profiler")
    print(f"{'hook':>16} {'calls':>6} {'µs / step':>10} {'of the step':>12} {'in ATen ops':>12}")
    for name, spent in sorted(hooks.items(), key=lambda item: -item[1].total_us):
        print(f"{name:>16} {spent.calls:>6} {spent.total_us:>10.1f} {spent.total_us / step_us:>12.1%} {spent.aten_us:>12.1f}")
    print()
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print()
    print("Unprofiled (perf_counter), the same steps: µs per step, in the hooks, and the rest")
    rests = {}
    for variant in dict.fromkeys((args.variant, "dense")):
        step, hooks = time_steps(args.setup, variant, args.steps, args.warmup, args.device)
        rests[variant] = step - hooks
        print(f"{variant:>16} {step:>8.1f} {hooks:>8.1f} {step - hooks:>8.1f}")
    print(f"Outside its hooks, a {args.variant} step takes {rests[args.variant] / rests['dense']:.2f}x dense's time")


if __name__ == "__main__":
    main()
