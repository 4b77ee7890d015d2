"""Tasks by name: data, model variants, loss, quality metric and training defaults.

Each module in this package registers its task with ``@register_task``;
``create_task(name, **options)`` builds one. A task's training defaults are a
``TrainSettings`` that a trial's ``train:`` overrides field by field.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from ..data import DeviceData


@dataclass(frozen=True)
class TrainSettings:
    """How a task trains by default; every field can be overridden per trial.

    ``steps`` counts optimizer steps (iterations); when ``epochs`` is set it
    wins and is converted with the number of batches per epoch. The
    ``step`` schedule multiplies the learning rate by ``lr_gamma`` at each
    of ``lr_milestones`` (epochs), as the papers' staged decays do
    (``torch.optim.lr_scheduler.MultiStepLR``).
    """

    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"  # or "cosine", or "step"
    lr_milestones: tuple[float, ...] = ()  # epochs, for the step schedule
    lr_gamma: float = 0.1
    batch_size: int = 100
    steps: int = 1000
    epochs: float | None = None
    eval_every: int = 500
    drop_last: bool = False
    precision: str = "fp32"  # or "bf16": forward passes under bf16 autocast (GPU runs)
    channels_last: bool = False  # 4-d weights and inputs in NHWC order (GPU convolutions)

    def override(self, changes: Mapping[str, Any]) -> "TrainSettings":
        fields = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ValueError(f"train has no setting {unknown[0]!r}; valid: {', '.join(sorted(fields))}")
        settings = dataclasses.replace(self, **changes)
        if settings.optimizer not in ("sgd", "adam"):
            raise ValueError(f"train.optimizer must be 'sgd' or 'adam', got {settings.optimizer!r}")
        if settings.precision not in ("fp32", "bf16"):
            raise ValueError(f"train.precision must be 'fp32' or 'bf16', got {settings.precision!r}")
        if not isinstance(settings.channels_last, bool):
            raise ValueError(f"train.channels_last must be true or false, got {settings.channels_last!r}")
        if settings.schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"train.schedule must be 'constant', 'cosine' or 'step', got {settings.schedule!r}")
        milestones = settings.lr_milestones
        if not isinstance(milestones, (list, tuple)) or any(not isinstance(m, (int, float)) or m <= 0 for m in milestones) \
                or list(milestones) != sorted(milestones):
            raise ValueError(f"train.lr_milestones must be increasing positive epochs, e.g. [60, 120, 160]; got {milestones!r}")
        if settings.schedule == "step" and not milestones:
            raise ValueError("train.schedule 'step' needs train.lr_milestones, the epochs where the lr drops, e.g. [60, 120, 160]")
        settings = dataclasses.replace(settings, lr_milestones=tuple(milestones))
        for name in ("batch_size", "steps", "eval_every"):
            if not isinstance(getattr(settings, name), int) or getattr(settings, name) < 1:
                raise ValueError(f"train.{name} must be a positive integer, got {getattr(settings, name)!r}")
        return settings


class Task:
    """A supervised problem: splits on a device, named model variants, a quality metric."""

    name: ClassVar[str]
    quality: ClassVar[str]  # the metric reported as ``quality``
    mode: ClassVar[str]  # "min" or "max" for the quality metric
    models: ClassVar[tuple[str, ...]]
    default_model: ClassVar[str]
    defaults: ClassVar[TrainSettings] = TrainSettings()

    def splits(self, device: torch.device, batch_size: int, seed: int) -> tuple[DeviceData, DeviceData]:
        """Training and held-out data on ``device``."""
        raise NotImplementedError

    def build_model(self, variant: str) -> nn.Module:
        raise NotImplementedError

    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, train: DeviceData, held_out: DeviceData) -> dict[str, float]:
        """Metrics of the current model; must include ``self.quality``."""
        raise NotImplementedError

    def check_model(self, variant: str) -> None:
        if variant not in self.models:
            raise ValueError(f"task {self.name!r} has no model {variant!r}; choose from {', '.join(self.models)}")


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    _TASKS[cls.name] = cls
    return cls


def available_tasks() -> dict[str, type[Task]]:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return dict(_TASKS)


def create_task(name: str, **options: Any) -> Task:
    tasks = available_tasks()
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(sorted(tasks))}")
    try:
        return tasks[name](**options)
    except TypeError as error:
        raise ValueError(f"task {name!r}: {error}") from None


def mean_loss(model: nn.Module, data: DeviceData, loss_fn) -> float:
    """Average of ``loss_fn`` over one pass, weighting batches by size."""
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, targets in data.batches():
            total += float(loss_fn(model(inputs), targets)) * len(inputs)
            count += len(inputs)
    return total / count
