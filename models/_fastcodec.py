"""A compiled strict decoder for the records the worker reads most (node scrapes), generated from the pydantic models.

Strict pydantic validation of a 250-pod node scrape costs ~1.5 µs per sample,
more than everything else the worker does with it. msgspec validates the same
JSON into plain structs about 7x faster. The pydantic models stay the only
definition of the contract: :func:`struct_for` compiles a model's fields
(types, defaults, ``ge``/``min_length``/``max_length``/``pattern``, closed
objects, aware datetimes, finite floats) into ``msgspec.Struct`` classes with
the same attribute names and the model's properties, and a model with a
validator of its own (``model_validator``/``field_validator``) is refused, so
nothing the model checks can be skipped. A message the fast decoder rejects
is validated again by pydantic, which gives the reason (the error text of the
contract) or, should the two ever disagree, the record: the fast path can
only be stricter, never laxer (``tests/unit/test_fastcodec.py`` checks both
on valid, mutated and hostile inputs).
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from collections.abc import Callable
from operator import attrgetter
from typing import Annotated, Any, get_args, get_origin

import annotated_types as at
import msgspec
from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = ["struct_for", "fast_decoder"]

_MAX = 1.7976931348623157e308
"""A finite float lies within +-_MAX: these bounds reject inf and NaN, as ``allow_inf_nan=False`` does."""

NO_SLASH = r"^[^/]+$"
"""``models.records.Segment``'s pattern: checked by a plain ``"/" in s`` after decoding, not a regex."""

_structs: dict[type[BaseModel], type[msgspec.Struct]] = {}


def _meta(items: list[Any]) -> tuple[dict[str, Any], bool]:
    """msgspec.Meta keywords of pydantic/annotated-types constraints, and whether the float must be finite."""
    kw: dict[str, Any] = {}
    finite = False
    bounds = {at.Ge: "ge", at.Gt: "gt", at.Le: "le", at.Lt: "lt", at.MinLen: "min_length", at.MaxLen: "max_length"}
    for m in items:
        if isinstance(m, FieldInfo):
            sub, fin = _meta(list(m.metadata))
            kw.update(sub)
            finite = finite or fin
            continue
        name = bounds.get(type(m))
        if name is not None:
            kw[name] = getattr(m, name)
            continue
        known = False
        if getattr(m, "allow_inf_nan", None) is not None:  # pydantic's general metadata
            finite = finite or m.allow_inf_nan is False
            known = True
        if getattr(m, "pattern", None) is not None:
            if m.pattern != NO_SLASH:  # that one is checked after decoding: a regex per string costs 40 %
                kw["pattern"] = m.pattern
            known = True
        if not known:
            raise TypeError(f"no fast equivalent of the constraint {m!r}")
    return kw, finite


def _convert(tp: Any) -> Any:
    origin = get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return struct_for(tp)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_convert(a) for a in get_args(tp))]  # noqa: UP007
    if origin is list:
        return list[_convert(get_args(tp)[0])]  # type: ignore[misc]
    if origin is dict:
        k, v = get_args(tp)
        return dict[_convert(k), _convert(v)]  # type: ignore[misc]
    if origin is typing.Literal:
        return tp
    if origin is Annotated:
        base, *extra = get_args(tp)
        kw, finite = _meta(list(extra))
        inner = _convert(base)
        if get_origin(inner) is Annotated:  # e.g. an aware datetime
            return inner
        if base is float and finite:
            kw.setdefault("ge", -_MAX)
            kw.setdefault("le", _MAX)
        return Annotated[inner, msgspec.Meta(**kw)] if kw else inner
    if tp is dt.datetime:
        raise TypeError("a naive datetime field has no strict fast equivalent; use AwareDatetime")
    if getattr(tp, "__name__", "") == "AwareDatetime":
        return Annotated[dt.datetime, msgspec.Meta(tz=True)]
    if tp in (str, int, float, bool, type(None)):
        return tp
    raise TypeError(f"no fast equivalent of the type {tp!r}")


