"""Writes kubepulse.metrics.v1, kubepulse.events.v1, kubepulse.quotas.v1 and kubepulse.incidents.v1 from a simulated fleet, plus a labels file.

Time runs three ways. Real time (``speed=1``): one step every interval.
Accelerated (``speed=10``): 15 s of simulated time every 1.5 s of wall time,
timestamps advancing in simulated time from ``start`` (default: now).
No-sleep (``no_sleep=True``): steps as fast as Kafka takes them, which is how
benchmarks fill a topic; with ``iterations`` known the simulated clock is
set back so the last scrape is stamped about now (a backfill), keeping
timestamps realistic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from models.codec import encode
from models.kafka import create_topics
from models.records import Incident
from models.settings import Settings
from streams.topics import AUTOSCALERS, EVENTS, INCIDENTS, METRICS, QUOTAS

from collectors.simulator._fleet import Fleet
from collectors.simulator.errors import SimulatorError

__all__ = ["run", "RunStats"]

log = logging.getLogger("kubepulse.simulator")


@dataclass(slots=True)
class RunStats:
    """What a run published (every count acknowledged by Kafka with acks=all)."""

    steps: int = 0
    scrapes: int = 0
    events: int = 0
    quotas: int = 0
    incidents: int = 0
    bytes: int = 0
    wall_s: float = 0.0
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None
    incident_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "steps": self.steps,
            "scrapes": self.scrapes,
            "events": self.events,
            "quotas": self.quotas,
            "incidents": self.incidents,
            "bytes": self.bytes,
            "wall_s": round(self.wall_s, 3),
            "scrapes_per_s": round(self.scrapes / self.wall_s, 1) if self.wall_s else None,
            "first_timestamp": self.first_timestamp.isoformat() if self.first_timestamp else None,
            "last_timestamp": self.last_timestamp.isoformat() if self.last_timestamp else None,
        }


async def run(
    settings: Settings,
    *,
    iterations: int | None = None,
    stop: asyncio.Event | None = None,
    speed: float = 1.0,
    start: datetime | None = None,
    fleet: Fleet | None = None,
    no_sleep: bool = False,
    duration_s: float | None = None,
    labels_file: Path | None = None,
    on_incident: Callable[[Incident], None] | None = None,
) -> RunStats:
    """Publish the fleet's scrapes, events, ResourceQuotas and incidents every interval until ``iterations``, ``stop`` or ``duration_s``.

    ``speed`` divides the wall time between steps; ``duration_s`` is wall
    time. The labels file (``labels_file`` or ``settings.simulator.labels_file``)
    gets one JSON line per injected incident, appended and flushed as it is
    injected, so a crash loses none.
    """
    if speed <= 0:
        raise SimulatorError(f"speed must be positive (got {speed})")
    if iterations is not None and iterations < 0:
        raise SimulatorError(f"iterations must be >= 0 (got {iterations})")
    fleet = fleet or Fleet(settings.simulator)
    interval = fleet.interval_s
    topics = _Topics.of(settings.kafka.topic_prefix, autoscalers=fleet.has_autoscalers)
    if start is None:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        start = now - timedelta(seconds=interval * (iterations - 1)) if no_sleep and iterations else now
    elif start.tzinfo is None:
        raise SimulatorError("start must be timezone-aware (UTC)")
    labels_path = labels_file or settings.simulator.labels_file

    stats = RunStats()
    producer = await _start_producer(settings, topics, no_sleep=no_sleep)
    labels: IO[bytes] | None = None
    if labels_path is not None:
        Path(labels_path).parent.mkdir(parents=True, exist_ok=True)
        labels = open(labels_path, "ab")  # noqa: SIM115 - closed in finally
    wall0 = time.monotonic()
    pending: list[asyncio.Future] = []
    try:
        k = 0
        while iterations is None or k < iterations:
            if stop is not None and stop.is_set():
                break
            if duration_s is not None and time.monotonic() - wall0 >= duration_s:
                break
            now = start + timedelta(seconds=interval * k)
            futures = await _publish_step(producer, topics, fleet, now, stats, labels=labels, on_incident=on_incident)
            # Pipelining: wait for the previous step's acks while this one is in flight,
            # so a failure surfaces within one step and memory stays bounded.
            await _settle(pending)
            pending = futures
            k += 1
            if no_sleep or (iterations is not None and k >= iterations):
                continue
            await _pace(wall0 + k * interval / speed - time.monotonic(), stop)
        await _settle(pending)
        await producer.flush()
    finally:
        stats.wall_s = time.monotonic() - wall0
        await producer.stop()
        if labels is not None:
            labels.close()
    return stats


@dataclass(frozen=True, slots=True)
class _Topics:
    """The topics a run writes, under the settings' prefix."""

    metrics: str
    events: str
    quotas: str
    incidents: str
    autoscalers: str | None
    """Only a fleet with an Autoscaled scenario has HPAs (the default fleet has none, and no topic for them)."""

    @classmethod
    def of(cls, prefix: str, *, autoscalers: bool) -> _Topics:
        return cls(METRICS.named(prefix), EVENTS.named(prefix), QUOTAS.named(prefix), INCIDENTS.named(prefix),
                   AUTOSCALERS.named(prefix) if autoscalers else None)

    def names(self) -> list[str]:
        return [self.metrics, self.events, self.quotas, self.incidents, *([self.autoscalers] if self.autoscalers else [])]


