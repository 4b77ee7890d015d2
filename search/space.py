"""The search space as an Optuna define-by-run function.

The approach is a categorical parameter; each approach's technique
parameters are suggested only when that approach is drawn, under the names
``<technique>/<parameter>``. Ray Tune's OptunaSearch unflattens those names,
so a trial receives ``config["data_selection"]["selectivity"]``. Fixed values
come back as constants, flattened the same way, so both merge cleanly. In a
grid, parameters the search file left out are not suggested: the
technique's default applies.
"""

from __future__ import annotations

from typing import Any

from ray.tune.utils.util import flatten_dict

from greentune.techniques import Choice, Fixed, Float, Int

from .config import SearchConfig, trial_config

WARM_START = "warm_start"  # the config field, and Optuna user attribute, of an evaluate_first trial


class DefineByRun:
    """Picklable (Ray saves the searcher with the experiment) define-by-run space."""

    def __init__(self, search: SearchConfig):
        self.search = search
        self.approaches = {approach.name: approach for approach in search.approaches}
        self.grid = search.settings.searcher.name == "grid"

    def __call__(self, trial) -> dict[str, Any]:
        approach = self.approaches[trial.suggest_categorical("approach", list(self.approaches))]
        fixed: dict[str, dict[str, Any]] = {}
        for technique, domains in approach.space.items():
            for parameter, domain in domains.items():
                key = f"{technique}/{parameter}"
                if isinstance(domain, Fixed):
                    fixed.setdefault(technique, {})[parameter] = domain.value
                elif self.grid and (technique, parameter) not in approach.given:
                    continue  # a grid keeps the technique's default for what the file left out
                elif isinstance(domain, Choice):
                    trial.suggest_categorical(key, list(domain.options))
                elif isinstance(domain, Int):
                    trial.suggest_int(key, domain.low, domain.high, log=domain.log)
                elif isinstance(domain, Float):
                    trial.suggest_float(key, domain.low, domain.high, log=domain.log)
        constants = trial_config(self.search, approach, fixed)
        del constants["approach"]  # suggested above
        if trial.user_attrs.get(WARM_START):
            constants[WARM_START] = True
        # Ray keeps list values whole; dicts are flattened to "a/b" keys so
        # they merge with the suggested names when Ray unflattens them.
        return flatten_dict(constants, delimiter="/")
