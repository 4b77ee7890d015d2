"""At 95% sparsity or more on a small CPU model: Feather's p = 3 against hard and soft thresholding, GraNet against GMP.

The two claims checked are Figure 2 of Feather (seed 002; p = 3 at least as
good as p → ∞ and p = 1) and Table 2 of GraNet (seed 003; regeneration at
least as good as plain gradual magnitude pruning). The arms are a CPU
preset's approaches, exactly as the preset fixes them, trained here in one
process on seeds 0..N-1:

- ``sparse_training_cpu``: teacher-student, the MLP 100:100:10 at 95%
  (quality: test loss, lower is better);
- ``sparse-training-digits``: scikit-learn's digits, the MLP 64-64-64-10 at
  98% (quality: test accuracy, higher is better). The task's default
  256-wide MLP is so overparameterised for 1,437 images that even 99%
  sparsity costs about one test image in a hundred, which leaves nothing
  for a sparse-training method to win back.

``--sparsity`` moves every sparse arm to another target. The script prints
mean ± standard deviation per arm and the verdicts.

    python benchmarks/sparse_training_findings.py [--preset sparse-training-digits] [--seeds 5] [--sparsity 0.95]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from preset_energy import train
from greentune.search.config import load_search, sample_trial
from greentune.search.presets import preset_path

TARGETS = {"feather": "sparsity", "granet": "final_sparsity", "gmp": "final_sparsity"}  # each technique's sparsity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["sparse_training_cpu", "sparse-training-digits"], default="sparse_training_cpu")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sparsity", type=float, help="override the preset's target sparsity")
    args = parser.parse_args()
    torch.set_num_threads(1)
    search = load_search(preset_path(args.preset))
    task = search.task()
    better = min if task.mode == "min" else max
    quality: dict[str, list[float]] = {}
    print(f"{args.preset}: seeds 0..{args.seeds - 1}" + (f", sparsity {args.sparsity}" if args.sparsity else ""))
    print(f"{'arm':>13} {task.quality:>20} {'final sparsity':>15} {'flops_sparse/flops':>19} {'inference flops':>16}")
    for approach in search.approaches:
        runs = []
        for seed in range(args.seeds):
            config = {**sample_trial(search.settings, approach), "seed": seed}
            for technique, parameter in TARGETS.items():
                if args.sparsity is not None and technique in config:
                    config[technique][parameter] = args.sparsity
            runs.append(train(config))
        quality[approach.name] = [run["quality"] for run in runs]
        sparsity = statistics.mean(run.get("sparsity", 0.0) for run in runs)
        flops = statistics.mean(run["flops_sparse"] / run["flops"] for run in runs)
        inference = statistics.mean(run["inference_flops"] / run["inference_flops_dense"] for run in runs)
        spread = statistics.stdev(quality[approach.name]) if args.seeds > 1 else 0.0
        mean = statistics.mean(quality[approach.name])
        print(f"{approach.name:>13} {mean:>11.5f} ± {spread:.5f} {sparsity:>15.4f} {flops:>19.3f} {inference:>16.3f}")
    mean = {name: statistics.mean(values) for name, values in quality.items()}

    def at_least(a: str, b: str) -> bool:
        return better(mean[a], mean[b]) == mean[a]

    print(f"feather p=3 at least hard: {at_least('feather-p3', 'feather-hard')}; "
          f"p=3 at least soft: {at_least('feather-p3', 'feather-soft')}; granet at least gmp: {at_least('granet', 'gmp')}")


if __name__ == "__main__":
    main()
