"""Test-wide settings, and one private Ray shared by the searches the tests run in this process."""

import sys

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tests measure behaviour, not speed; one thread keeps them from fighting over 2 cores."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def _ray_down_at_the_end():
    yield
    if "ray" in sys.modules:
        sys.modules["ray"].shutdown()


@pytest.fixture(scope="module")
def local_ray(_ray_down_at_the_end):
    """A private local Ray, left running for the next module's searches: a second search on a running Ray
    takes half the time of one that starts its own (its worker processes are warm).

    The searches find it through ``ray.is_initialized()``, as a notebook's would. A test that needs
    Ray set up otherwise (another environment for its workers, a cluster) shuts it down first; the
    next module that asks for it starts it again.

    While it runs, ``build_training`` fails in this process (``trainables.trial._gpu_is_shared`` asks
    Ray for a worker's resources, which a driver has none of); the modules that call it run after
    test_cluster or test_outside_tasks has shut it down.
    """
    import ray

    if not ray.is_initialized():
        # "local": ray.init() would join any cluster already running on the machine.
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