async def _start_producer(settings: Settings, topics: _Topics, *, no_sleep: bool) -> AIOKafkaProducer:
    """Create the run's topics and start its producer, or say which Kafka could not be reached."""
    producer = AIOKafkaProducer(
        # Idempotent, acks=all and compressed (kafka.compression_type), like every kubepulse producer.
        # Bigger batches when nothing waits on the clock; small linger keeps paced latency low.
        **settings.kafka.producer_kwargs(linger_ms=20 if no_sleep else 5, max_batch_size=1 << 20),
    )
    try:
        await create_topics(settings, topics.names())
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise SimulatorError(f"cannot publish to Kafka at {settings.kafka.bootstrap_servers}: {exc!r}") from exc
    return producer


async def _publish_step(
    producer: AIOKafkaProducer, topics: _Topics, fleet: Fleet, now: datetime, stats: RunStats,
    *, labels: IO[bytes] | None, on_incident: Callable[[Incident], None] | None,
) -> list[asyncio.Future]:
    """Step the fleet to ``now`` and send what it produced; returns the sends' futures (not awaited)."""
    scrapes, events, incidents = fleet.step(now)
    quotas = fleet.quotas()
    futures = []
    for rec in scrapes:
        data = encode(rec)
        stats.bytes += len(data)
        futures.append(await producer.send(topics.metrics, data, key=f"{rec.cluster}/{rec.node}".encode()))
    for ev in events:
        data = encode(ev)
        stats.bytes += len(data)
        futures.append(await producer.send(topics.events, data, key=ev.key.encode()))
    for q in quotas:
        data = encode(q)
        stats.bytes += len(data)
        futures.append(await producer.send(topics.quotas, data, key=q.key.encode()))
    if topics.autoscalers is not None:
        for a in fleet.autoscalers():
            futures.append(await producer.send(topics.autoscalers, encode(a), key=a.key.encode()))
    for inc in incidents:
        data = encode(inc)
        futures.append(await producer.send(topics.incidents, data, key=inc.key.encode()))
        if labels is not None:
            labels.write(data + b"\n")
            labels.flush()
        log.info("injected %s %s on %s/%s/%s until %s", inc.incident_id, inc.kind, inc.cluster, inc.pod or inc.node, inc.container or "-", inc.end.isoformat())
        if on_incident is not None:
            on_incident(inc)
    stats.steps += 1
    stats.scrapes += len(scrapes)
    stats.events += len(events)
    stats.quotas += len(quotas)
    stats.incidents += len(incidents)
    stats.incident_ids.extend(i.incident_id for i in incidents)
    stats.first_timestamp = stats.first_timestamp or now
    stats.last_timestamp = now
    return futures


async def _pace(delay: float, stop: asyncio.Event | None) -> None:
    """Sleep ``delay`` s (nothing if it is not positive), or less if ``stop`` is set meanwhile."""
    if delay <= 0:
        return
    if stop is None:
        await asyncio.sleep(delay)
        return
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except TimeoutError:
        pass


async def _settle(futures: list[asyncio.Future]) -> None:
    if not futures:
        return
    try:
        await asyncio.gather(*futures)
    except KafkaError as exc:
        raise SimulatorError(f"Kafka did not acknowledge simulated records: {exc}") from exc
