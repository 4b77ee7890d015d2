"""A search description: what to train, which approaches to compare, how to search.

It is written as YAML (see ``search/presets/*.yaml`` and the README)::

    task: teacher_student
    approaches:
      baseline-big: {techniques: [baseline], model: big}
      data-selection:
        techniques: [data_selection]
        model: big
        params:
          data_selection: {selectivity: {low: 0.3, high: 1.0}, on_skip: last}
    techniques: [gradmax]          # more approaches, one per technique, default model
    combinations: pairs            # and every compatible pair of those techniques
    evaluate_first: [baseline-big]
    objectives: [quality, energy_j]
    num_trials: 20

Under ``params``, a technique's declared parameter takes a range to narrow
(``{low, high}``), a list of values (choices, or grid points), or one value
to fix it; a declared parameter left out is searched over its whole
declared domain, so every registered technique's space is picked up
without listing it. ``parse_search`` collects every problem before raising,
so a user fixes a file in one pass.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from greentune.analysis.constraints import Constraint
from greentune.techniques import Choice, Fixed, Stack, available, parameter_names, technique_class
from greentune.techniques.space import Param
from greentune.trainables.tasks import create_task
from greentune.trainables.trial import CheckpointPolicy, ConfigError, check_trial_config

SEARCHERS = ("nsga2", "tpe", "random", "grid")
SCHEDULERS = ("fifo", "asha", "moasha")
DEFAULTS: dict[str, Any] = {
    "description": "",
    "task": "teacher_student",
    "task_options": {},
    "train": {},
    "techniques": [],
    "combinations": "none",
    "evaluate_first": [],
    "objectives": ["quality", "energy_j"],
    "constraints": [],
    "score": {"weight": 0.1, "reference_j": 1.0},
    "searcher": "nsga2",
    "population_size": 16,
    "startup_trials": 10,
    "cheapest_of": 1,
    "scheduler": {"name": "fifo"},
    "num_trials": 20,
    "repeats": 1,
    "time_budget_s": None,
    "energy_budget_j": None,
    "retries": 1,
    "seed": 0,
    "resources": {"cpu": 1, "gpu": "auto"},
    "max_concurrent": None,
    "device": "auto",
    "energy": {},
    "checkpoint_every": "auto",
    "summary": None,
}
FIELDS = {"approaches", *DEFAULTS}
# The fields whose values must have one YAML shape, with an example of it for the error.
SHAPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "description": (str, "a line of text"),
    "task": (str, "teacher_student or my_pkg.tasks:make_task"),
    "task_options": (dict, "{num_samples: 1000}"),
    "train": (dict, "{steps: 3500, lr: 0.01}"),
    "techniques": ((list, str), "[data_selection, gradmax] or all"),
    "evaluate_first": (list, "[baseline-big]"),
    "constraints": (list, '["quality <= 0.04"]'),
    "energy": (dict, "{watts_per_core: 10}"),
    "approaches": (dict, "{baseline-big: {techniques: [baseline], model: big}}"),
}
SHARED_TRIAL_FIELDS = ("task", "task_options", "train", "seed", "device", "energy", "checkpoint_every", "score")


@dataclass
class Approach:
    """One arm of the search: techniques, a model variant, training overrides and parameter space."""

    name: str
    techniques: list[str]
    model: str | None
    space: dict[str, dict[str, Param | Fixed]]  # technique -> parameter -> domain
    train: dict[str, Any] = field(default_factory=dict)
    given: set[tuple[str, str]] = field(default_factory=set)  # (technique, parameter) the file set
    model_options: dict[str, Any] = field(default_factory=dict)  # for a torchvision:NAME or imported model

    def grid_dimensions(self) -> dict[str, tuple]:
        """``{"technique/parameter": values}`` for the parameters given as lists: a grid's axes.

        Parameters the file left out keep the technique's default in a grid.
        """
        dimensions, open_ranges = {}, []
        for technique, domains in self.space.items():
            for parameter, domain in domains.items():
                if (technique, parameter) not in self.given or isinstance(domain, Fixed):
                    continue
                if isinstance(domain, Choice):
                    dimensions[f"{technique}/{parameter}"] = domain.options
                else:
                    open_ranges.append(f"{technique}.{parameter}")
        if open_ranges:
            raise ValueError(
                f"approach {self.name!r}: the grid searcher needs {open_ranges[0]} as a list of values or one value"
            )
        return dimensions


@dataclass
class SearchConfig:
    approaches: list[Approach]
    objectives: dict[str, str]  # column -> "min" | "max"
    settings: dict[str, Any] = field(default_factory=dict)  # every field of DEFAULTS, resolved
    source: dict[str, Any] = field(default_factory=dict)  # the YAML as given, for the record

    def trial_base(self) -> dict[str, Any]:
        """The fields every trial config shares."""
        return {key: self.settings[key] for key in SHARED_TRIAL_FIELDS}

    @property
    def constraints(self) -> list[Constraint]:
        return [Constraint.parse(text) for text in self.settings["constraints"]]


def load_search(path: Path) -> SearchConfig:
    """Read and check a YAML search file; every problem is in the raised ConfigError."""
    return parse_search(read_search_file(path))


def read_search_file(path: Path) -> Any:
    """A YAML search file's contents, unchecked (an empty file is ``{}``), so overrides can join before ``parse_search``."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError([f"no search file at {path}"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{path} is not valid YAML: {str(error).splitlines()[0]}"]) from None
    return raw if raw is not None else {}


