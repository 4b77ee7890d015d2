"""The typed search settings: nested groups, one rule per field, every problem at once, the old flat form read with a warning."""

import dataclasses

import pytest
import yaml

from greentune.cli import main
from greentune.errors import SearchFileWarning
from greentune.search.config import parse_search
from greentune.search.settings import Budgets, Scheduler, Searcher, Settings
from greentune.trainables.trial import ConfigError

SEARCH = {"approaches": {"big": {"model": "big"}, "selection": {"techniques": ["data_selection"]}}}


def test_nested_groups_become_frozen_dataclasses():
    search = parse_search({
        **SEARCH, "searcher": {"name": "tpe", "startup_trials": 4, "cheapest_of": 3},
        "scheduler": {"name": "moasha", "grace_period": 2}, "num_trials": 7, "energy_budget_j": 50,
        "resources": {"cpu": 2, "gpu": 0.5},
    })
    settings = search.settings
    assert settings.searcher == Searcher(name="tpe", startup_trials=4, cheapest_of=3)
    assert settings.scheduler == Scheduler(name="moasha", grace_period=2)
    assert settings.budgets == Budgets(num_trials=7, energy_budget_j=50)
    assert (settings.resources.cpu, settings.resources.gpu) == (2, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.searcher.name = "random"


def test_a_bare_name_stands_for_the_group_with_its_defaults():
    settings = parse_search({**SEARCH, "searcher": "random", "scheduler": "moasha"}).settings
    assert settings.searcher == Searcher(name="random") and settings.scheduler == Scheduler(name="moasha")


def test_the_record_written_back_reads_as_the_same_settings():
    search = parse_search({**SEARCH, "searcher": {"name": "tpe", "cheapest_of": 3}, "scheduler": "moasha", "seed": 4,
                           "summary": {"columns": ["quality"], "reference": "big"}, "energy": {"watts_per_core": 5}})
    record = yaml.safe_load(yaml.safe_dump(search.settings.to_file()))
    assert record["searcher"] == {"name": "tpe", "population_size": 16, "startup_trials": 10, "cheapest_of": 3}
    assert "budgets" not in record and record["num_trials"] == 20  # the budgets stay top-level fields of the file
    assert parse_search({**record, "approaches": SEARCH["approaches"]}).settings == search.settings


@pytest.mark.parametrize(
    "change, message",
    [
        ({"scheduler": {"name": "moasha", "grace_period": "1"}}, "scheduler.grace_period must be a positive integer, got '1'"),
        ({"scheduler": {"name": "asha", "reduction_factor": 1}}, "scheduler.reduction_factor must be a number > 1, got 1"),
        ({"scheduler": {"name": "hyperband"}}, "unknown scheduler 'hyperband'; choose from asha, fifo, moasha"),
        ({"scheduler": {"name": "moasha", "rungs": 3}}, "scheduler has no setting 'rungs'; valid: name, grace_period"),
        ({"searcher": {"name": "tpe", "startup_trials": 0}}, "searcher.startup_trials must be a positive integer, got 0"),
        ({"searcher": {"name": "tpe", "n_startup": 3}}, "searcher has no setting 'n_startup'"),
        ({"searcher": ["tpe"]}, "searcher must look like {name: tpe, startup_trials: 10}, got ['tpe']"),
        ({"resources": {"cpu": "one"}}, "resources.cpu must be a positive number, got 'one'"),
        ({"resources": {"cpu": 1, "gpus": 1}}, "resources has no setting 'gpus'; valid: cpu, gpu"),
        ({"num_trials": True}, "num_trials must be a positive integer, got True"),
        ({"time_budget_s": -1}, "time_budget_s must be a positive number (or left out), got -1"),
        ({"seed": "abc"}, "seed must be an integer, got 'abc'"),
        ({"max_concurrent": -1}, "max_concurrent must be a positive integer (or left out), got -1"),
        ({"energy": {"watts_per_core": -10}}, "energy.watts_per_core must be a positive number of watts, got -10"),
        ({"score": {"weight": "heavy"}}, "score.weight must be a number >= 0, got 'heavy'"),
        ({"summary": {"columns": []}}, "summary.columns must be a non-empty list of metric names"),
        ({"summary": {"columns": ["quality"], "reference": "nope"}}, "summary.reference names 'nope', which is not an approach"),
    ],
)
def test_each_broken_rule_names_its_field_and_what_it_takes(change, message):
    with pytest.raises(ConfigError) as error:
        parse_search({**SEARCH, **change})
    assert any(message in problem for problem in error.value.problems), error.value.problems


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        parse_search({**SEARCH, "num_trials": 0, "searcher": {"name": "bayes"}, "resources": {"cpu": 0}})
    assert len(error.value.problems) == 3


def test_the_old_flat_searcher_fields_still_read_with_one_warning_naming_the_new_form():
    with pytest.warns(SearchFileWarning, match=r"write searcher: \{name: tpe, startup_trials: 4, cheapest_of: 3\}"):
        settings = parse_search({**SEARCH, "searcher": "tpe", "startup_trials": 4, "cheapest_of": 3}).settings
    assert settings.searcher == Searcher(name="tpe", startup_trials=4, cheapest_of=3)


def test_the_command_prints_the_warning_as_one_line(tmp_path, capsys):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({**SEARCH, "searcher": "nsga2", "population_size": 4}))
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["greentune: warning: population_size at the top level of a search file is read, but belongs under "
                   "searcher: write searcher: {name: nsga2, population_size: 4}"]


