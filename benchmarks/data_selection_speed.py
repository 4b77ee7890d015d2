"""Data selection's training time and energy per epoch relative to the baseline's.

Runs the teacher–student task (baseline big, 3500 steps) in this process at
each selectivity, interleaving the settings over several rounds so that
machine drift hits all of them alike, and prints medians of the ratios
against the baseline (selectivity 1.0 is the baseline: it skips nothing).

    python benchmarks/data_selection_speed.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from greentune import techniques
from greentune.trainables.energy import open_meter
from greentune.trainables.loop import Training
from greentune.trainables.tasks import create_task
from record import record

SELECTIVITIES = (1.0, 0.75, 0.5, 0.25)


def run(task, selectivity: float, seed: int) -> dict:
    technique = techniques.create(["data_selection"], {"data_selection": {"selectivity": selectivity}})
    training = Training(task, technique, task.defaults, model="big", seed=seed, meter=open_meter(False))
    for metrics in training.evaluations():
        pass
    training.meter.close()
    epochs = training.total_steps / training.steps_per_epoch
    return {"epoch_s": metrics["time_s"] / epochs, "energy_j": metrics["energy_j"], "source": metrics["energy_source"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = create_task("teacher_student")
    runs: dict[float, list[dict]] = {s: [] for s in SELECTIVITIES}
    for round_index in range(args.rounds):
        for selectivity in SELECTIVITIES:
            runs[selectivity].append(run(task, selectivity, seed=round_index))
    print(f"teacher-student, baseline big, 3500 steps, {args.rounds} interleaved rounds, medians; energy source: {runs[1.0][0]['source']}")
    print(f"{'selectivity':>11} {'epoch ms':>9} {'time / baseline':>16} {'energy / baseline':>18} {'(ratio) / selectivity':>22}")
    figures = []
    for selectivity in SELECTIVITIES:
        time_ratio = statistics.median(r["epoch_s"] / b["epoch_s"] for r, b in zip(runs[selectivity], runs[1.0]))
        energy_ratio = statistics.median(r["energy_j"] / b["energy_j"] for r, b in zip(runs[selectivity], runs[1.0]))
        epoch_ms = 1e3 * statistics.median(r["epoch_s"] for r in runs[selectivity])
        print(f"{selectivity:>11.2f} {epoch_ms:>9.2f} {time_ratio:>16.3f} {energy_ratio:>18.3f} {time_ratio / selectivity:>22.3f}")
        if selectivity < 1.0:
            figures.append((f"selectivity {selectivity}: epoch time / energy vs baseline", f"{time_ratio:.3f} / {energy_ratio:.3f}"))
    record(
        "data_selection_speed",
        figures,
        what=f"data selection's epoch time and energy vs the baseline (teacher-student, baseline big, 3500 steps), "
        f"medians of {args.rounds} interleaved rounds; energy source {runs[1.0][0]['source']}",
    )


if __name__ == "__main__":
    main()
