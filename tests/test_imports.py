"""What importing a package pulls in: the layers stay one-way, and the light entry points stay light."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "package, absent",
    [
        ("analysis", ("search", "ray", "torch")),  # analysis reads results without the search that wrote them
        ("greentune", ("search", "ray", "torch")),  # the API imports the search layer only when a function runs
        ("techniques", ("ray", "search", "trainables")),  # pure PyTorch
    ],
)
def test_importing_a_package_leaves_the_layers_above_it_unloaded(package, absent):
    code = f"import sys, {package}; print(sorted(name for name in {absent!r} if name in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_analysis_names_no_layer_before_it_even_in_a_function():
    """Lazy imports hide from ``sys.modules``; the source shows them. ``analysis`` is where data flows to, last."""
    import ast
    from pathlib import Path

    import analysis

    upstream = {"search", "trainables", "greentune"}
    found = []
    for path in Path(analysis.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] in upstream]
    assert found == []
