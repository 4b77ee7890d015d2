"""Ray Tune's cost per trial, with and without actor reuse, against a trial's own run time.

Runs N trivial trials (a function that reports once) through a Tuner on the
machine's CPUs, with ``reuse_actors`` off and on, and prints the slot time
each trial costs (wall time x concurrent slots / trials). For scale it also
runs a few real teacher–student trials and prints their own run time
(Ray's ``time_total_s``).

    python benchmarks/ray_overhead.py [--trials 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import ray
from ray import tune


def trivial(config):
    tune.report({"value": config["x"]})


def slot_seconds_per_trial(trials: int, reuse: bool, slots: int) -> float:
    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        tune.Tuner(
            trivial,
            param_space={"x": tune.grid_search(list(range(trials)))},
            tune_config=tune.TuneConfig(reuse_actors=reuse, max_concurrent_trials=slots),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        ).fit()
        return (time.perf_counter() - start) * slots / trials


def teacher_student_run_time(repeats: int) -> float:
    from greentune.trainables.trial import run_trial

    with tempfile.TemporaryDirectory() as storage:
        grid = tune.Tuner(
            tune.with_resources(run_trial, {"cpu": 1}),
            param_space={"model": "big", "seed": tune.grid_search(list(range(repeats)))},
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        ).fit()
        return statistics.median(result.metrics["time_total_s"] for result in grid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    slots = int(ray.cluster_resources()["CPU"])
    without = slot_seconds_per_trial(args.trials, reuse=False, slots=slots)
    with_reuse = slot_seconds_per_trial(args.trials, reuse=True, slots=slots)
    own = teacher_student_run_time(4)
    print(f"{args.trials} trivial trials on {slots} CPU slots")
    print(f"slot time per trial without actor reuse: {without:6.2f} s")
    print(f"slot time per trial with actor reuse:    {with_reuse:6.2f} s")
    print(f"a teacher-student trial's own run time:  {own:6.2f} s (median of 4, time_total_s)")
    print(f"overhead / trial run time: {without / own:.2f} without reuse, {with_reuse / own:.2f} with")


if __name__ == "__main__":
    main()
