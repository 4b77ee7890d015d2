"""Results of any search, finished, running or copied, as tidy DataFrames.

``load`` returns one row per trial; ``load_history`` one row per trial per
evaluation. Both accept a results directory written by ``greentune run``, a
``results.parquet``/``results.csv`` file, a Ray Tune ``ResultGrid`` or a
DataFrame. A directory is read from the most complete source that can be
read: the results files a finished search writes, else the trial folders
Ray Tune keeps under ``tune/`` (which is all a running search has). What
could not be read is described in ``frame.attrs["problems"]`` and skipped,
so a partial or damaged directory still yields every complete row.

``frame.attrs["objectives"]`` holds the search's ``{column: mode}``,
``frame.attrs["constraints"]`` its constraints (``"energy_j <= 100"``, ...)
and ``frame.attrs["quality_metric"]`` the task's metric reported as
``quality`` (``{"name": "test_loss", "mode": "min"}``) when its
``search.yaml`` is readable and records them; else None, [] and None.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from greentune.layout import HISTORY_FILE, RESULTS_FILES, SEARCH_RECORD, TUNE_DIR, tables

IDENTITY = ["trial_id", "approach", "techniques", "model", "seed", "repeat_group", "status", "error"]
COSTS = [
    "energy_j", "energy_source", "cpu_energy_j", "cpu_energy_source", "time_s", "flops", "params", "params_total",
    "kept_steps", "eval_energy_j", "eval_time_s", "co2_g", "carbon_source",
]
# Ray Tune's bookkeeping, not results; ``timestamp`` stays: it orders trials in time.
RAY_COLUMNS = {
    "checkpoint_dir_name", "should_checkpoint", "date", "time_this_iter_s", "time_total_s", "pid", "hostname",
    "node_ip", "time_since_restore", "iterations_since_restore", "experiment_tag", "done", "training_iteration", "config",
}


def load(source: Any, *, aggregate: bool = False) -> pd.DataFrame:
    """One row per trial: identity, final metrics, costs, then ``config/...``.

    With ``aggregate=True``, one row per configuration instead, repeats
    (trials differing only by seed) as mean and ``<column>_std``; see
    ``analysis.aggregate_repeats``.

    >>> frame = pd.DataFrame({"trial_id": ["a"], "status": ["finished"], "quality": [0.1], "pid": [7]})
    >>> list(load(frame).columns)
    ['trial_id', 'status', 'quality']
    """
    trials, _, problems, settings = _read(source, want_history=False)
    trials = _tidy(trials, problems)
    if aggregate:
        from .repeats import aggregate_repeats

        trials = aggregate_repeats(trials)
    trials.attrs.update(problems=problems, source=_describe(source), **settings)
    return trials


def load_history(source: Any) -> pd.DataFrame:
    """One row per trial per evaluation, ordered by trial and step."""
    trials, history, problems, _ = _read(source, want_history=True)
    history = history.drop(columns=[column for column in history.columns if column in RAY_COLUMNS])
    if "config/techniques" in history.columns:
        history["config/techniques"] = history["config/techniques"].map(_joined)
    labels = [column for column in ("approach", "techniques", "model", "seed") if column in trials.columns]
    if len(history) and "trial_id" in trials.columns and labels:
        history = history.drop(columns=[column for column in labels if column in history.columns])
        history = history.merge(trials[["trial_id", *labels]].drop_duplicates("trial_id"), on="trial_id", how="left")
    front = [column for column in ("trial_id", *labels, "step") if column in history.columns]
    history = history[front + [column for column in history.columns if column not in front]]
    if {"trial_id", "step"} <= set(history.columns):
        history = history.sort_values(["trial_id", "step"], kind="stable", ignore_index=True)
    history.attrs.update(problems=problems, source=_describe(source))
    return history


def search_record(directory: Path) -> dict[str, Any] | None:
    """The ``search.yaml`` a search wrote, or None when absent or unreadable."""
    try:
        record = yaml.safe_load((Path(directory) / SEARCH_RECORD).read_text())
    except (OSError, yaml.YAMLError):
        return None
    return record if isinstance(record, dict) else None


# --- sources ---


def _read(source: Any, *, want_history: bool) -> tuple[pd.DataFrame, pd.DataFrame, list[str], dict[str, Any]]:
    problems: list[str] = []
    if isinstance(source, pd.DataFrame):
        settings = {"objectives": source.attrs.get("objectives"), "constraints": source.attrs.get("constraints", []),
                    "quality_metric": source.attrs.get("quality_metric")}
        return source.copy(), source.copy(), problems, settings
    if not isinstance(source, (str, os.PathLike)):
        trials, history = tables(source)
        experiment = getattr(source, "experiment_path", None)  # results_dir/tune when the runner wrote it
        record = search_record(Path(experiment).parent) if experiment and "://" not in str(experiment) else None
        return trials, history, problems, _search_settings(record, problems)
    path = Path(source)
    if path.is_file():
        history = _read_history(path.parent / HISTORY_FILE, problems) if want_history else None
        history = pd.DataFrame() if history is None else history
        return _read_file(path, problems), history, problems, _search_settings(search_record(path.parent), problems)
    if not path.is_dir():
        raise ValueError(f"{path} does not exist; give a results directory, results.parquet or results.csv")
    return _read_directory(path, want_history, problems)


def _read_directory(path: Path, want_history: bool, problems: list[str]):
    """The results files when readable, else (and for a missing history) Ray Tune's trial folders."""
    record = search_record(path)
    if record is None and (path / SEARCH_RECORD).exists():
        problems.append(f"{path / SEARCH_RECORD} is unreadable; the search's objectives are unknown")
    settings = _search_settings(record, problems)
    trials = None
    for name in RESULTS_FILES:
        if trials is None and (path / name).exists():
            try:
                trials = _read_file(path / name, problems)
            except ValueError as error:
                problems.append(str(error))
    history = pd.DataFrame()
    if want_history and trials is not None:
        history = _read_history(path / HISTORY_FILE, problems)
    if trials is not None and history is not None:
        return trials, history, problems, settings
    tune_dir = path / TUNE_DIR if (path / TUNE_DIR).is_dir() else path
    trial_dirs = sorted(directory for directory in tune_dir.iterdir() if (directory / "params.json").exists())
    if not trial_dirs:
        if trials is None:
            raise ValueError(
                f"{path} holds no results: expected results.parquet, results.csv or Ray Tune trial folders "
                f"under {TUNE_DIR}/ (is it a greentune results directory?)"
            )
        problems.append(f"{path} has neither {HISTORY_FILE} nor trial folders, so no training curves")
        return trials, pd.DataFrame(), problems, settings
    from_tune, history = _read_trial_dirs(trial_dirs, problems)
    if trials is None:
        trials = from_tune
        problems.append(f"read {len(trial_dirs)} Ray Tune trial folder(s) under {tune_dir} (a running or interrupted search)")
    return trials, history, problems, settings


