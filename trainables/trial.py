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
import re
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Mapping

import torch

from greentune import carbon, techniques
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
    "carbon": "g_per_kwh and source of the grid intensity behind co2_g (greentune.carbon)",
}


# What every trial reports at each evaluation, besides its task's metrics (``Task.metrics``) and its
# techniques' (``Technique.reports``); tests/test_technique_contract.py checks the three against a real run.
TRIAL_METRICS = frozenset({
    "quality", "score", "complete", "diverged", "stop_reason", "node_id", "loss", "step", "trained_fraction", "epoch",
    "energy_j", "time_s", "eval_energy_j", "eval_time_s", "idle_power_w", "idle_energy_j", "energy_source",
    "cpu_energy_j", "cpu_energy_source", "eval_energy_short_windows", "compile_fallback",
    "energy_short_windows", "time_per_epoch_s", "flops", "flops_sparse", "inference_flops", "inference_flops_dense",
    "params", "params_total", "peak_memory_mb", "peak_memory_added_mb", "memory_source", "kept_steps",
    "co2_g", "carbon_source",
})
TRAINABLE_METRICS = frozenset({"score", "node_id", "diverged", "stop_reason", "co2_g", "carbon_source"})  # run_trial's own


def reported_metrics(task, technique_classes) -> frozenset[str] | None:
    """The metric names (``*`` patterns among them) trials of ``task`` with these techniques report.

    None where a task overrides ``evaluate`` without naming its ``metrics``, or
    a technique overrides ``metrics`` without declaring ``reports``: then
    nothing can be checked before a trial runs.
    """
    from .tasks import Task

    overrides = _defined(type(task), Task)
    task_metrics = type(task).metrics if "metrics" in overrides or "evaluate" not in overrides else None
    declared = [techniques.declared_reports(cls) for cls in technique_classes]
    if task_metrics is None or None in declared:
        return None
    return TRIAL_METRICS | {task.quality, *task_metrics} | frozenset().union(*declared)


def _defined(cls: type, base: type) -> set[str]:
    """The attributes ``cls`` or a class between it and ``base`` defines: what it overrides of ``base``."""
    names: set[str] = set()
    for klass in cls.__mro__[: cls.__mro__.index(base)]:
        names |= set(vars(klass))
    return names


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
    on_gpu = device.type == "cuda"
    meter = open_meter(
        on_gpu,
        watts_per_core=energy.get("watts_per_core", DEFAULT_WATTS_PER_CORE),
        shared_fraction=_shared_fraction(energy.get("gpu_sharing", "auto"), ray_gpus()) if on_gpu else None,
        gpu_uuids=[str(torch.cuda.get_device_properties(index).uuid) for index in range(torch.cuda.device_count())]
        if on_gpu else None,
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
        "device": attempt(lambda: placed_device(config.get("device", "auto"), ray_gpus(), torch.cuda.is_available())),
        "energy": attempt(lambda: _checked_energy(dict(config.get("energy") or {}))),
        "checkpoints": attempt(lambda: CheckpointPolicy(config.get("checkpoint_every", "auto"))),
    }
    extra = [name for name in available() if name in config and name not in technique_names]
    problems += [f"parameters given for {name!r}, which is not in techniques {technique_names}" for name in extra]
    if not problems:
        build_model = parts["model"] if callable(parts["model"]) else lambda: task.build_model(model)
        attempt(lambda: _check_fit(build_model, technique_names, config, parts["settings"]))
    if callable(parts["model"]) and not problems:
        attempt(lambda: _check_inputs(parts["model"], task, config.get("model")))
    return problems, parts


def _check_fit(build_model, technique_names: list[str], config: Mapping[str, Any], settings) -> None:
    """Prepare fresh techniques on a fresh model, so that what a technique needs and the model lacks
    (gating's gated blocks on an MLP, resizable widths) is one line before any trial starts.
    """
    technique = techniques.create(technique_names, {name: config.get(name) for name in technique_names})
    steps = settings.steps if settings.epochs is None else max(1, math.ceil(settings.epochs))
    probe = SimpleNamespace(seed=int(config.get("seed", 0)), step=0, total_steps=steps, steps_per_epoch=1,
                            device=torch.device("cpu"))
    try:
        model = build_model()
    except (MemoryError, RuntimeError) as error:
        if not isinstance(error, MemoryError) and "allocate" not in str(error):
            raise
        asked = re.search(r"allocate (\d+) bytes", str(error))
        size = f"a tensor of {int(asked.group(1)) / 1e9:.3g} GB" if asked else "more than there is"
        raise ValueError(f"the model does not fit in this machine's memory (it asks for {size}); "
                         "make it smaller (task_options such as hidden, or model_options)") from None
    try:
        technique.prepare(model, probe)
    except (AttributeError, NotImplementedError):
        pass  # the technique's prepare needs a real run (data, an optimizer) to tell; the trial will


