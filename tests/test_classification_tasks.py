"""KMNIST, HIGGS and digits: data from files the tests write, dense baselines, clear errors."""

from __future__ import annotations

import gzip

import pytest
import torch
from torchvision.datasets import KMNIST

from greentune import techniques
from greentune.trainables.augment import RandomAffine
from greentune.trainables.datasets import write_idx
from greentune.trainables.energy import CpuTimeEstimate, EnergyMeter
from greentune.trainables.loop import Training
from greentune.trainables.memory import PeakMemory
from greentune.trainables.tasks import create_task


def write_kmnist(root, train=64, test=32):
    raw = root / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = torch.arange(count) % 10
        images = torch.randint(0, 20, (count, 28, 28), generator=generator).float()
        images[:, 7:21, 7:21] += 23 * labels.view(-1, 1, 1)  # brightness tells the class, wherever it moves
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images.clamp(max=255))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def short_training(task, technique=None, model="full", **train):
    settings = task.defaults.override({"epochs": None, **train})
    return Training(
        task, technique or techniques.create(["baseline"]), settings, model=model, seed=0, meter=EnergyMeter([CpuTimeEstimate()])
    )


def test_kmnist_reads_torchvision_files_and_trains_an_mlp(tmp_path):
    write_kmnist(tmp_path)
    task = create_task("kmnist", data_dir=str(tmp_path), download=False)
    training = short_training(task, steps=40, eval_every=40, batch_size=16, lr=1e-2)
    assert training.train_data.inputs.shape == (64, 784) and training.held_out.inputs.shape == (32, 784)
    assert 0.0 <= float(training.train_data.inputs.min()) and float(training.train_data.inputs.max()) <= 1.0
    metrics = list(training.evaluations())[-1]
    assert metrics["accuracy"] > 0.5
    assert [layer.out_features for layer in training.model if hasattr(layer, "out_features")] == [256, 256, 10]


