"""Recovery and scaling through real Kafka: workers killed with SIGKILL, state restored, no transition dropped or repeated."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kubepulse._cli_streams import create_topics
from models.codec import decode
from models.records import AlertTransition, NodeSample, NodeScrape, Rollup
from models.settings import Settings, load_settings
from streams.topics import ALERTS, METRICS, ROLLUPS
from tests.kafkautil import produce
from tests.streamsutil import Worker, read_until

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = Path(__file__).parent / "data" / "streams_rules.yaml"


def scrape(node: str, i: int, cpu: float) -> NodeScrape:
    return NodeScrape(cluster="c1", node=node, timestamp=T0 + timedelta(seconds=15 * i), source="simulator",
                      node_stats=NodeSample(cpu_cores=cpu))


def isolated_settings(partitions: int) -> Settings:
    run = uuid.uuid4().hex[:10]
    return load_settings(
        kafka={"topic_prefix": f"t{run}.", "consumer_group": f"kp-test-{run}", "topic_partitions": partitions},
        streams={"window_grace_s": 0, "rules_files": [RULES], "checkpoint_interval_s": 0.2},
        http_port=0,
    )


def start(settings: Settings, log: Path) -> Worker:
    return Worker(settings, log, KUBEPULSE_STREAMS__RULES_FILES=f'["{RULES}"]')


def node_rollups(msgs: list, sid: str) -> dict[datetime, set[tuple]]:
    """Window start → the distinct (min, max, sum, count) published for it (replays may repeat a record, never change it)."""
    out: dict[datetime, set[tuple]] = {}
    for k, v in msgs:
        if k == sid:
            r = decode(Rollup, v)
            if r.window == "1m":
                out.setdefault(r.window_start, set()).add((r.min, r.max, r.sum, r.count))
    return out


async def test_a_worker_killed_mid_stream_is_replaced_with_window_and_alert_state_restored_and_no_duplicate_transition(
    stack: dict[str, str], tmp_path: Path
) -> None:
    settings = isolated_settings(2)
    await create_topics(settings)
    metrics, prefix = METRICS.named(settings.kafka.topic_prefix), settings.kafka.topic_prefix
    cpus = [1.0, 1.0] + [3.0] * 7 + [1.0] * 8  # fires at scrape 6, resolves at scrape 9
    first = start(settings, tmp_path / "a.log")
    try:
        # Up to scrape 7: the alert fires, minute 0 closes, minute 1 is half full when the worker dies.
        await produce(settings, metrics, [("c1/rec", scrape("rec", i, c)) for i, c in enumerate(cpus[:7])])
        fired = await read_until(settings, ALERTS.named(prefix), lambda m: len(m) >= 1, timeout=60)
        assert [decode(AlertTransition, v).status for _, v in fired] == ["firing"], first.log()
    finally:
        first.kill()
    second = start(settings, tmp_path / "b.log")
    try:
        await produce(settings, metrics, [("c1/rec", scrape("rec", i, c)) for i, c in enumerate(cpus) if i >= 7])
        alerts = await read_until(settings, ALERTS.named(prefix), lambda m: len(m) >= 2, timeout=90)
        sid = "c1/-/node:rec/-/node.cpu_cores"
        rollups = await read_until(settings, ROLLUPS.named(prefix), lambda m: len(node_rollups(m, sid)) >= 3, timeout=30)
        # Anything the replay would publish twice would be here by now (the later minutes are already out).
        alerts = await read_until(settings, ALERTS.named(prefix), lambda m: False, timeout=3)
    finally:
        second.stop()
    transitions = [decode(AlertTransition, v) for _, v in alerts]
    assert [(t.status, t.sequence) for t in transitions] == [("firing", transitions[0].sequence), ("resolved", transitions[1].sequence)], second.log()
    assert transitions[1].ends_at == T0 + timedelta(seconds=15 * 9)
    # Minute 1 (scrapes 4-7) straddles the kill: exact, because window state and replay agree.
    windows = node_rollups(rollups, sid)
    assert windows[T0] == {(1.0, 3.0, 8.0, 4)}
    assert windows[T0 + timedelta(minutes=1)] == {(3.0, 3.0, 12.0, 4)}
    assert windows[T0 + timedelta(minutes=2)] == {(1.0, 3.0, 6.0, 4)}


async def test_two_workers_split_the_partitions_and_the_survivor_of_a_kill_loses_and_repeats_nothing(
    stack: dict[str, str], tmp_path: Path
) -> None:
    settings = isolated_settings(4)
    await create_topics(settings)
    metrics, prefix = METRICS.named(settings.kafka.topic_prefix), settings.kafka.topic_prefix
    nodes = [f"s{i}" for i in range(8)]
    cpus = [1.0, 1.0] + [3.0] * 7 + [1.0] * 8
    a, b = start(settings, tmp_path / "a.log"), start(settings, tmp_path / "b.log")
    try:
        await produce(settings, metrics, [(f"c1/{n}", scrape(n, i, c)) for i, c in enumerate(cpus[:8]) for n in nodes])
        await read_until(settings, ALERTS.named(prefix), lambda m: len(m) >= len(nodes), timeout=90)
        a.kill()
        await produce(settings, metrics, [(f"c1/{n}", scrape(n, i, c)) for i, c in enumerate(cpus) if i >= 8 for n in nodes])
        await read_until(settings, ALERTS.named(prefix), lambda m: len(m) >= 2 * len(nodes), timeout=90)
        alerts = await read_until(settings, ALERTS.named(prefix), lambda m: False, timeout=3)
    finally:
        a.stop()
        b.stop()
    seen: dict[str, list[str]] = {}
    for _, v in alerts:
        t = decode(AlertTransition, v)
        seen.setdefault(t.labels["node"], []).append(t.status)
    assert seen == {n: ["firing", "resolved"] for n in nodes}, b.log()
