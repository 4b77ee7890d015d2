"""MkDocs hook: the pages' generated parts, filled in at build time.

- ``<!-- greentune:parameters NAME ... -->`` becomes a table of each named
  technique's parameters, read from the technique registry (what
  ``greentune techniques NAME`` prints), so the docs cannot drift from the code.
- ``<!-- greentune:benchmarks NAME ... -->`` becomes the figures of each named
  ``benchmarks/results/NAME.json``, as ``benchmarks/record.py`` writes them.

The build warns (an error under ``mkdocs build --strict``) when a registered
technique has no parameter table, a results file is on no page, a name is
unknown, or a generated table cell is over 300 characters.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path

from mkdocs.plugins import event_priority

log = logging.getLogger("mkdocs.hooks.greentune")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"<!--\s*greentune:(parameters|benchmarks)\s+([^>]*?)\s*-->")
MAX_CELL = 300

API_TREE = ROOT / "build" / "docs-api"
SUBPACKAGE_FOLDERS = ("analysis", "search", "techniques", "trainables")  # pyproject.toml's package-dir; a test checks

_shown: dict[str, set[str]] = {"parameters": set(), "benchmarks": set()}


@event_priority(100)  # before mkdocstrings' own on_config, which drops a path that does not exist yet
def on_config(config):
    """Copy the package as it installs for mkdocstrings: ``greentune/`` with ``analysis/`` and the rest inside it.

    setuptools' ``package-dir`` maps the top-level folders into ``greentune``,
    which static analysis cannot follow (links are resolved back to the folders).
    """
    import shutil

    shutil.rmtree(API_TREE, ignore_errors=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "greentune", API_TREE / "greentune", ignore=skip)
    for folder in SUBPACKAGE_FOLDERS:
        shutil.copytree(ROOT / folder, API_TREE / "greentune" / folder, ignore=skip)
    return config


@functools.cache
def _techniques():
    from greentune.api import list_techniques  # imports torch: only when a page asks

    return list_techniques()


def _cell(value: object) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    if len(text) > MAX_CELL:
        log.warning("a generated table cell is %d characters (at most %d): %.60s...", len(text), MAX_CELL, text)
    return text


def _default(value: object) -> str:
    if value is None:
        return "`None`"
    if isinstance(value, float):
        return f"`{value:.4g}`"
    return f"`{value!r}`"


def parameters(names: list[str], page: str) -> str:
    table = _techniques()
    blocks = []
    for name in names:
        rows = table[table["technique"] == name]
        if rows.empty:
            log.warning("%s: no registered technique %r", page, name)
            continue
        _shown["parameters"].add(name)
        if rows["parameter"].isna().all():
            blocks.append(f"`{name}` has no parameters.")
            continue
        lines = [f"**`{name}`**", "", "| parameter | default | a search samples |", "|---|---|---|"]
        for row in rows.itertuples():
            lines.append(f"| `{_cell(row.parameter)}` | {_default(row.default)} | {_cell(row.searched)} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def benchmark(name: str, page: str) -> str:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        log.warning("%s: no benchmark results %s", page, path.relative_to(ROOT))
        return ""
    _shown["benchmarks"].add(name)
    entry = json.loads(path.read_text())
    lines = [f"### `{name}`", "", entry["what"], "", "| figure | value |", "|---|---|"]
    lines += [f"| {_cell(figure['label'])} | {_cell(figure['value'])} |" for figure in entry["figures"]]
    lines.append("")
    lines += [f"- {note}" for note in entry.get("notes", [])]
    lines += ["", "```bash", entry["command"] or "# command not recorded", "```", ""]
    where = f"Machine: {entry['machine']}. Commit `{entry['commit']}`, {entry['date']}."
    if entry.get("transcribed"):
        where += f" Transcribed from earlier runs: {entry.get('source', 'source not recorded')}."
    lines.append(f"<small>{where}</small>")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    def fill(match: re.Match) -> str:
        kind, names = match.group(1), match.group(2).split()
        if kind == "parameters":
            return parameters(names, page.file.src_uri)
        return "\n\n".join(benchmark(name, page.file.src_uri) for name in names)

    return MARKER.sub(fill, markdown)


def on_post_build(config) -> None:
    registered = set(_techniques()["technique"])
    for name in sorted(registered - _shown["parameters"]):
        log.warning("technique %r has no parameter table on any page (add <!-- greentune:parameters %s -->)", name, name)
    recorded = {path.stem for path in RESULTS.glob("*.json")}
    for name in sorted(recorded - _shown["benchmarks"]):
        log.warning("benchmarks/results/%s.json is on no page (add it to a <!-- greentune:benchmarks --> marker)", name)
    for shown in _shown.values():
        shown.clear()
