"""Multi-objective TPE that fits once per trial, on a bounded history.

Optuna's ``TPESampler`` splits the study's finished trials into good and
bad (for several objectives, by non-dominated sorting of all of them) and
fits two Parzen estimators, afresh for every parameter it samples;
``CostAwareSampler`` asks it for each parameter several times over. So
every draw reads the whole study several times, and a study of thousands
of trials spends most of the driver's time there (see
``benchmarks/driver_scale.py``).

``BoundedTPESampler`` is the same sampler with two changes:

- the split and the estimators are kept while no trial finishes, so the
  draws of one trial share them: the same draws as Optuna's, from fewer fits;
- past ``history`` finished trials, it fits on the ``history`` most recent
  (by trial number) and every older trial on the Pareto front (feasible,
  complete), rather than on all of them. Below ``history`` it is Optuna's
  TPE draw for draw.

Each fit also reads every parameter of every trial it fits on (Optuna's
``_get_internal_repr``); a finished trial's parameters never change, so
their internal values are kept, per parameter and distribution, and each
later fit looks them up instead of converting them again.

It overrides Optuna's private ``_sample`` (Optuna 4 and 5 share it), and
keeps its ``constant_liar`` (Optuna 5's default): running trials other than
the one drawing for join the history as bad ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import TPESampler
from optuna.samplers._tpe.sampler import _split_trials, default_gamma, default_gamma_multiobjective
from optuna.study import Study, StudyDirection
from optuna.study._multi_objective import _is_pareto_front
from optuna.trial import FrozenTrial, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_UNREAD = object()


class BoundedTPESampler(TPESampler):
    """Optuna's TPE, fitted once per finished trial on the ``history`` most recent trials and the older front."""

    def __init__(self, *args, history: int = 1000, **kwargs):
        if history < 1:
            raise ValueError(f"history must be at least 1, got {history}")
        super().__init__(*args, **kwargs)
        self.history = history
        self._fitted_on: tuple | None = None  # (storage, study id, finished trials) the split below is of
        self._split: tuple[list[FrozenTrial], list[FrozenTrial]] = ([], [])
        self._estimators: dict[tuple, tuple] = {}  # per search space: (below, above) Parzen estimators
        self._old_front: list[FrozenTrial] = []  # the front among trials older than the history
        self._old_read: set[int] = set()  # numbers of the trials merged into it
        self._drawing_for: tuple | None = None  # (storage, study id, trial number) the split is for
        self._finished = 0  # finished trials when that trial started drawing
        self._reprs: dict[tuple, dict[int, float | None]] = {}  # per (study, parameter, distribution): trial number: value

    def fitted_on(self, study: Study) -> list[FrozenTrial]:
        """The finished trials the next draw fits on, by number (with ``constant_liar``, running ones join them)."""
        return self._bounded(study, study._get_trials(deepcopy=False, states=FINISHED, use_cache=False))

    def _bounded(self, study: Study, finished: list[FrozenTrial]) -> list[FrozenTrial]:
        if len(finished) <= self.history:
            return list(finished)
        if self._fitted_on is None or self._fitted_on[:2] != (id(study._storage), study._study_id):
            self._old_front, self._old_read = [], set()
        # Trials become old mostly at the end of the old part: look from there until all unread ones are found.
        old, unread = [], len(finished) - self.history - len(self._old_read)
        for trial in reversed(finished[: -self.history]):
            if unread == 0:
                break
            if trial.number not in self._old_read:
                old.append(trial)
                unread -= 1
        if old:
            self._old_read.update(trial.number for trial in old)
            self._old_front = _front(study, self._old_front + old)
        return sorted(self._old_front + list(finished[-self.history:]), key=lambda trial: trial.number)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        if self._multivariate:
            return super().sample_independent(study, trial, param_name, param_distribution)
        self._fit(study, trial)
        if self._finished < self._n_startup_trials:  # as Optuna's: random draws until enough trials finished
            return self._random_sampler.sample_independent(study, trial, param_name, param_distribution)
        return self._sample(study, trial, {param_name: param_distribution})[param_name]

    def _fit(self, study: Study, trial: FrozenTrial) -> None:
        """Split the trials into good and bad for ``trial``'s draws, once per trial.

        As Optuna's own cache of the study's trials (``use_cache``), this
        takes the study to stand still while one trial draws its parameters.
        """
        drawing_for = (id(study._storage), study._study_id, trial.number)
        if drawing_for == self._drawing_for:
            return
        use_cache = not self._constant_liar  # as Optuna's: a liar reads the running trials afresh
        finished = study._get_trials(deepcopy=False, states=FINISHED, use_cache=use_cache)
        running = []
        if self._constant_liar:  # the other running trials count as bad ones, so parallel draws spread out
            running = [other for other in study._get_trials(deepcopy=False, states=(TrialState.RUNNING,), use_cache=False)
                       if other.number != trial.number]
        self._drawing_for, self._finished = drawing_for, len(finished)
        # A finished trial stays finished: the same count means the same finished trials.
        key = (id(study._storage), study._study_id, len(finished), tuple(other.number for other in running))
        if key == self._fitted_on or len(finished) < self._n_startup_trials:
            return
        bounded = self._bounded(study, finished)
        if self._gamma is None:
            self._gamma = default_gamma if len(study.directions) <= 1 else default_gamma_multiobjective
        trials = sorted(bounded + running, key=lambda other: other.number)
        self._split = _split_trials(study, trials, self._gamma(len(bounded)))
        self._estimators = {}
        self._fitted_on = key

    def _sample(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if self._multivariate:
            return super()._sample(study, trial, search_space)
        self._fit(study, trial)
        space = tuple(search_space.items())
        if space not in self._estimators:
            below, above = self._split
            self._estimators[space] = (
                self._build_parzen_estimator(study, search_space, below, handle_below=True),
                self._build_parzen_estimator(study, search_space, above, handle_below=False),
            )
        mpe_below, mpe_above = self._estimators[space]
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acquisition = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        drawn = TPESampler._compare(samples_below, acquisition)
        return {name: distribution.to_external_repr(drawn[name]) for name, distribution in search_space.items()}

    def _get_internal_repr(self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution], *args) -> dict[str, np.ndarray]:
        """Optuna's, with finished trials' values kept from earlier fits (``None`` where a trial lacks the parameter)."""
        if self._multivariate or self._drawing_for is None:  # _drawing_for: the study the draws are for
            return super()._get_internal_repr(trials, search_space, *args)
        columns = []
        for name, distribution in search_space.items():
            known = self._reprs.setdefault((self._drawing_for[:2], name, distribution), {})
            column = []
            for trial in trials:
                value = known.get(trial.number, _UNREAD)
                if value is _UNREAD:
                    value = distribution.to_internal_repr(trial.params[name]) if name in trial.params else None
                    if trial.state.is_finished():  # a running trial's parameters may still grow
                        known[trial.number] = value
                column.append(value)
            columns.append(column)
        rows = [row for row in zip(*columns) if None not in row]
        return {name: np.asarray([row[index] for row in rows]) for index, name in enumerate(search_space)}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_fitted_on=None, _drawing_for=None, _split=([], []), _estimators={}, _reprs={})  # refitted after a restore
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"_reprs": {}, **state})  # a sampler pickled before the values were kept has none


def _front(study: Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The complete, feasible trials among ``trials`` that no other of them dominates."""
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE
                and sum(value for value in trial.constraints.values() if value > 0) <= 0]
    if not complete:
        return []
    signs = [-1.0 if direction == StudyDirection.MAXIMIZE else 1.0 for direction in study.directions]
    losses = np.array([trial.values for trial in complete], dtype=float) * signs
    return [trial for trial, on_front in zip(complete, _is_pareto_front(losses, assume_unique_lexsorted=False)) if on_front]
