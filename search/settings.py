"""The typed settings of a search file: frozen dataclasses, each field with its rule.

A search file's fields other than its approaches and objectives become one
``Settings``. The nested groups are read the same way, from a mapping (or,
for the searcher and the scheduler, a bare name)::

    searcher: {name: tpe, startup_trials: 10, cheapest_of: 3}
    scheduler: {name: moasha, grace_period: 2}
    resources: {cpu: 1, gpu: auto}
    energy: {watts_per_core: 10}
    summary: {columns: [quality, energy_j], reference: baseline}
    carbon: {region: FR}            # or {intensity_g_per_kwh: 56}; co2_g = energy x intensity
    loggers: [tensorboard, mlflow]  # Ray Tune's trackers each evaluation goes to
    optuna_storage: journal         # the Optuna study in a journal file, for optuna-dashboard
    num_trials: 40                  # with time_budget_s, energy_budget_j and carbon_budget_g: the budgets
    score: {weight: 0.1, reference_j: 1.0}

``read_settings`` collects every problem (an unknown field, a value that
breaks its field's rule) instead of stopping at the first, and reads the
searcher options that older files gave at the top level
(``population_size``, ``startup_trials``, ``cheapest_of``) with one warning
that shows the nested form. ``Settings.to_file`` writes the settings back
as a search file's fields, in the nested form.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from greentune.errors import SearchFileWarning
from greentune.techniques.space import is_number


@dataclass(frozen=True)
class Rule:
    """What a field's value must be: a test, and the words that tell the user what it takes."""

    test: Callable[[Any], bool]
    says: str


def _rule(default: Any, test: Callable[[Any], bool], says: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"rule": Rule(test, says)}, **kwargs)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value) and value > 0