def test_kmnist_without_files_names_the_directory_to_fill(tmp_path, monkeypatch):
    task = create_task("kmnist", data_dir=str(tmp_path), download=False)
    with pytest.raises(ValueError, match=f"{tmp_path}/KMNIST/raw.*train-images-idx3-ubyte"):
        task.splits(torch.device("cpu"), 16, 0)

    def offline(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(KMNIST, "download", offline)
    task = create_task("kmnist", data_dir=str(tmp_path), download=True)
    with pytest.raises(ValueError, match="download failed"):
        task.splits(torch.device("cpu"), 16, 0)


def test_random_affine_moves_images_per_sample_and_the_identity_keeps_them():
    images = torch.zeros(8, 784)
    images.view(8, 28, 28)[:, 10:18, 10:18] = 1.0
    moved = RandomAffine((1, 28, 28), degrees=20, translate=0.2)(images, torch.Generator().manual_seed(0))
    assert moved.shape == images.shape and not torch.allclose(moved, images)
    assert not torch.allclose(moved[0], moved[1])  # each image its own transform
    identity = RandomAffine((1, 28, 28), degrees=0, translate=0, scale=(1, 1))(images, torch.Generator())
    torch.testing.assert_close(identity, images, atol=1e-5, rtol=0)


def write_higgs(path, rows=300):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(rows, 28, generator=generator)
    labels = (features[:, 0] + features[:, 3] > 0).float()
    lines = [",".join(f"{value:.6f}" for value in [label, *row.tolist()]) for label, row in zip(labels, features)]
    with gzip.open(path, "wt") as file:
        file.write("\n".join(lines) + "\n")
    return features, labels


def test_higgs_uses_the_first_21_features_standardised_and_keeps_its_output_dense(tmp_path):
    path = tmp_path / "HIGGS.csv.gz"
    features, labels = write_higgs(path)
    task = create_task("higgs", path=str(path), n_train=200, n_test=100)
    technique = techniques.create(["static_sparse"], {"static_sparse": {"density": 0.1}})
    training = short_training(task, technique, steps=60, eval_every=60, batch_size=32)
    train = training.train_data
    assert train.inputs.shape == (200, 21) and training.held_out.inputs.shape == (100, 21)
    torch.testing.assert_close(train.inputs.mean(0), torch.zeros(21), atol=1e-5, rtol=0)
    expected = (features[:200, :21] - features[:200, :21].mean(0)) / features[:200, :21].std(0)
    torch.testing.assert_close(train.inputs, expected, atol=1e-4, rtol=0)
    assert torch.equal(train.targets, labels[:200].long())
    output = training.model[-1]
    assert output.out_features == 1 and output not in technique.masks.layers
    metrics = list(training.evaluations())[-1]
    assert bool(torch.all(output.weight != 0)) and 0.0 <= metrics["accuracy"] <= 1.0


def test_higgs_needs_an_existing_file(tmp_path):
    with pytest.raises(ValueError, match="task_options.path"):
        create_task("higgs")
    with pytest.raises(ValueError, match="no file at"):
        create_task("higgs", path=str(tmp_path / "missing.csv.gz"))
    path = tmp_path / "small.csv.gz"
    write_higgs(path, rows=50)
    with pytest.raises(ValueError, match="50 rows but 300"):
        create_task("higgs", path=str(path), n_train=200, n_test=100).splits(torch.device("cpu"), 16, 0)


def test_parameter_equivalent_baselines_match_the_paper():
    assert create_task("kmnist").layer_sizes("param-equivalent-0.1") == [784, 33, 33, 10]
    assert create_task("digits").layer_sizes("full") == [64, 256, 256, 10]
    with pytest.raises(ValueError, match="param-equivalent-D"):
        create_task("kmnist").check_model("param-equivalent-2")


def test_parameter_equivalent_higgs_counts_its_dense_output_layer(tmp_path):
    path = tmp_path / "HIGGS.csv.gz"
    write_higgs(path, rows=5)
    task = create_task("higgs", path=str(path), n_train=3, n_test=2)
    assert task.layer_sizes("param-equivalent-0.1") == [21, 79, 79, 79, 1]
    sizes = task.layer_sizes("param-equivalent-0.03")
    narrower = [21, sizes[1] - 1, sizes[1] - 1, sizes[1] - 1, 1]
    from greentune.trainables.models.mlp import mlp_weights
    from greentune.trainables.tasks.classification import sparse_weights

    active = sparse_weights(task.sizes, 0.03, dense_output=True)
    assert mlp_weights(narrower) < active <= mlp_weights(sizes)


def test_sparse_training_learns_digits():
    task = create_task("digits")
    for name in ("static_sparse", "redr_gradient_global"):
        technique = techniques.create([name], {name: {"density": 0.1}})
        metrics = list(short_training(task, technique, steps=92, eval_every=92, lr=1e-2).evaluations())[-1]
        assert metrics["accuracy"] > 0.5 and metrics["density"] == pytest.approx(0.1, abs=0.01)


def test_the_loop_reports_peak_memory_and_time_per_epoch():
    metrics = list(short_training(create_task("digits"), steps=23, eval_every=23).evaluations())[-1]
    assert metrics["memory_source"] == "rss" and metrics["peak_memory_mb"] >= metrics["peak_memory_added_mb"] >= 0
    assert metrics["peak_memory_mb"] > 10
    assert metrics["time_per_epoch_s"] == pytest.approx(metrics["time_s"] / metrics["epoch"])


def test_peak_memory_reads_the_high_water_mark_and_falls_back_without_proc(tmp_path):
    (tmp_path / "status").write_text("Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n")
    memory = PeakMemory(torch.device("cpu"), proc=tmp_path)
    assert memory.peak_bytes() == 2048 * 1024 and memory.source == "rss"
    assert memory.added_bytes() == 1024 * 1024
    assert (tmp_path / "clear_refs").read_text() == "5"
    fallback = PeakMemory(torch.device("cpu"), proc=tmp_path / "missing")
    assert fallback.peak_bytes() > 0 and fallback.source == "rss-since-process-start"
