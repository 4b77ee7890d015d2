"""What a run would reject, ``validate`` rejects first: each mistake is one line and exit 2 from both commands.

The mistakes are those a new user's first files were seen to make; ``run``
stops at the same line before starting Ray or writing a results folder.
"""

from __future__ import annotations

import pytest
import yaml

from helpers import assert_one_line_usage_error, in_process

BASE = {
    "task": "teacher_student",
    "train": {"steps": 20, "eval_every": 10},
    "approaches": {
        "big": {"model": "big"},
        "selection": {"techniques": ["data_selection"], "model": "big"},
        "gradmax": {"techniques": ["gradmax"], "model": "small", "params": {"gradmax": {"steps": 16}}},
    },
}


def approach(**spec) -> dict:
    return {"approaches": {**BASE["approaches"], "extra": spec}}


MISTAKES = {
    "names of metrics": [
        ({"objectives": ["quality", "energy"]}, "objective 'energy' is not a metric the trials report (did you mean energy_j?)"),
        ({"constraints": ["acuracy >= 0.9"]}, "constraint 'acuracy' is not a metric the trials report"),
        ({"constraints": ["energy <= 10"]}, "constraint 'energy' is not a metric the trials report (did you mean energy_j?)"),
    ],
    "numbers": [
        ({"scheduler": {"name": "moasha", "grace_period": "1"}}, "scheduler.grace_period must be a positive integer, got '1'"),
        ({"scheduler": {"name": "asha", "reduction_factor": 1}}, "scheduler.reduction_factor must be a number > 1"),
        ({"resources": {"cpu": "one"}}, "resources.cpu must be a positive number, got 'one'"),
        ({"resources": {"cpu": 0}}, "resources.cpu must be a positive number, got 0"),
        ({"seed": "abc"}, "seed must be an integer, got 'abc'"),
        ({"max_concurrent": -1}, "max_concurrent must be a positive integer (or left out), got -1"),
        ({"num_trials": True}, "num_trials must be a positive integer, got True"),
        ({"time_budget_s": True}, "time_budget_s must be a positive number (or left out), got True"),
        ({"energy": {"watts_per_core": -10}}, "energy.watts_per_core must be a positive number of watts, got -10"),
        ({"score": {"weight": "heavy"}}, "score.weight must be a number >= 0, got 'heavy'"),
        ({"train": {"steps": 20, "eval_every": 10, "lr": float("nan")}}, "train.lr must be a positive number, got nan"),
        ({"task_options": {"n_train": -5}}, "task_options.n_train must be a positive integer, got -5"),
        (approach(techniques=["gradmax"], model="small", params={"gradmax": {"steps": 16, "start": {"low": 0, "high": 0.3, "log": True}}}),
         "a log-scale range must start above 0, got low 0"),
        (approach(techniques=["gradmax"], model="small", params={"gradmax": {"steps": 16, "start": {"low": 0.1, "high": 0.3, "log": "yes"}}}),
         "log must be true or false, got 'yes'"),
    ],
    "names and shapes": [
        ({"approaches": {**BASE["approaches"], "": {"model": "big"}}}, "approach names must be text, like baseline-big; got ''"),
        ({"approaches": {**BASE["approaches"], 5: {"model": "big"}}}, "approach names must be text, like baseline-big; got 5"),
        (approach(techniques=["data_selection", "data_selection"]), "technique listed twice"),
        (approach(model=[]), "task 'teacher_student' has no model []"),
        ({"evaluate_first": [{"approach": "selection", "params": ["x"]}]}, "params of 'selection' must map each technique"),
        (approach(model="torchvision:resnet18", model_options={"num_classes": -1}), "model torchvision:resnet18:"),
        (approach(techniques=["gating"], params={"gating": {"granularity": "layer"}}), "layer gating needs a model with gated blocks"),
        (approach(model="torchvision:resnet18"), "model 'torchvision:resnet18' does not take the task's inputs (a batch of shape (2, 100))"),
        ({"task": "digits", "task_options": {"hidden": [64, 10**12]}, "approaches": {"dense": {}}},
         "the model does not fit in this machine's memory (it asks for a tensor of"),
    ],
    "code a file names": [
        ({"task": ".relative:make_task"}, "is a relative import path"),
        ({"task": "builtins:input"}, "task 'builtins:input' is input, which greentune will not call"),
        ({"task": "builtins:exit"}, "task 'builtins:exit' is Quitter, which greentune will not call"),
        ({"task": "os:system", "task_options": {"command": "true"}}, "task 'os:system' is system, which greentune will not call"),
    ],
}
CASES = [pytest.param(change, line, id=f"{group}: {line[:40]}") for group, cases in MISTAKES.items() for change, line in cases]


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("change, line", CASES)
def test_a_mistake_is_one_line_from_validate_and_from_run(change, line, command, tmp_path, capsys):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({**BASE, **change}))
    arguments = [str(path)] if command == "validate" else ["--config", str(path), "--results", str(tmp_path / "out")]
    assert_one_line_usage_error(in_process(capsys, command, *arguments), line)
    assert not (tmp_path / "out").exists()


def test_the_base_file_is_valid(tmp_path, capsys):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert in_process(capsys, "validate", path).returncode == 0


@pytest.mark.parametrize("command", ["validate", "run"])
def test_files_that_are_not_search_files_are_one_line(command, tmp_path, capsys):
    def check(path, line):
        arguments = [str(path)] if command == "validate" else ["--config", str(path)]
        assert_one_line_usage_error(in_process(capsys, command, *arguments), line)

    check(tmp_path, "is a folder; give a search file (YAML) inside it")
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 3000 + "]" * 3000)
    check(deep, "nests too deeply to be a search file")
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: teacher_student\napproaches: {a: {techniques: [baseline]}\nnum_trials: 3\n")
    check(broken, "is not valid YAML at line 3, column 1: while parsing a flow mapping")


def test_validate_takes_a_presets_name(capsys):
    result = in_process(capsys, "validate", "default")
    assert result.returncode == 0 and result.stdout.startswith("default: ok")
