"""Small builders shared by the tests."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
from torchvision import datasets

from greentune import techniques
from greentune.trainables.energy import CpuTimeEstimate, EnergyMeter
from greentune.trainables.loop import Training
from greentune.trainables.tasks import create_task

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@contextlib.contextmanager
def benchmark_module(name: str):
    """``benchmarks/NAME.py`` as a module, its folder on ``sys.path`` meanwhile: it imports its siblings, as when run as a script."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def make_training(technique=None, *, steps=60, eval_every=20, model="big", seed=0, **train) -> Training:
    """A short teacher–student run; ``technique`` defaults to the baseline."""
    task = create_task("teacher_student", n_train=200, n_test=100)
    settings = task.defaults.override({"steps": steps, "eval_every": eval_every, "batch_size": 20, **train})
    return Training(
        task,
        technique or techniques.create(["baseline"]),
        settings,
        model=model,
        seed=seed,
        meter=EnergyMeter([CpuTimeEstimate()]),
    )


def run_to_end(training: Training) -> list[dict]:
    return list(training.evaluations())


def uninterrupted_and_resumed(build, path) -> tuple[dict, dict]:
    """The last results of a run of ``build()`` to the end, and of one checkpointed to ``path`` after its
    first evaluation and continued by a new ``build()`` that loads it."""
    expected = run_to_end(build())[-1]
    first = build()
    next(first.evaluations())
    first.save(path)
    resumed = build()
    resumed.load(path)
    return expected, run_to_end(resumed)[-1]


def write_cifar(root, monkeypatch, dataset="cifar10", per_file=8, classes=10):
    """Tiny batches in torchvision's layout; the class's checksums are pointed at them."""
    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[dataset]
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    label_key = "labels" if dataset == "cifar10" else "fine_labels"

    def write(name, content):
        (folder / name).write_bytes(pickle.dumps(content))
        return [name, hashlib.md5((folder / name).read_bytes()).hexdigest()]

    def batch(name):
        return write(name, {"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
                            label_key: rng.integers(0, classes, per_file).tolist()})

    monkeypatch.setattr(cls, "train_list", [batch(name) for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [batch(name) for name, _ in cls.test_list])
    _, meta_md5 = write(cls.meta["filename"], {cls.meta["key"]: [f"class {index}" for index in range(classes)]})
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": meta_md5})


def in_process(capsys, *args) -> subprocess.CompletedProcess:
    """``greentune ARGS`` through ``main`` in this process, its exit code and output as a new process would give them.

    A new interpreter costs seconds of start-up; tests use one only where the process itself is the point.
    """
    from greentune.cli import main

    code = main([*map(str, args)])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_one_line_usage_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    """Exit code 2 and one ``greentune: error:`` line holding ``fragment``, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("greentune: error:") and fragment in lines[0], lines[0]


class NvmlSample:
    """pynvml's per-process utilisation sample (``nvmlDeviceGetProcessUtilization``), as far as greentune reads it."""

    def __init__(self, pid, sm_util, time_stamp):
        self.pid, self.smUtil, self.timeStamp = pid, sm_util, time_stamp


class NvmlProcess:
    """pynvml's running-process record (``nvmlDeviceGetComputeRunningProcesses``)."""

    def __init__(self, pid):
        self.pid = pid


def run_budgeted_search(tmp_path, capsys, monkeypatch, fields: dict, *flags):
    """``greentune run`` of a search of 30 trials that a budget (in ``fields`` or ``flags``) must end early.

    Returns the command's outcome and the results table it left on disk.
    """
    import pandas as pd
    import yaml

    search = {
        "task": "teacher_student",
        "train": {"steps": 200, "eval_every": 50},
        # A searched parameter, so that no two trials train the same configuration.
        "approaches": {"pruned-big": {"techniques": ["random_pruning"], "model": "big"}},
        "num_trials": 30,
        "searcher": "random",
        "max_concurrent": 1,  # one trial at a time: those before the one the budget stops have finished
        **fields,
    }
    config = tmp_path / "budget.yaml"
    config.write_text(yaml.safe_dump(search))
    out = tmp_path / "results"
    monkeypatch.chdir(tmp_path)
    result = in_process(capsys, "run", "--config", config, "--results", out, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    results = pd.read_parquet(out / "results.parquet")  # what ran stays on disk
    assert 0 < len(results) < 30, "the budget, not the number of trials, ended the search"
    return result, results
