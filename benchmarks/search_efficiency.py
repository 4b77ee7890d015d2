"""How much energy each search spends to find the accuracy–energy front of the papers' own settings.

One process, one space, the same seeds for every method. The reference is
a grid over the points the presets publish (seed 000's data selection
30/40/50%, its GradMax schedule and ER pruning, the sparse-training arms of
seeds 002/003); its final hypervolume is the target. Every other method
runs until it has spent as much energy as the grid did (``--budget``
times it), stopped trials included:

- ``random``, ``nsga2``, ``tpe``: greentune's Optuna searchers, FIFO;
- ``…+moasha``: the same under greentune's multi-objective ASHA;
- ``syne-tune-moasha``: Syne Tune's MOASHA (random sampling, non-dominated
  sorting) as the outside peer, driving the very same trials;
- ``greentune``: the library default applied to the space's search file:
  the file with no searcher or scheduler settings, as a user writes it
  (the teacher–student space is the ``teacher-student-search`` preset; its
  ``evaluate_first`` of seed 000's published points is part of that file).

Trials run one after another in this process through greentune's own
training code; the searchers and schedulers are greentune's own objects
(and Syne Tune's), driven through their ask/tell interfaces, so what is
compared is the search, not Ray's scheduling. Energy is whatever the
trials' meters report (the CPU-time ``estimate`` on a CPU machine). As in
a tabular benchmark, each distinct trial is trained once per seed and its
measurements are replayed to every method that asks for it
(``TrialTable``), so the methods differ in what they ask for, not in the
machine's noise. ``--ablations [NAME ...]`` adds the default preset with
one of its ideas changed at a time (all of them when none is named). Per
method it prints the energy at which the search first reaches 95% and
100% of the grid's final hypervolume (mean ± std over seeds, against one
reference point per space taken from the grid's trials), the share of it
held at a third of the grid's energy (the target's budget), per seed the
wins and losses of ``greentune`` on energy to 100% against each other method
(a seed that never reaches the target loses to one that does) with a
two-sided sign test, and draws the hypervolume-vs-energy curves into one PNG.

    pip install -e ".[bench]"
    python benchmarks/search_efficiency.py [--seeds 3] [--spaces teacher-student digits-sparse] [--budget 1.0]
    python benchmarks/search_efficiency.py --spaces teacher-student --methods random greentune --ablations greentune-rf2
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import yaml
from ray.tune.schedulers import TrialScheduler

from greentune.analysis import energy_to_reach, hypervolume_by_energy, reference_point
from greentune.search.config import SearchConfig, evaluations_per_trial, fixed_values, parse_search, trial_config
from greentune.search.presets import preset_path
from greentune.search.costs import trial_energy
from greentune.search.schedulers import make_scheduler
from greentune.search.searchers import make_searcher
from greentune.techniques import Choice, Fixed, Float, Int
from greentune.trainables.loop import TrainingDiverged
from greentune.trainables.trial import build_training

MOASHA = {"name": "moasha", "grace_period": 1, "reduction_factor": 3}
# Every greentune searcher trains the search's reference baseline first; Syne Tune's does not.
METHODS: dict[str, dict[str, Any]] = {
    "random": {"searcher": "random", "scheduler": {"name": "fifo"}, "evaluate_first": []},
    "nsga2": {"searcher": "nsga2", "scheduler": {"name": "fifo"}, "evaluate_first": []},
    "tpe": {"searcher": "tpe", "scheduler": {"name": "fifo"}, "evaluate_first": []},
    "random+moasha": {"searcher": "random", "scheduler": MOASHA, "evaluate_first": []},
    "nsga2+moasha": {"searcher": "nsga2", "scheduler": MOASHA, "evaluate_first": []},
    "tpe+moasha": {"searcher": "tpe", "scheduler": MOASHA, "evaluate_first": []},
    "syne-tune-moasha": {"scheduler": MOASHA},
    "greentune": {},
}
# Two spaces nobody tuned greentune's settings on: real data, five or more approaches with a structured
# one, training settings searched. Their grids are settings the papers publish, at the task's training.
DIGITS_TRAIN = {"optimizer": "sgd", "momentum": 0.9, "schedule": "cosine", "steps": 1380, "eval_every": 230}
DIGITS_STRUCTURED = {
    "description": "digits, MLP 64-64-10, 60 epochs of SGD: dense, data selection, random pruning at init, L1 neuron "
                   "pruning during training and Feather, with the learning rate searched for every approach",
    "task": "digits",
    "task_options": {"hidden": [64, 64]},
    "train": {**DIGITS_TRAIN, "lr": {"low": 0.01, "high": 0.3}},
    "approaches": {
        "dense": {"techniques": ["baseline"]},
        "data-selection": {"techniques": ["data_selection"], "params": {"data_selection": {"on_skip": "none"}}},
        "random-pruning": {"techniques": ["random_pruning"], "params": {"random_pruning": {"sparsity": {"low": 0.5, "high": 0.95}}}},
        # Down to a quarter of the width, on a searched schedule (the width ratio is not a searched parameter).
        "filter-pruning": {"techniques": ["filter_pruning"], "params": {"filter_pruning": {"width_ratio": 0.25}}},
        "feather": {"techniques": ["feather"], "params": {"feather": {"sparsity": {"low": 0.5, "high": 0.99}}}},
    },
    "objectives": ["quality", "energy_j"],
}
# Seed 000's data selection at 30%, ER pruning at 50% and filter pruning on its schedule; seed 002's
# Feather at 90%; each at the lr the digits preset trains with.
DIGITS_STRUCTURED_GRID = [
    {"approach": "dense", "params": {"train": {"lr": 0.1}}},
    {"approach": "data-selection", "params": {"data_selection": {"selectivity": 0.3}, "train": {"lr": 0.1}}},
    {"approach": "random-pruning", "params": {"random_pruning": {"sparsity": 0.5}, "train": {"lr": 0.1}}},
    {"approach": "filter-pruning", "params": {"train": {"lr": 0.1}}},
    {"approach": "feather", "params": {"feather": {"sparsity": 0.9}, "train": {"lr": 0.1}}},
]
DIGITS_BUDGET = {
    "description": "digits, MLP 128-128-10, Adam: dense, data selection, GMP, GraNet and L1 neuron pruning, with the "
                   "batch size and the length of training searched for every approach",
    "task": "digits",
    "task_options": {"hidden": [128, 128]},
    "train": {"optimizer": "adam", "lr": 0.001, "batch_size": {"low": 16, "high": 256},
              "steps": {"low": 230, "high": 1150}, "eval_every": 115},
    "approaches": {
        "dense": {"techniques": ["baseline"]},
        "data-selection": {"techniques": ["data_selection"]},
        "gmp": {"techniques": ["gmp"], "params": {"gmp": {"final_sparsity": {"low": 0.5, "high": 0.99}}}},
        "granet": {"techniques": ["granet"], "params": {"granet": {"final_sparsity": {"low": 0.5, "high": 0.99}}}},
        "filter-pruning": {"techniques": ["filter_pruning"], "params": {"filter_pruning": {"width_ratio": 0.25}}},
    },
    "objectives": ["quality", "energy_j"],
}
# The task's own training (batch 64, 30 epochs: 690 steps) for every approach, at seed 000's data selection
# (30%) and filter pruning schedule, and GraNet/GMP at seed 003's 90% sparsity on its MLPs.
DIGITS_BUDGET_GRID = [
    {"approach": name, "params": {**params, "train": {"batch_size": 64, "steps": 690}}}
    for name, params in [("dense", {}), ("data-selection", {"data_selection": {"selectivity": 0.3}}),
                         ("gmp", {"gmp": {"final_sparsity": 0.9}}), ("granet", {"granet": {"final_sparsity": 0.9}}),
                         ("filter-pruning", {})]
]
DIGITS_SPARSE = {
    "description": "digits, MLP 64-64-64-10: dense, data selection, Feather, GraNet and GMP at high sparsity",
    "task": "digits",
    "task_options": {"hidden": [64, 64]},
    # As the sparse-training-digits preset, evaluated every 10 epochs.
    "train": {"optimizer": "sgd", "momentum": 0.9, "lr": 0.1, "schedule": "cosine", "epochs": 60, "eval_every": 230},
    "approaches": {
        "dense": {"techniques": ["baseline"]},
        # Not "last": re-stepping SGD with momentum at lr 0.1 on the last gradients diverges here.
        "data-selection": {"techniques": ["data_selection"], "params": {"data_selection": {"on_skip": "none"}}},
        "feather": {"techniques": ["feather"], "params": {"feather": {"sparsity": {"low": 0.9, "high": 0.99}}}},
        "granet": {"techniques": ["granet"], "params": {"granet": {"final_sparsity": {"low": 0.9, "high": 0.99}}}},
        "gmp": {"techniques": ["gmp"], "params": {"gmp": {"final_sparsity": {"low": 0.9, "high": 0.99}}}},
    },
    "objectives": ["quality", "energy_j"],
}


@dataclass
class Space:
    search: dict[str, Any]  # the search file: the space, and what a user would write for it
    grid_presets: tuple[str, ...] = ()  # presets whose fixed approaches are the papers' points
    grid_points: tuple[dict, ...] = ()  # or the points themselves, as evaluate_first entries


def preset(name: str) -> dict[str, Any]:
    return yaml.safe_load(preset_path(name).read_text())


TEACHER_STUDENT = preset("teacher-student-search")

SPACES = {
    "teacher-student": Space(TEACHER_STUDENT, ("grow-prune-select-teacher-student",)),
    "digits-sparse": Space(DIGITS_SPARSE, ("sparse-training-digits",)),
    "digits-structured": Space(DIGITS_STRUCTURED, grid_points=tuple(DIGITS_STRUCTURED_GRID)),
    "digits-budget": Space(DIGITS_BUDGET, grid_points=tuple(DIGITS_BUDGET_GRID)),
}


# The library default on the teacher-student search, with one idea changed at a time: kept only where they
# measured better (the last five are variations of its settings that did not).
DEFAULT = TEACHER_STUDENT
ABLATIONS = {
    "greentune-no-warm-start": {"evaluate_first": []},
    "greentune-no-moasha": {"scheduler": {"name": "fifo"}},
    "greentune-random-sampler": {"searcher": {"name": "random", "cheapest_of": 3}},
    "greentune-all-published": {"evaluate_first": DEFAULT["evaluate_first"] + [
        {"approach": "random-pruning", "params": {"random_pruning": {"sparsity": 0.5, "distribution": "er"}}},
        "baseline-small", "baseline-big",
    ]},
    "greentune-no-projection": {"scheduler": {"name": "moasha", "project_costs": False}},
    "greentune-not-cost-aware": {"searcher": {"name": "tpe", "cheapest_of": 1}},
    "greentune-linear-selectivity": {"approaches": {**DEFAULT["approaches"], "data-selection": {
        **DEFAULT["approaches"]["data-selection"], "params": {"data_selection": {"selectivity": {"low": 0.1, "high": 1.0}, "on_skip": "last"}}}}},
    "greentune-ds30-only": {"evaluate_first": DEFAULT["evaluate_first"][:1]},
    "greentune-cheapest-5": {"searcher": {"name": "tpe", "cheapest_of": 5}},
    "greentune-rf2": {"scheduler": {"name": "moasha", "reduction_factor": 2}},
    "greentune-rf4": {"scheduler": {"name": "moasha", "reduction_factor": 4}},
    "greentune-startup-5": {"searcher": {"name": "tpe", "cheapest_of": 3, "startup_trials": 5}},
}

# --- the papers' points, as trial configs of the space ---


def grid_points(search: SearchConfig, points: tuple[dict, ...]) -> list[dict]:
    """The trial configs of ``evaluate_first``-style points (training settings under ``params.train``)."""
    configs = []
    for point in points:
        approach = next(approach for approach in search.approaches if approach.name == point["approach"])
        values = fixed_values(approach)
        for technique, given in point.get("params", {}).items():
            values[technique] = {**values.get(technique, {}), **given}
        configs.append(trial_config(search, approach, values))
    return configs


def grid_configs(search: SearchConfig, grid_presets: tuple[str, ...]) -> list[dict]:
    """Each approach of the presets whose parameters are all fixed, mapped to the space's approach like it.

    A preset approach matches the space's approach with the same
    techniques (and model, where both name one); its fixed values become
    the point. Points that match no approach of the space are left out.
    """
    configs = []
    for name in grid_presets:
        for published in parse_search(preset(name)).approaches:
            approach = next(
                (a for a in search.approaches if a.techniques == published.techniques
                 and (a.model is None or published.model is None or a.model == published.model)),
                None,
            )
            if approach is None:
                continue
            config = trial_config(search, approach, fixed_values(published))
            if config not in configs:
                configs.append(config)
    return configs


# --- methods, all behind suggest / report / complete ---


class Grid:
    def __init__(self, configs: list[dict], seed: int):
        self.configs = random.Random(seed).sample(configs, len(configs))

    def suggest(self, trial_id: str) -> dict | None:
        return self.configs.pop(0) if self.configs else None

    def report(self, trial_id: str, result: dict) -> bool:
        return True

    def complete(self, trial_id: str, result: dict) -> None:
        pass


class Greentune:
    """greentune's searcher and scheduler for ``search``, as a Ray Tune controller would call them."""

    def __init__(self, search: SearchConfig):
        self.searcher = make_searcher(search)
        self.scheduler = make_scheduler(search.settings.scheduler, search.objectives, evaluations_per_trial(search))
        self.configs: dict[str, dict] = {}

    def suggest(self, trial_id: str) -> dict | None:
        self.configs[trial_id] = self.searcher.suggest(trial_id)
        return self.configs[trial_id]

    def report(self, trial_id: str, result: dict) -> bool:
        self.searcher.on_trial_result(trial_id, result)
        decision = self.scheduler.on_trial_result(None, SimpleNamespace(trial_id=trial_id, config=self.configs[trial_id]), result)
        return decision == TrialScheduler.CONTINUE

    def complete(self, trial_id: str, result: dict) -> None:
        error = bool(result.get("error"))
        self.searcher.on_trial_complete(trial_id, None if error else result, error=error)
        if error:
            self.scheduler.on_trial_error(None, SimpleNamespace(trial_id=trial_id))


