"""The GPU checks that measure in this process: counters, idle baseline, data pipeline, precision, checkpoints, Feather.

Each returns a ``Check`` from ``verdicts``; the searches' checks are in ``searches``.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import tempfile
import threading
import time
from pathlib import Path

from .verdicts import (
    STEADY_S,
    WARMUP_S,
    Check,
    counter_verdict,
    feather_verdict,
    idle_verdict,
    pipeline_verdict,
    precision_verdict,
    resume_verdict,
)

# ResNet-20 (He et al.'s widths) on 32x32 images of 10 noisy class patterns; noise 6 at 32 pixels
# is as hard as the CPU presets' noise 3 at 16.
IMAGES = {"size": 32, "width": 16, "noise": 6.0}
MODEL = "gated_resnet20"  # with no technique, a plain ResNet-20


class DeviceTrace:
    """The device's energy counter, power and utilisation, polled in a thread every ``interval_s``."""

    def __init__(self, nvml, handle, interval_s: float = 0.1):
        self.nvml, self.handle, self.interval_s = nvml, handle, interval_s
        self.samples: list[tuple[float, float, float]] = []  # time, joules, utilisation (%)
        self.watts: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        nvml, handle = self.nvml, self.handle
        while not self._stop.is_set():
            joules = nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3
            self.samples.append((time.perf_counter(), joules, float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)))
            self.watts.append(nvml.nvmlDeviceGetPowerUsage(handle) / 1e3)
            self._stop.wait(self.interval_s)


class CountingNvml:
    """pynvml, counting the power readings, so the polling rate is measured rather than assumed."""

    def __init__(self, nvml):
        self._nvml, self.power_readings = nvml, 0

    def nvmlDeviceGetPowerUsage(self, handle):
        self.power_readings += 1
        return self._nvml.nvmlDeviceGetPowerUsage(handle)

    def __getattr__(self, name):
        return getattr(self._nvml, name)


def images_task(**options):
    from greentune.trainables.tasks import create_task

    return create_task("synthetic_images", **IMAGES, **options)


def in_steps(train: dict) -> dict:
    """``train`` with the task's default epochs dropped where it counts steps: the images task trains 10 epochs
    unless told otherwise, whatever ``steps`` says."""
    return {"epochs": None, **train} if "steps" in train else train


def training(task, device, meter, seed=0, techniques=("baseline",), parameters=None, **train):
    from greentune import techniques as registry
    from greentune.trainables.loop import Training

    settings = task.defaults.override(in_steps(train))
    technique = registry.create(list(techniques), parameters or {})
    return Training(task, technique, settings, model=MODEL, seed=seed, meter=meter, device=device)


def gpu_meter(nvml):
    from greentune.trainables.energy import EnergyMeter, nvml_counters

    return EnergyMeter(nvml_counters(nvml))  # the GPU's counter alone, no CPU part




def check_idle(nvml, handle, device) -> Check:
    import torch

    torch.ones(1, device=device)  # a context exists before "at rest" is read, as in a trial
    time.sleep(2.0)
    with DeviceTrace(nvml, handle) as trace:
        time.sleep(3.0)
    rest_w = statistics.median(trace.watts)
    task = images_task(n_train=2000, n_test=500)
    short_run = training(task, device, gpu_meter(nvml), steps=10, eval_every=1)
    idle_w = short_run.idle_power_w
    short = list(short_run.evaluations())[-1]["energy_short_windows"]
    short_run.meter.close()
    long_run = training(images_task(n_train=20000, n_test=500), device, gpu_meter(nvml), steps=400, eval_every=200)
    long = list(long_run.evaluations())[-1]["energy_short_windows"]
    long_run.meter.close()
    return idle_verdict(idle_w, rest_w, short, 10, long)


def check_counter(nvml, handle, device) -> Check:
    from greentune.trainables.energy import EnergyMeter, NvmlEnergy, NvmlPowerPoller

    run = training(images_task(n_train=50000, n_test=500), device, gpu_meter(nvml), steps=100_000, eval_every=200)
    counter, counting = NvmlEnergy(nvml, [handle]), CountingNvml(nvml)
    poller = EnergyMeter([NvmlPowerPoller(counting, [handle], interval_s=0.05)])  # the meter's thread polls it
    begun, start = time.perf_counter(), None
    try:
        for _ in run.evaluations():  # readings at window edges, where the loop has synchronised the device
            now = time.perf_counter()
            if start is None and now - begun >= WARMUP_S:
                start = (now, counter.joules(), poller.joules(), counting.power_readings)
            elif start is not None and now - start[0] >= STEADY_S:
                break
        end = (time.perf_counter(), counter.joules(), poller.joules(), counting.power_readings)
    finally:
        poller.close()
        run.meter.close()
    seconds = end[0] - start[0]
    return counter_verdict(end[1] - start[1], end[2] - start[2], (end[3] - start[3]) / seconds, seconds)


