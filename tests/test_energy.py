"""Energy counters: NVML (with a fake NVML module), its power-polling fallback, RAPL, the estimate."""

from __future__ import annotations

import pickle
import threading
import time
from types import SimpleNamespace

import pytest

from greentune.trainables.energy import (
    CpuTimeEstimate,
    EnergyMeter,
    NvmlEnergy,
    NvmlPowerPoller,
    Rapl,
    nvml_counters,
    open_meter,
    visible_gpus,
)
from helpers import NvmlProcess, NvmlSample


class FakeNvml:
    """The slice of pynvml the meter uses, over GPUs with scripted counters."""

    class NVMLError(Exception):
        pass

    def __init__(self, energy_mj=(1000, 2000, 3000), power_mw=(100_000, 200_000, 300_000), energy_supported=True):
        self.energy_mj = list(energy_mj)
        self.power_mw = list(power_mw)
        self.energy_supported = energy_supported
        self.uuids = [f"GPU-{index:04d}" for index in range(len(self.energy_mj))]

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(self.energy_mj)

    def nvmlDeviceGetHandleByIndex(self, index):
        if index >= len(self.energy_mj):
            raise self.NVMLError(f"no GPU {index}")
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return self.uuids.index(uuid)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.energy_supported:
            raise self.NVMLError("Not Supported")
        return self.energy_mj[handle]

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.power_mw[handle]


def test_only_the_gpus_in_cuda_visible_devices_are_metered():
    nvml = FakeNvml()
    assert visible_gpus(nvml, {"CUDA_VISIBLE_DEVICES": "2,0"}) == [2, 0]
    assert visible_gpus(nvml, {"CUDA_VISIBLE_DEVICES": "GPU-0001"}) == [1]
    assert visible_gpus(nvml, {}) == [0, 1, 2]
    assert visible_gpus(nvml, {"CUDA_VISIBLE_DEVICES": ""}) == []


def test_nvml_energy_counts_the_visible_gpus_only():
    nvml = FakeNvml()
    [counter] = nvml_counters(nvml, {"CUDA_VISIBLE_DEVICES": "1"})
    assert isinstance(counter, NvmlEnergy) and counter.source == "nvml"
    start = counter.joules()
    nvml.energy_mj[1] += 5_000  # the trial's GPU used 5 J
    nvml.energy_mj[0] += 99_000  # another trial's GPU: not ours
    assert counter.joules() - start == pytest.approx(5.0)


def test_without_an_energy_counter_polled_power_is_integrated():
    nvml = FakeNvml(energy_supported=False)
    [counter] = nvml_counters(nvml, {"CUDA_VISIBLE_DEVICES": "0"})
    try:
        assert isinstance(counter, NvmlPowerPoller) and counter.source == "nvml-power"
        start, began = counter.joules(), time.perf_counter()
        time.sleep(0.3)
        elapsed = time.perf_counter() - began
        assert counter.joules() - start == pytest.approx(100.0 * elapsed, rel=0.05)  # 100 W
    finally:
        counter.close()


def test_no_visible_gpu_or_no_driver_gives_no_gpu_counter():
    assert nvml_counters(FakeNvml(), {"CUDA_VISIBLE_DEVICES": ""}) == []

    class NoDriver(FakeNvml):
        def nvmlInit(self):
            raise self.NVMLError("Driver Not Loaded")

    assert nvml_counters(NoDriver(), {}) == []


def write_rapl(root, name, energy_uj, max_uj=1_000_000):
    domain = root / name
    domain.mkdir(parents=True, exist_ok=True)
    (domain / "energy_uj").write_text(str(energy_uj))
    (domain / "max_energy_range_uj").write_text(str(max_uj))
    (domain / "name").write_text("package")
    return domain


def test_rapl_sums_packages_and_unwraps_overflow(tmp_path):
    package0 = write_rapl(tmp_path, "intel-rapl:0", 900_000)
    write_rapl(tmp_path, "intel-rapl:0:0", 5)  # a sub-domain (core): inside the package, not added
    package1 = write_rapl(tmp_path, "intel-rapl:1", 10)
    rapl = Rapl.find(tmp_path)
    assert rapl.source == "rapl" and len(rapl.domains) == 2
    start = rapl.joules()
    (package0 / "energy_uj").write_text("100000")  # wrapped: +200_000 uJ
    (package1 / "energy_uj").write_text("300010")  # +300_000 uJ
    assert rapl.joules() - start == pytest.approx(0.5)


