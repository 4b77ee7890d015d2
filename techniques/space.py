"""Search-space declarations that techniques attach to themselves.

A technique states its tunable parameters as plain data (``Float``, ``Int``,
``Choice``) so that the search layer can sample them with any searcher and a
user's YAML can narrow or fix them, while this package stays free of Optuna
and Ray. ``Param.narrow`` is the single place where a user's override is
checked against the declared domain.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence, Union


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
        narrowed = replace(self, **override)
        if not (self.low <= narrowed.low <= narrowed.high <= self.high):
            raise ValueError(f"range [{narrowed.low}, {narrowed.high}] is outside [{self.low}, {self.high}]")
        return narrowed


class Float(_Range):
    def describe(self) -> str:
        return f"float in [{self.low:g}, {self.high:g}]" + (", log scale" if self.log else "")

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high


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
        raise ValueError(f"value {value!r} is outside {domain}")
    return Fixed(value)
