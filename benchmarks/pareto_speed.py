"""Time to take the 2-objective front and its hypervolume: the analysis (moocore) vs a naive all-pairs method.

The analysis runs on 10^6 rows; the naive method compares every pair of rows
(vectorised with NumPy in blocks, so it is a fair naive baseline, not a
Python double loop) and then sweeps the front for the hypervolume, at a size
it can handle. Both are checked to agree at that size, and the time per row
is compared (the naive method's per-row time still grows with n, so the
ratio at 10^6 rows would be larger still). Medians over ``--repeats``.

    python benchmarks/pareto_speed.py [--rows 1000000] [--naive-rows 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from greentune.analysis import hypervolume, pareto_mask, reference_point
from record import record

OBJECTIVES = {"quality": "min", "energy_j": "min"}


def trials(rows: int, seed: int = 0) -> pd.DataFrame:
    """Results-like rows: energy and quality trade off, with noise, rounding ties and NaNs."""
    rng = np.random.default_rng(seed)
    energy = rng.uniform(1, 100, rows)
    quality = np.round(1 / energy + rng.exponential(0.05, rows), 4)
    quality[rng.random(rows) < 0.001] = np.nan  # diverged trials
    return pd.DataFrame({"quality": quality, "energy_j": energy})


def analysis_front(frame: pd.DataFrame, reference: dict) -> tuple[np.ndarray, float]:
    mask = pareto_mask(frame, OBJECTIVES)
    return mask.to_numpy(), hypervolume(frame[mask], OBJECTIVES, reference)


def naive_front(frame: pd.DataFrame, reference: dict, block: int = 2048) -> tuple[np.ndarray, float]:
    points = frame[list(OBJECTIVES)].to_numpy(dtype=float)
    usable = np.isfinite(points).all(axis=1)
    candidates = points[usable]
    dominated = np.zeros(len(candidates), dtype=bool)
    for start in range(0, len(candidates), block):
        rows = candidates[start : start + block]
        no_worse = (candidates[None, :, :] <= rows[:, None, :]).all(axis=2)
        better = (candidates[None, :, :] < rows[:, None, :]).any(axis=2)
        dominated[start : start + block] = (no_worse & better).any(axis=1)
    mask = np.zeros(len(points), dtype=bool)
    mask[np.flatnonzero(usable)[~dominated]] = True
    front = np.unique(points[mask], axis=0)  # sorted by quality, so energy falls
    bound = np.array([reference[column] for column in OBJECTIVES])
    volume, previous_energy = 0.0, bound[1]
    for quality, energy in front:
        if quality < bound[0] and energy < previous_energy:
            volume += (bound[0] - quality) * (previous_energy - energy)
            previous_energy = energy
    return mask, volume


def timed(method, frame: pd.DataFrame, reference: dict, repeats: int) -> tuple[float, tuple]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = method(frame, reference)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--naive-rows", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    large, small = trials(args.rows), trials(args.naive_rows, seed=1)
    large_seconds, (large_mask, large_volume) = timed(analysis_front, large, reference_point(large, OBJECTIVES), args.repeats)
    reference = reference_point(small, OBJECTIVES)
    small_seconds, (small_mask, small_volume) = timed(analysis_front, small, reference, args.repeats)
    naive_seconds, (naive_mask, naive_volume) = timed(naive_front, small, reference, args.repeats)
    assert (naive_mask == small_mask).all() and np.isclose(naive_volume, small_volume), "the methods disagree"

    def per_row(seconds: float, rows: int) -> str:
        return f"{1e9 * seconds / rows:10.1f} ns/row"

    print(f"2 objectives, front + hypervolume, medians of {args.repeats}")
    print(f"analysis (moocore) {args.rows:>9} rows: {large_seconds:8.3f} s {per_row(large_seconds, args.rows)}  front {large_mask.sum()} rows, hypervolume {large_volume:.6g}")
    print(f"analysis (moocore) {args.naive_rows:>9} rows: {small_seconds:8.3f} s {per_row(small_seconds, args.naive_rows)}")
    print(f"naive all-pairs    {args.naive_rows:>9} rows: {naive_seconds:8.3f} s {per_row(naive_seconds, args.naive_rows)}  (same front and hypervolume)")
    print(f"naive / analysis per row: {naive_seconds / args.naive_rows / (large_seconds / args.rows):.0f}x "
          f"(naive at {args.naive_rows} rows vs analysis at {args.rows}); at equal size: {naive_seconds / small_seconds:.0f}x")
    record(
        "pareto_speed",
        [
            ("naive / analysis, time per row", f"{naive_seconds / args.naive_rows / (large_seconds / args.rows):.0f}×"),
            (f"analysis (moocore), {args.rows} rows", f"{large_seconds:.3g} s"),
            (f"naive all-pairs, {args.naive_rows} rows", f"{naive_seconds:.3g} s"),
        ],
        what=f"2-objective front + hypervolume of {args.rows} rows (moocore) vs a naive all-pairs method at "
        f"{args.naive_rows} rows, per row; medians of {args.repeats}",
    )


if __name__ == "__main__":
    main()