def test_unreadable_or_absent_rapl_falls_back_to_a_labelled_estimate(tmp_path):
    assert Rapl.find(tmp_path / "missing") is None
    domain = write_rapl(tmp_path, "intel-rapl:0", 1)
    (domain / "energy_uj").unlink()  # as when energy_uj is root-only
    assert Rapl.find(tmp_path) is None
    meter = open_meter(use_gpu=False, powercap_root=tmp_path)
    assert meter.source == "estimate"


def test_the_estimate_is_cpu_time_times_watts_per_core():
    estimate = CpuTimeEstimate(watts_per_core=20.0)
    start_joules, start_cpu = estimate.joules(), time.process_time()
    sum(index * index for index in range(300_000))
    assert estimate.joules() - start_joules == pytest.approx(20.0 * (time.process_time() - start_cpu), rel=0.05)
    with pytest.raises(ValueError, match="watts_per_core"):
        CpuTimeEstimate(0)


def test_a_gpu_meter_adds_the_cpu_and_says_so_in_its_source(tmp_path):
    meter = open_meter(use_gpu=True, nvml=FakeNvml(), powercap_root=tmp_path)
    assert meter.source == "nvml+estimate"
    write_rapl(tmp_path, "intel-rapl:0", 1)
    assert open_meter(use_gpu=True, nvml=FakeNvml(), powercap_root=tmp_path).source == "nvml+rapl"


def test_a_meter_needs_a_counter():
    with pytest.raises(ValueError):
        EnergyMeter([])


class SharedFakeNvml(FakeNvml):
    """One GPU running this trial (pid 10) and another (pid 20)."""

    def __init__(self, utilisation):
        super().__init__(energy_mj=(0,))
        self.utilisation = utilisation  # {pid: smUtil}
        self.clock = 0

    def nvmlDeviceGetProcessUtilization(self, handle, last_seen):
        self.clock += 1
        if not self.utilisation:
            raise self.NVMLError("Not Found")
        return [NvmlSample(pid, util, self.clock) for pid, util in self.utilisation.items()]

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [NvmlProcess(10), NvmlProcess(20)]


def test_a_shared_gpu_splits_device_energy_by_sampled_utilisation():
    from greentune.trainables.energy import NvmlSharedEnergy

    nvml = SharedFakeNvml({10: 30, 20: 90})
    counter = NvmlSharedEnergy(nvml, [0], interval_s=60, pid=10)
    try:
        start = counter.joules()
        nvml.energy_mj[0] += 8_000  # the device spent 8 J across both trials
        assert counter.joules() - start == pytest.approx(2.0)  # 30 / (30 + 90) of it is ours
        assert counter.source == "nvml-shared"
    finally:
        counter.close()


def test_when_nvml_cannot_see_our_pid_the_split_is_rays_fraction_and_labelled_so():
    from greentune.trainables.energy import NvmlSharedEnergy

    nvml = SharedFakeNvml({})
    counter = NvmlSharedEnergy(nvml, [0], fraction=0.25, interval_s=60, pid=99)  # a PID namespace hides ours
    try:
        start = counter.joules()
        nvml.energy_mj[0] += 8_000
        assert counter.joules() - start == pytest.approx(2.0)  # a quarter of the device, as Ray gave it
        assert counter.source == "nvml-shared-fraction"
    finally:
        counter.close()


def test_a_trial_records_its_idle_baseline_and_flags_short_windows():
    from helpers import make_training

    training = make_training(steps=4, eval_every=1)
    training.meter.resolution_s = 10.0  # every window is shorter than this update period
    metrics = list(training.evaluations())[-1]
    assert metrics["energy_short_windows"] == 4
    assert metrics["idle_power_w"] == 0.0 and metrics["idle_energy_j"] == 0.0  # the estimate's idle is zero


@pytest.mark.parametrize("resolution_s, short", [(10.0, 3), (0.0, 0)])
def test_evaluation_windows_shorter_than_the_update_period_are_flagged_too(resolution_s, short, tmp_path):
    from helpers import make_training

    training = make_training(steps=3, eval_every=1)
    training.meter.resolution_s = resolution_s
    metrics = list(training.evaluations())[-1]
    assert metrics["eval_energy_short_windows"] == short
    training.save(tmp_path / "training.pt")
    resumed = make_training(steps=3, eval_every=1)
    resumed.load(tmp_path / "training.pt")
    assert resumed.progress()["eval_energy_short_windows"] == short


