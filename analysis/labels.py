"""What a results column is called on a plot's axis, and which way along it is better.

``quality`` is whatever metric the task reports as its quality, a loss or an
accuracy. An axis that just says "quality" tells the reader neither which
metric it is nor whether up is good, so axes name the task's metric (from
the search's record) and, for the objectives, their direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

NAMES = {
    "quality": "quality", "energy_j": "training energy (J)", "time_s": "training time (s)", "flops": "training FLOPs",
    "loss": "training loss (window mean)", "step": "step", "trials": "trials completed", "hypervolume": "hypervolume",
}
HELD_OUT = "test_"  # tasks name their held-out metrics test_loss, test_accuracy


@dataclass(frozen=True)
class Labels:
    """Axis names: the task's metric for ``quality``, and "lower/higher is better" where a mode is known.

    >>> labels = Labels.of({"quality": "min", "energy_j": "min"}, {"name": "test_loss", "mode": "min"})
    >>> labels.axis("quality"), labels.axis("energy_j"), labels.axis("step")
    ('held-out loss, lower is better', 'training energy (J), lower is better', 'step')
    >>> Labels.of({"quality": "max"}, None).axis("quality")  # a search run before the metric was recorded
    'quality, higher is better'
    """

    quality_metric: str | None = None  # the task's metric reported as quality, e.g. "test_loss"
    modes: Mapping[str, str] = field(default_factory=dict)  # column -> "min" | "max"

    @classmethod
    def of(cls, objectives: Mapping[str, str], quality_metric: Mapping[str, str] | None) -> Labels:
        """From the search's objectives and its recorded quality metric (``{"name": ..., "mode": ...}``, or None)."""
        modes = {"quality": quality_metric["mode"]} if quality_metric else {}
        return cls(quality_metric["name"] if quality_metric else None, {**modes, **objectives})

    def name(self, column: str) -> str:
        if column == "quality" and self.quality_metric:
            metric = self.quality_metric
            return ("held-out " + metric.removeprefix(HELD_OUT) if metric.startswith(HELD_OUT) else metric).replace("_", " ")
        return NAMES.get(column, column.replace("_", " "))

    def axis(self, column: str) -> str:
        direction = {"min": "lower", "max": "higher"}.get(self.modes.get(column, ""))
        return f"{self.name(column)}, {direction} is better" if direction else self.name(column)
