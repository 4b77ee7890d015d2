"""benchmarks/gpu_validate.py and the doctor's GPU checks without a GPU: it claims nothing, and its verdicts can fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from greentune.trainables.doctor import device, verdicts
from greentune.trainables.doctor import searches as search_checks

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_validate.py"


def run_script(*args):
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine with one
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=environment, timeout=120)


def test_without_a_gpu_it_says_so_in_one_line_and_claims_nothing():
    result = run_script()
    assert result.returncode == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "no GPU" in lines[0] and "nothing is claimed" in lines[0]
    assert "PASS" not in result.stdout and result.stderr == ""


def test_a_bad_checks_list_is_one_line_and_exit_2():
    result = run_script("--checks", "1,12")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "1 to 11" in result.stderr


def test_any_failed_check_fails_the_run():
    ok, bad = verdicts.Check(1, "a", "x", True), verdicts.Check(2, "b", "y", False)
    assert verdicts.summary([ok], "gpu_validate") == ("gpu_validate: PASS (all 1 checks)", 0)
    line, status = verdicts.summary([ok, bad])
    assert status == 1 and "2" in line.split(":")[-1]
    assert verdicts.summary([])[1] == 1
    assert bad.line().startswith("[FAIL] 2. b")


def test_the_counter_check_fails_on_a_gap_a_slow_poll_or_a_short_window():
    assert verdicts.counter_verdict(1050, 1000, 20, 12).passed
    assert not verdicts.counter_verdict(1150, 1000, 20, 12).passed  # 15% apart
    assert not verdicts.counter_verdict(1000, 1000, 5, 12).passed  # polled under 10 Hz
    assert not verdicts.counter_verdict(1000, 1000, 20, 5).passed  # under 10 s of training
    assert not verdicts.counter_verdict(1000, 0, 20, 12).passed


def test_the_idle_check_needs_the_baseline_and_the_short_window_count():
    assert verdicts.idle_verdict(80, 75, 9, 10, 0).passed
    assert not verdicts.idle_verdict(100, 75, 10, 10, 0).passed  # 33% over the reading at rest
    assert not verdicts.idle_verdict(75, 75, 0, 10, 0).passed  # short windows not counted
    assert not verdicts.idle_verdict(75, 75, 10, 10, 2).passed  # long windows counted as short


def rows(count, source="nvml-shared+estimate", energy=100.0, **more):
    return [{"status": "finished", "energy_source": source, "energy_j": energy, "eval_energy_j": 1.0,
             "memory_source": "cuda", "peak_memory_mb": 900.0, **more} for _ in range(count)]


def test_the_shared_check_compares_the_trials_sum_with_the_device():
    assert verdicts.shared_verdict(rows(4), device_j=404, seconds=30).passed
    assert not verdicts.shared_verdict(rows(4), device_j=505, seconds=30).passed  # a fifth unaccounted for
    assert not verdicts.shared_verdict(rows(3), device_j=303, seconds=30).passed  # a trial missing
    assert not verdicts.shared_verdict(rows(4, source="nvml+estimate"), device_j=404, seconds=30).passed
    with_rapl = verdicts.shared_verdict(rows(4, source="nvml-shared+rapl"), device_j=404, seconds=30)
    assert not with_rapl.passed and "RAPL" in with_rapl.figure
    assert verdicts.shared_verdict(rows(4, source="nvml-shared-fraction+estimate"), 404, 30).passed


def test_busy_energy_covers_the_period_the_gpu_was_busy():
    samples = [(0.0, 10.0, 0), (1.0, 11.0, 0), (2.0, 15.0, 50), (3.0, 20.0, 90), (4.0, 21.0, 0), (5.0, 22.0, 0)]
    assert verdicts.busy_energy(samples) == (9.0, 2.0)  # from the last idle sample before to the last busy one
    assert verdicts.busy_energy(samples[:2]) == (0.0, 0.0)


def test_the_pipeline_check_takes_the_median_ratio_and_needs_the_device():
    assert verdicts.pipeline_verdict([1.01, 1.2, 1.03], 1.0, 1.0, True).passed
    assert not verdicts.pipeline_verdict([1.08, 1.1, 1.01], 1.0, 1.0, True).passed
    assert not verdicts.pipeline_verdict([1.0], 1.0, 1.0, False).passed
    assert not verdicts.pipeline_verdict([], 1.0, 1.0, True).passed


def test_the_precision_check_fails_when_bf16_is_slower_or_outside_the_noise():
    fp32, close, far = [0.80, 0.82, 0.81], [0.81, 0.80, 0.82], [0.70, 0.71, 0.69]
    assert verdicts.precision_verdict(0.7, fp32, close).passed
    assert not verdicts.precision_verdict(1.1, fp32, close).passed
    assert not verdicts.precision_verdict(0.7, fp32, far).passed
    assert verdicts.accuracy_tolerance([0.5, 0.5], [0.5, 0.5]) == 0.01  # the floor
    assert verdicts.accuracy_tolerance([0.4, 0.6], [0.5, 0.5]) == pytest.approx(3 * (0.02 / 2) ** 0.5)


def test_the_search_and_memory_checks_need_every_trial():
    assert verdicts.search_verdict(rows(8, source="nvml+rapl")).passed
    assert not verdicts.search_verdict(rows(7) + rows(1, source="estimate")).passed
    assert not verdicts.search_verdict(rows(7)).passed
    assert verdicts.memory_verdict(rows(8), data_mb=500).passed
    assert not verdicts.memory_verdict(rows(8), data_mb=1000).passed  # peak below the data it holds
    assert not verdicts.memory_verdict(rows(7) + rows(1, memory_source="rss"), data_mb=500).passed


def test_the_searches_the_script_runs_are_valid_search_files(monkeypatch, tmp_path):
    from greentune.search.config import parse_search

    searches = []
    monkeypatch.setattr(search_checks, "run_search", lambda search, directory: searches.append(search) or rows(8))
    search_checks.check_search(None, None, tmp_path)
    search_checks.check_shared(FakeTraceNvml(), 0, tmp_path)
    for search in searches:
        parsed = parse_search(search)
        assert parsed.settings.resources.gpu in ("auto", 0.25)
    assert [parse_search(search).settings.budgets.num_trials * search.get("repeats", 1) for search in searches] == [8, 4]


class FakeTraceNvml:
    class Rates:
        gpu = 0

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return 0

    def nvmlDeviceGetUtilizationRates(self, handle):
        return self.Rates()

    def nvmlDeviceGetPowerUsage(self, handle):
        return 70_000


def test_premade_batches_give_the_pipelines_own_batches_with_no_work_left():
    from greentune.trainables.data import DeviceData
    from greentune.trainables.tasks.cifar import random_crop_flip

    data = DeviceData(torch.randn(10, 3, 8, 8), torch.arange(10), 4, augment=random_crop_flip)
    premade = device.PremadeBatches(data)
    assert len(premade) == len(data) == 3
    first = [premade.take(premade.next_indices()) for _ in range(3)]
    again = premade.take(premade.next_indices())
    assert torch.equal(again[0], first[0][0])  # the next epoch repeats the batches made in advance
    assert sorted(torch.cat([targets for _, targets in first]).tolist()) == list(range(10))



def test_the_checks_train_for_the_steps_they_name_not_the_tasks_default_epochs():
    from greentune.search.config import parse_search
    from greentune.trainables.energy import CpuTimeEstimate, EnergyMeter

    task = device.images_task(n_train=256, n_test=64)
    assert task.defaults.epochs is not None  # what would otherwise win over steps
    run = device.training(task, "cpu", EnergyMeter([CpuTimeEstimate()]), steps=7, eval_every=7)
    assert run.total_steps == 7
    search = search_checks.search_file({"b": {"techniques": ["baseline"]}}, 1, {"cpu": 1}, {"steps": 7}, {})
    assert parse_search(search).settings.train["epochs"] is None
