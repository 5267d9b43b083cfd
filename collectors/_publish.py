"""Hands the collector's encoded records to Kafka and gets each one confirmed, sending it again with backoff.

One idempotent, compressed producer (``KafkaSettings.producer_kwargs``) serves every cluster's
passes and every event watch. :meth:`Publisher.send` returns once the record has room in the
buffer (``kubernetes.publish_buffer_bytes`` of records handed over and not yet confirmed), so
while Kafka is away the buffer fills and passes wait instead of scraping more; the future it
returns resolves when the broker confirmed the record, or raises :class:`PublishFailed` after
``kubernetes.publish_timeout_s`` of attempts. (aiokafka retries a batch for a broker that is gone
without ever failing it, so the timeout is this module's own.) Meanwhile :attr:`Publisher.failing` is true
(``/readyz`` false, ``kubepulse_collector_publish_failing`` 1) and each failed attempt is counted.
Nothing is dropped here: what to do with a record given up is the caller's (a pass counts it
lost and fails, an event watch offers the event again).

An idempotent producer whose batch failed cannot go on with that partition's sequence numbers,
so after a failure the producer is replaced (a new producer id) before the record is sent again.
A record given up while still unconfirmed stays in the producer and may be written once the
brokers answer; sending the same bytes again (an event offered again) joins that pending send
instead of writing a second copy. What reads the topics is idempotent anyway (document ids
derived from the record, events keyed by uid and count).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from collectors._metrics import PUBLISH_BUFFERED, PUBLISH_FAILING, PUBLISH_FAILURES, RECORDS_PUBLISHED
from collectors.errors import PublishFailed
from models.kafka import start_producer
from models.settings import KafkaSettings

log = logging.getLogger("kubepulse.collectors")

_PERMANENT = (MessageSizeTooLargeError, RecordTooLargeError)
"""Errors no resend can cure: the record is given up at once, with the broker's reason."""
_BACKOFF_MAX_S = 5.0
_STOP_S = 15.0
"""How long stopping a producer may flush before it is abandoned (a broker that is gone never answers)."""
_SLOW_S = 5.0
"""A confirmation pending this long counts as failing: a broker that is gone answers nothing until the
request timeout expires the batch, and readiness must not wait for that."""


