"""Ray Tune's experiment trackers (TensorBoard, MLflow, W&B, CSV) and the Optuna journal optuna-dashboard opens."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from greentune.search import trackers
from greentune.search.config import parse_search
from greentune.search.runner import JOURNAL_FILE, run_search
from greentune.search.searchers import DUPLICATE_ATTR, SEEDS_ATTR
from greentune.search.settings import LOGGERS
from greentune.search.space import WARM_START

from helpers import assert_one_line_usage_error, in_process

APPROACHES = {  # parameters on continuous ranges: no draw repeats an earlier one
    "selection": {"techniques": ["data_selection"], "model": "big"},
    "pruned": {"techniques": ["random_pruning"], "model": "big"},
}


def load_journal(results):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name="optuna", storage=JournalStorage(JournalFileBackend(str(results / JOURNAL_FILE))))


def test_a_tracker_whose_package_is_missing_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    found = importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None if name == "mlflow" else found(name))
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({"approaches": APPROACHES, "loggers": ["mlflow"]}))
    result = in_process(capsys, "run", "--config", config)
    assert_one_line_usage_error(result, "logger mlflow needs the mlflow package: pip install 'greentune[mlflow]'")


def test_an_unknown_tracker_names_the_valid_ones():
    with pytest.raises(ValueError, match="loggers must be a list of trackers among tensorboard, mlflow, wandb, csv"):
        parse_search({"approaches": APPROACHES, "loggers": ["comet"]})


def test_every_tracker_a_search_file_may_name_has_a_callback():
    assert sorted(trackers.TRACKERS.names()) == sorted(LOGGERS)


@pytest.mark.slow
def test_trackers_and_the_journal_get_every_evaluation_with_its_energy(tmp_path, local_ray):
    pytest.importorskip("tensorboard", reason="reading event files back needs tensorboard: pip install 'greentune[tensorboard]'")
    mlflow = pytest.importorskip("mlflow", reason="the MLflow logger needs mlflow: pip install 'greentune[mlflow]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    search = parse_search({
        "train": {"steps": 150, "eval_every": 50},
        "approaches": APPROACHES,
        "evaluate_first": ["selection"],
        "num_trials": 3,
        "repeats": 2,
        "searcher": "random",
        "scheduler": {"name": "moasha", "grace_period": 1, "reduction_factor": 2},
        "loggers": ["tensorboard", "mlflow"],
        "optuna_storage": "journal",
        "max_concurrent": 2,
    })
    out = tmp_path / "results"
    results = run_search(search, out)
    assert len(results) == 6

    for trial_id, source in zip(results["trial_id"], results["energy_source"]):
        [folder] = (out / "tune").glob(f"*{trial_id}*")
        events = EventAccumulator(str(folder))
        events.Reload()
        assert [event.value for event in events.Scalars("ray/tune/energy_j")][-1] > 0, folder
        [text] = events.Tensors("ray/tune/energy_source/text_summary")  # the source, as text, once: it did not change
        assert text.tensor_proto.string_val[0].decode() == source

    client = mlflow.MlflowClient((out / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name(out.name)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(results), "one MLflow run per trial"
    for run in runs:
        assert run.data.metrics["energy_j"] > 0 and run.data.tags["energy_source"]
        assert run.data.tags["carbon_source"].startswith("default")

    study = load_journal(out)
    trained = [trial for trial in study.trials if DUPLICATE_ATTR not in trial.user_attrs]
    assert len(trained) == 3, "one Optuna trial per configuration, its two seeds' mean"
    assert trained[0].user_attrs[WARM_START] is True
    assert all(trial.user_attrs[SEEDS_ATTR] == [0, 1] for trial in trained)
    groups = results.groupby("repeat_group")["status"].agg(lambda status: (status == "finished").all())
    states = sorted(trial.state.name for trial in trained)
    assert states == sorted("COMPLETE" if done else "PRUNED" for done in groups), "a stopped trial shows as pruned"


@pytest.mark.slow
def test_weights_and_biases_logs_offline_where_installed(tmp_path, monkeypatch, local_ray):
    pytest.importorskip("wandb", reason="the wandb logger needs wandb: pip install 'greentune[wandb]'")
    monkeypatch.setenv("WANDB_MODE", "offline")  # no account, no network: the runs stay on disk
    search = parse_search({"train": {"steps": 50, "eval_every": 50}, "approaches": APPROACHES, "num_trials": 2,
                           "searcher": "random", "loggers": ["wandb"]})
    out = tmp_path / "results"
    results = run_search(search, out)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == len(results) == 2
