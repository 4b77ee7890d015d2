"""Hypervolume: how much of objective space a set of trials dominates.

The hypervolume is exact (moocore), measured against a reference point that
every counted trial must beat on all objectives. Comparisons of hypervolume
only mean something under the same reference point, so the automatic one is
derived from all the rows given, and per-group or over-time values should
reuse it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import moocore
import numpy as np
import pandas as pd

from .pareto import minimised, rankable, signs

REFERENCE_MARGIN = 0.1


def reference_point(frame: pd.DataFrame, objectives: Mapping[str, str]) -> dict[str, float]:
    """The worst value of each objective, pushed 10% of its range further out.

    The margin lets the extreme trials of the front add volume too. An
    objective whose values are all equal is pushed by 10% of its magnitude
    (or by 1 when it is 0).

    >>> frame = pd.DataFrame({"loss": [1.0, 3.0], "accuracy": [0.5, 0.9]})
    >>> {column: round(value, 6) for column, value in reference_point(frame, {"loss": "min", "accuracy": "max"}).items()}
    {'loss': 3.2, 'accuracy': 0.46}
    """
    points = minimised(frame[rankable(frame, objectives)], objectives)
    if not len(points):
        raise ValueError("no row has finite values for every objective; cannot choose a reference point")
    worst, span = points.max(axis=0), np.ptp(points, axis=0)
    fallback = np.where(worst != 0, np.abs(worst), 1.0)
    reference = (worst + REFERENCE_MARGIN * np.where(span > 0, span, fallback)) * signs(objectives)
    return {column: float(value) for column, value in zip(objectives, reference)}


def hypervolume(
    frame: pd.DataFrame, objectives: Mapping[str, str], reference: Mapping[str, float] | Sequence[float] | None = None
) -> float:
    """Exact hypervolume of the rows against ``reference`` (default: ``reference_point``).

    >>> frame = pd.DataFrame({"loss": [1.0, 2.0], "energy_j": [2.0, 1.0]})
    >>> hypervolume(frame, {"loss": "min", "energy_j": "min"}, reference=[3.0, 3.0])
    3.0
    """
    usable = frame[rankable(frame, objectives)]
    if not len(usable):
        return 0.0
    bound = _minimised_reference(reference_point(usable, objectives) if reference is None else reference, objectives)
    return float(moocore.hypervolume(minimised(usable, objectives), ref=bound))


def hypervolume_trace(
    frame: pd.DataFrame,
    objectives: Mapping[str, str],
    reference: Mapping[str, float] | Sequence[float] | None = None,
    *,
    order: str = "timestamp",
    max_points: int = 400,
) -> pd.DataFrame:
    """Hypervolume of the first k trials, for k along the search (ordered by ``order`` when present).

    Returns columns ``trials`` (k, counting every row, ranked or not) and
    ``hypervolume``; at most ``max_points`` values of k, always including
    the last, against one reference for the whole trace.
    """
    if order in frame.columns:
        frame = frame.sort_values(order, kind="stable")
    reference = reference_point(frame, objectives) if reference is None else reference
    bound = _minimised_reference(reference, objectives)
    usable = rankable(frame, objectives).to_numpy()
    points = minimised(frame, objectives)
    steps = np.unique(np.linspace(1, len(frame), num=min(max_points, len(frame)), dtype=int)) if len(frame) else []
    volumes = [
        float(moocore.hypervolume(points[:k][usable[:k]], ref=bound)) if usable[:k].any() else 0.0 for k in steps
    ]
    return pd.DataFrame({"trials": np.asarray(steps, dtype=int), "hypervolume": volumes})


def hypervolume_by_energy(
    trials: pd.DataFrame,
    objectives: Mapping[str, str],
    reference: Mapping[str, float] | Sequence[float],
    *,
    spent: str = "spent_j",
    counted: str = "finished",
) -> pd.DataFrame:
    """After each trial, in the order given: the energy the search had spent and the hypervolume it had reached.

    ``spent`` is each trial's own energy, stopped trials included, so the
    cumulative sum is what the search cost up to that trial; only rows whose
    ``counted`` column is true (trials trained to the end) add to the
    hypervolume, since a stopped trial's early values are not a result.
    Searches compare fairly on this curve whatever their trials cost.

    >>> trials = pd.DataFrame({"loss": [2.0, 9.0, 1.0], "energy_j": [2.0, 1.0, 2.5],
    ...                        "spent_j": [2.0, 0.5, 2.5], "finished": [True, False, True]})
    >>> hypervolume_by_energy(trials, {"loss": "min", "energy_j": "min"}, [3.0, 3.0]).values.tolist()
    [[2.0, 1.0], [2.5, 1.0], [5.0, 1.5]]
    """
    bound = _minimised_reference(reference, objectives)
    points = minimised(trials, objectives)
    keep = (rankable(trials, objectives) & trials[counted].astype(bool)).to_numpy()
    volumes = [float(moocore.hypervolume(points[: k + 1][keep[: k + 1]], ref=bound)) if keep[: k + 1].any() else 0.0
               for k in range(len(trials))]
    return pd.DataFrame({"energy_j": trials[spent].to_numpy(dtype=float).cumsum(), "hypervolume": volumes})


def energy_to_reach(trace: pd.DataFrame, target: float) -> float:
    """The energy at which a ``hypervolume_by_energy`` trace first reaches ``target``; NaN if it never does.

    >>> trace = pd.DataFrame({"energy_j": [2.0, 2.5, 5.0], "hypervolume": [1.0, 1.0, 1.5]})
    >>> energy_to_reach(trace, 1.2), energy_to_reach(trace, 2.0)
    (5.0, nan)
    """
    reached = trace.loc[trace["hypervolume"] >= target * (1 - 1e-9), "energy_j"]
    return float(reached.iloc[0]) if len(reached) else float("nan")


def _minimised_reference(reference: Mapping[str, float] | Sequence[float], objectives: Mapping[str, str]) -> np.ndarray:
    if isinstance(reference, Mapping):
        missing = [column for column in objectives if column not in reference]
        if missing:
            raise ValueError(f"the reference point has no value for {missing[0]!r}; give one per objective")
        reference = [reference[column] for column in objectives]
    values = np.asarray(reference, dtype=float)
    if values.shape != (len(objectives),):
        raise ValueError(f"the reference point needs {len(objectives)} values (one per objective), got {list(reference)}")
    return values * signs(objectives)
