"""The k-th smallest value of each segment of a flat buffer, searched near the last one.

Feather sets its thresholds (one |w| quantile over all layers, or one per
layer with ASL+) after every optimizer step, and a step moves them little.
A full selection reads and reorders every value of a segment: introselect
on a CPU, and on a GPU ``kthvalue``, which works through a slice with one
thread block. Here each segment first counts its values below a band
around its last k-th value and those up to the band's top. When
below < k <= upto, the k-th smallest lies in the band and is the
(k − below)-th smallest of the band's values: the same value a full
selection gives, so the kept counts are exactly the exact quantile's.
Only when it has left the band is the whole segment searched. The band
reaches twice the last move plus 1 % of the value either side, as the
native kernel of ``benchmarks/feather_floor.py`` does.

On an accelerator the device compares and counts, and gathers the band's
few values; the selection among them runs on the host, which reads the
counts once a step (with anything else the caller reads then: ASL+ its
gradient) and then the band.
"""

from __future__ import annotations

import numpy as np
import torch

REACH = 0.01  # the band's half-width beyond twice the last move, relative to the last value


class NearbySelection:
    """Per segment ``[bounds[i], bounds[i + 1])`` of a flat buffer, its k-th smallest value, step after step.

    ``count`` then ``select``, with the same values: what lies below and up to
    each band, then the k-th values. Only the last values and moves are
    pickled; the comparison buffers are rebuilt on first use.
    """

    def __init__(self, bounds: list[int]):
        self.bounds = list(bounds)
        self.previous = [0.0] * (len(bounds) - 1)  # 0: none yet, so the whole segment is searched
        self.moves = [0.0] * (len(bounds) - 1)
        self.full_searches = 0
        self._values = None

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _values=None)

    @property
    def on_cpu(self) -> bool:
        return self._values.device.type == "cpu"

    def _build(self, values: torch.Tensor) -> None:
        self._values = values
        self._below, self._upto = torch.empty_like(values, dtype=torch.bool), torch.empty_like(values, dtype=torch.bool)
        if self.on_cpu:
            self._arrays = values.numpy(), self._below.numpy(), self._upto.numpy()

    def count(self, values: torch.Tensor) -> list[int] | torch.Tensor:
        """Per segment, the values below its band and those up to its top, interleaved: ints on a CPU, a device tensor elsewhere."""
        if self._values is not values:
            self._build(values)
        counts = []
        for start, end, previous, move in zip(self.bounds[:-1], self.bounds[1:], self.previous, self.moves):
            reach = 2.0 * move + REACH * previous
            low, high = (previous - reach, previous + reach) if previous > 0.0 else (-1.0, -1.0)  # no band: nothing in it
            if self.on_cpu:
                array, below, upto = (part[start:end] for part in self._arrays)
                counts += [np.count_nonzero(np.less(array, low, out=below)), np.count_nonzero(np.less_equal(array, high, out=upto))]
            else:
                segment = values[start:end]
                counts += [torch.lt(segment, low, out=self._below[start:end]).sum(), torch.le(segment, high, out=self._upto[start:end]).sum()]
        return counts if self.on_cpu else torch.stack(counts)

    def select(self, values: torch.Tensor, ks: list[int], counts: list[int] | torch.Tensor) -> list[float]:
        """The k-th smallest value of each segment (0 where k is 0), from ``count``'s counts for these values."""
        if isinstance(counts, torch.Tensor):
            counts = counts.tolist()
        band = self._band(values)
        selected, offset = [], 0
        for index, k in enumerate(ks):
            below, upto = counts[2 * index], counts[2 * index + 1]
            if k <= 0:
                value = 0.0
            elif below < k <= upto:
                value = float(np.partition(band[offset : offset + upto - below], k - below - 1)[k - below - 1])
            else:
                value = self._full(values, index, k)
            offset += upto - below
            if k > 0:
                self.moves[index] = abs(value - self.previous[index]) if self.previous[index] > 0.0 else 0.0
                self.previous[index] = value
            selected.append(value)
        return selected

    def _band(self, values: torch.Tensor) -> np.ndarray:
        """The values inside every segment's band, segment after segment, on the host."""
        if self.on_cpu:
            array, below, upto = self._arrays
            return array[np.logical_xor(below, upto, out=below)]  # below lies within upto
        return values[torch.logical_xor(self._below, self._upto, out=self._below)].cpu().numpy()

    def _full(self, values: torch.Tensor, index: int, k: int) -> float:
        self.full_searches += 1
        start, end = self.bounds[index], self.bounds[index + 1]
        if self.on_cpu:
            return float(np.partition(self._arrays[0][start:end], k - 1)[k - 1])
        return values[start:end].kthvalue(k).values.item()
