"""The analysis's figures, described once and drawn by any backend (``render``).

Each function turns results into a ``Figure``: named traces of x/y points
with a colour per approach, consistent across figures. Nothing here imports
a plotting library, so describing a figure is cheap and testable, and the
PNG and the interactive HTML versions cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from .labels import NAMES, Labels
from .pareto import fronts_by, pareto_front
from .tables import searched_parameters

# Tableau's ten categorical colours, then repeats.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
FRONT_COLOR, MUTED_COLOR = "#222222", "#c8c8c8"
STRUCTURE_WORDS = ("kept_fraction", "density", "sparsity", "width", "gate_open", "gate")
GATE_RATE = re.compile(r"gate_rate_(\d+)")  # one column per gate: drawn together as a heatmap, not one plot each


@dataclass
class Trace:
    name: str
    x: np.ndarray
    y: np.ndarray
    kind: str = "markers"  # markers | lines | heatmap (z: one row per y, one column per x)
    color: str = FRONT_COLOR
    symbol: str = "circle"  # circle | ring | star | x
    size: float = 7.0
    group: str | None = None  # traces sharing a group share one legend entry
    hover: list[str] | None = None
    width: float = 1.2  # line width
    z: np.ndarray | None = None


@dataclass
class Figure:
    name: str  # file stem and HTML id
    title: str
    xlabel: str
    ylabel: str
    traces: list[Trace] = field(default_factory=list)
    logy: bool = False

    def add(self, trace: Trace) -> None:
        """Keep ``trace`` only where it draws a mark, so that no legend entry stands for nothing.

        A trace with no point whose x and y are both numbers (an approach
        without a measured energy, trials that failed before reporting) is
        left out; a line with no two neighbouring points draws nothing (a
        trial stopped after its first evaluation), so its points are drawn
        as markers instead.
        """
        if trace.kind == "heatmap":
            self.traces.append(trace)
            return
        drawn = np.isfinite(trace.x) & np.isfinite(trace.y)
        if not drawn.any():
            return
        if trace.kind == "lines" and not (drawn[1:] & drawn[:-1]).any():
            trace = dataclasses.replace(trace, kind="markers")
        self.traces.append(trace)


def colours(names) -> dict[str, str]:
    """A colour per name, in order of first appearance."""
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(dict.fromkeys(map(str, names)))}


def front_figure(
    considered: pd.DataFrame,
    objectives: Mapping[str, str],
    *,
    excluded: pd.DataFrame | None = None,
    knee: pd.Series | None = None,
    by: str = "approach",
    palette: Mapping[str, str] | None = None,
    labels: Labels = Labels(),
) -> Figure:
    """Every considered trial by approach, each approach's own front as a thin line in its
    colour, the overall front as a black staircase with ringed points, the knee starred.

    The first objective is on the y axis and the second (energy, by default)
    on the x axis; with one objective, energy is the x axis.
    """
    y_column = next(iter(objectives))
    x_column = list(objectives)[1] if len(objectives) > 1 else "energy_j"
    if by not in considered.columns:
        considered = considered.assign(**{by: "trials"})
    palette = palette or colours(considered[by])
    figure = Figure("front", f"{labels.name(y_column)} vs {labels.name(x_column)}", labels.axis(x_column), labels.axis(y_column))
    if excluded is not None and len(excluded):
        figure.add(Trace("excluded (unfinished or constrained)", _values(excluded, x_column), _values(excluded, y_column),
                         color=MUTED_COLOR, symbol="x", hover=_hover(excluded)))
    for name, group in considered.groupby(by, sort=False):
        figure.add(Trace(str(name), _values(group, x_column), _values(group, y_column), color=palette[str(name)], hover=_hover(group)))
    if len(objectives) == 2:
        for name, own in fronts_by(considered, objectives, by).groupby(by, sort=False):
            if len(own) < 2:
                continue  # one point is no line; its marker is drawn already
            x, y = staircase(_values(own, x_column), _values(own, y_column), objectives[x_column])
            figure.add(Trace(str(name), x, y, kind="lines", color=palette[str(name)], group=str(name), width=0.8))
    front = pareto_front(considered, objectives)
    if len(front):
        figure.add(Trace("Pareto front", _values(front, x_column), _values(front, y_column), symbol="ring", size=12, hover=_hover(front)))
        if len(objectives) == 2 and len(front) > 1:
            x, y = staircase(_values(front, x_column), _values(front, y_column), objectives[x_column])
            figure.add(Trace("Pareto front", x, y, kind="lines", group="Pareto front", width=1.6))
    if knee is not None:
        figure.add(Trace("knee", np.array([knee[x_column]], dtype=float), np.array([knee[y_column]], dtype=float),
                         symbol="star", size=16, color="#d62728", hover=_hover(knee.to_frame().T)))
    return figure


def staircase(x: np.ndarray, y: np.ndarray, x_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The boundary of the region a 2-D front dominates, as a polyline through its points.

    >>> staircase(np.array([1.0, 3.0, 2.0]), np.array([3.0, 1.0, 2.0]), "min")
    (array([1., 2., 2., 3., 3.]), array([3., 3., 2., 2., 1.]))
    >>> staircase(np.array([1.0, 2.0]), np.array([1.0, 2.0]), "max")
    (array([1., 1., 2.]), array([1., 2., 2.]))
    """
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    # Between neighbours, the one with the better x holds the step: the left
    # one when x is minimised (corner below/above the right point), else the right one.
    xs, ys = [x[0]], [y[0]]
    for index in range(1, len(x)):
        corner = (x[index], y[index - 1]) if x_mode == "min" else (x[index - 1], y[index])
        xs += [corner[0], x[index]]
        ys += [corner[1], y[index]]
    return np.array(xs), np.array(ys)