def parse_search(raw: Any) -> SearchConfig:
    if not isinstance(raw, dict):
        raise ConfigError(["a search file must be a mapping of fields such as task, approaches, objectives"])
    problems = [f"unknown field {key!r}; valid fields: {', '.join(sorted(FIELDS))}" for key in raw if key not in FIELDS]
    raw_checked = _with_shapes_checked(raw, problems)
    settings = {key: default if raw_checked.get(key) is None else raw_checked[key] for key, default in DEFAULTS.items()}
    specs = dict(raw_checked.get("approaches") or {})
    specs.update(_generated_approaches(settings, problems))
    approaches = [_parse_approach(name, spec, problems) for name, spec in specs.items()]
    if not approaches:
        problems.append("no approaches; list some under approaches, or name techniques: [...]")
    names = [approach.name for approach in approaches]
    problems += _first_point_problems(settings["evaluate_first"], approaches)
    _check_settings(settings, problems)
    problems += _summary_problems(settings["summary"], names)
    if settings["searcher"] == "grid":  # a grid's size is its points: approaches x listed values
        try:
            settings["num_trials"] = sum(math.prod(map(len, a.grid_dimensions().values())) for a in approaches)
        except ValueError as error:
            problems.append(str(error))
    objectives: dict[str, str] = {}
    task_problem = None
    try:
        task = create_task(settings["task"], **dict(settings["task_options"] or {}))
        objectives = _objectives(settings["objectives"], task.mode, problems)
    except ValueError as error:
        task_problem = str(error)
        problems.append(task_problem)
    for approach in approaches:
        lines = check_trial_config(sample_trial(settings, approach))
        said = {task_problem, *problems}  # a problem of the whole search is said once, not once per approach
        problems += [f"approach {approach.name!r}: {line}" for line in lines if line not in said]
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return SearchConfig(approaches=approaches, objectives=objectives, settings=settings, source=raw)


