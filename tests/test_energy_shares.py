"""Attribution adds up: the shares of the trials on a GPU or a CPU package add up to the device's energy.

A fake pynvml runs one GPU for four trials under each way NVML can see them
(their own PIDs, host PIDs from a container, no processes at all); a
temporary powercap tree and ``/proc/stat`` do the same for a CPU package.
"""

from __future__ import annotations

import time

import pytest

from greentune.trainables.energy import CpuShare, CpuTimeEstimate, EnergyMeter, NvmlSharedEnergy, Rapl
from helpers import NvmlProcess, NvmlSample

TRIALS = (10, 11, 12, 13)  # the trials' PIDs as they see themselves
HOST = {pid: pid + 40_000 for pid in TRIALS}  # the same processes as a container's host lists them


class OneGpu:
    """The slice of pynvml a shared counter uses, for one GPU whose polls a test scripts."""

    class NVMLError(Exception):
        pass

    class NVMLError_NotFound(NVMLError):
        pass

    def __init__(self, seen_as: str):
        self.seen_as = seen_as  # "own": NVML lists the trials' PIDs; "host": host PIDs; "none": no processes
        self.energy_mj, self.power_mw, self.clock = 0, 240_000, 0
        self.samples: list[Sample] = []

    def _pid(self, pid):
        return HOST[pid] if self.seen_as == "host" else pid

    def poll(self, joules: float, utilisation: dict[int, int]) -> None:
        """The device spends ``joules`` while each trial in ``utilisation`` keeps its SMs that busy."""
        self.clock += 1
        self.energy_mj += round(joules * 1e3)
        self.samples += [NvmlSample(self._pid(pid), util, self.clock) for pid, util in utilisation.items() if util]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.power_mw

    def nvmlDeviceGetProcessUtilization(self, handle, last_seen):
        recent = [sample for sample in self.samples if sample.timeStamp > last_seen]
        if not recent or self.seen_as == "none":
            raise self.NVMLError_NotFound("Not Found")
        return recent

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [] if self.seen_as == "none" else [NvmlProcess(self._pid(pid)) for pid in TRIALS]


def shared_trials(nvml) -> list[NvmlSharedEnergy]:
    return [NvmlSharedEnergy(nvml, [0], fraction=1 / len(TRIALS), interval_s=60, pid=pid) for pid in TRIALS]


POLLS = [  # (device joules, each trial's SM utilisation): all busy, one idle (evaluating), all idle, one alone
    (40.0, {10: 50, 11: 30, 12: 10, 13: 10}),
    (30.0, {10: 60, 11: 0, 12: 20, 13: 20}),
    (8.0, {}),
    (20.0, {13: 90}),
]


@pytest.mark.parametrize("seen_as", ["own", "host", "none"])
def test_the_trials_shares_of_a_gpu_add_up_to_the_device(seen_as):
    nvml = OneGpu(seen_as)
    trials = shared_trials(nvml)
    starts = [trial.joules() for trial in trials]
    for joules, utilisation in POLLS:
        nvml.poll(joules, utilisation)
        for trial in trials:
            trial.sample()
    shares = [trial.joules() - start for trial, start in zip(trials, starts)]
    device = sum(joules for joules, _ in POLLS)
    assert sum(shares) == pytest.approx(device, rel=0.01)
    expected = "nvml-shared" if seen_as == "own" else "nvml-shared-fraction"
    assert {trial.source for trial in trials} == {expected}


def test_a_trial_nvml_lists_once_its_cuda_context_exists_is_split_by_utilisation_from_then_on():
    nvml = OneGpu("none")  # no trial has made its CUDA context yet
    trials = shared_trials(nvml)
    starts = [trial.joules() for trial in trials]
    nvml.poll(4.0, {})
    for trial in trials:
        trial.sample()
    nvml.seen_as = "own"
    nvml.poll(30.0, {10: 60, 11: 0, 12: 20, 13: 20})
    shares = [trial.joules() - start for trial, start in zip(trials, starts)]
    assert shares == pytest.approx([1.0 + 18.0, 1.0, 1.0 + 6.0, 1.0 + 6.0])
    assert {trial.source for trial in trials} == {"nvml-shared"}


def test_a_trial_idle_while_others_work_gets_none_of_their_energy():
    nvml = OneGpu("own")
    trials = shared_trials(nvml)
    starts = [trial.joules() for trial in trials]
    nvml.poll(30.0, {10: 60, 11: 0, 12: 20, 13: 20})  # trial 11 evaluates on the CPU, or checkpoints
    shares = [trial.joules() - start for trial, start in zip(trials, starts)]
    assert shares == pytest.approx([18.0, 0.0, 6.0, 6.0])


@pytest.mark.parametrize("seen_as", ["own", "host", "none"])
def test_a_shared_trials_idle_power_is_its_share_of_the_device(seen_as):
    trials = shared_trials(OneGpu(seen_as))
    assert [trial.idle_watts() for trial in trials] == pytest.approx([60.0] * 4)  # 240 W over four quarters


