"""Techniques from outside greentune: a plug-in distribution's entry point, and an import path in a search file.

The plug-in lives under tmp_path as a module plus a ``*.dist-info`` folder
(``METADATA`` and ``entry_points.txt``), put on ``PYTHONPATH``: what pip
leaves behind when it installs a distribution. Each command that lists or
searches the plug-in runs in its own process, so the registry discovers it
from scratch, and Ray's workers inherit the path, as they would an installed
package. Bad names are checked in this process, with the plug-in's folder on
``sys.path``: their one-line errors do not depend on what was discovered.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from greentune import analysis
from greentune.layout import RESULTS_FILES
from greentune.cli import main

from helpers import assert_one_line_usage_error, in_process

PLUGIN = '''
"""A plug-in technique: clip the gradient norm after each backward."""

import torch

from greentune.techniques import Float, Technique


class GradientClipping(Technique):
    name = "gradient_clipping"
    space = {"max_norm": Float(0.01, 10.0, log=True)}

    def __init__(self, max_norm: float = 1.0):
        self.max_norm = max_norm
        self.clipped = self.backwards = 0

    def after_backward(self, run):
        norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), self.max_norm)
        self.clipped += int(norm > self.max_norm)
        self.backwards += 1

    def metrics(self, run):
        return {"clipped_fraction": self.clipped / max(1, self.backwards)}


class Crashing(Technique):
    """Fails inside the Ray worker, after the trial has started: the search must record why and go on."""

    name = "crashing"

    def after_backward(self, run):
        if run.step == 3:
            raise RuntimeError("demo crash at step 3; fix the plug-in")


class NotATechnique:
    pass
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> dict[str, str]:
    """An environment in which the distribution ``demo-clipping`` is installed."""
    root = tmp_path_factory.mktemp("site")
    (root / "demo_clipping.py").write_text(PLUGIN)
    info = root / "demo_clipping-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-clipping\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[greentune.techniques]\ngradient_clipping = demo_clipping:GradientClipping\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def greentune(env, *args, cwd=None):
    command = [sys.executable, "-m", "greentune.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_the_entry_point_technique_is_listed_with_its_parameters(plugin):
    listed = greentune(plugin, "techniques")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "gradient_clipping (plug-in demo-clipping)" in lines
    row = lines[lines.index("gradient_clipping (plug-in demo-clipping)") + 1].split()
    assert row == ["max_norm", "default", "1.0", "float", "in", "[0.01,", "10],", "log", "scale"]
    assert "granet (built-in)" in lines, "the built-ins are still listed beside it"
    without = greentune({**plugin, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}, "techniques")
    assert "gradient_clipping" not in without.stdout, "the listing comes from the installed distribution"


@pytest.mark.slow
def test_plug_in_techniques_are_searched_like_built_in_ones(plugin, tmp_path):
    search = {
        "task": "teacher_student",
        "task_options": {"n_train": 200, "n_test": 200},
        "train": {"steps": 40, "eval_every": 20, "batch_size": 20},
        "approaches": {
            "by-path": {"techniques": ["demo_clipping:GradientClipping"],
                        "params": {"demo_clipping:GradientClipping": {"max_norm": 0.02}}},
            "crashing": {"techniques": ["demo_clipping:Crashing"]},
        },
        "techniques": ["gradient_clipping"],  # one approach per listed technique, the entry point's among them
        "evaluate_first": ["crashing", "by-path", "gradient_clipping"],
        "searcher": "random",
        # One trial per approach: a fourth, drawn at random, repeated one of them (the crashing one, on seed 0),
        # and cost a retry and two new workers for nothing these assertions read.
        "num_trials": 3,
        "max_concurrent": 1,
    }
    config = tmp_path / "plugin.yaml"
    config.write_text(yaml.safe_dump(search))
    result = greentune(plugin, "run", "--config", config, "--results", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    all_trials = pd.read_parquet(tmp_path / "out" / "results.parquet")
    # A trial that fails in its worker: its own exception, on the console and in the table; the search goes on.
    crashed = all_trials.loc[all_trials["approach"] == "crashing"]
    message = "RuntimeError: demo crash at step 3; fix the plug-in"
    assert len(crashed) and (crashed["status"] == "error").all() and (crashed["error"] == message).all()
    assert result.stdout.count(f"crashing: failed ({message}); see ") == len(crashed)
    assert result.stdout.count(f"crashing: failed ({message}); retrying") == len(crashed)  # retries: 1
    seen = [line.rpartition("; see ")[2] for line in result.stdout.splitlines() if "crashing: failed" in line and "; see " in line]
    assert seen and all(Path(path).is_relative_to((tmp_path / "out").resolve()) and Path(path).is_dir() for path in seen), seen
    spent = re.search(r"energy spent by the search: (\S+) J", result.stdout)
    assert spent and float(spent.group(1)) > 0, result.stdout[-2000:]  # not nan, with a trial that never reported
    assert "Traceback" not in result.stdout + result.stderr  # it stays in the trial's error.txt
    for name in RESULTS_FILES:  # as while a search runs: the table rebuilt from Ray's trial folders (error.txt)
        (tmp_path / "out" / name).unlink()
    rebuilt = analysis.load(tmp_path / "out")
    assert (rebuilt.loc[rebuilt["approach"] == "crashing", "error"] == message).sum() == len(crashed)
    trials = all_trials.loc[all_trials["approach"] != "crashing"]
    assert len(crashed) == 1 and len(trials) == 2 and (trials["status"] == "finished").all()
    assert set(trials["approach"]) == {"by-path", "gradient_clipping"}
    sampled = trials.loc[trials["approach"] == "gradient_clipping", "config/gradient_clipping/max_norm"]
    assert sampled.between(0.01, 10.0).all() and sampled.nunique() == len(sampled)  # drawn from its declared range
    fixed = trials.loc[trials["approach"] == "by-path"]
    assert (fixed["config/demo_clipping:GradientClipping/max_norm"] == 0.02).all()
    # The workers built the plug-in: its metric is reported, and a tiny norm is hit by every step.
    assert (fixed["clipped_fraction"] == 1.0).all() and trials["clipped_fraction"].notna().all()


@pytest.mark.parametrize(
    "technique, message",
    [
        ("demo_clipping:Missing", "technique 'demo_clipping:Missing': module 'demo_clipping' has no 'Missing'"),
        ("no_such_package.module:Thing", "cannot import 'no_such_package.module' (No module named 'no_such_package'); install it or put its folder on PYTHONPATH"),
        ("demo_clipping:NotATechnique", "not a subclass of greentune.techniques.Technique"),
        ("gradient_clip", "unknown technique 'gradient_clip'; choose from baseline, data_selection"),
    ],
)
def test_a_bad_technique_is_one_line_and_exit_2(plugin, tmp_path, technique, message, monkeypatch, capsys):
    monkeypatch.syspath_prepend(plugin["PYTHONPATH"].split(os.pathsep)[0])  # in-process: no new interpreter per case
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"techniques": [technique]}))
    assert main(["validate", str(config)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("greentune: error:") and message in lines[0], lines


def test_listing_a_bad_import_path_is_one_line_and_exit_2(plugin, monkeypatch, capsys):
    monkeypatch.syspath_prepend(plugin["PYTHONPATH"].split(os.pathsep)[0])  # in-process, as the bad names above
    assert_one_line_usage_error(in_process(capsys, "techniques", "granet", "demo_clipping:Missing"), "has no 'Missing'")


def test_an_entry_point_whose_class_is_named_otherwise_is_refused(plugin, tmp_path):
    site = tmp_path / "site"
    info = site / "misnamed-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: misnamed\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[greentune.techniques]\nclipping = demo_clipping:GradientClipping\n")
    env = {**plugin, "PYTHONPATH": os.pathsep.join([str(site), plugin["PYTHONPATH"]])}
    assert_one_line_usage_error(greentune(env, "techniques"), "of misnamed loads a technique named 'gradient_clipping'; set name = 'clipping' on the class")
