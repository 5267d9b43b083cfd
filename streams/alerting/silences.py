"""Silences: matchers plus a time range, kept in the compacted topic kubepulse.silences.v1.

Every dispatcher reads the whole topic and keeps following it, so a silence
added on one machine mutes alerts on every worker. Expiring republishes the
silence with ``ends_at`` = now (the latest version wins after compaction).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer

from models.codec import decode, encode
from models.errors import RecordError
from models.records import Silence
from models.settings import Settings
from models.kafka import read_to_end
from streams.alerting._matchers import Matcher, matches_all, parse_matcher
from streams.alerting.errors import MatcherError, SilenceError
from streams.topics import SILENCES, create_topics

__all__ = ["SilenceStore", "new_silence", "add_silence", "list_silences", "expire_silence"]


class SilenceStore:
    """The silences a dispatcher knows, latest version per id."""

    def __init__(self, silences: Iterable[Silence] = ()) -> None:
        self._by_id: dict[str, tuple[Silence, list[Matcher]]] = {}
        for s in silences:
            self.put(s)

    def put(self, silence: Silence) -> None:
        """Add or replace a silence; :class:`MatcherError` for an unparsable matcher, and the store is unchanged.

        ``kubepulse silence add`` rejects a bad matcher, but anyone may write to
        the topic: the caller must make such a silence seen (the dispatcher
        dead-letters it), since it mutes nothing.
        """
        matchers = [parse_matcher(m) for m in silence.matchers]
        self._by_id[silence.silence_id] = (silence, matchers)

    def muted_by(self, labels: Mapping[str, str], now: datetime) -> list[str]:
        """Ids of the silences active at ``now`` whose matchers all match ``labels``."""
        return [
            sid
            for sid, (s, matchers) in self._by_id.items()
            if s.starts_at <= now < s.ends_at and matches_all(matchers, labels)
        ]

    def all(self) -> list[Silence]:
        return [s for s, _ in self._by_id.values()]

    def get(self, silence_id: str) -> Silence | None:
        hit = self._by_id.get(silence_id)
        return hit[0] if hit else None


def new_silence(
    matchers: list[str],
    *,
    duration_s: float,
    created_by: str,
    comment: str = "",
    starts_at: datetime | None = None,
    now: datetime | None = None,
) -> Silence:
    """A new silence; raises :class:`SilenceError` for a bad matcher or a non-positive duration."""
    if not matchers:
        raise SilenceError("a silence needs at least one matcher, e.g. namespace=\"shop\"")
    for m in matchers:
        try:
            parse_matcher(m)
        except MatcherError as exc:
            raise SilenceError(str(exc)) from exc
    if duration_s <= 0:
        raise SilenceError("the duration must be positive (e.g. 2h)")
    now = now or datetime.now(UTC)
    start = starts_at or now
    return Silence(
        silence_id=uuid.uuid4().hex,
        matchers=list(matchers),
        starts_at=start,
        ends_at=start + timedelta(seconds=duration_s),
        created_by=created_by,
        comment=comment,
        updated_at=now,
    )


async def _publish(settings: Settings, silence: Silence) -> None:
    await create_topics(settings, [SILENCES])
    producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(
            SILENCES.named(settings.kafka.topic_prefix), encode(silence), key=silence.key.encode()
        )
    finally:
        await producer.stop()


async def add_silence(settings: Settings, silence: Silence) -> Silence:
    """Publish a silence to the silences topic (every dispatcher picks it up)."""
    await _publish(settings, silence)
    return silence


async def list_silences(settings: Settings) -> list[Silence]:
    """The latest version of every silence on the topic (undecodable records are skipped)."""
    await create_topics(settings, [SILENCES])
    store: dict[str, Silence] = {}
    for key, value in await read_to_end(settings, SILENCES.named(settings.kafka.topic_prefix)):
        if value is None:
            if key is not None:
                store.pop(key.decode(errors="replace"), None)
            continue
        try:
            s = decode(Silence, value)
        except RecordError:
            continue
        store[s.silence_id] = s
    return sorted(store.values(), key=lambda s: s.starts_at)


async def expire_silence(settings: Settings, silence_id: str, *, now: datetime | None = None) -> Silence:
    """End a silence now; :class:`SilenceError` if no silence has that id (a prefix of 6+ characters is enough)."""
    now = now or datetime.now(UTC)
    silences = await list_silences(settings)
    hits = [s for s in silences if s.silence_id == silence_id or (len(silence_id) >= 6 and s.silence_id.startswith(silence_id))]
    if not hits:
        raise SilenceError(f"no silence with id {silence_id!r} (see `kubepulse silence list`)")
    if len(hits) > 1:
        raise SilenceError(f"{silence_id!r} is ambiguous: {', '.join(s.silence_id for s in hits)}")
    s = hits[0]
    expired = s.model_copy(update={"ends_at": max(now, s.starts_at), "updated_at": now})
    await _publish(settings, expired)
    return expired
