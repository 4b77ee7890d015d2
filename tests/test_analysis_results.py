"""Analysis of a real small search's results: loading every source, damage, CLI, plots, report, browser.

One tiny search (4 trials of 100 steps) runs once for the module.
"""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from greentune import analysis
from greentune.analysis.report import build_figures
from greentune.analysis.screenshot import check_report, find_browser
from greentune.cli import main

SEARCH = {
    "task": "teacher_student",
    "task_options": {"n_train": 200, "n_test": 200},
    "train": {"steps": 100, "eval_every": 50, "batch_size": 20},
    "approaches": {
        "baseline-small": {"techniques": ["baseline"], "model": "small"},
        "baseline-big": {"techniques": ["baseline"], "model": "big"},
        "data-selection": {"techniques": ["data_selection"], "model": "big",
                           "params": {"data_selection": {"selectivity": {"low": 0.3, "high": 0.7}}}},
    },
    "evaluate_first": ["baseline-small", "baseline-big", "data-selection"],
    "searcher": "random",
    "scheduler": "fifo",  # every trial to the end: the table's shape is what is tested
    "num_trials": 4,
    "max_concurrent": 1,  # one worker process: starting a second costs more than it saves here
}
TRIALS, EVALUATIONS = 4, 2


@pytest.fixture(scope="module")
def results(tmp_path_factory, local_ray) -> Path:
    from greentune.search.config import load_search
    from greentune.search.runner import run_search

    directory = tmp_path_factory.mktemp("search")
    (directory / "search.yaml").write_text(yaml.safe_dump(SEARCH))
    run_search(load_search(directory / "search.yaml"), directory / "results")
    return directory / "results"


def copy(results: Path, tmp_path: Path, *remove: str) -> Path:
    target = Path(shutil.copytree(results, tmp_path / "copy", ignore=shutil.ignore_patterns("analysis")))
    for name in remove:
        (target / name).unlink()
    return target


def key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("trial_id")[["trial_id", "approach", "status", "quality", "energy_j", "flops"]].reset_index(drop=True)


@pytest.mark.slow
def test_every_source_loads_to_the_same_tidy_table(results, tmp_path):
    from ray.tune import ExperimentAnalysis, ResultGrid

    trials = analysis.load(results)
    assert len(trials) == TRIALS and set(trials["status"]) == {"finished"}
    assert trials.attrs["objectives"] == {"quality": "min", "energy_j": "min"} and trials.attrs["problems"] == []
    assert list(trials.columns[:7]) == ["trial_id", "approach", "techniques", "model", "seed", "repeat_group", "status"]
    assert "pid" not in trials.columns and "config/data_selection/selectivity" in trials.columns
    running = copy(results, tmp_path, "results.parquet", "results.csv", "history.parquet")  # what a running search has
    grid = ResultGrid(ExperimentAnalysis(str(results / "tune")))
    for source in (results / "results.parquet", results / "results.csv", running, grid):
        pd.testing.assert_frame_equal(key(analysis.load(source)), key(trials), check_dtype=False)
    assert analysis.load(grid).attrs["objectives"] == trials.attrs["objectives"]

    history = analysis.load_history(results)
    assert len(history) == TRIALS * EVALUATIONS
    assert all(steps == [50, 100] for steps in history.groupby("trial_id")["step"].apply(list))
    assert history["approach"].notna().all()
    pd.testing.assert_frame_equal(analysis.load_history(running)[["trial_id", "step", "energy_j"]],
                                  history[["trial_id", "step", "energy_j"]], check_dtype=False)