def _with_shapes_checked(raw: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """``raw`` less the fields of the wrong shape, each reported, so that the checks after it see usable values."""
    checked = dict(raw)
    for key, (shape, example) in SHAPES.items():
        if raw.get(key) is not None and not isinstance(raw[key], shape):
            problems.append(f"{key} must look like {example}, got {raw[key]!r}")
            del checked[key]
    return checked


def _check_settings(settings: dict[str, Any], problems: list[str]) -> None:
    if settings["searcher"] not in SEARCHERS:
        problems.append(f"searcher {settings['searcher']!r} is unknown; choose from {', '.join(SEARCHERS)}")
    for key in ("num_trials", "population_size", "startup_trials", "cheapest_of", "repeats"):
        if not isinstance(settings[key], int) or settings[key] < 1:
            problems.append(f"{key} must be a positive integer, got {settings[key]!r}")
    try:
        CheckpointPolicy(settings["checkpoint_every"])
    except ValueError as error:
        problems.append(str(error))
    if not isinstance(settings["retries"], int) or settings["retries"] < 0:
        problems.append(f"retries must be an integer >= 0, got {settings['retries']!r}")
    for key in ("time_budget_s", "energy_budget_j"):
        if settings[key] is not None and not (isinstance(settings[key], (int, float)) and settings[key] > 0):
            problems.append(f"{key} must be a positive number (or left out), got {settings[key]!r}")
    resources = settings["resources"] if isinstance(settings["resources"], dict) else {}
    if set(resources) - {"cpu", "gpu"} or not isinstance(settings["resources"], dict):
        problems.append(f"resources takes cpu and gpu per trial, e.g. {{cpu: 1, gpu: auto}}; got {settings['resources']!r}")
    gpu = resources.get("gpu", "auto")
    if gpu != "auto" and not (isinstance(gpu, (int, float)) and gpu >= 0):
        problems.append(f"resources.gpu must be auto or a number >= 0 (0.25 packs four trials on a GPU), got {gpu!r}")
    scheduler = settings["scheduler"] if isinstance(settings["scheduler"], dict) else {"name": settings["scheduler"]}
    settings["scheduler"] = scheduler
    if scheduler.get("name", "fifo") not in SCHEDULERS:
        problems.append(f"scheduler {scheduler.get('name')!r} is unknown; choose from {', '.join(SCHEDULERS)}")
    valid = ("name", "grace_period", "reduction_factor", "max_t", "tie_break", "project_costs")
    unknown = set(scheduler) - set(valid)
    if unknown:
        problems.append(f"scheduler has no setting {sorted(unknown)[0]!r}; valid: {', '.join(valid)}")
    for text in settings["constraints"] or []:
        try:
            Constraint.parse(text)
        except ValueError as error:
            problems.append(str(error))
    score = settings["score"]
    if not isinstance(score, dict) or set(score) - {"weight", "reference_j"}:
        problems.append(f"score takes weight and reference_j, got {score!r}")


def _generated_approaches(settings: dict[str, Any], problems: list[str]) -> dict[str, dict]:
    """One approach per listed technique (``all``: every registered one), plus combinations."""
    listed = settings["techniques"]
    names = sorted(available()) if listed == "all" else list(listed or [])
    generated: dict[str, dict] = {}
    for name in names:
        generated[name] = {"techniques": [name]}
    combinations = settings["combinations"]
    if combinations == "pairs":
        groups = [list(pair) for pair in itertools.combinations([n for n in names if n != "baseline"], 2)]
        compatible_only = True
    elif combinations in ("none", None):
        groups, compatible_only = [], True
    elif isinstance(combinations, list):
        groups, compatible_only = [list(group) for group in combinations], False
    else:
        problems.append(f"combinations must be none, pairs or a list of technique lists, got {combinations!r}")
        return generated
    for group in groups:
        try:
            Stack([technique_class(name)() for name in group])
        except (ValueError, TypeError) as error:
            if not compatible_only:  # a pair that cannot work is left out of "pairs" silently
                problems.append(f"combination {group}: {error}")
            continue
        generated["+".join(group)] = {"techniques": group}
    return generated


def _parse_approach(name: str, spec: Any, problems: list[str]) -> Approach:
    if not isinstance(spec, dict):
        problems.append(f"approach {name!r} must be a mapping with techniques, model, params and train")
        return Approach(name, ["baseline"], None, {})
    for key in spec:
        if key not in ("techniques", "model", "model_options", "params", "train"):
            problems.append(
                f"approach {name!r} has unknown field {key!r}; valid: techniques, model, model_options, params, train"
            )
    names = spec.get("techniques") or ["baseline"]
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(technique, str) for technique in names):
        problems.append(f"approach {name!r}: techniques must be a list of technique names, e.g. [data_selection], got {names!r}")
        names = []
    params = spec.get("params") or {}
    if not isinstance(params, dict) or not all(isinstance(values, dict) for values in params.values() if values):
        problems.append(f"approach {name!r}: params must map each technique to its parameters, e.g. {{gradmax: {{scale: 1.0}}}}")
        params = {}
    space: dict[str, dict[str, Param | Fixed]] = {}
    given: set[tuple[str, str]] = set()
    for technique in names:
        try:
            cls = technique_class(technique)
        except ValueError as error:
            problems.append(f"approach {name!r}: {error}")
            continue
        domains: dict[str, Param | Fixed] = dict(cls.space)
        for parameter, override in dict(params.get(technique) or {}).items():
            given.add((technique, parameter))
            if parameter in cls.space:
                try:
                    domains[parameter] = _narrow(cls.space[parameter], override)
                except ValueError as error:
                    problems.append(f"approach {name!r}: {technique}.{parameter}: {error}")
            elif parameter in parameter_names(cls):
                domains[parameter] = Fixed(override)
            else:
                valid = ", ".join(parameter_names(cls)) or "none"
                problems.append(f"approach {name!r}: technique {technique!r} has no parameter {parameter!r}; valid: {valid}")
        space[technique] = domains
    problems += [f"approach {name!r}: params given for {key!r}, which is not in its techniques" for key in params if key not in names]
    train = spec.get("train") or {}
    if not isinstance(train, dict):
        problems.append(f"approach {name!r}: train must be a mapping of settings, e.g. {{lr: 0.01}}")
        train = {}
    model_options = spec.get("model_options") or {}
    if not isinstance(model_options, dict):
        problems.append(f"approach {name!r}: model_options must be a mapping of keyword arguments, e.g. {{num_classes: 10}}")
        model_options = {}
    return Approach(name, list(names), spec.get("model"), space, dict(train), given, dict(model_options))


