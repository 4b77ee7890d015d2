"""Named searches shipped as YAML files beside this module.

A preset is an ordinary search file: ``greentune presets`` lists them and a
user can copy one as the start of their own ``--config``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from greentune.registry import Registry

PRESET_DIR = Path(__file__).parent


def _discover() -> None:
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        PRESETS.register(path.stem, path)


PRESETS: Registry[Path] = Registry("preset", discover=_discover)


def preset_paths() -> dict[str, Path]:
    return PRESETS.items()


def preset_path(name: str) -> Path:
    return PRESETS.get(name)


def describe_presets() -> list[str]:
    """One line per preset: name and description."""
    lines = []
    for name, path in sorted(preset_paths().items()):
        description = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        lines.append(f"{name:<32} {description}")
    return lines
