"""Hundreds of broken search files, made by mutating the presets, through ``greentune validate`` in process.

Whatever the mutation, validate answers with ``ok`` or with one line per
problem and exit 2, never a traceback; and the mutations known to be wrong
are all refused. The presets whose checks build large models are left out
to keep this under a minute; their fields are the same.
"""

from __future__ import annotations

import copy
import math
import random

import pytest
import yaml

from greentune.cli import main
from greentune.search.presets import preset_path

PRESETS = ("default", "gating-synthetic-cpu", "grow-prune-select-teacher-student", "sparse_training_cpu",
           "grow-prune-select-wrn28-1-cifar10", "gating-resnet110-cifar100")
ODD_VALUES = (-1, 0, 0.5, 10**12, True, False, "x", "", None, [], {}, [1, "a"], {"low": 1, "high": 0},
              math.nan, math.inf, "auto", "1")
MUTATIONS = 300
# Mutations a search must refuse wherever they are made: each is (field path, value).
KNOWN_WRONG = [
    (("num_trials",), 0),
    (("num_trials",), True),
    (("seed",), "abc"),
    (("objectives",), ["quality", "energy"]),
    (("constraints",), ["acuracy >= 0.9"]),
    (("searcher",), {"name": "bayes"}),
    (("searcher",), {"name": "tpe", "startup_trials": -1}),
    (("scheduler",), {"name": "moasha", "grace_period": "1"}),
    (("resources",), {"cpu": 0}),
    (("energy",), {"watts_per_core": math.nan}),
    (("train", "lr"), math.inf),
    (("max_concurrent",), -1),
    (("num_trails",), 3),
    (("task",), "builtins:input"),
]


def preset(name: str) -> dict:
    return yaml.safe_load(preset_path(name).read_text())


def paths(tree, prefix=()):
    """Every field path of a search file, nested mappings and list items included."""
    yield prefix
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        yield from paths(value, (*prefix, key))


def set_at(tree, path, value):
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def mutate(search: dict, rng: random.Random) -> dict:
    """One mutation: a field given an odd value, removed, misspelt, or a field added."""
    search = copy.deepcopy(search)
    path = rng.choice([path for path in paths(search) if path])
    parent = search
    for key in path[:-1]:
        parent = parent[key]
    action = rng.choice(["value", "value", "value", "remove", "misspell", "add"])
    if action == "value":
        parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
    elif action == "remove":
        del parent[path[-1]]
    elif action == "misspell" and isinstance(parent, dict) and len(str(path[-1])) > 1:
        key = str(path[-1])
        cut = rng.randrange(len(key))
        parent[key[:cut] + key[cut + 1:]] = parent.pop(path[-1])
    elif isinstance(parent, dict):
        parent["extra_" + str(rng.randrange(100))] = rng.choice(ODD_VALUES)
    return search


def validate(search: dict, tmp_path, capsys) -> tuple[int, list[str], str]:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(search))
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    return code, err.strip().splitlines(), out


def test_hundreds_of_mutations_get_ok_or_one_line_per_problem(tmp_path, capsys):
    rng = random.Random(0)
    originals = {name: preset(name) for name in PRESETS}
    outcomes = {0: 0, 2: 0}
    for index in range(MUTATIONS):
        search = mutate(originals[PRESETS[index % len(PRESETS)]], rng)
        code, lines, out = validate(search, tmp_path, capsys)
        assert code in (0, 2), (search, lines)
        assert all(line.startswith(("greentune: error: ", "greentune: warning: ")) for line in lines), (search, lines)
        assert "Traceback" not in "\n".join(lines)
        if code == 2:
            assert any(line.startswith("greentune: error: ") for line in lines), (search, lines)
        else:
            assert ": ok (" in out
        outcomes[code] += 1
    assert outcomes[2] > MUTATIONS / 2 and outcomes[0] > 0  # most mutations break something, not all


@pytest.mark.parametrize("name", PRESETS)
def test_the_known_wrong_mutations_are_each_refused(name, tmp_path, capsys):
    original = preset(name)
    assert validate(original, tmp_path, capsys)[0] == 0
    let_through = []
    for path, value in KNOWN_WRONG:
        search = copy.deepcopy(original)
        if path[0] == "train":
            search.setdefault("train", {})
        set_at(search, path, copy.deepcopy(value))
        code, lines, _ = validate(search, tmp_path, capsys)
        if code != 2 or not lines:
            let_through.append((path, value))
    assert let_through == []
