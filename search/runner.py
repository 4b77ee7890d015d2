"""Run a search with Ray Tune and write its results where analysis can find them.

A results directory holds:

- ``tune/``: Ray Tune's experiment (trials, checkpoints), for resuming;
- ``results.parquet`` and ``results.csv``: one row per trial, its
  ``config/...`` columns, its final metrics and a ``status``; rewritten
  as trials finish (``TrialTable``), so a search killed part-way leaves
  the trials it finished, and whole at the end;
- ``history.parquet``: one row per trial per evaluation;
- ``optuna.journal``: with ``optuna_storage: journal``, the Optuna study, which
  optuna-dashboard opens (``optuna-dashboard DIR/optuna.journal``);
- ``mlruns/``: with ``loggers: [mlflow]``, MLflow's local file store;
- ``search.yaml``: the search as given, plus the objectives with modes,
  the task's metric behind ``quality`` and its mode (what plots name their
  axis after), the greentune version and the code's git commit.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from operator import itemgetter
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml
from ray.tune import Callback, Stopper

from greentune.layout import (
    RESULT_FILES, RESULTS_FILES, SEARCH_RECORD, TUNE_DIR, error_line, storable, tables, trial_row, write_results,
)

from .config import SearchConfig, evaluations_per_trial, parse_search
from .costs import attempts_energy, trial_energy
from .schedulers import make_scheduler
from .settings import Resources
from .trackers import make_trackers
from .warm_start import greentune_version, machine

JOURNAL_FILE = "optuna.journal"


def run_search(
    search: SearchConfig, results_dir: Path, *, address: str | None = None, storage: str | None = None
) -> pd.DataFrame:
    """Run ``search`` to completion and return the per-trial results table.

    With ``storage`` (a shared filesystem path or a cloud URI such as
    ``s3://bucket/prefix``), Ray Tune keeps the experiment there, under the
    results directory's name, and the result tables are copied there too, so
    they outlive the machine that ran the driver.
    """
    from ray import tune

    from .searchers import make_searcher

    check_new_results_dir(results_dir)
    results_dir, started_here = _prepare(results_dir, address)
    resources = _fitting_resources(search, started_here)
    _fetch_data(search, address)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)  # only now: a search refused above leaves no empty folder
        _write_search_record(search, results_dir, storage)
    except OSError as error:
        raise ValueError(f"cannot write the results to {results_dir}: {error.strerror or error}") from None
    watch = ResultsWatch(results_dir)
    tuner = tune.Tuner(
        tune.with_resources(_trainable(), resources),
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(search, optuna_storage(search, results_dir)),
            scheduler=make_scheduler(search.settings.scheduler, search.objectives, evaluations_per_trial(search)),
            num_samples=search.settings.budgets.num_trials * search.settings.repeats,
            max_concurrent_trials=_concurrency(search, resources),
            time_budget_s=search.settings.budgets.time_budget_s,
            # Workers are reused only on one node that this process started (here, or by an earlier
            # ray.init of its own), which lives as long as the search. On a cluster each trial starts its
            # own: Ray Tune 2.60 errors a trial for good, whatever ``retries`` says, when its node dies
            # while a reused worker is being reset for it.
            reuse_actors=started_here or _own_single_node(),
        ),
        run_config=_run_config(search, results_dir, storage, watch),
    )
    return watch.fit(tuner, lambda grid: _finish(grid, results_dir, storage))


def resume_search(results_dir: Path, *, address: str | None = None) -> tuple[SearchConfig, pd.DataFrame]:
    """Continue an interrupted search: finished trials are kept, unfinished ones resume from checkpoints.

    The searcher's state (Optuna's study) and the trial list come back from
    Ray Tune's experiment state; the scheduler is rebuilt and picks restored
    trials up as they are re-added.
    """
    from ray import tune

    results_dir = Path(results_dir).resolve()
    search = read_search_record(results_dir)
    storage = _record(results_dir).get("storage")
    experiment = f"{storage.rstrip('/')}/{results_dir.name}" if storage else str(results_dir / TUNE_DIR)
    if not tune.Tuner.can_restore(experiment):
        raise ValueError(f"{results_dir} has no Ray Tune experiment to resume (expected {experiment})")
    if not storage:
        check_experiment_state(results_dir)
    _, started_here = _prepare(results_dir, address)
    resources = _fitting_resources(search, started_here)
    _fetch_data(search, address)
    tuner = tune.Tuner.restore(
        experiment,
        trainable=tune.with_resources(_trainable(), resources),
        resume_unfinished=True,
        resume_errored=True,
    )
    # The pickled tuner keeps the callbacks it was built with; this watch only turns a full or read-only
    # disk met while resuming, or while writing the tables, into one line.
    return search, ResultsWatch(results_dir).fit(tuner, lambda grid: _finish(grid, results_dir, storage))


def check_experiment_state(results_dir: Path) -> None:
    """Refuse, in one line, to resume from an experiment state Ray Tune would read as less than it is.

    Ray Tune 2.60 starts a new experiment, silently, from a state file that a
    full disk truncated, and forgets trials its state does not list: finished
    trials would be trained again and the rest never run. The line says what
    the trial folders hold; ``greentune analyze`` reads their results still.
    """
    tune_dir = Path(results_dir) / TUNE_DIR
    folders = [folder for folder in tune_dir.iterdir() if folder.is_dir() and (folder / "params.json").exists()]
    # A trial's result.json that Ray rewrote on the full disk may be empty: the results table, written as
    # trials finished, may know of more.
    finished = max(sum(_finished(folder) for folder in folders), _finished_in_table(Path(results_dir)))
    states = sorted(tune_dir.glob("experiment_state-*.json"))
    found = f"{len(folders)} trial folder(s), {finished} finished"
    if not states:
        raise ValueError(f"{tune_dir} has no experiment state, but {found}; greentune cannot resume them "
                         f"(`greentune analyze {results_dir}` reads their results; run again in another directory)")
    try:
        listed = len(json.loads(states[-1].read_text())["trial_data"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{states[-1]} is truncated or unreadable ({type(error).__name__}), with {found} beside it; Ray Tune would "
            f"start over, so greentune stops (`greentune analyze {results_dir}` reads their results; run the rest as a new "
            "search in another directory)"
        ) from None
    if listed < finished:  # a trial started just before the driver died may be unlisted; a finished one may not
        raise ValueError(
            f"{states[-1]} lists {listed} trial(s) but {tune_dir} holds {found}; Ray Tune would forget the others, "
            f"so greentune stops (`greentune analyze {results_dir}` reads their results)"
        )


def _finished_in_table(results_dir: Path) -> int:
    """How many finished trials the results table written during the search lists (0 without a readable one)."""
    try:
        return int((pd.read_parquet(results_dir / "results.parquet", columns=["status"])["status"] == "finished").sum())
    except (OSError, ValueError, KeyError):
        return 0


def _finished(folder: Path) -> bool:
    """Whether the trial in ``folder`` reported its last evaluation (``complete``)."""
    try:
        lines = (folder / "result.json").read_text().splitlines()
        return bool(lines) and bool(json.loads(lines[-1]).get("complete"))
    except (OSError, ValueError):
        return False


def _fetch_data(search: SearchConfig, address: str | None) -> None:
    """Where every trial runs on this machine, fetch the task's data once, before any of them.

    Missing data is then one line (a ``ValueError`` naming what to put
    where) instead of every trial failing and being retried. On a cluster
    (an address given, or a Ray with nodes elsewhere) this machine may not
    train at all, so each node fetches its own copy as its first trial starts.
    """
    import ray

    here = ray.util.get_node_ip_address()
    if address is None and all(node["NodeManagerAddress"] == here for node in ray.nodes() if node["Alive"]):
        search.task().fetch_data()


def _trainable():
    from greentune.trainables.trial import run_trial

    return run_trial


def _prepare(results_dir: Path, address: str | None) -> tuple[Path, bool]:
    """The results directory, resolved; and whether the Ray to search on was started here, by this call."""
    import optuna
    import ray

    # Ray's default console output is a per-iteration table; TrialLines
    # prints one line per trial instead, and verbose=0 silences the rest.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Save the experiment state often, so a killed driver loses little.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # Ray Tune logs each failed trial's whole traceback; TrialLines prints its exception's
    # line and its folder, whose error.txt keeps the traceback (=1 brings the log back).
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results_dir = Path(results_dir).resolve()
    if ray.is_initialized():
        connected = ray.get_runtime_context().gcs_address
        if address not in (None, "auto", connected):
            raise ValueError(
                f"this process is already connected to the Ray at {connected}, not {address}; "
                "call ray.shutdown() first, or leave out the address to search on the Ray it has"
            )
    else:
        _check_reachable(address)
        try:
            # Without an address, start a Ray of our own: "local", because
            # None would join any cluster `ray start` left on this machine.
            with _loopback_only(address is None):
                ray.init(address=address or "local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        except ConnectionError as error:
            raise ValueError(
                f"could not connect to the Ray cluster at {address}: {str(error).splitlines()[0]} "
                "(is `ray start --head` running there? with token auth, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN)"
            ) from None
        return results_dir, address is None
    return results_dir, False


LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's single-machine mode, as on macOS: node IP 127.0.0.1


@contextlib.contextmanager
def _loopback_only(local: bool):
    """While a Ray of our own starts, make it one that listens on 127.0.0.1 only.

    Ray 2.60 turns ``_node_ip_address="127.0.0.1"`` into the machine's
    routable address, and then binds its GCS, raylet and worker gRPC ports on
    every interface, with no authentication. In its single-machine mode (the
    constant behind ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``) the node's address
    is loopback, and its servers bind only there. The mode is Ray's default on
    macOS and Windows; here it is on only while ``ray.init`` starts the
    processes (which keep it in their environment), so that a later
    connection to a cluster from this process resolves its address as usual.
    """
    if not local:
        yield
        return
    from ray._private import ray_constants

    saved_env, saved_constant = os.environ.get(LOOPBACK_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_SWITCH], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_constant
        if saved_env is None:
            os.environ.pop(LOOPBACK_SWITCH, None)
        else:
            os.environ[LOOPBACK_SWITCH] = saved_env


def _fitting_resources(search: SearchConfig, started_here: bool) -> dict[str, float]:
    """Each trial's CPUs and GPUs, refused when more than a Ray started here has: its trials would wait forever.

    A cluster may still add nodes (an autoscaling one does on demand), so there it is a warning.
    """
    cluster = _cluster_resources()
    resources = trial_resources(search.settings.resources, cluster, _possible_resources())
    short = [f"{resources[key]:g} {name}" for key, name in (("cpu", "CPU"), ("gpu", "GPU")) if resources[key] > cluster.get(name, 0)]
    if short:
        what = (f"each trial asks for {' and '.join(short)}, more than the Ray at hand has "
                f"({cluster.get('CPU', 0):g} CPU, {cluster.get('GPU', 0):g} GPU)")
        if started_here:
            raise ValueError(f"{what}; set resources in the search file (e.g. resources: {{cpu: 1, gpu: auto}}), "
                             "or search where there are enough (--address of a cluster)")
        print(f"greentune: warning: {what}; its trials wait until the cluster adds a node that can hold one", file=sys.stderr)
    return resources


def _possible_resources() -> dict[str, float]:
    """The most an autoscaling cluster's node types could add up to (Ray Train's reading of its config); {} elsewhere."""
    import ray
    from ray._private.state import state

    if not ray.is_initialized():
        return {}
    try:
        return state.get_max_resources_from_cluster_config() or {}
    except Exception:  # a private API: should a later Ray change it, only the autoscaling case is lost
        return {}


def _check_reachable(address: str | None) -> None:
    """Fail in seconds, not minutes of Ray's retries, when HOST:PORT has nothing listening."""
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise ValueError(
            f"could not connect to the Ray cluster at {address}: {error.strerror or error} "
            "(is `ray start --head` running there, and the port open to you?)"
        ) from None


