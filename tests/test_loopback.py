"""A Ray that greentune starts for a local search listens on loopback only: nothing of it is reachable from the network.

Ray 2.60 binds its GCS, raylet and worker gRPC ports on every interface, with no
authentication (the ShadowRay attacks, CVE-2023-48022). The search runs in a
subprocess, so that this process's own Ray does not stand in for the one it starts; the two
tests' searches run at once.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import textwrap

import pytest

psutil = pytest.importorskip("psutil")

SEARCH_SCRIPT = textwrap.dedent('''
    import contextlib, json, sys, threading, time
    import psutil
    import greentune
    from greentune.search import runner

    if sys.argv[2] == "as-before":  # Ray started as greentune started it before this fix
        runner._loopback_only = lambda local: contextlib.nullcontext()
    listening, done = set(), threading.Event()

    def watch():
        me = psutil.Process()
        while not done.is_set():
            pids = {me.pid} | {child.pid for child in me.children(recursive=True)}
            for connection in psutil.net_connections("inet"):
                if connection.status == psutil.CONN_LISTEN and connection.pid in pids:
                    listening.add(connection.laddr.ip)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    greentune.run({
        "task": "teacher_student", "task_options": {"n_train": 100, "n_test": 100},
        "train": {"steps": 20, "eval_every": 10, "batch_size": 20},
        "approaches": {"baseline": {"techniques": ["baseline"], "model": "small"}},
        "searcher": "random", "num_trials": 1, "resources": {"cpu": 1},
    }, results=sys.argv[1])
    done.set()
    watcher.join()
    print("LISTENING " + json.dumps(sorted(listening)))
''')


@pytest.fixture(scope="module")
def searches(tmp_path_factory) -> dict[str, subprocess.Popen]:
    """Both searches at once, each in its own process: most of either is a Ray starting, which waits as much as it computes."""
    root = tmp_path_factory.mktemp("loopback")
    script = root / "search.py"
    script.write_text(SEARCH_SCRIPT)
    running = {mode: subprocess.Popen([sys.executable, str(script), str(root / mode), mode],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for mode in ("now", "as-before")}
    yield running
    for process in running.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


def listening_addresses(searches, mode: str) -> list[str]:
    stdout, stderr = searches[mode].communicate(timeout=300)
    lines = [line for line in stdout.splitlines() if line.startswith("LISTENING ")]
    assert searches[mode].returncode == 0 and lines, stdout[-2000:] + stderr[-3000:]
    return json.loads(lines[-1].removeprefix("LISTENING "))


def is_loopback(address: str) -> bool:
    address = ipaddress.ip_address(address)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


@pytest.mark.slow
def test_a_local_search_listens_on_loopback_only(searches):
    addresses = listening_addresses(searches, "now")
    assert addresses and all(map(is_loopback, addresses)), addresses


@pytest.mark.slow
def test_the_check_fails_for_ray_started_as_before(searches):
    """The test above can fail: Ray started as greentune started it before listens on every interface."""
    addresses = listening_addresses(searches, "as-before")
    assert not all(map(is_loopback, addresses)), addresses
