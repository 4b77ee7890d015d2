"""Pruning plasticity (GraNet §3): how well a model recovers from pruning at epoch t.

For each point of the grid (t, q, regeneration): train the configured run to
epoch t (one checkpoint per t and seed, shared by every q), prune a fraction q
of its remaining weights by global magnitude, optionally regrow as many by
gradient magnitude in each layer (the regeneration of the paper's Figure 2),
then continue k epochs with the mask fixed at the learning rate the run had
at t. Plasticity is the quality after the continuation minus the quality
just before pruning. The pre-training may itself be sparse: its zeros are
kept as the starting mask.

    python -m greentune.trainables.plasticity --config trial.yaml --epochs 2,5,10 \\
        --rates 0.2,0.5,0.9,0.98 --continue-epochs 3 --seeds 0,1

``trial.yaml`` is one trial's config (``task``, ``model``, ``techniques``,
``train``, ...; see ``trainables.trial``); without it the teacher-student
task is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from greentune.techniques import Technique
from greentune.techniques.masks import WeightMasks, prunable_layers

from .loop import Training
from .tasks import create_task
from .trial import ConfigError, build_training


class FixedMask(Technique):
    """Keeps a given mask applied after every step, with pruned weights' optimizer state at zero."""

    name = "fixed_mask"
    claims = frozenset({"weights"})

    def __init__(self, masks: WeightMasks):
        self.masks = masks

    def after_step(self, run):
        self.masks.apply()
        self.masks.apply_to_optimizer(run.optimizer)


def prune_one_shot(training: Training, rate: float, regenerate: bool) -> WeightMasks:
    """Remove ``rate`` of the nonzero weights by global magnitude; with ``regenerate``, regrow as many per layer."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"the pruning rate must be in [0, 1), got {rate}")
    parameters = list(training.model.parameters())
    training.model = training.technique.export(training.model)  # e.g. Feather's thresholded weights, written back
    if list(training.model.parameters()) != parameters:
        training.optimizer = training.make_optimizer(training.model)
    masks = WeightMasks.of_nonzero(prunable_layers(training.model))
    before = masks.active()
    masks.prune_global_magnitude(1.0 - (1.0 - rate) * masks.density())
    masks.apply()
    if regenerate:
        training.optimizer.zero_grad(set_to_none=True)
        inputs, targets = training.sample_batch()
        training.loss_fn(training.model(inputs), targets).backward()
        gradients = [layer.weight.grad for layer in masks.layers]
        masks.grow_largest(gradients, [old - new for old, new in zip(before, masks.active())])
        training.optimizer.zero_grad(set_to_none=True)
    masks.apply_to_optimizer(training.optimizer)
    return masks


def trained_to(config: Mapping[str, Any], epoch: float, directory: Path) -> tuple[Training, float]:
    """The configured run at ``epoch``, and its quality there, from a checkpoint when one exists."""
    training = build_training(config)
    stop = round(epoch * training.steps_per_epoch)
    if stop < 1:
        raise ValueError(f"epoch {epoch} is less than one step; prune after at least one step")
    path = directory / f"epoch{epoch}-seed{config.get('seed', 0)}.pt"
    if path.exists():
        training.load(path)
        return training, json.loads(path.with_suffix(".json").read_text())["quality"]
    training.settings = dataclasses.replace(training.settings, eval_every=stop)  # one evaluation, at t
    quality = next(training.evaluations())["quality"]
    training.save(path)
    path.with_suffix(".json").write_text(json.dumps({"quality": quality}))
    return training, quality


def pruning_plasticity(
    config: Mapping[str, Any], epoch: float, rate: float, regenerate: bool, continue_epochs: float, directory: Path
) -> dict[str, float]:
    training, before = trained_to(config, epoch, directory)
    lr = training.optimizer.param_groups[0]["lr"]
    sparsity = 1.0 - WeightMasks.of_nonzero(prunable_layers(training.model)).density()
    masks = prune_one_shot(training, rate, regenerate)
    steps = max(1, round(continue_epochs * training.steps_per_epoch))
    training.technique = FixedMask(masks)
    training.settings = dataclasses.replace(training.settings, schedule="constant", lr=lr, eval_every=steps)
    training.total_steps = training.step + steps
    after = next(training.evaluations())["quality"]
    training.meter.close()
    return {
        "epoch": epoch, "rate": rate, "regenerate": regenerate, "lr": lr,
        "sparsity_before": sparsity, "sparsity_after": 1.0 - masks.density(),
        "quality_before": before, "quality_after": after, "plasticity": after - before,
    }


def numbers(text: str) -> list[float]:
    return [float(value) for value in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="a trial config (YAML); default: teacher-student")
    parser.add_argument("--epochs", type=numbers, required=True, help="comma-separated epochs t at which to prune")
    parser.add_argument("--rates", type=numbers, default=[0.2, 0.5, 0.9, 0.98], help="comma-separated pruning rates q")
    parser.add_argument("--continue-epochs", type=float, default=1.0, help="epochs k of continued training")
    parser.add_argument("--seeds", type=lambda text: [int(v) for v in text.split(",")], default=[0])
    parser.add_argument("--checkpoints", type=Path, help="directory for the epoch-t checkpoints (default: temporary)")
    args = parser.parse_args(argv)
    try:
        config = yaml.safe_load(args.config.read_text()) if args.config else {"task": "teacher_student"}
        with tempfile.TemporaryDirectory() as scratch:
            directory = args.checkpoints or Path(scratch)
            directory.mkdir(parents=True, exist_ok=True)
            task = create_task(config.get("task", "teacher_student"), **dict(config.get("task_options") or {}))
            better = "higher" if task.mode == "max" else "lower"
            print(f"quality: {task.quality} ({better} is better); plasticity = after - before; mean over seeds {args.seeds}")
            print(f"{'epoch':>6} {'rate':>5} {'regen':>5} {'lr':>8} {'sparsity':>8} {'before':>9} {'after':>9} {'plasticity':>10}")
            for epoch, rate, regenerate in itertools.product(args.epochs, args.rates, (False, True)):
                rows = [
                    pruning_plasticity({**config, "seed": seed}, epoch, rate, regenerate, args.continue_epochs, directory)
                    for seed in args.seeds
                ]
                mean = {key: sum(float(row[key]) for row in rows) / len(rows) for key in rows[0]}
                print(
                    f"{epoch:>6g} {rate:>5g} {str(regenerate):>5} {mean['lr']:>8.4g} {mean['sparsity_after']:>8.3f} "
                    f"{mean['quality_before']:>9.4f} {mean['quality_after']:>9.4f} {mean['plasticity']:>+10.4f}"
                )
    except (ConfigError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
