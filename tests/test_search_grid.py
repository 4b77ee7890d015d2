"""The search file's grid, repeats, per-approach train settings and summary, without Ray."""

from __future__ import annotations

import pandas as pd
import pytest

from greentune.analysis import approach_means
from greentune.search.config import load_search, parse_search
from greentune.search.presets import preset_path, preset_paths
from greentune.search.searchers import make_searcher
from greentune.trainables.trial import ConfigError


def grid_search(**extra):
    return parse_search({
        "task": "teacher_student",
        "approaches": {
            "big": {"techniques": ["baseline"], "model": "big"},
            "half": {
                "techniques": ["data_selection"],
                "params": {"data_selection": {"selectivity": 0.5}},
                "train": {"lr": 0.005},
            },
        },
        "searcher": "grid",
        "repeats": 3,
        "seed": 10,
        **extra,
    })


def test_a_grid_runs_every_approach_once_per_seed():
    search = grid_search()
    assert search.settings.budgets.num_trials == 2  # points; each runs with seeds 10, 11, 12
    searcher = make_searcher(search)
    searcher.set_search_properties(None, None, {})
    configs = [searcher.suggest(str(index)) for index in range(6)]
    for index, _ in enumerate(configs):
        searcher.on_trial_complete(str(index), {"quality": 0.0, "energy_j": 1.0, "complete": True})
    assert sorted((config["approach"], config["seed"]) for config in configs) == [
        (name, seed) for name in ("big", "half") for seed in (10, 11, 12)
    ]
    half = next(config for config in configs if config["approach"] == "half")
    assert half["train"]["lr"] == 0.005 and half["data_selection"]["selectivity"] == 0.5
    assert "on_skip" not in half["data_selection"]  # not given: the technique's default applies


def test_the_summary_needs_a_real_reference():
    with pytest.raises(ConfigError) as error:
        grid_search(summary={"columns": ["quality"], "reference": "nope"})
    assert any("'nope', which is not an approach" in problem for problem in error.value.problems)


def test_an_approachs_train_override_is_checked_like_the_shared_one():
    with pytest.raises(ConfigError, match="train has no setting 'learning_rate'"):
        grid_search(approaches={"a": {"techniques": ["baseline"], "train": {"learning_rate": 0.1}}})


def test_the_summary_gives_mean_std_and_energy_gain_per_approach_in_the_given_order():
    results = pd.DataFrame({
        "approach": ["big", "half", "big", "half", "half"],
        "status": ["finished", "finished", "finished", "finished", "error"],
        "energy_j": [10.0, 4.0, 14.0, 6.0, 1.0],
        "quality": [1.0, 2.0, 3.0, 4.0, 0.0],
    })
    table = approach_means(results, ["quality", "energy_j"], reference="big", order=["half", "big"])
    assert list(table.index) == ["half", "big"]
    assert table.loc["half", ("runs", "")] == 2
    assert table.loc["half", ("energy_j", "mean")] == 5.0
    assert table.loc["big", ("quality", "std")] == pytest.approx(2 ** 0.5)
    assert table.loc["half", ("energy_gain", "")] == pytest.approx(1 - 5.0 / 12.0)


def test_the_shipped_presets_are_valid():
    for path in preset_paths().values():
        assert load_search(path).approaches
    table_one = load_search(preset_path("grow-prune-select-teacher-student"))
    assert [approach.name for approach in table_one.approaches] == [
        "baseline-small", "data-selection-30", "data-selection-40", "data-selection-50",
        "gradmax", "unstructured-pruning", "baseline-big",
    ]
