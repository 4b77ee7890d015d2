"""A task's data as the training loop sees it: an endless shuffled order of batches.

The loop asks a technique ``keep_batch`` first and only then fetches, so a
skipped batch costs no copy. Three forms share that interface:

- ``DeviceData``: the whole split is one pair of tensors on the device; a
  batch is an index into them, and augmentation runs on whole batches.
- ``StreamData``: a ``torch.utils.data.Dataset`` too large for the device,
  read through a DataLoader with workers and pinned memory. Its batch
  sampler yields only the indices of kept batches, so a skipped batch's
  samples are never read.
- ``LoaderData``: batches from the user's own DataLoader. The loader decides
  what it reads, so a skipped batch is read but never moved to the device.

``as_data`` turns what a task gives (tensors, a Dataset, a DataLoader
factory) into one of these.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]


class ShuffledBatches:
    """An endless order of sample indices, reshuffled every epoch, cut into batches."""

    def __init__(self, count: int, batch_size: int, *, seed: int, drop_last: bool, device: torch.device | str = "cpu"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if count < 1:
            raise ValueError("the training data is empty; a task must give at least one sample")
        self.num_samples, self.batch_size, self.drop_last = count, batch_size, drop_last
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long, device=device)
        self._position = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        count = self.num_samples / self.batch_size
        return max(1, math.floor(count)) if self.drop_last else math.ceil(count)

    def next_indices(self) -> torch.Tensor:
        """The indices of the next batch, starting a new epoch when needed."""
        start = self._advance() * self.batch_size
        return self._order[start : start + self.batch_size]

    def skip(self) -> None:
        """Pass over the next batch without touching its data."""
        self._advance()

    def _advance(self) -> int:
        if self._position >= len(self) or not len(self._order):
            self._order = torch.randperm(self.num_samples, generator=self.generator, device=self.generator.device)
            self._position = 0
        self._position += 1
        return self._position - 1

    def sample(self, size: int, generator: torch.Generator) -> Batch:
        """A batch drawn at random outside the epoch order, for a technique's statistics."""
        indices = torch.randint(self.num_samples, (min(size, self.num_samples),), generator=generator, device=generator.device)
        return self.take(indices.to(self.generator.device))

    def take(self, indices: torch.Tensor) -> Batch:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self._order, "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._order = state["order"].to(self.generator.device)
        self._position = state["position"]


class DeviceData(ShuffledBatches):
    """Inputs and targets on one device, with an endless shuffled batch order."""

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        *,
        seed: int = 0,
        drop_last: bool = False,
        augment: Augment | None = None,
    ):
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        super().__init__(len(inputs), batch_size, seed=seed, drop_last=drop_last, device=inputs.device)
        self.inputs, self.targets = inputs, targets
        self.augment = augment

    def take(self, indices: torch.Tensor) -> Batch:
        inputs = self.inputs[indices]
        if self.augment is not None:
            inputs = self.augment(inputs, self.generator)
        return inputs, self.targets[indices]

    def batches(self) -> Iterator[Batch]:
        """One pass in storage order, for evaluation."""
        for start in range(0, len(self.inputs), self.batch_size):
            yield self.inputs[start : start + self.batch_size], self.targets[start : start + self.batch_size]


class _KeptBatches:
    """A DataLoader batch sampler that yields the index lists put in it, then stops: only kept batches are read."""

    def __init__(self):
        self.pending: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        while self.pending:
            yield self.pending.pop(0)

    def __len__(self) -> int:
        return len(self.pending)


