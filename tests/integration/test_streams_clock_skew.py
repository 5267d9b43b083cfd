"""A node whose clock runs fast cannot make its neighbours look silent (real Kafka, real ``kubepulse worker``).

All three nodes share one partition, as nodes of one cluster do. Records carry the time the collector
sent them (Kafka's CreateTime) as in real operation, one scrape of each node every 15 s; node "fast"
stamps its scrapes 5 minutes (then 24 hours) ahead. Without the bound on each scrape's time, the
partition's event-time clock jumps ahead with it: the others are ticked as silent (their windows closed,
their next samples dropped as late, their firing alert resolved and fired again), and 24 hours ahead
their state is forgotten.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer

from kubepulse._cli_streams import create_topics
from models.codec import decode, encode
from models.records import AlertTransition, EntityRollup, NodeSample, NodeScrape
from models.settings import load_settings
from streams.topics import ALERTS, METRICS, ROLLUPS
from tests.kafkautil import new_run_id
from tests.privatestack import free_port
from tests.streamsutil import Worker, read_until

RULES = Path(__file__).parent / "data" / "streams_rules.yaml"
NOW = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
"""Sent an hour ago, minute-aligned: what a collector would have sent then."""
STEPS = 40
"""Ten minutes of scrapes: past the staleness (5 minutes) the fast node's lead would fake."""


def scrape(node: str, i: int, ahead: timedelta) -> NodeScrape:
    cpu = 3.0 if node == "hot" else 0.5  # "hot" keeps NodeCPUHigh firing the whole time
    return NodeScrape(cluster="c1", node=node, timestamp=NOW + timedelta(seconds=15 * i) + ahead, source="simulator",
                      node_stats=NodeSample(cpu_cores=cpu))


async def produce_as_sent(settings, records: list[tuple[NodeScrape, datetime]]) -> None:  # noqa: ANN001
    producer = AIOKafkaProducer(**settings.kafka.producer_kwargs())
    await producer.start()
    try:
        topic = METRICS.named(settings.kafka.topic_prefix)
        await asyncio.gather(*[await producer.send(topic, encode(s), key=s.key.encode(),
                                                   timestamp_ms=int(sent.timestamp() * 1000)) for s, sent in records])
    finally:
        await producer.stop()


async def test_a_node_with_a_fast_clock_neither_silences_nor_forgets_its_neighbours(
    stack: dict[str, str], tmp_path: Path
) -> None:
    run = new_run_id()
    settings = load_settings(
        kafka={"topic_prefix": f"t{run}.", "consumer_group": f"kp-test-{run}", "topic_partitions": 1},
        streams={"window_grace_s": 0, "rules_files": [RULES], "checkpoint_interval_s": 1.0}, http_port=0,
    )
    await create_topics(settings)
    records = []
    for i in range(STEPS):
        sent = NOW + timedelta(seconds=15 * i)
        ahead = timedelta(minutes=5) if i < STEPS // 2 else timedelta(hours=24)
        records += [(scrape("hot", i, timedelta(0)), sent), (scrape("calm", i, timedelta(0)), sent),
                    (scrape("fast", i, ahead), sent)]
    port = free_port()
    w = Worker(settings, tmp_path / "worker.log", KUBEPULSE_STREAMS__RULES_FILES=f'["{RULES}"]',
               KUBEPULSE_STREAMS__DISPATCH_ALERTS="false", KUBEPULSE_HTTP_PORT=str(port))
    try:
        await produce_as_sent(settings, records)

        def minutes(msgs: list, node: str) -> dict[datetime, int]:
            out = {}
            for k, v in msgs:
                if k == f"c1/-/node:{node}/-":
                    r = decode(EntityRollup, v)
                    if r.window == "1m":
                        out[r.window_start] = r.metrics["node.cpu_cores"].count
            return out

        want = {NOW + timedelta(minutes=m) for m in range(STEPS // 4 - 1)}
        rollups = await read_until(settings, ROLLUPS.named(settings.kafka.topic_prefix),
                                   lambda m: want <= minutes(m, "calm").keys() and want <= minutes(m, "hot").keys(),
                                   timeout=90)
        alerts = await read_until(settings, ALERTS.named(settings.kafka.topic_prefix), lambda m: False, timeout=3)
        metrics_body = __import__("urllib.request").request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    finally:
        w.stop()
    for node in ("hot", "calm"):
        got = minutes(rollups, node)
        assert {m: got[m] for m in want} == dict.fromkeys(want, 4), (node, got, w.log())
    hot = [decode(AlertTransition, v) for _, v in alerts]
    hot = [t for t in hot if t.labels.get("node") == "hot"]
    assert [t.status for t in hot] == ["firing"], [(t.status, t.starts_at, t.ends_at) for t in hot]
    assert max(Counter((t.fingerprint, t.sequence) for t in hot).values()) == 1
    late = [line for line in metrics_body.splitlines() if line.startswith("kubepulse_stream_late_samples_dropped_total{")]
    assert all(float(line.split()[-1]) == 0 for line in late), late
    clamped = [float(line.split()[-1]) for line in metrics_body.splitlines()
               if line.startswith("kubepulse_stream_clock_clamped_total{")]
    assert clamped and sum(clamped) == STEPS, "every scrape of the fast node was taken at its receive time + skew"
    assert "forgetting node c1/calm" not in w.log() and "forgetting node c1/hot" not in w.log()
