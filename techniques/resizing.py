"""The schedule GradMax growing and filter pruning share, run in opposite directions.

Seed 000 prunes "with exactly the opposite schedule" of GradMax's growth, so
both are this one class: from the approach's model, ``steps`` resizes spaced
evenly from ``start`` over ``span`` (fractions of the run, so a schedule
keeps its meaning when the step budget changes), ending with every width
group at ``width_ratio`` times its starting width. The paper's
teacher–student schedule, iterations 500, 1000, ..., 2500 of 3500, is
``start=1/7, span=4/7, steps=5``; its CIFAR one, 10000, 12500, ..., 37500 of
78200, is ``start=0.127877, span=0.351662, steps=12``.

Subclasses only decide which units to add or remove (``resize_groups``);
surgery does the tensors and the optimizer.
"""

from __future__ import annotations

from typing import Annotated, Sequence

from torch import nn

from .base import Run, Technique
from .space import Float, Int
from .surgery import Resized, WidthGroup, rebuild_optimizer, width_groups, widths


class ScheduledResize(Technique):
    claims = frozenset({"width"})
    reports = frozenset({"resizable_units"})
    stage = 10

    def __init__(
        self,
        width_ratio: float,
        start: Annotated[float, Float(0.0, 0.4)] = 1 / 7,
        span: Annotated[float, Float(0.0, 0.6)] = 4 / 7,
        steps: Annotated[int, Int(1, 16)] = 5,
    ):
        if not 0.0 <= start <= 1.0 or not 0.0 <= span <= 1.0 - start:
            raise ValueError(f"need 0 <= start <= 1 and 0 <= span <= 1 - start (fractions of the run); got {start}, {span}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if width_ratio <= 0:
            raise ValueError(f"width_ratio must be positive, got {width_ratio}")
        self.width_ratio, self.start, self.span, self.steps = width_ratio, start, span, steps
        self.groups: list[WidthGroup] = []
        self.plan: dict[int, list[int]] = {}  # optimizer step -> target width of each group

    def prepare(self, model: nn.Module, run: Run) -> nn.Module:
        self.groups = width_groups(model)
        initial = widths(model, self.groups)
        final = [max(1, round(width * self.width_ratio)) for width in initial]
        # Each step rounded on its own, so start + span <= 1 keeps them all inside the run.
        fractions = [self.start + self.span * index / max(1, self.steps - 1) for index in range(self.steps)]
        at = distinct_steps([max(1, round(fraction * run.total_steps)) for fraction in fractions], run.total_steps)
        self.plan = {
            step: [round(begin + (end - begin) * (index + 1) / self.steps) for begin, end in zip(initial, final)]
            for index, step in enumerate(at)
        }
        return model

    def after_step(self, run: Run) -> None:
        targets = self.plan.get(run.step)
        if targets is None:
            return
        current = widths(run.model, self.groups)
        todo = [(group, now, target) for group, now, target in zip(self.groups, current, targets) if target != now]
        if todo:
            rebuild_optimizer(run, self.resize_groups(run, todo))

    def resize_groups(self, run: Run, todo: Sequence[tuple[WidthGroup, int, int]]) -> list[Resized]:
        """Bring each ``(group, width now, target width)`` to its target; return surgery's records."""
        raise NotImplementedError

    def metrics(self, run: Run) -> dict[str, float]:
        return {"resizable_units": float(sum(widths(run.model, self.groups)))}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(width_ratio={self.width_ratio}, start={self.start}, span={self.span}, "
            f"steps={self.steps})"
        )


def distinct_steps(steps: list[int], last: int) -> list[int]:
    """Ascending ``steps`` moved apart where they coincide, one optimizer step at a time, within [1, last].

    A short span with many resizes rounds several onto one optimizer step;
    the plan would then keep only the last of them, one jump as large as
    several, which GradMax cannot make (M has few directions). Moved apart,
    every resize keeps its size. Only a run with fewer steps than resizes
    keeps some together.

    >>> distinct_steps([4, 4, 5, 9], 100), distinct_steps([99, 100, 100], 100)
    ([4, 5, 6, 9], [98, 99, 100])
    """
    spread = list(steps)
    for index in range(1, len(spread)):
        spread[index] = max(spread[index], spread[index - 1] + 1)
    spread[-1] = min(spread[-1], last)  # pushed past the end: the tail slides back
    for index in reversed(range(len(spread) - 1)):
        spread[index] = max(1, min(spread[index], spread[index + 1] - 1))
    return spread
