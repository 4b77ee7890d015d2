"""Your own network on your own data, searched for the least energy at a given accuracy, without editing greentune.

The data here are 12x12 images of three stripe orientations in noise,
generated below; the network is a small CNN of one's own. The task that
ties them together lives in this file and is named in the search by import
path (``own_model:make_task``): Ray's workers find it because the running
script's directory is on their path, as it is on the driver's.

The search compares the dense network with data selection, random pruning
at initialisation and Feather's sparse training, each over its parameters,
on [accuracy, energy], then prints the Pareto front and a table against the
dense network. ``--quick`` runs fewer, shorter trials (the test suite's
check that the example works).

    python examples/own_model.py [--quick] [--results DIR]
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from torch import nn

from greentune.trainables.tasks import SimpleTask, TrainSettings

SIZE, CLASSES = 12, 3


def stripes(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertical, horizontal or diagonal stripes with a random phase, in Gaussian noise: (images, labels)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(CLASSES, (count,), generator=generator)
    rows, columns = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    position = torch.stack([columns, rows, rows + columns]).float()[labels]  # what each class's stripes follow
    phase = torch.rand(count, 1, 1, generator=generator) * 6.28
    images = torch.sin(position * 1.3 + phase) + 2.0 * torch.randn(count, SIZE, SIZE, generator=generator)
    return images.unsqueeze(1), labels


class StripeNet(nn.Module):
    """A user's own small CNN: two convolutions, global pooling, a linear classifier."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * width, CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))


def make_task(n_train: int = 1024, width: int = 16) -> SimpleTask:
    """The task the search names: data, model, loss, the metric to maximise and how to train."""
    return SimpleTask(
        train=stripes(n_train, seed=0),
        held_out=stripes(512, seed=1),
        models={"stripenet": lambda: StripeNet(width)},
        loss=nn.functional.cross_entropy,
        quality="accuracy",
        mode="max",
        defaults=TrainSettings(optimizer="adam", lr=3e-3, batch_size=64, epochs=6, eval_every=32),
        name="stripes",
    )


def search(quick: bool) -> dict:
    return {
        "task": "own_model:make_task",
        "task_options": {"n_train": 512 if quick else 1024},
        "train": {"epochs": 2 if quick else 6},
        "approaches": {
            "dense": {"techniques": ["baseline"]},
            "data-selection": {"techniques": ["data_selection"], "params": {"data_selection": {"on_skip": "last"}}},
            "random-pruning": {"techniques": ["random_pruning"]},
            "feather": {"techniques": ["feather"]},
        },
        "evaluate_first": ["dense"],
        "objectives": ["quality", "energy_j"],
        "searcher": "tpe",  # multi-objective TPE
        "num_trials": 4 if quick else 12,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 short trials instead of 12")
    parser.add_argument("--results", help="results directory (default: a temporary one)")
    args = parser.parse_args()

    import greentune

    results_dir = args.results or tempfile.mkdtemp(prefix="greentune-own-model-")
    results = greentune.run(search(args.quick), results=results_dir)
    analysis = greentune.analyze(results.directory, baseline="dense", report=False)
    columns = ["approach", "quality", "energy_j", "energy_source", "params"]
    print(f"\nPareto front on [accuracy (max), energy_j (min)], {len(analysis.front)} of {len(results.trials)} trials:")
    print(analysis.front[[column for column in columns if column in analysis.front]].to_string(index=False))
    if analysis.table is not None:
        print("\nAgainst the dense network:")
        table = ["approach", "configuration", "quality", "quality_loss_pct", "energy_j", "energy_gain_pct", "flops_gain_pct"]
        print(analysis.table[[column for column in table if column in analysis.table]].to_string(index=False))
    print(f"\nresults: {results.directory}")


if __name__ == "__main__":
    main()
