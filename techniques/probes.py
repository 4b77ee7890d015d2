"""Extra forward passes on a model in training that leave it as it was.

Some techniques look at the model between steps: GradMax sums its growth
matrices over batches, a redistribution measures the loss it induces and
reads layer gradients. In train mode each such pass moves BatchNorm's
running statistics, so the model the run evaluates would depend on how
often it was looked at. ``buffers_kept`` puts them back.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def buffers_kept(model: nn.Module) -> Iterator[None]:
    """Restore every buffer of ``model`` (BatchNorm's running statistics and batch counts) on exit."""
    saved = [(buffer, buffer.clone()) for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
