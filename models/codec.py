"""Encoding and strict decoding of topic records (JSON, UTF-8)."""

from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError

from models.errors import RecordError
from models.records import Record

__all__ = ["encode", "decode"]

R = TypeVar("R", bound=Record)


def encode(record: Record) -> bytes:
    """JSON bytes of a record, None fields included (the schema says they may be null)."""
    return record.__pydantic_serializer__.to_json(record)


def decode(model: type[R], data: bytes | str | None) -> R:
    """Validate ``data`` as ``model`` or raise :class:`RecordError` with a readable reason.

    >>> from models.records import DeadLetter
    >>> decode(DeadLetter, b"{not json")
    Traceback (most recent call last):
    ...
    models.errors.RecordError: invalid JSON: key must be a string at line 1 column 2
    """
    if data is None:
        raise RecordError("empty message (no value)", error_type="empty")
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise RecordError(f"invalid JSON: {errors[0]['ctx']['error']}", error_type="json_invalid") from exc
        parts = []
        for e in errors[:5]:
            loc = ".".join(str(p) for p in e["loc"]) or model.__name__
            parts.append(f"{loc}: {e['msg']}")
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        raise RecordError(f"not a valid {model.__name__}: " + "; ".join(parts) + more, error_type="validation") from exc
