"""The results directory is the user's data: never reused silently, a full or read-only disk is one line, resume never starts over.

The disk tests mount a small tmpfs (root only; skipped otherwise, saying so)
and run ``greentune`` in a subprocess, so the search starts its own Ray, as a
user's does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from greentune import analysis

from helpers import assert_one_line_usage_error, in_process

SEARCH = {
    "task": "teacher_student",
    "task_options": {"n_train": 100, "n_test": 100},
    "train": {"steps": 20, "eval_every": 10, "batch_size": 20},
    "approaches": {"baseline": {"techniques": ["baseline"], "model": "small"},
                   "selection": {"techniques": ["data_selection"], "model": "small"}},
    "evaluate_first": ["baseline"],
    "searcher": "random",
    "scheduler": "fifo",  # every trial to the end: what is on disk is tested, not the scheduling
    "num_trials": 4,
    "max_concurrent": 1,
    "resources": {"cpu": 1},
}


@pytest.fixture
def search_file(tmp_path) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(SEARCH))
    return path


def greentune(*args, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "greentune.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=400)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def assert_one_error_line(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0].startswith("greentune: error:") and all(fragment in lines[0] for fragment in fragments), lines[0]


@pytest.fixture
def tmpfs(tmp_path):
    """A mount point for a tmpfs the test sizes and remounts; unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that fills, one that turns read-only) needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = []

    def mount_with(options: str) -> Path:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(mount)
        return mount

    def remount_read_only() -> None:
        subprocess.run(["mount", "--bind", str(mount), str(mount)], check=True)
        mounted.append(mount)
        for _ in range(50):  # the kernel refuses now and then (exit 32) while a file is being written: again shortly
            if subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        pytest.fail(f"could not make {mount} read-only in 5 s")

    mount_with.remount_read_only = remount_read_only
    yield mount_with
    for _ in mounted:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_run_refuses_a_directory_that_holds_a_search(tmp_path, capsys, search_file):
    first = tmp_path / "out"
    (first / "tune").mkdir(parents=True)
    (first / "search.yaml").write_text("num_trials: 4\n")
    result = in_process(capsys, "run", "--config", search_file, "--results", first)
    assert_one_usage = f"already holds a search (search.yaml); continue it with `greentune resume {first.resolve()}`"
    assert_one_line_usage_error(result, assert_one_usage)
    assert (first / "search.yaml").read_text() == "num_trials: 4\n" and os.listdir(first / "tune") == []


def test_an_empty_results_directory_is_an_error(capsys, search_file):
    assert_one_line_usage_error(in_process(capsys, "run", "--config", search_file, "--results", ""), "the results directory is empty")


def test_a_results_path_that_cannot_be_made_is_one_line(tmp_path, capsys, search_file):
    (tmp_path / "a-file").write_text("")
    result = in_process(capsys, "run", "--config", search_file, "--results", tmp_path / "a-file" / "out")
    assert_one_line_usage_error(result, f"{tmp_path / 'a-file'} is a file, not a folder")


def test_a_read_only_results_directory_at_the_start_is_one_line(tmpfs, capsys, search_file):
    disk = tmpfs("size=1m,ro")
    result = in_process(capsys, "run", "--config", search_file, "--results", disk / "out")
    assert_one_line_usage_error(result, f"{disk} is not writable (read-only file system)")


def finished_trials(directory: Path) -> pd.DataFrame:
    trials = analysis.load(directory)
    return trials[trials["status"] == "finished"]


GATE = """
import time
from pathlib import Path

from greentune.techniques import Technique


class Gate(Technique):
    \"\"\"Holds its trial at the first backward until the test opens the gate: the disk fills while it waits.\"\"\"

    name = "gate"

    def __init__(self):
        self.waited = False

    def after_backward(self, run):
        if not self.waited:
            Path({waiting!r}).touch()
        deadline = time.monotonic() + 300
        while not self.waited and not Path({opened!r}).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.waited = True
"""


