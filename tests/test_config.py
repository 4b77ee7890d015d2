"""Config validation: every problem named at once, with the field and the fix."""

from __future__ import annotations

import pytest

from greentune.search.config import parse_search
from greentune.trainables.trial import ConfigError, build_training, check_trial_config

GOOD_SEARCH = {
    "task": "teacher_student",
    "approaches": {
        "baseline-big": {"techniques": ["baseline"], "model": "big"},
        "data-selection": {
            "techniques": ["data_selection"],
            "model": "big",
            "params": {"data_selection": {"selectivity": {"low": 0.3, "high": 0.9}, "on_skip": "last"}},
        },
    },
    "evaluate_first": ["baseline-big"],
}


def test_a_good_trial_config_has_no_problem():
    config = {"techniques": ["data_selection"], "data_selection": {"selectivity": 0.5}, "train": {"steps": 10}}
    assert check_trial_config(config) == []


def test_every_problem_of_a_trial_config_is_reported_together():
    config = {
        "techniques": ["data_selection"],
        "data_selection": {"selectivty": 0.5},
        "train": {"stpes": 10},
        "model": "huge",
        "colour": "green",
    }
    problems = check_trial_config(config)
    assert len(problems) == 4
    text = "\n".join(problems)
    for fragment in ["'colour'", "'huge'", "'stpes'", "'selectivty'"]:
        assert fragment in text


def test_an_unknown_technique_lists_the_valid_ones():
    [problem] = check_trial_config({"techniques": ["grwomax"]})
    assert "unknown technique 'grwomax'" in problem and "data_selection" in problem


def test_a_value_of_the_wrong_type_is_a_problem_naming_the_technique_not_a_type_error():
    [problem] = check_trial_config({"techniques": ["data_selection"], "data_selection": {"selectivity": "half"}})
    assert problem.startswith("technique 'data_selection' cannot take {'selectivity': 'half'}")
    [problem] = check_trial_config({"techniques": ["gradmax"], "gradmax": {"width_ratio": [2, 3]}})
    assert problem == "gradmax.width_ratio must be a number (default 2.0), got [2, 3]"


def test_an_out_of_range_value_is_refused_by_the_technique():
    [problem] = check_trial_config({"techniques": ["data_selection"], "data_selection": {"selectivity": 1.5}})
    assert "selectivity must be in (0, 1]" in problem
    with pytest.raises(ConfigError):
        build_training({"techniques": ["data_selection"], "data_selection": {"selectivity": 1.5}})


def test_a_good_search_parses_with_objective_modes():
    search = parse_search(GOOD_SEARCH)
    assert search.objectives == {"quality": "min", "energy_j": "min"}
    selectivity = search.approaches[1].space["data_selection"]["selectivity"]
    assert (selectivity.low, selectivity.high) == (0.3, 0.9)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"searcher": "bayes"}, "unknown searcher 'bayes'; choose from grid, nsga2, random, tpe"),
        ({"num_trail": 3}, "unknown field 'num_trail'"),
        ({"evaluate_first": ["baseline-huge"]}, "evaluate_first names 'baseline-huge'"),
        (
            {"evaluate_first": [{"approach": "data-selection", "params": {"data_selection": {"selectivity": 0.2}}}]},
            "data_selection.selectivity = 0.2 is outside",
        ),
        (
            {"evaluate_first": [{"approach": "data-selection", "params": {"data_selection": {"on_skip": "zero"}}}]},
            "on_skip is fixed at 'last'",
        ),
        ({"task": "imagenet"}, "unknown task 'imagenet'"),
        ({"objectives": ["quality", "energy_j:most"]}, "mode must be min or max"),
        ({"train": {"lr": 0.1, "batch": 5}}, "train has no setting 'batch'"),
        ({"train": {"lr": "fast"}}, "train.lr must be a positive number, got 'fast'"),
        ({"approaches": ["baseline-big"]}, "approaches must look like {baseline-big: {techniques: [baseline]"),
        ({"task_options": 3}, "task_options must look like {num_samples: 1000}, got 3"),
        ({"constraints": "quality <= 0.04"}, "constraints must look like [\"quality <= 0.04\"]"),
        ({"approaches": {"a": {"techniques": "baseline", "params": [1]}}}, "approach 'a': params must map each technique"),
        ({"approaches": {"a": {"techniques": [3]}}}, "approach 'a': techniques must be a list of technique names"),
        (
            {"approaches": {"a": {"techniques": ["data_selection"], "params": {"data_selection": {"selectivity": {"low": "a"}}}}}},
            "range [a, 1.0] is not within float in [0.1, 1]",
        ),
        ({"approaches": {"a": {"techniques": ["redr_random"], "params": {"redr_random": {"end": "late"}}}}}, "redr_random.end must be a number (default 0.75), got 'late'"),
    ],
)
def test_search_problems_name_the_field(change, message):
    with pytest.raises(ConfigError) as error:
        parse_search({**GOOD_SEARCH, **change})
    assert any(message in problem for problem in error.value.problems), error.value.problems


