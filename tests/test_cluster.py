"""Running on a Ray cluster: the cluster definition, a two-node search that loses a node, and --address."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.cluster_utils import Cluster

from greentune.cli import main
from greentune.search.config import parse_search
from greentune.search.runner import run_search

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_local_ray():
    """No Ray in this process: a search here would run on one already initialized, whatever its address."""
    ray.shutdown()
    yield
    ray.shutdown()


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_cluster_yaml_validates_against_rays_own_schema():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    jsonschema.validate(config, ray_schema())
    validate_config(prepare_config(config))  # as `ray up` does, with the provider's defaults filled in
    with pytest.raises(jsonschema.ValidationError, match="head_node_typ"):
        jsonschema.validate({**config, "head_node_typ": "head"}, ray_schema())


def security_group_template() -> dict:
    return yaml.safe_load((ROOT / "cluster-security-group.yaml").read_text())


def test_cluster_yaml_is_secure_by_default():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    group = security_group_template()["Resources"]["ClusterGroup"]["Properties"]
    assert config["provider"]["security_group"] == {"GroupName": group["GroupName"]}  # the template's, rules and all
    assert [(rule["FromPort"], rule["ToPort"]) for rule in group["SecurityGroupIngress"]] == [(22, 22)]  # SSH only from outside
    assert group["SecurityGroupIngress"][0]["CidrIp"] == {"Ref": "SshCidr"}
    ssh_cidr = security_group_template()["Parameters"]["SshCidr"]
    assert "Default" not in ssh_cidr and not re.match(ssh_cidr["AllowedPattern"], "0.0.0.0/0")
    assert re.match(ssh_cidr["AllowedPattern"], "203.0.113.7/32")
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert any("pip install -e ." in command for command in config["setup_commands"])  # as the README installs


class FoundGroup:
    """A security group as Ray's AWS launcher sees it in the VPC: its rules, and the rules it is given."""

    def __init__(self, ip_permissions):
        self.id, self.group_name, self.vpc_id, self.ip_permissions = "sg-1", "greentune-ssh-only", "vpc-1", ip_permissions
        self.authorized = []

    def authorize_ingress(self, IpPermissions):  # noqa: N803 - boto3's name
        self.authorized += IpPermissions


@pytest.mark.parametrize("existing", ["defined by the template", "empty"])
def test_ray_uses_a_security_group_with_rules_as_given_and_opens_an_empty_one_to_the_world(existing):
    """Why cluster.yaml's group is defined outside it: Ray 2.60 adds SSH from 0.0.0.0/0 to a group it finds empty."""
    from ray.autoscaler._private.aws import config as aws

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    ingress = security_group_template()["Resources"]["ClusterGroup"]["Properties"]["SecurityGroupIngress"]
    found = FoundGroup(ingress if existing == "defined by the template" else [])
    aws._upsert_security_group_rules(config, {node_type: found for node_type in config["available_node_types"]})
    opened = [rule for rule in found.authorized if {"CidrIp": "0.0.0.0/0"} in rule.get("IpRanges", [])]
    assert (opened == []) == (existing == "defined by the template"), found.authorized


def reports(result_file: Path) -> list[dict]:
    """One trial's reports, in the order it made them."""
    return [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()] if result_file.exists() else []


def experiment_results(experiment: Path) -> list[dict]:
    return [report for result_file in experiment.glob("*/result.json") for report in reports(result_file)]


