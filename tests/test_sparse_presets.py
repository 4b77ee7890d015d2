"""The Feather/GraNet presets parse, the CPU ones compare like with like, and mixed choices reach the results table."""

from __future__ import annotations

import pandas as pd
import pytest

from greentune.search.config import load_search
from greentune.search.presets import preset_path
from greentune.search.runner import storable
from greentune.search.searchers import grid_points


def fixed_params(approach) -> dict:
    return {name: domain.value for name, domain in next(iter(approach.space.values())).items()}


@pytest.mark.parametrize("name, sparsity", [("sparse_training_cpu", 0.95), ("sparse-training-digits", 0.98)])
def test_each_cpu_preset_compares_arms_that_differ_only_in_what_is_compared(name, sparsity):
    search = load_search(preset_path(name))
    assert len(grid_points(search)) == 6 and search.settings.repeats >= 3
    arms = {approach.name: approach for approach in search.approaches}
    feather = {label: fixed_params(arms[label]) for label in ("feather-p3", "feather-hard", "feather-soft")}
    assert [params.pop("power") for params in feather.values()] == [3.0, "hard", 1.0]
    assert all(params == feather["feather-p3"] for params in feather.values())
    assert feather["feather-p3"]["sparsity"] == sparsity
    granet, gmp = fixed_params(arms["granet"]), fixed_params(arms["gmp"])
    assert granet.pop("regenerate") is True and granet.pop("regrow_fraction") > 0
    assert granet == gmp and gmp["final_sparsity"] == sparsity
    assert len({approach.model for approach in search.approaches}) == 1


@pytest.mark.parametrize("name", ["feather_cifar100_resnet20", "granet_cifar100_resnet20"])
def test_the_gpu_presets_train_resnet20x2(name):
    search = load_search(preset_path(name))
    assert {approach.model for approach in search.approaches} == {"resnet20x2"}


def test_a_choice_mixing_strings_and_numbers_is_stored_in_the_results_table(tmp_path):
    table = pd.DataFrame({"config/feather/power": [3.0, "hard", None], "quality": [0.1, 0.2, 0.3]})
    stored = storable(table)
    stored.to_parquet(tmp_path / "results.parquet")
    power = pd.read_parquet(tmp_path / "results.parquet")["config/feather/power"]
    assert list(power[:2]) == ["3.0", "hard"] and pd.isna(power[2])
    assert stored["quality"].dtype == float
