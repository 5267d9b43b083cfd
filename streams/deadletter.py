"""Dead letters: build the kubepulse.deadletter.v1 record for a message that could not be processed.

Nothing escapes an agent: Faust acks a message whose handler raised, so an
escaped error is a lost record. Every agent catches per message and turns
the failure into a :class:`~models.records.DeadLetter` with the reason, the
stage where it failed and the original bytes, then goes on with the next one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from models.errors import RecordError
from models.records import DeadLetter

__all__ = ["dead_letter", "payload_text"]

_MAX_PAYLOAD = 64 * 1024
"""Cap on the stored payload: a dead letter must stay far below Kafka's message size limit."""


def payload_text(data: bytes | str | None) -> str:
    """The original message as text: invalid UTF-8 escaped, capped at 64 KiB."""
    if data is None:
        return ""
    text = data if isinstance(data, str) else data.decode("utf-8", errors="backslashreplace")
    if len(text) > _MAX_PAYLOAD:
        return text[:_MAX_PAYLOAD] + f"...[{len(text) - _MAX_PAYLOAD} more characters]"
    return text


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
    >>> dl.reason, dl.error_type, dl.key, dl.payload
    ('invalid JSON: x', 'json_invalid', 'c1/n1', '{x')
    """
    if isinstance(exc, RecordError):
        reason, error_type = exc.reason, exc.error_type or type(exc).__name__
    else:
        reason, error_type = f"{type(exc).__name__}: {exc}", type(exc).__name__
    return DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=payload_text(key) if key is not None else None,
        stage=stage,
        reason=(reason or error_type or "unknown error")[:2000],
        error_type=error_type,
        payload=payload_text(payload),
        occurred_at=datetime.now(UTC),
    )
