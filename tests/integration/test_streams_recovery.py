"""Recovery and scaling through real Kafka: workers killed with SIGKILL or stopped, state restored, no transition dropped or repeated.

Every test runs real ``kubepulse worker`` processes on 4 partitions. A transition is identified by
(fingerprint, sequence): each must be on kubepulse.alerts.v1 exactly once. Rollups are exact; after a
SIGKILL the input processed since the last checkpoint is processed again, so a rollup whose window
closed in that stretch can be published a second time -- byte for byte the same record under the same
key (windows are a pure function of the input), which Elasticsearch absorbs because document ids are
derived from the record. After a clean stop or a rebalance nothing at all is published twice.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka.partitioner import murmur2

from kubepulse._cli_streams import create_topics
from models.codec import decode
from models.records import AlertTransition, EntityRollup, NodeSample, NodeScrape
from models.settings import Settings, load_settings
from streams.topics import ALERTS, METRICS, ROLLUPS
from tests.kafkautil import new_run_id, produce
from tests.streamsutil import Worker, committed_offsets, metrics_assignment, read_until, wait_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = Path(__file__).parent / "data" / "streams_rules.yaml"
PARTITIONS = 4
CPUS = [1.0, 1.0] + [3.0] * 7 + [1.0] * 8
"""NodeCPUHigh (> 2 for 1m) fires at scrape 6 and resolves at scrape 9; minutes 0-3 close at scrapes 4, 8, 12, 16."""


def scrape(node: str, i: int) -> NodeScrape:
    return NodeScrape(cluster="c1", node=node, timestamp=T0 + timedelta(seconds=15 * i), source="simulator",
                      node_stats=NodeSample(cpu_cores=CPUS[i]))


def scrapes(nodes: list[str], first: int, last: int) -> list[tuple[str, NodeScrape]]:
    """Scrapes ``first``..``last`` (inclusive) of each node, in time order, keyed like the collector keys them."""
    return [(f"c1/{n}", scrape(n, i)) for i in range(first, last + 1) for n in nodes]


def partition_of(node: str) -> int:
    """Where the producer's default partitioner puts the node's key (Kafka's murmur2)."""
    return (murmur2(f"c1/{node}".encode()) & 0x7FFFFFFF) % PARTITIONS


def nodes_on_every_partition(per_partition: int) -> list[str]:
    """Node names that put ``per_partition`` nodes on each partition: both workers of a pair get work."""
    by_partition: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    i = 0
    while any(len(v) < per_partition for v in by_partition.values()):
        name = f"s{i}"
        if len(by_partition[partition_of(name)]) < per_partition:
            by_partition[partition_of(name)].append(name)
        i += 1
    return sorted(n for v in by_partition.values() for n in v)


def isolated_settings() -> Settings:
    run = new_run_id()
    return load_settings(
        kafka={"topic_prefix": f"t{run}.", "consumer_group": f"kp-test-{run}", "topic_partitions": PARTITIONS},
        streams={"window_grace_s": 0, "rules_files": [RULES], "checkpoint_interval_s": 0.2},
        http_port=0,
    )


def start(settings: Settings, log: Path) -> Worker:
    # The alert dispatcher is another part's (its own tests cover it); here it would only add start-up time.
    return Worker(settings, log, KUBEPULSE_STREAMS__RULES_FILES=f'["{RULES}"]', KUBEPULSE_STREAMS__DISPATCH_ALERTS="false")


def transitions(msgs: list) -> list[AlertTransition]:
    return [decode(AlertTransition, v) for _, v in msgs]


def assert_each_transition_once(ts: list[AlertTransition], *logs: str) -> None:
    counts = Counter((t.fingerprint, t.sequence) for t in ts)
    assert counts and max(counts.values()) == 1, f"repeated: {[k for k, n in counts.items() if n > 1]}\n" + "\n".join(logs)


def node_rollups(msgs: list, node: str) -> dict[datetime, list[tuple]]:
    """Window start → every (min, max, sum, count) published for the node's 1-minute CPU window, duplicates included."""
    eid = f"c1/-/node:{node}/-"
    out: dict[datetime, list[tuple]] = {}
    for k, v in msgs:
        if k == eid:
            r = decode(EntityRollup, v)
            if r.window == "1m":
                cpu = r.metrics["node.cpu_cores"]
                out.setdefault(r.window_start, []).append((cpu.min, cpu.max, cpu.sum, cpu.count))
    return out


EXPECTED_MINUTES = {
    T0: (1.0, 3.0, 8.0, 4),
    T0 + timedelta(minutes=1): (3.0, 3.0, 12.0, 4),
    T0 + timedelta(minutes=2): (1.0, 3.0, 6.0, 4),
    T0 + timedelta(minutes=3): (1.0, 1.0, 4.0, 4),
}


async def test_a_worker_killed_mid_stream_is_replaced_with_window_and_alert_state_restored_and_no_duplicate_transition(
    stack: dict[str, str], tmp_path: Path
) -> None:
    settings = isolated_settings()
    await create_topics(settings)
    metrics, prefix = METRICS.named(settings.kafka.topic_prefix), settings.kafka.topic_prefix
    p = partition_of("rec")
    first = start(settings, tmp_path / "a.log")
    try:
        await produce(settings, metrics, scrapes(["rec"], 0, 6))
        fired = await read_until(settings, ALERTS.named(prefix), lambda m: len(m) >= 1, timeout=60)
        assert [t.status for t in transitions(fired)] == ["firing"], first.log()
        # Scrapes 0-6 are checkpointed and committed: the replacement must restore them, not replay them.
        await wait_for(lambda: _committed_at_least(settings, metrics, p, 7), timeout=20, what="offset 7 committed")
        # Scrape 7 half-fills minute 1 and scrape 8 closes it; the kill lands while they are in flight.
        await produce(settings, metrics, scrapes(["rec"], 7, 8))
    finally:
        first.kill()
    second = start(settings, tmp_path / "b.log")
    try:
        await produce(settings, metrics, scrapes(["rec"], 9, 16))
        await read_until(settings, ALERTS.named(prefix), lambda m: len(m) >= 2, timeout=60)
        rollups = await read_until(settings, ROLLUPS.named(prefix), lambda m: len(node_rollups(m, "rec")) >= 4, timeout=30)
        # A replay that published anything twice would have done so by now (minute 3 closed after it).
        alerts = await read_until(settings, ALERTS.named(prefix), lambda m: False, timeout=2)
    finally:
        second.stop()
    ts = transitions(alerts)
    assert_each_transition_once(ts, second.log())
    # Without the restored rule state the replacement would never resolve an alert it did not know was firing.
    assert [t.status for t in ts] == ["firing", "resolved"], second.log()
    assert ts[1].fingerprint == ts[0].fingerprint and ts[1].ends_at == T0 + timedelta(seconds=15 * 9)
    # Minute 1 (scrapes 4-7) straddles the kill: exact only because its window state was restored.
    windows = node_rollups(rollups, "rec")
    assert {start: set(v) for start, v in windows.items()} == {start: {v} for start, v in EXPECTED_MINUTES.items()}
    # Minute 0 was closed and committed before the kill: never replayed, so never published twice.
    assert len(windows[T0]) == 1


async def _committed_at_least(settings: Settings, topic: str, partition: int, offset: int) -> bool:
    return (await committed_offsets(settings, topic)).get(partition, -1) >= offset


async def test_a_worker_stopped_with_sigterm_checkpoints_and_commits_so_its_successor_publishes_nothing_twice(
    stack: dict[str, str], tmp_path: Path
) -> None:
    settings = isolated_settings()
    await create_topics(settings)
    metrics, prefix = METRICS.named(settings.kafka.topic_prefix), settings.kafka.topic_prefix
    p = partition_of("term")
    first = start(settings, tmp_path / "a.log")
    try:
        await produce(settings, metrics, scrapes(["term"], 0, 8))
        await read_until(settings, ROLLUPS.named(prefix), lambda m: len(node_rollups(m, "term")) >= 2, timeout=60)
    finally:
        first.stop()
    assert first.proc.returncode == 0, first.log()
    # The last checkpoint ran in the shutdown hook and the consumer committed it before leaving.
    assert (await committed_offsets(settings, metrics)).get(p) == 9, first.log()
    second = start(settings, tmp_path / "b.log")
    try:
        await produce(settings, metrics, scrapes(["term"], 9, 16))
        await read_until(settings, ALERTS.named(prefix), lambda m: len(m) >= 2, timeout=60)
        rollups = await read_until(settings, ROLLUPS.named(prefix), lambda m: len(node_rollups(m, "term")) >= 4, timeout=30)
        alerts = await read_until(settings, ALERTS.named(prefix), lambda m: False, timeout=2)
    finally:
        second.stop()
    ts = transitions(alerts)
    assert [t.status for t in ts] == ["firing", "resolved"], second.log()
    assert_each_transition_once(ts, second.log())
    assert node_rollups(rollups, "term") == {start: [v] for start, v in EXPECTED_MINUTES.items()}
    # No output of any series twice: the successor replayed nothing.
    keys = Counter((k, decode(EntityRollup, v).window, decode(EntityRollup, v).window_start) for k, v in rollups)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]


