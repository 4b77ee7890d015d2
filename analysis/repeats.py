"""Repeated runs of one configuration: averaged, and a front that respects their spread.

A configuration is everything in a trial's ``config/...`` columns except
its seed, so trials that differ only by seed are repeats. Energy meters
and seeds both scatter repeats; a front drawn through single runs can crown
a configuration that was merely lucky once.

**The seed-noise front** (``noisy_front``). Each configuration's mean has
an uncertainty: its seed-to-seed standard deviation divided by the square
root of its number of runs. A configuration that ran once borrows the
spread of the others, as their pooled relative standard deviation (std /
|mean|, averaged over configurations with at least two runs, weighted by
runs - 1), since energy and time noise grows with their magnitude. We then
draw ``draws`` plausible sets of means (independent normals per objective),
take each set's non-dominated configurations with moocore (all draws in one
``is_nondominated_within_sets`` call), and report each configuration's
``front_probability``: how often it was non-dominated. The robust front is
the configurations with ``front_probability >= level``. With no repeats at
all there is no spread to use, and it equals the plain front of the means.
"""

from __future__ import annotations

from typing import Mapping

import moocore
import numpy as np
import pandas as pd

from .pareto import minimised, pareto_mask, rankable

NOT_CONFIGURATION = ("config/seed", "config/repeat_group")
UNSUMMED = ("seed", "timestamp", *NOT_CONFIGURATION)


def configuration_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that identify a configuration: ``config/...`` minus the seed and the repeat group.

    The searcher's repeat group ties seed repeats together, but a configuration
    suggested twice (a baseline, say) is the same configuration in two groups.
    """
    config = [column for column in frame.columns if column.startswith("config/") and column not in NOT_CONFIGURATION]
    return config or [column for column in ("approach", "techniques", "model") if column in frame.columns] or ["trial_id"]


def aggregate_repeats(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: mean and ``<column>_std`` of every number over its finished runs.

    ``runs`` counts finished runs, ``failed`` the others; ``seeds`` and
    ``trial_ids`` list them all. Text columns keep their distinct values.

    >>> frame = pd.DataFrame({"config/lr": [0.1, 0.1, 0.2], "seed": [0, 1, 0],
    ...                       "status": ["finished"] * 3, "energy_j": [10.0, 12.0, 5.0]})
    >>> aggregate_repeats(frame)[["config/lr", "runs", "energy_j", "energy_j_std"]].to_dict("list")
    {'config/lr': [0.1, 0.2], 'runs': [2, 1], 'energy_j': [11.0, 5.0], 'energy_j_std': [1.4142135623730951, nan]}
    """
    keys = configuration_columns(frame)
    finished = frame["status"].eq("finished") if "status" in frame.columns else pd.Series(True, index=frame.index)
    numbers = [column for column in frame.select_dtypes("number").columns if column not in keys and column not in UNSUMMED]
    texts = [column for column in frame.columns if column not in keys and column not in numbers and column not in UNSUMMED]
    texts = [column for column in texts if column not in ("trial_id", "status")]
    grouped = frame.assign(_finished=finished).groupby(keys, dropna=False, sort=False)
    values = frame[numbers].where(finished, np.nan).assign(**{key: frame[key] for key in keys})
    value_groups = values.groupby(keys, dropna=False, sort=False)
    means, spreads = value_groups.mean(), value_groups.std()
    table = pd.DataFrame(index=means.index)
    for column in texts:
        table[column] = grouped[column].agg(_distinct)
    table["status"] = grouped["_finished"].agg(lambda done: "finished" if done.any() else "failed")
    table["runs"] = grouped["_finished"].sum().astype(int)
    table["failed"] = grouped["_finished"].size() - table["runs"]
    if "seed" in frame.columns:
        table["seeds"] = grouped["seed"].agg(_distinct)
    if "trial_id" in frame.columns:
        table["trial_ids"] = grouped["trial_id"].agg(_distinct)
    if "timestamp" in frame.columns:
        table["timestamp"] = grouped["timestamp"].max()
    for column in numbers:
        table[column], table[f"{column}_std"] = means[column], spreads[column]
    table = table.reset_index()
    return table[[column for column in table.columns if column not in keys] + keys]


def has_repeats(frame: pd.DataFrame) -> bool:
    """Whether some configuration has more than one finished run.

    Without one the seed-noise front has no spread to draw from: it is the
    plain front again, each member with ``front_probability`` 1, which reads
    as certainty that nothing measured.

    >>> has_repeats(pd.DataFrame({"config/lr": [0.1, 0.2], "status": ["finished"] * 2, "energy_j": [1.0, 2.0]}))
    False
    """
    return bool(len(frame)) and bool((aggregate_repeats(frame)["runs"] > 1).any())


