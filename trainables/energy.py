"""Energy counters for one trial, each labelled with where its joules come from.

The GPU's counters (``nvml``, ``nvml-power``, ``nvml-shared``...) are in
``trainables.gpu_energy``. The CPU's part is one of:

- ``rapl``: this process's share of the CPU packages' energy
  (``/sys/class/powercap``, where readable): each poll's package energy
  times this process's CPU time over the CPUs' busy time
  (``/proc/stat``). Trials sharing a node thus share its packages' joules,
  and a GPU trial counts its own part of the CPU once, not the whole package.
- ``estimate``: this process's CPU time times a watts-per-core figure. It is
  a model, not a measurement, and is labelled so everywhere it appears.

A meter adds up its counters; its ``source`` joins their labels with ``+``
(``nvml+estimate``), so a total never hides that part of it is estimated,
and it reads its CPU part on its own (``cpu_energy_j``). Counters are read
at window edges, and those that must be read often (integrated power, a
shared GPU's split, RAPL's wrapping counter) on the meter's one polling
thread, never inside the training step.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Protocol

from .gpu_energy import (
    NvmlEnergy,
    NvmlPowerPoller,
    NvmlSharedEnergy,
    Sampled,
    Unmetered,
    handles_by_uuid,
    nvml_counters,
    visible_gpus,
)

__all__ = ["CpuTimeEstimate", "Rapl", "CpuShare", "EnergyMeter", "open_meter", "NvmlEnergy", "NvmlPowerPoller",
           "NvmlSharedEnergy", "Unmetered", "handles_by_uuid", "nvml_counters", "visible_gpus"]

DEFAULT_WATTS_PER_CORE = 10.0
POWERCAP_ROOT = Path("/sys/class/powercap")
PROC_STAT = Path("/proc/stat")


class Counter(Protocol):
    source: str
    resolution_s: float  # windows shorter than this are below the counter's update period
    cpu: bool  # the CPU's part of the trial's energy, rather than a GPU's

    def joules(self) -> float:
        """Energy since an arbitrary origin; only differences are meaningful."""

    def idle_watts(self) -> float:
        """Power drawn now, before training starts: the baseline analysis may subtract."""

    def close(self) -> None: ...


class CpuTimeEstimate:
    """CPU time of this process (all threads) times an assumed power per core."""

    source = "estimate"
    resolution_s = 0.01  # the kernel accounts CPU time in scheduler ticks
    cpu = True

    def __init__(self, watts_per_core: float = DEFAULT_WATTS_PER_CORE):
        if watts_per_core <= 0:
            raise ValueError(f"watts_per_core must be positive, got {watts_per_core}")
        self.watts_per_core = watts_per_core

    def joules(self) -> float:
        return time.process_time() * self.watts_per_core

    def idle_watts(self) -> float:
        return 0.0  # an idle process uses no CPU time

    def close(self) -> None:
        pass


class Rapl:
    """Sum of the CPU package domains' ``energy_uj``, unwrapping counter overflow: what ``CpuShare`` splits."""

    source = "rapl"

    def __init__(self, domains: list[Path]):
        self.domains = domains
        self._ranges = [int((domain / "max_energy_range_uj").read_text()) for domain in domains]
        self._last = [self._raw(domain) for domain in domains]
        self._total_uj = 0

    @staticmethod
    def _raw(domain: Path) -> int:
        return int((domain / "energy_uj").read_text())

    @classmethod
    def find(cls, root: Path = POWERCAP_ROOT) -> "Rapl | None":
        """The package domains under ``root``, or None where none is readable."""
        domains = sorted(path for path in root.glob("*-rapl:*") if path.name.count(":") == 1)
        try:
            return cls(domains) if domains else None
        except (OSError, ValueError):  # energy_uj is root-only on most kernels
            return None

    def joules(self) -> float:
        for index, domain in enumerate(self.domains):
            raw = self._raw(domain)
            delta = raw - self._last[index]
            if delta < 0:  # the counter wrapped around
                delta += self._ranges[index]
            self._total_uj += delta
            self._last[index] = raw
        return self._total_uj / 1e6


