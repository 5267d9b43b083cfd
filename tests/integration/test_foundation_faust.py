"""Foundation: a real ``kubepulse worker`` (Faust) reads node scrapes from Kafka, validates them, and dead-letters bad ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from kubepulse._cli_streams import create_topics
from models.codec import decode
from models.records import ContainerSample, DeadLetter, EntityRollup, KubeEvent, NodeSample, NodeScrape, ObjectRef, PodSample
from models.settings import Settings
from streams.topics import DEADLETTER, EVENTS, METRICS, ROLLUPS
from tests.kafkautil import consume, produce
from tests.streamsutil import Worker, read_until, wait_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def scrape(minute: int, cpu: float, *, node: str = "n1") -> NodeScrape:
    return NodeScrape(
        cluster="c1",
        node=node,
        timestamp=T0 + timedelta(minutes=minute),
        source="simulator",
        node_stats=NodeSample(cpu_cores=cpu),
        pods=[PodSample(namespace="shop", name="cart-1", containers=[ContainerSample(name="cart", cpu_cores=cpu / 2)])],
    )


@pytest.fixture
async def worker(stack: dict[str, str], settings: Settings, tmp_path: Path) -> AsyncIterator[Worker]:
    settings.streams.window_grace_s = 0
    settings.kafka.topic_partitions = 2
    await create_topics(settings)
    w = Worker(settings, tmp_path / "worker.log")
    yield w
    w.stop()


async def test_node_scrape_is_consumed_by_the_faust_agent_and_arrives_validated_downstream(settings: Settings, worker: Worker) -> None:
    prefix = settings.kafka.topic_prefix
    # Two scrapes a minute apart: the second closes the first one's one-minute window (grace 0).
    await produce(settings, METRICS.named(prefix), [("c1/n1", scrape(0, 1.5)), ("c1/n1", scrape(1, 2.0))])
    got = await read_until(settings, ROLLUPS.named(prefix), lambda m: len(m) >= 2, timeout=60)
    assert got, f"no rollups; worker log:\n{worker.log()}"
    rollups = {(r.entity_id, r.window): r for r in (decode(EntityRollup, v) for _, v in got)}
    node_1m = rollups[("c1/-/node:n1/-", "1m")]
    cpu = node_1m.metrics["node.cpu_cores"]
    assert (cpu.min, cpu.max, cpu.count, node_1m.window_start) == (1.5, 1.5, 1, T0)
    assert rollups[("c1/shop/cart-1/cart", "1m")].metrics["container.cpu_cores"].last == 0.75
    # One record per entity with a sample in the window (the pod itself reported no value of its own).
    assert {k for k, _ in got} == {"c1/-/node:n1/-", "c1/shop/cart-1/cart"}


@pytest.mark.parametrize(
    ("payload", "error_type", "reason_part"),
    [
        (b'{"cluster": "c1", "node": ', "json_invalid", "invalid JSON"),
        (orjson.dumps({**orjson.loads(scrape(0, 1.0).model_dump_json()), "node": 7}), "validation", "node: Input should be a valid string"),
        (orjson.dumps({k: v for k, v in orjson.loads(scrape(0, 1.0).model_dump_json()).items() if k != "timestamp"}), "validation", "timestamp: Field required"),
        (
            scrape(0, 1.0).model_dump_json().replace('"memory_page_faults_total":null', '"memory_page_faults_total":-5', 1).encode(),
            "validation",
            "greater than or equal to 0",
        ),
    ],
    ids=["bad-json", "wrong-type", "missing-field", "negative-counter"],
)
async def test_malformed_scrape_goes_to_the_dead_letter_topic_and_the_next_good_one_is_processed(
    settings: Settings, worker: Worker, payload: bytes, error_type: str, reason_part: str
) -> None:
    prefix = settings.kafka.topic_prefix
    await produce(
        settings,
        METRICS.named(prefix),
        [("c1/n1", scrape(0, 1.0)), ("c1/n1", payload), ("c1/n1", scrape(1, 3.0)), ("c1/n1", scrape(2, 5.0))],
    )
    letters = await consume(settings, DEADLETTER.named(prefix), count=1, timeout=60)
    assert letters, f"no dead letter; worker log:\n{worker.log()}"
    key, value = letters[0]
    dl = decode(DeadLetter, value)
    assert key == METRICS.named(prefix)
    assert (dl.source_topic, dl.stage, dl.error_type, dl.key, dl.offset) == (METRICS.named(prefix), "decode", error_type, "c1/n1", 1)
    assert reason_part in dl.reason
    assert dl.payload == payload.decode()
    # The scrapes after the poison one were processed: minute 1's window closed with its value.
    def minute1(msgs: list) -> list[EntityRollup]:
        return [r for r in (decode(EntityRollup, v) for k, v in msgs if k == "c1/-/node:n1/-")
                if r.window == "1m" and r.window_start == T0 + timedelta(minutes=1)]

    got = await read_until(settings, ROLLUPS.named(prefix), lambda m: bool(minute1(m)), timeout=30)
    assert [r.metrics["node.cpu_cores"].mean for r in minute1(got)] == [3.0]


async def test_the_worker_dispatches_its_own_alerts_to_the_default_console_receiver(
    stack: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    rules = Path(__file__).parent / "data" / "streams_rules.yaml"
    settings.kafka.topic_partitions = 2
    await create_topics(settings)
    notifications = tmp_path / "notifications.jsonl"
    # No alerting config: the console receiver, which also appends Alertmanager's webhook JSON to this file.
    w = Worker(settings, tmp_path / "worker.log", KUBEPULSE_STREAMS__RULES_FILES=f'["{rules}"]',
               KUBEPULSE_ALERTING__NOTIFICATIONS_FILE=str(notifications))
    try:
        ev = KubeEvent(cluster="c1", uid="ev-9", namespace="shop", name="cart-9.1", reason="OOMKilled", type="Warning",
                       message="Container cart was OOM-killed", last_seen=T0,
                       involved_object=ObjectRef(kind="Pod", name="cart-9", namespace="shop"))
        await produce(settings, EVENTS.named(settings.kafka.topic_prefix), [(ev.key, ev)])

        async def notified() -> list[dict]:
            return [orjson.loads(line) for line in notifications.read_text().splitlines()] if notifications.exists() else []

        lines = await wait_for(notified, timeout=60, what=f"a notification in {notifications}; worker log:\n{w.log()}")
    finally:
        w.stop()
    [body] = lines
    assert body["status"] == "firing"
    assert [(a["labels"]["alertname"], a["labels"]["pod"], a["status"]) for a in body["alerts"]] == [
        ("ContainerOOMKilled", "cart-9", "firing")]
