"""Pareto set, ranks, per-group fronts and hypervolume against brute-force references.

Random integer data in a small range makes ties and exact duplicates common,
which is where dominance code usually goes wrong.
"""

import itertools

import numpy as np
import pandas as pd
import pytest

from greentune import analysis
from greentune.analysis.pareto import minimised

MODES = [("min", "min"), ("min", "max"), ("max", "min", "max")]


def random_trials(seed: int, modes: tuple[str, ...], n: int = 80) -> tuple[pd.DataFrame, dict[str, str]]:
    rng = np.random.default_rng(seed)
    objectives = {f"objective_{index}": mode for index, mode in enumerate(modes)}
    frame = pd.DataFrame(rng.integers(0, 6, size=(n, len(modes))).astype(float), columns=list(objectives))
    frame.iloc[:5] = frame.iloc[5:10].to_numpy()  # exact duplicates, on and off the front
    frame.iloc[10, 0] = np.nan  # unrankable
    frame["approach"] = rng.choice(["a", "b", "c"], size=n)
    return frame, objectives


def brute_dominated(points: np.ndarray) -> np.ndarray:
    """Row i is dominated when some row is no worse everywhere and better somewhere (minimising)."""
    no_worse = (points[None, :, :] <= points[:, None, :]).all(axis=2)
    better = (points[None, :, :] < points[:, None, :]).any(axis=2)
    return (no_worse & better).any(axis=1)


def brute_ranks(points: np.ndarray) -> np.ndarray:
    ranks, remaining, rank = np.full(len(points), -1), np.arange(len(points)), 0
    while len(remaining):
        dominated = brute_dominated(points[remaining])
        ranks[remaining[~dominated]] = rank
        remaining, rank = remaining[dominated], rank + 1
    return ranks


def brute_hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Count the unit cells, integer points only, whose lower corner some point weakly dominates."""
    low = points.min(axis=0).astype(int)
    cells = itertools.product(*(range(start, int(end)) for start, end in zip(low, reference)))
    return float(sum(bool((points <= np.array(cell)).all(axis=1).any()) for cell in cells))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("modes", MODES)
def test_front_and_ranks_match_brute_force(seed, modes):
    frame, objectives = random_trials(seed, modes)
    usable = frame[list(objectives)].notna().all(axis=1).to_numpy()
    points = minimised(frame[usable], objectives)

    mask = analysis.pareto_mask(frame, objectives)
    assert (mask[usable].to_numpy() == ~brute_dominated(points)).all()
    assert not mask[~usable].any()
    duplicates_on_front = mask.iloc[:5].to_numpy() == mask.iloc[5:10].to_numpy()
    assert duplicates_on_front.all()  # a duplicate of a front point stays on it

    ranks = analysis.pareto_ranks(frame, objectives)
    assert (ranks[usable].to_numpy(dtype=int) == brute_ranks(points)).all()
    assert ranks[~usable].isna().all()


@pytest.mark.parametrize("modes", MODES)
def test_per_group_fronts_match_brute_force(modes):
    frame, objectives = random_trials(7, modes)
    fronts = analysis.fronts_by(frame, objectives, by="approach")
    for name, group in frame.groupby("approach"):
        group = group[group[list(objectives)].notna().all(axis=1)]
        expected = set(group.index[~brute_dominated(minimised(group, objectives))])
        assert set(fronts.index[fronts["approach"] == name]) == expected


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("modes", MODES)
def test_hypervolume_matches_cell_counting(seed, modes):
    frame, objectives = random_trials(seed, modes, n=40)
    usable = frame[frame[list(objectives)].notna().all(axis=1)]
    signs = np.array([1 if mode == "min" else -1 for mode in modes])
    bound = minimised(usable, objectives).max(axis=0) + 1  # integer, so cell counting is exact
    reference = dict(zip(objectives, bound * signs))
    expected = brute_hypervolume(minimised(usable, objectives), bound)
    assert analysis.hypervolume(frame, objectives, reference) == pytest.approx(expected)
    # Only the front matters; dominated rows and duplicates add nothing.
    assert analysis.hypervolume(analysis.pareto_front(frame, objectives), objectives, reference) == pytest.approx(expected)


def test_automatic_reference_point_counts_every_front_point():
    frame = pd.DataFrame({"loss": [1.0, 2.0, 4.0], "energy_j": [8.0, 3.0, 1.0]})
    objectives = {"loss": "min", "energy_j": "min"}
    reference = analysis.reference_point(frame, objectives)
    assert reference == {"loss": pytest.approx(4.3), "energy_j": pytest.approx(8.7)}
    contributions = [
        analysis.hypervolume(frame, objectives, reference) - analysis.hypervolume(frame.drop(index=row), objectives, reference)
        for row in frame.index
    ]
    assert min(contributions) > 0  # the extremes too, thanks to the margin


def test_hypervolume_trace_grows_to_the_final_hypervolume():
    frame, objectives = random_trials(3, ("min", "min"), n=60)
    frame["timestamp"] = np.random.default_rng(0).permutation(len(frame))
    reference = analysis.reference_point(frame, objectives)
    trace = analysis.hypervolume_trace(frame, objectives, reference)
    assert trace["trials"].iloc[-1] == len(frame)
    assert np.all(np.diff(trace["hypervolume"]) >= 0)
    assert trace["hypervolume"].iloc[-1] == pytest.approx(analysis.hypervolume(frame, objectives, reference))
    first = frame.sort_values("timestamp").iloc[:10]
    assert trace.set_index("trials").loc[10, "hypervolume"] == pytest.approx(analysis.hypervolume(first, objectives, reference))


def test_knee_is_the_point_farthest_below_the_line_between_the_extremes():
    # Front (1, 10), (2, 4), (6, 3), (10, 1): distance below the extremes' line is largest at (2, 4).
    frame = pd.DataFrame({"loss": [1.0, 2.0, 6.0, 10.0, 5.0], "energy_j": [10.0, 4.0, 3.0, 1.0, 9.0]})
    knee = analysis.knee_point(frame, {"loss": "min", "energy_j": "min"})
    assert (knee["loss"], knee["energy_j"]) == (2.0, 4.0)
    maximised = frame.assign(accuracy=-frame["loss"])
    assert analysis.knee_point(maximised, {"accuracy": "max", "energy_j": "min"})["loss"] == 2.0


def test_bad_objectives_are_one_clear_error():
    frame = pd.DataFrame({"quality": [1.0]})
    with pytest.raises(ValueError, match="'energy_j' is not in the results"):
        analysis.pareto_mask(frame, {"quality": "min", "energy_j": "min"})
    with pytest.raises(ValueError, match="must be 'min' or 'max'"):
        analysis.pareto_mask(frame, {"quality": "lowest"})
    with pytest.raises(ValueError, match="one per objective"):
        analysis.hypervolume(frame, {"quality": "min"}, reference=[1.0, 2.0])
