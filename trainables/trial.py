"""One trial: a flat config in, a ``Training`` built, metrics reported to Ray Tune.

A trial config looks like::

    {"task": "teacher_student", "model": "big", "techniques": ["data_selection"],
     "data_selection": {"selectivity": 0.4}, "train": {"steps": 3500}, "seed": 0}

Every technique's parameters sit under its own name. ``check_trial_config``
lists every problem of a config at once, so a search can refuse a bad one
before any trial starts; ``run_trial`` is the Ray Tune function trainable.

A trial reports every evaluation but checkpoints only when a checkpoint is
worth its cost (``CheckpointPolicy``): by default at the first evaluation a
minute or more after the previous checkpoint, so a lost node costs at most
about a minute plus one evaluation interval, while a short trial whose
evaluations come every fraction of a second is not slowed down by writing
and persisting its whole state at each of them. ``checkpoint_every: N``
checkpoints every N evaluations instead (1: each, as a scheduler that pauses
trials needs). The last evaluation is always checkpointed, with the
exported network beside it.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Mapping

import torch

from greentune import techniques
from greentune.layout import MODEL_FILE
from greentune.techniques.registry import available

from .energy import DEFAULT_WATTS_PER_CORE, open_meter
from .loop import Training, TrainingDiverged
from .models import is_outside_model, outside_model
from .tasks import create_task

CHECKPOINT_FILE = "training.pt"
CHECKPOINT_PERIOD_S = 60.0  # checkpoint_every: auto
TRIAL_FIELDS = {
    "task": "task name",
    "task_options": "keyword arguments of the task",
    "model": "model variant of the task, torchvision:NAME, or an import path module:function",
    "model_options": "keyword arguments of a torchvision or imported model",
    "techniques": "technique names, applied together",
    "train": "overrides of the task's training settings",
    "seed": "seed of initialisation, batch order and technique randomness",
    "device": "auto, cpu or cuda",
    "energy": "watts_per_core for the CPU estimate; gpu_sharing: auto, shared or exclusive",
    "checkpoint_every": "auto (a minute or more apart) or every N evaluations; the last is always saved",
    "approach": "label of the search arm this trial belongs to",
    "repeat_group": "the trial whose configuration this seed repeat shares",
    "warm_start": "an evaluate_first point: schedulers let it train to the end",
    "score": "weight and reference_j of the scalar score (see green_score)",
}


class ConfigError(ValueError):
    """A config with one or more problems, each naming the field to fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def check_trial_config(config: Mapping[str, Any]) -> list[str]:
    """Every problem with ``config``, as lines that name the field and the fix."""
    return _assemble(config)[0]


def build_training(config: Mapping[str, Any]) -> Training:
    problems, parts = _assemble(config)
    if problems:
        raise ConfigError(problems)
    device, energy = parts["device"], parts["energy"]
    meter = open_meter(
        device.type == "cuda",
        watts_per_core=energy.get("watts_per_core", DEFAULT_WATTS_PER_CORE),
        shared_gpu=_gpu_is_shared(energy.get("gpu_sharing", "auto")),
    )
    try:
        return Training(
            parts["task"],
            parts["technique"],
            parts["settings"],
            model=parts["model"],
            seed=int(config.get("seed", 0)),
            meter=meter,
            device=device,
        )
    except BaseException:
        meter.close()  # a polling counter's thread would outlive the trial that failed to build
        raise