def history_figures(
    history: pd.DataFrame, *, by: str = "approach", palette: Mapping[str, str] | None = None, labels: Labels = Labels()
) -> list[Figure]:
    """Quality, training loss, energy and every structure ratio (kept fraction, density, width, gates) per step."""
    if history.empty or "step" not in history.columns:
        return []
    palette = palette or colours(history[by] if by in history.columns else [])
    wanted = [("training-quality", "quality"), ("training-loss", "loss"), ("training-energy", "energy_j")]
    wanted += [(f"structure-{column.replace('/', '-')}", column) for column in history.columns
               if any(word in column for word in STRUCTURE_WORDS) and not column.startswith("config/")
               and not GATE_RATE.fullmatch(column)]
    figures = []
    for name, column in wanted:
        if column not in history.columns or pd.to_numeric(history[column], errors="coerce").notna().sum() == 0:
            continue
        figure = Figure(name, f"{labels.name(column)} over training", "step", labels.axis(column), logy=column in ("loss", "quality") and _positive(history[column]))
        for trial_id, trial in history.groupby("trial_id", sort=False):
            label = str(trial[by].iloc[0]) if by in trial.columns else str(trial_id)
            figure.add(Trace(label, _values(trial, "step"), _values(trial, column), kind="lines",
                              color=palette.get(label, FRONT_COLOR), group=label, hover=[str(trial_id)] * len(trial)))
        figures.append(figure)
    return figures


def gate_figures(history: pd.DataFrame, *, by: str = "approach", limit: int = 8) -> list[Figure]:
    """Seed 004's Figure 6 for each gated trial (the first ``limit``): every gate's opening ratio at every evaluation.

    Rows are gates in network order, columns evaluations; a gate near 0 or 1
    throughout has polarised. Evaluating once an epoch gives the paper's
    per-epoch picture.
    """
    columns = sorted((column for column in history.columns if GATE_RATE.fullmatch(column)),
                     key=lambda column: int(GATE_RATE.fullmatch(column)[1]))
    if not columns or "step" not in history.columns:
        return []
    figures = []
    for trial_id, trial in history.groupby("trial_id", sort=False):
        rates = trial[columns].apply(pd.to_numeric, errors="coerce")
        rates = rates.loc[:, rates.notna().any()]
        if rates.empty:
            continue
        if len(figures) == limit:
            break
        label = str(trial[by].iloc[0]) if by in trial.columns else str(trial_id)
        figure = Figure(f"gates-{trial_id}", f"gate opening ratio, {label} ({trial_id})", "step", "gate")
        figure.add(Trace(label, _values(trial, "step"), np.arange(rates.shape[1]), kind="heatmap",
                         z=rates.to_numpy(dtype=float).T))
        figures.append(figure)
    return figures


def hypervolume_figure(trace: pd.DataFrame) -> Figure:
    figure = Figure("hypervolume", "hypervolume over the search", NAMES["trials"], NAMES["hypervolume"])
    figure.add(Trace("hypervolume", trace["trials"].to_numpy(float), trace["hypervolume"].to_numpy(float), kind="lines"))
    return figure


def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _positive(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(numbers)) and bool((numbers > 0).all())


def _hover(frame: pd.DataFrame) -> list[str]:
    parameters = searched_parameters(frame)
    labels = []
    for _, row in frame.iterrows():
        details = [f"{column.split('/')[-1]}={row[column]:.3g}" if isinstance(row[column], float) else f"{column.split('/')[-1]}={row[column]}"
                   for column in parameters if pd.notna(row[column])]
        labels.append(" ".join([str(row.get("trial_id", "")), str(row.get("approach", "")), *details]).strip())
    return labels
