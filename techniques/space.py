"""Search-space declarations that techniques attach to themselves.

A technique states its tunable parameters as plain data (``Float``, ``Int``,
``Choice``) so that the search layer can sample them with any searcher and a
user's YAML can narrow or fix them, while this package stays free of Optuna
and Ray. ``Param.narrow`` is the single place where a user's override is
checked against the declared domain.

Each parameter is declared once, in the constructor's signature: its name,
its default and, for a searched one, its domain::

    def __init__(self, selectivity: Annotated[float, Float(0.1, 1.0)] = 0.5, on_skip: str = "last"): ...

``declared`` reads that back; ``Technique.space`` is its searched part. A
variant takes its parent's parameters with ``**settings`` instead of
restating them, minus those it fixes in ``pinned``.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Sequence, Union


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (which Python counts as an int, and YAML gives for true/false)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Range:
    low: float
    high: float
    log: bool = False

    def narrow(self, override: Any) -> "Param | Fixed":
        if not isinstance(override, dict):
            return _fixed(self, override)
        unknown = set(override) - {"low", "high", "log"}
        if unknown:
            raise ValueError(f"a range takes low/high/log, not {sorted(unknown)}")
        if not isinstance(override.get("log", False), bool):
            raise ValueError(f"log must be true or false, got {override['log']!r}")
        narrowed = replace(self, **override)
        if not (self.contains(narrowed.low) and self.contains(narrowed.high)):
            raise ValueError(f"range [{narrowed.low}, {narrowed.high}] is not within {self.describe()}")
        if narrowed.low > narrowed.high:
            raise ValueError(f"range [{narrowed.low}, {narrowed.high}] is empty: low is above high")
        if narrowed.log and narrowed.low <= 0:
            raise ValueError(f"a log-scale range must start above 0, got low {narrowed.low}")
        return narrowed


class Float(_Range):
    def describe(self) -> str:
        return f"float in [{self.low:g}, {self.high:g}]" + (", log scale" if self.log else "")

    def contains(self, value: Any) -> bool:
        return is_number(value) and self.low <= value <= self.high


class Int(_Range):
    def describe(self) -> str:
        return f"int in [{self.low}, {self.high}]" + (", log scale" if self.log else "")

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high


@dataclass(frozen=True)
class Choice:
    options: tuple

    def __init__(self, options: Sequence[Any]):
        object.__setattr__(self, "options", tuple(options))

    def contains(self, value: Any) -> bool:
        return value in self.options

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.options))

    def narrow(self, override: Any) -> "Param | Fixed":
        if isinstance(override, (list, tuple)):
            bad = [value for value in override if value not in self.options]
            if bad or not override:
                raise ValueError(f"choices must be a non-empty subset of {list(self.options)}")
            return Choice(override)
        return _fixed(self, override)


@dataclass(frozen=True)
class Fixed:
    """A parameter pinned to one value: it is passed through, never sampled."""

    value: Any


Param = Union[Float, Int, Choice]


def _fixed(domain: Param, value: Any) -> Fixed:
    if not domain.contains(value):
        raise ValueError(f"value {value!r} is outside {domain.describe()}")
    return Fixed(value)


class Declared(NamedTuple):
    """One constructor parameter: its default (``inspect.Parameter.empty`` if none) and its searched domain (or None)."""

    default: Any
    domain: Param | None


_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@functools.cache
def declared(cls: type) -> dict[str, Declared]:
    """``{parameter: Declared}`` from the constructors of ``cls``, parents' parameters first.

    A constructor taking ``**settings`` hands them to the next constructor in
    the MRO, whose parameters are then the class's too, except the ones
    named in ``cls.pinned``; a parameter a subclass names again takes the
    subclass's default and domain.
    """
    chain = []
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        if init is object.__init__:
            break
        chain.append(inspect.signature(init, eval_str=True).parameters.values())
        if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in chain[-1]):
            break
    parameters: dict[str, Declared] = {}
    for signature in reversed(chain):
        for parameter in signature:
            if parameter.name != "self" and parameter.kind not in _VARIADIC:
                metadata = getattr(parameter.annotation, "__metadata__", ())
                domain = next((item for item in metadata if isinstance(item, (Float, Int, Choice))), None)
                parameters[parameter.name] = Declared(parameter.default, domain)
    for name in getattr(cls, "pinned", {}):
        parameters.pop(name, None)
    return parameters


class SearchedDomains:
    """``Technique.space``: the domains declared in the constructor's signature, read when first asked for.

    A class may still set ``space = {...}`` itself, which then replaces them.
    """

    def __get__(self, instance: Any, owner: type) -> dict[str, Param]:
        return {name: item.domain for name, item in declared(owner).items() if item.domain is not None}
