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

On a CPU, NumPy does it all on host floats. On an accelerator the values,
bands and k-th values stay on the device; the host reads the counts, once
a step (with anything else the caller reads then: ASL+ its gradient), to
know the band's size and whether a k-th value left it.
"""

from __future__ import annotations

import numpy as np
import torch

REACH = 0.01  # the band's half-width beyond twice the last move, relative to the last value


class NearbySelection:
    """Per segment ``[bounds[i], bounds[i + 1])`` of a flat buffer, its k-th smallest value, step after step.

    ``count`` then ``select``, with the same values: what lies below and up to
    each band, then the k-th values. The last values and moves are floats on
    a CPU and a tensor on the values' device elsewhere; the comparison
    buffers are not pickled, and are rebuilt on first use.
    """

    def __init__(self, bounds: list[int]):
        self.bounds = list(bounds)
        self.previous = [0.0] * (len(bounds) - 1)  # 0: none yet, so the whole segment is searched
        self.moves = [0.0] * (len(bounds) - 1)
        self.full_searches = 0  # how often a k-th value had left its band
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
            # Lists, also where a checkpoint from an accelerator resumes; tensors on the device elsewhere.
            self.previous, self.moves = (state.tolist() if isinstance(state, torch.Tensor) else state for state in (self.previous, self.moves))
        else:
            self.previous, self.moves = (torch.as_tensor(state, dtype=values.dtype, device=values.device) for state in (self.previous, self.moves))

    def count(self, values: torch.Tensor) -> list[int] | torch.Tensor:
        """Per segment, the values below its band and those up to its top, interleaved.

        Ints on a CPU; elsewhere a device tensor, which the caller may read with what else it reads.
        """
        if self._values is not values:
            self._build(values)
        segments = list(zip(self.bounds[:-1], self.bounds[1:]))
        if self.on_cpu:
            counts = []
            for (start, end), previous, move in zip(segments, self.previous, self.moves):
                reach = 2.0 * move + REACH * previous
                low, high = (previous - reach, previous + reach) if previous > 0.0 else (-1.0, -1.0)  # no band: nothing in it
                array, below, upto = (part[start:end] for part in self._arrays)
                np.less(array, low, out=below)
                np.less_equal(array, high, out=upto)
                counts += [np.count_nonzero(below), np.count_nonzero(upto)]
            return counts
        reach = 2.0 * self.moves + REACH * self.previous
        lows = torch.where(self.previous > 0.0, self.previous - reach, -1.0)
        highs = torch.where(self.previous > 0.0, self.previous + reach, -1.0)
        counts = []
        for (start, end), low, high in zip(segments, lows.unbind(), highs.unbind()):
            segment, below, upto = values[start:end], self._below[start:end], self._upto[start:end]
            counts += [torch.lt(segment, low, out=below).sum(), torch.le(segment, high, out=upto).sum()]
        return torch.stack(counts)

    def select(self, values: torch.Tensor, ks: list[int], counts: list[int] | torch.Tensor) -> list[float] | list[torch.Tensor]:
        """The k-th smallest value of each segment (0 where k is 0), from ``count``'s counts for these values.

        Floats on a CPU, 0-dim device tensors elsewhere.
        """
        if isinstance(counts, torch.Tensor):
            counts = counts.tolist()
        insides = [upto - below for below, upto in zip(counts[::2], counts[1::2])]
        band, whole = self._band(values, sum(insides)), self._arrays[0] if self.on_cpu else values
        selected, offset = [], 0
        for (start, end), below, inside, k in zip(zip(self.bounds[:-1], self.bounds[1:]), counts[::2], insides, ks):
            if k <= 0:
                selected.append(0.0 if self.on_cpu else values.new_zeros(()))
            elif below < k <= below + inside:
                selected.append(self._kth(band[offset : offset + inside], k - below))
            else:
                self.full_searches += 1
                selected.append(self._kth(whole[start:end], k))
            offset += inside
        self._follow(selected, ks)
        return selected

    def _band(self, values: torch.Tensor, size: int) -> np.ndarray | torch.Tensor:
        """The values inside every segment's band, segment after segment; ``size`` of them."""
        if self.on_cpu:
            array, below, upto = self._arrays
            return array[np.logical_xor(below, upto, out=below)]  # below lies within upto
        inside = torch.logical_xor(self._below, self._upto, out=self._below)
        return values[torch.nonzero_static(inside, size=size).view(-1)]  # its size known, so no wait for the device

    def _kth(self, part: np.ndarray | torch.Tensor, k: int) -> float | torch.Tensor:
        if self.on_cpu:
            return float(np.partition(part, k - 1)[k - 1])
        return part.kthvalue(k).values

    def _follow(self, selected: list, ks: list[int]) -> None:
        """The bands' next centres and moves; where k was 0 there is no value to follow, and the band stays."""
        if self.on_cpu:
            for index, (value, k) in enumerate(zip(selected, ks)):
                previous = self.previous[index]
                value = value if k > 0 else previous
                self.moves[index] = abs(value - previous) if previous > 0.0 else 0.0
                self.previous[index] = value
            return
        values = torch.stack([value if k > 0 else previous for value, previous, k in zip(selected, self.previous.unbind(), ks)])
        self.moves = torch.where(self.previous > 0.0, (values - self.previous).abs(), 0.0)
        self.previous = values
