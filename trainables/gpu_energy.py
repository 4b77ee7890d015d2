"""NVML counters for the GPUs a trial trains on, and how a shared GPU's energy is split.

- ``nvml``: the GPU's own total-energy counter.
- ``nvml-power``: where a GPU has no energy counter (pre-Volta), its power
  draw polled and integrated over time.
- ``nvml-shared``: a GPU shared with other trials (a fractional Ray GPU).
  The device counter covers every process on it, so each poll's energy is
  split by the processes' sampled SM utilisation: a trial idle while others
  work gets none of it. While no process works, the device's energy is
  split by Ray's GPU fraction. Its idle power is split the same way.
- ``nvml-shared-fraction``: as above where NVML cannot tell this process
  from the others (a container lists host PIDs, or no processes at all):
  every poll is split by Ray's GPU fraction. The shares of the trials
  packed on a device add up to the device where their fractions fill it.
- ``gpu-unmetered``: a CUDA trial whose GPU NVML cannot meter (no driver
  library, MIG or vGPU where neither energy nor power is supported). It
  counts no joules and says so, rather than passing the CPU's figure off
  as the trial's.

GPUs are found by UUID where the trial knows them (CUDA's and NVML's
indices differ on nodes with mixed GPUs), else by ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections import Counter as Tally


def visible_gpus(nvml, environ=os.environ) -> list:
    """NVML handles for the GPUs this process may use, in CUDA's numbering."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [nvml.nvmlDeviceGetHandleByIndex(index) for index in range(nvml.nvmlDeviceGetCount())]
    handles = []
    for entry in (item.strip() for item in visible.split(",")):
        if not entry:
            continue
        if entry.isdigit():
            handles.append(nvml.nvmlDeviceGetHandleByIndex(int(entry)))
        elif entry.startswith(("GPU-", "MIG-")):
            handles.append(nvml.nvmlDeviceGetHandleByUUID(entry))
        else:  # CUDA stops at the first entry it cannot parse
            break
    return handles


def handles_by_uuid(nvml, uuids: list[str]) -> list:
    """NVML handles for CUDA's device UUIDs (as ``torch.cuda.get_device_properties(i).uuid`` prints them).

    CUDA prints a UUID bare; NVML names a whole GPU ``GPU-<uuid>`` and a MIG
    instance ``MIG-<uuid>``.
    """
    handles = []
    for uuid in uuids:
        if uuid.startswith(("GPU-", "MIG-")):  # already in NVML's form
            handles.append(nvml.nvmlDeviceGetHandleByUUID(uuid))
            continue
        try:
            handles.append(nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}"))
        except nvml.NVMLError:
            handles.append(nvml.nvmlDeviceGetHandleByUUID(f"MIG-{uuid}"))
    return handles


def power_now_w(nvml, handle) -> float:
    """The GPU's power now: NVML's instant reading where it has one, as ``nvmlDeviceGetPowerUsage`` is a
    one-second average on Ampere and newer, and an idle baseline read just after a data upload would
    carry the upload."""
    field = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)
    if field is not None:
        try:
            [reading] = nvml.nvmlDeviceGetFieldValues(handle, [field])
            if reading.nvmlReturn == nvml.NVML_SUCCESS:
                return reading.value.uiVal / 1e3
        except nvml.NVMLError:  # a driver older than the field
            pass
    return nvml.nvmlDeviceGetPowerUsage(handle) / 1e3


class Unmetered:
    """A GPU that NVML cannot meter: no joules, a label that says so, and the reason as a warning."""

    source = "gpu-unmetered"
    resolution_s = 0.0
    cpu = False

    def __init__(self, reason: str):
        self.reason = reason
        warnings.warn(f"greentune: this trial's GPU energy is not metered ({reason}); its energy_j is the CPU's alone")

    def joules(self) -> float:
        return 0.0

    def idle_watts(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


class NvmlEnergy:
    """The GPUs' total-energy counters (millijoules since driver load)."""

    source = "nvml"
    resolution_s = 0.1  # the counter advances about every 100 ms or faster
    cpu = False

    def __init__(self, nvml, handles: list):
        self.nvml, self.handles = nvml, handles

    def joules(self) -> float:
        return sum(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle) for handle in self.handles) / 1e3

    def idle_watts(self) -> float:
        return sum(power_now_w(self.nvml, handle) for handle in self.handles)

    def close(self) -> None:
        pass


class Sampled:
    """A counter that adds to ``_total`` at every ``sample``: the meter's polling thread calls it every ``interval_s``."""

    interval_s: float

    def _start_total(self) -> None:
        self._lock = threading.Lock()
        self._total = 0.0

    def sample(self) -> None:
        raise NotImplementedError

    def joules(self) -> float:
        self.sample()
        with self._lock:
            return self._total

    def close(self) -> None:
        pass