def test_a_published_point_is_the_first_trial_the_searcher_suggests():
    from greentune.search.searchers import make_searcher

    point = {"approach": "data-selection", "params": {"data_selection": {"selectivity": 0.3}}}
    search = parse_search({**GOOD_SEARCH, "evaluate_first": [point, "baseline-big"]})
    searcher = make_searcher(search)
    first, second = searcher.suggest("t1"), searcher.suggest("t2")
    assert (first["approach"], first["data_selection"]) == ("data-selection", {"selectivity": 0.3, "on_skip": "last"})
    assert second["approach"] == "baseline-big"
    assert first["warm_start"] and second["warm_start"], "evaluate_first trials are marked for the scheduler"
    assert "warm_start" not in searcher.suggest("t3"), "a sampled trial is not"
    assert check_trial_config(first) == [], "the mark is a valid trial field"


def test_the_nsga2_searcher_survives_the_pickling_ray_tune_saves_it_with():
    import pickle

    from greentune.search.searchers import make_searcher

    searcher = make_searcher(parse_search({**GOOD_SEARCH, "searcher": {"name": "nsga2", "population_size": 2}}))
    searcher.suggest("t1")
    restored = pickle.loads(pickle.dumps(searcher))
    assert restored.suggest("t2")["approach"] in {"baseline-big", "data-selection"}


def test_technique_parameters_are_checked_against_their_declared_space():
    bad = {
        "approaches": {
            "a": {"techniques": ["data_selection"], "params": {"data_selection": {"selectivity": {"low": 0.0, "high": 2}}}},
            "b": {"techniques": ["data_selection"], "params": {"data_selection": {"ratio": 0.5}}},
            "c": {"techniques": ["data_selection"], "params": {"data_selection": {"on_skip": ["sometimes"]}}},
        }
    }
    with pytest.raises(ConfigError) as error:
        parse_search(bad)
    problems = "\n".join(error.value.problems)
    assert "range [0.0, 2] is not within float in [0.1, 1]" in problems
    assert "has no parameter 'ratio'; valid: selectivity, on_skip" in problems
    assert "choices must be a non-empty subset" in problems


@pytest.fixture
def extra_techniques(monkeypatch):
    """Two more techniques: one that can stack with data selection, one that cannot."""
    from greentune.techniques import Float, Technique
    from greentune.techniques import registry

    class Masker(Technique):
        name, claims = "test_masker", frozenset({"weights"})
        space = {"density": Float(0.1, 0.9)}

        def __init__(self, density: float = 0.5):
            self.density = density

    class Skipper(Technique):
        name, claims = "test_skipper", frozenset({"batches"})

    registry.available()
    monkeypatch.setitem(registry.TECHNIQUES._entries, "test_masker", Masker)
    monkeypatch.setitem(registry.TECHNIQUES._entries, "test_skipper", Skipper)


def test_listed_techniques_become_approaches_with_their_declared_spaces(extra_techniques):
    search = parse_search({"techniques": ["data_selection", "test_masker", "test_skipper"], "combinations": "pairs"})
    names = [approach.name for approach in search.approaches]
    assert names == [
        "data_selection", "test_masker", "test_skipper",
        "data_selection+test_masker", "test_masker+test_skipper",  # data_selection+test_skipper: both skip batches
    ]
    stacked = search.approaches[3]
    assert set(stacked.space) == {"data_selection", "test_masker"}
    assert set(stacked.space["test_masker"]) == {"density"}


def test_all_takes_every_registered_technique(extra_techniques):
    from greentune.techniques import available

    search = parse_search({"techniques": "all"})
    assert {approach.name for approach in search.approaches} == set(available())


def test_an_explicit_combination_that_cannot_work_is_an_error(extra_techniques):
    with pytest.raises(ConfigError) as error:
        parse_search({"techniques": ["baseline"], "combinations": [["data_selection", "test_skipper"]]})
    assert "both control the batches" in error.value.problems[0]


def test_a_list_of_values_makes_a_grid_and_grid_needs_lists():
    from greentune.search.searchers import grid_points

    search = parse_search(
        {
            "searcher": "grid",
            "approaches": {
                "b": {},
                "s": {"techniques": ["data_selection"], "params": {"data_selection": {"selectivity": [0.3, 0.5], "on_skip": "last"}}},
            },
        }
    )
    assert grid_points(search) == [
        {"approach": "b"},
        {"approach": "s", "data_selection/selectivity": 0.3},
        {"approach": "s", "data_selection/selectivity": 0.5},
    ]
    with pytest.raises(ConfigError, match="needs data_selection.selectivity as a list"):
        parse_search({
            "searcher": "grid",
            "approaches": {"s": {"techniques": ["data_selection"], "params": {"data_selection": {"selectivity": {"low": 0.2, "high": 0.4}}}}},
        })
