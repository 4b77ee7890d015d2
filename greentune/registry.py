"""Things by name: one registry class for techniques, tasks, models, searchers, schedulers and presets.

Each kind keeps a ``Registry``: entries are added with ``register`` (a
decorator or a call), listed with ``names``, looked up with ``get`` and built
with ``create``. A name that is not registered is one ``ValueError`` line
that lists the choices, worded the same for every kind. A registry that
accepts import paths (techniques, tasks, models: things users bring
without editing greentune) resolves ``package.module:attribute`` with
``load_object``, the one import-path resolver.

A leaf module: every layer may import it, and it imports nothing of greentune.

>>> colours = Registry("colour")
>>> @colours.register("red")
... def red(): return "#f00"
>>> colours.create("red")
'#f00'
>>> colours.get("blue")
Traceback (most recent call last):
...
ValueError: unknown colour 'blue'; choose from red
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import pkgutil
import sys
import typing
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one ``kind`` by name.

    ``discover`` is called once, on the first lookup, to import the modules
    whose ``register`` calls fill the registry (``import_submodules``).
    ``import_example`` (``my_package.module:MyTechnique``) lets names with a
    colon be import paths, resolved through ``load_object`` and checked by
    ``check`` (which returns the object to keep, or raises ``ValueError``).
    """

    def __init__(
        self,
        kind: str,
        *,
        discover: Callable[[], None] | None = None,
        import_example: str | None = None,
        check: Callable[[Any, str], T] | None = None,
    ):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._imported: dict[str, T] = {}  # by import path; not listed by ``names``
        self._discover, self._discovered = discover, discover is None
        self.import_example, self._check = import_example, check

    def register(self, name: str, entry: T | None = None) -> Any:
        """Add ``entry`` under ``name``; without ``entry``, a decorator that adds what it decorates."""
        if entry is None:
            return lambda decorated: self.register(name, decorated)
        if self._entries.get(name, entry) is not entry:
            raise ValueError(f"{self.kind} name {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def items(self) -> dict[str, T]:
        """Every registered entry, ``{name: entry}``, discovering them on first use."""
        if not self._discovered:
            self._discovered = True  # before discovering: a discovered module may look entries up
            try:
                self._discover()
            except BaseException:
                self._discovered = False  # a broken plug-in is reported again, not left half-listed
                raise
        return dict(self._entries)

    def names(self) -> list[str]:
        return sorted(self.items())

    def __contains__(self, name: object) -> bool:
        return name in self.items()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def is_import_path(self, name: str) -> bool:
        return self.import_example is not None and ":" in name

    def is_imported(self, name: str) -> bool:
        """Whether ``name`` was looked up as an import path rather than registered."""
        return name in self._imported

    def get(self, name: str) -> T:
        """The entry registered as ``name``, or (where allowed) the object at the import path ``name``."""
        entries = self.items()
        if name in entries:
            return entries[name]
        if isinstance(name, str) and self.is_import_path(name):
            if name not in self._imported:
                found = load_object(name, self.kind)
                self._imported[name] = self._check(found, name) if self._check else found
            return self._imported[name]
        raise self.unknown(name)

    def create(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the entry ``name`` (a class or a factory) with the arguments."""
        return self.get(name)(*args, **kwargs)

    def unknown(self, name: Any) -> ValueError:
        """The one error for a name that is not there: what was asked for and what there is."""
        choices = ", ".join(self.names()) or "none"
        tail = f", or give an import path such as {self.import_example}" if self.import_example else ""
        return ValueError(f"unknown {self.kind} {name!r}; choose from {choices}{tail}")


def load_object(path: str, what: str) -> Any:
    """The object at ``package.module:attribute`` (the attribute may be dotted, ``module:Class.factory``).

    A wrong path is one ``ValueError`` line naming what to fix. The module
    must be importable where it is used (in each Ray worker too): installed,
    or on ``PYTHONPATH``.
    """
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{what} {path!r} is not an import path; write it as package.module:name")
    if module_name.startswith("."):
        raise ValueError(f"{what} {path!r} is a relative import path; give the module's full name, package.module:name")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"{what} {path!r}: cannot import {module_name!r} ({error}); install it or put its folder on PYTHONPATH"
        ) from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{what} {path!r}: module {module_name!r} has no {attribute!r}") from None
    return target


FACTORY_MARK = "__greentune_factory__"


def factory(function: Callable[..., T]) -> Callable[..., T]:
    """Mark ``function`` as one a search file may name to build a task or a model.

    A search file's import path runs code (importing its module does), but
    greentune calls only what is meant to be called: a ``Task`` or model
    class, a function marked with this decorator, or a function whose return
    annotation names what it builds (``-> Task``, ``-> nn.Module``). Anything
    else (``os:system``, ``builtins:input``) is refused without being called.

    >>> @factory
    ... def make_task(n_train=64): ...
    >>> is_marked_factory(make_task, object)
    True
    """
    setattr(function, FACTORY_MARK, True)
    return function


def is_marked_factory(candidate: Any, builds: type) -> bool:
    """Whether a search file may call ``candidate`` to build a ``builds``: a subclass of it, a ``@factory``,
    or a function whose return annotation is a subclass of it."""
    if isinstance(candidate, type):
        return issubclass(candidate, builds)
    if getattr(candidate, FACTORY_MARK, False) is True:
        return True
    if not (inspect.isfunction(candidate) or inspect.ismethod(candidate)):
        return False  # builtins and other callables cannot carry an annotation of their own
    try:
        returned = typing.get_type_hints(candidate).get("return")
    except Exception:  # an annotation naming what its module cannot resolve: not a promise to build one
        return False
    return isinstance(returned, type) and issubclass(returned, builds)


def checked_factory(candidate: Any, builds: type, what: str, example: str) -> Any:
    """``candidate`` if ``is_marked_factory``; else one ``ValueError`` line, and nothing is called."""
    if is_marked_factory(candidate, builds):
        return candidate
    name = getattr(candidate, "__qualname__", type(candidate).__name__)
    raise ValueError(
        f"{what} is {name}, which greentune will not call: name a {builds.__name__} subclass, or a function "
        f"marked @greentune.registry.factory or annotated {example}"
    )


def call_factory(factory: Callable[..., Any], what: str, **options: Any) -> Any:
    """``factory(**options)`` for a factory a search file names, whose mistakes become one ``ValueError`` line.

    Options the factory does not take, and values it refuses, are the user's
    to fix; so is naming a function that reads standard input (it would wait
    for a keyboard that is not there: it reads an empty stream here) or that
    exits the process.
    """
    try:
        with _no_stdin():
            return factory(**options)
    except (TypeError, ValueError, RuntimeError) as error:  # RuntimeError: torch refusing a size, say
        raise ValueError(f"{what}: {error}") from None
    except EOFError:
        raise ValueError(f"{what} reads standard input; name a factory that builds it from its options") from None
    except SystemExit:
        raise ValueError(f"{what} exits the process; name a factory that returns what it builds") from None


@contextlib.contextmanager
def _no_stdin():
    stdin, sys.stdin = sys.stdin, io.StringIO()
    try:
        yield
    finally:
        sys.stdin = stdin


def import_submodules(package: str) -> None:
    """Import every module of ``package``, so that their ``register`` calls run."""
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{module.name}")
