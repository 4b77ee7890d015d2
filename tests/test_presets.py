"""Every shipped preset works as a user would first try it.

Presets whose data this machine has (generated, or bundled with scikit-learn)
run through ``greentune run`` for one short trial; the others (CIFAR, KMNIST)
must pass ``greentune validate`` and, without their data, stop in one line
that says what to put where.
"""

from __future__ import annotations

import pytest
import yaml

from greentune.search.config import load_search
from greentune.search.presets import preset_path, preset_paths
from greentune.trainables.tasks import create_task

from helpers import assert_one_line_usage_error, in_process

DOWNLOADED = ("cifar10", "cifar100", "kmnist")  # datasets a search fetches before its first trial


def preset(name: str) -> dict:
    return yaml.safe_load(preset_path(name).read_text())


ON_THIS_MACHINE = sorted(name for name in preset_paths() if preset(name)["task"] not in DOWNLOADED)
NEEDS_DATA = sorted(name for name in preset_paths() if preset(name)["task"] in DOWNLOADED)


def test_presets_are_split_between_the_two_checks():
    assert len(ON_THIS_MACHINE) >= 5 and len(NEEDS_DATA) >= 7
    assert "gating-synthetic-cpu" in ON_THIS_MACHINE and "default" in ON_THIS_MACHINE


def one_short_trial(search: dict) -> dict:
    """The preset with one trial drawn at random and trained for six steps (evaluated twice)."""
    short = {"steps": 6, "eval_every": 3, "epochs": None}
    search = {**search, "train": {**search.get("train", {}), **short}, "searcher": "random", "num_trials": 1,
              "repeats": 1, "evaluate_first": []}
    search["approaches"] = {
        name: {**spec, "train": {**spec["train"], **short}} if "train" in spec else spec
        for name, spec in (search.get("approaches") or {}).items()
    }
    return search


@pytest.mark.slow
@pytest.mark.parametrize("name", ON_THIS_MACHINE)
def test_each_cpu_preset_runs_through_the_command(name, tmp_path, capsys, local_ray):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(one_short_trial(preset(name))))
    assert in_process(capsys, "validate", name).returncode == 0  # the preset itself, by name
    result = in_process(capsys, "run", "--config", path, "--results", tmp_path / "results")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "trials: 1 finished" in result.stdout, result.stdout


@pytest.mark.parametrize("name", NEEDS_DATA)
def test_each_preset_that_needs_data_validates_and_says_in_one_line_what_to_fetch(name, tmp_path, capsys):
    result = in_process(capsys, "validate", name)
    assert result.returncode == 0 and result.stdout.startswith(f"{name}: ok"), result.stderr
    search = load_search(preset_path(name))
    options = {**search.settings.task_options, "data_dir": str(tmp_path), "download": False}
    task = create_task(search.settings.task, **options)
    with pytest.raises(ValueError) as error:
        task.fetch_data()
    line = str(error.value)
    assert "\n" not in line and str(tmp_path) in line and "download is off" in line
