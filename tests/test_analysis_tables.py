"""Paper-style tables, repeats, constraints and the seed-noise front on constructed frames."""

import numpy as np
import pandas as pd
import pytest

from greentune import analysis

OBJECTIVES = {"quality": "max", "energy_j": "min"}


def constructed() -> pd.DataFrame:
    """An accuracy task: baseline-big twice (two seeds), baseline-small, data selection at two selectivities."""
    rows = [
        # approach, selectivity, seed, status, quality, energy_j, time_s, flops
        ("baseline-big", None, 0, "finished", 0.90, 100.0, 10.0, 1.0e9),
        ("baseline-big", None, 1, "finished", 0.92, 110.0, 12.0, 1.0e9),
        ("baseline-small", None, 0, "finished", 0.88, 60.0, 7.0, 4.0e8),
        ("data-selection", 0.5, 0, "finished", 0.85, 50.0, 5.0, 5.0e8),
        ("data-selection", 0.3, 0, "finished", 0.70, 49.0, 4.0, 3.0e8),
        ("data-selection", 0.5, 1, "diverged", np.nan, 20.0, 2.0, 1.0e8),
    ]
    frame = pd.DataFrame(rows, columns=["approach", "config/data_selection/selectivity", "seed", "status", "quality", "energy_j", "time_s", "flops"])
    frame["techniques"] = np.where(frame["approach"].str.startswith("baseline"), "baseline", "data_selection")
    frame["config/approach"] = frame["approach"]
    frame["trial_id"] = [f"t{index}" for index in range(len(frame))]
    frame["energy_source"] = "rapl"
    return frame


def test_table_equals_hand_computation():
    table = analysis.comparison_table(constructed(), OBJECTIVES).set_index("approach")
    assert list(table.index) == ["baseline-small", "data-selection", "baseline-big"]  # baseline last, as in the paper

    base = table.loc["baseline-big"]  # mean of the two seeds
    assert (base["runs"], base["quality"], base["energy_j"], base["time_s"]) == (2, pytest.approx(0.91), 105.0, 11.0)
    assert base["quality_std"] == pytest.approx(np.std([0.90, 0.92], ddof=1))
    assert base["energy_gain_pct"] == 0 and base["baseline"]

    # Data selection's knee: selectivity 0.5 (0.85, 50 J) beats 0.3 (0.70, 49 J) on the trade-off;
    # its diverged repeat does not enter the means.
    selection = table.loc["data-selection"]
    assert selection["configuration"] == "selectivity=0.5"
    assert selection["runs"] == 1
    assert selection["quality_loss_pct"] == pytest.approx((0.91 - 0.85) / 0.91 * 100)  # 6.59%
    assert selection["energy_gain_pct"] == pytest.approx((105 - 50) / 105 * 100)  # 52.38%
    assert selection["time_gain_pct"] == pytest.approx((11 - 5) / 11 * 100)  # 54.55%
    assert selection["flops_gain_pct"] == pytest.approx(50.0)

    small = table.loc["baseline-small"]
    assert small["quality_loss_pct"] == pytest.approx((0.91 - 0.88) / 0.91 * 100)
    assert small["energy_gain_pct"] == pytest.approx((105 - 60) / 105 * 100)
    assert small["flops_gain_pct"] == pytest.approx(60.0)


def test_quality_loss_of_a_loss_metric_is_positive_when_higher():
    frame = constructed().assign(quality=lambda frame: 1 - frame["quality"])  # a loss: 0.10 is the baseline's first run
    table = analysis.comparison_table(frame, {"quality": "min", "energy_j": "min"}).set_index("approach")
    assert table.loc["data-selection", "quality_loss_pct"] == pytest.approx((0.15 - 0.09) / 0.09 * 100)


def test_rows_front_and_all_and_the_display_cells():
    frame = constructed()
    every = analysis.comparison_table(frame, OBJECTIVES, rows="all")
    assert len(every) == 4 and every["baseline"].tolist() == [False, False, False, True]
    front = analysis.comparison_table(frame, OBJECTIVES, rows="front")
    assert set(front["configuration"]) == {"", "selectivity=0.5", "selectivity=0.3"}
    cells = analysis.summary.display_table(analysis.comparison_table(frame, OBJECTIVES)).set_index("Approach")
    assert cells.loc["baseline-big", "Final quality"] == "0.91 ± 0.014"
    assert cells.loc["baseline-big", "Energy gain"] == "/"
    assert cells.loc["data-selection", "Energy gain"] == "52.38%"