class SyneTuneMOASHA:
    """Syne Tune's MOASHA over a flat version of the space: the approach, then every approach's parameters."""

    def __init__(self, search: SearchConfig, seed: int, grid: list[dict]):
        from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA as SyneMOASHA

        np.random.seed(seed)  # Syne Tune samples configurations and brackets from numpy's global generator
        self.search, self.signs = search, {name: 1 if mode == "min" else -1 for name, mode in search.objectives.items()}
        settings = search.settings.scheduler
        self.scheduler = SyneMOASHA(
            flat_space(search), metrics=[f"minimised/{name}" for name in search.objectives], do_minimize=True,
            max_t=evaluations_per_trial(search) or evaluations_built(grid), grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor, random_seed=seed,
        )
        self.trials: dict[str, Any] = {}

    def suggest(self, trial_id: str) -> dict | None:
        from syne_tune.backend.trial_status import Trial

        flat = self.scheduler.suggest().config
        self.trials[trial_id] = Trial(trial_id=len(self.trials), config=flat, creation_time=datetime.now())
        self.scheduler.on_trial_add(self.trials[trial_id])
        return unflatten(self.search, flat)

    def _minimised(self, result: dict) -> dict:
        return {**result, **{f"minimised/{name}": sign * result[name] for name, sign in self.signs.items()}}

    def report(self, trial_id: str, result: dict) -> bool:
        return self.scheduler.on_trial_result(self.trials[trial_id], self._minimised(result)) == "CONTINUE"

    def complete(self, trial_id: str, result: dict) -> None:
        if result.get("error"):
            self.scheduler.on_trial_error(self.trials[trial_id])
        elif result.get("complete") and np.isfinite(result.get("quality", np.nan)):
            self.scheduler.on_trial_complete(self.trials[trial_id], self._minimised(result))