def first_points(entries: list, approaches: list[Approach]) -> list[dict[str, Any]]:
    """``evaluate_first`` as Optuna parameters, ``{"approach": name, "technique/parameter": value}``.

    An entry is an approach's name (its parameters are then sampled) or
    ``{approach: name, params: {technique: {parameter: value}}}``, a point such
    as a paper's published setting, to warm-start the search from.
    """
    by_name = {approach.name: approach for approach in approaches}
    points = []
    for entry in entries:
        spec = {"approach": entry} if isinstance(entry, str) else dict(entry)
        unknown = sorted(set(spec) - {"approach", "params"})
        if unknown:
            raise ValueError(f"evaluate_first entry {entry!r} has no field {unknown[0]!r}; give approach and params")
        approach = by_name.get(spec.get("approach"))
        if approach is None:
            raise ValueError(f"evaluate_first names {spec.get('approach')!r}, which is not an approach")
        point = {"approach": approach.name}
        for technique, values in (spec.get("params") or {}).items():
            for parameter, value in dict(values).items():
                domain = approach.space.get(technique, {}).get(parameter)
                if domain is None:
                    raise ValueError(f"evaluate_first: approach {approach.name!r} has no parameter {technique}.{parameter}")
                if isinstance(domain, Fixed):
                    if value != domain.value:
                        raise ValueError(f"evaluate_first: {technique}.{parameter} is fixed at {domain.value!r} in {approach.name!r}")
                    continue
                if not domain.contains(value):
                    raise ValueError(f"evaluate_first: {technique}.{parameter} = {value!r} is outside {domain}")
                point[f"{technique}/{parameter}"] = value
        points.append(point)
    return points


def _first_point_problems(entries: Any, approaches: list[Approach]) -> list[str]:
    if not isinstance(entries, list):
        return [f"evaluate_first takes a list of approach names or {{approach, params}} points, got {entries!r}"]
    problems = []
    for entry in entries:
        try:
            first_points([entry], approaches)
        except (ValueError, TypeError) as error:
            problems.append(str(error))
    return problems


def _summary_problems(summary: Any, approaches: list[str]) -> list[str]:
    """``summary: {columns: [...], reference: APPROACH}``: the per-approach table the CLI prints."""
    if summary is None:
        return []
    if not isinstance(summary, dict) or set(summary) - {"columns", "reference"}:
        return ["summary takes columns (a list of metric names) and reference (an approach)"]
    columns = summary.get("columns", [])
    problems = [] if isinstance(columns, list) and columns else ["summary.columns must be a non-empty list of metrics"]
    reference = summary.get("reference")
    if reference is not None and reference not in approaches:
        problems.append(f"summary.reference names {reference!r}, which is not an approach")
    return problems


def _narrow(domain: Param, override: Any) -> Param | Fixed:
    """A list narrows a numeric range to those values (grid points); anything else as ``Param.narrow``."""
    if isinstance(override, list) and not isinstance(domain, Choice):
        outside = [value for value in override if not domain.contains(value)]
        if outside or not override:
            raise ValueError(f"values {outside or override} are outside {domain}")
        return Choice(override)
    return domain.narrow(override)


def _objectives(entries: Any, quality_mode: str, problems: list[str]) -> dict[str, str]:
    """``["quality", "energy_j", "time_s:min"]`` -> column modes; quality takes the task's mode."""
    if isinstance(entries, dict):  # {column: mode}, as search.yaml records them
        entries = [f"{column}:{mode}" for column, mode in entries.items()]
    objectives = {}
    for entry in entries if isinstance(entries, list) else [entries]:
        column, _, mode = str(entry).partition(":")
        mode = mode or (quality_mode if column == "quality" else "min")
        if mode not in ("min", "max"):
            problems.append(f"objective {entry!r}: mode must be min or max")
        objectives[column] = mode
    if not objectives:
        problems.append("objectives is empty; the default is [quality, energy_j]")
    return objectives


def trial_config(search: SearchConfig, approach: Approach, values: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The trial config of ``approach`` with technique parameters ``values``."""
    config = search.trial_base()
    config.update(approach=approach.name, techniques=approach.techniques)
    config["train"] = {**config["train"], **approach.train}
    if approach.model is not None:
        config["model"] = approach.model
    if approach.model_options:
        config["model_options"] = dict(approach.model_options)
    config.update({technique: dict(params) for technique, params in values.items() if params})
    return config


def sample_trial(settings: Mapping[str, Any], approach: Approach) -> dict[str, Any]:
    """A trial config of ``approach`` with every searched parameter at its lower end."""
    values = {}
    for technique, domains in approach.space.items():
        values[technique] = {
            parameter: domain.value if isinstance(domain, Fixed) else domain.options[0] if isinstance(domain, Choice) else domain.low
            for parameter, domain in domains.items()
        }
    return trial_config(SearchConfig([], {}, dict(settings)), approach, values)
