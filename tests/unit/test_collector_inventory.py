"""Pods and nodes from lists: quantities, owners via ReplicaSet/Job, lazy relists of owners."""

from __future__ import annotations

import pytest

from collectors._inventory import Owners, cpu_cores, memory_bytes, parse_node, parse_pod
from collectors.testing import payloads as k


@pytest.mark.parametrize(("q", "cores"), [("250m", 0.25), ("2", 2.0), ("1500m", 1.5), ("100n", 1e-7)])
def test_cpu_quantities_become_cores(q: str, cores: float) -> None:
    assert cpu_cores(q) == pytest.approx(cores)


@pytest.mark.parametrize(("q", "n"), [("128Mi", 128 * 2**20), ("1G", 10**9), ("16Gi", 16 * 2**30), ("1000", 1000)])
def test_memory_quantities_become_bytes(q: str, n: int) -> None:
    assert memory_bytes(q) == n


def test_node_allocatable_capacity_and_conditions_are_read() -> None:
    n = parse_node(k.node("n1", cpu="8", memory="32Gi", conditions={"MemoryPressure": "True"}))
    assert (n.allocatable_cpu, n.allocatable_memory, n.capacity_cpu) == (8.0, 32 * 2**30, 8.0)
    assert n.conditions["MemoryPressure"] == "True" and n.conditions["Ready"] == "True"


def test_pod_limit_is_only_known_when_every_container_has_one() -> None:
    p = parse_pod(
        k.pod("a", "p", node_name="n", containers=[k.container("x", requests={"cpu": "1"}, limits={"cpu": "2"}), k.container("y", requests={"cpu": "500m"})])
    )
    assert p.total("cpu_request", every=False) == pytest.approx(1.5)
    assert p.total("cpu_limit", every=True) is None
    assert p.total("memory_request", every=False) is None


def test_owners_resolve_deployments_and_cronjobs_and_ask_for_a_relist_only_for_unknown_owners() -> None:
    o = Owners()
    web = parse_pod(k.pod("shop", "web-abc-1", node_name="n", owner=("ReplicaSet", "web-abc")))
    job = parse_pod(k.pod("ops", "backup-1-x", node_name="n", owner=("Job", "backup-1")))
    ds = parse_pod(k.pod("kube-system", "proxy-1", node_name="n", owner=("DaemonSet", "proxy")))
    assert o.unknown([web, job, ds]) == {"ReplicaSet", "Job"}
    o.set_replicasets([k.replicaset("shop", "web-abc", deployment="web")])
    o.set_jobs([k.job("ops", "backup-1", cronjob="backup")])
    assert o.unknown([web, job, ds]) == set()
    for p in (web, job, ds):
        o.resolve(p)
    assert [(p.workload_kind, p.workload_name) for p in (web, job, ds)] == [("Deployment", "web"), ("CronJob", "backup"), ("DaemonSet", "proxy")]
    new = parse_pod(k.pod("shop", "web-def-1", node_name="n", owner=("ReplicaSet", "web-def")))
    assert o.unknown([web, new]) == {"ReplicaSet"}


def test_a_bare_replicaset_is_its_own_workload() -> None:
    o = Owners()
    o.set_replicasets([k.replicaset("a", "rs", deployment=None)])
    p = parse_pod(k.pod("a", "rs-1", node_name="n", owner=("ReplicaSet", "rs")))
    o.resolve(p)
    assert (p.workload_kind, p.workload_name) == ("ReplicaSet", "rs")
