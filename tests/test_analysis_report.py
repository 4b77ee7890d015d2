"""The report and its figures from small constructed tables: labels, legends, repeats, and how it lays out in Chromium."""

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from greentune import analysis
from greentune.analysis.report import build_figures, write_report
from greentune.analysis.screenshot import check_report, find_browser

LOSS = {"quality": "min", "energy_j": "min"}


def trials(seeds: int = 1) -> pd.DataFrame:
    """A loss task: three approaches, each configuration run on ``seeds`` seeds."""
    rows = []
    for seed in range(seeds):
        for approach, selectivity, quality, energy in [
            ("baseline-big", None, 0.10, 100.0), ("baseline-small", None, 0.14, 60.0),
            ("data-selection", 0.5, 0.12, 50.0), ("data-selection", 0.3, 0.20, 40.0),
        ]:
            rows.append({"approach": approach, "config/data_selection/selectivity": selectivity, "seed": seed,
                         "status": "finished", "quality": quality * (1 + 0.05 * seed), "energy_j": energy + seed})
    frame = pd.DataFrame(rows)
    frame["techniques"] = np.where(frame["approach"].str.startswith("baseline"), "baseline", "data_selection")
    frame["config/approach"] = frame["approach"]
    frame["trial_id"] = [f"t{index}" for index in range(len(frame))]
    return frame


def history(frame: pd.DataFrame) -> pd.DataFrame:
    """Two evaluations per trial."""
    return pd.concat([frame[["trial_id", "approach", "quality", "energy_j"]].assign(step=step, loss=1.0 / step)
                      for step in (50, 100)], ignore_index=True)


def legend(figure) -> dict[str, bool]:
    """Each legend entry of ``figure`` and whether some trace of it draws a mark (a point, or a line between two)."""
    entries: dict[str, bool] = {}
    for trace in figure.traces:
        drawn = np.isfinite(trace.x) & np.isfinite(trace.y)
        marked = drawn.any() if trace.kind == "markers" else bool((drawn[1:] & drawn[:-1]).any())
        key = trace.group or trace.name
        entries[key] = entries.get(key, False) or marked
    return entries


def test_no_legend_entry_without_a_mark():
    frame = trials()
    unmetered = frame.iloc[[0]].assign(trial_id="u", approach="unmetered", energy_j=np.nan)  # no energy: no point to draw
    frame = pd.concat([frame, unmetered], ignore_index=True)
    result = analysis.analyse(frame, LOSS)
    steps = history(frame)
    steps = steps[~((steps["trial_id"] == "t1") & (steps["step"] == 100))]  # stopped after its first evaluation
    figures = {figure.name: figure for figure in build_figures(result, steps)}
    front = legend(figures["front"])
    assert "unmetered" not in front and all(front.values())
    assert {"baseline-big", "baseline-small", "data-selection", "Pareto front", "knee"} <= set(front)
    for name in ("training-quality", "training-loss"):
        entries = legend(figures[name])
        assert all(entries.values()) and "baseline-small" in entries  # its lone evaluation is drawn as a point


def test_seed_noise_front_only_with_repeats(tmp_path):
    single = analysis.analyse(trials(seeds=1), LOSS)
    assert single.noisy.empty and "Seed-noise front" not in analysis.format_text(single)
    report = write_report(single, [], tmp_path / "single.html").read_text()
    assert "front_probability" not in report and "ran once" in report

    repeated = analysis.analyse(trials(seeds=2), LOSS)
    assert (repeated.noisy["runs"] == 2).all()
    assert "front_probability" in write_report(repeated, [], tmp_path / "repeated.html").read_text()


def test_axes_name_the_task_metric_and_which_way_is_better(tmp_path):
    from greentune.search.config import parse_search
    from greentune.search.runner import _write_search_record

    _write_search_record(parse_search({"task": "teacher_student", "approaches": {"baseline-big": {"techniques": ["baseline"]}}}),
                         tmp_path, None)
    assert yaml.safe_load((tmp_path / "search.yaml").read_text())["quality_metric"] == {"name": "test_loss", "mode": "min"}
    trials().to_csv(tmp_path / "results.csv", index=False)
    loaded = analysis.load(tmp_path)
    result = analysis.analyse(loaded)
    figures = {figure.name: figure for figure in build_figures(result, history(loaded))}
    assert figures["front"].ylabel == "held-out loss, lower is better"
    assert figures["front"].xlabel == "training energy (J), lower is better"
    assert figures["training-quality"].ylabel == "held-out loss, lower is better"
    assert figures["training-loss"].ylabel == "training loss (window mean)"  # not an objective: no direction to claim

    unrecorded = analysis.analyse(trials(), LOSS)  # a search run before the metric was recorded
    (front,) = [figure for figure in build_figures(unrecorded, pd.DataFrame()) if figure.name == "front"]
    assert front.ylabel == "quality, lower is better"


@pytest.mark.skipif(find_browser() is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_report_fits_a_1400_pixel_window_in_chromium_and_draws_its_front(tmp_path):
    frame = trials(seeds=2)
    for index in range(12):  # a technique with many parameters: front and seed-noise tables far wider than the page
        frame[f"config/data_selection/parameter_with_a_long_name_{index}"] = frame["config/data_selection/selectivity"]
    result = analysis.analyse(frame, LOSS)
    report = write_report(result, build_figures(result, history(frame)), tmp_path / "report.html")
    check = check_report(report, tmp_path / "report.png", width=1400, height=1600)
    assert check.console == [] and check.front_points == len(frame) + len(result.front) + 1  # trials, rings, knee
    assert check.page_width <= check.window_width == 1400  # the wide tables scroll inside themselves
    shot = Image.open(check.screenshot).convert("RGB")
    assert shot.width == 1400 and check.front_box is not None
    colours = {colour for _, colour in shot.crop(check.front_box).getcolors(1 << 20)}
    assert len(colours) > 20 and (0x4E, 0x79, 0xA7) in colours  # a drawn chart, the first approach's points in its colour
