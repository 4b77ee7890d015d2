"""Searchers by name: Optuna samplers through Ray Tune, with constraints, grids and seed repeats.

``SEARCHERS`` maps each name to a function that builds its draws from the
search's settings:

- ``nsga2`` (default), ``tpe`` (multi-objective TPE, after
  ``startup_trials`` random ones; fitted once per trial, on the 1000 most
  recent trials and the older front past 1000, see ``search.tpe``),
  ``random``: Optuna samplers, seeded. The
  search's constraints are set on each Optuna trial, where NSGA-II and TPE
  take them into account. With ``cheapest_of: k`` the sampler draws k
  candidates per parameter and keeps the one predicted cheapest
  (``greentune.search.costs.CostAwareSampler``).
- ``grid``: every combination of the listed values, each approach's
  parameters given as lists (or fixed), enqueued in order.

``GreenOptunaSearch`` fills three gaps of Ray's OptunaSearch: a trial a
scheduler stopped early is told to Optuna as pruned rather than as a
complete trial with early (cheap, poor) values; the metrics named by
constraints are attached to the Optuna trial so that constrained samplers
can read them (``Trial.set_constraint``); and a configuration the study has
already tried is not trained again (see ``GreenOptunaSearch.suggest``).
``SeedRepeater`` runs each suggested configuration over several seeds and
tells the searcher the mean of each objective.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from greentune.analysis.constraints import Constraint
from greentune.registry import Registry

from .costs import COST_ATTR, CostAwareSampler, projected_energy
from .space import WARM_START, DefineByRun
from .tpe import BoundedTPESampler

if TYPE_CHECKING:
    from .config import SearchConfig

logger = logging.getLogger(__name__)
DUPLICATE_ATTR = "duplicate_of"  # the user attribute of a draw told the earlier trial's outcome, untrained
SEEDS_ATTR = "seeds"  # the user attribute naming the seeds an Optuna trial's values come from
DUPLICATE_DRAWS = 100  # draws in a row that repeat tried configurations before the space counts as exhausted


class GreenOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch, plus constraints, pruned early stops and warm-start points.

    ``warm_start`` points (``evaluate_first``) are enqueued in the study
    marked with the user attribute ``warm_start``, so the space can flag
    their trials and a scheduler lets them train to the end.
    """

    def __init__(self, *args, constraints: list[Constraint] = (), warm_start: list[dict] = (), earlier: list = (), **kwargs):
        self.warm_start, self.earlier = list(warm_start), list(earlier)  # before super().__init__, which sets the study up
        super().__init__(*args, **kwargs)
        self.constraints = list(constraints)
        self._seeds: dict[str, Any] = {}  # trial -> the seed of the config suggested

    def _setup_study(self, mode):
        super()._setup_study(mode)
        for trial in self.earlier:  # earlier searches' trials, as evaluated (search.warm_start)
            self._ot_study.add_trial(trial)
        for point in self.warm_start:
            self._ot_study.enqueue_trial(point, user_attrs={WARM_START: True})

    def restore(self, checkpoint_path: str) -> None:
        """The searcher as checkpointed; a study kept in a journal (``optuna_storage``) has run on since.

        Trials the journal shows running that the checkpointed searcher never
        handed out were started by the driver that died: nothing will tell
        their outcome, so they are marked failed, as Optuna marks stale trials.
        """
        super().restore(checkpoint_path)
        if self._storage is None:
            return
        known = {ot_trial.number for ot_trial in self._ot_trials.values()}
        for stale in self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if stale.number not in known:
                self._ot_study.tell(stale.number, state=optuna.trial.TrialState.FAIL)

    def suggest(self, trial_id: str) -> dict | None:
        """A configuration not tried before in this study.

        Every trial of a search trains with the search's seed, so the same
        parameters give the same result: samplers that draw an approach
        without parameters (a baseline) or a categorical point again would
        spend a whole trial's energy to learn nothing. Such a draw is told
        to the study with the earlier trial's outcome (its values, or pruned
        if it was stopped or is still running), as Optuna's FAQ suggests for
        duplicates, and the sampler draws again.
        """
        for _ in range(DUPLICATE_DRAWS):
            config = super().suggest(trial_id)
            ot_trial = self._ot_trials.get(trial_id)
            earlier = ot_trial and self._tried_with(ot_trial)
            if not earlier:
                if config:
                    self._seeds[trial_id] = config.get("seed")
                return config
            del self._ot_trials[trial_id]
            ot_trial.set_user_attr(DUPLICATE_ATTR, earlier.number)  # not trained: what optuna-dashboard shows
            if COST_ATTR in earlier.user_attrs:
                ot_trial.set_user_attr(COST_ATTR, earlier.user_attrs[COST_ATTR])
            if earlier.state == optuna.trial.TrialState.COMPLETE:
                for key, value in earlier.constraints.items():
                    ot_trial.set_constraint(key, value)
                self._ot_study.tell(ot_trial, earlier.values)
            else:
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        logger.info("every configuration the sampler drew was tried already; the search ends")
        return Searcher.FINISHED

    def _tried_with(self, ot_trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
        """An earlier trial of the study with ``ot_trial``'s parameters, unless it failed (a failure may be retried).

        Looked up by parameters (``_by_params``), not by reading the whole
        study per draw: the first such trial, by number, that is finished,
        stopped or running. ``ot_trial`` is recorded there for later draws.
        """
        index = self._params_index()
        same = index.setdefault(params_key(ot_trial.params), [])
        tried = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
        storage = self._ot_study._storage
        earlier = None
        for trial_id in same:
            frozen = storage.get_trial(trial_id)
            if trial_id != ot_trial._trial_id and frozen.state in tried:
                earlier = frozen
                break
        if ot_trial._trial_id not in same:  # (an index built just now holds it already)
            same.append(ot_trial._trial_id)
        return earlier

    def _params_index(self) -> dict[tuple, list[int]]:
        """Optuna trial ids by ``params_key`` of their parameters, in trial order; built from the study when missing
        (a searcher restored from a checkpoint of an earlier version)."""
        if getattr(self, "_by_params", None) is None:
            self._by_params: dict[tuple, list[int]] = {}
            for trial in self._ot_study.get_trials(deepcopy=False):
                if trial.params and trial.state != optuna.trial.TrialState.WAITING:
                    self._by_params.setdefault(params_key(trial.params), []).append(trial._trial_id)
        return self._by_params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return
        if self._ot_study.get_trials(deepcopy=False)[ot_trial.number].state.is_finished():
            # A study kept in a journal outlives the searcher's checkpoint: a trial that finished after the
            # last checkpoint, before the driver died, is told again on resume; the journal has its outcome.
            self._completed_trials.add(trial_id)
            return
        result = result or {}
        if not error and result:
            ot_trial.set_user_attr(COST_ATTR, projected_energy(result))  # what CostAwareSampler predicts from
        seeds = result.get(SEEDS_ATTR) or [getattr(self, "_seeds", {}).pop(trial_id, None)]
        if seeds != [None]:  # which seeds the study's values come from (the mean over them, with repeats)
            ot_trial.set_user_attr(SEEDS_ATTR, seeds)
        if not error and result and not result.get("complete", False) and not result.get("diverged"):
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        for constraint in self.constraints:
            ot_trial.set_constraint(str(constraint), constraint.violation(result.get(constraint.column)))
        super().on_trial_complete(trial_id, result, error)


class SeedRepeater(Searcher):
    """Each configuration the inner searcher suggests runs ``repeats`` times, seeds ``seed + k``."""

    def __init__(self, searcher: Searcher, repeats: int, objectives: Mapping[str, str]):
        super().__init__(metric=list(objectives), mode=list(objectives.values()))
        self.searcher, self.repeats = searcher, repeats
        self._pending: list[tuple[str, dict]] = []  # (group, config) still to hand out
        self._group_of: dict[str, str] = {}
        self._seed_of: dict[str, int] = {}
        self._results: dict[str, list[dict | None]] = {}
        self._seeds: dict[str, list[int]] = {}  # group -> the seeds of its finished repeats

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | None:
        if not self._pending:
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            self._results[trial_id] = []
            for index in range(self.repeats):
                repeat = copy.deepcopy(config)
                repeat["seed"] = int(config.get("seed", 0)) + index
                repeat["repeat_group"] = trial_id
                self._pending.append((trial_id, repeat))
        group, config = self._pending.pop(0)
        self._group_of[trial_id] = group
        self._seed_of[trial_id] = config["seed"]
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        group = self._group_of.pop(trial_id, None)
        if group is None:
            return
        self._results[group].append(None if error else result)
        seed = self._seed_of.pop(trial_id, None)
        if not error and result:
            self._seeds.setdefault(group, []).append(seed)
        if len(self._results[group]) < self.repeats:
            return
        finished = [r for r in self._results.pop(group) if r]
        if not finished:
            self.searcher.on_trial_complete(group, None, error=True)
            return
        mean = {name: _finite_mean([r.get(name, np.nan) for r in finished]) for name in self.metric}
        mean["complete"] = all(r.get("complete", False) for r in finished)
        mean[SEEDS_ATTR] = sorted(self._seeds.pop(group, []))
        for name in finished[0]:
            mean.setdefault(name, finished[0][name])
        self.searcher.on_trial_complete(group, mean, error=False)

    def get_state(self) -> dict:
        return {key: getattr(self, key) for key in ("_pending", "_group_of", "_seed_of", "_results", "_seeds")}

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path + ".inner")
        super().save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path + ".inner")
        super().restore(checkpoint_path)


