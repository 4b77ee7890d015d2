"""The report and its figures from small constructed tables: labels, legends, repeats, and how it lays out in Chromium."""

import numpy as np
import pandas as pd

from greentune import analysis
from greentune.analysis.report import write_report

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


def test_seed_noise_front_only_with_repeats(tmp_path):
    single = analysis.analyse(trials(seeds=1), LOSS)
    assert single.noisy.empty and "Seed-noise front" not in analysis.format_text(single)
    report = write_report(single, [], tmp_path / "single.html").read_text()
    assert "front_probability" not in report and "ran once" in report

    repeated = analysis.analyse(trials(seeds=2), LOSS)
    assert (repeated.noisy["runs"] == 2).all()
    assert "front_probability" in write_report(repeated, [], tmp_path / "repeated.html").read_text()
