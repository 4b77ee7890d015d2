"""KMNIST (Kuzushiji-MNIST) with the MLP 784-256-256-10 of seed 001 (section 3.2).

60,000 training and 10,000 test images of 28x28 cursive Japanese
characters in 10 classes, read by torchvision into the data directory
(``data_dir``, see ``trainables.datasets``). Training images get a random
affine transform (rotation ±10°, shift ±10%, zoom 0.9-1.1; the paper does
not give its ranges) on the device, per batch. Adam with lr 5e-4 and batch
512 as in the paper; 50 epochs (the paper does not say how many).
"""

from __future__ import annotations

from torchvision.datasets import KMNIST as TorchvisionKMNIST

from . import TrainSettings, register_task
from ..augment import RandomAffine
from ..data import DeviceData
from ..datasets import torchvision_dataset, torchvision_images
from .classification import MLPClassification

STEPS_PER_EPOCH = 118  # ceil(60,000 / 512)


@register_task
class KMNIST(MLPClassification):
    name = "kmnist"
    inputs = 784
    classes = 10
    defaults = TrainSettings(optimizer="adam", lr=5e-4, batch_size=512, epochs=50, eval_every=STEPS_PER_EPOCH)

    def __init__(self, data_dir: str | None = None, hidden: list[int] = (256, 256), augment: bool = True, download: bool = True):
        super().__init__(list(hidden))
        self.data_dir, self.augment, self.download = data_dir, augment, download

    def fetch_data(self):
        for train in (True, False):
            torchvision_dataset(TorchvisionKMNIST, self.data_dir, train, self.download)

    def splits(self, device, batch_size, seed):
        def load(train: bool):
            images, labels = torchvision_images(TorchvisionKMNIST, self.data_dir, train, self.download)
            return images.reshape(len(images), -1).to(device).float() / 255, labels.to(device)

        augment = RandomAffine((1, 28, 28)) if self.augment else None
        return DeviceData(*load(True), batch_size, seed=seed, augment=augment), DeviceData(*load(False), 2048)
