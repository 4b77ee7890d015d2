"""The docstring examples of every greentune module run, imported by their installed names.

pytest's ``--doctest-modules`` imports a file by its place on disk
(``search/runner.py`` as ``search.runner``), which would load a second copy
of each module beside ``greentune.search.runner``; walking the installed
package instead runs each example in the module users import.
"""

import doctest
import importlib
import pkgutil

import pytest

import greentune

SUBPACKAGES = ("techniques", "trainables", "search", "analysis")


def module_names() -> list[str]:
    names = ["greentune"]
    for prefix, path in [("greentune.", greentune.__path__)] + [
        (f"greentune.{name}.", importlib.import_module(f"greentune.{name}").__path__) for name in SUBPACKAGES
    ]:
        names += [module.name for module in pkgutil.walk_packages(path, prefix) if not module.name.endswith("__main__")]
    return sorted(set(names) | {f"greentune.{name}" for name in SUBPACKAGES})


def test_every_card_folder_is_walked():
    names = module_names()
    assert {"greentune.cli", "greentune.search.runner", "greentune.trainables.models.mlp", "greentune.analysis.pareto"} <= set(names)


@pytest.mark.parametrize("name", [name for name in module_names()])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    tests = [test for test in doctest.DocTestFinder().find(module, name) if test.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) of {name} failed; see the output above"
