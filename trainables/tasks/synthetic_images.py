"""Synthetic CIFAR-shaped classification for CPU runs of image techniques, with nothing to download.

Each class is a smooth random pattern (a 4x4 grid of colours upsampled to
``size`` pixels); an example is its class pattern buried in Gaussian noise
of standard deviation ``noise``. A
network must pool over space and tell colour layouts apart, as on CIFAR,
at a scale a 2-core machine trains in minutes. ``data_seed`` fixes the
patterns and the data; the trial's seed the batch order and augmentation.
Loss, accuracy and the crop/flip augmentation are CIFAR's.
"""

from __future__ import annotations

import torch
from torch import nn

from . import TrainSettings, register_task
from ..data import DeviceData
from ..models import create_model
from .cifar import Cifar, random_crop_flip

VARIANTS = {"gated_resnet8": "gated_resnet8", "gated_resnet20": "gated_resnet20"}
DATA_SEED_OFFSET = 2_000_003


@register_task
class SyntheticImages(Cifar):
    name = "synthetic_images"
    models = tuple(VARIANTS)
    default_model = "gated_resnet8"
    defaults = TrainSettings(
        optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine", batch_size=64,
        epochs=10, eval_every=32,
    )

    def __init__(self, n_train: int = 2048, n_test: int = 512, classes: int = 10, size: int = 16,
                 noise: float = 1.0, width: int = 8, data_seed: int = 0):
        if min(n_train, n_test, classes, size, width) < 1 or noise < 0:
            raise ValueError("synthetic_images needs positive n_train, n_test, classes, size, width and noise >= 0")
        self.n_train, self.n_test, self.classes, self.size = n_train, n_test, classes, size
        self.noise, self.width, self.data_seed = noise, width, data_seed

    def fetch_data(self) -> None:
        """Nothing to fetch: the images are generated (CIFAR's download does not apply)."""

    def splits(self, device, batch_size, seed):
        generator = torch.Generator().manual_seed(DATA_SEED_OFFSET + self.data_seed)
        patterns = torch.randn(self.classes, 3, 4, 4, generator=generator)
        patterns = nn.functional.interpolate(patterns, size=self.size, mode="bilinear", align_corners=False)
        count = self.n_train + self.n_test
        labels = torch.randint(self.classes, (count,), generator=generator)
        images = patterns[labels]
        images = images + self.noise * torch.randn(images.shape, generator=generator)
        train, test = slice(0, self.n_train), slice(self.n_train, None)
        return (
            DeviceData(images[train].to(device), labels[train].to(device), batch_size, seed=seed, augment=random_crop_flip),
            DeviceData(images[test].to(device), labels[test].to(device), 1000),
        )

    def build_model(self, variant):
        self.check_model(variant)
        return create_model(VARIANTS[variant], num_classes=self.classes, width=self.width)
