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

import dataclasses
import difflib
import fnmatch
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from greentune import carbon
from greentune.analysis.constraints import Constraint
from greentune.analysis.tables import choose_baseline
from greentune.techniques import Choice, Fixed, Float, Int, Stack, available, parameter_names, technique_class
from greentune.techniques.space import Param
from greentune.trainables.tasks import create_task
from greentune.trainables.trial import CheckpointPolicy, ConfigError, check_trial_config, reported_metrics

from .settings import FILE_FIELDS, LEGACY_SEARCHER_FIELDS, Scheduler, Settings, read_settings
from .trackers import missing_packages

SHARED_TRIAL_FIELDS = ("task", "task_options", "train", "seed", "device", "energy", "checkpoint_every", "score")

TRAIN = "train"  # the key of an approach's searched training settings in its space; Optuna names them train/lr
# The training settings a search file may search (a range, or a list of values), each within the widest
# domain a file may narrow it to; lr and batch_size are drawn on a log scale unless the file says log: false.
TRAIN_DOMAINS: dict[str, Param] = {
    "lr": Float(1e-6, 10.0, log=True),
    "batch_size": Int(1, 65536, log=True),
    "weight_decay": Float(0.0, 1.0),
    "momentum": Float(0.0, 0.999),
    "epochs": Int(1, 100_000),
    "steps": Int(1, 1_000_000_000),
    "precision": Choice(["fp32", "bf16"]),
    "schedule": Choice(["constant", "cosine", "step"]),
    "optimizer": Choice(["sgd", "adam"]),
}


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
    """A checked search: its approaches, its objectives with their modes, and its typed settings."""

    approaches: list[Approach]
    objectives: dict[str, str]  # column -> "min" | "max"
    settings: Settings = field(default_factory=Settings)
    source: dict[str, Any] = field(default_factory=dict)  # the YAML as given, for the record

    def trial_base(self) -> dict[str, Any]:
        """The fields every trial config shares, as plain values."""
        base = {key: getattr(self.settings, key) for key in SHARED_TRIAL_FIELDS}
        base.update(energy=self.settings.energy.trial_config(), score=dataclasses.asdict(self.settings.score),
                    carbon=self.carbon_intensity().as_config(), train=fixed_train(self.settings.train))
        return {key: dict(value) if isinstance(value, Mapping) else value for key, value in base.items()}

    def task(self):
        """The task the search trains, built from its name and options."""
        return create_task(self.settings.task, **dict(self.settings.task_options))

    def carbon_intensity(self) -> carbon.Intensity:
        """The grid intensity each trial's ``co2_g`` is worked out with, and its ``carbon_source``."""
        given = self.settings.carbon
        return carbon.intensity(given.region, given.intensity_g_per_kwh)

    @property
    def constraints(self) -> list[Constraint]:
        return [Constraint.parse(text) for text in self.settings.constraints]

    @property
    def reference(self) -> str | None:
        """The approach others are compared with: ``summary.reference``, else the analysis's baseline rule."""
        if self.settings.summary and self.settings.summary.reference:
            return self.settings.summary.reference
        plain = [approach.name for approach in self.approaches if approach.techniques == ["baseline"]]
        return choose_baseline([approach.name for approach in self.approaches], plain)

    def dimensions(self) -> list[tuple[str, str, str]]:
        """Every searched dimension as ``(approach, "technique/parameter", domain)``, the approach itself first.

        Training settings read ``train/lr``; a grid lists the values the file
        gave (what it leaves out keeps its default).
        """
        grid = self.settings.searcher.name == "grid"
        rows = [("", "approach", Choice([approach.name for approach in self.approaches]).describe())]
        for approach in self.approaches:
            for technique, domains in approach.space.items():
                for parameter, domain in domains.items():
                    if isinstance(domain, Fixed) or (grid and (technique, parameter) not in approach.given):
                        continue
                    rows.append((approach.name, f"{technique}/{parameter}", domain.describe()))
        return rows

    def earlier_trials(self) -> list:
        """The finished and stopped trials of the ``warm_start_from`` searches that lie in this one's space."""
        from greentune import analysis

        from .warm_start import earlier_trials

        return [trial for directory in self.settings.warm_start_from
                for trial in earlier_trials(analysis.load(directory), self, str(directory))]

    def first_points(self) -> list[dict[str, Any]]:
        """``evaluate_first`` as Optuna parameters (see ``first_points``), the reference first where it is not listed.

        Warm-start points train to the end whatever the scheduler says, so
        every search has a finished reference to compare with.
        """
        points = first_points(list(self.settings.evaluate_first), self.approaches)
        if self.reference and all(point["approach"] != self.reference for point in points):
            points.insert(0, {"approach": self.reference})
        return points


