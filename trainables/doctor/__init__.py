"""``greentune doctor``: what this machine can measure, and, with a GPU, proof that greentune's GPU path holds on it.

First one line per meter (``meters``): the CPU's (``rapl`` or
``estimate``, and why), each GPU's (``nvml``, ``nvml-power`` or
``gpu-unmetered``, and MIG), and how a GPU shared by trials would be split
(whether NVML lists a Ray worker's own PID). Without a GPU that is all, and
it exits 0.

With a GPU it then runs the checks, each comparing one measured figure with
a threshold (``verdicts``), on the first GPU CUDA sees:

1. the NVML total-energy counter (``nvml``) against the polled power
   integral (``nvml-power``, polled at 20 Hz; the rate achieved is
   measured) over at least 10 s of steady training: within 10%;
2. a trial's ``idle_power_w`` within 15% of NVML's median power at rest,
   and ``energy_short_windows`` counting one-step windows and not long ones;
3. four trials packed on one GPU (``resources: {gpu: 0.25}``) through
   ``greentune run``: the sum of their shared energies within 10% of the
   device counter over the period the GPU was busy;
4. the CIFAR pipeline (data and crop/flip on the device) against the same
   loop on batches made in advance: time per epoch within 1.05x;
5. bf16 + channels-last ResNet-20 against fp32: step time no slower, test
   accuracy within noise (3 standard errors over seeds, at least one point);
6. a search of 8 short trials with ``gpu: auto``: every trial finished,
   every ``energy_source`` ``nvml...``;
7. the same trials' peak memory: ``memory_source`` ``cuda`` and a peak no
   smaller than the data each holds on the device;
8. a trial saved on CUDA half-way and loaded into a fresh trial ends where
   the uninterrupted one does;
9. ``greentune resume`` of a search killed after its first checkpoint
   finishes every trial, metered by NVML;
10. Feather's training step against the dense one on ResNet-20;
11. ten ``compile: true`` trials in one reused worker, none falling back
    to eager (``compile_fallback``).

The searches run through the command line in their own processes; their
results, and the traceback of any check that raised, stay in the work folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from .checks import parse_checks, run_checks
from .meters import cpu_line, gpu_lines, ray_worker_seen_by_nvml, shared_line
from .verdicts import NAMES, Check, summary

__all__ = ["NAMES", "Check", "diagnose", "parse_checks", "run_checks", "summary"]


def diagnose(chosen: list[int] | None = None, workdir: Path | None = None, report: Callable[[str], None] = print) -> int:
    """Report the meters, then, with a GPU, run the ``chosen`` checks (all by default); the exit status."""
    import torch

    uuids = [str(torch.cuda.get_device_properties(index).uuid) for index in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    report(cpu_line())
    for line in gpu_lines(uuids):
        report(line)
    if not uuids:
        return 0
    try:
        report(shared_line(ray_worker_seen_by_nvml()))
    except Exception as error:  # Ray could not start a GPU worker here: say so, and go on to the checks
        report(f"gpu shared: unknown: a Ray worker with the GPU could not be started to look ({type(error).__name__}: {error})")
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="greentune-doctor-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report(f"checks on {torch.cuda.get_device_name(0)}; their results stay in {workdir}")
    line, status = summary(run_checks(chosen or sorted(NAMES), workdir, report))
    report(line)
    return status