def params_key(params: Mapping[str, Any]) -> tuple:
    """A hashable form of Optuna parameters: equal keys for equal parameters.

    >>> params_key({"b": [1, 2], "a": 0.5}) == params_key({"a": 0.5, "b": [1, 2]})
    True
    """
    return tuple(sorted((name, _hashable(value)) for name, value in params.items()))


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_hashable(item) for item in value))
    if isinstance(value, dict):
        return ("dict", params_key(value))
    return value


def _finite_mean(values: list) -> float:
    """The mean over finite values; NaN where none is (all repeats diverged)."""
    finite = [float(value) for value in values if value is not None and np.isfinite(value)]
    return float(np.mean(finite)) if finite else float("nan")


def grid_points(search: SearchConfig) -> list[dict[str, Any]]:
    """Every combination of listed values, approach by approach, as enqueued Optuna params."""
    points = []
    for approach in search.approaches:
        dimensions = approach.grid_dimensions()
        for combination in itertools.product(*dimensions.values()):
            points.append({"approach": approach.name, **dict(zip(dimensions, combination))})
    return points


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, picklable: Ray Tune pickles the searcher, and Optuna 5's GA samplers hold a thread lock."""

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "_thread_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


@dataclass(frozen=True)
class Draws:
    """How a searcher draws: an Optuna sampler, the points it enqueues first, and whether warm starts apply."""

    sampler: optuna.samplers.BaseSampler
    points: tuple[dict[str, Any], ...] = ()
    warm_start: bool = True


