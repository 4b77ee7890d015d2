"""Sparse training's step time relative to dense training of the same model.

Every sparse technique here keeps dense weights and dense kernels: Feather
thresholds every weight tensor and finds a global quantile each step,
GraNet/GMP zero pruned weights after each step and prune/regrow every Δt
steps (10 here, so that short runs hold many rounds; ``-100``: at the
default), random pruning, static sparse training and SET (``redr_random``,
redistributing every epoch; ``set-100``: every 10) zero pruned gradients. So their steps cost at
least a dense step, and what they add is their bookkeeping; the sparse FLOP
count says what a sparse kernel would save. This prints both side by side:
measured time and energy per step over the dense baseline's (realised), and
``flops_sparse / flops`` (simulated).

Runs in this process with the real loop, on the teacher-student MLP, on a
CIFAR-shaped ResNet-20 and on VGG-11 at 16x16 (both fed random images),
interleaving the variants over several rounds so machine drift hits all
alike; medians of per-round ratios. One thread.

    python benchmarks/sparse_step_time.py [--rounds 3] [--steps 40] [--device cpu] [--setups mlp vgg11] [--variants dense feather]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from greentune import techniques
from greentune.trainables.data import DeviceData
from greentune.trainables.energy import open_meter
from greentune.trainables.loop import Training
from greentune.trainables.models import create_model
from greentune.trainables.tasks import Task, TrainSettings, create_task

SPARSITY = 0.9
SETUPS = ("mlp", "resnet20", "vgg11")
VARIANTS = {
    "dense": ([], {}),
    "feather": (["feather"], {"feather": {"sparsity": SPARSITY}}),
    "feather-asl": (["feather"], {"feather": {"sparsity": SPARSITY, "backbone": "asl"}}),
    "granet": (["granet"], {"granet": {"final_sparsity": SPARSITY, "interval": 10}}),
    "gmp": (["gmp"], {"gmp": {"final_sparsity": SPARSITY, "interval": 10}}),
    # At their default Δt of 100 steps: ten times fewer prune/regrow rounds than above.
    "granet-100": (["granet"], {"granet": {"final_sparsity": SPARSITY}}),
    "gmp-100": (["gmp"], {"gmp": {"final_sparsity": SPARSITY}}),
    "random": (["random_pruning"], {"random_pruning": {"sparsity": SPARSITY}}),
    "static": (["static_sparse"], {"static_sparse": {"density": 1 - SPARSITY}}),
    "set": (["redr_random"], {"redr_random": {"density": 1 - SPARSITY}}),
    # Every 10 epochs: on the teacher-student MLP (10 batches an epoch), every 100 steps, as GraNet's default.
    "set-100": (["redr_random"], {"redr_random": {"density": 1 - SPARSITY, "interval": 10}}),
}


class RandomImages(Task):
    """CIFAR-shaped random images and labels: the cost of a step does not depend on the pixels."""

    name, quality, mode, default_model = "random_images", "test_loss", "min", "resnet20"
    models = ("resnet20", "vgg11")

    def __init__(self, size: int = 32):
        self.size = size

    def splits(self, device, batch_size, seed):
        generator = torch.Generator().manual_seed(seed)
        images = torch.randn(512, 3, self.size, self.size, generator=generator)
        labels = torch.randint(10, (512,), generator=generator)
        return DeviceData(images.to(device), labels.to(device), batch_size, seed=seed), DeviceData(images[:64].to(device), labels[:64].to(device), 64)

    def build_model(self, variant):
        return create_model(variant, num_classes=10)

    def loss_fn(self, outputs, targets):
        return nn.functional.cross_entropy(outputs, targets)

    def evaluate(self, model, train, held_out):
        return {"test_loss": 0.0}


def setups(steps: int) -> dict[str, tuple[str, Task, str, TrainSettings]]:
    """Each setup's label, task, model and settings for runs of ``steps`` steps; the MLP's, far shorter, 25 times as many."""
    student = create_task("teacher_student")
    return {
        "mlp": ("teacher-student MLP 100:100:10", student, "wide", student.defaults.override({"steps": 25 * steps, "eval_every": 25 * steps})),
        "resnet20": (
            "ResNet-20, 32x32 images, batch 64", RandomImages(), "resnet20",
            TrainSettings(lr=0.1, momentum=0.9, batch_size=64, steps=steps, eval_every=steps),
        ),
        "vgg11": (
            "VGG-11, 16x16 images, batch 32", RandomImages(size=16), "vgg11",
            TrainSettings(lr=0.01, momentum=0.9, batch_size=32, steps=steps, eval_every=steps),
        ),
    }


def variant_technique(variant: str) -> techniques.Technique:
    """A fresh technique object for one of ``VARIANTS`` (the baseline for ``dense``)."""
    names, params = VARIANTS[variant]
    return techniques.create(names or ["baseline"], params)


def timed_steps(training: Training, steps: int) -> float:
    """Seconds per step over the next ``steps`` training steps."""
    if training.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        training._train_step()
    if training.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def run(task: Task, model: str, settings: TrainSettings, variant: str, seed: int, device: str) -> dict:
    technique = variant_technique(variant)
    meter = open_meter(device == "cuda")
    training = Training(task, technique, settings, model=model, seed=seed, meter=meter, device=device)
    *_, metrics = training.evaluations()
    meter.close()
    return {
        "step_s": metrics["time_s"] / metrics["step"],
        "energy_j": metrics["energy_j"],
        "flops_ratio": metrics["flops_sparse"] / metrics["flops"],
        "source": metrics["energy_source"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="steps per run (ResNet); the MLP runs 25x as many")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--setups", nargs="+", choices=SETUPS, default=list(SETUPS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="dense always runs")
    args = parser.parse_args()
    variants = ["dense"] + [variant for variant in args.variants if variant != "dense"]
    torch.set_num_threads(1)
    for label, task, model, settings in (setups(args.steps)[name] for name in args.setups):
        runs: dict[str, list[dict]] = {variant: [] for variant in variants}
        for round_index in range(args.rounds):
            for variant in variants:
                runs[variant].append(run(task, model, settings, variant, round_index, args.device))
        print(f"{label}: sparsity {SPARSITY}, {settings.steps} steps, {args.rounds} interleaved rounds, medians; "
              f"device {args.device}, energy source {runs['dense'][0]['source']}")
        print(f"{'variant':>12} {'step ms':>8} {'time / dense':>13} {'energy / dense':>15} {'flops_sparse / flops':>21}")
        for variant, results in runs.items():
            time_ratio = statistics.median(r["step_s"] / d["step_s"] for r, d in zip(results, runs["dense"]))
            energy_ratio = statistics.median(r["energy_j"] / d["energy_j"] for r, d in zip(results, runs["dense"]))
            step_ms = 1e3 * statistics.median(r["step_s"] for r in results)
            flops = statistics.median(r["flops_ratio"] for r in results)
            print(f"{variant:>12} {step_ms:>8.2f} {time_ratio:>13.3f} {energy_ratio:>15.3f} {flops:>21.3f}")
        print()


if __name__ == "__main__":
    main()
