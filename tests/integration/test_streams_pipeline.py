"""End to end through Kafka and a real ``kubepulse worker``: scripted scrapes and Events in, exact rollups, anomalies and alert transitions out.

One worker serves the module (its start-up is most of the time); each test uses its own node, so the outputs never mix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubepulse._cli_streams import create_topics
from models.codec import decode
from models.records import (AlertTransition, Anomaly, DeadLetter, KubeEvent, NodeSample, NodeScrape, ObjectRef, PodSample,
                            QuotaScrape, EntityRollup, Volume)
from models.settings import Settings, load_settings
from streams.topics import ALERTS, ANOMALIES, DEADLETTER, EVENTS, METRICS, QUOTAS, ROLLUPS
from tests.kafkautil import new_run_id, produce
from tests.streamsutil import Worker, read_until

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = Path(__file__).parent / "data" / "streams_rules.yaml"


def node_scrape(node: str, i: int, cpu: float, *, volume_used: int | None = None) -> NodeScrape:
    """Scrape ``i`` of a node (every 15 s from T0)."""
    pods = []
    if volume_used is not None:
        pods.append(PodSample(namespace="db", name=f"pg-{node}", volumes=[
            Volume(name="data", pvc_name="pg-data", used_bytes=volume_used, capacity_bytes=1_000_000_000)]))
    return NodeScrape(cluster="c1", node=node, timestamp=T0 + timedelta(seconds=15 * i), source="simulator",
                      node_stats=NodeSample(cpu_cores=cpu), pods=pods)


@pytest.fixture(scope="module")
async def e2e(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Settings, Worker]]:
    run = new_run_id()
    settings = load_settings(
        kafka={"topic_prefix": f"t{run}.", "consumer_group": f"kp-test-{run}", "topic_partitions": 2},
        # The detector is pinned: the test asserts its baseline and name, not the current default's.
        streams={"window_grace_s": 0, "rules_files": [RULES], "detector": "seasonal_z"},
        http_port=0,
    )
    await create_topics(settings)
    w = Worker(settings, tmp_path_factory.mktemp("worker") / "worker.log",
               KUBEPULSE_STREAMS__RULES_FILES=f'["{RULES}"]', KUBEPULSE_STREAMS__DETECTOR="seasonal_z")
    yield settings, w
    w.stop()


async def alerts_of(settings: Settings, worker: Worker, node_or_pod: str, done: Callable[[list[AlertTransition]], bool]) -> list[AlertTransition]:
    def mine(msgs: list) -> list[AlertTransition]:
        got = [decode(AlertTransition, v) for _, v in msgs]
        return [t for t in got if node_or_pod in (t.labels.get("node"), t.labels.get("pod"))]

    msgs = await read_until(settings, ALERTS.named(settings.kafka.topic_prefix), lambda m: done(mine(m)), timeout=60)
    out = mine(msgs)
    assert done(out), f"alerts for {node_or_pod}: {[(t.labels['alertname'], t.status) for t in out]}\n{worker.log()}"
    return out


async def test_rollups_of_one_minute_and_one_hour_are_exact(e2e: tuple[Settings, Worker]) -> None:
    settings, worker = e2e
    cpus = [1.0, 2.0, 3.0, 4.0] + [0.5 + (i % 7) / 10 for i in range(4 * 59)] + [9.0]  # an hour, then one to close it
    await produce(settings, METRICS.named(settings.kafka.topic_prefix), [("c1/roll", node_scrape("roll", i, c)) for i, c in enumerate(cpus)])
    eid = "c1/-/node:roll/-"

    def rollups(msgs: list) -> dict:
        return {(r.window, r.window_start): r for r in (decode(EntityRollup, v) for k, v in msgs if k == eid)}

    msgs = await read_until(settings, ROLLUPS.named(settings.kafka.topic_prefix), lambda m: ("1h", T0) in rollups(m), timeout=90)
    got = rollups(msgs)
    first = got[("1m", T0)]
    cpu = first.metrics["node.cpu_cores"]
    assert (cpu.min, cpu.max, cpu.mean, cpu.last, cpu.sum, cpu.count) == (1.0, 4.0, 2.5, 4.0, 10.0, 4)
    assert (first.kind, first.node, first.window_end) == ("node", "roll", T0 + timedelta(minutes=1))
    assert len([k for k in got if k[0] == "1m"]) == 60
    hour = got[("1h", T0)].metrics["node.cpu_cores"]
    hour_values = cpus[:240]
    assert (hour.min, hour.max, hour.count, hour.last) == (0.5, 4.0, 240, hour_values[-1])
    assert hour.sum == pytest.approx(sum(hour_values)) and hour.mean == pytest.approx(sum(hour_values) / 240)


async def test_a_threshold_with_for_fires_after_the_for_duration_and_then_resolves(e2e: tuple[Settings, Worker]) -> None:
    settings, worker = e2e
    cpus = [1.0, 1.0] + [3.0] * 6 + [1.0] * 3
    await produce(settings, METRICS.named(settings.kafka.topic_prefix), [("c1/thr", node_scrape("thr", i, c)) for i, c in enumerate(cpus)])
    got = await alerts_of(settings, worker, "thr", lambda ts: len(ts) >= 2)
    assert [t.status for t in got] == ["firing", "resolved"]
    firing, resolved = got
    assert firing.labels["alertname"] == "NodeCPUHigh" and firing.fingerprint == resolved.fingerprint
    assert firing.value == 3.0 and resolved.sequence > firing.sequence
    # Above the threshold from scrape 2 (T0+30s); `for: 1m` makes it fire at T0+90s, not before.
    assert firing.starts_at >= T0 + timedelta(seconds=30) and resolved.ends_at == T0 + timedelta(seconds=120)


async def test_a_flapping_value_between_the_resolve_threshold_and_the_threshold_pages_once(e2e: tuple[Settings, Worker]) -> None:
    settings, worker = e2e
    cpus = [3.0] * 6 + [1.8, 2.2, 1.8, 2.2, 1.7, 2.4, 1.6, 2.1] + [1.0]
    await produce(settings, METRICS.named(settings.kafka.topic_prefix), [("c1/flap", node_scrape("flap", i, c)) for i, c in enumerate(cpus)])
    got = await alerts_of(settings, worker, "flap", lambda ts: any(t.status == "resolved" for t in ts))
    assert [t.status for t in got] == ["firing", "resolved"]
    assert got[1].ends_at == T0 + timedelta(seconds=15 * 14)


async def test_predicted_disk_full_fires_while_the_disk_is_still_far_from_full(e2e: tuple[Settings, Worker]) -> None:
    settings, worker = e2e
    used = [500_000_000 + i * 5_000_000 for i in range(12)]  # 50 % → 55.5 %, +20 MB/min: full in ~6 h... then faster
    used += [used[-1] + i * 40_000_000 for i in range(1, 9)]  # +160 MB/min: full in well under 4 h
    await produce(settings, METRICS.named(settings.kafka.topic_prefix),
                  [("c1/disk", node_scrape("disk", i, 0.5, volume_used=u)) for i, u in enumerate(used)])
    got = await alerts_of(settings, worker, "pg-disk", lambda ts: len(ts) >= 1)
    firing = got[0]
    assert (firing.status, firing.labels["alertname"], firing.labels["persistentvolumeclaim"]) == ("firing", "VolumeFullSoon", "pg-data")
    i = int((firing.starts_at - T0).total_seconds() // 15)
    assert used[i] < 0.9 * 1_000_000_000, "predicted only once the disk was nearly full"
    assert 0 < firing.value < 4 * 3600


async def test_an_oomkilled_event_raises_an_alert_for_its_pod(e2e: tuple[Settings, Worker]) -> None:
    settings, worker = e2e
    ev = KubeEvent(cluster="c1", uid="ev-1", namespace="shop", name="cart-oom.1", reason="OOMKilled", type="Warning",
                   message="Container cart was OOM-killed", last_seen=T0,
                   involved_object=ObjectRef(kind="Pod", name="cart-oom", namespace="shop"))
    await produce(settings, EVENTS.named(settings.kafka.topic_prefix), [(ev.key, ev)])
    got = await alerts_of(settings, worker, "cart-oom", lambda ts: len(ts) >= 1)
    assert [(t.status, t.labels["alertname"], t.labels["namespace"], t.starts_at) for t in got] == [
        ("firing", "ContainerOOMKilled", "shop", T0)]


async def test_a_spike_after_a_steady_baseline_is_published_as_an_anomaly_with_value_and_baseline(e2e: tuple[Settings, Worker]) -> None:
    settings, worker = e2e
    cpus = [1.0 + 0.01 * (i % 5) for i in range(40)] + [5.0]
    await produce(settings, METRICS.named(settings.kafka.topic_prefix), [("c1/anom", node_scrape("anom", i, c)) for i, c in enumerate(cpus)])
    sid = "c1/-/node:anom/-/node.cpu_cores"
    msgs = await read_until(settings, ANOMALIES.named(settings.kafka.topic_prefix), lambda m: any(k == sid for k, _ in m), timeout=60)
    got = [decode(Anomaly, v) for k, v in msgs if k == sid]
    assert len(got) == 1, worker.log()
    a = got[0]
    assert (a.value, a.timestamp, a.node, a.metric) == (5.0, T0 + timedelta(seconds=15 * 40), "anom", "node.cpu_cores")
    assert a.baseline == pytest.approx(1.02, abs=0.01) and a.score > a.threshold == settings.streams.anomaly_threshold
    assert a.detector == "seasonal_z"


async def test_a_namespace_quota_above_ninety_percent_fires_after_for_and_resolves_when_it_drops(e2e: tuple[Settings, Worker]) -> None:
    settings, worker = e2e
    used = [2.0, 2.0, 3.8, 3.8, 3.8, 3.8, 3.8, 4.0, 3.0]  # of 4 cores: 95 % from scrape 2, 100 % (full) at 7, then 75 %

    def quota(i: int, cpu: float) -> QuotaScrape:
        return QuotaScrape(cluster="c1", namespace="team-q", name="compute", timestamp=T0 + timedelta(seconds=15 * i),
                           source="simulator", hard={"requests.cpu": 4.0, "pods": 10}, used={"requests.cpu": cpu, "pods": 3})

    topic = QUOTAS.named(settings.kafka.topic_prefix)
    await produce(settings, topic, [(quota(i, u).key, quota(i, u)) for i, u in enumerate(used)])
    await produce(settings, topic, [("c1/team-q/broken", b'{"cluster": "c1", "namespace": "team-q", "name": "broken"}')])

    def mine(msgs: list) -> list[AlertTransition]:
        return [t for t in (decode(AlertTransition, v) for _, v in msgs) if t.labels.get("namespace") == "team-q"]

    msgs = await read_until(settings, ALERTS.named(settings.kafka.topic_prefix), lambda m: len(mine(m)) >= 2, timeout=60)
    got = mine(msgs)
    assert [t.status for t in got] == ["firing", "resolved"], worker.log()
    firing, resolved = got
    assert (firing.labels["alertname"], firing.labels["resource"], firing.labels["resourcequota"]) == (
        "QuotaAlmostFull", "requests.cpu", "compute")
    # Above 90 % from T0+30 s, `for: 1m`: fires at T0+90 s with the value then; 100 % is not "almost full".
    assert (firing.starts_at, firing.value) == (T0 + timedelta(seconds=30), 0.95)
    assert resolved.ends_at == T0 + timedelta(seconds=15 * 7)
    assert "team-q uses 95% of its requests.cpu quota" in firing.annotations["summary"]

    dead = await read_until(settings, DEADLETTER.named(settings.kafka.topic_prefix),
                            lambda m: any(b"broken" in (decode(DeadLetter, v).key or "").encode() for _, v in m), timeout=30)
    dl = next(d for d in (decode(DeadLetter, v) for _, v in dead) if d.key == "c1/team-q/broken")
    assert (dl.source_topic, dl.stage) == (topic, "decode") and "timestamp" in dl.reason