def struct_for(model: type[BaseModel]) -> type[msgspec.Struct]:
    """The ``msgspec.Struct`` class compiled from ``model`` (cached); raises TypeError for what it cannot mirror."""
    got = _structs.get(model)
    if got is not None:
        return got
    decorators = model.__pydantic_decorators__
    if decorators.model_validators or decorators.field_validators:
        raise TypeError(f"{model.__name__} has validators of its own: decode it with pydantic")
    if model.model_config.get("extra") != "forbid":
        raise TypeError(f"{model.__name__} is not closed (extra='forbid'): decode it with pydantic")
    fields: list[Any] = []
    for name, f in model.model_fields.items():
        ann = Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation
        t = _convert(ann)
        if f.is_required():
            fields.append((name, t))
        elif f.default_factory is not None:
            factory = f.default_factory
            if isinstance(factory, type) and issubclass(factory, BaseModel):
                factory = struct_for(factory)  # an empty part (``Resources()``) is the struct's, not the model's
            fields.append((name, t, msgspec.field(default_factory=factory)))  # type: ignore[arg-type]
        else:
            fields.append((name, t, f.default))
    namespace = {k: v for k, v in vars(model).items() if isinstance(v, property)}
    for base in model.__mro__[1:]:
        for k, v in vars(base).items():
            if isinstance(v, property):
                namespace.setdefault(k, v)
    struct = msgspec.defstruct(model.__name__, fields, namespace=namespace, forbid_unknown_fields=True, kw_only=True)
    _structs[model] = struct
    return struct


def _unwrap(tp: Any) -> tuple[Any, bool, str | None]:
    """``(innermost type, is a list of it, pattern)`` of a field annotation (Optional and Annotated peeled)."""
    pattern = None
    is_list = False
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            base, *extra = get_args(tp)
            for m in extra:
                for x in (m.metadata if isinstance(m, FieldInfo) else [m]):
                    pattern = getattr(x, "pattern", None) or pattern
            tp = base
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp, is_list, pattern
            tp = args[0]
        elif origin is list:
            tp, is_list = get_args(tp)[0], True
        else:
            return tp, is_list, pattern


def _slash_check(model: type[BaseModel]) -> Callable[[Any], bool] | None:
    """A function telling whether a decoded ``model`` holds a ``/`` where :data:`NO_SLASH` forbids one (None: nowhere)."""
    names: list[str] = []
    subs: list[tuple[str, Callable[[Any], bool], bool]] = []
    for name, f in model.model_fields.items():
        ann = Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation
        base, is_list, pattern = _unwrap(ann)
        if pattern == NO_SLASH and not is_list:
            names.append(name)
        elif isinstance(base, type) and issubclass(base, BaseModel):
            sub = _slash_check(base)
            if sub is not None:
                subs.append((name, sub, is_list))
    if not names and not subs:
        return None

    get_names = attrgetter(*names) if len(names) > 1 else (lambda o, n=names[0]: (getattr(o, n),)) if names else None

    def holds_slash(obj: Any) -> bool:
        if get_names is not None:
            for v in get_names(obj):
                if v is not None and "/" in v:
                    return True
        for n, sub, is_list in subs:
            v = getattr(obj, n)
            if v is None:
                continue
            if is_list:
                for item in v:
                    if sub(item):
                        return True
            elif sub(v):
                return True
        return False

    return holds_slash


def fast_decoder(model: type[BaseModel]) -> Callable[[bytes], Any]:
    """``decode(data)``: a struct with the model's fields and properties, or the model's own ValidationError.

    >>> from models.records import NodeScrape
    >>> decode = fast_decoder(NodeScrape)
    >>> s = decode(b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01T00:00:00Z","pods":[]}')
    >>> s.key, s.timestamp.isoformat(), type(s).__name__
    ('c1/n1', '2026-01-01T00:00:00+00:00', 'NodeScrape')
    >>> decode(b'{"cluster":"c1","node":7,"timestamp":"2026-01-01T00:00:00Z"}')
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for NodeScrape
    node
      Input should be a valid string [type=string_type, input_value=7, input_type=int]
        For further information visit https://errors.pydantic.dev/2.14/v/string_type
    """
    decoder = msgspec.json.Decoder(struct_for(model))
    holds_slash = _slash_check(model)

    def decode(data: bytes) -> Any:
        try:
            got = decoder.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            got = None
        if got is not None and (holds_slash is None or not holds_slash(got)):
            return got
        # The contract's own validation: its error (the reason a dead letter carries), or, were the
        # fast decoder ever stricter than the model, the record itself.
        return model.model_validate_json(data)

    return decode