def fill(disk: Path) -> Path:
    """A file that takes every byte left on ``disk``, in ever smaller writes down to one byte."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as file:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    file.write(b"\0" * size)
            except OSError:
                pass
    return filler


@pytest.mark.slow
def test_a_full_disk_stops_the_search_in_one_line_and_resume_never_starts_over(tmpfs, tmp_path):
    """The disk fills once a trial has finished, whatever the machine's load: the second trial waits at a gate meanwhile.

    (Filled by the search itself, a small tmpfs ran out before the first trial's files were written on a loaded machine.)
    """
    disk = tmpfs("size=50m")
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "held_trial.py").write_text(GATE.format(waiting=str(tmp_path / "gate-reached"), opened=str(tmp_path / "gate-open")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugin"), os.environ.get("PYTHONPATH", "")])}
    search_file = tmp_path / "gated.yaml"
    search_file.write_text(yaml.safe_dump({
        **SEARCH, "approaches": {**SEARCH["approaches"], "held": {"techniques": ["held_trial:Gate"], "model": "small"}},
        "evaluate_first": ["baseline", "held"],
    }))
    process = greentune("run", "--config", search_file, "--results", disk / "out", env=env)
    deadline = time.monotonic() + 300
    while not (tmp_path / "gate-reached").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    # The first trial has ended, and its files are written: the driver started the second only then.
    assert process.poll() is None and finished_on_disk(disk / "out"), "the second trial should wait at the gate"
    filler = fill(disk)
    (tmp_path / "gate-open").touch()
    full = finish(process)
    assert_one_error_line(full, 1, f"{disk / 'out'}", "No space left on device")
    assert full.stdout.count("retrying") <= 1, full.stdout  # stopped at the first failure, not after every trial's retries
    kept = finished_trials(disk / "out")
    assert len(kept) >= 1, full.stdout  # the trial that finished before the disk filled is readable

    filler.unlink()  # space freed
    resumed = finish(greentune("resume", disk / "out", env=env))
    if resumed.returncode == 0:  # Ray's state survived: the finished trials kept as they were, the rest run
        results = pd.read_parquet(disk / "out" / "results.parquet")
        assert len(results) == SEARCH["num_trials"] and (results["status"] == "finished").all(), resumed.stdout
        again = results.set_index("trial_id").loc[kept["trial_id"], "energy_j"]
        assert again.tolist() == kept["energy_j"].tolist(), "a finished trial was trained again"
    else:  # what was found, and that it cannot be resumed; nothing trained again
        assert_one_error_line(resumed, 2, f"{len(kept)} finished")


@pytest.mark.slow
def test_a_results_directory_turned_read_only_stops_the_search_in_one_line(tmpfs, tmp_path):
    disk = tmpfs("size=50m")
    search_file = tmp_path / "long.yaml"  # trials left to run well after the first finishes, while the mount turns
    search_file.write_text(yaml.safe_dump({**SEARCH, "num_trials": 10, "train": {"steps": 400, "eval_every": 100}}))
    process = greentune("run", "--config", search_file, "--results", disk / "out")
    deadline = time.monotonic() + 300
    while not finished_on_disk(disk / "out") and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert process.poll() is None, "the search ended before a trial finished"
    # The tmpfs itself cannot turn read-only while Ray holds files open for writing (EBUSY); a read-only
    # bind mount over it can, and from then on every path under it resolves to the read-only one.
    tmpfs.remount_read_only()
    result = finish(process)
    assert_one_error_line(result, 1, f"{disk / 'out'}", "Read-only file system")
    assert len(finished_trials(disk / "out")) >= 1  # what finished before stays readable


def finished_on_disk(directory: Path) -> bool:
    for result_file in directory.glob("tune/*/result.json"):
        lines = result_file.read_text().splitlines()
        if lines and json.loads(lines[-1]).get("complete"):
            return True
    return False


@pytest.mark.slow
def test_resume_refuses_a_truncated_experiment_state_in_one_line(tmp_path, search_file):
    done = finish(greentune("run", "--config", search_file, "--results", tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    state = next((tmp_path / "out" / "tune").glob("experiment_state-*.json"))
    state.write_text(state.read_text()[:5000])  # as a full disk leaves it
    before = {path: path.stat().st_mtime for path in (tmp_path / "out" / "tune").rglob("result.json")}
    resumed = finish(greentune("resume", tmp_path / "out"))
    assert_one_error_line(resumed, 2, f"{state} is truncated or unreadable", "4 trial folder(s), 4 finished")
    assert {path: path.stat().st_mtime for path in (tmp_path / "out" / "tune").rglob("result.json")} == before


def test_the_resume_refusal_counts_the_finished_trials_the_results_table_lists(tmp_path):
    from greentune.search.runner import check_experiment_state

    trial = tmp_path / "tune" / "trial_0"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text("{}")
    (trial / "result.json").write_text("")  # rewritten empty on the full disk
    (tmp_path / "tune" / "experiment_state-1.json").write_text('{"trial_da')  # truncated
    pd.DataFrame({"trial_id": ["t0"], "status": ["finished"]}).to_parquet(tmp_path / "results.parquet")
    with pytest.raises(ValueError, match=r"1 trial folder\(s\), 1 finished beside it"):
        check_experiment_state(tmp_path)
