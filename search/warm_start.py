"""Trials of earlier searches as already evaluated: a search warm-started from their directories retrains none.

``warm_start_from: [DIR, ...]`` adds the finished and stopped trials of
earlier searches to the Optuna study, finished ones with their objectives and
stopped ones as pruned, so the sampler starts from what they found and the
duplicate check (``GreenOptunaSearch.suggest``) never trains them again.
Joules are only comparable on the same task, objectives, machine and code,
so an earlier search counts only where all four match; anything else is one
line naming what differs. Their energy was spent earlier: it is reported as
such and is not part of this search's budget.
"""

from __future__ import annotations

import math
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from greentune.techniques import Choice, Fixed, Float, Int

if TYPE_CHECKING:
    import pandas as pd

    from .config import SearchConfig

EARLIER = "warm_start_from"  # the Optuna user attribute of a trial added from an earlier search
SPENT = "energy_j_spent_earlier"  # and what it cost then
MATCHED = ("task", "task_options", "objectives", "machine", "greentune_version")


def machine() -> dict[str, str]:
    """What the energy figures depend on, as the search record keeps it."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"system": platform.system(), "cpu": cpu, "cpus": str(len(_cpus()))}


def _cpus() -> list[int]:
    import os

    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def greentune_version() -> str:
    try:
        return version("greentune")
    except PackageNotFoundError:
        return "unknown"


def mismatch(record: dict[str, Any], search: SearchConfig) -> str | None:
    """What differs between an earlier search's record and this search, or None where its trials count here."""
    here = {
        "task": search.settings.task, "task_options": dict(search.settings.task_options),
        "objectives": dict(search.objectives), "machine": machine(), "greentune_version": greentune_version(),
    }
    for key in MATCHED:
        if record.get(key) != here[key]:
            return f"its {key} is {record.get(key)!r}, here {here[key]!r}"
    return None


def distribution(domain: Choice | Int | Float) -> BaseDistribution:
    """The Optuna distribution ``DefineByRun`` suggests a declared domain from."""
    if isinstance(domain, Choice):
        return CategoricalDistribution(list(domain.options))
    if isinstance(domain, Int):
        return IntDistribution(domain.low, domain.high, log=domain.log)
    return FloatDistribution(domain.low, domain.high, log=domain.log)


def earlier_trials(trials: pd.DataFrame, search: SearchConfig, source: str) -> list[optuna.trial.FrozenTrial]:
    """The finished and stopped rows of an earlier results table that lie in this search's space, as Optuna trials."""
    from .costs import COST_ATTR, projected_energy

    approaches = {approach.name: approach for approach in search.approaches}
    added = []
    for row in trials.to_dict("records"):
        approach = approaches.get(row.get("approach"))
        if approach is None or row.get("status") not in ("finished", "stopped"):
            continue
        params, distributions = {"approach": approach.name}, {"approach": CategoricalDistribution(list(approaches))}
        for technique, domains in approach.space.items():
            for parameter, domain in domains.items():
                if isinstance(domain, Fixed):
                    continue
                value = _plain(row.get(f"config/{technique}/{parameter}"))
                if not domain.contains(value):
                    break
                params[f"{technique}/{parameter}"], distributions[f"{technique}/{parameter}"] = value, distribution(domain)
            else:
                continue
            break
        else:
            values = [float(row.get(name, math.nan)) for name in search.objectives]
            finished = row["status"] == "finished" and all(map(math.isfinite, values))
            added.append(optuna.trial.create_trial(
                params=params, distributions=distributions, values=values if finished else None,
                state=optuna.trial.TrialState.COMPLETE if finished else optuna.trial.TrialState.PRUNED,
                user_attrs={EARLIER: source, COST_ATTR: projected_energy(row), SPENT: float(row.get("energy_j", 0.0))},
            ))
    return added


def describe(trials: list[optuna.trial.FrozenTrial]) -> str:
    """The line a warm-started search opens with: what it starts from, and that those joules are not its own."""
    sources = {trial.user_attrs[EARLIER] for trial in trials}
    spent = sum(trial.user_attrs[SPENT] for trial in trials)
    return (f"warm start: {len(trials)} trials of {len(sources)} earlier search(es), {spent:.4g} J spent then, "
            "not in this search's energy or budget")


def _plain(value: Any) -> Any:
    """A table's cell as the Python value a domain holds (NumPy scalars to int, float or bool)."""
    return value.item() if hasattr(value, "item") else value