def _own_single_node() -> bool:
    """Whether the Ray this process is connected to is one node that this process started (``ray.init(address="local")``).

    A notebook's or a test's own Ray is one machine, as one started by the
    search is; a connection to a running head (a cluster, or ``ray start``
    on this machine) is not.
    """
    import ray

    try:
        node = ray._private.worker._global_node  # private: should a later Ray move it, trials just start their own workers
        return bool(node is not None and node.head) and sum(item["Alive"] for item in ray.nodes()) == 1
    except Exception:
        return False


def _cluster_resources() -> dict[str, float]:
    import ray

    return ray.cluster_resources()


def _concurrency(search: SearchConfig, resources: Mapping[str, float]) -> int:
    if search.settings.max_concurrent:
        return search.settings.max_concurrent
    cluster = _cluster_resources()
    limits = [cluster.get("CPU", 1) // max(resources["cpu"], 1e-9)]
    if resources["gpu"]:
        limits.append(cluster.get("GPU", 0) // resources["gpu"])
    return max(1, int(min(limits)))


def optuna_storage(search: SearchConfig, results_dir: Path):
    """The Optuna storage of ``optuna_storage: journal``: a journal file in the results directory; else None (in memory).

    Ray pickles the study with the searcher, and the storage with it, so a
    resumed search appends to the same file.
    """
    if search.settings.optuna_storage != "journal":
        return None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(Path(results_dir).resolve() / JOURNAL_FILE)))


