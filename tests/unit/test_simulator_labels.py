"""Scoring detections against the simulator's ground truth (collectors.simulator.labels)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collectors.simulator import Fleet, IncidentPlan, LabelsError
from collectors.simulator.labels import Detection, matches, read_labels, score, series_days
from models import fingerprint
from models.codec import encode
from models.records import AlertTransition, Anomaly, Incident

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def incident(kind: str = "cpu_spike", **kw) -> Incident:
    base = dict(
        incident_id=f"i-{kind}",
        kind=kind,
        cluster="c1",
        node="n1",
        namespace="shop",
        pod="cart-1",
        container="cart",
        metrics=["container.cpu_cores"],
        start=T0,
        end=T0 + timedelta(minutes=10),
    )
    base.update(kw)
    return Incident(**base)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_read_labels_returns_the_incidents_a_fleet_injected(tmp_path: Path) -> None:
    fleet = Fleet(clusters=1, nodes_per_cluster=2, pods_per_node=6, seed=4, incidents="none", inject=[IncidentPlan("cpu_spike", 0), IncidentPlan("disk_fill", 15)])
    injected = [i for k in range(3) for i in fleet.step(T0 + timedelta(seconds=15 * k))[2]]
    path = tmp_path / "labels.jsonl"
    path.write_bytes(b"".join(encode(i) + b"\n" for i in injected) + b"\n")
    assert read_labels(path) == injected
    assert [i.kind for i in read_labels(path)] == ["cpu_spike", "disk_fill"]


def test_read_labels_names_the_file_and_line_of_a_bad_record(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_bytes(encode(incident()) + b"\n" + b'{"incident_id": "x"}\n')
    with pytest.raises(LabelsError, match=r"labels.jsonl:2: not a valid Incident"):
        read_labels(path)
    with pytest.raises(LabelsError, match="cannot read labels file"):
        read_labels(tmp_path / "missing.jsonl")


def test_a_detection_matches_its_incidents_target_and_window_only() -> None:
    inc = incident()
    same = Detection.from_series("c1/shop/cart-1/cart/container.cpu_cores", at(3))
    assert matches(inc, same)
    assert not matches(inc, Detection.from_series("c2/shop/cart-1/cart/container.cpu_cores", at(3)))
    assert not matches(inc, Detection.from_series("c1/shop/cart-2/cart/container.cpu_cores", at(3)))
    assert not matches(inc, Detection.from_series("c1/shop/cart-1/sidecar/container.cpu_cores", at(3)))
    assert matches(inc, Detection.from_series("c1/shop/cart-1/-/pod.cpu_cores", at(3)))
    assert matches(inc, Detection.from_series("c1/shop/cart-1/iface:eth0/pod.network.rx_bytes_per_s", at(3)))
    assert not matches(inc, same.__class__(at=at(-1), cluster="c1", namespace="shop", pod="cart-1"))
    assert matches(inc, Detection(at=at(14), cluster="c1", namespace="shop", pod="cart-1"))  # within 5 min after the end
    assert not matches(inc, Detection(at=at(16), cluster="c1", namespace="shop", pod="cart-1"))
    assert not matches(inc, Detection.from_series("c1/shop/cart-1/cart/container.memory_rss_bytes", at(3)), match_metric=True)
    node_inc = incident("node_memory_pressure", namespace=None, pod=None, container=None, metrics=["node.memory_node_share"])
    assert matches(node_inc, Detection.from_series("c1/-/node:n1/-/node.memory_node_share", at(5)))
    assert not matches(node_inc, Detection.from_series("c1/-/node:n2/-/node.memory_node_share", at(5)))
    assert not matches(node_inc, Detection(at=at(5), cluster="c1", namespace="shop", pod="cart-7"))


def test_the_matcher_counts_only_the_incidents_own_entity_unless_asked_for_the_whole_node() -> None:
    inc = incident()  # a cpu_spike on c1/shop/cart-1/cart, on node n1
    node_cpu = Detection.from_series("c1/-/node:n1/-/node.cpu_cores", at(3))
    assert not matches(inc, node_cpu)  # the node's CPU is not the container's: no credit by default
    assert matches(inc, node_cpu, scope="node")
    named = incident("network_storm", container=None, metrics=["pod.network.rx_bytes_per_s", "node.network.rx_bytes_per_s"])
    assert matches(named, Detection.from_series("c1/-/node:n1/iface:eth0/node.network.rx_bytes_per_s", at(3)))
    assert not matches(named, Detection.from_series("c1/-/node:n1/iface:eth0/node.network.tx_bytes_per_s", at(3)))
    node_inc = incident("node_memory_pressure", namespace=None, pod=None, container=None, metrics=["node.memory_node_share"])
    evicted = Detection(at=at(5), cluster="c1", node="n1", namespace="shop", pod="cart-7")  # an Evicted pod on the node
    assert not matches(node_inc, evicted)
    assert matches(node_inc, evicted, scope="node")
    s = score([inc, node_inc], [node_cpu, evicted], interval_s=15)
    assert (s.detected, s.missed, s.false_alarms) == (1, [inc.incident_id], 1)  # the node's CPU is the node's own
    assert score([inc, node_inc], [node_cpu, evicted], interval_s=15, scope="node").detected == 2


def test_alerts_and_anomalies_become_detections() -> None:
    labels = {"alertname": "ContainerCpuHigh", "cluster": "c1", "namespace": "shop", "pod": "cart-1", "container": "cart", "node": "n1"}
    firing = AlertTransition(fingerprint=fingerprint(labels), status="firing", labels=labels, starts_at=at(2), rule="cpu-high")
    d = Detection.from_alert(firing)
    assert d is not None and (d.cluster, d.pod, d.container, d.at, d.source) == ("c1", "cart-1", "cart", at(2), "alert:ContainerCpuHigh")
    resolved = firing.model_copy(update={"status": "resolved", "ends_at": at(9)})
    assert Detection.from_alert(resolved) is None
    a = Anomaly(
        series_id="c1/-/node:n1/-/node.memory_node_share", cluster="c1", node="n1", metric="node.memory_node_share",
        timestamp=at(1), value=1.05, score=9.0, threshold=6.0, detector="zscore",
    )
    d2 = Detection.from_anomaly(a)
    assert (d2.node, d2.pod, d2.metric, d2.source) == ("n1", None, "node.memory_node_share", "anomaly:zscore")


def test_score_reports_detection_rate_delay_in_scrapes_and_false_alarm_episodes_per_series_day() -> None:
    spike, leak = incident("cpu_spike"), incident("memory_leak", pod="api-1", container="api", start=at(30), end=at(45))
    dets = [
        Detection.from_series("c1/shop/cart-1/cart/container.cpu_cores", at(1)),  # 4 scrapes late
        Detection.from_series("c1/shop/cart-1/cart/container.cpu_cores", at(2)),
        # one false-alarm episode of three points, then another after a long gap
        *(Detection.from_series("c1/shop/web-1/web/container.cpu_cores", at(60 + m)) for m in (0, 1, 2)),
        Detection.from_series("c1/shop/web-1/web/container.cpu_cores", at(90)),
    ]
    s = score([spike, leak], dets, interval_s=15, series_days=series_days(100, T0, T0 + timedelta(days=1)))
    assert (s.incidents, s.detected, s.detection_rate) == (2, 1, 0.5)
    assert s.delays_scrapes == [4.0] and s.median_delay_scrapes == 4.0
    assert s.false_alarms == 2 and s.false_alarms_per_series_day == pytest.approx(0.02)
    assert s.per_kind == {"cpu_spike": (1, 1), "memory_leak": (0, 1)} and s.missed == [leak.incident_id]
    assert s.as_dict()["detection_rate"] == 0.5