async def test_two_workers_split_the_partitions_and_the_survivor_of_a_kill_loses_and_repeats_nothing(
    stack: dict[str, str], tmp_path: Path
) -> None:
    settings = isolated_settings()
    await create_topics(settings)
    metrics, prefix = METRICS.named(settings.kafka.topic_prefix), settings.kafka.topic_prefix
    nodes = nodes_on_every_partition(2)
    a, b = start(settings, tmp_path / "a.log"), start(settings, tmp_path / "b.log")
    try:
        split = await wait_for(lambda: _split_in_two(settings), timeout=60, what="two members with 2 partitions each")
        assert sorted(p for member in split for p in member) == list(range(PARTITIONS))
        await produce(settings, metrics, scrapes(nodes, 0, 7))
        await read_until(settings, ALERTS.named(prefix), lambda m: len(m) >= len(nodes), timeout=60)
        a.kill()
        # The survivor takes a's partitions once a's session times out, restores their state and goes on.
        await produce(settings, metrics, scrapes(nodes, 8, 16))
        await read_until(settings, ALERTS.named(prefix), lambda m: len(m) >= 2 * len(nodes), timeout=90)
        rollups = await read_until(
            settings, ROLLUPS.named(prefix), lambda m: all(len(node_rollups(m, n)) >= 4 for n in nodes), timeout=30)
        alerts = await read_until(settings, ALERTS.named(prefix), lambda m: False, timeout=2)
    finally:
        a.stop()
        b.stop()
    ts = transitions(alerts)
    assert_each_transition_once(ts, a.log(), b.log())
    seen: dict[str, list[tuple[str, datetime | None]]] = {}
    for t in ts:
        seen.setdefault(t.labels["node"], []).append((t.status, t.ends_at))
    assert seen == {n: [("firing", None), ("resolved", T0 + timedelta(seconds=15 * 9))] for n in nodes}, b.log()
    for n in nodes:
        assert {start: set(v) for start, v in node_rollups(rollups, n).items()} == {
            start: {v} for start, v in EXPECTED_MINUTES.items()}, n


async def _split_in_two(settings: Settings) -> list[set[int]] | None:
    members = await metrics_assignment(settings)
    return members if sorted(len(m) for m in members) == [2, 2] else None