def load_search(path: Path) -> SearchConfig:
    """Read and check a YAML search file; every problem is in the raised ConfigError."""
    return parse_search(read_search_file(path))


MAX_SEARCH_FILE_BYTES = 1_000_000  # the largest preset is a few KB; a file this big is a mistake or an attack


class _PlainLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases: a search file spells every value out.

    An alias is refused as it is met, before anything is built from it, so a
    file of nested aliases (an "alias bomb") costs no memory.
    """

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Anchored(event.start_mark)
        return super().compose_node(parent, index)


class _Anchored(Exception):
    def __init__(self, mark):
        super().__init__(f"line {mark.line + 1}, column {mark.column + 1}")


def read_search_file(path: Path) -> Any:
    """A YAML search file's contents, unchecked (an empty file is ``{}``), so overrides can join before ``parse_search``.

    Files over ``MAX_SEARCH_FILE_BYTES`` are refused before they are read,
    and anchors and aliases (``&name``, ``*name``) as they are met.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError([f"{path} is a folder; give a search file (YAML) inside it, or a preset's name"])
    try:
        size = path.stat().st_size
        if size > MAX_SEARCH_FILE_BYTES:
            raise ConfigError([f"{path} is {size} bytes, more than a search file's {MAX_SEARCH_FILE_BYTES}; is it the right file?"])
        with path.open("rb") as stream:  # the size again as read: a pipe or a growing file has no honest stat
            text = stream.read(MAX_SEARCH_FILE_BYTES + 1)
        if len(text) > MAX_SEARCH_FILE_BYTES:
            raise ConfigError([f"{path} is more than a search file's {MAX_SEARCH_FILE_BYTES} bytes; is it the right file?"])
        raw = yaml.load(text.decode(), Loader=_PlainLoader)  # noqa: S506 - a SafeLoader
    except _Anchored as where:
        raise ConfigError([f"{path} uses a YAML anchor or alias at {where}; search files spell each value out"]) from None
    except FileNotFoundError:
        raise ConfigError([f"no search file at {path}"]) from None
    except (UnicodeDecodeError, OSError) as error:
        raise ConfigError([f"cannot read {path} as a search file: {error}"]) from None
    except RecursionError:
        raise ConfigError([f"{path} nests too deeply to be a search file"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{path} is not valid YAML{_where(error)}: {_yaml_problem(error)}"]) from None
    return raw if raw is not None else {}


def _where(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's own words for what is wrong, on one line (its context and the problem)."""
    parts = [getattr(error, "context", None), getattr(error, "problem", None)]
    return ", ".join(part for part in parts if part) or str(error).splitlines()[0]


def parse_search(raw: Any) -> SearchConfig:
    if not isinstance(raw, dict):
        raise ConfigError(["a search file must be a mapping of fields such as task, approaches, objectives"])
    fields = ("approaches", *FILE_FIELDS)
    problems = [f"unknown field {key!r}; valid fields: {', '.join(sorted(fields))}" for key in raw
                if key not in fields and key not in LEGACY_SEARCHER_FIELDS]
    settings = read_settings({key: value for key, value in raw.items() if key != "approaches"}, problems)
    specs = raw.get("approaches") or {}
    if not isinstance(specs, dict):
        problems.append(f"approaches must look like {{baseline-big: {{techniques: [baseline], model: big}}}}, got {specs!r}")
        specs = {}
    specs = {**specs, **_generated_approaches(settings, problems)}
    for name in [name for name in specs if not isinstance(name, str) or not name.strip()]:
        problems.append(f"approach names must be text, like baseline-big; got {name!r} (quote it in YAML)")
        del specs[name]
    _, searched_train = split_train(settings.train, "train", problems)
    approaches = [_parse_approach(name, spec, searched_train, problems) for name, spec in specs.items()]
    if not approaches:
        problems.append("no approaches; list some under approaches, or name techniques: [...]")
    names = [approach.name for approach in approaches]
    problems += _first_point_problems(list(settings.evaluate_first), approaches)
    _check_settings(settings, problems)
    if settings.summary and settings.summary.reference is not None and settings.summary.reference not in names:
        problems.append(f"summary.reference names {settings.summary.reference!r}, which is not an approach")
    if settings.searcher.name == "grid":  # a grid's size is its points: approaches x listed values
        try:
            points = sum(math.prod(map(len, a.grid_dimensions().values())) for a in approaches)
            settings = dataclasses.replace(settings, budgets=dataclasses.replace(settings.budgets, num_trials=points))
        except ValueError as error:
            problems.append(str(error))
    objectives: dict[str, str] = {}
    task_problem = None
    try:
        task = create_task(settings.task, **dict(settings.task_options))
        objectives = _objectives(settings.objectives, task.mode, problems)
        problems += _unreported(objectives, settings.constraints, task, approaches)
        if settings.scheduler is None:
            settings = dataclasses.replace(settings, scheduler=_library_scheduler(settings))
        problems += _warm_start_problems(SearchConfig(approaches, objectives, settings))
        if settings.scheduler.name == "asha" and not problems:  # the one that needs the evaluations counted
            problems += _scheduler_problems(SearchConfig(approaches, objectives, settings))
    except ValueError as error:
        task_problem = str(error)
        problems.append(task_problem)
    problems += _trial_problems(settings, approaches, said={task_problem, *problems})
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return SearchConfig(approaches=approaches, objectives=objectives, settings=settings, source=raw)


def _warm_start_problems(search: SearchConfig) -> list[str]:
    """Each ``warm_start_from`` directory that holds no search, or one whose trials do not count here."""
    from .warm_start import mismatch

    problems = []
    for directory in search.settings.warm_start_from:
        record = Path(directory) / "search.yaml"
        if not record.is_file():
            problems.append(f"warm_start_from: {directory} holds no greentune search (no search.yaml)")
            continue
        differs = mismatch(yaml.safe_load(record.read_text()) or {}, search)
        if differs:
            problems.append(f"warm_start_from: {directory} cannot warm-start this search: {differs}; warm-start only "
                            "from searches of the same task, objectives, machine and greentune version")
    return problems


def _scheduler_problems(search: SearchConfig) -> list[str]:
    """What building the search's scheduler refuses (asha, for trials whose evaluations are not known)."""
    from .schedulers import make_scheduler  # here, not at the top: the searchers build on this module

    try:
        make_scheduler(search.settings.scheduler, search.objectives, evaluations_per_trial(search))
    except ValueError as error:
        return [str(error)]
    return []


def _library_scheduler(settings: Settings) -> Scheduler:
    """What a file that names no scheduler gets: MO-ASHA, which the benchmark measured best (its rungs are
    on the fraction of training done, so trials of any length meet there); FIFO for a grid, whose every
    point runs to the end."""
    return Scheduler(name="fifo") if settings.searcher.name == "grid" else Scheduler()


def split_train(train: Mapping[str, Any], where: str, problems: list[str]) -> tuple[dict[str, Any], dict[str, Param]]:
    """A ``train`` mapping as its fixed settings and its searched dimensions (see ``TRAIN_DOMAINS``).

    A mapping (``{low, high, log}``) or, for a searchable setting, a list of
    values is a dimension; anything else is a fixed value (a list such as
    ``lr_milestones: [60, 120]`` included). Problems name ``where``.
    """
    fixed, searched = {}, {}
    for key, value in train.items():
        if not _is_domain(key, value):
            fixed[key] = value
        elif key not in TRAIN_DOMAINS:
            problems.append(f"{where}.{key} cannot be searched; searchable training settings: {', '.join(TRAIN_DOMAINS)}")
        else:
            try:
                searched[key] = _narrow(TRAIN_DOMAINS[key], value)
            except ValueError as error:
                problems.append(f"{where}.{key}: {error}")
    return fixed, searched


def fixed_train(train: Mapping[str, Any]) -> dict[str, Any]:
    """The fixed settings of a ``train`` mapping, its searched dimensions left out."""
    return {key: value for key, value in train.items() if not _is_domain(key, value)}


def _is_domain(key: str, value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and key in TRAIN_DOMAINS)


def longest_training(settings: Settings, approach: Approach, task):
    """The approach's ``TrainSettings`` at the longest its space allows: the most steps or epochs searched."""
    train = {**fixed_train(settings.train), **approach.train}
    for key, domain in approach.space.get(TRAIN, {}).items():
        if key in ("steps", "epochs"):
            train[key] = max(domain.options) if isinstance(domain, Choice) else domain.high
    return task.defaults.override(train)


def evaluations_per_trial(search: SearchConfig) -> int | None:
    """How many results the longest trial reports (``scheduler.max_t`` where given); None where trials
    count epochs, whose number of evaluations is not known before the data is loaded."""
    scheduler = search.settings.scheduler
    if scheduler is not None and scheduler.max_t:
        return scheduler.max_t
    task = search.task()
    counts = []
    for approach in search.approaches:
        train = longest_training(search.settings, approach, task)
        if train.epochs is not None:
            return None
        counts.append(math.ceil(train.steps / train.eval_every))
    return max(counts)


def _trial_problems(settings: Settings, approaches: list[Approach], said: set) -> list[str]:
    """What each approach's first trial would fail on; a problem every approach has (a search-wide
    ``train`` setting, say) is said once, without an approach's name."""
    lines = {approach.name: [line for line in _first_trial_problems(settings, approach) if line not in said]
             for approach in approaches}
    everywhere = set.intersection(*map(set, lines.values())) if len(lines) > 1 else set()
    problems = [line for line in dict.fromkeys(sum(lines.values(), [])) if line in everywhere]
    for name, found in lines.items():
        problems += [f"approach {name!r}: {line}" for line in found if line not in everywhere]
    return problems


def _first_trial_problems(settings: Settings, approach: Approach) -> list[str]:
    """What the approach's trial at the low corner of its space fails on, unless its defaults train.

    A corner that cannot work on the model (GradMax's one growth step too
    large for a small layer, say) fails the trials drawn there, not the
    search; an approach that fails with its techniques' defaults too cannot
    run at all, and is refused.
    """
    problems = check_trial_config(sample_trial(settings, approach))
    if problems and not check_trial_config(default_trial(settings, approach)):
        return []
    return problems


def _check_settings(settings: Settings, problems: list[str]) -> None:
    """What the settings' own rules cannot see: names in the registries, checkpoints, constraints."""
    from .schedulers import SCHEDULERS  # here, not at the top: the searchers build on this module
    from .searchers import SEARCHERS

    for registry, group in ((SEARCHERS, settings.searcher), (SCHEDULERS, settings.scheduler)):
        if group is not None and group.name not in registry:
            problems.append(str(registry.unknown(group.name)))
    try:
        CheckpointPolicy(settings.checkpoint_every)
    except ValueError as error:
        problems.append(str(error))
    for text in settings.constraints:
        try:
            Constraint.parse(text)
        except ValueError as error:
            problems.append(str(error))
    problems += missing_packages(settings.loggers)
    if settings.carbon.region is not None and settings.carbon.intensity_g_per_kwh is not None:
        problems.append("carbon takes a region or an intensity_g_per_kwh, not both")
    try:
        carbon.intensity(settings.carbon.region)
    except ValueError as error:
        problems.append(str(error))


def _generated_approaches(settings: Settings, problems: list[str]) -> dict[str, dict]:
    """One approach per listed technique (``all``: every registered one), plus combinations."""
    listed = settings.techniques
    names = sorted(available()) if listed == "all" else list(listed or [])
    generated: dict[str, dict] = {}
    for name in names:
        generated[name] = {"techniques": [name]}
    combinations = settings.combinations
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


def _parse_approach(name: str, spec: Any, searched_train: Mapping[str, Param], problems: list[str]) -> Approach:
    """An approach from its spec; ``searched_train`` are the search-wide ``train`` dimensions it inherits."""
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
    train, searched = split_train(train, f"approach {name!r}: train", problems)
    searched = {**{key: domain for key, domain in searched_train.items() if key not in train}, **searched}
    if searched:
        space[TRAIN] = searched
        given |= {(TRAIN, key) for key in searched}
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
        params = spec.get("params") or {}
        if not isinstance(params, dict) or not all(isinstance(values, dict) for values in params.values()):
            raise ValueError(f"evaluate_first: params of {approach.name!r} must map each technique to its values, "
                             "e.g. {data_selection: {selectivity: 0.3}}")
        for technique, values in params.items():
            for parameter, value in dict(values).items():
                domain = approach.space.get(technique, {}).get(parameter)
                if domain is None:
                    raise ValueError(f"evaluate_first: approach {approach.name!r} has no parameter {technique}.{parameter}")
                if isinstance(domain, Fixed):
                    if value != domain.value:
                        raise ValueError(f"evaluate_first: {technique}.{parameter} is fixed at {domain.value!r} in {approach.name!r}")
                    continue
                if not domain.contains(value):
                    raise ValueError(f"evaluate_first: {technique}.{parameter} = {value!r} is outside {domain.describe()}")
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


def _narrow(domain: Param, override: Any) -> Param | Fixed:
    """A list narrows a numeric range to those values (grid points); anything else as ``Param.narrow``."""
    if isinstance(override, list) and not isinstance(domain, Choice):
        outside = [value for value in override if not domain.contains(value)]
        if outside or not override:
            raise ValueError(f"values {outside or override} are outside {domain.describe()}")
        return Choice(override)
    return domain.narrow(override)


def _unreported(objectives: Mapping[str, str], constraints: tuple[str, ...], task, approaches: list[Approach]) -> list[str]:
    """Objectives and constraint columns no trial of the search would report, each with the names it could use."""
    classes = []
    for approach in approaches:
        for name in approach.techniques:
            try:
                classes.append(technique_class(name))
            except ValueError:
                pass  # said where the approach is parsed
    reported = reported_metrics(task, classes)
    if reported is None:
        return []
    columns = [("objective", column) for column in objectives]
    for text in constraints:
        try:
            columns.append(("constraint", Constraint.parse(text).column))
        except ValueError:
            pass  # said with the settings
    problems = []
    for what, column in columns:
        if not any(fnmatch.fnmatchcase(column, name) for name in reported):
            close = difflib.get_close_matches(column, sorted(reported), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{what} {column!r} is not a metric the trials report{hint}; "
                            f"choose from {', '.join(sorted(reported))}")
    return problems


def _objectives(entries: Any, quality_mode: str, problems: list[str]) -> dict[str, str]:
    """``["quality", "energy_j", "time_s:min"]`` -> column modes; quality takes the task's mode."""
    if isinstance(entries, dict):  # {column: mode}, as search.yaml records them
        entries = [f"{column}:{mode}" for column, mode in entries.items()]
    objectives = {}
    for entry in entries if isinstance(entries, (list, tuple)) else [entries]:
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
    searched = approach.space.get(TRAIN, {})
    train = {key: value for key, value in {**config["train"], **approach.train}.items() if key not in searched}
    config["train"] = {**train, **values.get(TRAIN, {})}
    if approach.model is not None:
        config["model"] = approach.model
    if approach.model_options:
        config["model_options"] = dict(approach.model_options)
    config.update({technique: dict(params) for technique, params in values.items() if params and technique != TRAIN})
    return config


def fixed_values(approach: Approach) -> dict[str, dict[str, Any]]:
    """``{technique: {parameter: value}}`` for the parameters the file fixes in ``approach``."""
    return {technique: {parameter: domain.value for parameter, domain in domains.items() if isinstance(domain, Fixed)}
            for technique, domains in approach.space.items()}


def default_trial(settings: Settings, approach: Approach) -> dict[str, Any]:
    """A trial config of ``approach`` with what the file fixes, and its techniques' defaults for the rest."""
    return trial_config(SearchConfig([], {}, settings), approach, fixed_values(approach))


def sample_trial(settings: Settings, approach: Approach) -> dict[str, Any]:
    """A trial config of ``approach`` with every searched parameter at its lower end."""
    values = {}
    for technique, domains in approach.space.items():
        values[technique] = {
            parameter: domain.value if isinstance(domain, Fixed) else domain.options[0] if isinstance(domain, Choice) else domain.low
            for parameter, domain in domains.items()
        }
    return trial_config(SearchConfig([], {}, settings), approach, values)
