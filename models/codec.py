"""Encoding and strict decoding of topic records (JSON, UTF-8)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from models.errors import RecordError
from models.records import Record

__all__ = ["encode", "decode", "decode_fast", "decode_list"]

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
        raise _record_error(exc, model.__name__) from exc


def decode_fast(model: type[R], data: bytes | None) -> Any:
    """:func:`decode`, through the decoder compiled from ``model`` (``models._fastcodec``): a struct, not a model.

    The struct has the model's fields and properties and accepts exactly what the model accepts; errors are
    the model's own. For hot paths that only read the record (the worker reads every node scrape this way).

    >>> from models.records import NodeScrape
    >>> decode_fast(NodeScrape, b'{"cluster": "c1", "node": "n1", "timestamp": "2026-01-01T00:00:00Z"}').key
    'c1/n1'
    """
    if data is None:
        raise RecordError("empty message (no value)", error_type="empty")
    fast = _FAST.get(model)
    if fast is None:
        from models._fastcodec import fast_decoder

        fast = _FAST[model] = fast_decoder(model)
    try:
        return fast(data)
    except ValidationError as exc:
        raise _record_error(exc, model.__name__) from exc


_FAST: dict[type, Any] = {}


def decode_list(model: type[R], data: bytes | str | None) -> list[R]:
    """Validate ``data`` as a JSON array of ``model`` records (a batch on an internal topic), like :func:`decode`.

    >>> from models.records import EntityRollup
    >>> decode_list(EntityRollup, b"[]")
    []
    >>> decode_list(EntityRollup, b'[{"entity_id": 1}]')
    Traceback (most recent call last):
    ...
    models.errors.RecordError: not a valid list of EntityRollup: 0.entity_id: Input should be a valid string; ...
    """
    if data is None:
        raise RecordError("empty message (no value)", error_type="empty")
    adapter = _LIST_ADAPTERS.get(model)
    if adapter is None:
        adapter = _LIST_ADAPTERS[model] = TypeAdapter(list[model])  # type: ignore[valid-type]
    try:
        return adapter.validate_json(data)
    except ValidationError as exc:
        raise _record_error(exc, f"list of {model.__name__}") from exc


_LIST_ADAPTERS: dict[type, TypeAdapter] = {}


def _record_error(exc: ValidationError, what: str) -> RecordError:
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        return RecordError(f"invalid JSON: {errors[0]['ctx']['error']}", error_type="json_invalid")
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or what
        parts.append(f"{loc}: {e['msg']}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return RecordError(f"not a valid {what}: " + "; ".join(parts) + more, error_type="validation")