SEARCHERS: Registry = Registry("searcher")


@SEARCHERS.register("nsga2")
def _nsga2(search: SearchConfig) -> Draws:
    return Draws(NSGAIISampler(population_size=search.settings.searcher.population_size, seed=search.settings.seed))


@SEARCHERS.register("tpe")
def _tpe(search: SearchConfig) -> Draws:
    settings = search.settings
    return Draws(BoundedTPESampler(n_startup_trials=settings.searcher.startup_trials, seed=settings.seed))


@SEARCHERS.register("random")
def _random(search: SearchConfig) -> Draws:
    return Draws(optuna.samplers.RandomSampler(seed=search.settings.seed))


@SEARCHERS.register("grid")
def _grid(search: SearchConfig) -> Draws:
    return Draws(optuna.samplers.RandomSampler(seed=search.settings.seed), tuple(grid_points(search)), warm_start=False)


def make_searcher(search: SearchConfig, storage: optuna.storages.BaseStorage | None = None) -> Searcher:
    """The Ray Tune searcher of ``search``'s settings: its Optuna draws, cost-aware and repeated over seeds as asked.

    ``storage`` keeps the Optuna study (a journal file optuna-dashboard opens); None keeps it in memory.
    """
    settings = search.settings
    draws = SEARCHERS.create(settings.searcher.name, search)
    sampler = draws.sampler
    if settings.searcher.cheapest_of > 1:
        sampler = CostAwareSampler(sampler, settings.searcher.cheapest_of)
    searcher = GreenOptunaSearch(
        space=DefineByRun(search),
        metric=list(search.objectives),
        mode=list(search.objectives.values()),
        sampler=sampler,
        points_to_evaluate=list(draws.points),
        warm_start=search.first_points() if draws.warm_start else [],
        earlier=search.earlier_trials(),
        constraints=search.constraints,
        storage=storage,
    )
    if settings.repeats > 1:
        return SeedRepeater(searcher, settings.repeats, search.objectives)
    return searcher
