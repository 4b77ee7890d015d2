"""The teacher–student task of seed 000 (III-B-1), after GradMax.

A fixed random teacher 100:50:10 labels Gaussian inputs; students learn to
mimic it under squared loss. Training uses n = 1000 points, SGD with lr 0.01,
batch 100 and 3500 iterations, as in the paper. The held-out split is fresh
points through the same teacher. ``data_seed`` fixes the teacher and the
data; the trial's seed fixes the student and the batch order.
"""

from __future__ import annotations

import torch
from torch import nn

from . import Task, TrainSettings, mean_loss, register_task
from ..data import DeviceData
from ..models.mlp import mlp

HIDDEN = {"small": 25, "big": 50, "wide": 100}
TEACHER_SEED_OFFSET = 1_000_003


@register_task
class TeacherStudent(Task):
    name = "teacher_student"
    quality = "test_loss"
    metrics = ("test_loss", "train_loss")
    mode = "min"
    models = tuple(HIDDEN)  # small 100:25:10, big 100:50:10, wide 100:100:10
    default_model = "big"
    defaults = TrainSettings(optimizer="sgd", lr=0.01, batch_size=100, steps=3500, eval_every=500)

    def __init__(self, n_train: int = 1000, n_test: int = 1000, data_seed: int = 0):
        for name, value in (("n_train", n_train), ("n_test", n_test)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"task_options.{name} must be a positive integer, got {value!r}")
        if not isinstance(data_seed, int) or isinstance(data_seed, bool):
            raise ValueError(f"task_options.data_seed must be an integer, got {data_seed!r}")
        self.n_train, self.n_test, self.data_seed = n_train, n_test, data_seed

    def splits(self, device, batch_size, seed):
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(TEACHER_SEED_OFFSET + self.data_seed)  # never a student's seed
            teacher = mlp([100, 50, 10])  # PyTorch's default initialisation
            inputs = torch.randn(self.n_train + self.n_test, 100)
            targets = teacher(inputs)
        train, test = slice(0, self.n_train), slice(self.n_train, None)
        return (
            DeviceData(inputs[train].to(device), targets[train].to(device), batch_size, seed=seed),
            DeviceData(inputs[test].to(device), targets[test].to(device), 1000),
        )

    def build_model(self, variant):
        self.check_model(variant)
        return mlp([100, HIDDEN[variant], 10])

    def loss_fn(self, outputs, targets):
        return nn.functional.mse_loss(outputs, targets)

    def evaluate(self, model, train, held_out):
        return {"test_loss": mean_loss(model, held_out, self.loss_fn), "train_loss": mean_loss(model, train, self.loss_fn)}
