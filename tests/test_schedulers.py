"""Multi-objective ASHA: bracket logic on constructed vectors, then inside a real Ray Tune search."""

from __future__ import annotations

import numpy as np
import pytest
from ray.tune.schedulers import TrialScheduler

from greentune.search.schedulers import MultiObjectiveASHA, Ranking, crowding_distance

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def scheduler(**kwargs):
    settings = {"max_t": 9, "grace_period": 1, "reduction_factor": 3, **kwargs}
    return MultiObjectiveASHA({"accuracy": "max", "energy_j": "min"}, **settings)


def test_rungs_follow_grace_period_and_reduction_factor():
    assert [milestone for milestone, _ in scheduler().rungs] == [3, 1]


def test_non_dominated_trials_continue_and_dominated_ones_stop():
    asha = scheduler()
    # minimisation vectors: (-accuracy, energy)
    assert asha.decide("a", 1, np.array([-0.9, 10.0])) == CONTINUE  # alone at the rung
    assert asha.decide("b", 1, np.array([-0.5, 20.0])) == STOP  # dominated by a
    assert asha.decide("c", 1, np.array([-0.4, 30.0])) == STOP
    assert asha.decide("d", 1, np.array([-0.8, 2.0])) == CONTINUE  # trades accuracy for energy: non-dominated
    assert asha.decide("e", 1, np.array([-0.95, 1.0])) == CONTINUE  # dominates everything
    assert asha.decide("f", 1, np.array([-0.3, 40.0])) == STOP


def test_a_trial_is_judged_once_per_rung_and_stopped_at_max_t():
    asha = scheduler()
    assert asha.decide("a", 1, np.array([-0.9, 10.0])) == CONTINUE
    assert asha.decide("a", 2, np.array([-0.1, 99.0])) == CONTINUE  # between rungs: no new decision
    assert asha.decide("a", 3, np.array([-0.9, 10.0])) == CONTINUE  # first at rung 3
    assert asha.decide("a", 9, np.array([-0.9, 10.0])) == STOP


def test_rungs_rank_trials_by_the_energy_they_will_have_spent_at_the_end():
    # At the first rung "short" has spent the most so far (12 J against 10 J),
    # but it is half done, while "mid" is a quarter and "long" a seventh done:
    # at the end they will have spent 24, 40 and 70 J. Ranked on that
    # projection, short is on the front beside the more accurate mid and goes
    # on; ranked on the energy so far, it looks dominated by long and stops.
    reports = {
        "mid": {"accuracy": 0.92, "energy_j": 10.0, "trained_fraction": 1 / 4},
        "long": {"accuracy": 0.90, "energy_j": 10.0, "trained_fraction": 1 / 7},
        "short": {"accuracy": 0.85, "energy_j": 12.0, "trained_fraction": 1 / 2},
    }
    projected, raw = scheduler(reduction_factor=2), scheduler(reduction_factor=2, project_costs=False)
    assert [projected._vector(report)[1] for report in reports.values()] == pytest.approx([40.0, 70.0, 24.0])
    assert {name: projected.decide(name, 1, projected._vector(report)) for name, report in reports.items()} == {
        "mid": CONTINUE, "long": STOP, "short": CONTINUE,
    }
    assert {name: raw.decide(name, 1, raw._vector(report)) for name, report in reports.items()} == {
        "mid": CONTINUE, "long": STOP, "short": STOP,
    }


def test_ties_within_a_front_are_broken_by_crowding():
    points = np.array([[0.0, 4.0], [1.0, 3.0], [1.1, 2.9], [4.0, 0.0], [5.0, 5.0]])
    order = Ranking("crowding").order(points)
    assert set(order[:2]) == {0, 3}  # boundary points are infinitely uncrowded
    assert order[-1] == 4  # the dominated point comes last
    assert list(Ranking("hypervolume").order(points))[-1] == 4


def test_crowding_distance_matches_a_hand_computation():
    front = np.array([[0.0, 3.0], [1.0, 2.0], [3.0, 0.0]])
    distance = crowding_distance(front)
    assert np.isinf(distance[0]) and np.isinf(distance[2])
    assert distance[1] == pytest.approx((3 - 0) / 3 + (3 - 0) / 3)


def test_bad_objectives_name_the_fix():
    with pytest.raises(ValueError, match="'min' or 'max'"):
        MultiObjectiveASHA({"accuracy": "best"})
    asha = scheduler()
    with pytest.raises(ValueError, match="objective 'accuracy' is not among the reported metrics"):
        asha._vector({"energy_j": 1.0, "quality": 0.5})


def test_errored_trials_are_forgotten():
    asha = scheduler()
    asha.decide("a", 1, np.array([-0.9, 10.0]))

    class Trial:
        trial_id = "a"

    asha.on_trial_error(None, Trial())
    assert all("a" not in recorded for _, recorded in asha.rungs)


def test_restored_trials_are_recorded_at_the_rungs_they_passed():
    asha = scheduler()

    class Trial:
        trial_id = "old"
        last_result = {"training_iteration": 4, "accuracy": 0.9, "energy_j": 10.0}

    asha.on_trial_add(None, Trial())
    assert all("old" in recorded for _, recorded in asha.rungs)
    assert asha.decide("new", 1, np.array([-0.5, 20.0])) == STOP  # dominated by the restored trial


def test_a_warm_start_point_trains_to_the_end_and_still_sets_the_bar():
    from types import SimpleNamespace

    asha = scheduler()
    leader = SimpleNamespace(trial_id="leader", config={})
    published = SimpleNamespace(trial_id="published", config={"warm_start": True})
    sampled = SimpleNamespace(trial_id="sampled", config={})
    result = {"training_iteration": 1, "accuracy": 0.5, "energy_j": 20.0}
    assert asha.on_trial_result(None, leader, {**result, "accuracy": 0.9, "energy_j": 10.0}) == CONTINUE
    assert asha.on_trial_result(None, published, result) == CONTINUE  # dominated, yet goes on
    assert asha.on_trial_result(None, sampled, result) == STOP  # the same values stop a sampled trial
    assert "published" in dict(asha.rungs)[1]  # recorded: newcomers are ranked against it
    assert asha.on_trial_result(None, published, {**result, "training_iteration": 9}) == STOP  # max_t still ends it


def test_schedulers_by_name():
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

    from greentune.search.schedulers import make_scheduler
    from greentune.search.settings import Scheduler

    objectives = {"quality": "min", "energy_j": "min"}
    assert type(make_scheduler(Scheduler(name="fifo"), objectives, 7)) is FIFOScheduler
    asha = make_scheduler(Scheduler(name="asha", grace_period=2), objectives, 7)
    assert isinstance(asha, AsyncHyperBandScheduler) and asha.metric == "score"  # the scalar score, maximised
    moasha = make_scheduler(Scheduler(name="moasha", tie_break="hypervolume"), objectives, 7)
    assert moasha.objectives == objectives and moasha.ranking.tie_break == "hypervolume"
    with pytest.raises(ValueError, match="unknown scheduler 'hyperband'; choose from asha, fifo, moasha"):
        make_scheduler(Scheduler(name="hyperband"), objectives, 7)
