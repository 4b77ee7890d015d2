"""Trial schedulers by name, including the multi-objective ASHA that Ray Tune lacks.

Ray Tune's schedulers compare trials on one metric. ``MultiObjectiveASHA``
follows Ray's asynchronous successive halving (rungs at
``grace_period * reduction_factor**k``, one decision per trial per rung, no
waiting for a full bracket) but ranks the vectors recorded at a rung by
non-dominated sorting, as Syne Tune's MOASHA does: a trial reaching a rung
continues while its position in that order is within the top
``1 / reduction_factor`` of the trials recorded there. Ties within a front
are broken by a ``Ranking`` strategy (crowding distance or hypervolume
contribution).

greentune's searches put the rungs on ``trained_fraction``, the share of
its own training a trial has done, so trials that differ in length (a
searched ``steps`` or ``epochs``) or in batch size meet at the same
progress, not after the same number of evaluations.

A rung compares trials part-way through, but the front is made of what
trials cost at the end. With ``project_costs`` (the default), objectives
that accumulate over training (energy, time, FLOPs) are ranked as projected
to the end of the trial, ``value / trained_fraction``, so a short trial is
not mistaken for a cheap one nor a long one for an expensive one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

import moocore
import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from greentune.registry import Registry

if TYPE_CHECKING:
    from .settings import Scheduler

# Metrics that add up over training, so a partial value projects linearly to the end.
CUMULATIVE_METRICS = frozenset(
    {"energy_j", "eval_energy_j", "idle_energy_j", "time_s", "eval_time_s", "flops", "flops_sparse"}
)


class Ranking:
    """Orders minimisation vectors best first: by non-dominated front, then a tie-break.

    ``tie_break`` is ``"crowding"`` (NSGA-II's crowding distance, larger is
    better) or ``"hypervolume"`` (each point's exclusive hypervolume
    contribution within its front, larger is better).
    """

    def __init__(self, tie_break: str = "crowding"):
        if tie_break not in ("crowding", "hypervolume"):
            raise ValueError(f"tie_break must be 'crowding' or 'hypervolume', got {tie_break!r}")
        self.tie_break = tie_break

    def order(self, points: np.ndarray) -> np.ndarray:
        """Indices of ``points`` (rows, minimised) from best to worst."""
        ranks = moocore.pareto_rank(points)
        spread = np.zeros(len(points))
        for rank in np.unique(ranks):
            members = np.flatnonzero(ranks == rank)
            spread[members] = self._spread(points[members], points)
        return np.lexsort((-spread, ranks))

    def _spread(self, front: np.ndarray, everything: np.ndarray) -> np.ndarray:
        if self.tie_break == "hypervolume":
            reference = everything.max(axis=0) + 1.0
            return moocore.hv_contributions(front, ref=reference, ignore_dominated=False)
        return crowding_distance(front)


def crowding_distance(front: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each point within one front (boundary points: infinite)."""
    count, objectives = front.shape
    distance = np.zeros(count)
    if count <= 2:
        return np.full(count, np.inf)
    for column in range(objectives):
        order = np.argsort(front[:, column], kind="stable")
        values = front[order, column]
        span = values[-1] - values[0]
        distance[order[[0, -1]]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


class MultiObjectiveASHA(FIFOScheduler):
    """Asynchronous successive halving on several objectives at once.

    ``objectives`` maps each reported metric to ``"min"`` or ``"max"``.
    Ray's single ``metric``/``mode`` are kept for compatibility (the first
    objective), and the objectives are stored beside them.
    """

    _supports_buffered_results = False  # every result may reach a rung

    def __init__(
        self,
        objectives: Mapping[str, str],
        *,
        time_attr: str = "training_iteration",
        max_t: int = 100,
        grace_period: int = 1,
        reduction_factor: float = 3,
        ranking: Ranking | None = None,
        project_costs: bool = True,
    ):
        if not objectives:
            raise ValueError("MultiObjectiveASHA needs objectives, e.g. {'quality': 'max', 'energy_j': 'min'}")
        bad = {name: mode for name, mode in objectives.items() if mode not in ("min", "max")}
        if bad:
            raise ValueError(f"objective modes must be 'min' or 'max', got {bad}")
        if not (0 < grace_period <= max_t) or reduction_factor <= 1:
            raise ValueError(
                f"need 0 < grace_period <= max_t and reduction_factor > 1; got {grace_period}, {max_t}, {reduction_factor}"
            )
        super().__init__()
        self._metric, self._mode = next(iter(objectives.items()))
        self.objectives = dict(objectives)
        self.time_attr, self.max_t = time_attr, max_t
        self.reduction_factor = reduction_factor
        self.ranking = ranking or Ranking()
        self.project_costs = project_costs
        milestones = []
        milestone = grace_period
        while milestone < max_t * (1 - 1e-9):
            milestones.append(milestone)
            milestone = milestone * reduction_factor
            milestone = math.ceil(milestone) if isinstance(grace_period, int) and isinstance(max_t, int) else milestone
        self.rungs: list[tuple[int, dict[str, np.ndarray]]] = [(m, {}) for m in reversed(milestones)]

    def _vector(self, result: Mapping[str, Any]) -> np.ndarray:
        missing = [name for name in self.objectives if name not in result]
        if missing:
            raise ValueError(
                f"MultiObjectiveASHA objective {missing[0]!r} is not among the reported metrics; "
                f"report it or choose objectives from: {', '.join(sorted(result))}"
            )
        fraction = float(result.get("trained_fraction") or 1.0) if self.project_costs else 1.0
        return np.array([
            float(result[name]) / (fraction if name in CUMULATIVE_METRICS else 1.0) * (1 if mode == "min" else -1)
            for name, mode in self.objectives.items()
        ])

    def decide(self, trial_id: str, time: float, vector: np.ndarray) -> str:
        """Record ``vector`` at every rung ``time`` has reached, and stop or continue there."""
        if time >= self.max_t:
            return TrialScheduler.STOP
        for milestone, recorded in self.rungs:
            if time < milestone * (1 - 1e-9) or trial_id in recorded:  # 10 / 30 reaches the rung at 1/3
                continue
            recorded[trial_id] = vector
            if not np.all(np.isfinite(vector)):
                return TrialScheduler.STOP
            ids = list(recorded)
            order = self.ranking.order(np.stack([recorded[other] for other in ids]))
            position = int(np.flatnonzero(np.array(ids)[order] == trial_id)[0])
            keep = max(1, math.ceil(len(ids) / self.reduction_factor))
            return TrialScheduler.CONTINUE if position < keep else TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_add(self, tune_controller, trial) -> None:
        # After Tuner.restore, trials come back through here and the rungs
        # (never persisted by Ray) are empty: record a restored trial's last
        # result at the rungs it had passed, so newcomers still meet it.
        result = trial.last_result or {}
        if self.time_attr in result and all(name in result for name in self.objectives):
            vector = self._vector(result)
            for milestone, recorded in self.rungs:
                if result[self.time_attr] >= milestone:
                    recorded.setdefault(trial.trial_id, vector)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self.time_attr not in result:
            return TrialScheduler.CONTINUE
        decision = self.decide(trial.trial_id, result[self.time_attr], self._vector(result))
        # A warm-start point (evaluate_first) is recorded at the rungs, so newcomers
        # meet it, but never stopped: its early values say little of where it ends.
        if trial.config.get("warm_start") and result[self.time_attr] < self.max_t:
            return TrialScheduler.CONTINUE
        return decision

    def on_trial_error(self, tune_controller, trial) -> None:
        self._forget(trial.trial_id)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._forget(trial.trial_id)

    def _forget(self, trial_id: str) -> None:
        for _, recorded in self.rungs:
            recorded.pop(trial_id, None)

    def debug_string(self) -> str:
        rungs = ", ".join(f"{milestone:.3g}: {len(recorded)}" for milestone, recorded in self.rungs)
        return f"MultiObjectiveASHA(rungs {{{rungs}}})"


SCHEDULERS: Registry = Registry("scheduler")


@SCHEDULERS.register("fifo")
def _fifo(settings: Scheduler, objectives: Mapping[str, str], max_t: int | None) -> TrialScheduler:
    return FIFOScheduler()


@SCHEDULERS.register("asha")
def _asha(settings: Scheduler, objectives: Mapping[str, str], max_t: int | None) -> TrialScheduler:
    """Ray's ASHA on the scalar ``score`` every trial reports (``greentune.trainables.trial.green_score``)."""
    if max_t is None:
        raise ValueError("scheduler asha counts evaluations, which trials counted in epochs do not know in advance; "
                         "give scheduler.max_t (evaluations per trial), or use moasha")
    return AsyncHyperBandScheduler(
        time_attr="training_iteration", metric="score", mode="max",
        max_t=max_t, grace_period=settings.grace_period, reduction_factor=settings.reduction_factor,
    )


@SCHEDULERS.register("moasha")
def _moasha(settings: Scheduler, objectives: Mapping[str, str], max_t: int | None) -> TrialScheduler:
    """MO-ASHA with rungs on ``trained_fraction``: where the longest trial would be after ``grace_period``
    evaluations, then ``reduction_factor`` times further each. Where that trial's evaluations are not known
    (trials counted in epochs), the rungs lie as if it made ``reduction_factor**3`` of them."""
    evaluations = max_t or settings.reduction_factor ** 3
    grace = min(settings.grace_period / evaluations, 1.0)
    return MultiObjectiveASHA(
        objectives, time_attr="trained_fraction", max_t=1.0, grace_period=grace,
        reduction_factor=settings.reduction_factor, ranking=Ranking(settings.tie_break),
        project_costs=settings.project_costs,
    )


def make_scheduler(settings: Scheduler, objectives: Mapping[str, str], max_t: int | None) -> TrialScheduler:
    """The scheduler a search's ``scheduler`` settings name, for trials whose longest makes ``max_t``
    evaluations (None where that is not known before the data is)."""
    return SCHEDULERS.create(settings.name, settings, objectives, max_t)
