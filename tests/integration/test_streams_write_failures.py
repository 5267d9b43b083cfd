"""A write the worker cannot get confirmed never commits its input (real Kafka, real ``kubepulse worker``).

Two faults: a changelog topic whose ``max.message.bytes`` is too small for the node's state (the broker
refuses the write), and the broker itself stopped in the middle of the stream. In both the input is not
acked while writes fail, ``/readyz`` is false and the failures are counted on ``/metrics``; the first
ends with the worker exiting non-zero, the second with the worker going on once the broker is back.
Afterwards every window is exact and every alert transition is on the topic exactly once.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from kubepulse._cli_streams import create_topics
from models.codec import decode
from models.records import AlertTransition, ContainerSample, EntityRollup, NodeSample, NodeScrape, PodSample
from models.settings import Settings, load_settings
from streams.topics import ALERTS, METRICS, ROLLUPS
from tests.kafkautil import new_run_id, produce
from tests.privatestack import PrivateKafka, free_port
from tests.streamsutil import Worker, committed_offsets, read_until, wait_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = Path(__file__).parent / "data" / "streams_rules.yaml"
CPUS = [1.0, 1.0] + [3.0] * 7 + [1.0] * 8 + [1.0] * 8
"""NodeCPUHigh (> 2 for 1m) fires at scrape 6 and resolves at scrape 9; six minutes in all."""


def scrape(i: int) -> NodeScrape:
    # Forty pods of distinct values: the node's state entries are kilobytes, even compressed.
    pods = [PodSample(namespace="shop", name=f"web-{p}", cpu_cores=0.001 * p + i / 997,
                      memory_working_set_bytes=10_000_000 + 7919 * p * (i + 1),
                      containers=[ContainerSample(name="app", cpu_cores=0.0005 * p + i / 1999)]) for p in range(40)]
    return NodeScrape(cluster="c1", node="wf", timestamp=T0 + timedelta(seconds=15 * i), source="simulator",
                      node_stats=NodeSample(cpu_cores=CPUS[i]), pods=pods)


def settings_for(bootstrap: str, **streams: object) -> Settings:
    run = new_run_id()
    return load_settings(
        kafka={"bootstrap_servers": bootstrap, "topic_prefix": f"t{run}.", "consumer_group": f"kp-test-{run}",
               "topic_partitions": 1},
        streams={"window_grace_s": 0, "rules_files": [RULES], "checkpoint_interval_s": 0.5, **streams}, http_port=0,
    )


def start(settings: Settings, log: Path, port: int, **env: str) -> Worker:
    return Worker(settings, log, KUBEPULSE_STREAMS__RULES_FILES=f'["{RULES}"]', KUBEPULSE_STREAMS__DISPATCH_ALERTS="false",
                  KUBEPULSE_HTTP_PORT=str(port), KUBEPULSE_STREAMS__WRITE_FAILURE_TIMEOUT_S=str(
                      settings.streams.write_failure_timeout_s), **env)


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def failures(port: int) -> float:
    _, body = probe(port, "/metrics")
    return sum(float(line.split()[-1]) for line in body.splitlines()
               if line.startswith("kubepulse_stream_write_failures_total{"))


def minutes(msgs: list) -> dict[datetime, set[tuple]]:
    out: dict[datetime, set[tuple]] = {}
    for k, v in msgs:
        if k == "c1/-/node:wf/-":
            r = decode(EntityRollup, v)
            if r.window == "1m":
                cpu = r.metrics["node.cpu_cores"]
                out.setdefault(r.window_start, set()).add((cpu.min, cpu.max, cpu.sum, cpu.count))
    return out


EXPECTED = {T0: (1.0, 3.0, 8.0, 4), T0 + timedelta(minutes=1): (3.0, 3.0, 12.0, 4),
            T0 + timedelta(minutes=2): (1.0, 3.0, 6.0, 4), T0 + timedelta(minutes=3): (1.0, 1.0, 4.0, 4),
            T0 + timedelta(minutes=4): (1.0, 1.0, 4.0, 4)}


def assert_exact(rollups: list, alerts: list, *logs: str) -> None:
    assert {m: vs for m, vs in minutes(rollups).items() if m in EXPECTED} == {m: {v} for m, v in EXPECTED.items()}, logs
    ts = [decode(AlertTransition, v) for _, v in alerts]
    counts = Counter((t.fingerprint, t.sequence) for t in ts)
    assert [t.status for t in ts] == ["firing", "resolved"] and max(counts.values()) == 1, ([
        (t.status, t.sequence) for t in ts], *logs)


async def test_a_changelog_that_refuses_the_state_keeps_the_input_unacked_and_the_worker_exits_non_zero(
    stack: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_for(stack["kafka"], write_failure_timeout_s=6.0)
    await create_topics(settings)
    changelog = f"{settings.kafka.consumer_group}-node_to_state-changelog"
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        # The worker's own table, created first with a limit below what one pod's state needs.
        await admin.create_topics([NewTopic(changelog, num_partitions=1, replication_factor=1, topic_configs={
            "cleanup.policy": "compact", "max.message.bytes": "1024"})])
    finally:
        await admin.close()
    metrics = METRICS.named(settings.kafka.topic_prefix)
    port = free_port()
    w = start(settings, tmp_path / "w1.log", port)
    try:
        await produce(settings, metrics, [("c1/wf", scrape(i)) for i in range(len(CPUS))])
        await wait_for(lambda: asyncio.sleep(0, failures(port) > 0), timeout=60,
                       what=f"write failures on /metrics\n{w.log()}")
        status, body = probe(port, "/readyz")
        assert status == 503, (status, body)
        deadline = time.monotonic() + 60
        while w.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert w.proc.returncode not in (None, 0), f"the worker kept running or exited 0\n{w.log()}"
        assert "max.message.bytes" in w.log() and "MessageSizeTooLarge" in w.log()
        assert (await committed_offsets(settings, metrics)).get(0, 0) == 0, "nothing of the input was committed"
    finally:
        w.stop()

    # The operator fixes the topic; the restarted worker processes everything again, exactly.
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, changelog,
                                                  configs={"max.message.bytes": "1048588"})])
    finally:
        await admin.close()
    w2 = start(settings, tmp_path / "w2.log", free_port())
    try:
        rollups = await read_until(settings, ROLLUPS.named(settings.kafka.topic_prefix),
                                   lambda m: EXPECTED.keys() <= minutes(m).keys(), timeout=90)
        await wait_for(lambda: _committed(settings, metrics, len(CPUS)), timeout=30, what=f"commit\n{w2.log()}")
        alerts = await read_until(settings, ALERTS.named(settings.kafka.topic_prefix), lambda m: False, timeout=3)
    finally:
        w2.stop()
    assert_exact(rollups, alerts, w2.log())


async def _committed(settings: Settings, topic: str, n: int) -> bool:
    return (await committed_offsets(settings, topic)).get(0, 0) >= n


async def test_a_broker_stopped_mid_stream_pauses_the_worker_and_it_goes_on_exactly_when_the_broker_is_back(
    tmp_path: Path
) -> None:
    kafka = PrivateKafka(tmp_path / "kafka")
    kafka.start()
    try:
        # The state of the first scrapes is due ~8-12 s after them: while the broker is away.
        settings = settings_for(kafka.bootstrap, write_failure_timeout_s=300.0, checkpoint_interval_s=8.0)
        await create_topics(settings)
        metrics = METRICS.named(settings.kafka.topic_prefix)
        port = free_port()
        w = start(settings, tmp_path / "w.log", port)
        try:
            await produce(settings, metrics, [("c1/wf", scrape(i)) for i in range(10)])
            await read_until(settings, ALERTS.named(settings.kafka.topic_prefix), lambda m: len(m) >= 1, timeout=60)
            kafka.stop()
            await asyncio.sleep(25)
            assert w.proc.poll() is None, f"the worker died while the broker was away\n{w.log()}"
            status, _ = probe(port, "/readyz")
            assert status == 503, "not ready while its checkpoint cannot be written"
            kafka.start()
            await produce(settings, metrics, [("c1/wf", scrape(i)) for i in range(10, len(CPUS))])
            rollups = await read_until(settings, ROLLUPS.named(settings.kafka.topic_prefix),
                                       lambda m: EXPECTED.keys() <= minutes(m).keys(), timeout=120)
            alerts = await read_until(settings, ALERTS.named(settings.kafka.topic_prefix), lambda m: len(m) >= 2,
                                      timeout=60)
            await wait_for(lambda: asyncio.sleep(0, probe(port, "/readyz")[0] == 200), timeout=60,
                           what=f"ready again\n{w.log()}")
            assert failures(port) > 0, "the writes that failed while the broker was away are counted"
        finally:
            w.stop()
        assert_exact(rollups, alerts, w.log())
    finally:
        kafka.purge()
