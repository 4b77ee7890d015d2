"""The GPU checks' thresholds and verdicts: pure functions from measured figures to PASS or FAIL.

Kept apart from the measuring (``device``, ``searches``) so that each
verdict is tested on the CPU with figures made up to sit either side of its
threshold.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

COUNTER_TOLERANCE = 0.10
IDLE_TOLERANCE = 0.15
SHARED_TOLERANCE = 0.10
PIPELINE_LIMIT = 1.05
BF16_STEP_LIMIT = 1.0
MIN_POLL_HZ = 10.0
RESUME_TOLERANCE = 1e-4  # cuDNN's convolutions may sum in another order after a reload
FEATHER_STEP_LIMIT = 1.5  # Feather's threshold search and masking on top of the dense step
STEADY_S, WARMUP_S = 12.0, 3.0
NAMES = {1: "NVML energy counter vs integrated power", 2: "idle baseline and short windows",
         3: "four trials sharing a GPU", 4: "CIFAR pipeline on the device", 5: "bf16 + channels-last ResNet-20",
         6: "Ray Tune search with gpu: auto", 7: "peak GPU memory per trial", 8: "save on CUDA, load, continue",
         9: "greentune resume of a killed GPU search", 10: "Feather's step against dense",
         11: "compiled trials in one worker"}


@dataclass
class Check:
    number: int
    name: str
    figure: str
    passed: bool

    def line(self) -> str:
        return f"[{'PASS' if self.passed else 'FAIL'}] {self.number}. {self.name}: {self.figure}"


def relative_gap(measured: float, reference: float) -> float:
    """|measured - reference| / |reference|; infinite when the reference is zero or either is not finite."""
    if not (math.isfinite(measured) and math.isfinite(reference)) or reference == 0:
        return math.inf
    return abs(measured - reference) / abs(reference)


def summary(checks: list[Check], name: str = "greentune doctor") -> tuple[str, int]:
    """The last line and the exit status: 0 only when every check ran and passed."""
    failed = [str(check.number) for check in checks if not check.passed]
    if not checks:
        return f"{name}: no check ran", 1
    if failed:
        return f"{name}: FAIL ({len(failed)} of {len(checks)} failed: {', '.join(failed)})", 1
    return f"{name}: PASS (all {len(checks)} checks)", 0


def busy_energy(samples: list[tuple[float, float, float]]) -> tuple[float, float]:
    """Device joules and seconds between the first and the last sample ``(time, joules, utilisation)`` with the GPU busy."""
    busy = [index for index, (_, _, utilisation) in enumerate(samples) if utilisation > 0]
    if not busy:
        return 0.0, 0.0
    first, last = samples[max(0, busy[0] - 1)], samples[busy[-1]]  # busy since some time after the sample before
    return last[1] - first[1], last[0] - first[0]


def accuracy_tolerance(first: list[float], second: list[float], floor: float = 0.01) -> float:
    """Three standard errors of the difference of two means over seeds, and never under ``floor``."""
    spread = sum(statistics.variance(values) / len(values) for values in (first, second) if len(values) > 1)
    return max(floor, 3 * math.sqrt(spread))


# --- the checks' verdicts, from measured figures ---


def counter_verdict(counter_j: float, integrated_j: float, poll_hz: float, seconds: float) -> Check:
    gap = relative_gap(counter_j, integrated_j)
    passed = gap <= COUNTER_TOLERANCE and poll_hz >= MIN_POLL_HZ and seconds >= 10.0
    figure = (f"counter {counter_j:.1f} J vs integrated power {integrated_j:.1f} J over {seconds:.1f} s, "
              f"gap {gap:.1%} (limit {COUNTER_TOLERANCE:.0%}), polled at {poll_hz:.1f} Hz (at least {MIN_POLL_HZ:g})")
    return Check(1, NAMES[1], figure, passed)


def idle_verdict(idle_power_w: float, rest_w: float, short: int, short_windows: int, long: int) -> Check:
    gap = relative_gap(idle_power_w, rest_w)
    passed = gap <= IDLE_TOLERANCE and short >= short_windows - 1 and long == 0
    figure = (f"idle_power_w {idle_power_w:.1f} W vs {rest_w:.1f} W at rest, gap {gap:.1%} (limit {IDLE_TOLERANCE:.0%}); "
              f"energy_short_windows {short} of {short_windows} one-step windows (the first also counts FLOPs), "
              f"{long} of the long ones")
    return Check(2, NAMES[2], figure, passed)


def shared_verdict(rows: list[dict], device_j: float, seconds: float, expected: int = 4) -> Check:
    sources = sorted({str(row.get("energy_source")) for row in rows})
    finished = [row for row in rows if row.get("status") == "finished"]
    gpu_only = all(str(row.get("energy_source", "")).split("+")[0].startswith("nvml-shared") for row in rows)
    trials_j = sum(float(row["energy_j"]) + float(row["eval_energy_j"]) for row in finished)
    gap = relative_gap(trials_j, device_j)
    with_rapl = any("rapl" in source for source in sources)
    passed = len(finished) == expected and gpu_only and not with_rapl and gap <= SHARED_TOLERANCE
    figure = (f"{len(finished)} of {expected} trials finished; their energy {trials_j:.1f} J vs device counter "
              f"{device_j:.1f} J over {seconds:.1f} s busy, gap {gap:.1%} (limit {SHARED_TOLERANCE:.0%}); "
              f"energy_source {', '.join(sources)}")
    if with_rapl:
        figure += " (RAPL's CPU package energy is in energy_j, so the GPU share cannot be compared)"
    return Check(3, NAMES[3], figure, passed)


def pipeline_verdict(ratios: list[float], pipeline_s: float, premade_s: float, on_device: bool) -> Check:
    ratio = statistics.median(ratios) if ratios else math.inf
    passed = ratio <= PIPELINE_LIMIT and on_device
    figure = (f"time per epoch {pipeline_s:.3f} s vs {premade_s:.3f} s on batches made in advance, "
              f"{ratio:.3f}x (median of {len(ratios)} interleaved epochs; limit {PIPELINE_LIMIT}x); "
              f"data and crop/flip {'on the device' if on_device else 'NOT on the device'}")
    return Check(4, NAMES[4], figure, passed)


def precision_verdict(step_ratio: float, fp32: list[float], bf16: list[float]) -> Check:
    gap = statistics.mean(bf16) - statistics.mean(fp32)
    tolerance = accuracy_tolerance(fp32, bf16)
    passed = step_ratio <= BF16_STEP_LIMIT and abs(gap) <= tolerance
    figure = (f"step time {step_ratio:.3f}x fp32 (limit {BF16_STEP_LIMIT}x); test accuracy {statistics.mean(bf16):.4f} "
              f"vs {statistics.mean(fp32):.4f} over {len(fp32)} seeds, difference {gap:+.4f} (noise {tolerance:.4f})")
    return Check(5, NAMES[5], figure, passed)


def search_verdict(rows: list[dict], expected: int = 8) -> Check:
    finished = sum(row.get("status") == "finished" for row in rows)
    measured = sum(str(row.get("energy_source", "")).startswith("nvml") for row in rows)
    sources = ", ".join(sorted({str(row.get("energy_source")) for row in rows})) or "none"
    passed = len(rows) == expected and finished == expected and measured == expected
    figure = f"{finished} of {expected} trials finished, {measured} with energy from NVML (energy_source {sources})"
    return Check(6, NAMES[6], figure, passed)


def memory_verdict(rows: list[dict], data_mb: float, expected: int = 8) -> Check:
    cuda = [row for row in rows if row.get("memory_source") == "cuda"]
    peaks = [float(row["peak_memory_mb"]) for row in cuda]
    enough = sum(peak >= data_mb for peak in peaks)
    passed = len(rows) == expected and len(cuda) == expected and enough == expected
    span = f"{min(peaks):.0f}-{max(peaks):.0f} MB" if peaks else "none"
    figure = (f"memory_source cuda on {len(cuda)} of {expected} trials; peak {span}, "
              f"{enough} at least the {data_mb:.0f} MB of data each holds on the device")
    return Check(7, NAMES[7], figure, passed)


def resume_verdict(uninterrupted: dict, resumed: dict) -> Check:
    """A trial saved on the GPU and loaded in a fresh one ends where the uninterrupted trial ends."""
    gap = relative_gap(resumed.get("test_loss", math.nan), uninterrupted.get("test_loss", math.nan))
    same_step = resumed.get("step") == uninterrupted.get("step")
    passed = same_step and gap <= RESUME_TOLERANCE
    figure = (f"resumed at step {resumed.get('step')} of {uninterrupted.get('step')}; test loss "
              f"{resumed.get('test_loss', math.nan):.6f} vs {uninterrupted.get('test_loss', math.nan):.6f} uninterrupted, "
              f"gap {gap:.2e} (limit {RESUME_TOLERANCE:.0e})")
    return Check(8, NAMES[8], figure, passed)


def resumed_search_verdict(rows: list[dict], expected: int, killed: bool) -> Check:
    """``greentune resume`` of a search killed mid-way finishes every trial, each metered by NVML."""
    finished = sum(row.get("status") == "finished" for row in rows)
    measured = sum(str(row.get("energy_source", "")).startswith("nvml") for row in rows)
    passed = killed and finished == expected and measured == expected
    figure = (f"{'killed after its first checkpoint' if killed else 'NOT killed: it ended before a checkpoint'}; "
              f"after resume {finished} of {expected} trials finished, {measured} metered by NVML")
    return Check(9, NAMES[9], figure, passed)


def feather_verdict(feather_s: float, dense_s: float) -> Check:
    ratio = feather_s / dense_s if dense_s > 0 else math.inf
    figure = (f"Feather step {feather_s * 1e3:.2f} ms vs dense {dense_s * 1e3:.2f} ms on ResNet-20, "
              f"{ratio:.2f}x (limit {FEATHER_STEP_LIMIT}x)")
    return Check(10, NAMES[10], figure, ratio <= FEATHER_STEP_LIMIT)


def compile_verdict(rows: list[dict], expected: int) -> Check:
    """Every trial of a compiled search in one worker finished compiled: none fell back to eager."""
    finished = sum(row.get("status") == "finished" for row in rows)
    reported = [row for row in rows if "compile_fallback" in row]
    fallbacks = sum(bool(row["compile_fallback"]) for row in reported)
    passed = finished == expected and len(reported) == expected and fallbacks == 0
    figure = (f"{finished} of {expected} trials finished in one worker; compile_fallback reported by "
              f"{len(reported)}, true for {fallbacks}")
    return Check(11, NAMES[11], figure, passed)