class StreamData(ShuffledBatches):
    """A map-style Dataset of ``(input, target)`` pairs, read batch by batch through a DataLoader.

    Each kept batch is split over the workers, read in parallel into pinned
    memory and copied to the device without blocking. The order is drawn
    here, as ``DeviceData`` draws it, so checkpoints resume mid-epoch.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, device: torch.device, seed: int = 0, drop_last: bool = False,
                 num_workers: int = 0, pin_memory: bool | None = None, collate_fn: Callable | None = None):
        super().__init__(len(dataset), batch_size, seed=seed, drop_last=drop_last)
        self.dataset, self.device = dataset, torch.device(device)
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else pin_memory
        self.num_workers = num_workers
        self._feed = _KeptBatches()
        options = dict(num_workers=num_workers, pin_memory=self.pin_memory, collate_fn=collate_fn)
        self.loader = DataLoader(dataset, batch_sampler=self._feed, persistent_workers=num_workers > 0, **options)
        self._in_order = DataLoader(dataset, batch_size=batch_size, shuffle=False, **options)

    def take(self, indices: torch.Tensor) -> Batch:
        chunks = [chunk.tolist() for chunk in indices.cpu().tensor_split(max(1, self.num_workers)) if len(chunk)]
        self._feed.pending.extend(chunks)
        parts = [self._to_device(batch) for batch in self.loader]
        if len(parts) == 1:
            return parts[0]
        return torch.cat([inputs for inputs, _ in parts]), torch.cat([targets for _, targets in parts])

    def batches(self) -> Iterator[Batch]:
        """One pass in storage order, for evaluation."""
        return map(self._to_device, self._in_order)

    def _to_device(self, batch) -> Batch:
        inputs, targets = batch
        return inputs.to(self.device, non_blocking=self.pin_memory), targets.to(self.device, non_blocking=self.pin_memory)


class LoaderData:
    """Batches from a user's DataLoader (any iterable of ``(inputs, targets)`` with a length), epoch after epoch.

    The loader reads a batch before greentune sees it, so ``skip`` draws it
    and drops it before it reaches the device. A checkpoint records the
    epoch and the position in it; resuming draws the epoch's batches up to
    there again (the order is the loader's: seed it to make it repeatable).
    """

    def __init__(self, loader: Iterable, *, device: torch.device):
        self.loader, self.device = loader, torch.device(device)
        if not len(loader):
            raise ValueError("the training DataLoader is empty; a task must give at least one batch")
        self._iterator: Iterator | None = None
        self._statistics: Iterator | None = None
        self._position = 0

    def __len__(self) -> int:
        return len(self.loader)

    def next_indices(self) -> None:
        """Nothing to choose: the loader's next batch comes in ``take``."""
        return None

    def take(self, indices: None) -> Batch:
        return self._to_device(self._next())

    def skip(self) -> None:
        self._next()

    def _next(self):
        if self._iterator is None or self._position >= len(self):
            self._iterator, self._position = iter(self.loader), 0
        self._position += 1
        return next(self._iterator)

    def sample(self, size: int, generator: torch.Generator) -> Batch:
        """The next batch of a second pass over the loader, so the training order is untouched."""
        try:
            batch = next(self._statistics) if self._statistics is not None else None
        except StopIteration:
            batch = None
        if batch is None:
            self._statistics = iter(self.loader)
            batch = next(self._statistics)
        inputs, targets = self._to_device(batch)
        return inputs[:size], targets[:size]

    def batches(self) -> Iterator[Batch]:
        return map(self._to_device, self.loader)

    def _to_device(self, batch) -> Batch:
        inputs, targets = batch
        return inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {"position": self._position}

    def load_state_dict(self, state: dict) -> None:
        self._iterator, self._position = iter(self.loader), 0
        for _ in range(state["position"]):
            self._next()


def as_data(source: Any, device: torch.device, batch_size: int, *, seed: int = 0, drop_last: bool = False,
            augment: Augment | None = None, num_workers: int = 0, pin_memory: bool | None = None):
    """What a task gives as one split, as the loop's data.

    ``source`` is ``(inputs, targets)`` tensors (moved to ``device``), a map-style
    ``Dataset`` of ``(input, target)`` pairs (streamed), or a callable
    ``batch_size -> DataLoader`` (its batches are used as they come).
    """
    if isinstance(source, (tuple, list)) and len(source) == 2 and all(isinstance(part, torch.Tensor) for part in source):
        inputs, targets = source
        return DeviceData(inputs.to(device), targets.to(device), batch_size, seed=seed, drop_last=drop_last, augment=augment)
    if isinstance(source, Dataset) and not isinstance(source, IterableDataset) and hasattr(source, "__len__"):
        return StreamData(source, batch_size, device=device, seed=seed, drop_last=drop_last,
                          num_workers=num_workers, pin_memory=pin_memory)
    if callable(source):
        return LoaderData(source(batch_size), device=device)
    raise ValueError(
        f"a task's data must be (inputs, targets) tensors, a torch.utils.data.Dataset of (input, target) pairs, "
        f"or a function batch_size -> DataLoader (for an IterableDataset); got {type(source).__name__}"
    )
