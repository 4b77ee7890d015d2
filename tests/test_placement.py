"""Trials train where Ray put them: on the CPU when Ray gave them no GPU, on GPUs an autoscaler can add."""

from __future__ import annotations

import pytest
import torch

from greentune.search import runner
from greentune.search.config import parse_search
from greentune.trainables.trial import placed_device


def test_a_trial_ray_gave_no_gpu_trains_on_the_cpu_even_where_cuda_sees_one():
    assert placed_device("auto", 0.0, cuda_available=True) == torch.device("cpu")
    assert placed_device("auto", 0.25, cuda_available=True) == torch.device("cuda")
    assert placed_device("auto", None, cuda_available=True) == torch.device("cuda")  # outside Ray: what CUDA sees
    with pytest.raises(ValueError, match="Ray gave this trial no GPU"):
        placed_device("cuda", 0.0, cuda_available=True)


@pytest.fixture(scope="module")
def ray_with_a_gpu():
    """A private Ray that believes this machine has one GPU, as a GPU node's would."""
    import ray

    ray.shutdown()  # another module's Ray, set up otherwise
    ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_tells_a_trial_how_much_gpu_it_has(ray_with_a_gpu):
    ray = ray_with_a_gpu

    @ray.remote
    class Trial:
        def placement(self):
            import os

            from greentune.trainables.trial import ray_gpus

            return ray_gpus(), os.environ.get("CUDA_VISIBLE_DEVICES")

    no_gpu = Trial.options(num_gpus=0).remote()
    gpus, visible = ray.get(no_gpu.placement.remote())
    assert gpus == 0.0 and not visible  # Ray 2.60 leaves CUDA_VISIBLE_DEVICES unset or empty: only Ray can say
    ray.kill(no_gpu)
    quarter = Trial.options(num_gpus=0.25).remote()
    assert ray.get(quarter.placement.remote()) == (0.25, "0")
    ray.kill(quarter)


def test_gpu_auto_on_an_autoscaling_cluster_with_gpu_node_types_asks_for_a_gpu_and_says_so(monkeypatch, capsys):
    monkeypatch.setattr(runner, "_cluster_resources", lambda: {"CPU": 4.0})  # the head alone is up
    monkeypatch.setattr(runner, "_possible_resources", lambda: {"CPU": 68.0, "GPU": 8.0})
    auto = parse_search({"techniques": ["baseline"], "resources": {"cpu": 1, "gpu": "auto"}})
    assert runner._fitting_resources(auto, started_here=False) == {"cpu": 1, "gpu": 1}
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "1 GPU" in line and "wait until the cluster adds a node" in line
    monkeypatch.setattr(runner, "_possible_resources", lambda: {"CPU": 68.0})  # no GPU node type: the CPUs
    assert runner._fitting_resources(auto, started_here=False) == {"cpu": 1, "gpu": 0}
