"""Tasks and models from outside greentune: named by import path or as torchvision:NAME, streamed Datasets, errors."""

from __future__ import annotations

import multiprocessing
import textwrap

import pytest
import ray
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import greentune
from greentune import techniques
from greentune.cli import main
from greentune.trainables.energy import CpuTimeEstimate, EnergyMeter
from greentune.trainables.loop import Training
from greentune.trainables.tasks import SimpleTask, TrainSettings
from greentune.trainables.trial import build_training

USER_TASKS = '''
import torch
from torch import nn
from torch.utils.data import TensorDataset
from greentune.registry import factory
from greentune.trainables.tasks import Task, TrainSettings


class Blobs(Task):
    """Three Gaussian blobs; the training split is a Dataset, the held-out one tensors."""

    quality, mode = "accuracy", "max"
    models = {"small": lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))}
    default_model = "small"
    defaults = TrainSettings(optimizer="adam", lr=0.05, batch_size=16, steps=30, eval_every=15)

    def __init__(self, n_train):  # no default: the search's task_options must reach it
        generator = torch.Generator().manual_seed(0)
        labels = torch.randint(3, (n_train + 64,), generator=generator)
        inputs = torch.randn(n_train + 64, 4, generator=generator) + 3 * nn.functional.one_hot(labels, 4)[:, :4].float()
        self.train = TensorDataset(inputs[:n_train], labels[:n_train])
        self.held_out = (inputs[n_train:], labels[n_train:])

    def data(self):
        return self.train, self.held_out

    def loss_fn(self, outputs, targets):
        return nn.functional.cross_entropy(outputs, targets)


def make_blobs(n_train) -> Task:  # the annotation marks it as a factory a search file may name
    return Blobs(n_train)


@factory  # marked, but breaks its promise: the task is checked after the call
def not_a_task():
    return [1, 2, 3]
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``user_tasks`` in a folder of its own, importable here and in Ray's workers (through PYTHONPATH)."""
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "user_tasks.py").write_text(textwrap.dedent(USER_TASKS))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    ray.shutdown()  # Ray's workers start with the environment of the ray.init that follows
    yield "user_tasks"
    ray.shutdown()


@pytest.mark.slow
def test_a_task_named_by_import_path_runs_a_three_trial_search(user_module, tmp_path):
    results = greentune.run(
        {
            "task": f"{user_module}:make_blobs",
            "task_options": {"n_train": 96},
            "approaches": {
                "baseline": {"techniques": ["baseline"]},
                "selection": {"techniques": ["data_selection"], "params": {"data_selection": {"on_skip": "last"}}},
            },
            "searcher": "random",
            "scheduler": "fifo",
            "num_trials": 3,
        },
        results=tmp_path / "results",
    )
    trials = results.trials
    assert len(trials) == 3 and set(trials["status"]) == {"finished"}
    assert (trials["config/task"] == "user_tasks:make_blobs").all()
    assert trials["quality"].equals(trials["accuracy"]) and (trials["accuracy"] > 0.6).all()  # the blobs are learnt
    assert results.search.objectives == {"quality": "max", "energy_j": "min"}  # the task's own mode


class CountingDataset(Dataset):
    """Records every index read, across DataLoader worker processes."""

    def __init__(self, inputs, targets):
        self.inputs, self.targets = inputs, targets
        self.reads = multiprocessing.get_context("fork").Value("i", 0)

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        with self.reads.get_lock():
            self.reads.value += 1
        return self.inputs[index], self.targets[index]


def blob_task(train, held_out, num_workers=0):
    return SimpleTask(
        train=train, held_out=held_out, num_workers=num_workers,
        models={"mlp": lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))},
        loss=nn.functional.cross_entropy, quality="accuracy", mode="max",
        defaults=TrainSettings(batch_size=16, steps=40, eval_every=20, lr=0.1),
    )


def train(task, technique="baseline", **params):
    settings = task.defaults
    stack = techniques.create([technique], {technique: params} if params else {})
    training = Training(task, stack, settings, model="mlp", seed=3, meter=EnergyMeter([CpuTimeEstimate()]))
    return training, list(training.evaluations())


def blobs():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(128, 4, generator=generator), torch.randint(3, (128,), generator=generator)


def test_a_streamed_dataset_reads_only_kept_batches_through_workers():
    inputs, targets = blobs()
    dataset = CountingDataset(inputs, targets)
    training, history = train(blob_task(dataset, (inputs, targets), num_workers=2), "data_selection", selectivity=0.5)
    kept = history[-1]["kept_steps"]
    assert 5 < kept < 35  # about half of the 40 batches were skipped
    assert dataset.reads.value == kept * 16  # a skipped batch's samples were never read


def test_a_streamed_dataset_trains_exactly_as_the_same_tensors_on_the_device():
    inputs, targets = blobs()
    _, streamed = train(blob_task(TensorDataset(inputs, targets), TensorDataset(inputs, targets)), "data_selection", selectivity=0.5)
    _, on_device = train(blob_task((inputs, targets), (inputs, targets)), "data_selection", selectivity=0.5)
    assert [m["test_loss"] for m in streamed] == [m["test_loss"] for m in on_device]
    assert streamed[-1]["kept_steps"] == on_device[-1]["kept_steps"]


def test_a_streamed_dataset_resumes_mid_epoch_where_it_stopped(tmp_path):
    inputs, targets = blobs()
    task = blob_task(TensorDataset(inputs, targets), (inputs, targets))
    _, straight = train(task, "data_selection", selectivity=0.5)
    first = Training(task, techniques.create(["data_selection"], {"data_selection": {"selectivity": 0.5}}), task.defaults,
                     model="mlp", seed=3, meter=EnergyMeter([CpuTimeEstimate()]))
    next(first.evaluations())  # 20 of 40 steps: mid-epoch (8 batches an epoch)
    first.save(tmp_path / "checkpoint.pt")
    resumed = Training(task, techniques.create(["baseline"]), task.defaults, model="mlp", seed=3,
                       meter=EnergyMeter([CpuTimeEstimate()]))
    resumed.load(tmp_path / "checkpoint.pt")
    assert [m["test_loss"] for m in resumed.evaluations()] == [straight[-1]["test_loss"]]


def test_a_dataloader_factory_is_trained_on_and_a_skip_moves_nothing_to_the_device():
    inputs, targets = blobs()
    loader = lambda batch_size: DataLoader(TensorDataset(inputs, targets), batch_size=batch_size, shuffle=True)  # noqa: E731
    training, history = train(blob_task(loader, (inputs, targets)), "data_selection", selectivity=0.5)
    assert training.steps_per_epoch == 8  # the loader's own length
    assert history[-1]["kept_steps"] < 40 and history[-1]["accuracy"] > 0.3


def test_torchvision_resnet18_trains_with_filter_pruning_and_shrinks():
    training = build_training({
        "task": "synthetic_images", "task_options": {"n_train": 16, "n_test": 8, "size": 16},
        "model": "torchvision:resnet18", "model_options": {"num_classes": 10},
        "techniques": ["filter_pruning"], "filter_pruning": {"width_ratio": 0.5, "start": 0.0, "span": 0.5, "steps": 1},
        "train": {"steps": 3, "eval_every": 3, "batch_size": 8, "epochs": None}, "device": "cpu",
    })
    before = sum(parameter.numel() for parameter in training.model.parameters())
    metrics = list(training.evaluations())[-1]
    block = training.model.layer1[0]
    assert block.conv1.out_channels == 32 and block.bn1.num_features == 32 and block.conv2.in_channels == 32
    assert metrics["params_total"] < 0.6 * before  # the tensors really shrank, not masked
    assert training.model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"task": "no_such_package.tasks:make"}, "cannot import 'no_such_package.tasks'"),
        ({"task": "user_tasks:not_a_task"}, "returned a list, not a greentune.trainables.tasks.Task"),
        ({"approaches": {"r": {"model": "torchvision:resnet1800"}}}, "torchvision has no model 'resnet1800'"),
        ({"approaches": {"g": {"techniques": ["gating"], "model": "torchvision:resnet18"}}},
         "gating needs a model with gated blocks (a gated_resnet* model), not ResizableResNet"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_bad_task_or_model_is_one_line_and_exit_2(user_module, tmp_path, capsys, fields, fragment, command):
    search = {"approaches": {"b": {"techniques": ["baseline"]}}, **fields}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(search))
    code = main(["validate", str(path)] if command == "validate" else ["run", "--config", str(path), "--results", str(tmp_path / "r")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and fragment in lines[0], lines
