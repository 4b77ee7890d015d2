"""The Python API as a notebook uses it: a real tiny search from a dict, its analysis, and its user errors."""

from __future__ import annotations

import pandas as pd
import pytest

import greentune

SEARCH = {
    "task": "teacher_student",
    "task_options": {"n_train": 200, "n_test": 200},
    "train": {"steps": 60, "eval_every": 30, "batch_size": 20},
    "approaches": {
        "baseline-big": {"techniques": ["baseline"], "model": "big"},
        "data-selection": {"techniques": ["data_selection"], "model": "big"},
    },
    "evaluate_first": ["baseline-big"],
    "searcher": "random",
    "scheduler": "fifo",  # every trial to the end: what the API returns is tested, not the scheduling
    "num_trials": 20,  # overridden below: the override, not the dict, decides
    "max_concurrent": 1,
}


@pytest.mark.slow
def test_run_returns_the_trials_and_their_directory_and_analyze_reads_them(tmp_path, local_ray):
    results = greentune.run(SEARCH, results=tmp_path / "out", num_trials=3, seed=4)
    assert results.directory == (tmp_path / "out").resolve()
    assert len(results.trials) == 3 and (results.trials["status"] == "finished").all()
    assert (results.trials["seed"] == 4).all() and results.search.settings.budgets.num_trials == 3
    on_disk = pd.read_parquet(results.directory / "results.parquet")
    assert on_disk["trial_id"].tolist() == results.trials["trial_id"].tolist()

    analysed = greentune.analyze(results.directory, objectives="quality,energy_j", report=tmp_path / "report")
    assert analysed.objectives == {"quality": "min", "energy_j": "min"}
    assert set(analysed.front["trial_id"]) <= set(results.trials["trial_id"]) and len(analysed.front) >= 1
    assert (tmp_path / "report" / "report.html").exists() and list((tmp_path / "report").glob("*.png"))
    assert not (results.directory / "analysis").exists(), "report=PATH writes there, not beside the results"


def test_usage_errors_are_an_exception_naming_every_problem(tmp_path):
    with pytest.raises(greentune.UsageError) as caught:
        greentune.run(SEARCH, num_trials=0, searcher="annealing", results=tmp_path / "never")
    assert any("num_trials must be a positive integer" in line for line in caught.value.lines)
    assert any("unknown searcher 'annealing'" in line for line in caught.value.lines)
    assert not (tmp_path / "never").exists(), "nothing starts before the search is checked"
    with pytest.raises(greentune.UsageError, match="unknown preset 'fastest'"):
        greentune.run("fastest")
    with pytest.raises(greentune.UsageError, match="no search file at"):
        greentune.run(tmp_path / "missing.yaml")
    with pytest.raises(greentune.UsageError, match="holds no results"):
        greentune.analyze(tmp_path)
    with pytest.raises(greentune.UsageError, match="pass report=FOLDER or report=False"):
        greentune.analyze(pd.DataFrame({"trial_id": ["a"], "status": ["finished"], "quality": [0.1]}))


@pytest.mark.slow
def test_a_trial_builds_in_a_process_that_searched_as_a_notebook_would(local_ray):
    # Ray is running in this process (the driver); a trial built here shares no GPU with anyone.
    import ray

    from greentune.trainables.trial import build_training

    assert ray.is_initialized()
    training = build_training({**{key: SEARCH[key] for key in ("task", "task_options", "train")}, "device": "cpu"})
    assert next(training.evaluations())["step"] == SEARCH["train"]["eval_every"]


@pytest.mark.slow
def test_an_address_other_than_the_ray_this_process_holds_is_refused(tmp_path, local_ray):
    with pytest.raises(greentune.UsageError) as caught:
        greentune.run(SEARCH, results=tmp_path / "never", address="127.0.0.1:1", num_trials=1)
    assert any("already connected to the Ray at" in line and "127.0.0.1:1" in line for line in caught.value.lines)
    assert not (tmp_path / "never" / "results.parquet").exists()
