"""The greentune command as a user runs it: errors are one line and exit 2; a real search writes its results.

A new interpreter runs the command where the process is the point (its exit
code, nothing printed on the way); the rest call ``main`` in this process,
and the searches share the tests' local Ray.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from helpers import assert_one_line_usage_error, in_process, run_budgeted_search


def greentune(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "greentune.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_presets_are_listed_one_per_line():
    result = greentune("presets")
    assert result.returncode == 0
    assert any(line.startswith("default ") for line in result.stdout.splitlines())


def test_a_bad_config_field_is_one_line_naming_it(tmp_path, capsys):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({"approaches": {"b": {"techniques": ["baseline"]}}, "num_trails": 4}))
    # A new interpreter: the process exits with 2, and loading torch and the search layer prints nothing more.
    assert_one_line_usage_error(greentune("run", "--config", path), "unknown field 'num_trails'")
    assert_one_line_usage_error(in_process(capsys, "validate", path), "unknown field 'num_trails'")


def test_a_missing_file_an_unknown_preset_and_a_bad_flag(tmp_path, capsys):
    assert_one_line_usage_error(in_process(capsys, "run", "--config", tmp_path / "nope.yaml"), "no search file at")
    assert_one_line_usage_error(in_process(capsys, "run", "--preset", "fastest"), "unknown preset 'fastest'")
    assert_one_line_usage_error(in_process(capsys, "run", "--num-trials", "many"), "invalid int value")
    assert_one_line_usage_error(in_process(capsys, "run", "--colour"), "unrecognized arguments: --colour")


def test_invalid_yaml_is_one_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("approaches: [unclosed\n")
    assert_one_line_usage_error(in_process(capsys, "validate", path), "is not valid YAML")


@pytest.mark.slow
def test_missing_data_is_one_line_before_any_trial_starts(tmp_path, capsys, local_ray):
    empty = tmp_path / "data"
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({
        "task": "cifar10", "task_options": {"data_dir": str(empty), "download": False},
        "techniques": ["baseline"], "num_trials": 2,
    }))
    result = in_process(capsys, "run", "--config", path, "--results", tmp_path / "results")
    assert_one_line_usage_error(result, f"CIFAR10 is not in {empty} and download is off")
    assert "cifar-10-python.tar.gz" in result.stderr and "task_options.data_dir" in result.stderr
    assert not (tmp_path / "results").exists()  # no trial ran, and nothing was left behind


@pytest.mark.slow
def test_a_real_search_through_ray_tune_writes_its_results(tmp_path, capsys, monkeypatch, local_ray):
    search = {
        "task": "teacher_student",
        "train": {"steps": 200, "eval_every": 100},
        "approaches": {
            "baseline-small": {"techniques": ["baseline"], "model": "small"},
            "baseline-big": {"techniques": ["baseline"], "model": "big"},
            "data-selection": {"techniques": ["data_selection"], "model": "big"},
        },
        "evaluate_first": ["baseline-small", "baseline-big"],
        "num_trials": 4,
        "searcher": {"name": "nsga2", "population_size": 2},
        "scheduler": "fifo",  # every trial to the end: the results it writes are tested, not the scheduling
        "summary": {"columns": ["quality", "energy_j"], "reference": "baseline-big"},
    }
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(search))
    out, shared = tmp_path / "results", tmp_path / "shared-storage"
    monkeypatch.chdir(tmp_path)
    result = in_process(capsys, "run", "--config", config, "--results", out, "--storage", shared)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Pareto-optimal trials" in result.stdout and str(out) in result.stdout
    assert "Each approach over its finished trials" in result.stdout and "energy gain vs baseline-big" in result.stdout

    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == 4 and (results["status"] == "finished").all()
    assert set(results["approach"][:2]) == {"baseline-small", "baseline-big"}  # evaluated first
    assert (results["energy_j"] > 0).all() and (results["energy_source"] == "estimate").all()
    assert (results["step"] == 200).all() and results["flops"].gt(0).all()
    assert len(pd.read_csv(out / "results.csv")) == 4
    history = pd.read_parquet(out / "history.parquet")
    assert history.groupby("trial_id").size().eq(2).all()  # one row per evaluation
    record = yaml.safe_load((out / "search.yaml").read_text())
    assert record["objectives"] == {"quality": "min", "energy_j": "min"}
    stored = shared / out.name  # --storage: the experiment and the tables outlive this machine
    assert list(stored.glob("*/checkpoint_*")), "trials keep a checkpoint to resume from"
    exported = sorted(stored.glob("*/checkpoint_*/model.pt"))
    assert len(exported) == 4, "each trial's final checkpoint holds its exported network"
    assert sorted(Path(path) for path in results["model_file"]) == exported  # and the table says where
    assert isinstance(torch.load(exported[0], weights_only=False), torch.nn.Module)
    assert pd.read_parquet(stored / "results.parquet").equals(results)
    assert (stored / "search.yaml").exists() and (stored / "history.parquet").exists()


@pytest.mark.slow
def test_an_energy_budget_stops_the_search_and_reports_what_it_reached(tmp_path, capsys, monkeypatch, local_ray):
    result, results = run_budgeted_search(tmp_path, capsys, monkeypatch, {}, "--energy-budget", 3)
    assert "(or until 3 J are spent)" in result.stdout
    spent = (results["energy_j"] + results["eval_energy_j"]).sum()
    assert spent >= 3
    line = next(line for line in result.stdout.splitlines() if line.startswith("energy budget:"))
    assert f"{spent / 3:.0%} of 3 J spent" in line and "hypervolume" in line and "finished trials" in line


def test_a_non_positive_energy_budget_is_a_usage_error(capsys):
    assert_one_line_usage_error(in_process(capsys, "run", "--energy-budget", "-5"), "--energy-budget must be a positive number")


def test_run_prints_its_first_line_before_importing_torch_ray_or_pandas():
    probe = (
        "import sys\n"
        "from greentune import api, cli\n"
        "heavy = lambda: sorted(m for m in ('torch', 'ray', 'pandas') if m in sys.modules)\n"
        "def run(*args, **kwargs):\n"
        "    print('loaded before the first line:', heavy()); raise SystemExit(0)\n"
        "api.run = run\n"
        "cli.main(['run', '--preset', 'default'])\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert lines[0] == "greentune: starting 'default' (loading PyTorch and Ray)", result.stdout + result.stderr
    assert lines[1] == "loaded before the first line: []"


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback():
    # `greentune techniques | head -1`: the pipe is closed before greentune writes to it.
    process = subprocess.Popen([sys.executable, "-m", "greentune", "techniques"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 0 and errors.decode() == ""