def evaluations_built(configs: list[dict]) -> int:
    """The most evaluations any of ``configs`` makes, from its training as built (trials counted in epochs)."""
    counts = []
    for config in configs:
        training = build_training(config)
        counts.append(-(-training.total_steps // training.settings.eval_every))
        training.meter.close()
    return max(counts)


def flat_space(search: SearchConfig) -> dict[str, Any]:
    from syne_tune import config_space as sy

    space: dict[str, Any] = {"approach": sy.choice([approach.name for approach in search.approaches])}
    for approach in search.approaches:
        for technique, domains in approach.space.items():
            for parameter, domain in domains.items():
                key = f"{approach.name}/{technique}/{parameter}"
                if isinstance(domain, Choice):  # by position: Syne Tune's choices must share one type
                    space[key] = sy.choice(list(range(len(domain.options))))
                elif isinstance(domain, Int):
                    space[key] = (sy.lograndint if domain.log else sy.randint)(int(domain.low), int(domain.high))
                elif isinstance(domain, Float):
                    space[key] = (sy.loguniform if domain.log else sy.uniform)(domain.low, domain.high)
    return space


def unflatten(search: SearchConfig, flat: dict[str, Any]) -> dict:
    """The trial config of the flat configuration's approach."""
    approach = next(a for a in search.approaches if a.name == flat["approach"])

    def value(technique: str, parameter: str, domain) -> Any:
        if isinstance(domain, Fixed):
            return domain.value
        chosen = flat[f"{approach.name}/{technique}/{parameter}"]
        return domain.options[chosen] if isinstance(domain, Choice) else chosen

    values = {
        technique: {parameter: value(technique, parameter, domain) for parameter, domain in domains.items()}
        for technique, domains in approach.space.items()
    }
    return trial_config(search, approach, values)


# --- running a search, one trial after another ---


class TrialTable:
    """Every distinct trial trained once per seed; its evaluations replayed to each method that asks for it.

    As in a tabular benchmark, two methods that ask for the same trial (the
    grid's published points and a search warm-started from them, say) get
    the same measured numbers, so the methods differ in which trials they
    ask for and when they stop them, not in this machine's run-to-run
    noise (±5% on a quiet machine, ±30% on a loaded one, for the same
    trial). A trial is trained only as far as some method has asked: one
    that a later method takes further continues from where it stopped, in
    the same process, so nothing is trained twice.
    """

    IGNORED = ("approach", "warm_start", "repeat_group")  # labels, not what is trained

    @classmethod
    def key(cls, config: dict) -> str:
        # Empty settings ({}) are what a missing field means; Ray's flattening of a searcher's config drops them.
        return json.dumps({k: v for k, v in config.items() if k not in cls.IGNORED and v != {}}, sort_keys=True, default=str)

    def __init__(self):
        self.trials: dict[str, dict[str, Any]] = {}

    def evaluations(self, config: dict):
        """The trial's results, evaluation by evaluation; the last is final (``complete``) or diverged."""
        key = self.key(config)
        if key not in self.trials:
            try:
                training = build_training(config)
            except ValueError as error:  # a point its technique refuses: an errored trial, as Ray Tune records it
                self.trials[key] = {"results": [{"error": str(error), "complete": False}], "ended": True}
            else:
                self.trials[key] = {"training": training, "stream": training.evaluations(), "results": [], "ended": False}
        trial = self.trials[key]
        for index in itertools.count():
            if index == len(trial["results"]) and not trial["ended"]:
                trial["results"].append(self._next(trial))
            if index == len(trial["results"]):
                return
            yield trial["results"][index]

    @staticmethod
    def _next(trial: dict) -> dict:
        training = trial["training"]
        try:
            metrics = next(trial["stream"])
        except TrainingDiverged as error:
            metrics = {**training.progress(), "quality": np.nan, "complete": False, "diverged": True, "stop_reason": str(error)}
        trial["ended"] = bool(metrics["complete"] or metrics.get("diverged"))
        if trial["ended"]:
            training.meter.close()
        return {**metrics, "training_iteration": len(trial["results"]) + 1}


def train(table: TrialTable, config: dict, report: Callable[[dict], bool]) -> dict:
    """Replay or train one trial, reporting each evaluation; stop when ``report`` says so. Returns the last result."""
    last: dict = {}
    for last in table.evaluations(config):
        if last["complete"] or last.get("diverged") or last.get("error") or not report(last):
            break
    return last


def run(method, table: TrialTable, budget_j: float, max_trials: int) -> pd.DataFrame:
    rows, spent = [], 0.0
    for index in range(max_trials):
        if spent >= budget_j:
            break
        trial_id = f"trial-{index}"
        config = method.suggest(trial_id)
        if config is None or config == "FINISHED":
            break
        result = train(table, config, lambda result: method.report(trial_id, result))
        method.complete(trial_id, result)
        energy = trial_energy(result)
        spent += energy
        rows.append({
            "approach": config["approach"], "quality": result.get("quality", np.nan), "energy_j": result.get("energy_j", np.nan),
            "spent_j": energy, "finished": bool(result.get("complete")), "energy_source": result.get("energy_source"),
        })
    return pd.DataFrame(rows)


def method_search(space: Space, overrides: dict[str, Any], seed: int) -> SearchConfig:
    """The space's search file without its searcher and scheduler settings (what the library then chooses),
    with a method's own."""
    raw = {key: value for key, value in copy.deepcopy(space.search).items() if key not in ("searcher", "scheduler")}
    raw = {**raw, **copy.deepcopy(overrides), "seed": seed}
    raw.pop("description", None)
    return parse_search(raw)


def make_method(name: str, space: Space, seed: int, grid: list[dict]):
    search = method_search(space, {**METHODS, **ABLATIONS}.get(name, {}), seed)
    if name == "grid":
        return Grid([{**config, "seed": seed} for config in grid], seed)
    if name == "syne-tune-moasha":
        return SyneTuneMOASHA(search, seed, grid)
    return Greentune(search)


# --- bookkeeping and the table ---


def summarise(runs: pd.DataFrame, objectives: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (method, seed): energy to reach 95% / 100% of that seed's grid hypervolume; and the curves."""
    grid = runs[(runs["method"] == "grid") & runs["finished"]]
    reference = reference_point(grid, objectives)
    traces, reached = [], []
    for (method, seed), trials in runs.groupby(["method", "seed"], sort=False):
        trace = hypervolume_by_energy(trials.reset_index(drop=True), objectives, reference)
        traces.append(trace.assign(method=method, seed=seed))
    traces = pd.concat(traces, ignore_index=True)
    targets = traces[traces["method"] == "grid"].groupby("seed").agg(target=("hypervolume", "last"), grid_j=("energy_j", "last"))
    for (method, seed), trace in traces.groupby(["method", "seed"], sort=False):
        target, grid_j = targets.loc[seed, "target"], targets.loc[seed, "grid_j"]
        reached.append({
            "method": method, "seed": seed, "grid_j": grid_j, "spent_j": trace["energy_j"].iloc[-1],
            "e95": energy_to_reach(trace, 0.95 * target), "e100": energy_to_reach(trace, target),
            "third": trace.loc[trace["energy_j"] <= grid_j / 3, "hypervolume"].max() / target,  # NaN: nothing finished by then
            "final": trace["hypervolume"].iloc[-1] / target,
        })
    return pd.DataFrame(reached), traces.join(targets, on="seed")


def mean_std(values: pd.Series) -> str:
    found = values.dropna()
    if found.empty:
        return f"never (0/{len(values)})"
    text = f"{found.mean():.4g} ± {found.std(ddof=1) if len(found) > 1 else 0:.2g}"
    return text if len(found) == len(values) else f"{text} ({len(found)}/{len(values)})"


def print_table(space: str, reached: pd.DataFrame, runs: pd.DataFrame, reference: dict) -> None:
    grid = reached[reached["method"] == "grid"]
    seeds = reached["seed"].nunique()
    sources = ", ".join(sorted(runs["energy_source"].dropna().unique()))
    print(f"\n{space}: grid of {int(runs[runs['method'] == 'grid'].groupby('seed').size().iloc[0])} published points, "
          f"{seeds} seeds, grid energy {mean_std(grid['grid_j'])} J ({sources}); reference "
          + ", ".join(f"{key}={value:.4g}" for key, value in reference.items()))
    print(f"{'method':<18}{'J to 95%':>22}{'J to 100%':>22}{'to 100% / grid':>24}{'HV/grid at grid J/3':>21}"
          f"{'HV/grid at end':>18}{'trials':>8}")
    for method, rows in reached.groupby("method", sort=False):
        ratio = rows["e100"] / rows["grid_j"]
        trials = len(runs[runs["method"] == method]) / seeds
        print(f"{method:<18}{mean_std(rows['e95']):>22}{mean_std(rows['e100']):>22}{mean_std(ratio):>24}"
              f"{mean_std(rows['third'].fillna(0.0)):>21}{mean_std(rows['final']):>18}{trials:>8.1f}")


def head_to_head(reached: pd.DataFrame, method: str, other: str, column: str = "e100") -> tuple[int, int, int, float]:
    """Seeds on which ``method`` needs less energy than ``other`` to reach the target (wins), more (losses), or the
    same (ties, never reaching it included), and the two-sided sign test's p-value over the seeds that differ."""
    from scipy.stats import binomtest

    mine = reached[reached["method"] == method].set_index("seed")[column].fillna(np.inf)
    theirs = reached[reached["method"] == other].set_index("seed")[column].fillna(np.inf).reindex(mine.index)
    wins, losses = int((mine < theirs).sum()), int((mine > theirs).sum())
    ties = len(mine) - wins - losses
    return wins, losses, ties, binomtest(wins, wins + losses).pvalue if wins + losses else 1.0


def print_head_to_head(reached: pd.DataFrame, method: str = "greentune") -> None:
    if method not in set(reached["method"]):
        return
    for column, target in (("e100", "100%"), ("e95", "95%")):
        cells = []
        for other in reached["method"].unique():
            if other not in (method, "grid"):
                wins, losses, ties, p = head_to_head(reached, method, other, column)
                cells.append(f"{other} {wins}-{losses}-{ties} (p={p:.2g})")
        print(f"{method} vs, on energy to {target} (wins-losses-ties over seeds, sign test): " + "; ".join(cells))


def plot(traces: dict[str, pd.DataFrame], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(traces), figsize=(6 * len(traces), 4.5), squeeze=False)
    for axis, (space, trace) in zip(axes[0], traces.items()):
        fractions = np.linspace(0, trace["energy_j"].div(trace["grid_j"]).max(), 200)
        colours = iter(plt.get_cmap("tab20").colors)
        for method, rows in trace.groupby("method", sort=False):
            curves = []
            for _, run in rows.groupby("seed"):
                x, y = run["energy_j"] / run["grid_j"], run["hypervolume"] / run["target"]
                index = np.searchsorted(x.to_numpy(), fractions, side="right") - 1
                curves.append(np.where(index >= 0, y.to_numpy()[np.clip(index, 0, None)], 0.0))
            axis.step(fractions, np.mean(curves, axis=0), where="post", label=method, color=next(colours),
                      linewidth=2.5 if method in ("greentune", "grid") else 1.2,
                      linestyle="--" if method.startswith("greentune-") else "-")  # ablations dashed
        axis.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        axis.axvline(1 / 3, color="grey", linewidth=0.8, linestyle="--")
        axis.set(title=space, xlabel="energy spent / the grid's energy", ylabel="hypervolume / the grid's final (mean over seeds)")
    figure.tight_layout()
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))  # one legend, beside the curves
    figure.savefig(path, dpi=120, bbox_inches="tight")


def measure(space_name: str, args: argparse.Namespace) -> pd.DataFrame:
    """Every method's trials on one space, seed by seed, each seed's trials trained once and replayed."""
    space = SPACES[space_name]
    started, rows = time.monotonic(), []
    reference_search = method_search(space, {}, 0)
    grid = grid_configs(reference_search, space.grid_presets) + grid_points(reference_search, space.grid_points)
    for seed in range(args.seeds):  # methods interleaved, so machine load falls on all alike
        table = TrialTable()  # one per seed: the trials' seed is the search's
        grid_run = run(make_method("grid", space, seed, grid), table, np.inf, len(grid))
        budget = args.budget * grid_run["spent_j"].sum()
        rows.append(grid_run.assign(method="grid", seed=seed))
        named = (args.ablations or list(ABLATIONS)) if args.ablations is not None else []
        # Ablations of the searcher or scheduler apply to every space; the rest name teacher-student's approaches.
        ablations = [name for name in named if space.search is DEFAULT or set(ABLATIONS[name]) <= {"searcher", "scheduler"}]
        for name in args.methods + ablations:
            rows.append(run(make_method(name, space, seed, grid), table, budget, args.max_trials).assign(method=name, seed=seed))
            print(f"  {space_name} seed {seed}: {name} done ({time.monotonic() - started:.0f} s)", flush=True)
    return pd.concat(rows, ignore_index=True).assign(space=space_name)


def figures_of(space: str, reached: pd.DataFrame) -> list[tuple[str, str]]:
    """The space's figures for the record: each method's shares of the grid, then greentune's wins and losses."""
    figures = [(f"{space}: the grid's energy", f"{mean_std(reached[reached['method'] == 'grid']['grid_j'])} J")]
    for method, rows in reached.groupby("method", sort=False):
        if method != "grid":
            figures.append((f"{space}: {method}", (
                f"to 100%: {mean_std(rows['e100'] / rows['grid_j'])} of the grid's energy; "
                f"to 95%: {mean_std(rows['e95'] / rows['grid_j'])}; "
                f"hypervolume at a third of it: {mean_std(rows['third'].fillna(0.0))}; at the end: {mean_std(rows['final'])}")))
    for other in reached["method"].unique():
        if other not in ("greentune", "grid") and "greentune" in set(reached["method"]):
            wins, losses, ties, p = head_to_head(reached, "greentune", other)
            figures.append((f"{space}: greentune vs {other}, seeds won-lost-tied on energy to 100%",
                            f"{wins}-{losses}-{ties} (sign test p = {p:.2g})"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--ablations", nargs="*", choices=list(ABLATIONS),
        help="also the library default with one idea changed at a time: these, or all when none is named (those that "
             "change the searcher or scheduler on every space, the rest on teacher-student)",
    )
    parser.add_argument("--budget", type=float, default=1.0, help="each search's energy budget, in grid energies")
    parser.add_argument("--max-trials", type=int, default=200)
    parser.add_argument("--plot", default="search_efficiency.png")
    parser.add_argument("--out", help="write every trial's row here (parquet)")
    parser.add_argument("--from", dest="source", metavar="PARQUET",
                        help="summarise the trials an earlier run wrote with --out, training nothing")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/search_efficiency.json")
    parser.add_argument("--command", help="with --from and --record: the command that measured the trials")
    parser.add_argument("--note", action="append", default=[], help="a sentence for the record (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a Ray Tune trial worker runs
    loaded = pd.read_parquet(args.source) if args.source else None
    all_traces, all_runs, figures = {}, [], []
    for space_name in loaded["space"].unique() if loaded is not None else args.spaces:
        runs = loaded[loaded["space"] == space_name].reset_index(drop=True) if loaded is not None else measure(space_name, args)
        objectives = method_search(SPACES[space_name], {}, 0).objectives
        reached, traces = summarise(runs, objectives)
        print_table(space_name, reached, runs, reference_point(runs[(runs["method"] == "grid") & runs["finished"]], objectives))
        print_head_to_head(reached)
        all_traces[space_name], all_runs, figures = traces, all_runs + [runs], figures + figures_of(space_name, reached)
    plot(all_traces, args.plot)
    print(f"\ncurves: {args.plot}")
    if args.out:
        pd.concat(all_runs, ignore_index=True).to_parquet(args.out, index=False)
    if args.record:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from record import record

        seeds = int(pd.concat(all_runs)["seed"].nunique())
        record("search_efficiency", figures, command=args.command, notes=args.note, what=(
            f"Energy each search spends to reach the hypervolume of a grid over published settings, per space, {seeds} "
            "seeds; each trial measured once per seed and replayed to every method; fractions of the grid's energy, "
            "mean ± std over the seeds that reached it (how many in brackets). greentune is the library default on "
            "the space's search file."))


if __name__ == "__main__":
    main()
