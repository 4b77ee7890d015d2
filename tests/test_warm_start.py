"""A search warm-started from an earlier one's results directory starts from its trials and trains none of them again."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from greentune.search.config import parse_search
from greentune.search.runner import _write_search_record
from greentune.search.searchers import make_searcher
from greentune.search.warm_start import EARLIER, describe
from greentune.trainables.trial import ConfigError

from helpers import assert_one_line_usage_error, in_process

SPACE = {
    "approaches": {
        "big": {"model": "big"},
        "selection": {"techniques": ["data_selection"], "model": "big",
                      "params": {"data_selection": {"selectivity": [0.2, 0.4, 0.6, 0.8], "on_skip": "last"}}},
    },
    "searcher": "random",
    "num_trials": 6,
}


def earlier_search(directory, space=SPACE):
    """A results directory as an earlier search leaves it: its record and its table of trials."""
    search = parse_search(space)
    directory.mkdir(parents=True)
    _write_search_record(search, directory, None)
    rows = [
        {"trial_id": "a", "approach": "big", "status": "finished", "quality": 0.030, "energy_j": 9.0},
        {"trial_id": "b", "approach": "selection", "config/data_selection/selectivity": 0.2, "status": "finished",
         "quality": 0.040, "energy_j": 2.0},
        {"trial_id": "c", "approach": "selection", "config/data_selection/selectivity": 0.4, "status": "stopped",
         "quality": 0.060, "energy_j": 1.0},
    ]
    table = pd.DataFrame(rows).assign(techniques="baseline", trained_fraction=1.0, energy_source="estimate")
    table.to_parquet(directory / "results.parquet", index=False)
    return directory


def test_the_earlier_trials_are_in_the_study_and_none_is_drawn_again(tmp_path):
    earlier = earlier_search(tmp_path / "earlier")
    search = parse_search({**SPACE, "warm_start_from": [str(earlier)]})
    searcher = make_searcher(search)
    first = searcher.suggest("first")  # the reference (big) first: trained earlier, so drawn again
    added = [trial for trial in searcher._ot_study.trials if EARLIER in trial.user_attrs]
    assert {(trial.params.get("data_selection/selectivity"), trial.state.name) for trial in added} == {
        (0.2, "COMPLETE"), (0.4, "PRUNED"), (None, "COMPLETE")}
    assert len(added) == 3
    front = {trial.params.get("data_selection/selectivity") for trial in searcher._ot_study.best_trials}
    assert front == {None, 0.2}  # the earlier front is the study's front from the start
    drawn = [first] + [searcher.suggest(f"t{index}") for index in range(3)]
    configs = [(config["approach"], config.get("data_selection", {}).get("selectivity"))
               for config in drawn if isinstance(config, dict)]
    assert sorted(configs) == [("selection", 0.6), ("selection", 0.8)]  # all that was not tried, each once
    assert drawn[-1] == "FINISHED"  # then the space is spent
    assert describe(added) == ("warm start: 3 trials of 1 earlier search(es), 12 J spent then, "
                               "not in this search's energy or budget")


def test_an_earlier_search_of_another_task_is_one_line(tmp_path, capsys):
    earlier = earlier_search(tmp_path / "earlier", {**SPACE, "task_options": {"n_train": 500}})
    with pytest.raises(ConfigError) as error:
        parse_search({**SPACE, "warm_start_from": [str(earlier)]})
    [line] = error.value.problems
    assert line.startswith(f"warm_start_from: {earlier} cannot warm-start this search: its task_options is {{'n_train': 500}}")
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({**SPACE, "warm_start_from": [str(tmp_path / "nowhere")]}))
    assert_one_line_usage_error(in_process(capsys, "validate", path), "holds no greentune search")
    assert_one_line_usage_error(in_process(capsys, "run", "--config", path), "holds no greentune search")
