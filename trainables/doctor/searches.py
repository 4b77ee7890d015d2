"""The GPU checks that run whole searches through the command line, each in its own process and Ray.

``greentune run`` as a user runs it: gpu: auto, four trials packed on a
GPU, a search killed and resumed, compiled trials in one reused worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .device import IMAGES, MODEL, DeviceTrace, in_steps
from .verdicts import (
    Check,
    busy_energy,
    compile_verdict,
    memory_verdict,
    resumed_search_verdict,
    search_verdict,
    shared_verdict,
)


def run_search(search: dict, directory: Path) -> list[dict]:
    """``greentune run`` on ``search`` in a subprocess (its own Ray); the results table's rows."""
    command = greentune_run(search, directory)
    with open(directory / "greentune.log", "w") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=directory).returncode
    return results_rows(directory, status)


def greentune_run(search: dict, directory: Path) -> list[str]:
    """The command that runs ``search`` into ``directory / "results"``, its search file written."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "search.yaml"
    config.write_text(yaml.safe_dump(search, sort_keys=False))
    return [sys.executable, "-m", "greentune.cli", "run", "--config", str(config), "--results", str(directory / "results")]


def results_rows(directory: Path, status: int) -> list[dict]:
    import pandas as pd

    if status != 0:
        raise RuntimeError(f"greentune exited {status}; see {directory / 'greentune.log'}")
    return pd.read_parquet(directory / "results" / "results.parquet").to_dict("records")


def search_file(approaches: dict, trials: int, resources: dict, train: dict, task_options: dict, **more) -> dict:
    return {
        "task": "synthetic_images", "task_options": {**IMAGES, **task_options}, "train": in_steps(train),
        "approaches": approaches, "searcher": "random", "num_trials": trials, "resources": resources,
        "energy": {"watts_per_core": 1e-6},  # the CPU estimate near zero: energy_j is the GPU's
        "objectives": ["quality", "energy_j"], "seed": 0, **more,
    }


def data_mb(task_options: dict) -> float:
    pixels = 3 * IMAGES["size"] ** 2
    count = task_options["n_train"] + task_options["n_test"]
    return count * (pixels * 4 + 8) / 2**20  # float32 images, int64 labels


def check_search(nvml, handle, workdir: Path) -> list[Check]:
    """Checks 6 and 7 from one search of 8 trials."""
    options = {"n_train": 10000, "n_test": 1000}
    model = {"techniques": ["baseline"], "model": MODEL}
    approaches = {
        "baseline": model,
        "baseline-bf16": {**model, "train": {"precision": "bf16", "channels_last": True}},
        "data-selection": {"techniques": ["data_selection"], "model": MODEL,
                           "params": {"data_selection": {"selectivity": {"low": 0.3, "high": 0.9}}}},
    }
    search = search_file(approaches, 8, {"cpu": 2, "gpu": "auto"}, {"steps": 300, "eval_every": 100}, options)
    rows = run_search(search, workdir / "search-8")
    return [search_verdict(rows), memory_verdict(rows, data_mb(options))]


def check_shared(nvml, handle, workdir: Path) -> Check:
    options = {"n_train": 20000, "n_test": 1000}
    search = search_file({"baseline": {"techniques": ["baseline"], "model": MODEL}}, 1, {"cpu": 2, "gpu": 0.25},
                         {"steps": 2500, "eval_every": 2500}, options, repeats=4, max_concurrent=4)
    with DeviceTrace(nvml, handle) as trace:
        rows = run_search(search, workdir / "shared-4")
    device_j, seconds = busy_energy(trace.samples)
    return shared_verdict(rows, device_j, seconds)


def check_resume(nvml, handle, workdir: Path) -> Check:
    """Kill ``greentune run`` (driver, its Ray and trials) once a trial has checkpointed, then ``greentune resume`` it."""
    options, trials = {"n_train": 10000, "n_test": 1000}, 4
    search = search_file({"baseline": {"techniques": ["baseline"], "model": MODEL}}, trials, {"cpu": 2, "gpu": "auto"},
                         {"steps": 2000, "eval_every": 100}, options, checkpoint_every=1)
    directory = workdir / "killed"
    command = greentune_run(search, directory)
    with open(directory / "greentune.log", "w") as log:
        run = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=directory, start_new_session=True)
        killed = _kill_after_a_checkpoint(run, directory / "results")
        resume = [sys.executable, "-m", "greentune.cli", "resume", str(directory / "results")]
        status = subprocess.run(resume, stdout=log, stderr=subprocess.STDOUT, cwd=directory).returncode
    return resumed_search_verdict(results_rows(directory, status), trials, killed)


def _kill_after_a_checkpoint(
    run: subprocess.Popen, results: Path, timeout_s: float = 300.0, settle_s: float = 5.0
) -> bool:
    """SIGKILL the run's whole session when a checkpoint appears; False if it ended (or timed out) before one.

    ``settle_s``: the time Ray's workers take to notice their driver is gone and exit.
    """
    deadline = time.monotonic() + timeout_s
    while run.poll() is None and time.monotonic() < deadline:
        if any(results.rglob("checkpoint_*")):
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            time.sleep(settle_s)
            return True
        time.sleep(1.0)
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    return False


def check_compile(nvml, handle, workdir: Path, trials: int = 10) -> Check:
    """Ten compiled trials one after another in one reused worker: Dynamo's recompile limit must not make any eager."""
    options = {"n_train": 5000, "n_test": 500}
    search = search_file({"baseline": {"techniques": ["baseline"], "model": MODEL}}, trials, {"cpu": 2, "gpu": "auto"},
                         {"steps": 200, "eval_every": 100, "compile": True}, options, max_concurrent=1)
    return compile_verdict(run_search(search, workdir / "compiled"), trials)