def _run_config(search: SearchConfig, results_dir: Path, storage: str | None, watch: ResultsWatch | None = None):
    from ray import tune
    from ray.tune.stopper import CombinedStopper

    budgets = search.settings.budgets
    stoppers = [stopper(limit) for stopper, limit in ((EnergyBudget, budgets.energy_budget_j),
                                                       (CarbonBudget, budgets.carbon_budget_g)) if limit]
    stoppers += [watch] if watch else []
    return tune.RunConfig(
        name=results_dir.name if storage else TUNE_DIR,
        storage_path=storage or str(results_dir),
        verbose=0,
        callbacks=[TrialLines(search.objectives), TrialTable(results_dir), *make_trackers(search.settings.loggers, results_dir),
                   *([watch] if watch else [])],
        stop=CombinedStopper(*stoppers) if len(stoppers) > 1 else (stoppers or [None])[0],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=search.settings.retries),
    )


def _finish(grid, results_dir: Path, storage: str | None) -> pd.DataFrame:
    results, history = (storable(table) for table in tables(grid))
    write_results(results, results_dir)
    history.to_parquet(results_dir / "history.parquet", index=False)
    if storage:
        import pyarrow.fs

        target, root = pyarrow.fs.FileSystem.from_uri(f"{storage.rstrip('/')}/{results_dir.name}")
        local = pyarrow.fs.LocalFileSystem()
        for name in RESULT_FILES:
            pyarrow.fs.copy_files(str(results_dir / name), f"{root}/{name}", local, target)
    return results


