"""A grid preset's approaches trained in this one process, interleaved, for steadier energy ratios.

Through Ray, each trial's CPU-time energy estimate also carries its worker's
background threads and whatever else shares the machine, which on a small
shared box is noise of the size of the teacher–student differences (a few
percent between baseline small and big). Here every approach of the preset
runs in turn in this process, round after round, with the same seeds, and
the medians of per-round ratios to the reference approach are printed, with
each approach's run-to-run spread (coefficient of variation of its energy
over the rounds): how finely this machine can tell approaches apart.
Parameters the preset leaves open run at the low end of their range.

    python benchmarks/preset_energy.py [--preset grow-prune-select-teacher-student] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from greentune.search.config import load_search, sample_trial
from greentune.search.presets import preset_path
from greentune.trainables.trial import build_training


def train(config: dict) -> dict:
    training = build_training(config)
    for metrics in training.evaluations():
        pass
    training.meter.close()
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="grow-prune-select-teacher-student")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    search = load_search(preset_path(args.preset))
    reference = (search.settings.summary and search.settings.summary.reference) or search.approaches[-1].name
    runs: dict[str, list[dict]] = {approach.name: [] for approach in search.approaches}
    for round_index in range(args.rounds):
        for approach in search.approaches:
            config = {**sample_trial(search.settings, approach), "seed": search.settings.seed + round_index}
            runs[approach.name].append(train(config))
    source = runs[reference][0]["energy_source"]
    print(f"{args.preset}: {args.rounds} interleaved rounds in one process, medians; energy source: {source}")
    print(f"{'approach':<22} {'energy J':>9} {'energy / ' + reference:>22} {'FLOPs / ' + reference:>22} {'train_loss':>11} {'energy cv':>10}")
    for name, results in runs.items():
        ratio = statistics.median(r["energy_j"] / b["energy_j"] for r, b in zip(results, runs[reference]))
        flops = statistics.median(r["flops"] / b["flops"] for r, b in zip(results, runs[reference]))
        energy = statistics.median(r["energy_j"] for r in results)
        loss = statistics.mean(r.get("train_loss", float("nan")) for r in results)
        energies = [r["energy_j"] for r in results]
        spread = statistics.stdev(energies) / statistics.mean(energies) if len(energies) > 1 else float("nan")
        print(f"{name:<22} {energy:>9.2f} {ratio:>22.3f} {flops:>22.3f} {loss:>11.5f} {spread:>10.1%}")


if __name__ == "__main__":
    main()
