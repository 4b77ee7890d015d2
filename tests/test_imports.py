"""What importing a package pulls in: the light entry points stay light."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "package, absent",
    [
        ("greentune.analysis", ("greentune.search", "ray", "torch")),  # reads results without the search that wrote them
        ("greentune", ("greentune.search", "ray", "torch")),  # the API imports the search layer only when a function runs
        ("greentune.techniques", ("ray", "greentune.search", "greentune.trainables")),  # pure PyTorch
    ],
)
def test_importing_a_package_leaves_the_layers_above_it_unloaded(package, absent):
    code = f"import sys, {package}; print(sorted(name for name in {absent!r} if name in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_each_card_folder_is_a_subpackage_of_greentune():
    """``greentune.techniques`` is the package, not a name the API shadows it with (the listing is ``list_techniques``)."""
    code = (
        "import types, greentune, greentune.techniques, greentune.search, greentune.trainables, greentune.analysis\n"
        "print(all(isinstance(getattr(greentune, name), types.ModuleType)"
        " for name in ('techniques', 'search', 'trainables', 'analysis')), callable(greentune.list_techniques))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["True", "True"]
