"""Tasks by name or by import path: data, model variants, loss, quality metric and training defaults.

Each module in this package registers its task with ``@register_task``;
``create_task(name, **options)`` builds one. A name with a colon,
``my_pkg.my_module:make_task``, is imported instead: a ``Task`` subclass or
a factory returning a ``Task``, called with the options, so users bring
their own tasks without editing greentune. A task's training defaults are a
``TrainSettings`` that a trial's ``train:`` overrides field by field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from greentune.registry import Registry, call_factory, checked_factory, import_submodules
from greentune.techniques.space import is_number

from ..data import DeviceData, as_data


@dataclass(frozen=True)
class TrainSettings:
    """How a task trains by default; every field can be overridden per trial.

    ``steps`` counts optimizer steps (iterations); when ``epochs`` is set it
    wins and is converted with the number of batches per epoch. Overriding
    ``steps`` alone clears a default ``epochs``: a file that asks for 1000
    steps on a task that trains 30 epochs by default gets 1000 steps. The
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
    compile: bool = False  # training forward passes through torch.compile, which pays on some models and not others

    def override(self, changes: Mapping[str, Any]) -> "TrainSettings":
        if "steps" in changes and "epochs" not in changes:  # steps asked for win over a task's default epochs
            changes = {**changes, "epochs": None}
        fields = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ValueError(f"train has no setting {unknown[0]!r}; valid: {', '.join(sorted(fields))}")
        settings = dataclasses.replace(self, **changes)
        if settings.optimizer not in ("sgd", "adam"):
            raise ValueError(f"train.optimizer must be 'sgd' or 'adam', got {settings.optimizer!r}")
        if settings.precision not in ("fp32", "bf16"):
            raise ValueError(f"train.precision must be 'fp32' or 'bf16', got {settings.precision!r}")
        for name in ("channels_last", "compile", "drop_last"):
            if not isinstance(getattr(settings, name), bool):
                raise ValueError(f"train.{name} must be true or false, got {getattr(settings, name)!r}")
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
        if not _finite(settings.lr) or settings.lr <= 0:
            raise ValueError(f"train.lr must be a positive number, got {settings.lr!r}")
        if settings.epochs is not None and (not _finite(settings.epochs) or settings.epochs <= 0):
            raise ValueError(f"train.epochs must be a positive number (or left out for steps), got {settings.epochs!r}")
        for name in ("momentum", "weight_decay", "lr_gamma"):
            if not _finite(getattr(settings, name)) or getattr(settings, name) < 0:
                raise ValueError(f"train.{name} must be a number >= 0, got {getattr(settings, name)!r}")
        return settings


def _finite(value: Any) -> bool:
    """A number, and neither NaN nor infinite: a learning rate of .nan trains nothing and says nothing."""
    return is_number(value) and math.isfinite(value)


class Task:
    """A supervised problem: data, named model variants, a loss and a quality metric.

    A task of one's own subclasses this (or is a ``SimpleTask``) and gives:

    - ``data()``: the training and held-out splits, each as ``(inputs,
      targets)`` tensors (kept on the device), a map-style
      ``torch.utils.data.Dataset`` of ``(input, target)`` pairs (streamed
      through a DataLoader with ``num_workers`` workers and pinned memory;
      a batch data selection skips is never read), or a function
      ``batch_size -> DataLoader`` (used as it comes). Built-in tasks
      override ``splits`` instead, to place data on the device themselves;
    - ``models``: ``{variant: function returning an nn.Module}`` (or variant
      names with ``build_model``) and ``default_model``;
    - ``loss_fn(outputs, targets)``;
    - ``quality`` and ``mode``: the metric searched (``"min"`` or ``"max"``).
      The default ``evaluate`` reports ``test_loss`` and, for integer class
      targets, ``accuracy``; override it for other metrics;
    - ``defaults``: ``TrainSettings``, which a search's ``train:`` overrides;
    - optionally ``fetch_data()``, for data that is downloaded before use.
    """

    name: ClassVar[str]
    quality: ClassVar[str] = "test_loss"  # the metric reported as ``quality``
    metrics: ClassVar[tuple[str, ...]] = ("test_loss", "accuracy")  # what ``evaluate`` reports; name yours if you override it
    mode: ClassVar[str] = "min"  # "min" or "max" for the quality metric
    models: ClassVar[tuple[str, ...] | Mapping[str, Callable[[], nn.Module]]]
    default_model: ClassVar[str]
    defaults: ClassVar[TrainSettings] = TrainSettings()
    num_workers: ClassVar[int] = 0  # DataLoader workers for a streamed Dataset
    eval_batch_size: ClassVar[int] = 1000

    def fetch_data(self) -> None:
        """Bring the data onto this machine (downloading it), or raise ``ValueError`` saying what to put where.

        A search whose trials run on the machine it was started on calls this
        first, so missing data is one line before any trial rather than every
        trial failing, and a download happens once. A task whose data needs
        no fetching (in memory, generated, or read where it already lies)
        leaves it as it is.
        """

    def data(self) -> tuple[Any, Any]:
        """Training and held-out data: tensors, a Dataset or a DataLoader factory each (see the class)."""
        raise NotImplementedError(f"task {type(self).__name__} must define data() (or splits())")

    def splits(self, device: torch.device, batch_size: int, seed: int) -> tuple[Any, Any]:
        """Training and held-out data as the loop reads them (``trainables.data``)."""
        train, held_out = self.data()
        return (
            as_data(train, device, batch_size, seed=seed, num_workers=self.num_workers),
            as_data(held_out, device, self.eval_batch_size, num_workers=self.num_workers),
        )

    def build_model(self, variant: str) -> nn.Module:
        self.check_model(variant)
        if not isinstance(self.models, Mapping):
            raise NotImplementedError(f"task {self.name!r} lists model names; give models as {{name: builder}} or define build_model")
        return self.models[variant]()

    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"task {type(self).__name__} must define loss_fn(outputs, targets)")

    def evaluate(self, model: nn.Module, train, held_out) -> dict[str, float]:
        """Metrics of the current model; must include ``self.quality``.

        By default the held-out mean loss, and the accuracy of the argmax
        where targets are integer class labels.
        """
        loss, correct, count = 0.0, 0, 0
        for inputs, targets in held_out.batches():
            outputs = model(inputs)
            loss += float(self.loss_fn(outputs, targets)) * len(targets)
            if not targets.is_floating_point() and outputs.dim() == targets.dim() + 1:
                correct += int((outputs.argmax(-1) == targets).sum())
            count += len(targets)
        metrics = {"test_loss": loss / count}
        if not targets.is_floating_point():
            metrics["accuracy"] = correct / count
        return metrics

    def check_model(self, variant: str) -> None:
        if variant not in self.models:
            raise ValueError(f"task {self.name!r} has no model {variant!r}; choose from {', '.join(self.models)}")


