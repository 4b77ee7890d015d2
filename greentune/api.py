"""The functions behind ``import greentune``: a search from a dict, a file or a preset, in a notebook.

``run`` and ``resume`` return a ``Results``: the per-trial table (the
``results.parquet`` it wrote) and the directory that holds it. ``analyze``
returns ``analysis.Analysis`` (front, knee, hypervolume, tables). A mistake
the user can fix raises ``UsageError``, whose ``lines`` name each problem;
the ``greentune`` command prints them, one per line, and exits with 2.

Ray, torch and the search layer are imported inside the functions, so
``import greentune`` stays light.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from greentune.analysis import Analysis
    from greentune.search.config import SearchConfig

RESULTS_ROOT = Path("greentune-results")
ANALYSIS_DIR = "analysis"


@dataclass(frozen=True)
class Results:
    """What a search left: ``trials`` (one row per trial, as in ``results.parquet``) and its ``directory``.

    ``search`` is the search as it ran, after the overrides.
    """

    trials: pd.DataFrame
    directory: Path
    search: SearchConfig


def run(
    search: Mapping[str, Any] | str | os.PathLike = "default",
    *,
    results: str | os.PathLike | None = None,
    address: str | None = None,
    storage: str | None = None,
    **overrides: Any,
) -> Results:
    """Run a search to the end: ``greentune.run({"task": ..., "approaches": ...}, num_trials=8)``.

    ``search`` is a search file's contents as a dict, the path of a YAML
    search file, or a preset's name (``greentune presets``). ``overrides``
    replace the search's top-level fields (``num_trials``, ``seed``,
    ``energy_budget_j``, ``carbon_budget_g``, ``loggers``, ``optuna_storage``, ...) and are
    checked as the file's own are.
    ``results`` is the results directory (default
    ``greentune-results/NAME-TIME``); ``address`` a running Ray cluster;
    ``storage`` a shared path or cloud URI the experiment also goes to.
    """
    from greentune.search.runner import run_search

    if results is not None and not os.fspath(results).strip():  # Path("") is the current directory
        raise UsageError(["the results directory is empty; give a folder, e.g. --results greentune-results/my-search"])
    name, config = load(search, **overrides)
    directory = Path(results) if results is not None else RESULTS_ROOT / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    budgets = config.settings.budgets
    limits = [f"{budgets.energy_budget_j:.4g} J are spent"] if budgets.energy_budget_j else []
    limits += [f"{budgets.carbon_budget_g:.4g} g CO2 are emitted"] if budgets.carbon_budget_g else []
    limit = f" (or until {' or '.join(limits)})" if limits else ""
    print(f"greentune: {config.settings.budgets.num_trials} trials of {name!r}{limit}; results in {directory.resolve()}", flush=True)
    if config.settings.warm_start_from:
        from greentune.search.warm_start import describe

        print(f"greentune: {describe(config.earlier_trials())}", flush=True)
    try:
        trials = run_search(config, directory, address=address, storage=storage)
    except ValueError as error:  # a cluster that cannot be reached, a grid without lists
        raise UsageError([str(error)]) from None
    return Results(trials, directory.resolve(), config)


def resume(directory: str | os.PathLike, *, address: str | None = None) -> Results:
    """Continue an interrupted search in its results directory; finished trials are kept."""
    from greentune.search.runner import resume_search

    try:
        config, trials = resume_search(Path(directory), address=address)
    except ValueError as error:
        raise UsageError([str(error)]) from None
    return Results(trials, Path(directory).resolve(), config)


def analyze(
    source: str | os.PathLike | pd.DataFrame,
    *,
    objectives: Mapping[str, str] | str | None = None,
    baseline: str | None = None,
    constraints: list[str] | None = None,
    rows: str = "knee",
    report: bool | str | os.PathLike = True,
) -> Analysis:
    """The front, knee, hypervolume and paper-style tables of a results directory (or table).

    ``objectives`` (``{"quality": "min", ...}`` or ``"quality,energy_j:min"``)
    and ``constraints`` default to the search's own. ``report`` writes the
    PNG plots and ``report.html``: True puts them under ``DIR/analysis``, a
    path puts them there, False writes nothing. The analysis's ``notes``
    say what was damaged or missing in the results.
    """
    from greentune import analysis
    from greentune.analysis.report import REPORT_FILE, build_figures, write_plots, write_report

    if report is True and not isinstance(source, (str, os.PathLike)):
        raise UsageError(["a results table has no directory to put the report beside; pass report=FOLDER or report=False"])
    try:
        trials = analysis.load(source)
        history = analysis.load_history(source)
        if isinstance(objectives, str):
            objectives = analysis.parse_objectives(objectives, trials.attrs.get("objectives"))
        result = analysis.analyse(trials, objectives, baseline=baseline, constraints=constraints, rows=rows)
    except ValueError as error:
        raise UsageError([str(error)]) from None
    result.notes = list(dict.fromkeys(result.notes + history.attrs.get("problems", [])))
    if report is not False:
        figures = build_figures(result, history)
        out = report_directory(source) if report is True else Path(report)
        write_plots(figures, out)
        write_report(result, figures, out / REPORT_FILE)
    return result


def report_directory(source: str | os.PathLike) -> Path:
    """Where ``analyze`` writes plots and the report by default: ``analysis/`` beside the results."""
    path = Path(source)
    return (path if path.is_dir() else path.parent) / ANALYSIS_DIR


def load(search: Mapping[str, Any] | str | os.PathLike, **overrides: Any) -> tuple[str, SearchConfig]:
    """The search's name and its checked configuration, with ``overrides`` applied; every problem at once."""
    from greentune.search.config import parse_search, read_search_file
    from greentune.search.presets import preset_path
    from greentune.trainables.trial import ConfigError

    try:
        if isinstance(search, Mapping):
            name, raw = "search", dict(search)
        else:
            path = Path(search)
            if not (isinstance(search, os.PathLike) or path.suffix in (".yaml", ".yml") or path.exists()):
                try:
                    path = preset_path(str(search))  # neither a path nor a file: a preset's name
                except ValueError as error:
                    raise ConfigError([f"no search file at {search}, nor a preset of that name: {error}"]) from None
            name, raw = path.stem, read_search_file(path)
        return name, parse_search({**raw, **overrides} if isinstance(raw, dict) else raw)
    except ConfigError as error:
        raise UsageError(error.problems) from None
    except ValueError as error:  # an unknown preset
        raise UsageError([str(error)]) from None


def list_techniques(*names: str) -> pd.DataFrame:
    """Every technique (or those ``names``, registered names or import paths) with its parameters, one row each.

    Columns: ``technique``, ``origin`` (built-in, plug-in DIST, import path),
    ``parameter``, ``default`` and ``searched`` (the declared domain a search
    samples, or ``not searched`` for a parameter a search file can only fix).
    """
    import inspect

    import pandas as pd

    from greentune.techniques.registry import available, origin, parameter_defaults, technique_class

    try:
        classes = {name: technique_class(name) for name in names} if names else available()
    except ValueError as error:
        raise UsageError([str(error)]) from None
    rows = []
    for name, cls in sorted(classes.items()):
        defaults = parameter_defaults(cls)
        for parameter, default in defaults.items() or [(None, None)]:
            domain = cls.space.get(parameter)
            rows.append({
                "technique": name,
                "origin": origin(name),
                "parameter": parameter,
                "default": None if default is inspect.Parameter.empty else default,
                "searched": domain.describe() if domain is not None else "not searched" if parameter else None,
            })
    return pd.DataFrame(rows, columns=["technique", "origin", "parameter", "default", "searched"], dtype=object)
