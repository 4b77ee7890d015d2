"""CIFAR-10 and CIFAR-100 (seed 000, section V), set up as in GradMax's code.

Data: torchvision's datasets in ``data_dir`` (default ``$GREENTUNE_DATA``,
else ``~/.cache/greentune/data``), read by ``trainables.datasets``: the
download runs under a file lock in that directory, so the trials starting
together on a node fetch it once and the others wait and read it. Offline
and without a copy, the error names the directory to fill.

The whole split lives on the training device as one normalised tensor;
random crop (4-pixel zero padding) and horizontal flip run there on whole
batches, so the hot loop does no per-sample Python work.

Models: ``vgg11`` and ``wrn28_1`` (baseline big) and their seed networks
``vgg11_small`` (every layer 1/4 as wide) and ``wrn28_1_small`` (each
block's first conv 1/4 as wide), from which GradMax grows and to which
filter pruning shrinks. ``resnet20``, ``resnet20x2`` (doubled channels),
``mobilenet_v1``, ``vgg19_bn`` and ``resnet50`` are the sparse-training
papers' networks, and ``gated_resnet20/56/110`` He et al.'s CIFAR ResNets
with gate slots for the ``gating`` technique (seed 004). Training follows
seed 000: SGD with momentum 0.9, batch 128, cosine learning rate, 200
epochs, lr 0.1 (the VGG-11 presets set 0.05, and 0.01 for data selection),
and GradMax's L2 of 2e-4 on the loss, i.e. weight decay 4e-4.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torchvision import datasets

from . import Task, TrainSettings, register_task
from ..data import DeviceData
from ..datasets import torchvision_dataset
from ..models import create_model

MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
VARIANTS = {
    "vgg11": ("vgg11", {}),
    "vgg11_small": ("vgg11", {"width": 0.25}),
    "wrn28_1": ("wrn28_1", {}),
    "wrn28_1_small": ("wrn28_1", {"block_width": 0.25}),
    # The networks of Feather's and GraNet's CIFAR tables (seeds 002 and 003).
    "resnet20": ("resnet20", {}),
    "resnet20x2": ("resnet20", {"width": 2.0}),
    "mobilenet_v1": ("mobilenet_v1", {}),
    "vgg19_bn": ("vgg19_bn", {}),
    "resnet50": ("resnet50_cifar", {}),
    "gated_resnet20": ("gated_resnet20", {}),
    "gated_resnet56": ("gated_resnet56", {}),
    "gated_resnet110": ("gated_resnet110", {}),
}
PAD = 4


def random_crop_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to ``PAD`` pixels (zero fill) and flipped with probability 1/2, batched."""
    count, _, height, width = images.shape
    device = images.device
    padded = nn.functional.pad(images, (PAD, PAD, PAD, PAD))
    shifts = torch.randint(0, 2 * PAD + 1, (2, count), generator=generator, device=device)
    rows = (shifts[0, :, None] + torch.arange(height, device=device))[:, None, :, None]
    columns = shifts[1, :, None] + torch.arange(width, device=device)
    flip = torch.rand(count, generator=generator, device=device) < 0.5
    columns = torch.where(flip[:, None], columns.flip(1), columns)[:, None, None, :]
    batch = torch.arange(count, device=device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return padded[batch, channel, rows, columns]


class Cifar(Task):
    dataset: ClassVar[type[datasets.CIFAR10]]
    classes: ClassVar[int]
    quality = "test_accuracy"
    metrics = ("test_accuracy", "test_loss")
    mode = "max"
    models = tuple(VARIANTS)
    default_model = "wrn28_1"
    defaults = TrainSettings(
        optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=4e-4, schedule="cosine", batch_size=128,
        epochs=200, eval_every=3910,
    )

    def __init__(self, data_dir: str | None = None, download: bool = True, subset: int | None = None):
        if subset is not None and subset < 1:
            raise ValueError(f"subset must be a positive number of training images, got {subset}")
        self.data_dir, self.download, self.subset = data_dir, download, subset

    def fetch_data(self):
        self._split(train=True)
        self._split(train=False)

    def _split(self, train: bool):
        # The archive holds both splits: the training split's download brings the test split too.
        return torchvision_dataset(self.dataset, self.data_dir, train, self.download and train)

    def splits(self, device, batch_size, seed):
        train, test = self._split(train=True), self._split(train=False)
        count = len(train.data) if self.subset is None else min(self.subset, len(train.data))
        return (
            DeviceData(*self._tensors(train, device, count), batch_size, seed=seed, augment=random_crop_flip),
            DeviceData(*self._tensors(test, device, len(test.data)), 1000),
        )

    def _tensors(self, split, device, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 HWC images to normalised float NCHW on ``device`` (converted there, copied as bytes)."""
        images = torch.from_numpy(split.data[:count]).to(device).permute(0, 3, 1, 2).float().div_(255)
        mean = torch.tensor(MEAN[self.name], device=device)[:, None, None]
        std = torch.tensor(STD[self.name], device=device)[:, None, None]
        labels = torch.as_tensor(split.targets[:count], dtype=torch.long, device=device)
        return ((images - mean) / std).contiguous(), labels

    def build_model(self, variant):
        self.check_model(variant)
        name, options = VARIANTS[variant]
        return create_model(name, num_classes=self.classes, **options)

    def loss_fn(self, outputs, targets):
        return nn.functional.cross_entropy(outputs, targets)

    def evaluate(self, model, train, held_out):
        loss, correct = torch.zeros((), device=held_out.inputs.device), torch.zeros((), device=held_out.inputs.device)
        for inputs, targets in held_out.batches():
            outputs = model(inputs).float()
            loss += nn.functional.cross_entropy(outputs, targets, reduction="sum")
            correct += (outputs.argmax(dim=1) == targets).sum()
        count = len(held_out.inputs)
        return {"test_accuracy": float(correct) / count, "test_loss": float(loss) / count}


@register_task
class Cifar10(Cifar):
    name, dataset = "cifar10", datasets.CIFAR10
    classes = 10


@register_task
class Cifar100(Cifar):
    name, dataset = "cifar100", datasets.CIFAR100
    classes = 100
