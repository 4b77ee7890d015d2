"""The define-by-run space: each approach samples only its own techniques' parameters."""

from __future__ import annotations

import optuna

from greentune.search.config import parse_search
from greentune.search.space import DefineByRun


def test_only_the_chosen_approachs_parameters_are_sampled():
    search = parse_search(
        {
            "approaches": {
                "baseline": {"techniques": ["baseline"]},
                "selection": {
                    "techniques": ["data_selection"],
                    "params": {"data_selection": {"on_skip": "zero"}},
                },
            },
            "seed": 3,
        }
    )
    space = DefineByRun(search)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        constants = space(trial)
        seen.add(trial.params["approach"])
        if trial.params["approach"] == "baseline":
            assert set(trial.params) == {"approach"}
            assert constants["techniques"] == ["baseline"] and "data_selection/on_skip" not in constants
        else:
            assert set(trial.params) == {"approach", "data_selection/selectivity"}
            assert 0.1 <= trial.params["data_selection/selectivity"] <= 1.0
            assert constants["data_selection/on_skip"] == "zero"  # fixed, never sampled
        assert constants["seed"] == 3
        study.tell(trial, 0.0)
    assert seen == {"baseline", "selection"}
