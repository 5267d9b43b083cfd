"""The simulator publishing to the real Kafka: topics (metrics, events, quotas, incidents), keys, labels file, pacing, and the CLI."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from typer.testing import CliRunner

from collectors.simulator import Fleet, IncidentPlan, run
from collectors.simulator.labels import read_labels
from kubepulse.cli import app
from models.codec import decode, encode
from models.records import Incident, KubeEvent, NodeScrape, QuotaScrape
from models.settings import Settings
from streams.topics import EVENTS, INCIDENTS, METRICS, QUOTAS
from tests.kafkautil import consume

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def fleet() -> Fleet:
    return Fleet(
        clusters=1,
        nodes_per_cluster=2,
        pods_per_node=4,
        seed=8,
        incidents="none",
        inject=[IncidentPlan("crash_loop", 0, 120), IncidentPlan("network_storm", 15, 120)],
        restart_every_s=None,
        rollout_every_s=None,
    )


async def test_run_publishes_scrapes_events_quotas_and_incidents_and_writes_the_labels_file(stack, settings: Settings, tmp_path: Path) -> None:
    labels = tmp_path / "out" / "labels.jsonl"
    stats = await run(settings, iterations=2, fleet=fleet(), start=T0, no_sleep=True, labels_file=labels)
    assert (stats.steps, stats.scrapes, stats.incidents) == (2, 4, 2)
    assert stats.quotas > 0 and stats.as_dict()["quotas"] == stats.quotas
    prefix = settings.kafka.topic_prefix
    metrics = await consume(settings, METRICS.named(prefix), count=4)
    events = await consume(settings, EVENTS.named(prefix), count=stats.events)
    quotas = await consume(settings, QUOTAS.named(prefix), count=stats.quotas)
    incidents = await consume(settings, INCIDENTS.named(prefix), count=2)

    # What Kafka holds is exactly what the same fleet generates offline, record for record.
    expected = fleet()
    exp_scrapes, exp_events, exp_incidents, exp_quotas = [], [], [], []
    for k in range(2):
        s, e, i = expected.step(T0 + timedelta(seconds=15 * k))
        exp_scrapes += s
        exp_events += e
        exp_incidents += i
        exp_quotas += expected.quotas()
    assert sorted(metrics) == sorted((s.key, encode(s)) for s in exp_scrapes)
    assert sorted(events) == sorted((e.key, encode(e)) for e in exp_events)
    assert sorted(quotas) == sorted((q.key, encode(q)) for q in exp_quotas)
    # Keyed cluster/namespace/name, one per namespace and step, and the shop quota close to full.
    got_quotas = [decode(QuotaScrape, v) for _, v in quotas]
    assert [k for k, _ in quotas] == [q.key for q in got_quotas] and len({k for k, _ in quotas}) == stats.quotas // 2
    shop = next(q for q in got_quotas if q.key == "prod-eu-west/shop/compute")
    assert 0.92 <= shop.used["requests.memory"] / shop.hard["requests.memory"] <= 0.97
    assert sorted(incidents) == sorted((i.key, encode(i)) for i in exp_incidents)

    scrapes = [decode(NodeScrape, v) for _, v in metrics]
    assert {s.timestamp for s in scrapes} == {T0, T0 + timedelta(seconds=15)}
    backoff = [decode(KubeEvent, v) for _, v in events]
    assert [e.count for e in sorted((e for e in backoff if e.reason == "BackOff"), key=lambda e: e.count)] == [1, 2]
    got = [decode(Incident, v) for _, v in incidents]
    assert {i.kind for i in got} == {"crash_loop", "network_storm"}
    assert [k for k, _ in incidents] == [i.cluster for i in got]
    # The labels file holds the same ground truth, one JSON line each.
    assert sorted(read_labels(labels), key=lambda i: i.incident_id) == sorted(got, key=lambda i: i.incident_id)


async def test_accelerated_run_paces_steps_by_interval_over_speed_and_stops_on_the_event(stack, settings: Settings) -> None:
    f = Fleet(clusters=1, nodes_per_cluster=1, pods_per_node=3, seed=2, incidents="none", interval_s=15)
    began = time.monotonic()
    stats = await run(settings, iterations=4, fleet=f, speed=50)  # 15 s simulated every 0.3 s
    wall = time.monotonic() - began
    assert stats.steps == 4 and 0.85 <= stats.wall_s and wall < 10
    assert stats.last_timestamp - stats.first_timestamp == timedelta(seconds=45)
    # Simulated time starts from now, in UTC.
    assert abs((stats.first_timestamp - datetime.now(timezone.utc)).total_seconds()) < 15

    # Stop 0.5 s into the first step (3 s apart at speed 5), counted from when publishing
    # starts: the producer's start-up (a new topic's leader election) is not part of the run.
    stop = asyncio.Event()
    fleet2 = Fleet(clusters=1, nodes_per_cluster=1, pods_per_node=3, seed=2, incidents="none")
    step = fleet2.step

    def step_then_stop(now: datetime):  # type: ignore[no-untyped-def]
        if not stepped:
            asyncio.get_running_loop().call_later(0.5, stop.set)
        stepped.append(now)
        return step(now)

    stepped: list[datetime] = []
    fleet2.step = step_then_stop  # type: ignore[method-assign]
    stats2 = await run(settings, fleet=fleet2, speed=5, stop=stop)
    assert stats2.steps == len(stepped) == 1 and stats2.wall_s < 3


def test_cli_simulate_once_publishes_one_interval_under_the_configured_prefix(stack, settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "kubepulse.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"topic_prefix": settings.kafka.topic_prefix}}))
    labels = tmp_path / "labels.jsonl"
    result = CliRunner().invoke(
        app,
        ["simulate", "--once", "--clusters", "2", "--nodes", "2", "--pods", "3", "--seed", "5", "--inject", "cpu_spike@0",
         "--labels-file", str(labels), "--config", str(config)],
    )
    assert result.exit_code == 0, result.output
    assert "incident sim5-00001-cpu-spike cpu_spike" in result.output
    assert '"scrapes": 4' in result.output.splitlines()[-1]
    (inc,) = read_labels(labels)
    got = asyncio.run(consume(settings, METRICS.named(settings.kafka.topic_prefix), count=4))
    assert len(got) == 4 and {k.split("/")[0] for k, _ in got} == {"prod-eu-west", "prod-us-east"}
    assert inc.cluster in {k.split("/")[0] for k, _ in got}