class PremadeBatches:
    """A task's training batches cut and augmented in advance on the device: the loop with no data work left."""

    def __init__(self, data):
        self.batches = [data.take(data.next_indices()) for _ in range(len(data))]
        self.position = 0

    def __len__(self) -> int:
        return len(self.batches)

    def next_indices(self) -> int:
        self.position += 1
        return (self.position - 1) % len(self.batches)

    def take(self, index: int):
        return self.batches[index]

    def skip(self) -> None:
        self.position += 1

    def sample(self, size, generator):
        inputs, targets = self.batches[0]
        return inputs[:size], targets[:size]

    def state_dict(self) -> dict:
        return {"position": self.position}


def check_pipeline(nvml, handle, device) -> Check:
    from greentune.trainables.tasks.synthetic_images import SyntheticImages

    class Premade(SyntheticImages):
        def splits(self, device, batch_size, seed):
            train, held_out = super().splits(device, batch_size, seed)
            return PremadeBatches(train), held_out

    options, epochs = {"n_train": 50000, "n_test": 500}, 4
    steps = math.ceil(options["n_train"] / 128)
    settings = {"epochs": epochs, "eval_every": steps, "batch_size": 128}
    pipeline = training(images_task(**options), device, gpu_meter(nvml), **settings)
    premade = training(Premade(**IMAGES, **options), device, gpu_meter(nvml), **settings)
    data = pipeline.train_data
    raw = data.inputs[:8]
    on_device = data.inputs.is_cuda and data.augment is not None and data.augment(raw, data.generator).is_cuda
    runs = {"pipeline": (pipeline, pipeline.evaluations()), "premade": (premade, premade.evaluations())}
    times = {name: [] for name in runs}
    for _ in range(epochs):  # interleaved, so both meet the same machine; the first epoch warms up
        for name, (run, epochs_run) in runs.items():
            before = run.totals["time_s"]
            next(epochs_run)
            times[name].append(run.totals["time_s"] - before)
    for run in (pipeline, premade):
        run.meter.close()
    ratios = [a / b for a, b in zip(times["pipeline"][1:], times["premade"][1:])]
    return pipeline_verdict(ratios, statistics.median(times["pipeline"][1:]), statistics.median(times["premade"][1:]),
                            on_device)


def check_precision(nvml, handle, device, seeds: int = 3) -> Check:
    task = images_task(n_train=20000, n_test=2000)
    settings = {"epochs": 6, "eval_every": 10_000, "batch_size": 256, "lr": 0.1}
    accuracy, step_ratios = {"fp32": [], "bf16": []}, []
    for seed in range(seeds):  # interleaved seed by seed
        times = {}
        for name, extra in (("fp32", {}), ("bf16", {"precision": "bf16", "channels_last": True})):
            run = training(task, device, gpu_meter(nvml), seed=seed, **settings, **extra)
            metrics = list(run.evaluations())[-1]
            run.meter.close()
            accuracy[name].append(metrics["test_accuracy"])
            times[name] = metrics["time_s"] / metrics["kept_steps"]
        step_ratios.append(times["bf16"] / times["fp32"])
    return precision_verdict(statistics.median(step_ratios), accuracy["fp32"], accuracy["bf16"])


@contextlib.contextmanager
def deterministic():
    """cuDNN's deterministic kernels while a comparison runs, as they were after."""
    import torch

    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def check_checkpoint(nvml, handle, device) -> Check:
    """Save a trial on the GPU half-way, load it into a fresh trial, and continue to the uninterrupted result.

    A technique with a CPU generator (``redr_random``) and dropout-free
    ResNet-20: what must come back is the data order, the technique's
    state and the RNG streams, CUDA's included.
    """
    task = images_task(n_train=5000, n_test=500)
    settings = {"steps": 200, "eval_every": 100, "techniques": ("redr_random",)}
    with deterministic(), tempfile.TemporaryDirectory() as directory:
        whole = training(task, device, gpu_meter(nvml), **settings)
        uninterrupted = list(whole.evaluations())[-1]
        whole.meter.close()
        first = training(task, device, gpu_meter(nvml), **settings)
        next(first.evaluations())
        first.save(Path(directory) / "half-way.pt")
        first.meter.close()
        fresh = training(task, device, gpu_meter(nvml), **settings)
        fresh.load(Path(directory) / "half-way.pt")
        resumed = list(fresh.evaluations())[-1]
        fresh.meter.close()
    return resume_verdict(uninterrupted, resumed)


def check_feather(nvml, handle, device) -> Check:
    """Time per kept step of Feather against the dense baseline on ResNet-20, interleaved."""
    task = images_task(n_train=20000, n_test=500)
    settings = {"steps": 600, "eval_every": 200, "batch_size": 128}
    variants = {"dense": {}, "feather": {"techniques": ("feather",), "parameters": {"feather": {"sparsity": 0.9}}}}
    runs = {name: training(task, device, gpu_meter(nvml), **settings, **extra) for name, extra in variants.items()}
    windows = {name: run.evaluations() for name, run in runs.items()}
    times = {name: [] for name in runs}
    for _ in range(3):  # three windows each, interleaved; the first warms up
        for name, run in runs.items():
            before, steps = run.totals["time_s"], run.kept_steps
            next(windows[name])
            times[name].append((run.totals["time_s"] - before) / max(1, run.kept_steps - steps))
    for run in runs.values():
        run.meter.close()
    return feather_verdict(statistics.median(times["feather"][1:]), statistics.median(times["dense"][1:]))
