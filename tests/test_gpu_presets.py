"""Every GPU-scale CIFAR preset, each approach as the preset configures it, trains a few steps on CPU.

The presets cannot run here at their scale, but everything except the scale
is theirs: the model, the techniques with the parameters a search would
sample first, the training settings (epochs swapped for four steps, or 40
where the widths change on a schedule) and the data pipeline, on tiny files
in torchvision's format.
"""

from __future__ import annotations

import pytest
import yaml

from greentune.search.config import load_search, sample_trial
from greentune.search.presets import preset_path, preset_paths
from greentune.techniques import available
from greentune.techniques.resizing import ScheduledResize
from greentune.trainables.trial import build_training

from helpers import write_cifar

CIFAR_PRESETS = sorted(
    name for name, path in preset_paths().items() if yaml.safe_load(path.read_text())["task"].startswith("cifar")
)


def test_the_cifar_presets_are_the_gpu_scale_ones():
    assert len(CIFAR_PRESETS) == 7 and all("resnet110" in name for name in CIFAR_PRESETS if "gating" in name)


def steps_for(techniques: list[str]) -> int:
    """Growing and pruning resize 12 times within 35% of the run, each at its own step: 40 steps; the rest train 4."""
    return 40 if any(issubclass(available()[name], ScheduledResize) for name in techniques) else 4


@pytest.mark.parametrize("preset", CIFAR_PRESETS)
def test_each_approach_of_the_preset_trains_on_cpu(preset, tmp_path, monkeypatch):
    search = load_search(preset_path(preset))
    dataset = search.settings.task
    write_cifar(tmp_path, monkeypatch, dataset, classes=10 if dataset == "cifar10" else 100)
    for approach in search.approaches:
        config = sample_trial(search.settings, approach)
        steps = steps_for(config["techniques"])
        config.update(device="cpu", task_options={"data_dir": str(tmp_path), "download": False})
        config["train"] = {**config["train"], "epochs": None, "steps": steps, "eval_every": steps // 2, "batch_size": 8, "precision": "fp32"}
        training = build_training(config)
        history = list(training.evaluations())
        assert history[-1]["step"] == steps, f"{preset}/{approach.name} stopped early"
        assert 0.0 <= history[-1]["quality"] <= 1.0
