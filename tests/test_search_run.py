"""Search features inside real Ray Tune runs: grid, seed repeats, the MO scheduler, NaN trials, resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from greentune.cli import main
from greentune.search.config import parse_search
from greentune.search.costs import attempts_energy, search_energy
from greentune.search.runner import EnergyBudget, evaluations_per_trial, run_search
from greentune.trainables.trial import green_score


@pytest.mark.slow
def test_grid_repeats_moasha_and_a_diverging_trial(tmp_path, local_ray):
    search = parse_search(
        {
            "train": {"steps": 300, "eval_every": 100},
            "approaches": {
                "baseline-big": {"techniques": ["baseline"], "model": "big"},
                # Same model and FLOPs, far worse loss: dominated at the first rung.
                "wasteful": {"techniques": ["baseline"], "model": "big", "train": {"lr": 1e-5}},
                "selection": {
                    "techniques": ["data_selection"],
                    "params": {"data_selection": {"selectivity": [0.3, 0.6], "on_skip": "last"}},
                },
                "exploding": {"techniques": ["baseline"], "train": {"lr": 1e6}},
            },
            "objectives": ["quality", "flops"],  # deterministic, unlike measured energy
            "searcher": "grid",
            "scheduler": {"name": "moasha", "grace_period": 1, "reduction_factor": 2},
            "num_trials": 5,
            "repeats": 2,
            "max_concurrent": 1,  # so rung decisions happen in a known order
        }
    )
    results = run_search(search, tmp_path)
    assert len(results) == 10
    by_approach = results.groupby("approach")
    assert by_approach.size().to_dict() == {"baseline-big": 2, "wasteful": 2, "selection": 4, "exploding": 2}
    assert sorted(results.loc[results["approach"] == "selection", "config/data_selection/selectivity"]) == [0.3, 0.3, 0.6, 0.6]
    for _, group in results.groupby("repeat_group"):
        assert sorted(group["seed"]) == [0, 1]  # each configuration over two seeds
    statuses = by_approach["status"].agg(set).to_dict()
    assert results.loc[0, "status"] == "finished"  # the first trial meets nobody at its rungs
    assert statuses["wasteful"] == {"stopped"}  # the scheduler stopped the dominated trials early
    assert statuses["exploding"] == {"diverged"}
    exploding = results[results["approach"] == "exploding"]
    assert exploding["stop_reason"].str.contains("training loss became").all()
    wasteful = results[results["approach"] == "wasteful"]
    assert (wasteful["step"] < 300).all()


def test_a_one_node_ray_this_process_started_reuses_its_workers(local_ray):
    """As one the search starts itself: a new worker per trial cost each trial seconds of start-up and imports.

    On a cluster, where reuse can lose a trial for good, test_cluster's searches fail with it.
    """
    from greentune.search import runner

    assert runner._own_single_node()


def test_the_energy_budget_stops_the_search_once_spent():
    budget = EnergyBudget(10.0)
    budget("a", {"energy_j": 4.0, "eval_energy_j": 1.0})
    assert not budget.stop_all()
    budget("a", {"energy_j": 6.0, "eval_energy_j": 1.0})  # a trial's totals are cumulative
    budget("b", {"energy_j": 3.0})
    assert budget.stop_all()


RETRIED = [  # checkpointed at iteration 2 (4 J), failed after iteration 3 (6 J); the retry restarts from 4 J
    {"training_iteration": 1, "energy_j": 2.0, "eval_energy_j": 0.0}, {"training_iteration": 2, "energy_j": 4.0},
    {"training_iteration": 3, "energy_j": 6.0}, {"training_iteration": 3, "energy_j": 6.5},
    {"training_iteration": 4, "energy_j": 8.5},
]


def test_a_retried_trial_counts_each_attempt_once():
    assert attempts_energy(RETRIED) == pytest.approx(6.0 + 8.5 - 4.0)  # the 2 J the failure threw away, once
    assert attempts_energy(RETRIED[:3]) == 6.0 and attempts_energy([]) == 0.0
    assert attempts_energy([*RETRIED[:3], RETRIED[2]]) == 6.0  # Ray Tune passes the last result on twice as a trial ends
    budget = EnergyBudget(10.0)
    for report in RETRIED[:4]:
        budget("a", report)
    assert budget.spent == {"a": pytest.approx(8.5)} and not budget.stop_all()
    budget("a", RETRIED[4])
    assert budget.stop_all()  # 10.5 J over both attempts, though the last report says 8.5


def test_the_search_energy_has_no_nan_for_a_trial_that_never_reported():
    results = pd.DataFrame({"trial_id": ["a", "b", "c"], "energy_j": [8.5, math.nan, 1.0], "eval_energy_j": [0.0, math.nan, 0.5]})
    history = pd.DataFrame(RETRIED).assign(trial_id="a")
    assert search_energy(results, history) == pytest.approx(10.5 + 0.0 + 1.5)
    assert search_energy(results) == pytest.approx(8.5 + 1.5)


def test_max_t_is_the_number_of_evaluations():
    search = parse_search({"train": {"steps": 1000, "eval_every": 300}, "approaches": {"b": {}}})
    assert evaluations_per_trial(search) == 4


def test_the_scalar_score_trades_quality_against_log_energy():
    assert green_score(0.5, "max", 4.0, weight=0.1) == pytest.approx(0.5 - 0.2)
    assert green_score(0.2, "min", 1.0) == pytest.approx(-0.2)
    assert green_score(0.2, "min", 2.0) < green_score(0.2, "min", 1.0)


def finished_trials(experiment) -> dict[str, dict]:
    """Trials whose last reported result says done, read from disk as a user would."""
    finished = {}
    for result_file in experiment.glob("*/result.json"):
        lines = result_file.read_text().strip().splitlines()
        if lines:
            last = json.loads(lines[-1])
            if last.get("complete"):
                finished[last["trial_id"]] = last
    return finished


@pytest.mark.slow
def test_killing_the_driver_and_resuming_loses_no_finished_trial(tmp_path, local_ray):
    search = {
        "train": {"steps": 500, "eval_every": 125},
        "approaches": {"big": {"model": "big"}, "selection": {"techniques": ["data_selection"]}},
        "num_trials": 10,
        "searcher": {"name": "nsga2", "population_size": 4},
        "scheduler": "fifo",  # trials long enough to be killed mid-search; MO-ASHA would end them early
        "max_concurrent": 1,
        "optuna_storage": "journal",  # the study optuna-dashboard opens survives the resume
    }
    config, results = tmp_path / "search.yaml", tmp_path / "results"
    config.write_text(yaml.safe_dump(search))
    command = [sys.executable, "-m", "greentune.cli"]
    driver = subprocess.Popen(
        [*command, "run", "--config", config, "--results", results],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while len(finished_trials(results / "tune")) < 3 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = finished_trials(results / "tune")
    assert 3 <= len(before) < 10, "the driver should die in the middle of the search"
    # A trial's last result is on disk a moment before the searcher tells Optuna: the kill may fall between.
    assert len(before) <= journal_states(results).count("COMPLETE") <= len(before) + 1
    assert set(journal_states(results)) <= {"COMPLETE", "RUNNING"}
    # The killed search left its table of the trials it had finished (written as they finish), and analyze reads it.
    partial = pd.read_parquet(results / "results.parquet")
    assert 1 <= len(partial) <= len(before) and set(partial["trial_id"]) <= set(before)
    assert main(["analyze", str(results)]) == 0

    assert main(["resume", str(results)]) == 0  # the killed driver's process is what is lost; the resume runs here
    table = pd.read_parquet(results / "results.parquet")
    assert len(table) == 10 and (table["status"] == "finished").all()
    kept = table.set_index("trial_id").loc[list(before)]
    for trial_id, last in before.items():
        assert kept.loc[trial_id, "energy_j"] == pytest.approx(last["energy_j"])  # not re-run
    # The resumed search appended to the same study; the trial the killed driver had started shows as failed.
    states = journal_states(results)
    assert states.count("COMPLETE") == 10 and set(states) <= {"COMPLETE", "FAIL"} and states.count("FAIL") <= 1


def journal_states(results) -> list[str]:
    """The states of the trained trials (not the duplicate draws told an earlier outcome) of the search's Optuna journal."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from greentune.search.runner import JOURNAL_FILE
    from greentune.search.searchers import DUPLICATE_ATTR

    storage = JournalStorage(JournalFileBackend(str(results / JOURNAL_FILE)))
    study = optuna.load_study(study_name="optuna", storage=storage)
    return [trial.state.name for trial in study.trials if DUPLICATE_ATTR not in trial.user_attrs]


def test_a_trial_larger_than_a_ray_started_here_is_refused_and_on_a_cluster_only_warned(monkeypatch, capsys):
    """A GPU preset on a laptop would otherwise wait forever with 0 trials running."""
    from greentune.search import runner

    monkeypatch.setattr(runner, "_cluster_resources", lambda: {"CPU": 2.0})
    gpu_search = parse_search({"techniques": ["baseline"], "resources": {"cpu": 1, "gpu": 1}})
    with pytest.raises(ValueError, match=r"each trial asks for 1 GPU, more than the Ray at hand has \(2 CPU, 0 GPU\)"):
        runner._fitting_resources(gpu_search, started_here=True)
    assert runner._fitting_resources(gpu_search, started_here=False) == {"cpu": 1, "gpu": 1}
    assert "wait until the cluster adds a node" in capsys.readouterr().err
    auto = parse_search({"techniques": ["baseline"], "resources": {"cpu": 2, "gpu": "auto"}})
    assert runner._fitting_resources(auto, started_here=True) == {"cpu": 2, "gpu": 0}
