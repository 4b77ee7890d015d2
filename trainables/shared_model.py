"""A trained network in a form that opens without running code: safetensors weights beside a JSON architecture.

``torch.load`` of a pickled module runs whatever the pickle names, so a
``model.pt`` from someone else is code to trust. The shared form is two
files: ``model.safetensors`` (the tensors, a format with no code in it) and
``model.json``, which names each module's class and gives its plain
attributes (numbers, strings, tuples; a Linear's sizes, a Conv2d's stride).
``load_shared_model`` rebuilds the module tree from them, instantiating only
``torch.nn`` and greentune classes (and module prefixes the caller
``trust``\\ s) without calling their constructors, and fills in the tensors.
The forward code is the installed library's, not the file's.

A network holding something else (a function as an attribute, a hook, a
module kept outside ``_modules``) has no shared form: ``save_shared_model``
refuses it with a ``ValueError`` that says which attribute.

>>> import tempfile, torch
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()).eval()
>>> folder = tempfile.mkdtemp()
>>> save_shared_model(net, folder)
>>> again = load_shared_model(folder)
>>> bool(torch.equal(again(torch.ones(1, 3)), net(torch.ones(1, 3))))
True
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from greentune.layout import SHARED_ARCHITECTURE_FILE, SHARED_WEIGHTS_FILE

FORMAT = "greentune-shared-model"
VERSION = 1
TRUSTED_PREFIXES = ("torch.nn.", "torchvision.models.", "torchvision.ops.", "greentune.")  # installed code the loader may instantiate
_MODULE_INTERNALS = frozenset(vars(nn.Module()))  # what nn.Module.__init__ sets: rebuilt by calling it


def save_shared_model(model: nn.Module, folder: str | Path) -> None:
    """Write ``model`` as ``model.safetensors`` and ``model.json`` into ``folder`` (on the CPU)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    architecture = {"format": FORMAT, "version": VERSION, "root": _describe(model, "", tensors)}
    folder = Path(folder)
    save_file(tensors, str(folder / SHARED_WEIGHTS_FILE))
    (folder / SHARED_ARCHITECTURE_FILE).write_text(json.dumps(architecture, indent=1))


def load_shared_model(folder: str | Path, *, trust: Iterable[str] = ()) -> nn.Module:
    """The network ``save_shared_model`` wrote into ``folder``; nothing in the files is run.

    ``trust``: further module prefixes (``"my_pkg."``) whose classes may be
    instantiated, for a network built from classes outside torch and greentune.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    architecture = json.loads((folder / SHARED_ARCHITECTURE_FILE).read_text())
    if architecture.get("format") != FORMAT or architecture.get("version") != VERSION:
        raise ValueError(f"{folder / SHARED_ARCHITECTURE_FILE} is not a greentune shared model (version {VERSION})")
    tensors = load_file(str(folder / SHARED_WEIGHTS_FILE))
    return _rebuild(architecture["root"], tensors, (*TRUSTED_PREFIXES, *trust))


def _describe(module: nn.Module, path: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    cls = type(module)
    where = f"{cls.__qualname__} at {path or 'the top'}"
    for name in _MODULE_INTERNALS:
        value = getattr(module, name, None)
        if isinstance(value, dict) and value and name not in ("_parameters", "_buffers", "_modules"):
            raise ValueError(f"{where} has {name} set; a network with hooks has no shared form")

    def key(name: str) -> str:
        return f"{path}.{name}" if path else name

    def store(name: str, tensor: torch.Tensor) -> str:
        tensors[key(name)] = tensor.detach().to("cpu", copy=True).contiguous()
        return key(name)

    attributes = {}
    for name, value in vars(module).items():
        if name in _MODULE_INTERNALS and name not in ("training", "_non_persistent_buffers_set"):
            continue
        if isinstance(value, torch.Tensor):
            attributes[name] = {"tensor": store(f"{name}", value)}
        else:
            attributes[name] = _encode(value, f"{where}: attribute {name!r}")
    return {
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "attributes": attributes,
        "parameters": {name: None if value is None else {"tensor": store(name, value), "requires_grad": value.requires_grad}
                       for name, value in module._parameters.items()},
        "buffers": {name: None if value is None else store(name, value) for name, value in module._buffers.items()},
        "children": {name: None if child is None else _describe(child, key(name), tensors)
                     for name, child in module._modules.items()},
    }


def _encode(value: Any, what: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list, set, frozenset)):
        kind = "list" if isinstance(value, list) else "tuple" if isinstance(value, tuple) else "set"
        items = sorted(value, key=repr) if kind == "set" else value
        return {kind: [_encode(item, what) for item in items]}
    if isinstance(value, dict) and all(isinstance(name, str) for name in value):
        return {"dict": {name: _encode(item, what) for name, item in value.items()}}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, type) and issubclass(value, nn.Module):  # a layer class a model builds with (torchvision's norm_layer)
        return {"module_class": f"{value.__module__}:{value.__qualname__}"}
    raise ValueError(f"{what} is a {type(value).__name__}, which the shared form cannot describe")


def _decode(value: Any, tensors: dict[str, torch.Tensor], trusted: tuple[str, ...]) -> Any:
    if not isinstance(value, dict):
        return value
    (kind, content), = value.items()
    if kind in ("list", "tuple", "set"):
        items = [_decode(item, tensors, trusted) for item in content]
        return {"list": list, "tuple": tuple, "set": set}[kind](items)
    if kind == "dict":
        return {name: _decode(item, tensors, trusted) for name, item in content.items()}
    if kind == "module_class":
        return _module_class(content, trusted)
    if kind == "dtype":
        dtype = getattr(torch, content, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown dtype {content!r} in a shared model")
        return dtype
    if kind == "device":
        return torch.device(content)
    if kind == "tensor":
        return tensors[content]
    raise ValueError(f"unknown value kind {kind!r} in a shared model")


def _module_class(name: str, trusted: tuple[str, ...]) -> type[nn.Module]:
    module_name, _, qualname = name.partition(":")
    if not any(f"{module_name}.".startswith(prefix) for prefix in trusted):
        raise ValueError(f"the shared model names {name}, outside {', '.join(trusted)}; pass trust=[...] to allow it")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if not (isinstance(target, type) and issubclass(target, nn.Module)):
        raise ValueError(f"the shared model names {name}, which is not a torch.nn.Module class")
    return target


def _rebuild(node: dict[str, Any], tensors: dict[str, torch.Tensor], trusted: tuple[str, ...]) -> nn.Module:
    cls = _module_class(node["class"], trusted)
    module = cls.__new__(cls)
    nn.Module.__init__(module)  # the bookkeeping only; the class's own constructor is not called
    for name, value in node["attributes"].items():
        module.__dict__[name] = _decode(value, tensors, trusted)
    for name, spec in node["parameters"].items():
        module._parameters[name] = None if spec is None else nn.Parameter(tensors[spec["tensor"]], spec["requires_grad"])
    for name, tensor_key in node["buffers"].items():
        module._buffers[name] = None if tensor_key is None else tensors[tensor_key]
    for name, child in node["children"].items():
        module._modules[name] = None if child is None else _rebuild(child, tensors, trusted)
    return module
