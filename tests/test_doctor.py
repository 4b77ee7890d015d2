"""``greentune doctor`` without a GPU (one line per meter, exit 0), its meter lines on fake hardware, and its new checks' verdicts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from greentune.trainables.doctor import meters, verdicts
from greentune.trainables.doctor import searches as search_checks


def doctor(**environment):
    return subprocess.run([sys.executable, "-m", "greentune.cli", "doctor"], capture_output=True, text=True,
                          env={**os.environ, **environment}, timeout=120)


@pytest.mark.parametrize("visible", [None, ""])
def test_without_a_gpu_the_doctor_prints_one_line_per_meter_and_exits_0(visible):
    result = doctor(**({} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}))
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["cpu", "gpu"]
    assert lines[0].split(":")[1].strip() in ("rapl", "estimate")
    assert "PASS" not in result.stdout and "FAIL" not in result.stdout


def write_package(root, readable=True):
    domain = root / "intel-rapl:0"
    domain.mkdir(parents=True)
    (domain / "max_energy_range_uj").write_text("1000000")
    if readable:
        (domain / "energy_uj").write_text("5")


def test_the_cpu_line_says_rapl_where_readable_and_why_not_where_not(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 0 100 0 0 0 0 0 0\n")
    write_package(tmp_path / "readable")
    assert meters.cpu_line(tmp_path / "readable", stat).startswith("cpu: rapl: 1 CPU package readable")
    write_package(tmp_path / "root-only", readable=False)
    line = meters.cpu_line(tmp_path / "root-only", stat)
    assert line.startswith("cpu: estimate:") and "not readable" in line
    assert "no RAPL domain" in meters.cpu_line(tmp_path / "missing", stat)


class Gpus:
    """pynvml over three GPUs as CUDA sees them: one with an energy counter, one with power only, one MIG instance."""

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    NVML_DEVICE_MIG_ENABLE = 1
    UUIDS = ["GPU-aaaa", "GPU-bbbb", "MIG-cccc"]

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid not in self.UUIDS:
            raise self.NVMLError("Not Found")
        return self.UUIDS.index(uuid)

    def nvmlDeviceGetName(self, handle):
        return [b"NVIDIA H100", "NVIDIA P100", "NVIDIA A100 MIG 1g.10gb"][handle]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if handle != 0:
            raise self.NVMLError_NotSupported("Not Supported")
        return 1000

    def nvmlDeviceGetPowerUsage(self, handle):
        if handle == 2:
            raise self.NVMLError_NotSupported("Not Supported")
        return 70_000

    def nvmlDeviceIsMigDeviceHandle(self, handle):
        return handle == 2

    def nvmlDeviceGetMigMode(self, handle):
        if handle == 1:
            raise self.NVMLError_NotSupported("Not Supported")
        return 0, 0


def test_each_gpu_line_names_the_meter_a_trial_on_it_would_get_and_mig():
    lines = meters.gpu_lines(["aaaa", "bbbb", "cccc"], Gpus())
    assert lines[0] == "gpu 0: nvml: NVIDIA H100 has an energy counter; MIG off"
    assert lines[1] == "gpu 1: nvml-power: NVIDIA P100 has power only, integrated over time; no MIG"
    assert lines[2].startswith("gpu 2: gpu-unmetered: NVIDIA A100 MIG 1g.10gb has neither") and "a MIG instance" in lines[2]
    assert meters.gpu_lines(["dddd"], Gpus()) == ["gpu 0: gpu-unmetered: NVML cannot open it (no driver, or not dddd)"]


def test_the_shared_line_says_how_a_shared_gpu_would_be_split():
    assert "split by utilisation" in meters.shared_line(True)
    assert "nvml-shared-fraction" in meters.shared_line(False)


def test_a_resumed_trial_passes_only_at_the_same_step_and_loss():
    whole = {"step": 200, "test_loss": 0.5}
    assert verdicts.resume_verdict(whole, {"step": 200, "test_loss": 0.50001}).passed
    assert not verdicts.resume_verdict(whole, {"step": 200, "test_loss": 0.51}).passed
    assert not verdicts.resume_verdict(whole, {"step": 100, "test_loss": 0.5}).passed


def row(**more):
    return {"status": "finished", "energy_source": "nvml+estimate", "compile_fallback": False, **more}


def test_a_resumed_search_passes_only_when_killed_and_every_trial_finished_on_nvml():
    assert verdicts.resumed_search_verdict([row()] * 4, 4, killed=True).passed
    assert not verdicts.resumed_search_verdict([row()] * 4, 4, killed=False).passed  # ended before a checkpoint
    assert not verdicts.resumed_search_verdict([row()] * 3 + [row(status="error")], 4, killed=True).passed
    assert not verdicts.resumed_search_verdict([row()] * 3 + [row(energy_source="estimate")], 4, killed=True).passed


def test_the_compile_check_fails_on_a_fallback_or_where_none_is_reported():
    assert verdicts.compile_verdict([row()] * 10, 10).passed
    assert not verdicts.compile_verdict([row()] * 9 + [row(compile_fallback=True)], 10).passed
    unreported = {key: value for key, value in row().items() if key != "compile_fallback"}
    assert not verdicts.compile_verdict([row()] * 9 + [unreported], 10).passed


def test_the_feather_check_compares_step_times():
    assert verdicts.feather_verdict(0.012, 0.010).passed
    assert not verdicts.feather_verdict(0.020, 0.010).passed
    assert not verdicts.feather_verdict(0.010, 0.0).passed


def test_the_compiled_search_is_a_valid_search_file_of_ten_trials_in_one_worker(monkeypatch, tmp_path):
    from greentune.search.config import parse_search

    run = []
    monkeypatch.setattr(search_checks, "run_search", lambda search, directory: run.append(search) or [row()] * 10)
    assert search_checks.check_compile(None, None, tmp_path).passed
    [search] = run
    parsed = parse_search(search)
    assert parsed.settings.budgets.num_trials == 10 and parsed.settings.max_concurrent == 1
    assert search["train"]["compile"] is True


def test_with_a_gpu_the_doctor_adds_how_a_shared_gpu_is_split_then_the_checks_and_fails_with_them(monkeypatch, tmp_path):
    import types

    import torch

    from greentune.trainables import doctor

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: types.SimpleNamespace(uuid="aaaa"))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA H100")
    monkeypatch.setitem(sys.modules, "pynvml", Gpus())
    monkeypatch.setattr(doctor, "ray_worker_seen_by_nvml", lambda: False)
    ran = []

    def run_checks(chosen, workdir, report):
        ran.append((chosen, workdir))
        return [verdicts.Check(1, "a", "x", True), verdicts.Check(3, "b", "y", False)]

    monkeypatch.setattr(doctor, "run_checks", run_checks)
    lines = []
    assert doctor.diagnose([1, 3], tmp_path, lines.append) == 1
    assert lines[1] == "gpu 0: nvml: NVIDIA H100 has an energy counter; MIG off"
    assert lines[2].startswith("gpu shared: nvml-shared-fraction")
    assert lines[-1] == "greentune doctor: FAIL (1 of 2 failed: 3)"
    assert ran == [([1, 3], tmp_path)]


def test_the_killed_search_is_killed_only_once_a_checkpoint_exists(tmp_path):
    import threading

    results = tmp_path / "results"
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    threading.Timer(1.0, lambda: (results / "trial" / "checkpoint_000000").mkdir(parents=True)).start()
    assert search_checks._kill_after_a_checkpoint(running, results, timeout_s=30, settle_s=0)
    assert running.returncode == -9
    ended = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    assert not search_checks._kill_after_a_checkpoint(ended, tmp_path / "none", timeout_s=30, settle_s=0)
