"""Experiment trackers by name: Ray Tune's own logger callbacks, each evaluation's metrics sent to them.

``loggers: [tensorboard, mlflow, wandb, csv]`` in a search file (or
``greentune.run(..., loggers=[...])``) adds these callbacks to the run:

- ``tensorboard``: Ray's ``TBXLoggerCallback``, event files in each trial's
  folder under ``DIR/tune`` (``tensorboard --logdir DIR/tune``);
- ``mlflow``: Ray's ``MLflowLoggerCallback``, one run per trial in the
  local file store ``DIR/mlruns`` (``mlflow ui --backend-store-uri DIR/mlruns``);
- ``wandb``: Ray's ``WandbLoggerCallback``, project named after the results
  directory (``WANDB_MODE=offline`` keeps it on disk);
- ``csv``: Ray's ``CSVLoggerCallback``, ``progress.csv`` in each trial's folder.

Numbers go to the trackers as metrics. The text ones, such as
``energy_source`` and ``carbon_source``, are not numbers Ray would log, so
TensorBoard gets them as text and MLflow as run tags, whenever they change.
Each tracker's package is an extra (``pip install 'greentune[mlflow]'``);
``missing_packages`` names it before a search starts.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from greentune.registry import Registry

# tracker -> (the module it needs, the extra that installs it)
PACKAGES = {"tensorboard": ("tensorboardX", "tensorboard"), "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}
TRACKERS: Registry[Callable[[Path], Any]] = Registry("logger")


def missing_packages(names: tuple[str, ...] | list[str]) -> list[str]:
    """One line per tracker whose package is not installed, naming the extra to install."""
    lines = []
    for name in names:
        module, extra = PACKAGES.get(name, (None, None))
        if module and importlib.util.find_spec(module) is None:
            lines.append(f"logger {name} needs the {module} package: pip install 'greentune[{extra}]'")
    return lines


def make_trackers(names: tuple[str, ...] | list[str], results_dir: Path) -> list:
    """The Ray Tune callbacks of the trackers ``names``, writing under ``results_dir``."""
    return [TRACKERS.create(name, Path(results_dir)) for name in names]


class _Sources:
    """The text metrics of each trial's results (where its numbers came from), which Ray's loggers leave out."""

    def __init__(self):
        self._said: dict[tuple[Any, str], str] = {}

    def changed(self, trial, result: Mapping[str, Any]) -> dict[str, str]:
        """The ``*_source`` values of ``result`` that differ from what ``trial`` last said."""
        new = {key: value for key, value in result.items() if key.endswith("_source") and isinstance(value, str)
               and self._said.get((trial, key)) != value}
        self._said.update({(trial, key): value for key, value in new.items()})
        return new


@TRACKERS.register("tensorboard")
def _tensorboard(results_dir: Path):
    from ray.tune.logger import TBXLoggerCallback

    class Tensorboard(TBXLoggerCallback):
        """Ray's TensorBoard logger, plus the text metrics as TensorBoard text, when they change."""

        def __init__(self):
            super().__init__()
            self.sources = _Sources()

        def log_trial_result(self, iteration: int, trial, result: dict):
            super().log_trial_result(iteration, trial, result)
            changed = self.sources.changed(trial, result)
            for key, value in changed.items():
                self._trial_writer[trial].add_text(f"ray/tune/{key}", value, global_step=result.get("training_iteration"))
            if changed:
                self._trial_writer[trial].flush()

    return Tensorboard()


@TRACKERS.register("mlflow")
def _mlflow(results_dir: Path):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class MLflow(MLflowLoggerCallback):
        """Ray's MLflow logger, plus the text metrics as run tags, when they change."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.sources = _Sources()

        def log_trial_result(self, iteration: int, trial, result: dict):
            super().log_trial_result(iteration, trial, result)
            import mlflow

            for key, value in self.sources.changed(trial, result).items():
                mlflow.MlflowClient(self.tracking_uri).set_tag(self._trial_runs[trial], key, value)

    # MLflow 3 keeps its file store in maintenance and refuses it unless told: a local store beside the
    # results is what this logger is for (point MLFLOW_TRACKING_URI-style servers at it with mlflow's own tools).
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLflow(tracking_uri=(results_dir / "mlruns").resolve().as_uri(), experiment_name=results_dir.name)


@TRACKERS.register("wandb")
def _wandb(results_dir: Path):
    from ray.air.integrations.wandb import WandbLoggerCallback

    # Ray's callback logs from an actor that gets WANDB_API_KEY but not WANDB_MODE: the mode is passed to wandb.init.
    mode = {"mode": os.environ["WANDB_MODE"]} if os.environ.get("WANDB_MODE") else {}
    return WandbLoggerCallback(project=results_dir.name, dir=str(results_dir.resolve()), **mode)


@TRACKERS.register("csv")
def _csv(results_dir: Path):
    from ray.tune.logger import CSVLoggerCallback

    return CSVLoggerCallback()