def _check_inputs(build_model, task, name: str) -> None:
    """A model from outside the task takes one held-out batch: a model built for other inputs is one line here,
    not an error in every trial. Skipped where the task's data is not on this machine yet (it is fetched later)."""
    try:
        _, held_out = task.splits(torch.device("cpu"), 2, 0)
    except ValueError:
        return
    inputs, _ = next(iter(held_out.batches()))
    try:
        with torch.no_grad():
            build_model().eval()(inputs[:2])
    except (RuntimeError, ValueError, TypeError) as error:
        first = str(error).splitlines()[0]
        raise ValueError(f"model {name!r} does not take the task's inputs (a batch of shape {tuple(inputs[:2].shape)}): {first}") from None


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


def ray_gpus() -> float | None:
    """The GPUs Ray gave this trial (0.25: a quarter of one), or None outside a Ray Tune trial.

    Ray 2.60 leaves ``CUDA_VISIBLE_DEVICES`` unset for an actor it gave no
    GPU, so CUDA would see every GPU of the node: only Ray can say.
    """
    ray = sys.modules.get("ray")  # never imported: no trial of Ray's
    # No Ray, or a driver such as a notebook after a search: not a trial Ray placed.
    if ray is None or not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return None
    return ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)


def _shared_fraction(setting: str, gpus: float | None) -> float | None:
    """This trial's share of a GPU others use too, or None where it has its GPUs to itself.

    ``auto``: shared when Ray gave it a fraction of a GPU (other trials run
    on the rest); ``shared`` outside Ray: the whole device, as no fraction is known.
    """
    fraction = gpus if gpus is not None and 0.0 < gpus < 1.0 else None
    if setting == "auto":
        return fraction
    return (fraction or 1.0) if setting == "shared" else None


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


def trial_intensity(config: Mapping[str, Any]) -> carbon.Intensity:
    """The grid intensity of a trial's config (the search resolved it), or greentune's labelled default."""
    given = config.get("carbon")
    return carbon.Intensity(float(given["g_per_kwh"]), str(given["source"])) if given else carbon.intensity()


def with_carbon(metrics: dict, intensity: carbon.Intensity) -> dict:
    """``metrics`` with ``co2_g`` (all the trial spent so far, training and evaluation) and its ``carbon_source``.

    >>> with_carbon({"energy_j": 3.0e6, "eval_energy_j": 0.6e6}, carbon.Intensity(50, "given"))["co2_g"]
    50.0
    """
    spent = float(metrics.get("energy_j") or 0.0) + float(metrics.get("eval_energy_j") or 0.0)
    metrics.update(co2_g=carbon.grams(spent, intensity), carbon_source=intensity.source)
    return metrics


def _checked_energy(energy: Mapping[str, Any]) -> Mapping[str, Any]:
    unknown = sorted(set(energy) - {"watts_per_core", "gpu_sharing"})
    if unknown:
        raise ValueError(f"energy has no setting {unknown[0]!r}; valid: watts_per_core, gpu_sharing")
    if energy.get("gpu_sharing", "auto") not in ("auto", "shared", "exclusive"):
        raise ValueError(f"energy.gpu_sharing must be auto, shared or exclusive, got {energy['gpu_sharing']!r}")
    return energy


def placed_device(name: str, gpus: float | None, cuda_available: bool) -> torch.device:
    """The device a trial trains on: ``gpus`` is what Ray gave it (None outside Ray), and a trial Ray gave none runs on the CPU.

    >>> placed_device("auto", 0.0, cuda_available=True)
    device(type='cpu')
    """
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and gpus == 0:
        raise ValueError("device 'cuda' was asked for but Ray gave this trial no GPU; set resources: {gpu: ...} "
                         "in the search file, or use device: auto")
    if name == "cuda" and not cuda_available:
        raise ValueError("device 'cuda' was asked for but no GPU is visible; use device: auto or cpu")
    if name == "auto":
        return torch.device("cuda" if cuda_available and gpus != 0 else "cpu")
    return torch.device(name)


def run_trial(config: dict) -> None:
    """Ray Tune function trainable: train, report each evaluation, checkpoint, resume."""
    import ray
    from ray import tune

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    node_id = ray.get_runtime_context().get_node_id()  # which node ran it, on a cluster
    intensity = trial_intensity(config)
    training = build_training(config)
    try:  # from here on the meter is closed however the trial ends, a failed load included
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                training.load(Path(directory) / CHECKPOINT_FILE)
            if training.step >= training.total_steps:  # restored from its final checkpoint
                tune.report(with_carbon(dict(training.last_metrics), intensity))
                return
        score = dict(config.get("score") or {})
        checkpoints = CheckpointPolicy(config.get("checkpoint_every", "auto"))
        for metrics in training.evaluations():
            metrics["score"] = green_score(metrics["quality"], training.task.mode, metrics["energy_j"], **score)
            metrics["node_id"] = node_id
            with_carbon(metrics, intensity)
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
        tune.report(with_carbon(
            {**training.progress(), "quality": math.nan, "score": -math.inf,
             "complete": False, "diverged": True, "stop_reason": str(error)}, intensity,
        ))
    finally:
        training.meter.close()
