"""The examples run as a user runs them, so the README's test command keeps them working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow
def test_own_model_searches_a_users_cnn_and_analyses_it(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "own_model.py"), "--quick", "--results", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Pareto front on [accuracy (max), energy_j (min)]" in result.stdout
    assert "Against the dense network:" in result.stdout
    trials = pd.read_parquet(tmp_path / "results" / "results.parquet")
    assert len(trials) == 4 and set(trials["status"]) == {"finished"}
    assert (trials["config/task"] == "own_model:make_task").all()
    assert set(trials["approach"]) <= {"dense", "data-selection", "random-pruning", "feather"}