def _read_history(path: Path, problems: list[str]) -> pd.DataFrame | None:
    """``history.parquet``, or None when it is missing or damaged (the trial folders have it too)."""
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        problems.append(f"{path} is unreadable ({_first_line(error)}); reading the trial folders instead")
        return None


def _read_file(path: Path, problems: list[str]) -> pd.DataFrame:
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types for a damaged file
            raise ValueError(f"{path} is not a readable Parquet file ({_first_line(error)})") from None
    if path.suffix != ".csv":
        raise ValueError(f"{path}: expected a .parquet or .csv results file")
    text = path.read_text(errors="replace")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        problems.append(f"{path}: the last line is incomplete and was skipped")
    if not text.strip():
        raise ValueError(f"{path} is empty")
    skipped: list[list[str]] = []
    frame = pd.read_csv(io.StringIO(text), on_bad_lines=skipped.append, engine="python")
    if skipped:
        problems.append(f"{path}: {len(skipped)} malformed line(s) skipped")
    return frame


@dataclass
class _CheckpointFolder:
    path: str


@dataclass
class _TrialFolder:
    """A Ray Tune trial folder, shaped like ``ray.tune.Result`` for ``greentune.layout.tables``."""

    path: str
    config: dict
    metrics: dict
    error: str | None
    metrics_dataframe: pd.DataFrame
    checkpoint: _CheckpointFolder | None


