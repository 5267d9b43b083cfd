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
import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from elastic_transport import SerializationError, TransportError
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_streaming_bulk

from models.codec import decode, encode
from models.errors import RecordError
from models.records import DeadLetter, Record
from models.settings import Settings
from streams._metrics_indexing import (BATCHES_FAILED, BUFFER_BYTES, BUFFER_BYTES_PEAK, BULK_SECONDS, DOCS_DEAD_LETTERED, DOCS_HELD,
                                      DOCS_INDEXED, DOCS_RETRIED, ES_UP, FETCH_PAUSED, HEALTH,
                                      IndexingHealth)
from streams.deadletter import payload_fields
from streams.index import INDEXED_KINDS, Document, ElasticsearchSetupError, async_client, documents_for, index_name, install_templates
from streams.topics import TOPICS, TopicSpec

if TYPE_CHECKING:
    import faust

__all__ = [
    "SourceMessage",
    "Origin",
    "BulkIndexer",
    "BulkResult",
    "Rejection",
    "Indexer",
    "IndexReport",
    "DeadLetterSink",
    "ByteGate",
    "INDEXED_TOPICS",
    "register_indexer",
    "create_indexing_app",
    "ElasticsearchSetupError",
    "HEALTH",
    "IndexingHealth",
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
    """Where a document came from: what its dead letter names (and carries, ``value``) if the document is rejected."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    value: bytes | None = None
    """The source message, so a dead letter can be replayed; None when only the record is known."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A document that is its own fault: what Elasticsearch (or the serialiser) said, and where it came from."""

    origin: Origin
    kind: str
    reason: str
    error_type: str
    body: dict[str, Any]


@dataclass(slots=True)
class BulkResult:
    """What one :meth:`BulkIndexer.index` call came to: documents indexed, those rejected, retries."""

    indexed: int = 0
    rejected: list[Rejection] = field(default_factory=list)
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


_CLUSTER_STATE_ERRORS = frozenset(
    {"cluster_block_exception", "index_closed_exception", "index_not_found_exception", "security_exception"}
)
"""Per-item errors that describe the cluster, not the document: a write block (flood-stage disk, read-only
index), a closed or missing index, refused credentials. ``index_closed_exception`` comes with a 400, so the
status alone does not tell."""


def _item_outcome(status: Any, etype: str) -> str:
    """What to do with a failed item: ``dead_letter`` it (its own fault), or retry it and why.

    >>> _item_outcome(400, "document_parsing_exception"), _item_outcome(403, "cluster_block_exception")
    ('dead_letter', 'blocked')
    >>> _item_outcome(400, "index_closed_exception"), _item_outcome(404, "index_not_found_exception"), _item_outcome(429, "x")
    ('index_missing', 'index_missing', 'rejected')
    """
    if not isinstance(status, int) or status in _RETRY_STATUSES:
        return "rejected"
    if etype in ("index_closed_exception", "index_not_found_exception") or status == 404:
        return "index_missing"
    if etype in _CLUSTER_STATE_ERRORS or status in (401, 403):
        return "blocked"
    # A 400 that is not the cluster's state: a mapping or parsing error, which only a different document fixes.
    # Any other status is unknown, so held: a wrong guess then costs a delay, not a record.
    return "dead_letter" if status == 400 else "blocked"


class _BadReply(Exception):
    """Elasticsearch (or something in front of it) answered a bulk request with what is not a bulk response."""


class BulkIndexer:
    """Index documents in bulk; retry what may succeed later, return what is the documents' own fault.

    ``backoff_initial``/``backoff_max`` shape the wait between retries
    (doubling, with jitter); ``backoff_max`` also bounds how long after
    Elasticsearch comes back the indexer notices.

    What is retried, for as long as it takes (the input stays unacked, the
    documents show on ``kubepulse_indexing_docs_held`` and /readyz is false):
    an unreachable Elasticsearch, 429 and 5xx, and per-item errors that are
    the cluster's state rather than the document's (a write block such as
    flood-stage disk, a missing or closed index, refused credentials).

    What is rejected (dead-lettered by the :class:`Indexer`): a mapping or
    parsing error (a per-item 400), a document the client cannot serialise
    (an integer beyond 64 bits), and a document that makes Elasticsearch
    answer with a reply that is not JSON when its neighbours get JSON.
    A non-JSON reply is retried ``bad_reply_attempts`` times; then the request
    counts as failed (``kubepulse_indexing_bulk_failed_total``) and its
    documents are sent in halves, down to the one that breaks the reply.
    When no request gets a JSON reply (a proxy answering HTML, say), that is
    the cluster's state again: held, never dead-lettered.
    """

    def __init__(
        self,
        client: AsyncElasticsearch,
        settings: Settings,
        *,
        backoff_initial: float = 0.25,
        backoff_max: float = 5.0,
        bad_reply_attempts: int = 3,
    ) -> None:
        self.client = client
        self.prefix = settings.elasticsearch.index_prefix
        self.chunk = settings.elasticsearch.bulk_max_docs
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.bad_reply_attempts = bad_reply_attempts
        self._down_since: float | None = None
        self._json_replies = 0
        """Bulk requests answered with a bulk response: the evidence that a bad reply is one document's doing."""

    async def index(self, docs: Sequence[Document], origins: Sequence[Origin]) -> BulkResult:
        """Index ``docs`` (``origins[i]`` is where ``docs[i]`` came from); returns when every one is settled."""
        result = BulkResult()
        for start in range(0, len(docs), self.chunk):
            await self._settle(docs[start : start + self.chunk], origins[start : start + self.chunk], None, result)
        return result

    async def _settle(
        self, docs: Sequence[Document], origins: Sequence[Origin], positions: list[int] | None, result: BulkResult,
        *, since: int | None = None,
    ) -> None:
        """Send ``positions`` of ``docs`` (all when None) until each is indexed or rejected.

        ``since`` is set for the halves of a request that got bad replies: the count of JSON replies when
        it failed, and each half gets one try before it is halved again (one document gets the full count).
        """
        pending = list(range(len(docs))) if positions is None else positions
        top = since is None
        attempt = bad = 0
        try:
            while pending:
                if attempt:
                    result.retries += 1
                    delay = min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))
                    await asyncio.sleep(delay * (0.5 + random.random() / 2))
                attempt += 1
                before = self._json_replies
                retry, reason = await self._send(docs, origins, pending, result)
                if retry:
                    DOCS_RETRIED.labels(reason).inc(len(retry))
                    DOCS_HELD.set(len(retry))
                    HEALTH.hold(f"{len(retry)} documents held: {reason}")
                if reason != "bad_reply":
                    pending = retry
                    continue
                bad += 1
                if bad < (self.bad_reply_attempts if top or len(pending) == 1 else 1):
                    continue
                if len(pending) > 1:
                    if top:
                        BATCHES_FAILED.inc()
                        log.error("Elasticsearch answered %d bulk requests of %d documents with no JSON; sending them in halves "
                                  "to find the one it breaks on", bad, len(pending))
                    mid = len(pending) // 2
                    for half in (pending[:mid], pending[mid:]):
                        await self._settle(docs, origins, half, result, since=before if since is None else since)
                    return
                if since is not None and self._json_replies > since:
                    # Its neighbours got JSON replies, and it alone never does: the document is the cause.
                    (i,) = pending
                    self._reject(docs[i], origins[i], result, f"every bulk request with it alone got a reply that is not "
                                 f"JSON ({bad} tries) while the others got JSON", "bad_reply")
                    return
                # Nothing gets a JSON reply: the cluster's state (a proxy, a wrong URL), so the document is held.
                bad = 0
        finally:
            if top:
                DOCS_HELD.set(0)
                HEALTH.clear()

    def _reject(self, doc: Document, origin: Origin, result: BulkResult, reason: str, etype: str) -> None:
        result.rejected.append(Rejection(origin, doc.kind, reason, etype, doc.body))
        DOCS_DEAD_LETTERED.labels(doc.kind).inc()

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
        started = time.perf_counter()
        try:
            failed = await self._bulk(actions, by_id)
        except SerializationError as exc:
            BULK_SECONDS.observe(time.perf_counter() - started)
            why = {i: e for i in pending if (e := self._unserialisable(docs[i].body)) is not None}
            if why:
                # The request could not even be written: those documents are the cause, the rest go again at once.
                for i, text in why.items():
                    self._reject(docs[i], origins[i], result, f"it cannot be serialised to JSON ({text})", "serialization")
                rest = [i for i in pending if i not in why]
                return await self._send(docs, origins, rest, result) if rest else ([], "")
            return self._bad_reply(pending, str(exc))
        except _BadReply as exc:
            BULK_SECONDS.observe(time.perf_counter() - started)
            return self._bad_reply(pending, str(exc))
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
        self._json_replies += 1
        if self._down_since is not None:
            log.warning("Elasticsearch is back after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
        return self._sort_out(docs, origins, pending, failed, result)

    async def _bulk(self, actions: list[dict[str, Any]], by_id: dict[tuple[str, str], list[int]]) -> dict[int, dict[str, Any]]:
        """Send ``actions`` in one request; the item of each position Elasticsearch did not index."""
        failed: dict[int, dict[str, Any]] = {}
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
        except (TypeError, KeyError, AttributeError) as exc:
            # A reply with a text content type is handed over as a string, not parsed: the
            # helper then fails reading its "items". Nothing is known to be indexed.
            raise _BadReply(f"{type(exc).__name__}: {exc}") from exc
        return failed

    def _sort_out(self, docs: Sequence[Document], origins: Sequence[Origin], pending: list[int], failed: dict[int, dict[str, Any]],
                  result: BulkResult) -> tuple[list[int], str]:
        """After a JSON reply: count what was indexed, dead-letter what is the document's fault, hold the rest."""
        retry: list[int] = []
        held: Counter[str] = Counter()
        sample: dict[str, str] = {}
        for i, info in failed.items():
            reason, etype = _error_text(info.get("error"))
            outcome = _item_outcome(info.get("status"), etype)
            if outcome != "dead_letter":
                retry.append(i)
                held[outcome] += 1
                sample.setdefault(outcome, f"{info.get('status')} {reason}")
                continue
            self._reject(docs[i], origins[i], result, f"Elasticsearch rejected it ({info.get('status')} {reason})", etype)
        for why in ("blocked", "index_missing"):
            if held[why]:
                log.error("Elasticsearch refused %d documents because of the cluster's state (%s), holding them: %s",
                          held[why], why, sample[why])
        ok = len(pending) - len(failed)
        result.indexed += ok
        if ok:
            if failed:
                kinds = Counter(docs[i].kind for i in pending if i not in failed)
            else:
                kinds = Counter(docs[i].kind for i in pending)
            for kind, n in kinds.items():
                DOCS_INDEXED.labels(kind).inc(n)
        return retry, held.most_common(1)[0][0] if held else ""

    def _bad_reply(self, pending: list[int], text: str) -> tuple[list[int], str]:
        ES_UP.set(1)  # it answered, just not with JSON
        log.warning("Elasticsearch answered a bulk request of %d documents with what is not JSON (%s); retrying", len(pending), text[:200])
        return pending, "bad_reply"

    def _unserialisable(self, body: dict[str, Any]) -> str | None:
        """Why the client cannot write ``body`` as JSON (the encoder's own words), or None when it can."""
        try:
            self.client.transport.serializers.dumps(body, mimetype="application/json")
        except SerializationError as exc:
            causes = [str(e) for e in exc.errors if str(e)]
            return "; ".join(causes) or exc.message[:200]
        return None


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
            yield Origin(m.topic, m.partition, m.offset, key, m.value), produced

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
        rejected: list[Rejection] = []
        for result in results:
            report.indexed += result.indexed
            report.retries += result.retries
            rejected.extend(result.rejected)
        for dl in self._letters(rejected):
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
    def _letters(rejected: Sequence[Rejection]) -> Iterator[DeadLetter]:
        """One dead letter per source message, holding the whole message (replayable), however many of its documents failed."""
        by_message: dict[tuple[str, int | None, int | None, str | None], list[Rejection]] = {}
        for r in rejected:
            o = r.origin
            by_message.setdefault((o.topic, o.partition, o.offset, o.key), []).append(r)
        for group in by_message.values():
            first, o = group[0], group[0].origin
            more = f" (and {len(group) - 1} more of its documents)" if len(group) > 1 else ""
            # Without the source message (records indexed directly), the rejected document is what is kept.
            payload = o.value if o.value is not None else json.dumps(first.body, default=str).encode()
            yield DeadLetter(
                source_topic=o.topic,
                partition=o.partition,
                offset=o.offset,
                key=o.key,
                stage="indexing",
                reason=_reason(f"a {first.kind} document could not be indexed: {first.reason}{more}"),
                error_type=first.error_type,
                occurred_at=datetime.now(UTC),
                **payload_fields(payload),
            )

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
            occurred_at=datetime.now(UTC),
            **payload_fields(m.value),
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


class ByteGate:
    """Admits messages while the bytes held stay within ``limit``; the indexer's backpressure.

    The first message is always admitted, so one larger than the limit still passes (alone).
    ``admit`` waits while the gate is full; ``release`` is called once a batch is indexed.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._freed = asyncio.Event()

    async def admit(self, n: int) -> None:
        while self.held and self.held + n > self.limit:
            FETCH_PAUSED.set(1)
            self._freed.clear()
            await self._freed.wait()
        FETCH_PAUSED.set(0)
        self.held += n
        BUFFER_BYTES.set(self.held)
        if self.held > self.peak:
            self.peak = self.held
            BUFFER_BYTES_PEAK.set(self.peak)

    def release(self, n: int) -> None:
        self.held = max(0, self.held - n)
        BUFFER_BYTES.set(self.held)
        self._freed.set()


def _size(m: Any) -> int:
    return len(m.value or b"") + len(m.key or b"")


def register_indexer(app: faust.App, settings: Settings, *, url: str | None = None) -> Any:
    """Add the indexing agent to ``app``: one agent over every indexed topic, batching by size, bytes and time.

    Offsets: ``take_events`` acks a batch's events when the loop body is
    done, *and also* when the agent is cancelled mid-batch (its ``finally``).
    So each message gets one extra reference while its batch is in flight,
    dropped only once :meth:`Indexer.process` returned (every document
    indexed or dead-lettered): a batch interrupted by a shutdown or a crash
    is never the last reference released, stays uncommitted, and is read
    again. While Elasticsearch is down ``process`` keeps retrying, the agent
    waits, and nothing past the last indexed batch is committed.

    Memory: a processor ahead of ``take_events`` admits each message through
    a :class:`ByteGate` of ``elasticsearch.buffer_max_bytes``. While a batch
    is held, the next one fills up to the gate and the stream then stops
    taking messages: Faust's queue fills and Faust stops fetching (its own
    backpressure, ``Consumer.on_buffer_full``), so a long outage holds at most
    the gate, the queue and one fetch per partition, not ever more messages.
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
        gate = ByteGate(es.buffer_max_bytes)

        async def admit(value: Any) -> Any:
            event = stream.current_event
            await gate.admit(_size(event.message) if event is not None else len(value or b""))
            return value

        stream.add_processor(admit)
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
                gate.release(sum(_size(e.message) for e in events))
                del msgs
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
        # One fetch per partition may sit in aiokafka's buffers whatever the gate says: 1 MiB
        # each (a record bigger than that still comes, alone) keeps them small next to the pod's limit.
        consumer_max_fetch_size=1024 * 1024,
        # Messages wait here before the byte gate (register_indexer); few, because each may be 1 MiB.
        stream_buffer_maxsize=64,
        # Do not wait for the batch in flight before a rebalance or a shutdown: while
        # Elasticsearch is down it never ends. It is not committed (see register_indexer),
        # so whoever owns the partition next reads it again.
        stream_wait_empty=False,
        logging_config=None,
    )
    register_indexer(app, settings, url=url)
    return app
