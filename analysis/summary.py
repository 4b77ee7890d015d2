"""One analysis of a results table: every figure of merit the CLI and the report show.

``analyse`` is a pure function of the trials; ``format_text`` and
``to_json`` present it. Only finished trials that meet the constraints are
considered for fronts, tables and hypervolume; the others are counted and
drawn greyed out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from .constraints import Constraint, feasible
from .indicators import hypervolume, hypervolume_trace, reference_point
from .pareto import knee_point, pareto_front, pareto_ranks
from .repeats import has_repeats, noisy_front
from .tables import approach_summary, comparison_table, find_baseline, front_columns


@dataclass
class Analysis:
    source: str
    objectives: dict[str, str]
    constraints: list[str]  # as applied, e.g. "energy_j <= 100"
    trials: pd.DataFrame  # every trial, with its non-dominated ``rank`` among the considered ones
    considered: pd.DataFrame
    front: pd.DataFrame
    knee: pd.Series | None
    reference: dict[str, float] | None
    hypervolume: float
    trace: pd.DataFrame
    approaches: pd.DataFrame
    noisy: pd.DataFrame
    table: pd.DataFrame | None
    baseline: str | None
    notes: list[str] = field(default_factory=list)
    quality_metric: dict[str, str] | None = None  # the task's metric behind ``quality``, when the search recorded it


def analyse(
    trials: pd.DataFrame,
    objectives: Mapping[str, str] | None = None,
    *,
    baseline: str | None = None,
    constraints: Iterable[str | Constraint] | None = None,
    rows: str = "knee",
    by: str = "approach",
) -> Analysis:
    """Fronts, hypervolume, knee, tables and the seed-noise front of ``trials`` (from ``load``).

    ``objectives`` and ``constraints`` default to the search's own (``trials.attrs``).
    """
    objectives = dict(objectives or trials.attrs.get("objectives") or {})
    if not objectives:
        raise ValueError("the search's objectives are unknown (no readable search.yaml); give them, e.g. --objectives quality:min,energy_j:min")
    if trials.empty:
        raise ValueError(f"{trials.attrs.get('source', 'the results')} holds no trials yet")
    if constraints is None:
        constraints = trials.attrs.get("constraints") or []
    constraints = [text if isinstance(text, Constraint) else Constraint.parse(text) for text in constraints]
    notes = list(trials.attrs.get("problems", []))
    finished = trials[trials["status"].eq("finished")] if "status" in trials.columns else trials
    considered = feasible(finished, constraints)
    ranks = pareto_ranks(considered, objectives)
    trials = trials.assign(rank=ranks.reindex(trials.index))
    if finished.empty:
        notes.append("no trial finished; see the error column of the results")
    elif considered.empty:
        notes.append(f"no finished trial meets the constraints {', '.join(map(str, constraints))}")
    front = pareto_front(considered, objectives)
    knee = knee_point(considered, objectives) if len(front) else None
    reference = reference_point(considered, objectives) if len(front) else None
    ordered = trials.assign(**{column: trials[column].where(trials.index.isin(considered.index)) for column in objectives})
    table, chosen = None, baseline
    if len(front):
        try:
            chosen = baseline or find_baseline(considered, by)
        except ValueError as error:
            notes.append(str(error))
        if chosen:
            try:
                table = comparison_table(considered, objectives, baseline=chosen, rows=rows, by=by)
            except ValueError as error:
                if baseline:
                    raise
                notes.append(str(error))
    return Analysis(
        source=str(trials.attrs.get("source", "")),
        objectives=objectives,
        constraints=[str(constraint) for constraint in constraints],
        trials=trials,
        considered=considered,
        front=front,
        knee=knee,
        reference=reference,
        hypervolume=hypervolume(considered, objectives, reference) if reference else 0.0,
        trace=hypervolume_trace(ordered, objectives, reference) if reference else pd.DataFrame(columns=["trials", "hypervolume"]),
        approaches=approach_summary(trials, considered, objectives, reference, by) if reference and by in trials.columns else pd.DataFrame(),
        noisy=noisy_front(considered, objectives) if len(front) and has_repeats(considered) else pd.DataFrame(),
        table=table,
        baseline=chosen if table is not None else None,
        notes=notes,
        quality_metric=trials.attrs.get("quality_metric"),
    )


def parse_objectives(text: str, known: Mapping[str, str] | None = None) -> dict[str, str]:
    """``"quality,energy_j:min"`` -> modes; a column without one takes ``known``'s, else min.

    >>> parse_objectives("quality, energy_j:min", {"quality": "max"})
    {'quality': 'max', 'energy_j': 'min'}
    """
    objectives = {}
    for entry in text.split(","):
        column, _, mode = entry.strip().partition(":")
        objectives[column] = mode or (known or {}).get(column, "min")
    return objectives


def write_tables(analysis: Analysis, directory: Path, suffix: str) -> list[Path]:
    """The front, comparison, per-approach, seed-noise and trial tables as ``<name>.csv`` or ``.parquet``."""
    if suffix not in ("csv", "parquet"):
        raise ValueError(f"tables are written as csv or parquet, not {suffix!r}")
    tables = {"front": analysis.front, "comparison": analysis.table, "approaches": analysis.approaches,
              "seed_noise": analysis.noisy, "trials": analysis.trials}
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        if table is not None and len(table):
            path = directory / f"{name}.{suffix}"
            table.to_csv(path, index=False) if suffix == "csv" else table.to_parquet(path, index=False)
            written.append(path)
    return written


# --- presentation ---


def format_front(front: pd.DataFrame, considered: int, objectives: Mapping[str, str]) -> str:
    """The front rows with their parameters, objectives and costs, under a one-line header."""
    table = front[front_columns(front, objectives)].rename(columns=lambda column: column.split("/")[-1])
    header = f"Pareto-optimal trials ({len(front)} of {considered} considered), objectives " + ", ".join(
        f"{column} ({mode})" for column, mode in objectives.items()
    )
    return header + "\n" + table.to_string(index=False, float_format=lambda value: f"{value:.4g}")


def display_table(table: pd.DataFrame, quality: str = "quality") -> pd.DataFrame:
    """The comparison table as text cells with paper-style headers: mean ± std, gains in %, '/' for the baseline."""
    def measured(column: str):
        def cell(row: pd.Series) -> str:
            spread = row.get(f"{column}_std")
            return f"{row[column]:.4g}" + (f" ± {spread:.2g}" if row["runs"] > 1 and pd.notna(spread) else "")
        return cell

    def relative(column: str):
        return lambda row: "/" if row["baseline"] else f"{row[column]:.2f}%"

    label = table.columns[0]
    columns = [
        (label.capitalize(), lambda row: str(row[label])),
        ("Configuration", lambda row: row["configuration"] or "-"),
        ("Runs", lambda row: str(int(row["runs"]))),
        ("Final quality", measured(quality)),
        ("Quality loss", relative("quality_loss_pct")),
    ]
    if "time_s" in table.columns:
        columns += [("Training time (s)", measured("time_s")), ("Time gain", relative("time_gain_pct"))]
    if "energy_j" in table.columns:
        columns += [("Training energy (J)", measured("energy_j")), ("Energy gain", relative("energy_gain_pct"))]
    if "flops" in table.columns:
        columns += [("FLOPs", lambda row: f"{row['flops']:.3g}"), ("FLOPs gain", relative("flops_gain_pct"))]
    if "co2_g" in table.columns:
        columns += [("CO2 (g)", measured("co2_g")), ("CO2 gain", relative("co2_g_gain_pct"))]
    if "energy_source" in table.columns:
        columns.append(("Energy source", lambda row: str(row["energy_source"])))
    return pd.DataFrame([{name: cell(row) for name, cell in columns} for _, row in table.iterrows()], columns=[name for name, _ in columns])


def format_text(analysis: Analysis) -> str:
    """The analysis as it prints in a terminal."""
    trials = analysis.trials
    counts = trials["status"].value_counts().to_dict() if "status" in trials.columns else {}
    lines = [
        f"{analysis.source}: {len(trials)} trials ({', '.join(f'{count} {status}' for status, count in counts.items())})",
    ]
    if analysis.constraints:
        lines.append(f"constraints: {', '.join(analysis.constraints)} ({len(analysis.considered)} finished trials meet them)")
    if len(analysis.front):
        lines += ["", format_front(analysis.front, len(analysis.considered), analysis.objectives)]
        knee = analysis.knee
        lines.append(f"knee: trial {knee.get('trial_id', knee.name)} ({knee.get('approach', '')}), "
                     + ", ".join(f"{column}={knee[column]:.4g}" for column in analysis.objectives))
        lines.append(f"hypervolume: {analysis.hypervolume:.6g} against reference point "
                     + ", ".join(f"{column}={value:.4g}" for column, value in analysis.reference.items()))
    if analysis.table is not None:
        lines += ["", f"Against {analysis.baseline} (mean ± std over a configuration's runs):",
                  display_table(analysis.table).to_string(index=False)]
    if len(analysis.approaches):
        lines += ["", "Per approach (hypervolume against the same reference point):",
                  analysis.approaches.to_string(index=False, float_format=lambda value: f"{value:.4g}")]
    if len(analysis.noisy):
        robust = analysis.noisy[analysis.noisy["robust"]]
        lines += ["", f"Seed-noise front: {len(robust)} configuration(s) non-dominated in at least half the draws:",
                  robust[front_columns(robust, analysis.objectives) + ["runs", "front_probability"]]
                  .rename(columns=lambda column: column.split("/")[-1]).to_string(index=False, float_format=lambda value: f"{value:.4g}")]
    return "\n".join(lines)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame``'s cells."""
    def cell(value) -> str:
        if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
            return ""
        text = f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    rows = [[cell(column.split("/")[-1]) for column in frame.columns]] + [[cell(value) for value in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([lines[0], "|" + "---|" * len(frame.columns), *lines[1:]])


def format_markdown(analysis: Analysis) -> str:
    parts = [f"# greentune analysis of {analysis.source}", "", "## Pareto front", "",
             to_markdown(analysis.front[front_columns(analysis.front, analysis.objectives)]) if len(analysis.front) else "No front."]
    if analysis.table is not None:
        parts += ["", f"## Against {analysis.baseline}", "", to_markdown(display_table(analysis.table))]
    if len(analysis.approaches):
        parts += ["", "## Per approach", "", to_markdown(analysis.approaches)]
    return "\n".join(parts)


def to_json(analysis: Analysis) -> str:
    """Everything a script needs, as one JSON document (NaN as null)."""
    def records(frame: pd.DataFrame | None) -> list:
        return [] if frame is None or frame.empty else json.loads(frame.to_json(orient="records"))

    robust = analysis.noisy[analysis.noisy["robust"]] if len(analysis.noisy) else None
    document = {
        "source": analysis.source,
        "objectives": analysis.objectives,
        "quality_metric": analysis.quality_metric,
        "constraints": analysis.constraints,
        "trials": len(analysis.trials),
        "considered": len(analysis.considered),
        "reference_point": analysis.reference,
        "hypervolume": analysis.hypervolume,
        "knee": records(analysis.knee.to_frame().T)[0] if analysis.knee is not None else None,
        "front": records(analysis.front),
        "baseline": analysis.baseline,
        "table": records(analysis.table),
        "approaches": records(analysis.approaches),
        "robust_front": records(robust),
        "notes": analysis.notes,
    }
    return json.dumps(document, indent=2)
