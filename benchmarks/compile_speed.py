"""What ``train: {compile: true}`` buys: a training step through ``torch.compile`` against the eager one.

For each of ``sparse_step_time.py``'s setups and a variant of it, two runs
of greentune's loop, one eager and one compiled, take turns at training a
block of steps, so machine drift hits both alike; the ratio printed is the
median over blocks of compiled / eager step time. Compiling costs the
compiled run's first training step (the step before it, which counts
FLOPs, always runs eager); the break-even is that cost over the time a
compiled step saves, in steps. The MLP's blocks are 25 times as long.
Compiling is timed cold, with an empty Inductor cache, as a trial's first
compile on a fresh node is; ``--warm-cache`` keeps the user's cache, as a
later trial of the same model on that node finds it.

    python benchmarks/compile_speed.py [--setups mlp resnet20] [--variant dense] [--blocks 5] [--block-steps 10] [--warm-cache]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

import torch

from sparse_step_time import VARIANTS, setups, timed_steps, variant_technique
from greentune.trainables.energy import open_meter
from greentune.trainables.loop import Training


def compare(setup: str, variant: str, blocks: int, block_steps: int, device: str) -> dict:
    label, task, model, settings = setups(1)[setup]
    block_steps *= 25 if setup == "mlp" else 1  # as sparse_step_time.py runs its far shorter steps
    settings = settings.override({"steps": 2 + blocks * block_steps, "eval_every": 10**9})
    runs = {}
    for compiled in (False, True):
        runs[compiled] = Training(task, variant_technique(variant), settings.override({"compile": compiled}),
                                  model=model, seed=0, meter=open_meter(device == "cuda"), device=device)
        runs[compiled].model.train()
        runs[compiled]._train_step()  # counts FLOPs, eager in both
    first_step = {compiled: timed_steps(training, 1) for compiled, training in runs.items()}  # compiles
    ratios, eager_steps, compiled_steps = [], [], []
    for _ in range(blocks):
        eager, compiled = timed_steps(runs[False], block_steps), timed_steps(runs[True], block_steps)
        ratios.append(compiled / eager)
        eager_steps.append(eager)
        compiled_steps.append(compiled)
    eager, compiled = statistics.median(eager_steps), statistics.median(compiled_steps)
    compile_s = first_step[True] - first_step[False]
    return {
        "label": label,
        "eager_ms": 1e3 * eager,
        "compiled_ms": 1e3 * compiled,
        "ratio": statistics.median(ratios),
        "compile_s": compile_s,
        "break_even": compile_s / (eager - compiled) if eager > compiled else float("inf"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", nargs="+", choices=("mlp", "resnet20", "vgg11"), default=["mlp", "resnet20"])
    parser.add_argument("--variant", choices=list(VARIANTS), default="dense")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--block-steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warm-cache", action="store_true", help="keep Inductor's cache instead of starting empty")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    cache = "warm" if args.warm_cache else "cold"
    print(f"{args.variant}, device {args.device}, {args.blocks} alternating blocks of {args.block_steps} steps, medians; {cache} cache")
    print(f"{'setup':>34} {'eager ms':>9} {'compiled ms':>12} {'compiled / eager':>17} {'compile s':>10} {'break-even steps':>17}")
    for setup in args.setups:
        r = compare(setup, args.variant, args.blocks, args.block_steps, args.device)
        print(f"{r['label']:>34} {r['eager_ms']:>9.2f} {r['compiled_ms']:>12.2f} {r['ratio']:>17.3f} {r['compile_s']:>10.1f} {r['break_even']:>17.0f}")


if __name__ == "__main__":
    main()
