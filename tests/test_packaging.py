"""The wheel installs one import root, ``greentune``, and its layers import one way (import-linter).

import-linter reads a package from its folder on disk, so it is run over the
wheel's contents, where the card's folders sit inside ``greentune/`` as they
do once installed; an editable install keeps them apart.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> Path:
    """The wheel ``pip wheel .`` builds, unpacked into a folder that can stand on PYTHONPATH."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = out.glob("greentune-*.whl")
    site = out / "site"
    zipfile.ZipFile(wheel).extractall(site)
    return site


def run_python(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Python with only the unpacked wheel added in front, started away from the repository's folders."""
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_the_wheel_has_one_import_root(unpacked):
    roots = {path.name for path in unpacked.iterdir() if not path.name.endswith(".dist-info")}
    assert roots == {"greentune"}
    for folder in ("techniques", "trainables", "search", "analysis", "search/presets"):
        assert (unpacked / "greentune" / folder / "__init__.py").is_file(), folder
    assert (unpacked / "greentune" / "search" / "presets" / "default.yaml").is_file()
    assert (unpacked / "greentune" / "carbon.yaml").is_file(), "the carbon intensity table ships as package data"


def test_every_package_folder_is_in_the_wheel(unpacked):
    """pyproject.toml lists the packages one by one (the card's folders are mapped under greentune): a new
    subpackage left off the list would install without its code."""
    for folder in ("greentune", "techniques", "trainables", "search", "analysis"):
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.relative_to(ROOT / folder)
            installed = unpacked / "greentune" / ("" if folder == "greentune" else folder) / relative
            assert installed.is_file(), f"{folder}/{relative} is not in the wheel; add its package to pyproject.toml"


def test_installed_from_the_wheel_the_old_roots_are_gone_and_the_command_works(unpacked, tmp_path):
    check = run_python(unpacked, "-c", "import greentune, search", cwd=tmp_path)
    assert "No module named 'search'" in check.stderr
    where = run_python(unpacked, "-c", "import greentune.search.config as c; print(c.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(unpacked)), where.stderr
    help_text = run_python(unpacked, "-m", "greentune", "--help", cwd=tmp_path)
    assert help_text.returncode == 0 and "validate" in help_text.stdout, help_text.stderr


def lint_imports(site: Path, cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))"
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "pyproject.toml")], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=300,
    )


def test_the_layers_import_one_way(unpacked, tmp_path):
    result = lint_imports(unpacked, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line",
    [
        ("techniques/masks.py", "    from greentune.trainables import loop"),  # lazy, inside a function: still counted
        ("analysis/pareto.py", "    import greentune.search.runner"),
        ("trainables/trial.py", "    from greentune.search import config"),
        ("layout.py", "    from greentune import analysis"),
    ],
)
def test_a_forbidden_import_breaks_the_check(unpacked, tmp_path, module, line):
    site = tmp_path / "site"
    shutil.copytree(unpacked, site)
    path = site / "greentune" / module
    path.write_text(path.read_text() + f"\n\ndef _forbidden():\n{line}\n")
    result = lint_imports(site, tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout or "broken" in result.stdout
