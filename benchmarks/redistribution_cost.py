"""Each redistribution algorithm's epoch time and peak memory relative to the neuron-equivalent dense network.

The analogue of seed 001's Table 1 (time per epoch, HIGGS 21-256-256-256-1)
and Table 2 (memory, KMNIST widened to 784-4096-4096-10 so that the
algorithms' own memory shows). Every configuration trains in a fresh process,
so that its peak memory (CUDA allocator peak, or on a CPU the growth of the
peak resident set over the process's start) is its own; the rounds are
interleaved so that machine drift hits every configuration alike, and the
ratios are medians over rounds. Time per epoch includes the redistributions
(one per epoch until 3/4 of training). Energy is the loop's meter: on a CPU
without RAPL it is an estimate proportional to the process's CPU time,
which other processes on a shared machine disturb less than wall time.

Timing and memory do not depend on the data's values, so by default the
real task code (reading, augmentation, training) runs on shape-true random
stand-ins written in the tasks' own on-disk formats with ``--samples``
training rows; ``--higgs PATH`` or ``--kmnist-dir DIR`` use real data.
Masks are dense tensors here, as in PyTorch generally, so sparse training
costs dense compute plus the algorithms' own overhead; the paper's CUDA
kernels were sparse.

    python benchmarks/redistribution_cost.py --setup higgs [--densities 0.1] [--epochs 4] [--rounds 3]
    python benchmarks/redistribution_cost.py --setup kmnist-wide --samples 2048 --rounds 1
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import os
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from greentune.trainables.datasets import write_idx

SPARSE = ["static_sparse", "redr_random", "redr_gradient", "redr_gradient_global", "redr_loss", "redr_woodfisher", "redr_woodtaylor"]


def synthetic_higgs(directory: Path, rows: int) -> Path:
    path = directory / "HIGGS-synthetic.csv.gz"
    table = torch.randn(rows, 29, generator=torch.Generator().manual_seed(0))
    table[:, 0] = (table[:, 1] > 0).float()
    with gzip.open(path, "wt", compresslevel=1) as file:
        for row in table.tolist():
            file.write(",".join(f"{value:.4f}" for value in row) + "\n")
    return path


def synthetic_kmnist(directory: Path, train: int, test: int) -> Path:
    raw = directory / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", torch.randint(0, 256, (count, 28, 28), generator=generator))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", torch.randint(0, 10, (count,), generator=generator))
    return directory


def task_for(args, directory: Path) -> tuple[str, dict]:
    if args.setup == "higgs":
        path = args.higgs or synthetic_higgs(directory, args.samples + args.samples // 5)
        return "higgs", {"path": str(path), "n_train": args.samples, "n_test": args.samples // 5}
    if args.setup == "kmnist-wide":
        root = args.kmnist_dir or synthetic_kmnist(directory, args.samples, args.samples // 6)
        return "kmnist", {"data_dir": str(root), "hidden": [4096, 4096], "download": False}
    return "digits", {}


def configurations(task: str, options: dict, densities: list[float], epochs: int) -> dict[str, dict]:
    base = {"task": task, "task_options": options, "train": {"epochs": epochs}, "seed": 0, "device": "auto"}
    configs = {"dense neuron-equivalent": {**base, "techniques": ["baseline"], "model": "full"}}
    for density in densities:
        configs[f"dense param-equivalent {density}"] = {**base, "techniques": ["baseline"], "model": f"param-equivalent-{density}"}
        for name in SPARSE:
            configs[f"{name} {density}"] = {**base, "techniques": [name], "model": "full", name: {"density": density}}
    return configs


def measure(config: dict) -> dict:
    """Seconds and joules per epoch and the peak MB added by the trial, in a fresh process."""
    from greentune.trainables.trial import build_training

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    training = build_training(config)
    for metrics in training.evaluations():
        pass
    training.meter.close()
    return {
        "epoch_s": metrics["time_per_epoch_s"],
        "epoch_j": metrics["energy_j"] / metrics["epoch"],
        "memory_mb": metrics["peak_memory_added_mb"],
        "sources": f"energy: {metrics['energy_source']}, memory: {metrics['memory_source']}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", choices=["higgs", "kmnist-wide", "digits"], default="higgs")
    parser.add_argument("--densities", type=float, nargs="+", default=[0.1])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20_000, help="training rows of the synthetic stand-in")
    parser.add_argument("--higgs", help="a real HIGGS.csv.gz instead of the stand-in")
    parser.add_argument("--kmnist-dir", help="a data directory holding KMNIST/raw instead of the stand-in")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    with tempfile.TemporaryDirectory() as directory:
        task, options = task_for(args, Path(directory))
        configs = configurations(task, options, args.densities, args.epochs)
        runs: dict[str, list[dict]] = {name: [] for name in configs}
        spawn = multiprocessing.get_context("spawn")
        for _ in range(args.rounds):
            for name, config in configs.items():
                with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as fresh:
                    runs[name].append(fresh.submit(measure, config).result())

    dense = runs["dense neuron-equivalent"]
    data = "real data" if args.higgs or args.kmnist_dir or args.setup == "digits" else f"synthetic stand-in, {args.samples} rows"
    print(f"{args.setup} ({data}), {args.epochs} epochs, {args.rounds} interleaved rounds, medians; {dense[0]['sources']}")
    print(f"{'configuration':<30} {'epoch s':>8} {'time/dense':>11} {'energy/dense':>13} {'peak MB':>8} {'memory/dense':>13}")
    for name, measured in runs.items():
        def ratio(key: str) -> float:
            return statistics.median(run[key] / base[key] for run, base in zip(measured, dense))

        epoch, memory = (statistics.median(run[key] for run in measured) for key in ("epoch_s", "memory_mb"))
        print(
            f"{name:<30} {epoch:>8.3f} {ratio('epoch_s'):>11.2f} {ratio('epoch_j'):>13.2f} {memory:>8.1f} {ratio('memory_mb'):>13.2f}"
        )


if __name__ == "__main__":
    main()