class Publisher:
    """Records to Kafka, each confirmed or reported failed; ``start()`` first, ``stop()`` at the end."""

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float, buffer_bytes: int) -> None:
        self.timeout_s = timeout_s
        self.buffer_bytes = buffer_bytes
        # A batch the broker does not take fails after request_timeout_ms and is sent again, so a
        # record gets about four attempts within timeout_s (aiokafka's 40 s default would be one).
        attempt_ms = int(1000 * min(30.0, max(1.0, timeout_s / 4)))
        self._kwargs = kafka.producer_kwargs(
            linger_ms=5,
            # One NodeScrape is ~90 KB at 30 pods: batches of 1 MB carry
            # several per request instead of one request per record.
            max_batch_size=1024 * 1024,
            # A node with 110 pods encodes to a few hundred KB.
            max_request_size=4 * 1024 * 1024,
            request_timeout_ms=attempt_ms,
        )
        self._producer: AIOKafkaProducer | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self._room = asyncio.Condition()
        self.buffered = 0
        """Bytes handed over and not yet confirmed or given up."""
        self._pending: dict[int, float] = {}
        """Record serial -> when it was handed over, oldest first."""
        self._serial = 0
        self._unconfirmed: dict[tuple[str, bytes, bytes], asyncio.Future[Any]] = {}
        """A send still pending in a producer, by record: an identical record joins it."""
        self._retrying = 0
        self.last_error: str | None = None
        self._retired: set[asyncio.Task[None]] = set()
        PUBLISH_FAILING.set_function(lambda: 1.0 if self.failing else 0.0)
        PUBLISH_BUFFERED.set_function(lambda: float(self.buffered))

    @property
    def failing(self) -> bool:
        """A record is being sent again, or its confirmation has been pending for ``_SLOW_S``."""
        if self._retrying:
            return True
        # Read from the health server's thread: next(iter(...)) is one C call, so no lock is needed.
        oldest = next(iter(self._pending.values()), None)
        return oldest is not None and time.monotonic() - oldest >= _SLOW_S

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Start the producer; raises Kafka's error when no broker answers (a collector that never published)."""
        await self._current()

    async def stop(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await self._stop_retired(producer)
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)

    async def _current(self) -> tuple[int, AIOKafkaProducer]:
        async with self._lock:
            if self._producer is None:
                self._producer = await start_producer(**self._kwargs)
            return self._generation, self._producer

    async def _renew(self, generation: int) -> None:
        """Retire the producer a failed send went through (once, however many of its sends failed)."""
        async with self._lock:
            if generation != self._generation or self._producer is None:
                return
            old, self._producer = self._producer, None
            self._generation += 1
        # Stopping waits for its other batches to be confirmed or to expire (their senders then send
        # them again through the new producer): off the sending path.
        task = asyncio.ensure_future(self._stop_retired(old))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def _stop_retired(self, producer: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(producer.stop(), _STOP_S)
        except TimeoutError:
            # Only records already given up (and reported) can be pending here.
            log.error("Kafka producer not flushed within %.0f s (%d records unconfirmed); abandoned",
                      _STOP_S, len(self._unconfirmed))
        except KafkaError as exc:  # its records' own futures carry their failures; nothing is lost here
            log.warning("stopping a Kafka producer: %s", exc)

    # -- sending ------------------------------------------------------------------

    async def send(self, topic: str, key: str, value: bytes, *, cluster: str, kind: str) -> asyncio.Future[None]:
        """Wait for room in the buffer and hand the record over; the future resolves once Kafka confirmed it.

        Raises :class:`PublishFailed` (reason ``buffer_full``) when no room was made within the
        timeout; the future raises it when the record was not confirmed within the timeout.
        """
        deadline = time.monotonic() + self.timeout_s
        size = len(value)
        await self._reserve(size, deadline)
        self._serial += 1
        serial = self._serial
        self._pending[serial] = time.monotonic()
        return asyncio.ensure_future(self._deliver(topic, key.encode(), value, serial, size, deadline, cluster, kind))

    async def publish(self, topic: str, key: str, value: bytes, *, cluster: str, kind: str) -> None:
        """:meth:`send` and wait for the confirmation."""
        await (await self.send(topic, key, value, cluster=cluster, kind=kind))

    def _track(self, ident: tuple[str, bytes, bytes], fut: asyncio.Future[Any]) -> None:
        self._unconfirmed[ident] = fut

        def done(f: asyncio.Future[Any]) -> None:
            if self._unconfirmed.get(ident) is f:
                del self._unconfirmed[ident]
            if not f.cancelled():
                f.exception()  # retrieved: a send given up has had its failure reported already

        fut.add_done_callback(done)

    async def _reserve(self, size: int, deadline: float) -> None:
        async with self._room:
            # A record larger than the whole buffer still goes, alone.
            while self.buffered and self.buffered + size > self.buffer_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PublishFailed(
                        f"waited {self.timeout_s:g} s for room in the publish buffer ({self.buffered} bytes not "
                        f"confirmed by Kafka, kubernetes.publish_buffer_bytes {self.buffer_bytes}); last error: "
                        f"{self.last_error or 'none, the brokers are slow'}",
                        reason="buffer_full",
                    )
                try:
                    await asyncio.wait_for(self._room.wait(), remaining)
                except TimeoutError:
                    pass
            self.buffered += size

    async def _release(self, size: int) -> None:
        async with self._room:
            self.buffered -= size
            self._room.notify_all()

    async def _deliver(self, topic: str, key: bytes, value: bytes, serial: int, size: int, deadline: float,
                       cluster: str, kind: str) -> None:
        attempts = 0
        try:
            while True:
                generation: int | None = None
                try:
                    generation, producer = await self._current()
                    ident = (topic, key, value)
                    pending = self._unconfirmed.get(ident)
                    if pending is None or pending.done():
                        pending = await producer.send(topic, value, key=key)
                        self._track(ident, pending)
                    await asyncio.wait_for(asyncio.shield(pending), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    PUBLISH_FAILURES.labels(cluster, kind, "unconfirmed").inc()
                    self.last_error = f"{topic}: no confirmation from the brokers"
                    raise PublishFailed(f"cluster {cluster}: Kafka did not confirm a {kind} record for {topic} within "
                                        f"{self.timeout_s:g} s (no answer from the brokers; it is written if they "
                                        "answer later)", reason="unconfirmed") from None
                except KafkaError as exc:
                    attempts += 1
                    if attempts == 1:
                        self._retrying += 1
                    reason = type(exc).__name__
                    PUBLISH_FAILURES.labels(cluster, kind, reason).inc()
                    self.last_error = f"{topic}: {reason}: {exc}"
                    if isinstance(exc, _PERMANENT):
                        raise PublishFailed(f"cluster {cluster}: Kafka refused a {kind} record of {size} bytes for "
                                            f"{topic}: {reason}: {exc}", reason=reason) from exc
                    delay = random.uniform(0.5, 1.0) * min(_BACKOFF_MAX_S, 0.25 * 2**attempts)
                    if time.monotonic() + delay >= deadline:
                        raise PublishFailed(f"cluster {cluster}: Kafka did not confirm a {kind} record for {topic} "
                                            f"within {self.timeout_s:g} s ({attempts} attempts); last: {reason}: {exc}",
                                            reason=reason) from exc
                    log.warning("cluster %s: %s record %s not confirmed (%s: %s); sending again in %.1f s",
                                cluster, kind, key.decode(errors="replace"), reason, exc, delay)
                    if generation is not None:
                        await self._renew(generation)
                    await asyncio.sleep(delay)
                    continue
                RECORDS_PUBLISHED.labels(cluster, kind).inc()
                if attempts:
                    log.warning("cluster %s: %s record %s confirmed after %d failed attempts",
                                cluster, kind, key.decode(errors="replace"), attempts)
                return
        finally:
            if attempts:
                self._retrying -= 1
            self._pending.pop(serial, None)
            await self._release(size)
