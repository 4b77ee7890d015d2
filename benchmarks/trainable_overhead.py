"""What the full trainable costs over a plain PyTorch loop on the same model and data.

Two setups, one thread each:

- teacher–student baseline big: 3500 steps, 7 evaluations;
- ResNet-20 on synthetic images (``synthetic_images``, ``gated_resnet20``
  with no technique: a plain ResNet-20 of width 8 on 16x16 images), 128
  steps, 2 evaluations.

Four ways to train each:

- plain: a bare loop a PyTorch user would write (the task's data on the
  device with its batch augmentation, fused SGD with the task's settings and
  its cosine schedule), no metering, no evaluation; timed from building the
  data and model to the last step;
- plain, evaluating: the same loop computing the task's metrics where
  greentune's loop evaluates, the work the trial reports besides training;
- Training: greentune's loop in this process (hooks, energy meter at window
  edges, FLOP counting, evaluations);
- trainable: the Ray Tune trial (the above plus a report at every evaluation
  and checkpoints as a trial takes them by default: a minute or more apart
  and at the last evaluation, so here only the last), timed by Ray as the
  trial's ``time_total_s``;
- the same trial checkpointing every evaluation (``checkpoint_every: 1``),
  to show what that default saves.

The plain loop and the trainables all run inside one reused Ray worker,
alternating seed by seed, so that they share the worker's environment and
each seed's runs meet the same machine load; the ratio printed is the
median over seeds of trainable / plain of the same seed, for each plain
loop (Training in-process is timed against plain loops in this process the
same way, taking turns at going first). The first seed warms the worker up
and is dropped.

    python benchmarks/trainable_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from greentune import techniques
from greentune.trainables.energy import open_meter
from greentune.trainables.loop import Training
from greentune.trainables.tasks import create_task

PLAIN = ("plain", "plain+eval")
TRAINABLES = {  # label: what the trial config adds
    "Ray Tune trainable, in its worker": {},
    "  the same, checkpointing every evaluation": {"checkpoint_every": 1},
}
SETUPS = {
    "teacher-student baseline big, 3500 steps, 7 evaluations": {"task": "teacher_student", "model": "big"},
    "ResNet-20 on synthetic images, 128 steps, 2 evaluations": {
        "task": "synthetic_images",
        "task_options": {"n_test": 256},
        "model": "gated_resnet20",
        "train": {"epochs": 4, "eval_every": 64},
    },
}


def plain_loop(trial: dict, seed: int, evaluate: bool = False) -> float:
    """Seconds of a bare loop over the trial's task, model and training settings.

    With ``evaluate``, it also computes the task's metrics where greentune's
    loop evaluates (every ``eval_every`` steps and at the end): the same work
    the trial reports, done as a user's own loop would.
    """
    start = time.perf_counter()
    task = create_task(trial["task"], **trial.get("task_options", {}))
    settings = task.defaults.override(trial.get("train", {}))
    torch.manual_seed(seed)
    train, held_out = task.splits(torch.device("cpu"), settings.batch_size, seed)
    model = task.build_model(trial["model"])
    optimizer = torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay, fused=True
    )
    steps = round(settings.epochs * len(train)) if settings.epochs is not None else settings.steps
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if settings.schedule == "cosine" else None
    model.train()
    for step in range(1, steps + 1):
        inputs, targets = train.take(train.next_indices())
        optimizer.zero_grad(set_to_none=True)
        task.loss_fn(model(inputs), targets).backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        if evaluate and (step % settings.eval_every == 0 or step == steps):
            model.eval()
            with torch.no_grad():
                task.evaluate(model, train, held_out)
            model.train()
    return time.perf_counter() - start


def greentune_loop(trial: dict, seed: int) -> float:
    start = time.perf_counter()
    task = create_task(trial["task"], **trial.get("task_options", {}))
    settings = task.defaults.override(trial.get("train", {}))
    training = Training(
        task, techniques.create(["baseline"]), settings, model=trial["model"], seed=seed, meter=open_meter(False)
    )
    for _ in training.evaluations():
        pass
    return time.perf_counter() - start


def plain_or_trial(config: dict) -> None:
    """A Ray Tune trainable: the plain loop (reporting its time) or greentune's trial."""
    from ray import tune

    from greentune.trainables.trial import run_trial

    if config["kind"] in PLAIN:
        torch.set_num_threads(1)
        tune.report({"plain_s": plain_loop(config["trial"], config["seed"], evaluate=config["kind"] == "plain+eval")})
    else:
        run_trial({**config["trial"], **TRAINABLES[config["kind"]], "seed": config["seed"]})


def ray_runs(trial: dict, repeats: int) -> dict[str, list[tuple[float, float, float]]]:
    """Per trainable, (plain, plain+eval, trainable) seconds per seed, run alternately in one reused worker."""
    import ray
    from ray import tune

    with tempfile.TemporaryDirectory() as storage:
        grid = tune.Tuner(
            tune.with_resources(plain_or_trial, {"cpu": 1}),
            param_space={
                "trial": trial,
                "seed": tune.grid_search(list(range(repeats + 1))),
                "kind": tune.grid_search([*PLAIN, *TRAINABLES]),
            },
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        ).fit()
        times: dict[int, dict[str, float]] = {}
        for result in grid:
            kind = result.config["kind"]
            times.setdefault(result.config["seed"], {})[kind] = (
                result.metrics["plain_s"] if kind in PLAIN else result.metrics["time_total_s"]
            )
    seeds = range(1, repeats + 1)
    return {kind: [(times[seed]["plain"], times[seed]["plain+eval"], times[seed][kind]) for seed in seeds] for kind in TRAINABLES}


def in_process_runs(trial: dict, seed: int) -> tuple[float, float, float]:
    """(plain, plain+eval, Training) seconds, greentune's loop taking turns at going first and last."""
    if seed % 2:
        greentune = greentune_loop(trial, seed)
        return plain_loop(trial, seed), plain_loop(trial, seed, evaluate=True), greentune
    plain, plain_eval = plain_loop(trial, seed), plain_loop(trial, seed, evaluate=True)
    return plain, plain_eval, greentune_loop(trial, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A cluster of its own: on a shared machine, never one another job left running (or its stale address).
    ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    for label, trial in SETUPS.items():
        plain_loop(trial, 0)  # warm-up
        runs = {"greentune Training, in this process": [in_process_runs(trial, seed) for seed in range(args.repeats)]}
        runs.update(ray_runs(trial, args.repeats))
        print(f"{label}: median of {args.repeats} seeds, each ratio against the plain loops run beside it "
              "(without evaluating; evaluating where greentune does)")
        for name, seeds in runs.items():
            other = statistics.median(o for *_, o in seeds)
            plain, plain_eval = (statistics.median(times[i] for times in seeds) for i in (0, 1))
            ratio, ratio_eval = (statistics.median(times[2] / times[i] for times in seeds) for i in (0, 1))
            print(f"  {name:<42} {other:7.3f} s against {plain:7.3f} / {plain_eval:7.3f} s   "
                  f"{ratio:5.3f}x plain   {ratio_eval:5.3f}x plain evaluating")
    ray.shutdown()


if __name__ == "__main__":
    main()
