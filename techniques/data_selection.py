"""Data selection by random batch skipping (seed 000, III-A-1, after E2-Train).

Each batch is kept with probability ``selectivity``. A skipped batch is never
fetched and costs no forward or backward pass. What the optimizer does on a
skipped batch is the ``on_skip`` choice:

- ``"last"`` (the seed paper's choice): step again with the gradients of the
  latest kept batch, which are still in ``.grad``;
- ``"zero"`` (E2-Train's original): step with zero gradients, so only
  momentum and weight decay move the weights;
- ``"none"``: take no step at all.
"""

from __future__ import annotations

import random
from typing import Annotated

from .base import Run, Technique
from .registry import register
from .space import Choice, Float

SKIP_MODES = ("last", "zero", "none")


@register
class DataSelection(Technique):
    name = "data_selection"
    reports = frozenset({"kept_fraction"})
    claims = frozenset({"batches"})
    stage = 0

    def __init__(
        self, selectivity: Annotated[float, Float(0.1, 1.0)] = 0.5, on_skip: Annotated[str, Choice(SKIP_MODES)] = "last"
    ):
        if not 0.0 < selectivity <= 1.0:
            raise ValueError(f"selectivity must be in (0, 1], got {selectivity}")
        if on_skip not in SKIP_MODES:
            raise ValueError(f"on_skip must be one of {', '.join(SKIP_MODES)}, got {on_skip!r}")
        self.selectivity = selectivity
        self.on_skip = on_skip
        self._rng = random.Random(0)
        self.kept = 0
        self.skipped = 0

    def prepare(self, model, run: Run):
        # A stream of its own: batch order and initialisation are the same
        # as the baseline's for the same seed, whatever the selectivity.
        self._rng = random.Random(f"data_selection:{run.seed}")
        return model

    def keep_batch(self, run: Run) -> bool:
        keep = self._rng.random() < self.selectivity
        if keep:
            self.kept += 1
        else:
            self.skipped += 1
        return keep

    def on_skipped_batch(self, run: Run) -> bool:
        if self.on_skip == "zero":
            for group in run.optimizer.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        param.grad.zero_()
        return self.on_skip != "none"

    def metrics(self, run: Run) -> dict[str, float]:
        seen = self.kept + self.skipped
        return {"kept_fraction": self.kept / seen if seen else 1.0}

    def __repr__(self) -> str:
        return f"DataSelection(selectivity={self.selectivity}, on_skip={self.on_skip!r})"
