"""What a trial costs the search, and a sampler that tries the cheap among its good guesses first.

An energy search pays for each trial in the currency it optimises. Among
configurations a sampler rates about equally, the cheaper one buys the
same information for fewer joules, and a cheap configuration that turns
out well is a point on the front too. So ``CostAwareSampler`` draws a few
candidates from its inner sampler for each parameter and keeps the one
whose trial it predicts to cost least, the "improvement per unit cost" idea
of cost-aware Bayesian optimisation (Snoek et al. 2012) in its simplest
form.

The prediction comes from the study's own trials: each records what it
would have cost trained to the end (``projected_energy``: a stopped trial's
energy over the fraction it trained, see ``search.schedulers``). For a
categorical parameter (the approach, say) a value's cost is the geometric
mean over the trials that took it; for a numeric one, log cost is fitted
linearly in the parameter (in log space for log-scaled ones) over trials
that share the categorical choices already made for this trial; a
categorical value never tried counts as average. Where there is nothing to
go on, the inner sampler's first candidate stands, so the sampler is
exactly the inner one until costs are known.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

COST_ATTR = "projected_energy_j"  # the Optuna user attribute each finished or stopped trial carries


def trial_energy(result: Mapping[str, Any]) -> float:
    """Everything a trial's report says it spent: training and evaluation; nothing for a trial that reported none.

    >>> trial_energy({"energy_j": float("nan"), "eval_energy_j": 0.5})
    0.5
    """
    return _joules(result.get("energy_j")) + _joules(result.get("eval_energy_j"))


def _joules(value: Any) -> float:
    try:
        value = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0  # NaN: a table's cell for a trial that never reported


def attempts_energy(reports: list[Mapping[str, Any]], measure: Callable[[Mapping[str, Any]], float] | None = None) -> float:
    """What a trial spent over all its attempts, from its reports in the order it made them (its history).

    Each report's energy counts from the trial's start; a retried attempt
    restarts from a checkpoint, so its reports carry on from that
    checkpoint's iteration and energy, not from where the failed attempt got
    to. Each attempt adds what it spent beyond the report it restarted from,
    so the work a failure threw away is counted once, and nothing twice.
    ``measure`` reads what a report spent (its energy by default; a carbon
    budget reads its grams).

    >>> attempts_energy([{"training_iteration": 1, "energy_j": 1.0}, {"training_iteration": 2, "energy_j": 2.0},
    ...                  {"training_iteration": 2, "energy_j": 2.5}, {"training_iteration": 3, "energy_j": 3.5}])
    4.5
    """
    spent_at: dict[Any, float] = {}  # iteration -> energy at that report, in the attempt that last made it
    total, base, last, previous = 0.0, 0.0, 0.0, None
    for report in reports:
        iteration, energy = report.get("training_iteration"), (measure or trial_energy)(report)
        if iteration == previous and energy == last:
            continue  # the same report again: Ray Tune passes a trial's last result on once more as it ends
        if previous is not None and iteration is not None and iteration <= previous:  # a new attempt
            total += last - base
            base = spent_at.get(iteration - 1, 0.0)  # the checkpoint it restarted from
        spent_at[iteration], last, previous = energy, energy, iteration
    return total + last - base


def search_energy(results: Any, history: Any = None) -> float:
    """What a search spent: each trial over all its attempts (from ``history``), or its final row where it has none."""
    by_trial = {}
    if history is not None and len(history) and "trial_id" in history:
        by_trial = {trial_id: attempts_energy(rows.to_dict("records")) for trial_id, rows in history.groupby("trial_id", sort=False)}
    return sum(by_trial[row.get("trial_id")] if row.get("trial_id") in by_trial else trial_energy(row)
               for row in results.to_dict("records"))


def projected_energy(result: Mapping[str, Any]) -> float:
    """What the trial would have spent trained to the end, from what it had spent and how far it got.

    >>> projected_energy({"energy_j": 2.0, "eval_energy_j": 0.5, "trained_fraction": 0.25})
    10.0
    """
    fraction = float(result.get("trained_fraction") or 1.0)
    return trial_energy(result) / fraction


class CostAwareSampler(optuna.samplers.BaseSampler):
    """Of ``candidates`` draws of the inner sampler for each parameter, the one predicted cheapest."""

    def __init__(self, sampler: optuna.samplers.BaseSampler, candidates: int = 3):
        if candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {candidates}")
        self.sampler, self.candidates = sampler, candidates
        self.costs = CostModel()

    def infer_relative_search_space(self, study, trial):
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name: str, param_distribution: BaseDistribution) -> Any:
        draws = [self.sampler.sample_independent(study, trial, param_name, param_distribution) for _ in range(self.candidates)]
        if self.candidates == 1:
            return draws[0]
        costs = self.costs.predict(study, trial, param_name, param_distribution, draws)
        return draws[0] if costs is None else draws[int(np.argmin(costs))]

    def before_trial(self, study, trial) -> None:
        self.sampler.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


def predicted_log_costs(
    study: optuna.Study, trial: FrozenTrial, name: str, distribution: BaseDistribution, values: list[Any]
) -> list[float] | None:
    """log(projected energy) of a trial taking each of ``values`` for ``name``; None when nothing is known.

    A categorical value never tried is taken for an average one: the mean
    over the trials that set ``name``. (One question; ``CostModel`` answers
    many over a growing study, each finished trial read once.)
    """
    return CostModel().predict(study, trial, name, distribution, values)


class CostModel:
    """``predicted_log_costs`` kept up to date as a study's trials finish, instead of read from every trial per question.

    Each finished trial with a cost is read once. What a question needs is
    kept per (parameter, the categorical choices the asking trial has made):
    for a categorical parameter, each value's count and sum of log costs;
    for a numeric one, the running means and co-moment of (x, log cost) that
    the least-squares line comes from. A new question's kind is filled once
    from the trials read so far, then updated with each trial that finishes.
    """

    def __init__(self):
        self._study: tuple | None = None  # (storage, study id) the trials below belong to
        self._read: set[int] = set()  # numbers of finished trials read
        self._records: list[tuple[dict, float]] = []  # (params, log cost) of the finished trials that had a cost
        self._fits: dict[tuple[str, frozenset], _Fit] = {}
        self._asked_for: int | None = None  # the trial whose questions the model is up to date for

    def predict(
        self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: BaseDistribution, values: list[Any]
    ) -> list[float] | None:
        self._catch_up(study, trial.number)
        choices = frozenset((key, value) for key, value in trial.params.items()
                            if isinstance(trial.distributions[key], CategoricalDistribution))
        fit = self._fits.get((name, choices))
        if fit is None:
            fit = self._fits[(name, choices)] = _Fit(name, choices, distribution)
            for params, cost in self._records:
                fit.add(params, cost)
        return fit.predict(values)

    def _catch_up(self, study: optuna.Study, number: int) -> None:
        """Read the trials finished since the last question (all of them for a study not seen before).

        As Optuna's own cache of the study's trials (``use_cache``), this
        takes the study to stand still while trial ``number`` draws.
        """
        if self._study != (id(study._storage), study._study_id):
            self.__init__()
            self._study = (id(study._storage), study._study_id)
        elif number == self._asked_for:
            return
        self._asked_for = number
        finished = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED), use_cache=False)
        if len(finished) == len(self._read):  # a finished trial stays finished: same count, same trials
            return
        # Newly finished trials are mostly the latest: look from the end until all unread ones are found.
        unread = len(finished) - len(self._read)
        for past in reversed(finished):
            if unread == 0:
                break
            if past.number in self._read:
                continue
            unread -= 1
            self._read.add(past.number)
            cost = past.user_attrs.get(COST_ATTR, 0)
            if cost > 0:
                self._records.append((past.params, math.log(cost)))
                for fit in self._fits.values():
                    fit.add(past.params, math.log(cost))


class _Fit:
    """What ``CostModel`` knows of one parameter's cost among trials that made given categorical choices."""

    def __init__(self, name: str, choices: frozenset, distribution: BaseDistribution):
        self.name, self.choices = name, choices
        self.categorical = isinstance(distribution, CategoricalDistribution)
        self.log = isinstance(distribution, (FloatDistribution, IntDistribution)) and distribution.log
        self.count, self.mean_cost = 0, 0.0
        self.by_value: dict[Any, list[float]] = {}  # value: [count, sum of log costs]
        self.mean_x, self.m2_x, self.co_moment = 0.0, 0.0, 0.0  # Welford's running moments
        self.low, self.high = math.inf, -math.inf

    def add(self, params: dict, cost: float) -> None:
        if self.name not in params or any(params.get(key) != value for key, value in self.choices):
            return
        value = params[self.name]
        self.count += 1
        delta_cost = cost - self.mean_cost
        self.mean_cost += delta_cost / self.count
        if self.categorical:
            tally = self.by_value.setdefault(value, [0, 0.0])
            tally[0] += 1
            tally[1] += cost
            return
        x = math.log(value) if self.log else float(value)
        self.low, self.high = min(self.low, x), max(self.high, x)
        delta_x = x - self.mean_x
        self.mean_x += delta_x / self.count
        self.m2_x += delta_x * (x - self.mean_x)
        self.co_moment += delta_x * (cost - self.mean_cost)

    def predict(self, values: list[Any]) -> list[float] | None:
        if not self.count:
            return None
        if self.categorical:
            return [self.by_value[value][1] / self.by_value[value][0] if value in self.by_value else self.mean_cost
                    for value in values]
        if self.low == self.high:
            return None
        slope = self.co_moment / self.m2_x
        intercept = self.mean_cost - slope * self.mean_x
        return [slope * (math.log(value) if self.log else float(value)) + intercept for value in values]
