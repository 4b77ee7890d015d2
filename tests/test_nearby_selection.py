"""Feather's thresholds searched near the last ones keep exactly the weights that the exact quantile keeps."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from greentune import techniques
from greentune.techniques.feather import FlatWeights, estimated_sparsity
from greentune.techniques.nearby_selection import NearbySelection
from greentune.trainables.energy import CpuTimeEstimate, EnergyMeter
from greentune.trainables.loop import Training
from greentune.trainables.models import create_model
from greentune.trainables.tasks import create_task

from helpers import make_training


def exact_kept(technique, sparsity: float) -> list[int]:
    """The kept counts as Feather found them before: the exact k-th smallest |w| by introselect over all weights
    (``global``) or over each layer (ASL+, at the counts its corrected estimates give), and the weights above it."""
    magnitudes = [layer.dense_weight.detach().abs().flatten().numpy() for layer in technique.layers]
    if technique.backbone == "global":
        everything = np.concatenate(magnitudes)
        count = round(sparsity * len(everything))
        thresholds = [np.partition(everything, count - 1)[count - 1] if count > 0 else np.float32(0.0)] * len(magnitudes)
    else:
        state = technique.thresholds
        counts = [min(len(part), round(estimated_sparsity(r + state.shift) * len(part))) for r, part in zip(state.relative.tolist(), magnitudes)]
        thresholds = [np.partition(part, count - 1)[count - 1] if count > 0 else np.float32(0.0) for part, count in zip(magnitudes, counts)]
    return [int(np.count_nonzero(part > threshold)) for part, threshold in zip(magnitudes, thresholds)]


def check_every_step(training: Training, steps: int) -> int:
    """Train ``steps`` steps, comparing the kept counts with the exact quantile's after each; the whole searches made."""
    technique = training.technique
    for _ in range(steps):
        training._train_step()
        exact = exact_kept(technique, technique.scheduled_sparsity(training.step))
        assert [int(count) for count in technique.kept] == exact, training.step
    return technique.thresholds.selection.full_searches


@pytest.fixture(params=["numpy", "tensor"])
def path(request, monkeypatch):
    """The CPU's NumPy selection, or the tensor ops an accelerator runs (here on the CPU)."""
    if request.param == "tensor":
        monkeypatch.setattr(FlatWeights, "on_cpu", property(lambda self: False))
        monkeypatch.setattr(NearbySelection, "on_cpu", property(lambda self: False))
    return request.param


@pytest.mark.parametrize("backbone", ["global", "asl"])
def test_a_600_step_mlp_run_keeps_exactly_the_exact_quantiles_counts(backbone, path):
    technique = techniques.create(["feather"], {"feather": {"sparsity": 0.9, "target_fraction": 0.5, "backbone": backbone}})
    training = make_training(technique, steps=601, model="wide")
    full_searches = check_every_step(training, 600)
    assert full_searches < 600 * len(technique.thresholds.selection.previous) // 10  # mostly found in the band


@pytest.mark.parametrize("backbone", ["global", "asl"])
def test_a_resnet20_run_keeps_exactly_the_exact_quantiles_counts(backbone):
    task = create_task("synthetic_images", n_train=64, n_test=16, size=16)
    settings = task.defaults.override({"steps": 61, "eval_every": 61, "batch_size": 16, "epochs": None})
    technique = techniques.create(["feather"], {"feather": {"sparsity": 0.9, "target_fraction": 0.5, "backbone": backbone}})
    training = Training(task, technique, settings, model=lambda: create_model("resnet20", num_classes=10), seed=0,
                        meter=EnergyMeter([CpuTimeEstimate()]))
    full_searches = check_every_step(training, 60)
    assert full_searches < 60 * len(technique.thresholds.selection.previous) // 10  # mostly found in the band


def test_the_k_th_values_are_a_full_selections_whatever_the_band(path):
    """Values that jump about from call to call: in the band, below it, above it, and ties at the k-th."""
    generator = torch.Generator().manual_seed(0)
    bounds = [0, 300, 301, 1000]
    selection = NearbySelection(bounds)
    values = torch.empty(1000)
    for round_ in range(200):
        values.copy_(torch.rand(1000, generator=generator) * (1 + round_ % 7))
        values[:50] = values[60]  # ties
        ks = [int(torch.randint(0, end - start + 1, (), generator=generator)) for start, end in zip(bounds[:-1], bounds[1:])]
        expected = [float(values[start:end].kthvalue(k).values) if k else 0.0 for start, end, k in zip(bounds[:-1], bounds[1:], ks)]
        assert [float(value) for value in selection.select(values, ks, selection.count(values))] == expected


def test_a_selection_saved_on_an_accelerator_resumes_on_a_cpu(monkeypatch):
    values = torch.randperm(1000, generator=torch.Generator().manual_seed(1)).add(1).div(1000)  # k-th: k / 1000
    selection = NearbySelection([0, 1000])
    with monkeypatch.context() as accelerator:
        accelerator.setattr(NearbySelection, "on_cpu", property(lambda self: False))
        selection.select(values, [500], selection.count(values))
    resumed = pickle.loads(pickle.dumps(selection))
    assert resumed.select(values, [503], resumed.count(values)) == [float(values.kthvalue(503).values)]
    assert resumed.full_searches == 1  # the first, with no band yet; the second was found in the band
