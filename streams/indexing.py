"""Reads the raw and result topics (metrics, events, quotas, rollups, anomalies, alerts, notifications, incidents, deadletter), writes Elasticsearch and kubepulse.deadletter.v1.

Three layers, each usable on its own:

* :class:`BulkIndexer` sends documents with the async bulk helper, in
  chunks of ``elasticsearch.bulk_max_docs``. A 429, a 5xx or an unreachable
  Elasticsearch is retried with capped exponential backoff *for as long as it
  takes*: the call does not return until every document is indexed or
  rejected. A document Elasticsearch rejects (a mapping or parsing error) is
  turned into a :class:`~models.records.DeadLetter` with ES's error text.
* :class:`Indexer` turns a batch of Kafka messages into documents (decode,
  ``streams.index.documents_for``) and hands them to the bulk indexer; undecodable
  messages and rejected documents go to the dead-letter sink.
* :func:`register_indexer` adds the agent to a Faust app, and
  :func:`create_indexing_app` makes the indexing worker's own app (``kubepulse
  es index``): ``stream.take_events`` batches by size and time, and a batch's
  offsets are committed only after :meth:`Indexer.process` returned. While
  Elasticsearch is down the agent blocks, no offset past the last indexed
  batch is committed, and consumption resumes when it is back.

Document ids are derived from the records, so whatever a crash or a
rebalance makes us index twice overwrites itself: at-least-once delivery
gives exactly-once documents.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from elastic_transport import TransportError
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_streaming_bulk

from models.codec import decode, encode
from models.errors import RecordError
from models.records import DeadLetter, Record
from models.settings import Settings
from streams._metrics_indexing import BULK_SECONDS, DOCS_DEAD_LETTERED, DOCS_INDEXED, DOCS_RETRIED, ES_UP
from streams.deadletter import payload_text
from streams.index import INDEXED_KINDS, Document, ElasticsearchSetupError, async_client, documents_for, index_name, install_templates
from streams.topics import TOPICS, TopicSpec

if TYPE_CHECKING:
    import faust

__all__ = [
    "SourceMessage",
    "Origin",
    "BulkIndexer",
    "BulkResult",
    "Indexer",
    "IndexReport",
    "DeadLetterSink",
    "INDEXED_TOPICS",
    "register_indexer",
    "create_indexing_app",
    "ElasticsearchSetupError",
]

log = logging.getLogger(__name__)

INDEXED_TOPICS: tuple[TopicSpec, ...] = tuple(t for t in TOPICS if t.kind in INDEXED_KINDS)
"""The topics the indexer reads: every record kind that has an index."""

DeadLetterSink = Callable[[Sequence[DeadLetter]], Awaitable[None]]
"""Publishes dead letters and returns only when they are safely stored (acknowledged by Kafka)."""

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_REASON = 253
"""``DeadLetter.reason`` is a Name (at most 253 characters): ES's error is trimmed to its cause to fit."""


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One Kafka message as the indexer needs it, whoever consumed it."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a document came from: what its dead letter names if Elasticsearch rejects it."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None


@dataclass(slots=True)
class BulkResult:
    """What one :meth:`BulkIndexer.index` call came to: documents indexed, dead letters for the rejected, retries."""

    indexed: int = 0
    rejected: list[DeadLetter] = field(default_factory=list)
    retries: int = 0


@dataclass(slots=True)
class IndexReport:
    """What one batch came to: documents indexed, dead letters published, bulk retries."""

    messages: int = 0
    documents: int = 0
    indexed: int = 0
    dead_letters: int = 0
    retries: int = 0


def _reason(text: str) -> str:
    text = " ".join(text.split()) or "unknown error"
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


_NOISE = re.compile(r"^\[\d+:\d+\] | in document with id '[^']*'|\. Preview of field's value: .*$")


def _error_text(error: Any) -> tuple[str, str]:
    """ES's per-item error as (reason, type), the cause kept and the noise cut so it fits a dead letter.

    >>> _error_text({"type": "document_parsing_exception",
    ...     "reason": "[1:9] failed to parse field [n] of type [long] in document with id 'x'. Preview of field's value: '1'",
    ...     "caused_by": {"type": "input_coercion_exception", "reason": "Numeric value (1) out of range of long"}})
    ('document_parsing_exception: failed to parse field [n] of type [long]: Numeric value (1) out of range of long', 'document_parsing_exception')
    """
    if not isinstance(error, dict):
        return str(error), "error"
    etype = str(error.get("type", "error"))
    text = f"{etype}: {_NOISE.sub('', str(error.get('reason', '')))}"
    cause = error.get("caused_by")
    if isinstance(cause, dict) and cause.get("reason"):
        text += f": {_NOISE.sub('', str(cause['reason']))}"
    return text, etype