def test_baseline_choice():
    frame = constructed()
    assert analysis.find_baseline(frame) == "baseline-big"
    assert analysis.find_baseline(frame[frame["approach"] != "baseline-big"]) == "baseline-small"  # the only plain baseline
    with pytest.raises(ValueError, match="approaches: data-selection"):
        analysis.find_baseline(frame[frame["techniques"] != "baseline"])
    with pytest.raises(ValueError, match="'nope' has no finished run"):
        analysis.comparison_table(frame, OBJECTIVES, baseline="nope")
    table = analysis.comparison_table(frame, OBJECTIVES, baseline="baseline-small").set_index("approach")
    assert table.loc["baseline-big", "energy_gain_pct"] == pytest.approx((60 - 105) / 60 * 100)


def test_aggregate_repeats_means_finished_runs_and_counts_the_rest():
    configurations = analysis.aggregate_repeats(constructed()).set_index("approach")
    selection = configurations[configurations["config/data_selection/selectivity"] == 0.5].iloc[0]
    assert (selection["runs"], selection["failed"], selection["energy_j"]) == (1, 1, 50.0)
    assert selection["trial_ids"] == "t3, t5" and selection["seeds"] == "0, 1"
    big = configurations.loc["baseline-big"]
    assert (big["runs"], big["energy_j"], big["energy_j_std"]) == (2, 105.0, pytest.approx(np.std([100, 110], ddof=1)))


def test_constraints_filter_before_the_front_is_taken():
    frame = constructed()
    extra = frame.iloc[[3]].assign(trial_id="t6", quality=0.80, energy_j=55.0)  # dominated by t3 (0.85, 50 J)
    frame = pd.concat([frame, extra], ignore_index=True)
    assert "t6" not in set(analysis.analyse(frame, OBJECTIVES).front["trial_id"])
    result = analysis.analyse(frame, OBJECTIVES, constraints=["energy_j>=52", "quality>=0.5"])
    assert result.considered["trial_id"].tolist() == ["t0", "t1", "t2", "t6"]  # finished only; t5's NaN quality fails
    assert set(result.front["trial_id"]) == {"t0", "t1", "t2", "t6"}  # t6 is optimal among the feasible
    assert result.constraints == ["energy_j >= 52", "quality >= 0.5"]
    with pytest.raises(ValueError, match="is not of the form"):
        analysis.analyse(frame, OBJECTIVES, constraints=["quality 0.04"])
    with pytest.raises(ValueError, match="'watts' is not in the results"):
        analysis.analyse(frame, OBJECTIVES, constraints=["watts<=3"])


def test_noisy_front_drops_a_lucky_single_run_and_keeps_a_clear_winner():
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(5):  # a steady configuration and a noisy one with the same mean energy
        rows.append({"config/x": "steady", "seed": seed, "status": "finished", "quality": 0.5, "energy_j": 10 + rng.normal(0, 0.1)})
        rows.append({"config/x": "noisy", "seed": seed, "status": "finished", "quality": 0.5, "energy_j": 10 + rng.normal(0, 3)})
    rows.append({"config/x": "lucky", "seed": 0, "status": "finished", "quality": 0.5, "energy_j": 9.8})  # within the noise
    rows.append({"config/x": "clear", "seed": 0, "status": "finished", "quality": 0.9, "energy_j": 1.0})  # far better
    frame = pd.DataFrame(rows)
    noisy = analysis.noisy_front(frame, {"quality": "max", "energy_j": "min"}).set_index("config/x")
    assert noisy.loc["clear", "front_probability"] == 1.0 and noisy.loc["clear", "robust"]
    # Without noise only "clear" is non-dominated; with it the others tie often, but never beat "clear".
    assert noisy["on_mean_front"].sum() == 1
    assert (noisy.drop(index="clear")["front_probability"] == 0).all()
    two_way = frame[frame["config/x"] != "clear"]
    without_clear = analysis.noisy_front(two_way, {"quality": "max", "energy_j": "min"}).set_index("config/x")
    # The plain front crowns the single lucky run; 0.2 J is well inside the pooled spread it borrows, so it is no sure win.
    assert without_clear["on_mean_front"].tolist() == [False, False, True]
    assert 0.1 < without_clear.loc["lucky", "front_probability"] < 0.5 and not without_clear.loc["lucky", "robust"]
    assert without_clear["front_probability"].sum() == pytest.approx(1.0)  # equal quality: exactly one wins each draw


def test_per_approach_counts_finished_stopped_and_failed_trials_apart():
    frame = constructed()
    stopped = frame.iloc[[3, 3, 3]].assign(trial_id=["s0", "s1", "s2"], status="stopped")  # cut short by the scheduler
    approaches = analysis.analyse(pd.concat([frame, stopped], ignore_index=True), OBJECTIVES).approaches.set_index("approach")
    counts = approaches[["trials", "finished", "stopped", "failed"]]
    assert counts.loc["data-selection"].tolist() == [6, 2, 3, 1]  # one diverged
    assert counts.loc["baseline-big"].tolist() == [2, 2, 0, 0]
    assert approaches.loc["data-selection", "on_front"] == 2  # fronts are still taken over the finished trials
