"""At 95% sparsity on a small CPU model: Feather's p = 3 against hard and soft thresholding, GraNet against GMP.

The two claims checked are Figure 2 of Feather (seed 002; p = 3 at least as
good as p → ∞ and p = 1) and Table 2 of GraNet (seed 003; regeneration at
least as good as plain gradual magnitude pruning). Two small tasks train
with SGD, momentum 0.9 and cosine annealing:

- ``teacher_student``: the MLP 100:100:10 (quality: test loss, lower is
  better), lr 0.05 over 3500 steps; preset ``sparse_training_cpu``;
- ``digits``: scikit-learn's digits with the MLP 64-64-64-10 (quality: test
  accuracy, higher is better), lr 0.1 over 60 epochs; preset
  ``sparse-training-digits``. The default 256-wide MLP is so overparameterised
  for 1,437 images that even 99% sparsity costs about one test image in a
  hundred, which leaves nothing for a sparse-training method to win back.

Each arm runs the same seeds; the script prints mean ± standard deviation and
the verdicts. The presets run the same arms through the search.

    python benchmarks/sparse_training_findings.py [--task digits] [--seeds 5] [--sparsity 0.95]
"""

from __future__ import annotations

import argparse
import statistics

import torch

import techniques
from trainables.energy import open_meter
from trainables.loop import Training
from trainables.tasks import create_task

# Per task: its options, the model variant, the training settings and GraNet's
# pruning interval in steps (on digits, about 1/70 of training, GraNet's
# proportion on CIFAR: Δt = 1000 of about 62,500 iterations).
SETUPS = {
    "teacher_student": ({}, "wide", {"momentum": 0.9, "lr": 0.05, "schedule": "cosine"}, 100),
    "digits": (
        {"hidden": [64, 64]},
        "full",
        {"optimizer": "sgd", "momentum": 0.9, "lr": 0.1, "schedule": "cosine", "epochs": 60},
        20,
    ),
}


def arms(sparsity: float, interval: int) -> dict[str, tuple[str, dict]]:
    granet = {"final_sparsity": sparsity, "interval": interval}
    return {
        "dense": ("baseline", {}),
        "feather p=3": ("feather", {"sparsity": sparsity, "power": 3.0}),
        "feather hard": ("feather", {"sparsity": sparsity, "power": "hard"}),
        "feather soft": ("feather", {"sparsity": sparsity, "power": 1.0}),
        "granet": ("granet", {**granet, "regenerate": True}),
        "gmp": ("gmp", granet),
    }


def final_metrics(task, model: str, train: dict, name: str, params: dict, seed: int) -> dict:
    meter = open_meter(False)
    technique = techniques.create([name], {name: params} if params else None)
    training = Training(task, technique, task.defaults.override(train), model=model, seed=seed, meter=meter)
    *_, metrics = training.evaluations()
    meter.close()
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(SETUPS), default="teacher_student")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sparsity", type=float, default=0.95)
    args = parser.parse_args()
    torch.set_num_threads(1)
    options, model, train, interval = SETUPS[args.task]
    task = create_task(args.task, **options)
    better = min if task.mode == "min" else max
    quality: dict[str, list[float]] = {}
    print(f"{args.task} {options} (model {model}), sparsity {args.sparsity}, {train}, seeds 0..{args.seeds - 1}")
    print(f"{'arm':>13} {task.quality:>20} {'final sparsity':>15} {'flops_sparse/flops':>19} {'inference flops':>16}")
    for label, (name, params) in arms(args.sparsity, interval).items():
        runs = [final_metrics(task, model, train, name, params, seed) for seed in range(args.seeds)]
        quality[label] = [run["quality"] for run in runs]
        sparsity = statistics.mean(run.get("sparsity", 0.0) for run in runs)
        flops = statistics.mean(run["flops_sparse"] / run["flops"] for run in runs)
        inference = statistics.mean(run["inference_flops"] / run["inference_flops_dense"] for run in runs)
        spread = statistics.stdev(quality[label]) if args.seeds > 1 else 0.0
        print(f"{label:>13} {statistics.mean(quality[label]):>11.5f} ± {spread:.5f} {sparsity:>15.4f} {flops:>19.3f} {inference:>16.3f}")
    mean = {label: statistics.mean(values) for label, values in quality.items()}

    def at_least(a: str, b: str) -> bool:
        return better(mean[a], mean[b]) == mean[a]

    print(f"feather p=3 at least hard: {at_least('feather p=3', 'feather hard')}; "
          f"p=3 at least soft: {at_least('feather p=3', 'feather soft')}; granet at least gmp: {at_least('granet', 'gmp')}")


if __name__ == "__main__":
    main()