def busy_seconds(stat: Path = PROC_STAT) -> float:
    """CPU time all CPUs have spent on work since boot (``/proc/stat``: user, nice, system, irq, softirq, steal)."""
    fields = stat.read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(field) for field in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuShare(Sampled):
    """This process's share of the CPU packages' energy: package joules times its CPU time over the CPUs' busy time.

    The shares of all the processes on a node add up to the packages' energy
    while any is busy. ``/proc/stat`` counts in scheduler ticks, so an
    interval is folded in only once it holds ``MIN_BUSY_S`` of busy time; a
    shorter one waits for the next read, and windows under ``interval_s`` are
    flagged as short. Polled every ``interval_s``, the package counter cannot
    wrap twice unseen.
    """

    source = "rapl"
    cpu = True
    MIN_BUSY_S = 0.2

    def __init__(self, package: Rapl, stat: Path = PROC_STAT, clock=time.process_time, interval_s: float = 1.0):
        self.package, self.stat, self.clock = package, stat, clock
        self.interval_s = self.resolution_s = interval_s
        self._start_total()
        self._last = self._read()

    @classmethod
    def find(cls, root: Path = POWERCAP_ROOT, stat: Path = PROC_STAT) -> "CpuShare | None":
        """The share of the packages under ``root``, or None where RAPL or ``stat`` is unreadable."""
        package = Rapl.find(root)
        try:
            return cls(package, stat) if package else None
        except (OSError, ValueError):
            return None

    def _read(self) -> tuple[float, float, float]:
        return self.package.joules(), busy_seconds(self.stat), self.clock()

    def sample(self) -> None:
        with self._lock:
            now = self._read()
            package_j, busy_s, own_s = (after - before for before, after in zip(self._last, now))
            if busy_s < self.MIN_BUSY_S:  # the interval stays open until the next read
                return
            self._total += package_j * min(1.0, own_s / busy_s)
            self._last = now

    def idle_watts(self) -> float:
        return 0.0  # an idle process's share of the packages is nothing


class EnergyMeter:
    """The sum of several counters, read as cumulative joules, with one thread polling those that need it."""

    def __init__(self, counters: list[Counter]):
        if not counters:
            raise ValueError("an energy meter needs at least one counter")
        self.counters = counters
        self.resolution_s = max(counter.resolution_s for counter in counters)
        self._polled = [counter for counter in counters if getattr(counter, "interval_s", None)]
        self._stop = threading.Event()
        self._thread = None
        if self._polled:
            self._thread = threading.Thread(target=self._poll, name="greentune-energy", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(min(counter.interval_s for counter in self._polled)):
            for counter in self._polled:
                counter.sample()

    @property
    def source(self) -> str:
        return "+".join(counter.source for counter in self.counters)

    @property
    def cpu_source(self) -> str:
        """The label of the CPU's part, or ``none`` where the meter has no CPU counter."""
        return "+".join(counter.source for counter in self.counters if getattr(counter, "cpu", False)) or "none"

    def read(self) -> tuple[float, float]:
        """Joules of all counters and of the CPU's part alone, read once each."""
        readings = [(counter.joules(), getattr(counter, "cpu", False)) for counter in self.counters]
        return sum(joules for joules, _ in readings), sum(joules for joules, cpu in readings if cpu)

    def joules(self) -> float:
        return self.read()[0]

    def idle_watts(self) -> float:
        return sum(counter.idle_watts() for counter in self.counters)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for counter in self.counters:
            counter.close()


def open_meter(
    use_gpu: bool,
    watts_per_core: float = DEFAULT_WATTS_PER_CORE,
    nvml=None,
    powercap_root: Path = POWERCAP_ROOT,
    shared_fraction: float | None = None,
    gpu_uuids: list[str] | None = None,
) -> EnergyMeter:
    """The best counters this machine offers: NVML for the trial's GPUs, its share of RAPL or an estimate for the CPU.

    ``gpu_uuids``: the CUDA UUIDs of the GPUs the trial trains on (else
    ``CUDA_VISIBLE_DEVICES`` says which); ``shared_fraction``: its share of
    a GPU packed with other trials. A GPU trial whose GPU NVML cannot meter
    gets a ``gpu-unmetered`` part, never a silent CPU-only figure.
    """
    counters: list[Counter] = []
    if use_gpu:
        counters += _gpu_counters(nvml, shared_fraction, gpu_uuids)
    counters.append(CpuShare.find(powercap_root) or CpuTimeEstimate(watts_per_core))
    return EnergyMeter(counters)


def _gpu_counters(nvml, shared_fraction: float | None, gpu_uuids: list[str] | None) -> list[Counter]:
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return [Unmetered("pynvml is not installed")]
    return nvml_counters(nvml, shared_fraction=shared_fraction, uuids=gpu_uuids) or [
        Unmetered("NVML found no driver or none of the trial's GPUs")
    ]