@pytest.mark.slow
def test_damaged_directories_keep_every_complete_row(results, tmp_path, capsys):
    damaged = copy(results, tmp_path)
    (damaged / "results.parquet").write_bytes((damaged / "results.parquet").read_bytes()[:500])
    csv = (damaged / "results.csv").read_text()
    (damaged / "results.csv").write_text(csv[: len(csv) - 40])  # a copy cut off inside the last row
    trials = analysis.load(damaged)
    assert len(trials) == TRIALS - 1
    assert any("not a readable Parquet file" in problem for problem in trials.attrs["problems"])
    assert any("last line is incomplete" in problem for problem in trials.attrs["problems"])

    for name in ("results.parquet", "results.csv", "history.parquet"):
        (damaged / name).unlink()
    trial_dirs = sorted(path for path in (damaged / "tune").iterdir() if (path / "params.json").exists())
    (trial_dirs[0] / "params.json").write_text("{")  # unreadable: the trial is skipped
    report = trial_dirs[1] / "result.json"
    report.write_text(report.read_text() + '{"step": 150, "quali')  # a report being written
    trials = analysis.load(damaged)
    assert len(trials) == TRIALS - 1
    problems = " ".join(trials.attrs["problems"])
    assert "1 trial folder(s) with an unreadable params.json" in problems and "1 incomplete report line" in problems
    assert main(["analyze", str(damaged), "--no-report"]) == 0
    assert "greentune: note: 1 trial folder(s)" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["analyze", str(empty)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "holds no results" in error and "results.parquet" in error


@pytest.mark.slow
def test_cli_for_scripts_and_its_user_errors(results, tmp_path, capsys):
    assert main(["analyze", str(results), "--format", "json", "--no-report", "--constraint", "quality<=1"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["objectives"] == {"quality": "min", "energy_j": "min"} and document["considered"] == TRIALS
    assert document["front"] and document["hypervolume"] > 0 and document["baseline"] == "baseline-big"
    assert [row["approach"] for row in document["table"]][-1] == "baseline-big"

    assert main(["analyze", str(results), "--format", "csv", "--no-report", "--out", str(tmp_path)]) == 0
    written = capsys.readouterr().out.split()
    front = pd.read_csv(tmp_path / "front.csv")
    assert str(tmp_path / "front.csv") in written and set(front["trial_id"]) == set(document["front"][i]["trial_id"] for i in range(len(front)))

    no_record = copy(results, tmp_path, "search.yaml")
    for argv, message in [
        (["analyze", str(results), "--constraint", "watts<=1"], "'watts' is not in the results"),
        (["analyze", str(results), "--baseline", "nope"], "'nope' has no finished run"),
        (["analyze", str(results), "--objectives", "quality:lowest"], "must be 'min' or 'max'"),
        (["analyze", str(no_record)], "objectives are unknown"),
    ]:
        assert main([*argv, "--no-report"]) == 2
        assert message in capsys.readouterr().err
    assert main(["analyze", str(no_record), "--objectives", "quality,energy_j", "--no-report", "--format", "json"]) == 0


@pytest.mark.slow
def test_plots_and_report_from_the_search(results, capsys):
    assert main(["analyze", str(results)]) == 0
    printed = capsys.readouterr().out
    assert "Pareto-optimal trials" in printed and "Against baseline-big" in printed and "Energy gain" in printed
    out = results / "analysis"
    names = {"front", "training-quality", "training-loss", "training-energy", "structure-kept_fraction", "hypervolume"}
    for name in names:
        png = (out / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    report = (out / "report.html").read_text()
    assert "<script src" not in report and "Plotly.newPlot" in report  # self-contained: plotly.js inlined
    result = analysis.analyse(analysis.load(results))
    assert all(trial_id in report for trial_id in result.front["trial_id"])

    figures = {figure.name: figure for figure in build_figures(result, analysis.load_history(results))}
    assert set(figures) == names
    front_points = next(trace for trace in figures["front"].traces if trace.name == "Pareto front" and trace.kind == "markers")
    assert sorted(front_points.y) == sorted(result.front["quality"])
    knee = next(trace for trace in figures["front"].traces if trace.name == "knee")
    assert (knee.x[0], knee.y[0]) == (result.knee["energy_j"], result.knee["quality"])
    energy_lines = figures["training-energy"].traces
    assert len(energy_lines) == TRIALS and all(len(line.x) == EVALUATIONS for line in energy_lines)
    assert {line.name for line in figures["structure-kept_fraction"].traces} == {"data-selection"}


@pytest.mark.slow
@pytest.mark.skipif(find_browser() is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_report_renders_in_headless_chromium(results, tmp_path):
    if not (results / "analysis" / "report.html").exists():
        assert main(["analyze", str(results), "--format", "json"]) == 0
    check = check_report(results / "analysis" / "report.html", tmp_path / "report.png")
    assert check.console == []  # no script error, no failed load
    assert check.plots == 6 and check.front_points >= TRIALS
    assert check.screenshot.stat().st_size > 50_000


def test_gate_rates_draw_one_heatmap_per_gated_trial_not_one_plot_per_gate(tmp_path):
    from greentune.analysis.figures import gate_figures, history_figures
    from greentune.analysis.render import to_html_div, to_png

    steps = [10, 20, 30]
    gated = pd.DataFrame({"trial_id": "g", "approach": "layer-gating", "step": steps, "quality": [0.5, 0.6, 0.7],
                          "gate_open_ratio": [1.0, 0.67, 0.67],
                          **{f"gate_rate_{index}": [1.0, 0.9 - 0.4 * index, 0.95 - 0.45 * index] for index in range(3)}})
    plain = pd.DataFrame({"trial_id": "b", "approach": "baseline", "step": steps, "quality": [0.5, 0.6, 0.7]})
    history = pd.concat([gated, plain], ignore_index=True)
    assert not any(figure.name.startswith("structure-gate_rate") for figure in history_figures(history))
    assert "structure-gate_open_ratio" in {figure.name for figure in history_figures(history)}
    (figure,) = gate_figures(history)
    (heatmap,) = figure.traces
    assert figure.name == "gates-g" and heatmap.kind == "heatmap"
    assert heatmap.z.shape == (3, 3) and list(heatmap.x) == steps
    assert heatmap.z[2].tolist() == pytest.approx([1.0, 0.1, 0.05])  # row = gate 2, across the evaluations
    png = to_png(figure, tmp_path / "gates.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "heatmap" in to_html_div(figure)
