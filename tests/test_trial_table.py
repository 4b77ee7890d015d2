"""The results table as trials finish: a search killed part-way leaves the trials it finished on disk."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from greentune.analysis import load
from greentune.search.runner import TrialTable

from helpers import in_process


def fake_trial(trial_id, status="TERMINATED", quality=0.5, error_file=None):
    """As much of Ray Tune's Trial as the callback reads."""
    return SimpleNamespace(
        trial_id=trial_id, status=status, config={"approach": "b", "lr": 0.1}, checkpoint=None,
        last_result={"quality": quality, "energy_j": 2.0, "complete": True} if status == "TERMINATED" else {},
        error_file=error_file, get_error=lambda: None,
    )


def test_finished_trials_reach_the_table_before_the_search_ends(tmp_path, capsys):
    (tmp_path / "search.yaml").write_text("objectives: {quality: max, energy_j: min}\n")
    table = TrialTable(tmp_path, every_s=3600)
    first, running = fake_trial("a", status="RUNNING"), fake_trial("b", status="RUNNING")
    first.last_result = {"quality": 0.5, "energy_j": 2.0, "complete": True}
    table.on_trial_complete(1, [first, running], first)  # the first to finish is written at once (Ray: still RUNNING)
    assert list(pd.read_parquet(tmp_path / "results.parquet")["trial_id"]) == ["a"]
    error = tmp_path / "error.txt"
    error.write_text("Failure # 1\nTraceback:\n  File x\nValueError: boom\n")
    failed = fake_trial("c", status="RUNNING", error_file=str(error))
    first.status = "TERMINATED"
    running.status, running.last_result = "TERMINATED", {"quality": 0.7, "energy_j": 1.0, "complete": True}
    table.on_trial_error(2, [first, running, failed], failed)  # within every_s: kept for later
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 1
    table.every_s = 0
    table.on_step_end(3, [first, running, failed])
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 3
    # Killed here: no on_experiment_end, no final tables; what finished is on disk and analysis reads it.
    written = load(tmp_path)
    assert list(written["trial_id"]) == ["a", "b", "c"]
    assert list(written["status"]) == ["finished", "finished", "error"]
    assert written["error"].iloc[2] == "ValueError: boom"
    assert pd.read_csv(tmp_path / "results.csv")["quality"].tolist()[:2] == [0.5, 0.7]
    result = in_process(capsys, "analyze", tmp_path)
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob(".*.partial"))  # written aside, then moved into place
