"""The docs site builds with warnings as errors, the README stays a landing page, and benchmark figures reach the docs."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import benchmark_module

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_BYTES = 12_000  # "at most 12 KB", whichever KB is meant
MAX_CELL = 300


def docs_hooks():
    spec = importlib.util.spec_from_file_location("greentune_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def table_cells(text: str) -> list[str]:
    """The cells of every Markdown table row (``|``-delimited lines outside code fences); ``\\|`` is not a delimiter."""
    cells, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.lstrip().startswith("|"):
            cells += [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
    return cells


def test_the_docs_build_with_warnings_as_errors(tmp_path):
    missing = [name for name in ("mkdocs", "material", "mkdocstrings_handlers.python") if importlib.util.find_spec(name.split(".")[0]) is None]
    if missing:
        pytest.skip(f"the docs extra is not installed ({', '.join(missing)}): pip install -e \".[docs]\"")
    site = tmp_path / "site"
    shutil.rmtree(ROOT / "build" / "docs-api", ignore_errors=True)  # as in a fresh clone: the hook must make it in time
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    granet = (site / "techniques" / "granet" / "index.html").read_text()
    assert "regrow_fraction" in granet and "final_sparsity" in granet  # generated from the registry
    benchmarks = re.sub(r"<[^>]+>", "", (site / "benchmarks" / "index.html").read_text())  # highlighting splits code
    assert "pareto_speed" in benchmarks and "python benchmarks/pareto_speed.py" in benchmarks  # generated from the JSON
    assert "def run" not in (site / "reference" / "greentune" / "index.html").read_text()  # docstrings, not source
    assert "Results" in (site / "reference" / "greentune" / "index.html").read_text()


def test_the_api_reference_reads_every_folder_the_package_installs():
    tomllib = pytest.importorskip("tomllib")
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert sorted(folders) == ["greentune", *(f"greentune.{folder}" for folder in sorted(docs_hooks().SUBPACKAGE_FOLDERS))]
    assert all(folder == package.removeprefix("greentune.") for package, folder in folders.items())


def test_the_readme_is_a_landing_page():
    size = len(README.read_bytes())
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes; move detail into docs/"


def test_the_readme_links_into_pages_that_exist():
    links = re.findall(r"\]\((docs/[^)#]+)", README.read_text())
    assert len(links) >= 10
    assert [link for link in links if not (ROOT / link).is_file()] == []


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_table_cell_is_over_300_characters(path):
    long = [cell for cell in table_cells(path.read_text()) if len(cell) > MAX_CELL]
    assert not long, f"{len(long)} cells over {MAX_CELL} characters, the first: {long[0][:80]}..."


def test_the_table_cell_reader_sees_long_cells_and_escaped_bars():
    text = "| a | b |\n|---|---|\n| `x \\| y` | " + "z" * 301 + " |\n```\n| " + "w" * 400 + " |\n```\n"
    assert [len(cell) for cell in table_cells(text)] == [1, 1, 3, 3, 8, 301]


def test_the_papers_are_named_not_numbered():
    for path in markdown_files():
        assert not re.search(r"seed 00\d", path.read_text(), re.IGNORECASE), f"{path.name} says 'seed 00N' for a paper"


def test_ci_installs_the_way_the_readme_says():
    ci = (ROOT / ".ci" / "run").read_text()
    install = re.search(r'pip install -e "\.\[[^\]]*\]"', ci).group(0)
    assert "docs" in install
    assert install in README.read_text()


def test_a_recorded_benchmark_reaches_the_docs_page(tmp_path, monkeypatch):
    with benchmark_module("record") as record:
        path = record.record("speed", [("ratio", "1.5×")], "python benchmarks/speed.py", what="how fast", directory=tmp_path)
    entry = json.loads(path.read_text())
    assert entry["figures"] == [{"label": "ratio", "value": "1.5×"}] and entry["transcribed"] is False
    assert entry["date"].endswith("Z") and entry["machine"] and "cores" in entry["machine"]
    hooks = docs_hooks()
    monkeypatch.setattr(hooks, "RESULTS", tmp_path)
    page = hooks.benchmark("speed", "benchmarks.md")
    assert "| ratio | 1.5× |" in page and "python benchmarks/speed.py" in page and "how fast" in page


def test_a_benchmark_records_its_figures_when_it_runs(tmp_path, monkeypatch):
    with benchmark_module("record") as record, benchmark_module("pareto_speed") as pareto_speed:
        monkeypatch.setattr(record, "RESULTS", tmp_path)
        monkeypatch.setattr(sys, "argv", [str(ROOT / "benchmarks" / "pareto_speed.py"), "--rows", "2000", "--naive-rows", "200", "--repeats", "1"])
        pareto_speed.main()
    entry = json.loads((tmp_path / "pareto_speed.json").read_text())
    assert entry["command"] == "python benchmarks/pareto_speed.py --rows 2000 --naive-rows 200 --repeats 1"
    assert entry["figures"][0]["label"] == "naive / analysis, time per row" and entry["figures"][0]["value"].endswith("×")


def test_every_benchmark_result_file_is_complete():
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        entry = json.loads(path.read_text())
        assert entry["name"] == path.stem
        assert {"what", "figures", "command", "machine", "commit", "date", "transcribed"} <= entry.keys(), path.name
        assert entry["figures"] and all(len(str(f["label"])) <= MAX_CELL and len(str(f["value"])) <= MAX_CELL for f in entry["figures"])
