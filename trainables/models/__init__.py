"""Models by name (timm style): each module here registers its builders.

``create_model(name, **kwargs)`` drops ``None`` keyword arguments, so an
option a config leaves unset keeps the model's own default. Model modules
import only ``torch`` and shared layers, never each other's internals.

A search may also name a model from outside a task: ``torchvision:resnet18``
or an import path ``my_pkg.models:make_net``, built with ``model_options``
(``outside_model``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from torch import nn

from greentune.registry import Registry, call_factory, checked_factory, import_submodules, load_object

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", discover=lambda: import_submodules(__name__))


def register_model(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Function decorator: make ``builder`` available under its function name."""
    return MODELS.register(builder.__name__, builder)


def available_models() -> list[str]:
    return MODELS.names()


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name``; unset (None) options keep the model's defaults.

    >>> create_model("mlp", sizes=[4, 3, 2])
    Sequential(
      (0): Linear(in_features=4, out_features=3, bias=True)
      (1): UnitSlopeReLU()
      (2): Linear(in_features=3, out_features=2, bias=True)
    )
    """
    return MODELS.create(name, **{key: value for key, value in kwargs.items() if value is not None})


def is_outside_model(name: Any) -> bool:
    """Whether a config's ``model`` names a model from outside the task (``torchvision:NAME`` or ``module:function``)."""
    return isinstance(name, str) and ":" in name


def outside_model(name: str, options: Mapping[str, Any]) -> Callable[[], nn.Module]:
    """A builder of model ``name`` with ``options``, checked by building it once.

    The trial builds its own after seeding, so every seed starts from its own
    initialisation.
    """
    builder = functools.partial(_build_outside_model, name, dict(options))
    builder()
    return builder


def _build_outside_model(name: str, options: Mapping[str, Any]) -> nn.Module:
    from .torchvision_models import PREFIX, torchvision_model

    if name.startswith(PREFIX):
        return torchvision_model(name.removeprefix(PREFIX), **options)
    function = checked_factory(load_object(name, "model"), nn.Module, f"model {name!r}", "-> nn.Module")
    model = call_factory(function, f"model {name!r}", **options)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model
