"""The CIFAR pipeline on files written in torchvision's on-disk format, and on synthetic tensors."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torchvision import datasets

from greentune import techniques
from greentune.trainables.energy import CpuTimeEstimate, EnergyMeter
from greentune.trainables.loop import Training
from greentune.trainables.models import create_model
from greentune.trainables.tasks import create_task
from greentune.trainables.datasets import DataUnavailable, torchvision_dataset
from greentune.trainables.tasks.cifar import random_crop_flip

from helpers import write_cifar


def cifar_training(task, model, technique=None, **train):
    settings = task.defaults.override({"epochs": None, "steps": 4, "eval_every": 2, "batch_size": 8, **train})
    return Training(task, technique or techniques.create(["baseline"]), settings, model=model, seed=0,
                    meter=EnergyMeter([CpuTimeEstimate()]))


@pytest.mark.parametrize("dataset, classes", [("cifar10", 10), ("cifar100", 100)])
def test_training_runs_on_tiny_files_in_torchvisions_format(tmp_path, monkeypatch, dataset, classes):
    write_cifar(tmp_path, monkeypatch, dataset, classes=classes)
    task = create_task(dataset, data_dir=str(tmp_path), download=False)
    training = cifar_training(task, "vgg11_small")
    files = 5 if dataset == "cifar10" else 1  # data_batch_1..5, or one "train" file
    assert training.train_data.inputs.shape == (8 * files, 3, 32, 32)
    assert training.train_data.inputs.dtype == torch.float32 and len(training.held_out.inputs) == 8
    history = list(training.evaluations())
    assert history[-1]["step"] == 4 and 0.0 <= history[-1]["quality"] <= 1.0
    assert history[-1]["quality"] == history[-1]["test_accuracy"]


def test_offline_without_a_copy_names_the_directory_to_fill(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(datasets.CIFAR10, "download", lambda self: offline())
    task = create_task("cifar10", data_dir=str(tmp_path / "empty"))
    with pytest.raises(DataUnavailable, match=str(tmp_path / "empty")):
        task.splits(torch.device("cpu"), 8, 0)


def test_fetching_downloads_once_and_offline_says_what_to_put_where(tmp_path, monkeypatch):
    downloads = []

    def download(dataset):
        if not dataset._check_integrity():
            downloads.append(dataset.root)
            write_cifar(tmp_path, monkeypatch)

    monkeypatch.setattr(datasets.CIFAR10, "download", download)
    task = create_task("cifar10", data_dir=str(tmp_path))
    task.fetch_data()
    task.fetch_data()
    assert downloads == [str(tmp_path)]
    assert len(task.splits(torch.device("cpu"), 8, 0)[0].inputs) == 40

    offline = create_task("cifar100", data_dir=str(tmp_path / "empty"), download=False)
    with pytest.raises(DataUnavailable, match=f"CIFAR100 is not in {tmp_path / 'empty'} and download is off; unpack https://"):
        offline.fetch_data()


def test_concurrent_trials_download_once(tmp_path, monkeypatch):
    """The second trial waits on the lock, then finds the files the first one fetched."""
    downloads = []

    def slow_download(dataset):
        if dataset._check_integrity():
            return
        downloads.append(threading.get_ident())
        time.sleep(0.2)
        write_cifar(tmp_path, monkeypatch)

    monkeypatch.setattr(datasets.CIFAR10, "download", slow_download)
    loaded = []
    threads = [threading.Thread(target=lambda: loaded.append(torchvision_dataset(datasets.CIFAR10, tmp_path, True, True))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(downloads) == 1 and len(loaded) == 2 and all(len(split.data) == 40 for split in loaded)


def test_crop_and_flip_run_on_whole_batches_and_keep_every_pixel_from_its_image():
    generator = torch.Generator().manual_seed(0)
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) + 1
    augmented = random_crop_flip(images, generator)
    assert augmented.shape == images.shape
    for original, moved in zip(images, augmented):
        nonzero = moved[moved != 0]
        assert torch.isin(nonzero, original).all()  # only shifted or flipped pixels of the same image, or padding
        assert len(nonzero) >= 3 * 4 * 4  # a shift of at most 4 keeps at least half of each side
    assert not torch.equal(augmented, images)


def test_synthetic_batches_train_vgg_and_wrn_with_channels_last_and_bf16():
    task = create_task("cifar10", data_dir="unused")
    task.splits = lambda device, batch_size, seed: synthetic_splits(batch_size, seed, size=16)
    for model in ("vgg11_small", "wrn28_1_small"):
        training = cifar_training(task, model, channels_last=True, precision="bf16", steps=2, eval_every=2)
        metrics = list(training.evaluations())[-1]
        assert metrics["flops"] > 0 and 0.0 <= metrics["quality"] <= 1.0
        conv = next(module for module in training.model.modules() if isinstance(module, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def synthetic_splits(batch_size, seed, size=32):
    from greentune.trainables.data import DeviceData

    generator = torch.Generator().manual_seed(seed)
    inputs, labels = torch.randn(16, 3, size, size, generator=generator), torch.randint(0, 10, (16,), generator=generator)
    return DeviceData(inputs, labels, batch_size, seed=seed, augment=random_crop_flip), DeviceData(inputs, labels, 16)


def test_gradmax_grows_the_wrn_seed_network_to_baseline_big_with_channels_last():
    task = create_task("cifar10", data_dir="unused")
    task.splits = lambda device, batch_size, seed: synthetic_splits(batch_size, seed, size=8)
    gradmax = techniques.create(["gradmax"], {"gradmax": {"width_ratio": 4.0, "start": 0.25, "span": 0.5, "steps": 3}})
    training = cifar_training(task, "wrn28_1_small", gradmax, steps=8, eval_every=8, channels_last=True)
    list(training.evaluations())
    big = create_model("wrn28_1")
    assert [block.conv1.out_channels for block in training.model.blocks] == [block.conv1.out_channels for block in big.blocks]
    conv = training.model.blocks[0].conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert training.optimizer.state[conv]["momentum_buffer"].stride() == conv.stride()