@pytest.mark.parametrize(
    "when",
    [
        "mid-trial",
        # The moment a finished trial's worker would be reset for the next: Ray Tune errors a trial that
        # loses its node then, whatever its retries, so on a cluster workers are not reused.
        "as-a-trial-finishes",
    ],
)
@pytest.mark.slow
def test_a_search_spreads_over_two_nodes_and_survives_losing_one(tmp_path, no_local_ray, when):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    search = parse_search(
        {
            "train": {"steps": 900, "eval_every": 150},
            # A searched parameter, so that no two trials train the same configuration.
            "approaches": {"big": {"model": "big", "techniques": ["random_pruning"]},
                           "small": {"model": "small", "techniques": ["random_pruning"]}},
            "num_trials": 4,  # two at once on two nodes, then the rest where one survives
            "searcher": {"name": "nsga2", "population_size": 2},
            "scheduler": "fifo",  # every trial to the end, so each one can be checked after the node is lost
            "retries": 3,
            "max_concurrent": 2,
        }
    )
    worker_id = worker.node_id
    removed = threading.Event()

    def remove_worker():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            on_worker = [r for r in experiment_results(tmp_path / "tune") if r.get("node_id") == worker_id]
            if any(bool(r.get("complete")) == (when == "as-a-trial-finishes") for r in on_worker):
                cluster.remove_node(worker)
                removed.set()
                return
            time.sleep(0.01)

    remover = threading.Thread(target=remove_worker, daemon=True)
    try:
        remover.start()
        results = run_search(search, tmp_path, address=cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()
    remover.join(timeout=5)
    assert removed.is_set(), "the worker node should have been removed during a trial"
    assert len(results) == 4 and (results["status"] == "finished").all()
    nodes = {r["node_id"] for r in experiment_results(tmp_path / "tune")}
    assert worker_id in nodes and len(nodes) == 2  # trials ran on both nodes
    assert (results["node_id"] != worker_id).any()
    final = results.set_index("trial_id")["energy_j"]
    for trial_dir in (tmp_path / "tune").glob("*/"):
        made = reports(trial_dir / "result.json")
        finished_on_worker = [r for r in made if r.get("complete") and r["node_id"] == worker_id]
        if not finished_on_worker:
            continue
        record = finished_on_worker[-1]
        if final[record["trial_id"]] == pytest.approx(record["energy_j"]):
            continue  # finished before the node went: kept as it was
        # Ray logs a trial's last report before the save task that hands it the checkpoint returns; a node lost
        # in between, Ray records the actor's death and trains the trial again. Only then may the values change.
        error = trial_dir / "error.txt"
        assert error.exists() and "its node has died" in error.read_text(), record["trial_id"]
        assert made[-1]["complete"] and final[record["trial_id"]] == pytest.approx(made[-1]["energy_j"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_greentune_run_against_a_running_ray_head(tmp_path, no_local_ray, capsys, monkeypatch):
    port = free_port()
    environment = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # a loopback test cluster: no token needed
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=environment,
    )
    try:
        config = tmp_path / "search.yaml"
        config.write_text(yaml.safe_dump(
            {"train": {"steps": 200, "eval_every": 100}, "num_trials": 2,
             "approaches": {"big": {"model": "big", "techniques": ["random_pruning"]}}}  # two configurations
        ))
        command = [sys.executable, "-m", "greentune.cli", "run", "--config", str(config),
                   "--results", str(tmp_path / "out"), "--address", f"127.0.0.1:{port}"]
        deadline = time.monotonic() + 120
        # The head takes a few seconds to come up: wait for its port here, where each try of the command
        # costs a new interpreter that loads PyTorch and Ray before it finds nothing listening.
        while time.monotonic() < deadline and head.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        while True:  # listening is not yet serving: a try may still fail, and is repeated
            result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Pareto-optimal trials" in result.stdout
        assert len(pd.read_parquet(tmp_path / "out" / "results.parquet")) == 2
        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
        unreachable = [*command[3:-3], str(tmp_path / "elsewhere"), "--address", "127.0.0.1:1"]
        assert main(unreachable) == 2  # in this process: the exit code is test_cli's
        wrong = capsys.readouterr().err
        assert "Traceback" not in wrong and "could not connect to the Ray cluster at 127.0.0.1:1" in wrong
    finally:
        os.killpg(head.pid, signal.SIGINT)  # Ctrl-C, as `ray start --block` is stopped by hand; on SIGTERM it takes ~30 s
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
