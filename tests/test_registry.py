"""One registry for every kind of named thing: the same lookup, the same listing, the same "choose from" line."""

import pytest

from greentune.registry import Registry, load_object
from greentune.search.presets import PRESETS
from greentune.search.schedulers import SCHEDULERS
from greentune.search.searchers import SEARCHERS
from greentune.techniques.registry import TECHNIQUES
from greentune.trainables.models import MODELS
from greentune.trainables.tasks import TASKS


@pytest.mark.parametrize(
    "registry, known, import_paths",
    [
        (TECHNIQUES, "data_selection", True),
        (TASKS, "teacher_student", True),
        (MODELS, "mlp", False),
        (SEARCHERS, "tpe", False),
        (SCHEDULERS, "moasha", False),
        (PRESETS, "default", False),
    ],
)
def test_each_kind_lists_its_entries_and_refuses_an_unknown_name_in_one_line(registry, known, import_paths):
    assert known in registry.names() and registry.names() == sorted(registry.names())
    with pytest.raises(ValueError) as error:
        registry.get("no_such_thing")
    line = str(error.value)
    assert line.startswith(f"unknown {registry.kind} 'no_such_thing'; choose from ") and known in line
    assert "\n" not in line and ("import path" in line) == import_paths


def test_a_name_registered_twice_with_another_entry_is_refused():
    things = Registry("thing")
    things.register("a", int)
    things.register("a", int)  # the same entry again: a module imported twice
    with pytest.raises(ValueError, match="thing name 'a' is registered twice"):
        things.register("a", float)


def test_discovery_runs_once_and_import_paths_are_checked_and_kept():
    calls = []
    things = Registry("thing", discover=lambda: calls.append(1) or things.register("found", 1),
                      import_example="pkg.module:thing", check=lambda obj, path: obj)
    assert things.names() == ["found"] and things.names() == ["found"] and calls == [1]
    assert things.get("json:dumps") is things.get("json:dumps") and things.is_imported("json:dumps")
    assert "json:dumps" not in things.names()  # looked up, not registered


@pytest.mark.parametrize(
    "path, message",
    [
        ("json", "'json' is not an import path; write it as package.module:name"),
        (".relative:make", "'.relative:make' is a relative import path; give the module's full name"),
        ("no_such_package.tasks:make", "cannot import 'no_such_package.tasks'"),
        ("json:nothing", "module 'json' has no 'nothing'"),
    ],
)
def test_one_resolver_says_what_is_wrong_with_an_import_path(path, message):
    with pytest.raises(ValueError, match=None) as error:
        load_object(path, "task")
    assert message in str(error.value)