def test_a_trial_starting_while_others_work_takes_none_of_their_power_as_its_idle_baseline():
    nvml = OneGpu("own")
    trials = shared_trials(nvml)
    nvml.poll(30.0, {11: 50, 12: 50, 13: 50})  # trial 10 uploads its data while the others train
    assert trials[0].idle_watts() == 0.0


def replace(path, text):
    """Write as the kernel does, all at once: the polling thread never reads a half-written file."""
    path.with_suffix(".new").write_text(text)
    path.with_suffix(".new").replace(path)


def write_stat(path, busy_ticks):
    replace(path, f"cpu  {busy_ticks} 0 0 1000000 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")


def write_package(root, energy_uj, max_uj=10_000_000):
    domain = root / "intel-rapl:0"
    domain.mkdir(parents=True, exist_ok=True)
    replace(domain / "energy_uj", str(energy_uj))
    replace(domain / "max_energy_range_uj", str(max_uj))
    return domain


class ProcessClock:
    """A trial's CPU time, as ``time.process_time`` would give it."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self):
        return self.seconds


def test_n_trials_on_a_node_count_the_cpu_package_once_between_them(tmp_path):
    """Four GPU trials on one node: their CPU parts add up to the package, each its CPU time's share."""
    stat, tick = tmp_path / "stat", 0.01  # USER_HZ is 100 on Linux
    write_stat(stat, 0)
    write_package(tmp_path, 0)
    clocks = [ProcessClock() for _ in range(4)]
    trials = [CpuShare(Rapl.find(tmp_path), stat, clock=clock) for clock in clocks]
    starts = [trial.joules() for trial in trials]
    busy, package = 0.0, 0.0
    for seconds in ([1.0, 2.0, 0.5, 0.5], [0.0, 3.0, 1.0, 0.0]):  # each trial's CPU time in this poll
        for clock, spent in zip(clocks, seconds):
            clock.seconds += spent
        busy, package = busy + sum(seconds), package + 100.0  # the package spent 100 J
        write_stat(stat, round(busy / tick))
        write_package(tmp_path, round(package * 1e6))
        for trial in trials:
            trial.sample()
    shares = [trial.joules() - start for trial, start in zip(trials, starts)]
    assert sum(shares) == pytest.approx(package, rel=0.01)  # once, not four times
    assert shares == pytest.approx([25.0, 125.0, 37.5, 12.5], rel=0.01)
    assert {trial.source for trial in trials} == {"rapl"}


def test_the_meters_polling_thread_catches_every_wrap_of_the_rapl_counter(tmp_path):
    """A window that spans two wraps: read only at its edges, one wrap would be lost."""
    stat = tmp_path / "stat"
    write_stat(stat, 0)
    write_package(tmp_path, 0, max_uj=1_000_000)  # wraps every 1 J
    clock = ProcessClock()
    meter = EnergyMeter([CpuShare(Rapl.find(tmp_path), stat, clock=clock, interval_s=0.01)])
    try:
        start = meter.joules()
        for step, energy_uj in enumerate((600_000, 200_000, 800_000, 400_000), start=1):  # +0.6 J each
            write_package(tmp_path, energy_uj, max_uj=1_000_000)
            clock.seconds = step * 1.0
            write_stat(stat, step * 100)  # this trial is all the CPUs' work; written last, it closes the interval
            time.sleep(0.3)  # the polling thread reads it
        assert meter.joules() - start == pytest.approx(2.4)
    finally:
        meter.close()


def test_a_gpu_trial_reports_its_cpu_part_in_its_own_columns_counted_once_in_the_total():
    from helpers import make_training

    class Gpu(CpuTimeEstimate):
        """A GPU drawing three times what the CPU does."""

        source, cpu = "nvml", False

        def joules(self):
            return 3 * super().joules()

    training = make_training(steps=40, eval_every=20)
    training.meter = EnergyMeter([Gpu(), CpuTimeEstimate()])
    metrics = list(training.evaluations())[-1]
    assert metrics["cpu_energy_source"] == "estimate" and metrics["energy_source"] == "nvml+estimate"
    assert metrics["cpu_energy_j"] > 0
    assert metrics["energy_j"] == pytest.approx(4 * metrics["cpu_energy_j"], rel=0.05)  # the GPU's 3 and the CPU's 1


def test_a_checkpoint_saved_before_the_cpu_column_resumes_with_its_cpu_part_unknown(tmp_path):
    import math

    import torch
    from helpers import make_training

    training = make_training(steps=4, eval_every=2)
    next(training.evaluations())
    training.save(tmp_path / "old.pt")
    state = torch.load(tmp_path / "old.pt", weights_only=False)
    del state["totals"]["cpu_energy_j"]  # as an older greentune wrote it
    torch.save(state, tmp_path / "old.pt")
    resumed = make_training(steps=4, eval_every=2)
    resumed.load(tmp_path / "old.pt")
    metrics = list(resumed.evaluations())[-1]
    assert math.isnan(metrics["cpu_energy_j"]) and math.isfinite(metrics["energy_j"])