def test_the_defaults_are_the_dataclasses_defaults():
    assert parse_search(SEARCH).settings == dataclasses.replace(Settings(), scheduler=Scheduler())


def test_a_file_that_names_no_searcher_gets_the_measured_default():
    settings = parse_search(SEARCH).settings
    assert settings.searcher == Searcher(name="tpe", cheapest_of=3) and settings.scheduler == Scheduler(name="moasha")
    assert parse_search({**SEARCH, "searcher": "tpe"}).settings.searcher.cheapest_of == 1  # what a file says, it gets


def test_a_grid_runs_to_the_end_and_trials_counted_in_epochs_get_moasha_on_their_trained_fraction():
    from greentune.search.config import evaluations_per_trial
    from greentune.search.schedulers import make_scheduler

    grid = {"approaches": {"big": {"model": "big"}}, "searcher": "grid"}
    assert parse_search(grid).settings.scheduler == Scheduler(name="fifo")
    epochs = parse_search({**SEARCH, "train": {"epochs": 2, "eval_every": 5}})
    assert epochs.settings.scheduler == Scheduler(name="moasha") and evaluations_per_trial(epochs) is None
    scheduler = make_scheduler(epochs.settings.scheduler, epochs.objectives, evaluations_per_trial(epochs))
    assert scheduler.time_attr == "trained_fraction" and [round(m, 4) for m, _ in scheduler.rungs] == [0.3333, 0.1111, 0.037]
    with pytest.raises(ValueError, match="asha counts evaluations"):
        make_scheduler(Scheduler(name="asha"), epochs.objectives, None)


def test_the_reference_baseline_is_evaluated_first_and_never_stopped():
    from greentune.search.schedulers import make_scheduler
    from greentune.search.searchers import make_searcher

    search = parse_search({**SEARCH, "approaches": {**SEARCH["approaches"], "small": {"model": "small"}},
                           "summary": {"columns": ["quality"], "reference": "small"}})
    assert search.reference == "small" and search.first_points()[0] == {"approach": "small"}
    searcher = make_searcher(search)
    first = searcher.suggest("t1")
    assert first["approach"] == "small" and first["warm_start"]
    scheduler = make_scheduler(search.settings.scheduler, search.objectives, max_t=9)

    def trial(name, config):
        return type("Trial", (), {"trial_id": name, "config": config})()

    def result(step, value):
        return {"quality": value, "energy_j": value, "training_iteration": step, "trained_fraction": step / 9}

    decisions = {"reference": [], "other": []}
    for step in range(1, 9):  # both reported worst at every rung, after two better trials
        for name in ("good-1", "good-2"):
            scheduler.on_trial_result(None, trial(name, {}), result(step, 1.0))
        decisions["reference"].append(scheduler.on_trial_result(None, trial("t1", first), result(step, 1e9)))
        decisions["other"].append(scheduler.on_trial_result(None, trial("t2", {"approach": "big"}), result(step, 1e9)))
    assert set(decisions["reference"]) == {"CONTINUE"} and "STOP" in decisions["other"]


def test_without_a_summary_the_reference_is_the_analysis_baseline():
    assert parse_search(SEARCH).reference == "big"  # the one plain-baseline approach
    assert parse_search({**SEARCH, "evaluate_first": ["big"]}).first_points() == [{"approach": "big"}]
