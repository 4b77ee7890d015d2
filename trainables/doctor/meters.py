"""What this machine can measure: one line per meter, naming the ``energy_source`` a trial here would get.

Read with the same code the trials use (``CpuShare.find``, ``nvml_counters``),
so the doctor cannot promise a meter a trial would not get.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from greentune.trainables.energy import (
    DEFAULT_WATTS_PER_CORE,
    POWERCAP_ROOT,
    PROC_STAT,
    CpuShare,
    handles_by_uuid,
    nvml_counters,
)


def cpu_line(powercap_root: Path = POWERCAP_ROOT, stat: Path = PROC_STAT) -> str:
    share = CpuShare.find(powercap_root, stat)
    if share is not None:
        count = len(share.package.domains)
        return (f"cpu: rapl: {count} CPU package{'s' if count > 1 else ''} readable under {powercap_root}; "
                "a trial gets its share by CPU time (cpu_energy_source rapl)")
    domains = list(powercap_root.glob("*-rapl:*")) if powercap_root.is_dir() else []
    reason = "energy_uj is not readable (root-only on most kernels)" if domains else f"no RAPL domain under {powercap_root}"
    return (f"cpu: estimate: {reason}; a trial's CPU energy is its CPU time x {DEFAULT_WATTS_PER_CORE:g} W per core, "
            "a model labelled estimate")


def gpu_lines(uuids: list[str], nvml=None) -> list[str]:
    """One line per GPU CUDA sees (``uuids``, as torch prints them): the meter a trial on it would get, and MIG."""
    if not uuids:
        return ["gpu: none: CUDA sees no GPU; trials here train on the CPU and meter it alone"]
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return [f"gpu {index}: gpu-unmetered: pynvml is not installed" for index in range(len(uuids))]
    lines = []
    for index, uuid in enumerate(uuids):
        with warnings.catch_warnings():  # an unmetered GPU is this line, not a warning
            warnings.simplefilter("ignore")
            [counter] = nvml_counters(nvml, uuids=[uuid]) or [None]
        if counter is None:
            lines.append(f"gpu {index}: gpu-unmetered: NVML cannot open it (no driver, or not {uuid})")
            continue
        what = {"nvml": "an energy counter", "nvml-power": "power only, integrated over time",
                "gpu-unmetered": "neither an energy counter nor power"}[counter.source]
        [handle] = handles_by_uuid(nvml, [uuid])
        lines.append(f"gpu {index}: {counter.source}: {_name(nvml, handle)} has {what}; {_mig(nvml, handle)}")
    return lines


def _name(nvml, handle) -> str:
    name = nvml.nvmlDeviceGetName(handle)
    return name.decode() if isinstance(name, bytes) else name


def _mig(nvml, handle) -> str:
    try:
        if nvml.nvmlDeviceIsMigDeviceHandle(handle):
            return "a MIG instance"
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError:  # NotSupported: a GPU without MIG
        return "no MIG"
    return "MIG on" if current == nvml.NVML_DEVICE_MIG_ENABLE else "MIG off"


def shared_line(seen: bool) -> str:
    """How a GPU shared by trials is split here, from whether NVML listed a Ray worker's own PID."""
    if seen:
        return "gpu shared: nvml-shared: NVML lists a Ray worker's own PID, so a shared GPU is split by utilisation"
    return ("gpu shared: nvml-shared-fraction: NVML does not list a Ray worker's own PID (a container's PID "
            "namespace), so a shared GPU is split by Ray's GPU fraction")


def ray_worker_seen_by_nvml() -> bool:
    """Whether NVML lists the PID of a Ray worker holding a CUDA context, as a trial's would."""
    import ray

    ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        return ray.get(ray.remote(num_gpus=1)(_pid_listed).remote())
    finally:
        ray.shutdown()


def _pid_listed() -> bool:
    import os

    import pynvml
    import torch

    torch.ones(1, device="cuda")  # a CUDA context: from here on NVML lists this process
    pynvml.nvmlInit()
    [handle] = handles_by_uuid(pynvml, [str(torch.cuda.get_device_properties(0).uuid)])
    return os.getpid() in {process.pid for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