def _optional(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or test(value)


def _one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and value in choices


@dataclass(frozen=True)
class Searcher:
    """Which searcher draws the trials (``greentune.search.searchers.SEARCHERS``) and its options.

    ``population_size`` is NSGA-II's; ``startup_trials`` the random draws
    before TPE models the results; ``cheapest_of: k`` draws k candidates per
    parameter and keeps the one predicted cheapest.
    """

    name: str = "tpe"
    population_size: int = _rule(16, _positive_int, "a positive integer")
    startup_trials: int = _rule(10, _positive_int, "a positive integer")
    cheapest_of: int = _rule(1, _positive_int, "a positive integer")


@dataclass(frozen=True)
class Scheduler:
    """Which scheduler stops trials early (``greentune.search.schedulers.SCHEDULERS``) and its options.

    ``max_t`` is a trial's number of evaluations, worked out from the
    training settings when left out.
    """

    name: str = "moasha"
    grace_period: int = _rule(1, _positive_int, "a positive integer")
    reduction_factor: float = _rule(3, lambda value: is_number(value) and value > 1, "a number > 1")
    max_t: int | None = _rule(None, _optional(_positive_int), "a positive integer (or left out)")
    tie_break: str = _rule("crowding", _one_of("crowding", "hypervolume"), "crowding or hypervolume")
    project_costs: bool = _rule(True, lambda value: isinstance(value, bool), "true or false")


@dataclass(frozen=True)
class Resources:
    """What each trial asks Ray for: CPUs, and GPUs (``auto``: one where the cluster has any; 0.25 packs four)."""

    cpu: float = _rule(1, _positive_number, "a positive number")
    gpu: float | str = _rule("auto", lambda value: value == "auto" or (is_number(value) and value >= 0),
                             "auto or a number >= 0 (0.25 packs four trials on a GPU)")


@dataclass(frozen=True)
class Energy:
    """How trials meter energy: the watts per busy core of the CPU estimate, and whether a GPU is shared."""

    watts_per_core: float | None = _rule(None, _optional(_positive_number), "a positive number of watts")
    gpu_sharing: str = _rule("auto", _one_of("auto", "shared", "exclusive"), "auto, shared or exclusive")

    def trial_config(self) -> dict[str, Any]:
        """The fields set away from their defaults, as a trial's ``energy`` config."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value != _DEFAULTS[Energy][key]}


@dataclass(frozen=True)
class Score:
    """The scalar score single-metric tools rank by (``greentune.trainables.trial.green_score``)."""

    weight: float = _rule(0.1, lambda value: is_number(value) and value >= 0, "a number >= 0")
    reference_j: float = _rule(1.0, _positive_number, "a positive number of joules")


@dataclass(frozen=True)
class Summary:
    """The per-approach table the command prints: its metric ``columns`` and the ``reference`` approach."""

    columns: tuple[str, ...] = _rule(
        (), lambda value: isinstance(value, (list, tuple)) and bool(value) and all(isinstance(c, str) for c in value),
        "a non-empty list of metric names", )
    reference: str | None = _rule(None, _optional(lambda value: isinstance(value, str)), "an approach's name")


@dataclass(frozen=True)
class Carbon:
    """The grid's carbon intensity that turns each trial's energy into ``co2_g`` (``greentune.carbon``).

    ``region`` looks it up in greentune's table; ``intensity_g_per_kwh``
    gives it; with neither, the table's default stands, labelled "default".
    """

    region: str | None = _rule(None, _optional(lambda value: isinstance(value, str)), "a region code such as FR")
    intensity_g_per_kwh: float | None = _rule(None, _optional(lambda value: is_number(value) and value >= 0),
                                              "a number >= 0 of grams of CO2 per kWh")


@dataclass(frozen=True)
class Budgets:
    """When the search ends: after ``num_trials``, or ``time_budget_s`` seconds, or ``energy_budget_j`` joules
    or ``carbon_budget_g`` grams of CO2 spent."""

    num_trials: int = _rule(20, _positive_int, "a positive integer")
    time_budget_s: float | None = _rule(None, _optional(_positive_number), "a positive number (or left out)")
    energy_budget_j: float | None = _rule(None, _optional(_positive_number), "a positive number (or left out)")
    carbon_budget_g: float | None = _rule(None, _optional(_positive_number), "a positive number (or left out)")


LOGGERS = ("tensorboard", "mlflow", "wandb", "csv")  # greentune.search.trackers.TRACKERS


# What a search file that names no searcher gets: the configuration benchmarks/search_efficiency.py
# measured best across its spaces (multi-objective TPE, each parameter the cheapest predicted of 3 draws).
LIBRARY_SEARCHER = Searcher(name="tpe", cheapest_of=3)
GROUPS: dict[str, type] = {  # a search file's nested fields
    "searcher": Searcher, "scheduler": Scheduler, "resources": Resources, "energy": Energy, "score": Score,
    "summary": Summary, "carbon": Carbon,
}
NAMED_GROUPS = ("searcher", "scheduler")  # may be given as a bare name
BUDGET_FIELDS = tuple(item.name for item in dataclasses.fields(Budgets))  # at a search file's top level
LEGACY_SEARCHER_FIELDS = ("population_size", "startup_trials", "cheapest_of")  # once at the top level


@dataclass(frozen=True)
class Settings:
    """Everything a search file sets besides its approaches' details and its objectives' modes."""

    description: str = ""
    task: str = "teacher_student"
    task_options: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    techniques: tuple[str, ...] | str = ()
    combinations: Any = "none"
    evaluate_first: tuple = ()
    objectives: Any = ("quality", "energy_j")
    constraints: tuple[str, ...] = ()
    score: Score = field(default_factory=Score)
    searcher: Searcher = field(default_factory=lambda: LIBRARY_SEARCHER)
    scheduler: Scheduler | None = None  # None: the library's choice, made once the task is known (see config)
    budgets: Budgets = field(default_factory=Budgets)
    repeats: int = _rule(1, _positive_int, "a positive integer")
    retries: int = _rule(1, lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                         "an integer >= 0")
    seed: int = _rule(0, lambda value: isinstance(value, int) and not isinstance(value, bool), "an integer")
    resources: Resources = field(default_factory=Resources)
    max_concurrent: int | None = _rule(None, _optional(_positive_int), "a positive integer (or left out)")
    device: str = _rule("auto", _one_of("auto", "cpu", "cuda"), "auto, cpu or cuda")
    energy: Energy = field(default_factory=Energy)
    checkpoint_every: int | str = "auto"
    summary: Summary | None = None
    carbon: Carbon = field(default_factory=Carbon)
    loggers: tuple[str, ...] = _rule(
        (), lambda value: isinstance(value, (list, tuple)) and all(name in LOGGERS for name in value),
        f"a list of trackers among {', '.join(LOGGERS)}")
    optuna_storage: str | None = _rule(None, _optional(_one_of("journal")), "journal (or left out: in memory)")
    warm_start_from: tuple[str, ...] = _rule(
        (), lambda value: isinstance(value, (list, tuple)) and all(isinstance(item, str) and item for item in value),
        "a list of earlier searches' results directories")

    def to_file(self) -> dict[str, Any]:
        """The settings as a search file's fields (nested groups as mappings, budgets at the top level)."""
        record: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "budgets":
                record.update(dataclasses.asdict(value))
            elif dataclasses.is_dataclass(value):
                record[item.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(value).items()}
            else:
                record[item.name] = list(value) if isinstance(value, tuple) else value
        return record


# The fields a search file's top level takes: Settings' own (budgets spelt out), plus the approaches.
FILE_FIELDS = (*(item.name for item in dataclasses.fields(Settings) if item.name != "budgets"), *BUDGET_FIELDS)
_DEFAULTS = {cls: {item.name: item.default for item in dataclasses.fields(cls) if item.default is not dataclasses.MISSING}
             for cls in (*GROUPS.values(), Budgets, Settings)}
# The fields whose values must have one YAML shape, with an example of it for the error.
SHAPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "description": (str, "a line of text"),
    "task": (str, "teacher_student or my_pkg.tasks:make_task"),
    "task_options": (dict, "{num_samples: 1000}"),
    "train": (dict, "{steps: 3500, lr: 0.01}"),
    "techniques": ((list, str), "[data_selection, gradmax] or all"),
    "evaluate_first": (list, "[baseline-big]"),
    "constraints": (list, '["quality <= 0.04"]'),
}
EXAMPLES = {
    "searcher": "{name: tpe, startup_trials: 10}", "scheduler": "{name: moasha, grace_period: 1}",
    "resources": "{cpu: 1, gpu: auto}", "energy": "{watts_per_core: 10}", "score": "{weight: 0.1, reference_j: 1.0}",
    "summary": "{columns: [quality, energy_j], reference: baseline}", "carbon": "{region: FR} or {intensity_g_per_kwh: 56}",
}


