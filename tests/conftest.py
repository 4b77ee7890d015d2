"""Test-wide settings, and one private Ray shared by the searches the tests run in this process."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tests measure behaviour, not speed; one thread keeps them from fighting over 2 cores."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def local_ray(request):
    """A private local Ray, left running while a later module of this run searches: a second search on a
    running Ray takes half the time of one that starts its own (its worker processes are warm).

    The searches find it through ``ray.is_initialized()``, as a notebook's would. A test that needs
    Ray set up otherwise (another environment for its workers, a cluster) shuts it down first; the
    next module that asks for it starts it again. After the last module that asks for it, it is
    shut down.
    """
    import ray

    if not ray.is_initialized():
        # "local": ray.init() would join any cluster already running on the machine.
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    items = request.session.items
    last = max(index for index, item in enumerate(items) if item.path == request.path)
    if not any("local_ray" in item.fixturenames for item in items[last + 1:]):
        ray.shutdown()