def noisy_front(
    frame: pd.DataFrame, objectives: Mapping[str, str], *, level: float = 0.5, draws: int = 500, seed: int = 0
) -> pd.DataFrame:
    """Configurations with their ``front_probability`` under seed noise and ``robust`` membership.

    ``frame`` holds trials (one row per run); see the module docstring for the method.
    """
    if not 0 < level <= 1:
        raise ValueError(f"level must be in (0, 1], got {level}")
    configurations = aggregate_repeats(frame)
    usable = rankable(configurations, objectives)
    ranked = configurations[usable]
    probability = pd.Series(0.0, index=configurations.index)
    if len(ranked):
        means = minimised(ranked, objectives)
        spread = _spread(ranked, objectives)
        noise = np.random.default_rng(seed).standard_normal((draws, *means.shape))
        samples = (means + noise * spread).reshape(-1, means.shape[1])
        sets = np.repeat(np.arange(draws), len(ranked))
        on_front = moocore.is_nondominated_within_sets(samples, sets=sets, keep_weakly=True).reshape(draws, -1)
        probability[usable] = on_front.mean(axis=0)
    configurations["on_mean_front"] = pareto_mask(configurations, objectives)
    configurations["front_probability"] = probability
    configurations["robust"] = probability >= level
    return configurations


def approach_means(
    results: pd.DataFrame, columns: list[str], reference: str | None = None, order: list[str] | None = None
) -> pd.DataFrame:
    """Mean and standard deviation of ``columns`` per approach over its finished trials.

    The paper-style table of a grid preset, where each approach is one
    configuration run on several seeds:

    >>> results = pd.DataFrame({
    ...     "approach": ["big", "big", "half", "half"], "status": ["finished"] * 4,
    ...     "quality": [0.10, 0.12, 0.20, 0.22], "energy_j": [10.0, 12.0, 5.0, 6.0]})
    >>> print(format_approach_means(results, ["quality", "energy_j"], reference="big"))
    approach  runs        quality     energy_j energy gain vs big
         big     2 0.11 ± 0.01414   11 ± 1.414                 0%
        half     2 0.21 ± 0.01414 5.5 ± 0.7071                50%

    Rows follow ``order`` where given (approaches without a finished trial
    are dropped), else the order approaches first appear in ``results``.

    ``energy_gain`` is 1 - mean energy / the reference approach's mean energy.
    """
    finished = results[results["status"] == "finished"]
    present = [column for column in columns if column in finished.columns]
    grouped = finished.groupby("approach", sort=False)[present]
    table = pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1)}, axis=1).swaplevel(axis=1)
    table.insert(0, ("runs", ""), finished.groupby("approach", sort=False).size())
    if reference is not None and "energy_j" in finished.columns and reference in table.index:
        energy = finished.groupby("approach", sort=False)["energy_j"].mean()
        table[("energy_gain", "")] = 1.0 - energy / energy[reference]
    if order is not None:
        table = table.loc[[name for name in order if name in table.index]]
    return table


def format_approach_means(
    results: pd.DataFrame, columns: list[str], reference: str | None = None, order: list[str] | None = None
) -> str:
    """``approach_means`` as text: ``mean ± std`` cells and the gain in percent."""
    table = approach_means(results, columns, reference, order)
    if table.empty:
        return "no trial finished; see the error column of results.csv"
    rows = pd.DataFrame(index=table.index)
    rows["runs"] = table[("runs", "")]
    for column in dict.fromkeys(name for name, _ in table.columns if name not in ("runs", "energy_gain")):
        rows[column] = [f"{mean:.4g} ± {std:.4g}" for mean, std in zip(table[(column, "mean")], table[(column, "std")].fillna(0.0))]
    if ("energy_gain", "") in table.columns:
        rows[f"energy gain vs {reference}"] = [f"{gain:.0%}" for gain in table[("energy_gain", "")]]
    return rows.reset_index().to_string(index=False)


def _spread(configurations: pd.DataFrame, objectives: Mapping[str, str]) -> np.ndarray:
    """Standard error of each configuration's mean, per objective (see module docstring)."""
    runs = configurations["runs"].to_numpy(dtype=float)
    columns = []
    for column in objectives:
        mean = configurations[column].to_numpy(dtype=float)
        std = configurations[f"{column}_std"].to_numpy(dtype=float) if f"{column}_std" in configurations else np.full(len(mean), np.nan)
        repeated = (runs >= 2) & np.isfinite(std) & (mean != 0)
        weights = runs[repeated] - 1
        relative = float(np.sum(weights * std[repeated] / np.abs(mean[repeated])) / weights.sum()) if weights.sum() else 0.0
        std = np.where(np.isfinite(std) & (runs >= 2), std, relative * np.abs(mean))
        columns.append(std / np.sqrt(np.maximum(runs, 1)))
    return np.stack(columns, axis=1)


def _distinct(values: pd.Series) -> str | float:
    distinct = list(dict.fromkeys(str(value) for value in values.dropna()))
    return ", ".join(distinct) if distinct else np.nan
