"""The contract every registered technique meets, so a new one is tested by registering it.

With its default parameters on a short teacher–student run, a technique
trains to the end, a checkpoint taken mid-run resumes to the same result
(structure, masks and all), its export is a module that still maps inputs to outputs, and every
point of its declared search space builds.
"""

from __future__ import annotations

import fnmatch
import json
import math
import pickle

import pytest
import torch

from greentune import techniques
from greentune.layout import MODEL_FILE, SHARED_ARCHITECTURE_FILE
from greentune.techniques import Choice, declared_reports
from greentune.trainables.shared_model import load_shared_model
from greentune.trainables.trial import TRAINABLE_METRICS, TRIAL_METRICS, reported_metrics

from helpers import make_training, run_to_end, uninterrupted_and_resumed

REGISTERED = sorted(techniques.available())
START_MODEL = {"gradmax": "small"}  # growing needs room to grow into; the rest start from baseline big


def build(name, **settings):
    return make_training(techniques.create([name]), model=START_MODEL.get(name, "big"), **settings)


def corners(cls) -> list[dict]:
    """Each declared parameter at its low and high end (or each choice), others at default."""
    points = []
    for name, domain in cls.space.items():
        values = domain.options if isinstance(domain, Choice) else (domain.low, domain.high)
        points += [{name: value} for value in values]
    return points


@pytest.mark.parametrize("name", REGISTERED)
def test_trains_to_the_end_with_defaults(name):
    history = run_to_end(build(name, steps=40, eval_every=20))
    assert history[-1]["complete"] and history[-1]["step"] == 40
    assert math.isfinite(history[-1]["quality"])
    assert history[-1]["energy_j"] > 0


@pytest.mark.parametrize("name", REGISTERED)
def test_the_metrics_it_reports_are_the_ones_it_declares(name):
    """A search checks objectives and constraints against the declared names: they must be what trials report."""
    training = build(name, steps=20, eval_every=10)
    reported = set(run_to_end(training)[-1])
    cls = techniques.available()[name]
    declared = reported_metrics(training.task, [cls])
    assert declared is not None
    assert [key for key in reported if not any(fnmatch.fnmatchcase(key, pattern) for pattern in declared)] == []
    own = declared_reports(cls)
    assert {key for key in own if "*" not in key} <= reported
    assert TRIAL_METRICS - TRAINABLE_METRICS <= reported  # those: the trainable's


@pytest.mark.parametrize("name", REGISTERED)
def test_a_checkpoint_mid_run_resumes_to_the_same_result(name, tmp_path):
    expected, final = uninterrupted_and_resumed(lambda: build(name, steps=70, eval_every=35), tmp_path / "training.pt")
    assert final["step"] == 70
    assert final["params"] == expected["params"] and final["params_total"] == expected["params_total"]
    assert final["quality"] == pytest.approx(expected["quality"], rel=1e-6)


def test_a_stack_of_techniques_checkpoints_mid_run_and_resumes_to_the_same_result(tmp_path):
    # A structured technique (whose densities are all dense) under a data selection: Ray Tune checkpoints it.
    def stacked():
        return make_training(techniques.create(["filter_pruning", "data_selection"]), model="big", steps=70, eval_every=35)

    expected, final = uninterrupted_and_resumed(stacked, tmp_path / "training.pt")
    start = sum(parameter.numel() for parameter in stacked().model.parameters())
    assert final["step"] == 70 and final["params_total"] == expected["params_total"] < start  # pruned, and kept so
    assert final["quality"] == pytest.approx(expected["quality"], rel=1e-6)


@pytest.mark.parametrize("name", REGISTERED)
def test_export_gives_a_working_module(name):
    training = build(name, steps=20, eval_every=20)
    run_to_end(training)
    exported = training.technique.export(training.model).eval()
    with torch.no_grad():
        outputs = exported(training.held_out.inputs[:5])
    assert outputs.shape[0] == 5 and torch.isfinite(outputs).all()


@pytest.mark.parametrize("name", REGISTERED)
def test_the_shared_export_opens_without_unpickling_and_gives_the_same_outputs(name, tmp_path, monkeypatch):
    training = build(name, steps=20, eval_every=20)
    run_to_end(training)
    training.export(tmp_path / MODEL_FILE)
    inputs = training.held_out.inputs[:5].cpu()
    with torch.no_grad():
        expected = torch.load(tmp_path / MODEL_FILE, weights_only=False)(inputs)

    def no_pickle(*args, **kwargs):
        raise AssertionError("the shared form unpickled something")

    with monkeypatch.context() as patched:
        for target, attribute in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
            patched.setattr(target, attribute, no_pickle)
        shared = load_shared_model(tmp_path)
    with torch.no_grad():
        assert torch.equal(shared(inputs), expected)
    assert json.loads((tmp_path / SHARED_ARCHITECTURE_FILE).read_text())["format"] == "greentune-shared-model"


@pytest.mark.parametrize("name", REGISTERED)
def test_every_corner_of_the_search_space_builds(name):
    cls = techniques.technique_class(name)
    for point in corners(cls):
        techniques.create([name], {name: point})