def test_the_gpu_idle_baseline_is_the_power_drawn_before_training(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    meter = open_meter(use_gpu=True, nvml=FakeNvml(), powercap_root=tmp_path)
    assert meter.idle_watts() == pytest.approx(100.0 + 300.0)  # GPUs 0 and 2; the estimate adds nothing


class MixedNvml(FakeNvml):
    """A node with mixed GPUs: NVML's order (PCI bus) differs from CUDA's (fastest first), and one MIG instance."""

    def __init__(self):
        super().__init__()
        self.uuids = ["GPU-bbbb", "GPU-aaaa", "MIG-cccc"]

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid not in self.uuids:
            raise self.NVMLError("Not Found")
        return self.uuids.index(uuid)


def test_the_trials_gpus_are_found_by_uuid_not_by_index():
    nvml = MixedNvml()
    [counter] = nvml_counters(nvml, {}, uuids=["aaaa"])  # CUDA's device 0, as torch prints its UUID
    assert counter.handles == [1]
    [counter] = nvml_counters(nvml, {}, uuids=["cccc", "GPU-bbbb"])  # a MIG instance; a UUID in NVML's form
    assert counter.handles == [2, 0]


class NotSupportedNvml(FakeNvml):
    """MIG or vGPU: neither the energy counter nor power is supported."""

    class NVMLError_NotSupported(FakeNvml.NVMLError):
        pass

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        raise self.NVMLError_NotSupported("Not Supported")

    def nvmlDeviceGetPowerUsage(self, handle):
        raise self.NVMLError_NotSupported("Not Supported")


def test_a_gpu_nvml_cannot_meter_is_labelled_unmetered_rather_than_crashing_the_trial():
    with pytest.warns(UserWarning, match="not metered"):
        [counter] = nvml_counters(NotSupportedNvml(), {"CUDA_VISIBLE_DEVICES": "0"})
    assert counter.source == "gpu-unmetered" and counter.joules() == 0.0


def test_a_cuda_trial_whose_nvml_fails_is_never_metered_as_a_plain_estimate(tmp_path):
    class NoDriver(FakeNvml):
        def nvmlInit(self):
            raise self.NVMLError("Driver Not Loaded")

    with pytest.warns(UserWarning, match="not metered"):
        meter = open_meter(use_gpu=True, nvml=NoDriver(), powercap_root=tmp_path)
    assert meter.source == "gpu-unmetered+estimate" and meter.cpu_source == "estimate"


class AmpereNvml(FakeNvml):
    """NVML's instant power field beside the one-second average, which still carries the data upload."""

    NVML_FI_DEV_POWER_INSTANT, NVML_SUCCESS = 186, 0

    class Reading:
        def __init__(self, milliwatts):
            self.nvmlReturn = 0
            self.value = type("Value", (), {"uiVal": milliwatts})()

    def nvmlDeviceGetFieldValues(self, handle, fields):
        assert fields == [self.NVML_FI_DEV_POWER_INSTANT]
        return [self.Reading(60_000)]


def test_the_gpu_idle_baseline_is_nvmls_instant_power_where_it_has_one(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert open_meter(use_gpu=True, nvml=AmpereNvml(), powercap_root=tmp_path).idle_watts() == pytest.approx(60.0)


def polling_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("greentune-")]


@pytest.fixture
def polled_trials(monkeypatch):
    """Trials metered by polled power (a GPU without an energy counter), whose counter runs a thread."""
    from greentune.trainables import trial

    monkeypatch.setattr(trial, "open_meter", lambda *args, **kwargs: EnergyMeter([NvmlPowerPoller(FakeNvml(), [0])]))
    return trial


def test_a_trial_that_fails_to_build_leaves_no_polling_thread(polled_trials, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("the training data could not be read")

    monkeypatch.setattr(polled_trials, "Training", fail)
    before = polling_threads()
    with pytest.raises(RuntimeError, match="could not be read"):
        polled_trials.build_training({"task": "teacher_student"})
    assert polling_threads() == before


def test_a_trial_whose_checkpoint_fails_to_load_leaves_no_polling_thread(polled_trials, monkeypatch, tmp_path):
    import ray
    from ray import tune

    (tmp_path / polled_trials.CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "node"))
    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(tmp_path))
    before = polling_threads()
    with pytest.raises(pickle.UnpicklingError):
        polled_trials.run_trial({"task": "teacher_student", "task_options": {"n_train": 200, "n_test": 100}})
    assert polling_threads() == before
