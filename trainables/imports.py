"""Objects named by import path (``package.module:attribute``), with one clear line when the path is wrong.

Tasks and models from outside greentune are named this way in search
files. The module must be importable where trials run: an installed
package, the current directory, the running script's directory or
``PYTHONPATH`` (Ray's workers get the first three from the driver).
"""

from __future__ import annotations

import importlib
from typing import Any


def load_object(path: str, what: str) -> Any:
    """The object at ``module:attribute`` (the attribute may be dotted, ``module:Class.factory``)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{what} {path!r} is not an import path; write it as package.module:name")
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
