"""Paper-style tables: each approach against a baseline, as in seed 000's Tables I-IV.

A row shows the final quality, its loss relative to the baseline, training
time and energy with the energy gain, and the gain the FLOP count predicts
next to it, so simulated savings (FLOPs) and realised ones (joules, seconds)
can be compared. Repeats of a configuration are averaged (``_std`` columns
hold their spread). Relative figures follow the paper: quality loss is
``|q - q_base| / |q_base|`` signed so that positive means worse than the
baseline, and a gain is ``(base - x) / base``, positive when ``x`` costs less.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .indicators import hypervolume
from .pareto import fronts_by, knee_point, pareto_mask, rankable
from .repeats import aggregate_repeats

ROW_CHOICES = ("knee", "front", "all")
COSTS = ("time_s", "energy_j", "co2_g", "flops")


def searched_parameters(frame: pd.DataFrame) -> list[str]:
    """``config/<technique>/<parameter>`` columns of the frame's techniques that hold a value somewhere, and
    ``config/train/<setting>`` columns whose value differs between rows (training settings a search drew).

    >>> frame = pd.DataFrame({"techniques": ["data_selection", "baseline"], "config/data_selection/selectivity": [0.5, None],
    ...                       "config/score/weight": [0.1, 0.1], "config/train/lr": [0.1, 0.01], "config/train/steps": [9, 9]})
    >>> searched_parameters(frame)
    ['config/data_selection/selectivity', 'config/train/lr']
    """
    names = set()
    if "techniques" in frame.columns:
        for value in frame["techniques"].dropna().astype(str):
            names.update(value.split("+"))
    return [
        column for column in frame.columns
        if column.startswith("config/") and column.count("/") == 2 and frame[column].notna().any()
        and (column.split("/")[1] in names or (column.split("/")[1] == "train" and frame[column].astype(str).nunique() > 1))
    ]


def front_columns(front: pd.DataFrame, objectives: Mapping[str, str]) -> list[str]:
    """What to show of front rows: the approach, its parameters, the objectives and the costs."""
    columns = ["approach", *searched_parameters(front), *objectives, "energy_source", "co2_g", "carbon_source", "time_s", "flops", "flops_sparse", "params"]
    return list(dict.fromkeys(column for column in columns if column in front.columns))


def choose_baseline(names: list[str], plain: list[str]) -> str | None:
    """``baseline-big`` if among ``names``, else the one approach named like it, else the only plain-baseline one.

    The search evaluates this approach first and the analysis compares against it, by the same rule.

    >>> choose_baseline(["dense", "sparse"], plain=["dense"])
    'dense'
    """
    if "baseline-big" in names:
        return "baseline-big"
    named_like = [name for name in names if "baseline" in name and "big" in name]
    for candidates in (named_like, list(plain)):
        if len(candidates) == 1:
            return candidates[0]
    return None


def find_baseline(frame: pd.DataFrame, by: str = "approach") -> str:
    """The baseline of a results table, by ``choose_baseline``'s rule."""
    names = list(dict.fromkeys(frame[by].dropna().astype(str))) if by in frame.columns else []
    plain = frame.loc[frame["techniques"].eq("baseline"), by].dropna().astype(str).unique() if "techniques" in frame.columns else []
    found = choose_baseline(names, list(plain))
    if found is not None:
        return found
    raise ValueError(f"no baseline approach found; name one (--baseline NAME); approaches: {', '.join(names) or 'none'}")


