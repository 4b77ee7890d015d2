"""Techniques by name: built-in modules, installed plug-ins and import paths.

Discovery imports each module of this package once, so a new technique needs
only its own module; no list elsewhere has to be edited. Techniques from
outside come two ways, both without editing greentune:

- a distribution's entry point in the group ``greentune.techniques``
  (``my_technique = my_package.module:MyTechnique``; the entry point's name
  is the technique's ``name``), found on first use;
- an import path in a search file's ``techniques:``
  (``my_package.module:MyTechnique``), which is then the technique's name
  there, in its ``params`` and in the trial config.

Both resolve again inside each Ray worker, so the module must be importable
there: installed, or on ``PYTHONPATH``.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Mapping

from greentune.registry import Registry, import_submodules

from .base import Stack, Technique
from .space import declared, is_number

ENTRY_POINT_GROUP = "greentune.techniques"
_PLUGINS: dict[str, str] = {}  # technique name -> the distribution whose entry point registered it


def _discover() -> None:
    """The built-in modules of this package, then the installed plug-ins."""
    import_submodules(__package__)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        _register_entry_point(entry)


def _technique(obj: Any, where: str) -> type[Technique]:
    if not (isinstance(obj, type) and issubclass(obj, Technique)):
        raise ValueError(f"{where} is {obj!r}, not a subclass of greentune.techniques.Technique")
    return obj


TECHNIQUES: Registry[type[Technique]] = Registry(
    "technique", discover=_discover, import_example="my_package.module:MyTechnique",
    check=lambda obj, path: _technique(obj, f"technique {path!r}"),
)
TECHNIQUES.register("baseline", Technique)


def register(cls: type[Technique]) -> type[Technique]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    return TECHNIQUES.register(cls.name, cls)


def available() -> dict[str, type[Technique]]:
    """All registered techniques, built-in and plug-in, ``{name: class}``, importing them on first use."""
    return TECHNIQUES.items()


def _register_entry_point(entry) -> None:
    where = f"entry point {entry.name!r} ({entry.value}) in group {ENTRY_POINT_GROUP}"
    if entry.dist is not None:
        where += f" of {entry.dist.name}"
    try:
        cls = _technique(entry.load(), where)
    except ImportError as error:
        raise ValueError(f"{where} cannot be loaded: {type(error).__name__}: {error}") from None
    except AttributeError as error:
        raise ValueError(f"{where} cannot be loaded: {error}") from None
    if cls.name != entry.name:
        raise ValueError(f"{where} loads a technique named {cls.name!r}; set name = {entry.name!r} on the class")
    register(cls)
    _PLUGINS[cls.name] = entry.dist.name if entry.dist is not None else "an entry point"


def technique_class(name: str) -> type[Technique]:
    """The technique registered as ``name``, or the class at the import path ``name``."""
    return TECHNIQUES.get(name)


def parameter_names(cls: type[Technique]) -> list[str]:
    """The keyword arguments a technique's constructor accepts."""
    return list(parameter_defaults(cls))


def parameter_defaults(cls: type[Technique]) -> dict[str, Any]:
    """Each constructor parameter's default (``inspect.Parameter.empty`` where it has none)."""
    return {name: item.default for name, item in declared(cls).items()}


def _same_kind(value: Any, default: Any) -> bool:
    """Whether ``value`` may stand where the constructor's ``default`` does: a number for a number, a flag for a flag."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if is_number(default):
        return is_number(value)
    return True  # no default, None or a string: the technique's own checks decide


def origin(name: str) -> str:
    """Where a technique comes from: ``built-in``, ``plug-in DIST`` or ``import path``."""
    if name in _PLUGINS:
        return f"plug-in {_PLUGINS[name]}"
    return "import path" if TECHNIQUES.is_imported(name) else "built-in"


def create(names: list[str], params: Mapping[str, Mapping[str, Any]] | None = None) -> Technique:
    """Build the technique (or ``Stack``) for ``names`` with per-technique kwargs.

    >>> create(["data_selection"], {"data_selection": {"selectivity": 0.5}})
    DataSelection(selectivity=0.5, on_skip='last')
    """
    params = dict(params or {})
    if not names:
        raise ValueError("no technique given; use 'baseline' for plain training")
    if len(set(names)) != len(names):
        raise ValueError(f"technique listed twice in {names}")
    built = []
    for name in names:
        cls = technique_class(name)
        kwargs = dict(params.pop(name, None) or {})
        unknown = sorted(set(kwargs) - set(parameter_names(cls)))
        if unknown:
            valid = ", ".join(parameter_names(cls)) or "none"
            raise ValueError(f"technique {name!r} has no parameter {unknown[0]!r}; valid: {valid}")
        defaults = parameter_defaults(cls)
        for parameter, value in kwargs.items():  # a declared one is checked against its domain by the search
            if parameter not in cls.space and not _same_kind(value, defaults[parameter]):
                kind = "true or false" if isinstance(defaults[parameter], bool) else "a number"
                raise ValueError(f"{name}.{parameter} must be {kind} (default {defaults[parameter]!r}), got {value!r}")
        try:
            built.append(cls(**kwargs))
        except TypeError as error:  # a value of a type the constructor's checks did not foresee
            raise ValueError(f"technique {name!r} cannot take {kwargs}: {error}") from None
    if params:
        raise ValueError(f"parameters given for {sorted(params)[0]!r}, which is not among the techniques {names}")
    return built[0] if len(built) == 1 else Stack(built)
