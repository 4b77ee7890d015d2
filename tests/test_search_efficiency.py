"""The search benchmark's bookkeeping: hypervolume against energy spent, on a case worked by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "search_efficiency.py"


@pytest.fixture(scope="module")
def efficiency():
    spec = importlib.util.spec_from_file_location("search_efficiency", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def rows(method, trials):
    return pd.DataFrame(trials, columns=["quality", "energy_j", "spent_j", "finished"]).assign(method=method, seed=0)


def test_energy_to_reach_the_grids_hypervolume_counts_stopped_trials_and_only_finished_points(efficiency):
    runs = pd.concat([
        # The grid: (quality 2, 2 J) and (1, 3 J). Its reference is the worst of
        # each plus 10% of the range: (2.1, 3.1). Its hypervolume is
        # 0.1 x 1.1 + 1.1 x 0.1 - 0.1 x 0.1 = 0.21, reached once it has spent 5 J.
        rows("grid", [(2.0, 2.0, 2.0, True), (1.0, 3.0, 3.0, True)]),
        # A search whose first trial was stopped (1 J, its point not counted),
        # then one at (1, 2 J): 1.1 x 1.1 = 1.21, past the grid's, after 1 + 2 = 3 J.
        rows("search", [(0.5, 0.5, 1.0, False), (1.0, 2.0, 2.0, True)]),
        # One that never gets past 95% of the grid: (2, 2 J) alone is 0.11.
        rows("weak", [(2.0, 2.0, 2.0, True)]),
        # One whose single point (2, 1 J) boxes 0.1 x 2.1 = 0.21, the grid's, within a third of the grid's 5 J.
        rows("quick", [(2.0, 1.0, 1.0, True)]),
    ], ignore_index=True)
    reached, traces = efficiency.summarise(runs, {"quality": "min", "energy_j": "min"})
    reached = reached.set_index("method")
    assert traces.loc[traces["method"] == "grid", "hypervolume"].iloc[-1] == pytest.approx(0.21)
    assert reached.loc["grid", ["e95", "e100", "grid_j"]].tolist() == [5.0, 5.0, 5.0]
    assert reached.loc["search", ["e95", "e100", "spent_j"]].tolist() == [3.0, 3.0, 3.0]
    assert reached.loc["search", "final"] == pytest.approx(1.21 / 0.21)
    assert reached.loc["weak", ["e95", "e100"]].isna().all()
    assert reached.loc["weak", "final"] == pytest.approx(0.11 / 0.21)
    # The share held at a third of the grid's energy (5/3 J): none for a search
    # whose only trial by then was stopped, unknown for one with nothing done yet.
    assert reached.loc["quick", "third"] == pytest.approx(1.0) and reached.loc["quick", "e100"] == 1.0
    assert reached.loc["search", "third"] == 0.0
    assert pd.isna(reached.loc["weak", "third"])


def test_the_grid_is_the_presets_published_points_in_the_searched_space(efficiency):
    space = efficiency.SPACES["teacher-student"]
    configs = efficiency.grid_configs(efficiency.method_search(space, {}, 0), space.grid_presets)
    points = {(config["approach"], str(config.get("data_selection", config.get("random_pruning", "")))) for config in configs}
    assert len(configs) == 7  # seed 000's Table I: two baselines, data selection x3, GradMax, pruning
    assert ("data-selection", str({"selectivity": 0.3, "on_skip": "last"})) in points
    assert ("random-pruning", str({"sparsity": 0.5, "distribution": "er"})) in points
    gradmax = next(config for config in configs if config["approach"] == "gradmax")
    assert gradmax["model"] == "small" and gradmax["gradmax"]["steps"] == 5


def test_the_greentune_method_is_the_library_default_on_the_spaces_file(efficiency):
    from greentune.search.settings import LIBRARY_SEARCHER, Scheduler

    for space in efficiency.SPACES.values():
        search = efficiency.method_search(space, efficiency.METHODS["greentune"], 0)
        assert search.settings.searcher == LIBRARY_SEARCHER and search.settings.scheduler == Scheduler()
    random = efficiency.method_search(efficiency.SPACES["teacher-student"], efficiency.METHODS["random"], 0)
    assert random.settings.searcher.name == "random" and random.settings.searcher.cheapest_of == 1


def test_the_new_spaces_search_training_settings_and_their_grids_keep_what_the_space_fixes(efficiency):
    space = efficiency.SPACES["digits-structured"]
    search = efficiency.method_search(space, {}, 0)
    assert all("lr" in approach.space["train"] for approach in search.approaches)
    configs = efficiency.grid_points(search, space.grid_points)
    selection = next(config for config in configs if config["approach"] == "data-selection")
    assert selection["data_selection"] == {"on_skip": "none", "selectivity": 0.3} and selection["train"]["lr"] == 0.1
    budget = efficiency.method_search(efficiency.SPACES["digits-budget"], {}, 0)
    assert {"batch_size", "steps"} <= set(budget.approaches[0].space["train"])


def test_head_to_head_counts_a_seed_that_never_reaches_the_target_as_a_loss(efficiency):
    reached = pd.DataFrame({
        "method": ["greentune"] * 4 + ["random"] * 4, "seed": [0, 1, 2, 3] * 2,
        "e100": [1.0, 2.0, float("nan"), float("nan"), 2.0, 1.0, 5.0, float("nan")],
    })
    wins, losses, ties, p = efficiency.head_to_head(reached, "greentune", "random")
    assert (wins, losses, ties) == (1, 2, 1) and p == pytest.approx(1.0)