def _read_trial_dirs(trial_dirs: list[Path], problems: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    folders, unreadable, partial = [], 0, 0
    for directory in trial_dirs:
        try:
            config = json.loads((directory / "params.json").read_text())
        except (OSError, ValueError):
            unreadable += 1
            continue
        reports = []
        result_file = directory / "result.json"
        for line in result_file.read_text(errors="replace").splitlines() if result_file.exists() else []:
            try:
                reports.append(json.loads(line))
            except ValueError:
                partial += 1  # a report still being written, or cut off by a copy
        error_file = directory / "error.txt"
        error = (error_file.read_text(errors="replace") or "failed") if error_file.exists() else None
        metrics = dict(reports[-1]) if reports else {"trial_id": _trial_id(directory)}
        history = pd.json_normalize(reports, sep="/") if reports else pd.DataFrame()
        checkpoints = sorted(directory.glob("checkpoint_*"))
        checkpoint = _CheckpointFolder(str(checkpoints[-1])) if checkpoints else None
        folders.append(_TrialFolder(str(directory), config, metrics, error, history, checkpoint))
    if unreadable:
        problems.append(f"{unreadable} trial folder(s) with an unreadable params.json were skipped")
    if partial:
        problems.append(f"{partial} incomplete report line(s) in result.json files were skipped")
    silent = sum(1 for folder in folders if folder.metrics_dataframe.empty)
    if silent:
        problems.append(f"{silent} trial(s) have not reported yet")
    return tables(folders)


def _trial_id(directory: Path) -> str:
    """Ray names trial folders ``<trainable>_<trial id>_<n>_<params>``; the id has no underscore."""
    parts = directory.name.split("_")
    return parts[2] if len(parts) > 3 and parts[0] == "run" else directory.name


# --- tidying ---


def _tidy(trials: pd.DataFrame, problems: list[str]) -> pd.DataFrame:
    trials = trials.drop(columns=[column for column in trials.columns if column in RAY_COLUMNS])
    if len(trials) and "trial_id" in trials.columns:
        incomplete = trials["trial_id"].isna()
        if "status" in trials.columns:
            incomplete |= trials["status"].isna()
        if incomplete.any():
            problems.append(f"{int(incomplete.sum())} row(s) without a trial_id or status were skipped")
            trials = trials[~incomplete]
        duplicated = trials["trial_id"].duplicated(keep="last")
        if duplicated.any():
            problems.append(f"{int(duplicated.sum())} duplicate trial row(s) were dropped, keeping the last")
            trials = trials[~duplicated]
    for column in [column for column in trials.columns if column.startswith("config/")]:
        if trials[column].map(lambda value: isinstance(value, (list, tuple))).any():
            trials[column] = trials[column].map(_joined)
    config = sorted(column for column in trials.columns if column.startswith("config/"))
    known = [column for column in IDENTITY + COSTS if column in trials.columns]
    metrics = [column for column in trials.columns if column not in known and column not in config and column != "timestamp"]
    identity = [column for column in IDENTITY if column in trials.columns]
    costs = [column for column in COSTS if column in trials.columns]
    order = identity + metrics + costs + (["timestamp"] if "timestamp" in trials.columns else []) + config
    return trials[order].reset_index(drop=True)


def _search_settings(record: dict | None, problems: list[str]) -> dict[str, Any]:
    """The objectives, constraints and quality metric a search ran with, from its record."""
    if record is None:
        return {"objectives": None, "constraints": [], "quality_metric": None}
    objectives = record.get("objectives")
    if not isinstance(objectives, dict) or not objectives:
        problems.append("search.yaml has no objectives; pass them explicitly")
        objectives = None
    else:
        objectives = {str(column): str(mode) for column, mode in objectives.items()}
    quality = record.get("quality_metric")  # absent from searches run before it was recorded
    quality = {"name": str(quality["name"]), "mode": str(quality["mode"])} if isinstance(quality, dict) and {"name", "mode"} <= set(quality) else None
    return {"objectives": objectives, "constraints": [str(text) for text in record.get("constraints") or []], "quality_metric": quality}


def _joined(value: Any) -> Any:
    return "+".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(Path(source).resolve())
    return type(source).__name__