class SimpleTask(Task):
    """A task from its parts, for a factory to return: ``SimpleTask(train=(x, y), held_out=..., models=..., loss=...)``."""

    def __init__(self, *, train: Any, held_out: Any, models: Mapping[str, Callable[[], nn.Module]],
                 loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], quality: str = "test_loss", mode: str = "min",
                 default_model: str | None = None, defaults: TrainSettings = TrainSettings(), num_workers: int = 0,
                 name: str = "simple"):
        self.name, self._train, self._held_out, self.models, self._loss = name, train, held_out, dict(models), loss
        self.quality, self.mode, self.defaults, self.num_workers = quality, mode, defaults, num_workers
        self.default_model = default_model if default_model is not None else next(iter(self.models), "")

    def data(self):
        return self._train, self._held_out

    def loss_fn(self, outputs, targets):
        return self._loss(outputs, targets)


TASKS: Registry[Callable[..., Task]] = Registry(
    "task", discover=lambda: import_submodules(__name__), import_example="my_pkg.my_module:make_task",
    check=lambda found, path: checked_factory(found, Task, f"task {path!r}", "-> Task"),  # called only if marked
)


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make the task ``cls`` available under ``cls.name``."""
    return TASKS.register(cls.name, cls)


def available_tasks() -> dict[str, Callable[..., Task]]:
    return TASKS.items()


def create_task(name: str, **options: Any) -> Task:
    """A registered task by name, or an imported one (``module:attribute``), built with ``options``."""
    factory = TASKS.get(name)
    if not callable(factory):
        raise ValueError(f"task {name!r} is a {type(factory).__name__}; name a Task subclass or a function returning a Task")
    task = call_factory(factory, f"task {name!r}", **options)
    return _checked_task(task, name) if TASKS.is_imported(name) else task


def _checked_task(task: Any, path: str) -> Task:
    """A task built by a factory from outside greentune, checked to give what the trainable needs."""
    if not isinstance(task, Task):
        raise ValueError(
            f"task {path!r} returned a {type(task).__name__}, not a greentune.trainables.tasks.Task; "
            "return a Task subclass's instance or a SimpleTask"
        )
    if not isinstance(getattr(task, "name", None), str):
        task.name = path
    missing = [attribute for attribute in ("models", "default_model") if not hasattr(task, attribute)]
    if missing or task.mode not in ("min", "max"):
        what = f"sets no {missing[0]}" if missing else f"has mode {task.mode!r}, not 'min' or 'max'"
        raise ValueError(f"task {path!r} {what}; see greentune.trainables.tasks.Task for what a task gives")
    return task


def mean_loss(model: nn.Module, data: DeviceData, loss_fn) -> float:
    """Average of ``loss_fn`` over one pass, weighting batches by size."""
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, targets in data.batches():
            total += float(loss_fn(model(inputs), targets)) * len(inputs)
            count += len(inputs)
    return total / count
