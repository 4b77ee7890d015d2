"""The results directory's layout: its file names, and the per-trial table built from Ray Tune's results.

Both the search (which writes the tables) and ``analysis.load`` (which
reads them, or rebuilds them from Ray Tune's trial folders when they are
missing) use this module, so the layout is stated once and ``analysis``
needs nothing from ``search``. It imports neither Ray nor torch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

RESULTS_FILES = ("results.parquet", "results.csv")
HISTORY_FILE = "history.parquet"
SEARCH_RECORD = "search.yaml"
RESULT_FILES = (*RESULTS_FILES, HISTORY_FILE, SEARCH_RECORD)  # what a search writes, and copies to its storage
TUNE_DIR = "tune"  # Ray Tune's experiment, for resuming
MODEL_FILE = "model.pt"  # the exported network, in a finished trial's final checkpoint (a pickle: code to trust)
SHARED_WEIGHTS_FILE = "model.safetensors"  # beside it, the same network in a form that loads without running code:
SHARED_ARCHITECTURE_FILE = "model.json"  # its tensors, and the architecture greentune rebuilds (trainables.shared_model)
COLOUR_CODES = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours the worker's name in its error text


def tables(grid) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-trial final rows and per-evaluation history from a Ray Tune ResultGrid."""
    rows, histories = [], []
    for result in grid:
        metrics = dict(result.metrics or {})
        trial_id = metrics.get("trial_id") or Path(result.path).name
        rows.append(trial_row(trial_id, result.config or {}, metrics, result.error, result.checkpoint))
        if result.metrics_dataframe is not None and len(result.metrics_dataframe):
            histories.append(result.metrics_dataframe.assign(trial_id=trial_id))
    results = pd.DataFrame(rows)
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    return results, history


def trial_row(trial_id: str, config: Mapping[str, Any], metrics: Mapping[str, Any], error: object, checkpoint) -> dict:
    """One trial's row of the results table: identity, status, ``config/...`` and its last metrics.

    ``error`` is the trial's error (or its error.txt's text), None when it
    did not fail; ``checkpoint`` its last Ray checkpoint, or None.

    >>> row = trial_row("t1", {"approach": "b", "lr": 0.1}, {"quality": 0.5, "complete": True}, None, None)
    >>> row["status"], row["config/lr"], row["quality"]
    ('finished', 0.1, 0.5)
    """
    row = {
        "trial_id": trial_id,
        "approach": config.get("approach"),
        "techniques": "+".join(config.get("techniques") or ["baseline"]),
        "model": config.get("model"),
        "seed": config.get("seed"),
        "repeat_group": config.get("repeat_group"),
        "status": _status(error, metrics),
        "error": error_line(error) if error else None,
        "model_file": _exported_model(checkpoint, metrics),
    }
    row.update({f"config/{key}": value for key, value in _flatten(config).items()})
    row.update({key: value for key, value in metrics.items() if key not in row and not isinstance(value, dict)})
    return row


def error_line(error: object) -> str:
    """A failed trial's own exception, ``Type: message``, from Ray's error or the text of its error.txt.

    Ray's text opens with the worker's name and process id and then runs
    through the traceback, whose lines are indented; the exception's own
    line(s) follow the last of them. ``Failure # N`` headers are dropped.
    """
    lines = [COLOUR_CODES.sub("", line).rstrip() for line in str(error).splitlines()]
    lines = [line for line in lines if line.strip() and not line.startswith("Failure # ")]
    last_indented = max((index for index, line in enumerate(lines) if line[0].isspace()), default=-1)
    return " ".join(lines[last_indented + 1 :] or lines[-1:]) or "failed"


def _exported_model(checkpoint, metrics: Mapping[str, Any]) -> str | None:
    """Where a finished trial's exported network lies: in its final checkpoint, on the experiment's storage."""
    if not metrics.get("complete") or checkpoint is None:
        return None
    return f"{checkpoint.path}/{MODEL_FILE}"


def _status(error: object, metrics: Mapping[str, Any]) -> str:
    if error:
        return "error"
    if metrics.get("diverged"):
        return "diverged"
    return "finished" if metrics.get("complete") else "stopped"


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (list, tuple)):
            flat[f"{prefix}{key}"] = "+".join(map(str, value))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def write_results(results: pd.DataFrame, directory: Path) -> None:
    """``results.parquet`` and ``results.csv`` in ``directory``, each replaced whole (a kill mid-write leaves the old one)."""
    results = storable(results)
    for name, write in (("results.parquet", results.to_parquet), ("results.csv", results.to_csv)):
        partial = Path(directory) / f".{name}.partial"
        write(partial, index=False)
        os.replace(partial, Path(directory) / name)


def storable(table: pd.DataFrame) -> pd.DataFrame:
    """Columns mixing types, as a choice like ``("auto", 0.5)`` gives, as strings: parquet needs one type per column."""
    table = table.copy()
    for column in table.columns[table.dtypes == object]:
        present = table[column].dropna()
        if present.map(type).nunique() > 1:
            table[column] = table[column].map(str).where(table[column].notna())
    return table