class BulkIndexer:
    """Index documents in bulk; retry what may succeed later, return what Elasticsearch rejected.

    ``backoff_initial``/``backoff_max`` shape the wait between retries
    (doubling, with jitter); ``backoff_max`` also bounds how long after
    Elasticsearch comes back the indexer notices.
    """

    def __init__(
        self,
        client: AsyncElasticsearch,
        settings: Settings,
        *,
        backoff_initial: float = 0.25,
        backoff_max: float = 5.0,
    ) -> None:
        self.client = client
        self.prefix = settings.elasticsearch.index_prefix
        self.chunk = settings.elasticsearch.bulk_max_docs
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._down_since: float | None = None

    async def index(self, docs: Sequence[Document], origins: Sequence[Origin]) -> BulkResult:
        """Index ``docs`` (``origins[i]`` is where ``docs[i]`` came from); returns when every one is settled."""
        result = BulkResult()
        for start in range(0, len(docs), self.chunk):
            await self._chunk(docs[start : start + self.chunk], origins[start : start + self.chunk], result)
        return result

    async def _chunk(self, docs: Sequence[Document], origins: Sequence[Origin], result: BulkResult) -> None:
        pending = list(range(len(docs)))
        attempt = 0
        while pending:
            if attempt:
                result.retries += 1
                delay = min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
            attempt += 1
            retry, reason = await self._send(docs, origins, pending, result)
            if retry:
                DOCS_RETRIED.labels(reason).inc(len(retry))
            pending = retry

    async def _send(
        self, docs: Sequence[Document], origins: Sequence[Origin], pending: list[int], result: BulkResult
    ) -> tuple[list[int], str]:
        """One bulk request of ``pending``; returns the positions to retry and why."""
        prefix = self.prefix
        actions = [
            {"_op_type": "index", "_index": index_name(prefix, docs[i].kind, docs[i].day), "_id": docs[i].id, "_source": docs[i].body}
            for i in pending
        ]
        by_id: dict[tuple[str, str], list[int]] = {}
        for i, a in zip(pending, actions, strict=True):
            by_id.setdefault((a["_index"], a["_id"]), []).append(i)
        failed: dict[int, dict[str, Any]] = {}
        started = time.perf_counter()
        try:
            async for _ok, item in async_streaming_bulk(
                self.client,
                actions,
                chunk_size=len(actions),
                max_chunk_bytes=100 * 2**20,
                raise_on_error=False,
                raise_on_exception=False,
                yield_ok=False,
                max_retries=0,
            ):
                info = next(iter(item.values()))
                where = by_id.get((info.get("_index", ""), info.get("_id", "")))
                if where is None:
                    log.error("Elasticsearch reported a failure for a document not in the request: %s", info)
                for i in where or ():
                    failed[i] = info
        except TransportError as exc:
            # Unreachable, refused, timed out: nothing is known to be indexed,
            # and the ids make re-sending the whole chunk harmless.
            BULK_SECONDS.observe(time.perf_counter() - started)
            ES_UP.set(0)
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning("Elasticsearch is unreachable (%s); holding %d documents and retrying", exc, len(pending))
            return pending, "unreachable"
        BULK_SECONDS.observe(time.perf_counter() - started)
        ES_UP.set(1)
        if self._down_since is not None:
            log.warning("Elasticsearch is back after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
        retry: list[int] = []
        if failed:
            denied = False
            for i, info in failed.items():
                status = info.get("status")
                if not isinstance(status, int) or status in _RETRY_STATUSES:
                    retry.append(i)
                    continue
                if status in (401, 403) and "exception" in info:
                    # The whole request was refused: our credentials, not the
                    # documents, are wrong. Hold the batch until that is fixed.
                    denied = True
                    retry.append(i)
                    continue
                reason, etype = _error_text(info.get("error"))
                o = origins[i]
                doc = docs[i]
                result.rejected.append(
                    DeadLetter(
                        source_topic=o.topic,
                        partition=o.partition,
                        offset=o.offset,
                        key=o.key,
                        stage="indexing",
                        reason=_reason(f"Elasticsearch rejected a {doc.kind} document ({status} {reason})"),
                        error_type=etype,
                        payload=payload_text(orjson.dumps(doc.body)),
                        occurred_at=datetime.now(UTC),
                    )
                )
                DOCS_DEAD_LETTERED.labels(doc.kind).inc()
            if denied:
                log.error("Elasticsearch refused the bulk request (401/403): check elasticsearch.api_key or username/password")
        ok = len(pending) - len(failed)
        result.indexed += ok
        if ok:
            if failed:
                kinds = Counter(docs[i].kind for i in pending if i not in failed)
            else:
                kinds = Counter(docs[i].kind for i in pending)
            for kind, n in kinds.items():
                DOCS_INDEXED.labels(kind).inc(n)
        return retry, "rejected" if retry else ""


class Indexer:
    """Decode a batch of messages, index their documents, dead-letter what cannot be indexed.

    ``client`` defaults to one built from the settings (``url`` overrides
    where it connects); ``dead_letter`` publishes dead letters and must only
    return once they are stored.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        dead_letter: DeadLetterSink,
        client: AsyncElasticsearch | None = None,
        url: str | None = None,
        backoff_initial: float = 0.25,
        backoff_max: float = 5.0,
    ) -> None:
        self.settings = settings
        self.client = client or async_client(settings, url=url)
        self._own_client = client is None
        self.bulk = BulkIndexer(self.client, settings, backoff_initial=backoff_initial, backoff_max=backoff_max)
        self.dead_letter = dead_letter
        self._rollups = settings.elasticsearch.rollups
        prefix = settings.kafka.topic_prefix
        self._specs = {spec.named(prefix): spec for spec in INDEXED_TOPICS}
        self._deadletter_topic = next(t for t in INDEXED_TOPICS if t.kind == "deadletter").named(prefix)

    async def setup(self, *, wait: bool = True) -> None:
        """Install the templates; with ``wait``, keep retrying while Elasticsearch is unreachable."""
        delay = self.bulk.backoff_initial
        while True:
            try:
                await install_templates(self.client, self.settings)
                return
            except TransportError as exc:
                if not wait:
                    raise
                log.warning("Elasticsearch unreachable while installing templates (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(self.bulk.backoff_max, delay * 2)

    async def close(self) -> None:
        if self._own_client:
            await self.client.close()

    async def process(self, messages: Sequence[SourceMessage]) -> IndexReport:
        """Index one batch of messages; returns when every document is indexed and every dead letter published."""
        return await self._run(self._decoded(messages), messages=len(messages))

    async def index_records(self, records: Sequence[tuple[Record, Origin]]) -> IndexReport:
        """Index records already decoded (``origin`` names where each came from, for its dead letters)."""

        def items() -> Iterator[tuple[Origin, list[Document]] | DeadLetter]:
            for record, origin in records:
                yield origin, documents_for(record, rollups=self._rollups)

        return await self._run(items(), messages=len(records))

    def _decoded(self, messages: Sequence[SourceMessage]) -> Iterator[tuple[Origin, list[Document]] | DeadLetter]:
        for m in messages:
            key = m.key.decode("utf-8", "backslashreplace") if m.key is not None else None
            spec = self._specs.get(m.topic)
            try:
                if spec is None:
                    raise RecordError(f"the indexer does not read topic {m.topic!r}", error_type="unknown_topic")
                produced = documents_for(decode(spec.value_type, m.value), rollups=self._rollups)
            except Exception as exc:  # noqa: BLE001 - nothing escapes: a bad message becomes a dead letter
                yield self._undecodable(m, key, exc)
                continue
            yield Origin(m.topic, m.partition, m.offset, key), produced

    async def _run(self, items: Iterator[tuple[Origin, list[Document]] | DeadLetter], *, messages: int) -> IndexReport:
        """Bulk the documents of ``items`` (built lazily), then publish the dead letters.

        Building documents is pipelined with the bulk request in flight: as
        soon as a chunk is full it is sent, and the next chunk is built while
        Elasticsearch indexes the previous one. One request in flight at a
        time keeps memory bounded.
        """
        report = IndexReport(messages=messages)
        docs: list[Document] = []
        origins: list[Origin] = []
        letters: list[DeadLetter] = []
        results: list[BulkResult] = []
        chunk = self.bulk.chunk
        inflight: asyncio.Future[BulkResult] | None = None

        async def send(batch: list[Document], where: list[Origin]) -> None:
            nonlocal inflight
            if inflight is not None:
                results.append(await inflight)
            inflight = asyncio.ensure_future(self.bulk.index(batch, where))

        try:
            for item in items:
                if isinstance(item, DeadLetter):
                    letters.append(item)
                    continue
                origin, produced = item
                docs.extend(produced)
                origins.extend([origin] * len(produced))
                report.documents += len(produced)
                if len(docs) >= chunk:
                    while len(docs) >= chunk:
                        await send(docs[:chunk], origins[:chunk])
                        docs, origins = docs[chunk:], origins[chunk:]
                elif inflight is not None:
                    # Let the request in flight be written and its answer read
                    # between two records, not only after the next chunk is built.
                    await asyncio.sleep(0)
            if docs:
                await send(docs, origins)
            if inflight is not None:
                results.append(await inflight)
                inflight = None
        finally:
            if inflight is not None:
                inflight.cancel()
        for result in results:
            report.indexed += result.indexed
            report.retries += result.retries
            for dl in result.rejected:
                if dl.source_topic == self._deadletter_topic:
                    # A dead letter Elasticsearch rejects is not dead-lettered
                    # again (that could loop); it stays on the dead-letter
                    # topic, and the log says why it is not in the index.
                    log.error("dead letter not indexable, kept on %s only: %s", dl.source_topic, dl.reason)
                else:
                    letters.append(dl)
        if letters:
            await self._publish(letters)
            report.dead_letters = len(letters)
        return report

    @staticmethod
    def _undecodable(m: SourceMessage, key: str | None, exc: Exception) -> DeadLetter:
        reason = exc.reason if isinstance(exc, RecordError) else f"{type(exc).__name__}: {exc}"
        etype = (exc.error_type if isinstance(exc, RecordError) else "") or type(exc).__name__
        return DeadLetter(
            source_topic=m.topic,
            partition=m.partition,
            offset=m.offset,
            key=key,
            stage="indexing",
            reason=_reason(f"cannot index: {reason}"),
            error_type=etype,
            payload=payload_text(m.value),
            occurred_at=datetime.now(UTC),
        )

    async def _publish(self, letters: list[DeadLetter]) -> None:
        delay = self.bulk.backoff_initial
        while True:
            try:
                await self.dead_letter(letters)
                return
            except Exception as exc:  # noqa: BLE001 - a dead letter must not be lost: retry until Kafka takes it
                log.warning("could not publish %d dead letters (%s); retrying in %.1f s", len(letters), exc, delay)
                await asyncio.sleep(delay)
                delay = min(self.bulk.backoff_max, delay * 2)


# --------------------------------------------------------------------------
# Drivers: the Faust agent of the worker, and a standalone aiokafka loop.
# --------------------------------------------------------------------------


def register_indexer(app: faust.App, settings: Settings, *, url: str | None = None) -> Any:
    """Add the indexing agent to ``app``: one agent over every indexed topic, batching by size and time.

    Offsets: ``take_events`` acks a batch's events when the loop body is
    done, *and also* when the agent is cancelled mid-batch (its ``finally``).
    So each message gets one extra reference while its batch is in flight,
    dropped only once :meth:`Indexer.process` returned (every document
    indexed or dead-lettered): a batch interrupted by a shutdown or a crash
    is never the last reference released, stays uncommitted, and is read
    again. While Elasticsearch is down ``process`` keeps retrying, the agent
    waits, and nothing past the last indexed batch is committed.
    """
    prefix = settings.kafka.topic_prefix
    es = settings.elasticsearch
    source = app.topic(*(spec.named(prefix) for spec in INDEXED_TOPICS), key_serializer="raw", value_serializer="raw")
    deadletter_topic = app.topic(
        next(t for t in INDEXED_TOPICS if t.kind == "deadletter").named(prefix), key_serializer="raw", value_serializer="raw"
    )

    async def publish(letters: Sequence[DeadLetter]) -> None:
        futures = [await deadletter_topic.send(key=dl.source_topic.encode(), value=encode(dl)) for dl in letters]
        await asyncio.gather(*futures)

    async def index(stream: Any) -> None:
        indexer = Indexer(settings, dead_letter=publish, url=url)
        try:
            await indexer.setup()
            async for events in stream.take_events(es.bulk_max_docs, within=es.bulk_max_seconds):
                for e in events:
                    e.message.incref()
                msgs = [
                    SourceMessage(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
                    for e in events
                ]
                await indexer.process(msgs)
                for e in events:
                    e.message.decref()
        finally:
            await indexer.close()

    return app.agent(source, name="kubepulse.indexing")(index)


def create_indexing_app(settings: Settings, *, url: str | None = None) -> faust.App:
    """A Faust app that only indexes, in its own consumer group (``<consumer_group>-indexing``).

    Its own group, because a stalled indexer must stall nothing else: in the
    worker's app, an Elasticsearch outage would fill the shared stream
    buffers and hold back windows, scores and alerts with it.
    """
    import faust

    k = settings.kafka
    app = faust.App(
        f"{k.consumer_group}-indexing",
        broker=[f"kafka://{hp.strip()}" for hp in k.bootstrap_servers.split(",")],
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        topic_partitions=k.topic_partitions,
        topic_replication_factor=k.topic_replication,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # A batch held through a long outage must not cost the group membership.
        broker_max_poll_interval=3600.0,
        consumer_max_fetch_size=8 * 1024 * 1024,
        stream_buffer_maxsize=max(4096, settings.elasticsearch.bulk_max_docs * 2),
        # Do not wait for the batch in flight before a rebalance or a shutdown: while
        # Elasticsearch is down it never ends. It is not committed (see register_indexer),
        # so whoever owns the partition next reads it again.
        stream_wait_empty=False,
        logging_config=None,
    )
    register_indexer(app, settings, url=url)
    return app
