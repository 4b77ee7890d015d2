"""Training settings as search dimensions, and MO-ASHA's rungs on the fraction of training done."""

from __future__ import annotations

import math
from types import SimpleNamespace

import optuna
import pytest

from greentune.cli import main
from greentune.search.config import evaluations_per_trial, parse_search, sample_trial
from greentune.search.schedulers import make_scheduler
from greentune.search.settings import Scheduler
from greentune.search.space import DefineByRun
from greentune.techniques import Choice, Float, Int
from greentune.trainables.trial import ConfigError

SEARCH = {
    "task": "teacher_student",
    "train": {"lr": {"low": 0.001, "high": 0.1}, "batch_size": [32, 64], "eval_every": 50},
    "approaches": {
        "big": {"model": "big", "train": {"lr": 0.01}},  # fixes what the search-wide train searches
        "selection": {
            "techniques": ["data_selection"],
            "train": {"steps": {"low": 100, "high": 300}, "momentum": {"low": 0.0, "high": 0.9}},
        },
    },
}


def test_train_settings_take_the_same_domain_forms_as_technique_parameters():
    search = parse_search(SEARCH)
    big, selection = search.approaches
    assert big.space["train"] == {"batch_size": Choice([32, 64])} and big.train == {"lr": 0.01}
    assert selection.space["train"] == {
        "lr": Float(0.001, 0.1, log=True),  # lr is drawn on a log scale unless the file says otherwise
        "batch_size": Choice([32, 64]),
        "steps": Int(100, 300),
        "momentum": Float(0.0, 0.9),
    }
    corner = sample_trial(search.settings, selection)["train"]
    assert corner == {"eval_every": 50, "lr": 0.001, "batch_size": 32, "steps": 100, "momentum": 0.0}


def test_a_drawn_trial_trains_with_the_drawn_settings_and_the_fixed_ones():
    search = parse_search(SEARCH)
    space = DefineByRun(search)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {}
    for _ in range(20):
        trial = study.ask()
        constants = space(trial)
        config = {**trial.params, **constants}  # as Ray Tune's OptunaSearch merges them
        seen[trial.params["approach"]] = config
        if trial.params["approach"] == "big":
            assert config["train/lr"] == 0.01 and config["train/batch_size"] in (32, 64)
        else:
            assert 0.001 <= config["train/lr"] <= 0.1 and 100 <= config["train/steps"] <= 300
        assert config["train/eval_every"] == 50
        study.tell(trial, 0.0)
    assert set(seen) == {"big", "selection"}


@pytest.mark.parametrize("train, says", [
    ({"eval_every": {"low": 10, "high": 20}}, "train.eval_every cannot be searched; searchable training settings: lr,"),
    ({"lr": {"low": 0.0, "high": 0.1}}, "train.lr: range [0.0, 0.1] is not within float in [1e-06, 10], log scale"),
    ({"precision": ["fp32", "fp16"]}, "train.precision: choices must be a non-empty subset of ['fp32', 'bf16']"),
    ({"batch_size": [32, 0]}, "train.batch_size: values [0] are outside int in [1, 65536], log scale"),
])
def test_a_wrong_training_dimension_is_one_line(train, says):
    with pytest.raises(ConfigError) as caught:
        parse_search({**SEARCH, "train": train})
    assert [problem for problem in caught.value.problems if says in problem]


def test_validate_space_lists_every_searched_dimension(tmp_path, capsys):
    path = tmp_path / "search.yaml"
    path.write_text("train: {lr: {low: 0.001, high: 0.1}, steps: [200, 400]}\n"
                    "approaches: {big: {model: big}, ds: {techniques: [data_selection]}}\n")
    assert main(["validate", "--space", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "7 searched dimensions:"
    assert lines[2].split() == ["approach", "one", "of", "big,", "ds"]
    assert lines[3].split() == ["big", "train/lr", "float", "in", "[0.001,", "0.1],", "log", "scale"]
    assert ["ds", "data_selection/selectivity"] == lines[5].split()[:2]
    assert ["ds", "train/steps", "one", "of", "200,", "400"] == lines[-1].split()


def test_the_rungs_lie_on_the_longest_trials_evaluations():
    search = parse_search({**SEARCH, "train": {"eval_every": 50, "steps": 200}})
    assert evaluations_per_trial(search) == 6  # the longest: 300 steps, an evaluation every 50
    scheduler = make_scheduler(search.settings.scheduler, search.objectives, evaluations_per_trial(search))
    assert [round(milestone, 4) for milestone, _ in scheduler.rungs] == [0.5, 0.1667]


def _trial(name):
    return SimpleNamespace(trial_id=name, config={})


def _run(scheduler, name, evaluations, joules_each, until):
    """Report a trial's evaluations (quality 0.5 throughout) until it is stopped or has made ``until`` of them."""
    for done in range(1, until + 1):
        result = {"quality": 0.5, "energy_j": joules_each * done, "trained_fraction": done / evaluations,
                  "training_iteration": done}
        if scheduler.on_trial_result(None, _trial(name), result) == "STOP":
            return done
    return None


@pytest.mark.parametrize("project_costs", [True, False])
def test_moasha_ranks_trials_of_different_lengths_at_the_same_fraction_by_projected_cost(project_costs):
    # The longest trial makes 30 evaluations: rungs at a thirtieth, a tenth, 0.3 and 0.9 of training.
    scheduler = make_scheduler(Scheduler(project_costs=project_costs), {"quality": "min", "energy_j": "min"}, 30)
    assert [round(milestone, 4) for milestone, _ in scheduler.rungs] == [0.9, 0.3, 0.1, 0.0333]
    # A short trial (2 evaluations, 5 J each: 10 J in all) reports first at half its training.
    assert _run(scheduler, "short", 2, 5.0, until=1) is None
    # A long one spends less per evaluation but more in all (0.4 J each, 12 J): equal quality, so it is
    # dominated once compared at its projected cost; by the raw joules at the rung it looks cheaper.
    stopped = _run(scheduler, "long", 30, 0.4, until=29)
    if project_costs:
        assert stopped == 9  # at 0.3 of its training, the rung the short trial reached, not at its first report
    else:
        assert stopped is None
    assert math.isclose(scheduler._vector({"quality": 0.5, "energy_j": 3.6, "trained_fraction": 0.3})[1],
                        12.0 if project_costs else 3.6)


@pytest.mark.slow
def test_a_search_over_lr_and_batch_size_runs_end_to_end(tmp_path, local_ray):
    from greentune.search.runner import run_search

    search = parse_search({
        "train": {"lr": {"low": 0.001, "high": 0.1}, "batch_size": [16, 64], "steps": 60, "eval_every": 20},
        "approaches": {"big": {"model": "big"}, "selection": {"techniques": ["data_selection"], "model": "big"}},
        "num_trials": 6, "searcher": "random", "scheduler": "fifo", "seed": 3,
    })
    results = run_search(search, tmp_path)
    assert len(results) == 6 and set(results["status"]) == {"finished"}
    assert results["config/train/lr"].between(0.001, 0.1).all() and results["config/train/lr"].nunique() == 6
    # Each trial trained with what it drew: a batch of 64 costs four times the FLOPs of one of 16.
    plain = results[results["approach"] == "big"].groupby("config/train/batch_size")["flops"].agg(set)
    assert set(plain.index) == {16, 64} and all(len(flops) == 1 for flops in plain)
    assert plain[64].pop() == 4 * plain[16].pop()
