"""Dead letters: build the kubepulse.deadletter.v1 record for a message that could not be processed, and replay it.

Nothing escapes an agent: Faust acks a message whose handler raised, so an
escaped error is a lost record. Every agent catches per message and turns
the failure into a :class:`~models.records.DeadLetter` with the reason, the
stage where it failed and the original bytes, then goes on with the next one.

The bytes are kept whole whenever a Kafka message can hold them, so a dead
letter can be replayed (``kubepulse deadletter replay``) once its cause is
fixed. A stock broker takes 1 MiB per message and kubepulse keeps every
record under 900 KiB; a source message may itself be close to 1 MiB, and
JSON-escaping or base64 makes it bigger. So, in order:

* UTF-8 text that fits is kept as text (``payload_encoding="text"``), bytes
  that are not UTF-8 as base64;
* what does not fit is gzip-compressed first (``gzip+base64``): scrapes and
  events are JSON and shrink about tenfold, so in practice every one fits;
* only what does not fit even compressed (random bytes near 1 MiB) is cut:
  ``truncated=true``, the first 64 KiB as text, with the size and SHA-256 of
  the whole. Chunking it over several messages was the alternative; it was
  not chosen because a dead letter must be written in one confirmed send
  that cannot fail on size, and what cannot be compressed below 900 KiB is
  not a record of ours anyway (every topic carries JSON).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from models.errors import RecordError
from models.records import DeadLetter

if TYPE_CHECKING:
    from models.settings import Settings

__all__ = ["dead_letter", "payload_fields", "payload_text", "original_payload", "replay_dead_letters", "ReplayReport", "MAX_PAYLOAD_CHARS"]

MAX_PAYLOAD_CHARS = 900 * 1024 - 32 * 1024
"""Most characters of JSON the payload may take in an encoded dead letter: 900 KiB (the records' ceiling,
under the stock broker's 1 MiB) less room for the rest of the record (a 4,000-character reason escaped,
the key, the topic)."""

_TRUNCATED_PREFIX = 64 * 1024
"""How much of a message too big to keep is still shown, as text: enough to recognise it."""


def _json_chars(text: str) -> int:
    return len(orjson.dumps(text))


def payload_fields(data: bytes | str | None) -> dict[str, Any]:
    """The ``payload*`` and ``truncated`` fields of a dead letter holding ``data`` (see the module docstring).

    >>> f = payload_fields(b"\\xff\\x00")
    >>> f["payload"], f["payload_encoding"], f["payload_bytes"], f["truncated"]
    ('/wA=', 'base64', 2, False)
    >>> payload_fields(None)["payload_bytes"] is None
    True
    """
    if data is None:
        return {"payload": "", "payload_encoding": "text", "payload_bytes": None, "payload_sha256": None, "truncated": False}
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    common = {"payload_bytes": len(raw), "payload_sha256": hashlib.sha256(raw).hexdigest()}
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _json_chars(text) <= MAX_PAYLOAD_CHARS:
        return {"payload": text, "payload_encoding": "text", "truncated": False, **common}
    # base64 is 4/3 of the bytes and never needs escaping.
    if text is None and (len(raw) + 2) // 3 * 4 + 2 <= MAX_PAYLOAD_CHARS:
        return {"payload": base64.b64encode(raw).decode("ascii"), "payload_encoding": "base64", "truncated": False, **common}
    # mtime=0: the same bytes give the same dead letter (its document id hashes the payload).
    packed = base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")
    if len(packed) + 2 <= MAX_PAYLOAD_CHARS:
        return {"payload": packed, "payload_encoding": "gzip+base64", "truncated": False, **common}
    head = raw[:_TRUNCATED_PREFIX].decode("utf-8", errors="backslashreplace")
    return {"payload": head, "payload_encoding": "text", "truncated": True, **common}


def original_payload(dl: DeadLetter) -> bytes | None:
    """The original message bytes of ``dl``, or None when it had none or they were cut (``truncated``).

    >>> from datetime import datetime, timezone
    >>> dl = DeadLetter(source_topic="t", stage="decode", reason="r", occurred_at=datetime.now(timezone.utc),
    ...                 **payload_fields(b"\\x00" * 2_000_000))
    >>> dl.payload_encoding, len(original_payload(dl))
    ('gzip+base64', 2000000)
    """
    if dl.truncated or (dl.payload_bytes is None and not dl.payload):
        return None
    if dl.payload_encoding == "text":
        return dl.payload.encode("utf-8")
    raw = base64.b64decode(dl.payload, validate=True)
    return gzip.decompress(raw) if dl.payload_encoding == "gzip+base64" else raw


def payload_text(data: bytes | str | None) -> str:
    """Short bytes (a key) as text, invalid UTF-8 escaped; never the payload (see :func:`payload_fields`)."""
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="backslashreplace")


def dead_letter(
    exc: BaseException,
    *,
    source_topic: str,
    stage: str,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | str | None = None,
    payload: bytes | str | None = None,
) -> DeadLetter:
    """The dead-letter record for ``exc`` raised while handling one message.

    >>> from models.errors import RecordError
    >>> dl = dead_letter(RecordError("invalid JSON: x", error_type="json_invalid"), source_topic="m", stage="decode",
    ...                  partition=0, offset=7, key=b"c1/n1", payload=b"{x")
    >>> dl.reason, dl.error_type, dl.key, dl.payload, dl.payload_bytes
    ('invalid JSON: x', 'json_invalid', 'c1/n1', '{x', 2)
    """
    if isinstance(exc, RecordError):
        reason, error_type = exc.reason, exc.error_type or type(exc).__name__
    else:
        reason, error_type = f"{type(exc).__name__}: {exc}", type(exc).__name__
    return DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=payload_text(key)[:4096] if key is not None else None,
        stage=stage,
        reason=(reason or error_type or "unknown error")[:2000],
        error_type=error_type,
        occurred_at=datetime.now(UTC),
        **payload_fields(payload),
    )


@dataclass(slots=True)
class ReplayReport:
    """What a replay came to (``replay_dead_letters``): counts, and per source topic what was (or would be) sent."""

    read: int = 0
    matched: int = 0
    replayed: int = 0
    not_replayable: int = 0
    """Matched, but the bytes are not all there (``truncated``) or there were none (a message without a value)."""
    duplicates: int = 0
    """Matched, but the same source message was dead-lettered before (by another stage): sent once."""
    unreadable: int = 0
    """Messages of the dead-letter topic that are not a dead letter."""
    by_topic: dict[str, int] = field(default_factory=dict)


async def replay_dead_letters(
    settings: Settings,
    *,
    topic: str | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    dry_run: bool = False,
) -> ReplayReport:
    """Send the dead letters matching the filters back to their source topics, with their keys; returns when Kafka confirmed each.

    Reads the dead-letter topic from its start up to where it ends when the replay starts (what a replay
    writes that fails again is not read back). ``topic`` is a source topic, with or without the topic
    prefix; ``reason`` matches a substring of the reason (case-insensitive) or the error type; ``since``
    keeps those that occurred at or after it. The same source message dead-lettered twice (say, by the
    worker's decoder and by the indexer's) is sent once. A dead letter about the dead-letter topic
    itself is never replayed into it.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from models.kafka import records_to_end, topic_partitions
    from streams.topics import DEADLETTER

    k = settings.kafka
    choose = _ReplayChoice(
        dl_topic=DEADLETTER.named(k.topic_prefix),
        wanted={topic, k.topic_prefix + topic} if topic else None,
        needle=reason.lower() if reason else None,
        since=since,
    )
    consumer = AIOKafkaConsumer(**k.aiokafka_kwargs(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=2 * 2**20)
    producer = None if dry_run else AIOKafkaProducer(**k.producer_kwargs(), max_request_size=2 * 2**20)
    await consumer.start()
    try:
        if producer is not None:
            await producer.start()
        tps = await topic_partitions(consumer, choose.dl_topic, timeout=1.0)  # no dead-letter topic: nothing to replay
        futures = []
        async for m in records_to_end(consumer, tps, only_before_end=True):
            chosen = choose.replayable(m.value)
            if chosen is not None and producer is not None:
                dl, data = chosen
                key = dl.key.encode() if dl.key is not None else None
                futures.append(await producer.send(dl.source_topic, data, key=key))
        # Confirmed: each send acknowledged by every in-sync replica (acks=all) before the count is reported.
        await asyncio.gather(*futures)
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
    return choose.report


@dataclass
class _ReplayChoice:
    """Which dead letters a replay sends, counting each one read into ``report``."""

    dl_topic: str
    wanted: set[str] | None
    needle: str | None
    since: datetime | None
    report: ReplayReport = field(default_factory=ReplayReport)
    seen: set[tuple[Any, ...]] = field(default_factory=set)

    def replayable(self, value: bytes | None) -> tuple[DeadLetter, bytes] | None:
        """The dead letter in ``value`` and its original bytes if it is to be sent (whole, not sent before), else None."""
        from models.codec import decode

        report = self.report
        report.read += 1
        try:
            dl = decode(DeadLetter, value)
        except RecordError:
            report.unreadable += 1
            return None
        if self.wanted is not None and dl.source_topic not in self.wanted:
            return None
        if self.needle is not None and self.needle not in dl.reason.lower() and self.needle != dl.error_type.lower():
            return None
        if self.since is not None and dl.occurred_at < self.since:
            return None
        report.matched += 1
        data = original_payload(dl)
        if data is None or dl.source_topic == self.dl_topic:
            report.not_replayable += 1
            return None
        ident = (dl.source_topic, dl.partition, dl.offset) if dl.offset is not None else (dl.source_topic, dl.payload_sha256)
        if ident in self.seen:
            report.duplicates += 1
            return None
        self.seen.add(ident)
        report.replayed += 1
        report.by_topic[dl.source_topic] = report.by_topic.get(dl.source_topic, 0) + 1
        return dl, data
