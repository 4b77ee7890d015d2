"""Carbon per trial: the shipped intensity table, co2_g beside energy_j, the carbon budget, and a search that reports it."""

from __future__ import annotations

import pytest
import yaml

import greentune
from greentune import analysis, carbon
from greentune.search.config import parse_search
from greentune.search.runner import CarbonBudget, read_search_record, run_search
from greentune.trainables.trial import trial_intensity, with_carbon

from helpers import assert_one_line_usage_error, in_process, run_budgeted_search


def test_every_row_of_the_table_cites_its_source_and_year():
    table = carbon.table()
    assert table["default"] in table["regions"]
    for region, row in table["regions"].items():
        assert region == region.upper() and row["g_per_kwh"] > 0, region
        assert row["source"].strip() and 2015 <= int(row["year"]) <= 2030, region


def test_a_region_a_given_intensity_and_the_labelled_default():
    assert carbon.intensity(region="fr") == carbon.intensity(region="FR")
    assert carbon.intensity(region="FR").source.startswith("FR: Ember")
    assert carbon.intensity(g_per_kwh=56).source == "given in the search file"
    default = carbon.intensity()
    assert default.source.startswith("default (") and default.g_per_kwh == carbon.table()["regions"]["WORLD"]["g_per_kwh"]
    assert carbon.grams(3.6e6, carbon.Intensity(100, "x")) == pytest.approx(100.0)


def test_the_trial_config_carries_the_resolved_intensity_and_co2_counts_training_and_evaluation():
    search = parse_search({"approaches": {"big": {"model": "big"}}, "carbon": {"region": "FR"}})
    intensity = trial_intensity(search.trial_base())
    assert intensity == carbon.intensity(region="FR")
    metrics = with_carbon({"energy_j": 3.0e6, "eval_energy_j": 0.6e6}, intensity)
    assert metrics["co2_g"] == pytest.approx(56.0) and metrics["carbon_source"] == intensity.source
    assert trial_intensity({}).source.startswith("default")  # a trial run outside a search


def test_co2_can_be_an_objective_and_a_constraint():
    search = parse_search({"approaches": {"big": {"model": "big"}}, "objectives": ["quality", "co2_g"],
                           "constraints": ["co2_g <= 5"]})
    assert search.objectives == {"quality": "min", "co2_g": "min"}


def test_an_unknown_region_is_one_line_and_exit_2_naming_the_valid_ones(tmp_path, capsys):
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({"approaches": {"big": {"model": "big"}}, "carbon": {"region": "Atlantis"}}))
    result = in_process(capsys, "run", "--config", config)
    assert_one_line_usage_error(result, "carbon.region 'Atlantis' is not in greentune's table; valid: WORLD, EU, FR")


def test_a_region_and_an_intensity_together_are_refused():
    with pytest.raises(ValueError, match="a region or an intensity_g_per_kwh, not both"):
        parse_search({"approaches": {"big": {"model": "big"}}, "carbon": {"region": "FR", "intensity_g_per_kwh": 56}})


def test_the_carbon_budget_counts_each_trials_latest_emissions():
    budget = CarbonBudget(10.0)
    budget("a", {"co2_g": 4.0, "energy_j": 1e9})
    assert not budget.stop_all()
    budget("a", {"co2_g": 7.0})  # a trial's totals are cumulative
    budget("b", {"co2_g": 3.0})
    assert budget.stop_all()


@pytest.mark.slow
def test_a_default_search_reports_co2_and_its_source_for_every_trial(tmp_path, local_ray):
    search = parse_search({"train": {"steps": 100, "eval_every": 50}, "approaches": {"big": {"model": "big"},
                           "selection": {"techniques": ["data_selection"]}}, "evaluate_first": ["big"],
                           "num_trials": 4})
    results = run_search(search, tmp_path / "results")
    assert len(results) == 4 and results["co2_g"].gt(0).all()
    assert results["carbon_source"].str.startswith("default (WORLD: Ember").all()
    spent = results["energy_j"] + results["eval_energy_j"]
    assert results["co2_g"].to_numpy() == pytest.approx((spent / 3.6e6 * 480).to_numpy())
    assert read_search_record(tmp_path / "results").settings.carbon == search.settings.carbon

    shown = greentune.analyze(tmp_path / "results", baseline="big")  # the tables and the report show it
    assert {"co2_g", "carbon_source"} <= set(shown.front.columns) and "co2_g" in shown.table.columns
    assert "CO2 (g)" in analysis.format_text(shown)
    assert "emissions:" in (tmp_path / "results" / "analysis" / "report.html").read_text()


@pytest.mark.slow
def test_a_carbon_budget_stops_the_search_and_says_what_it_reached(tmp_path, capsys, monkeypatch, local_ray):
    fields = {
        "carbon": {"intensity_g_per_kwh": 3.6e6},  # a gram per joule, so the budget is reached in a few trials
        "carbon_budget_g": 3,
        "objectives": ["quality", "co2_g"],
    }
    result, results = run_budgeted_search(tmp_path, capsys, monkeypatch, fields)
    assert "(or until 3 g CO2 are emitted)" in result.stdout
    emitted = results["co2_g"].sum()
    assert emitted >= 3 and (results["carbon_source"] == "given in the search file").all()
    line = next(line for line in result.stdout.splitlines() if line.startswith("carbon budget:"))
    assert f"{emitted / 3:.0%} of 3 g CO2 emitted" in line and "hypervolume" in line
    assert "co2_g" in result.stdout  # the front printed has co2_g as an objective column
