"""Decoding of the records the agents read: strict pydantic validation, or a dead letter with the reason.

Agents read raw bytes (Faust's ``raw`` serializer) and decode here, so a bad
message becomes a :class:`~models.records.DeadLetter` instead of an error
inside Faust's deserializer, where it would be logged and lost.
"""

from __future__ import annotations

from typing import TypeVar

from models.codec import decode, decode_fast, encode
from models.errors import RecordError
from models.records import DeadLetter, Record
from streams.deadletter import dead_letter

__all__ = ["decode_or_dead_letter", "encode"]

R = TypeVar("R", bound=Record)


def decode_or_dead_letter(
    model: type[R],
    data: bytes | None,
    *,
    source_topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
    fast: bool = False,
) -> R | DeadLetter:
    """The validated record, or the dead letter that says why it is not one.

    ``fast``: through the decoder compiled from the model (``models.codec.decode_fast``): the same verdict
    and reasons, a struct with the model's fields instead of the model.

    >>> from models.records import NodeScrape
    >>> dl = decode_or_dead_letter(NodeScrape, b'{"cluster": "c1"}', source_topic="kubepulse.metrics.v1")
    >>> dl.stage, dl.error_type, dl.reason.split(";")[0]
    ('decode', 'validation', 'not a valid NodeScrape: node: Field required')
    """
    try:
        return decode_fast(model, data) if fast else decode(model, data)  # type: ignore[no-any-return]
    except RecordError as exc:
        return dead_letter(exc, source_topic=source_topic, stage="decode", partition=partition, offset=offset, key=key, payload=data)