def _assemble(config: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """What a trial is built from (task, model, settings, technique, device, energy) and every problem on the way.

    Each part is built once and a failing one does not stop the others, so
    a search can refuse a bad config with all its problems listed, and a
    good one is built from the same objects that were checked.
    """
    problems = []
    technique_names = list(config.get("techniques") or ["baseline"])
    known = set(TRIAL_FIELDS) | set(available()) | set(technique_names)  # an import path names its own field
    for field in config:
        if field not in known:
            problems.append(f"unknown field {field!r}; valid fields: {', '.join(sorted(TRIAL_FIELDS))}")
    try:
        task = create_task(config.get("task", "teacher_student"), **dict(config.get("task_options") or {}))
    except ValueError as error:
        return problems + [str(error)], {}

    def attempt(build):
        try:
            return build()
        except ValueError as error:
            problems.append(str(error))

    model = config.get("model", task.default_model)
    model_options = dict(config.get("model_options") or {})
    if is_outside_model(model):
        model = attempt(lambda: outside_model(model, model_options))
    else:
        attempt(lambda: task.check_model(model))
        if model_options:
            problems.append(f"model_options apply to a torchvision:NAME or imported model, not the task's variant {model!r}")
    parts = {
        "task": task,
        "model": model,
        "settings": attempt(lambda: task.defaults.override(dict(config.get("train") or {}))),
        "technique": attempt(lambda: techniques.create(technique_names, {name: config.get(name) for name in technique_names})),
        "device": attempt(lambda: _device(config.get("device", "auto"))),
        "energy": attempt(lambda: _checked_energy(dict(config.get("energy") or {}))),
        "checkpoints": attempt(lambda: CheckpointPolicy(config.get("checkpoint_every", "auto"))),
    }
    extra = [name for name in available() if name in config and name not in technique_names]
    problems += [f"parameters given for {name!r}, which is not in techniques {technique_names}" for name in extra]
    if callable(parts["model"]) and not problems:
        attempt(lambda: _check_fit(parts["model"], technique_names, config, parts["settings"]))
    return problems, parts


def _check_fit(build_model, technique_names: list[str], config: Mapping[str, Any], settings) -> None:
    """Prepare fresh techniques on a model from outside the task, so that what a technique needs and
    the model lacks (gating's gated blocks, resizable widths) is one line before any trial starts.

    The task's own variants need no such check: its presets are tested with them.
    """
    technique = techniques.create(technique_names, {name: config.get(name) for name in technique_names})
    steps = settings.steps if settings.epochs is None else max(1, math.ceil(settings.epochs))
    probe = SimpleNamespace(seed=int(config.get("seed", 0)), step=0, total_steps=steps, steps_per_epoch=1,
                            device=torch.device("cpu"))
    try:
        technique.prepare(build_model(), probe)
    except (AttributeError, NotImplementedError):
        pass  # the technique's prepare needs a real run (data, an optimizer) to tell; the trial will


class CheckpointPolicy:
    """Which evaluations a trial checkpoints: the last, and every N or, with ``auto``, one a period or more after the last checkpoint."""

    def __init__(self, every: int | str = "auto", *, period_s: float = CHECKPOINT_PERIOD_S,
                 clock: Callable[[], float] = time.monotonic):
        if every != "auto" and not (isinstance(every, int) and not isinstance(every, bool) and every >= 1):
            raise ValueError(f"checkpoint_every must be auto or a positive number of evaluations, got {every!r}")
        self.every, self.period_s, self.clock = every, period_s, clock
        self._evaluations, self._last = 0, clock()

    def due(self, complete: bool) -> bool:
        """Called once per evaluation: whether to checkpoint this one."""
        self._evaluations += 1
        now = self.clock()
        if self.every == "auto":
            due = complete or now - self._last >= self.period_s
        else:
            due = complete or self._evaluations % self.every == 0
        if due:
            self._last = now
        return due


def _gpu_is_shared(setting: str) -> bool:
    """``auto``: shared when Ray gave this trial a fraction of a GPU (other trials run on the rest)."""
    if setting != "auto":
        return setting == "shared"
    import ray

    # Outside a Ray Tune trial (no Ray, or a driver such as a notebook after a search), nothing shares the GPU.
    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return False
    fraction = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
    return 0.0 < fraction < 1.0


def green_score(quality: float, mode: str, energy_j: float, weight: float = 0.1, reference_j: float = 1.0) -> float:
    """A scalar to maximise for single-metric tools (ASHA, plain Optuna).

    score = ±quality − weight · log2(energy_j / reference_j), with +quality for
    a maximised metric and −quality for a minimised one: halving the energy
    is worth ``weight`` units of quality. The reference only shifts the
    score, so rankings do not depend on it; set it to a baseline's energy
    to read the score as quality relative to that baseline.

    >>> green_score(0.9, "max", 2.0, weight=0.1)
    0.8
    """
    signed = quality if mode == "max" else -quality
    return signed - weight * math.log2(max(energy_j, 1e-12) / reference_j)


def _checked_energy(energy: Mapping[str, Any]) -> Mapping[str, Any]:
    unknown = sorted(set(energy) - {"watts_per_core", "gpu_sharing"})
    if unknown:
        raise ValueError(f"energy has no setting {unknown[0]!r}; valid: watts_per_core, gpu_sharing")
    if energy.get("gpu_sharing", "auto") not in ("auto", "shared", "exclusive"):
        raise ValueError(f"energy.gpu_sharing must be auto, shared or exclusive, got {energy['gpu_sharing']!r}")
    return energy


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no GPU is visible; use device: auto or cpu")
    return torch.device(name)


def run_trial(config: dict) -> None:
    """Ray Tune function trainable: train, report each evaluation, checkpoint, resume."""
    import ray
    from ray import tune

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    node_id = ray.get_runtime_context().get_node_id()  # which node ran it, on a cluster
    training = build_training(config)
    try:  # from here on the meter is closed however the trial ends, a failed load included
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                training.load(Path(directory) / CHECKPOINT_FILE)
            if training.step >= training.total_steps:  # restored from its final checkpoint
                tune.report(training.last_metrics)
                return
        score = dict(config.get("score") or {})
        checkpoints = CheckpointPolicy(config.get("checkpoint_every", "auto"))
        for metrics in training.evaluations():
            metrics["score"] = green_score(metrics["quality"], training.task.mode, metrics["energy_j"], **score)
            metrics["node_id"] = node_id
            if checkpoints.due(metrics["complete"]):
                with tempfile.TemporaryDirectory() as directory:
                    training.save(Path(directory) / CHECKPOINT_FILE)
                    if metrics["complete"]:
                        training.export(Path(directory) / MODEL_FILE)
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
            else:
                tune.report(metrics)
    except TrainingDiverged as error:
        # Reported, not raised: the search records why and goes on.
        tune.report(
            {**training.progress(), "quality": math.nan, "score": -math.inf,
             "complete": False, "diverged": True, "stop_reason": str(error)}
        )
    finally:
        training.meter.close()
