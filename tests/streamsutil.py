"""Helpers for tests that run real ``kubepulse worker`` processes against the real Kafka."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from models.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
KUBEPULSE = Path(sys.executable).parent / "kubepulse"


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a worker subprocess the test's settings (prefix, group, partitions)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEPULSE_")}
    env.update(
        KUBEPULSE_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        KUBEPULSE_KAFKA__TOPIC_PREFIX=settings.kafka.topic_prefix,
        KUBEPULSE_KAFKA__CONSUMER_GROUP=settings.kafka.consumer_group,
        KUBEPULSE_KAFKA__TOPIC_PARTITIONS=str(settings.kafka.topic_partitions),
        KUBEPULSE_STREAMS__WINDOW_GRACE_S=str(settings.streams.window_grace_s),
        KUBEPULSE_STREAMS__CHECKPOINT_INTERVAL_S=str(settings.streams.checkpoint_interval_s),
        KUBEPULSE_STREAMS__CLUSTER_AGGREGATES=str(settings.streams.cluster_aggregates).lower(),
        KUBEPULSE_HTTP_PORT="0",
        KUBEPULSE_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


class Worker:
    """A ``kubepulse worker`` subprocess; its log is kept in ``log_path`` for failure messages."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [str(KUBEPULSE), "worker"], cwd=ROOT, env=worker_env(settings, **env), stdout=self._log, stderr=subprocess.STDOUT
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit or checkpoint."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


async def metrics_assignment(settings: Settings) -> list[set[int]]:
    """The kubepulse.metrics.v1 partitions each member of the worker group holds now (one set per member)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    from streams.topics import METRICS

    topic = METRICS.named(settings.kafka.topic_prefix)
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        [resp] = await admin.describe_consumer_groups([settings.kafka.consumer_group])
        group = resp.to_object()["groups"][0]
        if group["state"] != "Stable":
            return []
        out = []
        for member in group["members"]:
            assignment = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
            out.append({tp.partition for tp in assignment.partitions() if tp.topic == topic})
        return out
    finally:
        await admin.close()


async def committed_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Partition → offset the worker group has committed on ``topic``."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.kafka.consumer_group)
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
    finally:
        await admin.close()


async def wait_for(check, *, timeout: float, what: str):  # noqa: ANN001, ANN201 - any awaitable predicate
    """Poll ``await check()`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {got!r})")
        await asyncio.sleep(0.3)


async def read_until(settings: Settings, topic: str, done, *, timeout: float = 60.0) -> list[tuple[str | None, bytes]]:
    """Read ``topic`` from the beginning (read_committed) until ``done(messages)`` is true or ``timeout`` passes."""
    import time

    from aiokafka import AIOKafkaConsumer

    from models.kafka import topic_partitions

    consumer = AIOKafkaConsumer(
        **settings.kafka.aiokafka_kwargs(), auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
        isolation_level="read_committed",
    )
    await consumer.start()
    out: list[tuple[str | None, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        tps = await topic_partitions(consumer, topic, timeout=timeout)
        if tps:
            consumer.assign(tps)
            await consumer.seek_to_beginning()
        while not done(out) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for msgs in batch.values():
                out.extend((m.key.decode() if m.key else None, m.value) for m in msgs)
    finally:
        await consumer.stop()
    return out