def comparison_table(
    frame: pd.DataFrame,
    objectives: Mapping[str, str],
    *,
    baseline: str | None = None,
    quality: str = "quality",
    rows: str = "knee",
    by: str = "approach",
) -> pd.DataFrame:
    """Configurations against the baseline's, one row each, the baseline last.

    ``rows`` picks the configurations: ``knee`` (default) is each approach's
    best trade-off (the knee of its own front over ``objectives``), ``front``
    the configurations on the overall front, ``all`` every configuration.
    The baseline is compared at its own knee.
    """
    if rows not in ROW_CHOICES:
        raise ValueError(f"rows must be one of {', '.join(ROW_CHOICES)}, got {rows!r}")
    if quality not in objectives:
        raise ValueError(f"the quality column {quality!r} needs a mode: include it in the objectives, e.g. {quality}:max")
    baseline = baseline or find_baseline(frame, by)
    configurations = aggregate_repeats(frame)
    configurations = configurations[rankable(configurations, objectives)]
    if baseline not in set(configurations[by].astype(str)):
        names = ", ".join(dict.fromkeys(frame[by].dropna().astype(str)))
        raise ValueError(f"baseline {baseline!r} has no finished run; approaches: {names}")
    knees = _knees(configurations, objectives, by)
    reference = knees[knees[by].astype(str) == baseline].iloc[0]
    if rows == "knee":
        chosen = knees
    elif rows == "front":
        chosen = configurations[pareto_mask(configurations, objectives) | (configurations.index == reference.name)]
    else:
        chosen = configurations
    is_baseline = chosen.index == reference.name
    chosen = pd.concat([chosen[~is_baseline], chosen[is_baseline]])
    return _compare(chosen, reference, objectives[quality], quality, by)


def approach_summary(
    trials: pd.DataFrame, considered: pd.DataFrame, objectives: Mapping[str, str], reference: Mapping[str, float], by: str = "approach"
) -> pd.DataFrame:
    """Per approach: its trials by status, its share of the overall front, its own front and hypervolume.

    ``trials`` holds every trial and ``considered`` those the fronts are taken
    over. Finished and stopped trials are counted apart: under an early-stopping
    scheduler most trials of an approach may have been stopped, and a count of
    the finished ones alone hides how much of the search the approach took.
    """
    status = trials["status"] if "status" in trials.columns else pd.Series("finished", index=trials.index)
    overall = pareto_mask(considered, objectives)
    own = fronts_by(considered, objectives, by).groupby(by, sort=False).size()
    rows = []
    for name, group in trials.groupby(by, sort=False, dropna=False):
        counts = status[group.index].value_counts()
        chosen = considered[considered[by].eq(name)]
        rows.append({
            by: name,
            "trials": len(group),
            "finished": int(counts.get("finished", 0)),
            "stopped": int(counts.get("stopped", 0)),
            "failed": len(group) - int(counts.get("finished", 0)) - int(counts.get("stopped", 0)),
            "on_front": int(overall[chosen.index].sum()),
            "own_front": int(own.get(name, 0)),
            "hypervolume": hypervolume(chosen, objectives, reference),
        })
    return pd.DataFrame(rows)


def _knees(configurations: pd.DataFrame, objectives: Mapping[str, str], by: str) -> pd.DataFrame:
    knees = [knee_point(group, objectives) for _, group in configurations.groupby(by, sort=False)]
    return pd.DataFrame(knees)


def _compare(chosen: pd.DataFrame, reference: pd.Series, mode: str, quality: str, by: str) -> pd.DataFrame:
    parameters = searched_parameters(chosen)
    table = pd.DataFrame({
        by: chosen[by].astype(str),
        "configuration": [_describe(row, parameters) for _, row in chosen.iterrows()],
        "runs": chosen["runs"].astype(int),
        quality: chosen[quality],
        f"{quality}_std": chosen.get(f"{quality}_std"),
    })
    worse = (chosen[quality] - reference[quality]) * (1 if mode == "min" else -1)
    table["quality_loss_pct"] = 100 * worse / abs(reference[quality])
    for cost in COSTS:
        if cost in chosen.columns:
            table[cost] = chosen[cost]
            if cost != "flops":
                table[f"{cost}_std"] = chosen.get(f"{cost}_std")
            table[f"{cost.removesuffix('_s').removesuffix('_j')}_gain_pct"] = 100 * (reference[cost] - chosen[cost]) / reference[cost]
    for source in ("energy_source", "carbon_source"):
        if source in chosen.columns:
            table[source] = chosen[source]
    table["baseline"] = chosen.index == reference.name
    return table.reset_index(drop=True)


def _describe(row: pd.Series, parameters: list[str]) -> str:
    values = [f"{column.split('/')[-1]}={_short(row[column])}" for column in parameters if pd.notna(row[column])]
    return ", ".join(values)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, (float, np.floating)) else str(value)
