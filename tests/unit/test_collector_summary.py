"""Summary + specs -> NodeScrape: joins, utilisation, null limits, PVCs and malformed input."""

from __future__ import annotations

import pytest

from collectors._inventory import Owners, parse_node, parse_pod
from collectors._rates import Counters
from collectors._summary import build_from_metrics, build_from_summary
from collectors.errors import MalformedPayload
from collectors.testing import payloads as k
from models.codec import decode
from models.records import NodeScrape

T0 = 1_767_268_800.0


def setup():
    node = parse_node(k.node("n1", cpu="2", memory="8Gi"))
    pod_obj = k.pod(
        "db",
        "pg-0",
        node_name="n1",
        owner=("StatefulSet", "pg"),
        containers=[k.container("pg", requests={"cpu": "1", "memory": "1Gi"})],
    )
    pod = parse_pod(pod_obj)
    Owners().resolve(pod)
    return node, pod, pod_obj["metadata"]["uid"]


def summary_at(uid: str, t: float, cpu_ns: int, *, vol_used: int = 5 * 2**30) -> dict:
    return k.summary(
        "n1",
        time=t,
        cpu_ns=cpu_ns * 2,
        working_set=2**30,
        pods=[
            k.pod_stats(
                "db",
                "pg-0",
                uid=uid,
                time=t,
                cpu_ns=cpu_ns,
                working_set=2**29,
                volumes=[k.volume_stats("pgdata", used=vol_used, capacity=20 * 2**30, pvc="pgdata-pg-0", namespace="db"), k.volume_stats("tmp", used=1, capacity=2)],
                containers=[k.container_stats("pg", time=t, cpu_ns=cpu_ns, working_set=2**29)],
            )
        ],
    )


def test_a_container_without_limit_has_null_limit_share_and_real_request_and_node_shares() -> None:
    node, pod, uid = setup()
    c = Counters()
    build_from_summary(summary_at(uid, T0, 10**9), cluster="c", node=node, pods={("db", "pg-0"): pod}, counters=c)
    data, npods, samples = build_from_summary(summary_at(uid, T0 + 20, 21 * 10**9), cluster="c", node=node, pods={("db", "pg-0"): pod}, counters=c)
    scrape = decode(NodeScrape, data)
    (pg,) = scrape.pods[0].containers
    assert (npods, samples) == (1, 3)
    assert pg.cpu_cores == pytest.approx(1.0)
    assert pg.cpu_request_share == pytest.approx(1.0) and pg.cpu_node_share == pytest.approx(0.5)
    assert pg.cpu_limit_share is None and pg.memory_limit_share is None
    assert pg.memory_request_share == pytest.approx(0.5)
    assert (scrape.pods[0].workload_kind, scrape.pods[0].workload_name) == ("StatefulSet", "pg")


def test_volumes_carry_their_pvc_and_other_volumes_have_none() -> None:
    node, pod, uid = setup()
    data, _, _ = build_from_summary(summary_at(uid, T0, 1), cluster="c", node=node, pods={("db", "pg-0"): pod}, counters=Counters())
    vols = {v.name: v for v in decode(NodeScrape, data).pods[0].volumes}
    assert vols["pgdata"].pvc_name == "pgdata-pg-0" and vols["pgdata"].used_share == pytest.approx(0.25)
    assert vols["pgdata"].inodes_used == 10 and vols["pgdata"].inodes == 1_000_000
    assert vols["tmp"].pvc_name is None


def test_a_pod_whose_uid_differs_from_the_listed_one_is_published_without_the_old_spec() -> None:
    node, pod, _ = setup()
    data, _, _ = build_from_summary(summary_at("another-uid", T0, 1), cluster="c", node=node, pods={("db", "pg-0"): pod}, counters=Counters())
    p = decode(NodeScrape, data).pods[0]
    assert p.uid == "another-uid" and p.workload_kind is None and p.containers[0].requests.cpu_cores is None


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ([], "no 'node' object"),
        ({"node": {"nodeName": "n1"}, "pods": [{"podRef": {"name": "x"}}]}, "KeyError"),
        ({"node": {"nodeName": "n1", "cpu": {"time": "2026-01-01T00:00:00Z", "usageCoreNanoSeconds": -5}}}, "non-negative integer, got -5"),
        ({"node": {"nodeName": "n1", "memory": {"workingSetBytes": "12"}}}, "non-negative integer, got '12'"),
        ({"node": {"nodeName": "n1", "cpu": {"time": "yesterday", "usageCoreNanoSeconds": 1}}}, "Invalid isoformat"),
    ],
)
def test_a_malformed_summary_raises_malformed_payload_naming_the_problem(payload: object, why: str) -> None:
    node, pod, _ = setup()
    with pytest.raises(MalformedPayload, match=why):
        build_from_summary(payload, cluster="c", node=node, pods={}, counters=Counters())


def test_metrics_api_fallback_sums_containers_into_the_pod_and_keeps_null_limits() -> None:
    node, pod, _ = setup()
    data, npods, _ = build_from_metrics(
        k.node_metrics("n1", cpu="500m", memory="4Gi"),
        [k.pod_metrics("db", "pg-0", containers={"pg": ("250m", "512Mi")})],
        cluster="c",
        node=node,
        pods={("db", "pg-0"): pod},
    )
    s = decode(NodeScrape, data)
    assert s.source == "metrics.k8s.io" and npods == 1
    assert s.node_stats.cpu_cores == pytest.approx(0.5) and s.node_stats.cpu_node_share == pytest.approx(0.25)
    assert s.pods[0].cpu_cores == pytest.approx(0.25) and s.pods[0].cpu_limit_share is None
    assert s.pods[0].containers[0].memory_request_share == pytest.approx(0.5)