class NvmlSharedEnergy(Sampled, NvmlEnergy):
    """This process's share of GPUs that other processes use too (see the module's docstring).

    Until NVML first lists this process (its CUDA context is still being
    made), polls are split by Ray's fraction; a process NVML never lists is
    labelled ``nvml-shared-fraction``.
    """

    def __init__(self, nvml, handles: list, fraction: float = 1.0, interval_s: float = 0.2, pid: int | None = None):
        super().__init__(nvml, handles)
        if not 0 < fraction <= 1:
            raise ValueError(f"a shared GPU's fraction must be in (0, 1], got {fraction}")
        self.fraction, self.interval_s = fraction, interval_s
        self.pid = os.getpid() if pid is None else pid
        self._seen = False  # whether NVML has listed this process
        self._start_total()
        self._last_energy = [self._energy(handle) for handle in handles]
        self._last_seen = [0] * len(handles)

    @property
    def source(self) -> str:
        return "nvml-shared" if self._seen else "nvml-shared-fraction"

    def _energy(self, handle) -> float:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3

    def _share(self, index: int, handle) -> float:
        nvml = self.nvml
        try:
            samples = nvml.nvmlDeviceGetProcessUtilization(handle, self._last_seen[index])
        except nvml.NVMLError:  # NotFound: no process was busy since the last poll
            samples = []
        if samples:
            self._last_seen[index] = max(sample.timeStamp for sample in samples)
        busy = Tally()
        for sample in samples:
            busy[sample.pid] += sample.smUtil
        try:
            listed = {process.pid for process in nvml.nvmlDeviceGetComputeRunningProcesses(handle)}
        except nvml.NVMLError:
            listed = set()
        if self.pid not in listed and self.pid not in busy:  # NVML lists another PID namespace, or nothing
            return self.fraction
        self._seen = True
        total = sum(busy.values())
        return busy[self.pid] / total if total > 0 else self.fraction

    def sample(self) -> None:
        with self._lock:
            for index, handle in enumerate(self.handles):
                energy = self._energy(handle)
                self._total += (energy - self._last_energy[index]) * self._share(index, handle)
                self._last_energy[index] = energy

    def idle_watts(self) -> float:
        """The device's power now, split as its energy is: none of the other trials' load while they work."""
        with self._lock:
            shares = [self._share(index, handle) for index, handle in enumerate(self.handles)]
        return sum(power_now_w(self.nvml, handle) * share for handle, share in zip(self.handles, shares))


class NvmlPowerPoller(Sampled):
    """Integrates polled power draw where a GPU has no energy counter."""

    source = "nvml-power"
    cpu = False

    def __init__(self, nvml, handles: list, interval_s: float = 0.05):
        self.nvml, self.handles, self.interval_s = nvml, handles, interval_s
        self.resolution_s = interval_s
        self._start_total()
        self._last_time, self._last_watts = time.perf_counter(), self._watts()

    def _watts(self) -> float:
        return sum(self.nvml.nvmlDeviceGetPowerUsage(handle) for handle in self.handles) / 1e3

    def sample(self) -> None:
        now, watts = time.perf_counter(), self._watts()
        with self._lock:
            self._total += 0.5 * (watts + self._last_watts) * (now - self._last_time)
            self._last_time, self._last_watts = now, watts

    def idle_watts(self) -> float:
        return self._watts()


def _supports(nvml, read, handles: list) -> bool:
    try:
        for handle in handles:
            read(handle)
    except nvml.NVMLError:  # NotSupported: no energy counter before Volta; neither on MIG or vGPU
        return False
    return True


def nvml_counters(nvml, environ=os.environ, shared_fraction: float | None = None, uuids: list[str] | None = None) -> list:
    """The counter for the trial's GPUs (by ``uuids``, else those ``environ`` makes visible), or none where NVML has none.

    ``shared_fraction``: the trial's share of a GPU it shares with others (Ray's fractional GPU).
    """
    try:
        nvml.nvmlInit()
        handles = handles_by_uuid(nvml, uuids) if uuids is not None else visible_gpus(nvml, environ)
    except nvml.NVMLError:
        return []
    if not handles:
        return []
    if _supports(nvml, nvml.nvmlDeviceGetTotalEnergyConsumption, handles):
        if shared_fraction is not None:
            return [NvmlSharedEnergy(nvml, handles, shared_fraction)]
        return [NvmlEnergy(nvml, handles)]
    if _supports(nvml, nvml.nvmlDeviceGetPowerUsage, handles):
        return [NvmlPowerPoller(nvml, handles)]
    return [Unmetered("NVML supports neither an energy counter nor power on this GPU, as on MIG and vGPU")]
