"""Each approach of a redistribution preset repeated over seeds, and the paper's two claims checked on the means.

Accuracy differences between sparse-training algorithms are of the order
of the seed-to-seed spread, so the presets repeat each approach over seeds.
This script trains the same trials (seeds ``seed`` to ``seed + N - 1``, N
the preset's ``repeats`` unless ``--seeds`` says otherwise) in one process,
without Ray, prints mean and spread of the held-out accuracy, then whether

- every redistribution algorithm beats static sparse training at each density, and
- global RigL (redr_gradient_global) is at least as good as layer-wise RigL,

as seed 001 reports.

    python benchmarks/redistribution_seeds.py [--preset redistribution-digits] [--seeds 10] [--workers 2]
    python benchmarks/redistribution_seeds.py --approaches woodfisher   # only the approaches whose name contains it
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

from greentune.search.config import Approach, SearchConfig, load_search, sample_trial
from greentune.search.presets import preset_path
from greentune.trainables.trial import build_training


def train(config: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    training = build_training(config)
    for metrics in training.evaluations():
        pass
    training.meter.close()
    return metrics


def density_of(search: SearchConfig, approach: Approach) -> tuple[str, float] | None:
    """(technique, density) of a sparse approach, None for a dense one."""
    for technique, domains in approach.space.items():
        if "density" in domains:
            return technique, domains["density"].value
    return None


def claims(search: SearchConfig, means: dict[str, float]) -> list[str]:
    by_setting = {density_of(search, a): a.name for a in search.approaches if density_of(search, a) and a.name in means}
    lines = []
    for (technique, density), name in sorted(by_setting.items()):
        static = by_setting.get(("static_sparse", density))
        if technique.startswith("redr_") and static:
            verdict = "holds" if means[name] > means[static] else "DOES NOT HOLD"
            lines.append(f"{technique} > static_sparse at density {density}: {means[name]:.4f} vs {means[static]:.4f}: {verdict}")
        if technique == "redr_gradient_global" and ("redr_gradient", density) in by_setting:
            local = means[by_setting[("redr_gradient", density)]]
            verdict = "holds" if means[name] >= local else "DOES NOT HOLD"
            lines.append(f"redr_gradient_global >= redr_gradient at density {density}: {means[name]:.4f} vs {local:.4f}: {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="redistribution-digits")
    parser.add_argument("--seeds", type=int, help="seeds per approach (default: the preset's repeats)")
    parser.add_argument("--workers", type=int, default=1, help="processes training at once (one thread each)")
    parser.add_argument("--approaches", default="", help="only the approaches whose name contains this text")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    search = load_search(preset_path(args.preset))
    seeds = [search.settings.seed + k for k in range(args.seeds or search.settings.repeats)]
    configs = [
        (approach.name, {**sample_trial(search.settings, approach), "seed": seed})
        for approach in search.approaches
        if args.approaches in approach.name
        for seed in seeds
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(train, [config for _, config in configs]))
    elapsed = time.perf_counter() - started
    accuracies: dict[str, list[float]] = {}
    for (name, _), metrics in zip(configs, results):
        accuracies.setdefault(name, []).append(metrics["quality"])
    print(f"{args.preset}: {len(configs)} trainings ({len(seeds)} seeds each) in {elapsed:.0f} s with {args.workers} worker(s)")
    print(f"{'approach':<30} {'mean':>7} {'std':>7}  per seed")
    means = {}
    for name, values in accuracies.items():
        means[name] = statistics.fmean(values)
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:<30} {means[name]:>7.4f} {spread:>7.4f}  {' '.join(f'{value:.3f}' for value in values)}")
    print()
    print("\n".join(claims(search, means)))


if __name__ == "__main__":
    main()
