"""Results of a search to Pareto fronts, paper-style tables, plots and a report.

Pure functions over pandas DataFrames; plotting libraries are imported only
when a figure is drawn (``analysis.report``, ``analysis.render``), so Ray
workers that import this package for ``pareto_mask`` never load them.

>>> import pandas as pd
>>> trials = pd.DataFrame({"trial_id": ["a", "b", "c"], "status": ["finished"] * 3,
...                        "quality": [0.03, 0.05, 0.04], "energy_j": [20.0, 5.0, 30.0]})
>>> objectives = {"quality": "min", "energy_j": "min"}
>>> pareto_front(trials, objectives)["trial_id"].tolist()
['a', 'b']
>>> round(hypervolume(trials, objectives, reference={"quality": 0.06, "energy_j": 40.0}), 6)
0.75
"""

from .constraints import Constraint, feasible
from .indicators import energy_to_reach, hypervolume, hypervolume_by_energy, hypervolume_trace, reference_point
from .load import load, load_history
from .pareto import fronts_by, knee_point, pareto_front, pareto_mask, pareto_ranks, rankable
from .repeats import aggregate_repeats, approach_means, format_approach_means, noisy_front
from .summary import Analysis, analyse, format_front, format_markdown, format_text, parse_objectives, to_json, write_tables
from .tables import comparison_table, find_baseline, front_columns

__all__ = [
    "Analysis", "Constraint", "aggregate_repeats", "analyse", "approach_means", "comparison_table", "energy_to_reach",
    "feasible", "find_baseline",
    "format_approach_means", "format_front", "format_markdown", "format_text", "front_columns", "fronts_by", "hypervolume",
    "hypervolume_by_energy", "hypervolume_trace", "knee_point", "load", "load_history", "noisy_front", "pareto_front", "pareto_mask",
    "pareto_ranks", "parse_objectives", "rankable", "reference_point", "to_json", "write_tables",
]