class TrialTable(Callback):
    """The results table, rewritten as trials finish: a search killed part-way leaves the trials it finished.

    Each finished or failed trial's row is built once. The table is written
    at the first trial's end and then at most every ``every_s`` seconds,
    so that writing it, a cost that grows with the trials, stays a small
    share of a long search; the table ``_finish`` writes at the end replaces
    it. Rows come from all the experiment's trials, so a resumed search's
    table keeps the trials finished before it was interrupted.
    """

    def __init__(self, results_dir: Path, every_s: float = 5.0):
        self.results_dir, self.every_s = Path(results_dir), every_s
        self._rows: dict[tuple[str, bool], dict] = {}  # (trial id, whether it failed): row
        self._ended: dict[str, bool] = {}  # trial id: whether it failed, for trials that ended in this driver
        self._written_at: float | None = None
        self._unwritten = False

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended[trial.trial_id] = False  # Ray calls this while the trial is still RUNNING
        self._finished(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended[trial.trial_id] = True
        self._finished(trials)

    def on_step_end(self, iteration, trials, **info):
        if self._unwritten and time.monotonic() - self._written_at >= self.every_s:
            self.write(trials)

    def on_experiment_end(self, trials, **info):
        if self._unwritten:
            self.write(trials)

    def _finished(self, trials) -> None:
        self._unwritten = True
        if self._written_at is None or time.monotonic() - self._written_at >= self.every_s:
            self.write(trials)

    def write(self, trials) -> None:
        """Write the rows of every trial in ``trials`` that ended, here or before a resume."""
        rows = []
        for trial in trials:
            errored = self._ended.get(trial.trial_id)
            if errored is None and trial.status in ("TERMINATED", "ERROR"):  # ended before this driver started
                errored = trial.status == "ERROR"
            if errored is None:
                continue
            key = (trial.trial_id, errored)
            if key not in self._rows:
                metrics = dict(trial.last_result or {})
                self._rows[key] = trial_row(metrics.get("trial_id") or trial.trial_id, trial.config or {}, metrics,
                                            self._error(trial) if errored else None, trial.checkpoint)
            rows.append(self._rows[key])
        if rows:
            try:
                write_results(pd.DataFrame(rows), self.results_dir)
            except OSError:
                pass  # a full or read-only results directory: ResultsWatch stops the search and says so in one line
        self._written_at, self._unwritten = time.monotonic(), False

    @staticmethod
    def _error(trial) -> str:
        return TrialLines.error_text(trial) or "failed"


def check_new_results_dir(results_dir: Path) -> None:
    """Refuse, in one ``ValueError`` line, a results directory that holds a search already or cannot be written.

    A second search in the same directory would replace the first's record
    and tables and mix its trials into the first's experiment.
    """
    results_dir = Path(results_dir).resolve()
    if results_dir.exists() and not results_dir.is_dir():
        raise ValueError(f"cannot write the results to {results_dir}: it is a file, not a folder")
    held = [name for name in (SEARCH_RECORD, TUNE_DIR, *RESULTS_FILES) if (results_dir / name).exists()]
    if held:
        raise ValueError(
            f"{results_dir} already holds a search ({held[0]}); continue it with `greentune resume {results_dir}`, "
            "or give another results directory"
        )
    existing = next(folder for folder in (results_dir, *results_dir.parents) if folder.exists())
    if not existing.is_dir():
        raise ValueError(f"cannot write the results to {results_dir}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        cause = "read-only file system" if _read_only(existing) else "permission denied"
        raise ValueError(f"cannot write the results to {results_dir}: {existing} is not writable ({cause})")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EIO}
DISK_ERROR = re.compile(r"\[Errno (\d+)\] [^:\n]*(?:: '([^'\n]*)')?")
PROBE_BYTES = 64 * 1024  # a few result lines' worth: less than this left, and the next checkpoint cannot be written


class ResultsWatch(Callback, Stopper):
    """Stops the search, in one line, when its results directory fills up or turns read-only.

    Each trial that fails or is about to be retried is checked: its error
    naming a full, read-only or failing disk, or a probe write into the
    results directory failing. A retry would fail the same way, so the
    whole search stops; what finished before stays on disk, readable by
    ``greentune analyze`` from the trial folders even where the tables
    could not be written. ``fit`` runs the tuner and turns the stop, and
    Ray's own failure to write or read its state on that disk, into
    ``SearchStopped``.
    """

    def __init__(self, results_dir: Path):
        self.results_dir = Path(results_dir)
        self.problem: str | None = None

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.problem is not None

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.check(TrialLines.error_text(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.check(TrialLines.error_text(trial))

    def check(self, error: object = None) -> str | None:
        """The line naming the path and the cause, where the results directory is the trouble; else None."""
        if self.problem is None:
            self.problem = self._from_error(error) or self._probe()
        return self.problem

    def fit(self, tuner, finish):
        from greentune.errors import SearchStopped

        try:
            with self._quiet_state_saving():
                grid = tuner.fit()
            if self.problem is None:
                return finish(grid)
        except Exception as error:  # noqa: BLE001 - Ray's tracebacks over a full disk, re-raised unless it is one
            if self.check(f"{type(error).__name__}: {error}" if isinstance(error, OSError) else None) is None:
                raise
        raise SearchStopped([self.problem])

    @contextlib.contextmanager
    def _quiet_state_saving(self):
        """Ray's failure to save its experiment state on this disk: noted here, not logged as a traceback."""
        logger = logging.getLogger("ray.tune.execution.experiment_state")

        def disk_failure(record: logging.LogRecord) -> bool:
            error = record.exc_info[1] if record.exc_info else None
            if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
                self.check(f"[Errno {error.errno}] {error.strerror}")
                return False
            return True

        logger.addFilter(disk_failure)
        try:
            yield
        finally:
            logger.removeFilter(disk_failure)

    def _line(self, path: str, cause: str) -> str:
        return (f"{path}: {cause}; the search stopped, and the trials finished before are kept in {self.results_dir} "
                f"(`greentune analyze` reads them; free space or make it writable, then `greentune resume {self.results_dir}`, "
                "which says so where Ray's state was lost)")

    def _from_error(self, error: object) -> str | None:
        for match in DISK_ERROR.finditer(str(error or "")):
            code, path = int(match.group(1)), match.group(2) or str(self.results_dir)
            if code in DISK_ERRNOS and (code != errno.EACCES or self._inside(path)):
                return self._line(path, os.strerror(code))
        return None

    def _inside(self, path: str) -> bool:
        return Path(path).resolve().is_relative_to(self.results_dir.resolve())

    def _probe(self) -> str | None:
        probe = self.results_dir / ".greentune-write-probe"
        try:
            with open(probe, "wb") as stream:
                stream.write(b"\0" * PROBE_BYTES)
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as error:
            return self._line(str(self.results_dir), error.strerror or str(error))
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
        return None


class EnergyBudget(Stopper):
    """Stops the whole search once its trials, stopped ones included, have spent ``limit`` joules.

    Each attempt of a retried trial counts once (``attempts_energy``): a
    retry restarts from a checkpoint, below what the failed attempt had spent.
    """

    def __init__(self, limit: float):
        self.limit = limit
        self.reports: dict[str, list[dict]] = {}  # each trial's reports, every attempt's, as (iteration, spent)

    @staticmethod
    def measure(result: Mapping[str, Any]) -> float:
        return trial_energy(result)

    def __call__(self, trial_id: str, result: dict) -> bool:
        report = {"training_iteration": result.get("training_iteration"), "spent": self.measure(result)}
        self.reports.setdefault(trial_id, []).append(report)
        return False

    @property
    def spent(self) -> dict[str, float]:
        return {trial_id: attempts_energy(reports, measure=itemgetter("spent")) for trial_id, reports in self.reports.items()}

    def stop_all(self) -> bool:
        return sum(self.spent.values()) >= self.limit


class CarbonBudget(EnergyBudget):
    """Stops the whole search once its trials, stopped ones included, have emitted ``limit`` grams of CO2."""

    @staticmethod
    def measure(result: Mapping[str, Any]) -> float:
        return float(result.get("co2_g", 0.0) or 0.0)


def trial_resources(
    requested: Resources, cluster: Mapping[str, float], possible: Mapping[str, float] | None = None
) -> dict[str, float]:
    """CPUs and GPUs per trial; ``gpu: auto`` gives each trial one GPU where the cluster has any, or can add some.

    >>> trial_resources(Resources(cpu=1, gpu="auto"), {"CPU": 16, "GPU": 2})
    {'cpu': 1, 'gpu': 1}
    >>> trial_resources(Resources(cpu=2), {"CPU": 2})
    {'cpu': 2, 'gpu': 0}
    """
    return {"cpu": requested.cpu, "gpu": auto_gpu(requested.gpu, cluster, possible or {})}


def auto_gpu(gpu: float | str, cluster: Mapping[str, float], possible: Mapping[str, float]) -> float:
    """One GPU for ``auto`` where the cluster has one up or its node types can add one (``possible``:
    an autoscaling cluster's most); asking Ray for it is what brings a GPU node up.

    >>> auto_gpu("auto", {"CPU": 4}, {"CPU": 68, "GPU": 8})
    1
    """
    if gpu != "auto":
        return gpu
    return 1 if max(cluster.get("GPU", 0), possible.get("GPU", 0)) >= 1 else 0


RECORD_FIELDS = ("quality_metric", "machine", "greentune_version", "git_commit", "started", "storage")


def _write_search_record(search: SearchConfig, results_dir: Path, storage: str | None) -> None:
    """The search as run (a valid search file itself) plus where the code and the experiment are."""
    task = search.task()
    record = {
        **search.settings.to_file(),
        "approaches": search.source.get("approaches") or {},
        "objectives": dict(search.objectives),
        "quality_metric": {"name": task.quality, "mode": task.mode},
        "machine": machine(),
        "greentune_version": greentune_version(),
        "git_commit": _git_commit(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "storage": storage,
    }
    (results_dir / "search.yaml").write_text(yaml.safe_dump(record, sort_keys=False))


def _record(results_dir: Path) -> dict:
    path = Path(results_dir) / "search.yaml"
    if not path.exists():
        raise ValueError(f"{results_dir} is not a greentune results directory (no search.yaml)")
    return yaml.safe_load(path.read_text()) or {}


def read_search_record(results_dir: Path) -> SearchConfig:
    record = _record(results_dir)
    return parse_search({key: value for key, value in record.items() if key not in RECORD_FIELDS})


def _git_commit() -> str | None:
    try:
        output = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return output.stdout.strip() or None


class TrialLines(Callback):
    """Progress without a flood: one line per finished trial, and a status line every ``every_s``.

    The status line gives trials running and finished, the size of the
    front among finished trials so far, and the energy spent by the search.
    """

    def __init__(self, objectives: Mapping[str, str], every_s: float = 30.0):
        self.objectives = dict(objectives)
        self.every_s = every_s
        self.finished: list[dict] = []
        self._last_status = time.monotonic()

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        self.finished.append(result)
        values = ", ".join(f"{name}={_short(result.get(name))}" for name in self.objectives)
        label = trial.config.get("approach", "")
        status = "diverged: " + result.get("stop_reason", "") if result.get("diverged") else result.get("energy_source", "?")
        stopped = "" if result.get("complete") or result.get("diverged") else " stopped early"
        print(f"[{len(self.finished):>3}] {label:<16} {values}  ({status}){stopped}", flush=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        print(f"      {trial.config.get('approach', '')}: failed{self._reason(trial)}; retrying", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.finished.append({})
        print(f"[{len(self.finished):>3}] {trial.config.get('approach', '')}: failed{self._reason(trial)}; see {trial.path}", flush=True)

    @classmethod
    def _reason(cls, trial) -> str:
        error = cls.error_text(trial)
        return f" ({error_line(error)})" if error else ""

    @staticmethod
    def error_text(trial) -> str | None:
        """The trial's error.txt, or what Ray kept of its error; None where neither can be read (a full disk)."""
        # Ray writes error.txt into the trial's local folder as it handles the failure; get_error
        # reads the copy in storage, which is there by the trial's end but not yet at a retry.
        local = Path(trial.error_file) if trial.error_file else None
        try:
            return local.read_text() if local and local.is_file() else trial.get_error()
        except Exception:  # noqa: BLE001 - a truncated error.pkl on a full disk; the failure line goes on without it
            return None

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self._last_status < self.every_s:
            return
        self._last_status = time.monotonic()
        running = sum(trial.status == "RUNNING" for trial in trials)
        spent = sum(trial_energy(trial.last_result or {}) for trial in trials)
        print(f"      {running} running, {len(self.finished)} finished, front of {self.front_size()}, {spent:.4g} J spent", flush=True)

    def front_size(self) -> int:
        from greentune.analysis import pareto_mask

        done = pd.DataFrame([result for result in self.finished if result.get("complete")])
        if done.empty or any(name not in done for name in self.objectives):
            return 0
        return int(pareto_mask(done, self.objectives).sum())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