def read_settings(raw: Mapping[str, Any], problems: list[str]) -> Settings:
    """The ``Settings`` of a search file's fields ``raw`` (unchecked YAML); each problem is appended to ``problems``.

    A field with a problem keeps its default, so the checks that follow see
    usable values and report their own problems too.
    """
    raw = {key: value for key, value in raw.items() if value is not None}
    for key, (shape, example) in SHAPES.items():
        if key in raw and not isinstance(raw[key], shape):
            problems.append(f"{key} must look like {example}, got {raw[key]!r}")
            del raw[key]
    raw = _legacy_searcher_fields(raw)
    values: dict[str, Any] = {}
    for name, cls in GROUPS.items():
        if name in raw:
            given = {"name": raw[name]} if name in NAMED_GROUPS and isinstance(raw[name], str) else raw[name]
            values[name] = _group(cls, name, given, problems)
    values["budgets"] = _group(Budgets, "", {key: raw[key] for key in BUDGET_FIELDS if key in raw}, problems)
    plain = {item.name: item for item in dataclasses.fields(Settings)}
    for key, value in raw.items():
        if key in plain and key not in GROUPS and key != "budgets":
            values[key] = _checked(plain[key], key, value, problems)
    for key in ("techniques", "evaluate_first", "constraints", "objectives", "warm_start_from", "loggers"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    return Settings(**{key: value for key, value in values.items() if value is not dataclasses.MISSING})


def _legacy_searcher_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """Searcher options given at the top level, as older files did, moved under ``searcher`` with one warning."""
    legacy = {key: raw.pop(key) for key in LEGACY_SEARCHER_FIELDS if key in raw}
    if not legacy:
        return raw
    searcher = raw.get("searcher", "nsga2")
    searcher = {"name": searcher} if isinstance(searcher, str) else dict(searcher) if isinstance(searcher, Mapping) else searcher
    if isinstance(searcher, dict):
        raw["searcher"] = {**searcher, **{key: value for key, value in legacy.items() if key not in searcher}}
        nested = ", ".join(f"{key}: {value}" for key, value in raw["searcher"].items())
        warnings.warn(
            f"{', '.join(legacy)} at the top level of a search file is read, but belongs under searcher: "
            f"write searcher: {{{nested}}}", SearchFileWarning, stacklevel=2,
        )
    return raw


def _group(cls: type, name: str, given: Any, problems: list[str]) -> Any:
    """A ``cls`` from the mapping ``given`` (the field ``name`` of the file; "" for top-level fields)."""
    if not isinstance(given, Mapping):
        problems.append(f"{name} must look like {EXAMPLES[name]}, got {given!r}")
        return dataclasses.MISSING
    fields = {item.name: item for item in dataclasses.fields(cls)}
    values = {}
    for key, value in given.items():
        where = f"{name}.{key}" if name else key
        if key not in fields:
            problems.append(f"{name} has no setting {key!r}; valid: {', '.join(fields)}")
            continue
        value = _checked(fields[key], where, value, problems)
        if value is not dataclasses.MISSING:
            values[key] = tuple(value) if isinstance(value, list) else value
    if cls is Summary and "columns" not in values:
        problems.append("summary.columns must be a non-empty list of metric names")
        return dataclasses.MISSING
    return cls(**values)


def _checked(item: dataclasses.Field, where: str, value: Any, problems: list[str]) -> Any:
    """``value`` if it keeps the field's rule; otherwise the problem is said and MISSING returned."""
    rule: Rule | None = item.metadata.get("rule")
    if rule is None or rule.test(value):
        return value
    problems.append(f"{where} must be {rule.says}, got {value!r}")
    return dataclasses.MISSING
