"""Records to Elasticsearch documents: the field table of ``streams.index._fields`` made fast, plus ids and index names.

A node scrape becomes one document per entity (node, pod, container,
volume), a ResourceQuota one per resource it limits, an entity rollup one
document in its window's index (if that window and entity kind are indexed,
``elasticsearch.rollups``); every other record becomes one document. Each
document's ``_id`` is derived from what identifies the record (cluster,
entity or series, event time, kind), so indexing the same record twice (a
replay after a crash or a rebalance) overwrites the same document instead of
adding one. The time-series documents (metrics, rollups) get
:func:`series_doc_id`: a hash of the entity followed by the time, so the ids of
one entity share a prefix and cost a few bytes each in the sorted index.

Documents use dotted keys (``{"kubernetes.pod.name": "cart-1"}``):
Elasticsearch expands them into the mapped objects, and a flat dict is the
cheapest thing Python can build per entity.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from models.errors import RecordError
from models.records import (
    RECORD_TYPES,
    REPORT_TYPES,
    AlertTransition,
    Anomaly,
    AutoscalerScrape,
    CapacityForecast,
    DeadLetter,
    EntityRollup,
    Incident,
    KubeEvent,
    NodeScrape,
    Notification,
    QuotaScrape,
    Recommendation,
    Record,
)
from models.series import quota_entities
from models.settings import ElasticsearchSettings
from streams.index._fields import (
    DATE,
    FLOAT,
    INDEX_KINDS,
    INDEXED_KINDS,
    KIND_FIELDS,
    METRICSET_FIELDS,
    ROLLUP_FIELDS,
    ROLLUP_METRICS,
    ROLLUP_STATS,
    SHARE,
    Derived,
    Entry,
    Field,
    Stat,
    rollup_field,
    rollup_index_kind,
)

__all__ = ["Document", "documents_for", "index_name", "parse_index_name", "doc_id", "series_doc_id", "kind_of", "DEFAULT_ROLLUPS"]

DEFAULT_ROLLUPS: Mapping[str, Collection[str]] = ElasticsearchSettings().rollups
"""Which rollups are indexed when the caller does not say: ``elasticsearch.rollups``' default."""


class Document(NamedTuple):
    """One document to index: its index kind, the UTC day of its event time (``YYYY.MM.DD``), ``_id`` and body."""

    kind: str
    day: str
    id: str
    body: dict[str, Any]


_KIND_OF: dict[type[Record], str] = {
    **{cls: kind for kind, cls in RECORD_TYPES.items() if kind in INDEXED_KINDS},
    **{cls: kind for kind, cls in REPORT_TYPES.items()},
}


def kind_of(record: Record) -> str:
    """The record kind of an indexed record (``metrics`` for a :class:`NodeScrape`, ``rollups`` for an entity rollup)."""
    try:
        return _KIND_OF[type(record)]
    except KeyError:
        raise TypeError(f"{type(record).__name__} records are not indexed; indexed kinds: {', '.join(INDEXED_KINDS)}") from None


def index_name(prefix: str, kind: str, day: str) -> str:
    """The daily index of ``kind``: ``<prefix>-<kind>-YYYY.MM.DD``.

    >>> index_name("kubepulse", "metrics", "2026.01.31")
    'kubepulse-metrics-2026.01.31'
    """
    return f"{prefix}-{kind}-{day}"


_INDEX_NAME = re.compile(rf"-({'|'.join(map(re.escape, INDEX_KINDS))})-(\d{{4}})\.(\d{{2}})\.(\d{{2}})$")


def parse_index_name(prefix: str, name: str) -> tuple[str, date] | None:
    """(index kind, day) of one of kubepulse's daily indices, None for any other name (or an impossible day).

    >>> parse_index_name("kp", "kp-rollups-1h-2026.03.01")
    ('rollups-1h', datetime.date(2026, 3, 1))
    >>> parse_index_name("kp", "kp-other-2026.03.01"), parse_index_name("kp", "kpx-metrics-2026.03.01")
    (None, None)
    """
    if not name.startswith(prefix):
        return None
    m = _INDEX_NAME.match(name, len(prefix))
    if m is None:
        return None
    try:
        return m[1], date(int(m[2]), int(m[3]), int(m[4]))
    except ValueError:
        return None  # not a real day: not an index we made


def doc_id(*parts: object) -> str:
    """A stable 128-bit id of the parts (blake2b, hex): the same record always gets the same id.

    >>> a = doc_id("rollups", "c1/shop/cart-1/-/pod.cpu_cores", "1m", "2026-01-01T00:00:00+00:00")
    >>> len(a), a == doc_id("rollups", "c1/shop/cart-1/-/pod.cpu_cores", "1m", "2026-01-01T00:00:00+00:00")
    (32, True)
    """
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


def series_doc_id(key: str, ts: datetime) -> str:
    """The id of a time-series document: 9 bytes of hash of ``key`` (the entity), then the time in ms, base64url.

    20 characters; one entity's ids share their first 12, so in an index sorted by entity the id terms and
    stored ids compress to a few bytes per document (a random 32-character hash costs ~30). The time wraps
    every 8,919 years, so no two documents of one entity in one index share an id.

    >>> from datetime import timezone
    >>> a = series_doc_id("c1/shop/cart-1/-/", datetime(2026, 1, 1, tzinfo=timezone.utc))
    >>> b = series_doc_id("c1/shop/cart-1/-/", datetime(2026, 1, 1, 0, 0, 15, tzinfo=timezone.utc))
    >>> len(a), a[:12] == b[:12], a == b
    (20, True, False)
    """
    head = hashlib.blake2b(key.encode(), digest_size=9).digest()
    ms = round(ts.timestamp() * 1000) % 2**48
    return base64.urlsafe_b64encode(head + ms.to_bytes(6, "big")).decode()


EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""Event times before this are garbage (a zeroed clock, a bad parse), not history: Kubernetes is from 2014."""
MAX_AHEAD = timedelta(days=1)
"""How far past now an event time may be. Each day is an index: unbounded days would let a broken clock
(or a hostile producer) create an index per record until the cluster's shard limit stops all indexing."""


def _day(ts: datetime) -> str:
    """The ``YYYY.MM.DD`` of the daily index ``ts`` goes to, or :class:`RecordError` outside the plausible range.

    >>> _day(datetime(9999, 12, 31, tzinfo=UTC))
    Traceback (most recent call last):
    ...
    models.errors.RecordError: event time 9999-12-31T00:00:00+00:00 is more than 1 day ahead of now: not indexed (a node's clock or its producer is wrong)
    """
    if ts < EARLIEST_EVENT_TIME:
        raise RecordError(f"event time {ts.isoformat()} is before {EARLIEST_EVENT_TIME.date()}: not indexed (a zeroed or unset clock)",
                          error_type="event_time_out_of_range")
    if ts > datetime.now(UTC) + MAX_AHEAD:
        raise RecordError(f"event time {ts.isoformat()} is more than 1 day ahead of now: not indexed "
                          "(a node's clock or its producer is wrong)", error_type="event_time_out_of_range")
    return ts.astimezone(UTC).strftime("%Y.%m.%d")


# --------------------------------------------------------------------------
# Compiling the table: each entry becomes (field, getter) once, at import.
# --------------------------------------------------------------------------

_Getter = Callable[[dict[str, Any]], Any]

# Metrics paths start at one of these objects; longest prefix first.
_ROOTS = (("pods[].containers[].", "self"), ("pods[].volumes[].", "self"), ("pods[].", "pod"), ("node_stats.", "node"), ("", "record"))


def _path_getter(path: str) -> Callable[[Any], Any]:
    """Walk ``a.b.c`` from an object, None as soon as a step is None; ``x[].y`` sums ``y`` over list ``x``."""
    if "[]." in path:
        head, _, member = path.partition("[].")
        get_list = _path_getter(head)

        def summed(obj: Any) -> Any:
            values = [v for v in (getattr(i, member) for i in get_list(obj) or ()) if v is not None]
            return sum(values) if values else None

        return summed
    steps = path.split(".")
    if len(steps) == 1:
        name = steps[0]
        return lambda obj: getattr(obj, name)

    def walk(obj: Any) -> Any:
        for s in steps:
            if obj is None:
                return None
            obj = getattr(obj, s)
        return obj

    return walk


def _rounded(v: float) -> float:
    # What a float doc value keeps (7 significant digits) needs no more in _source: shares and rates to
    # a millionth take 8-12 characters where a full double takes 18, and compress far better.
    return round(v, 6)


def _compile_field(e: Field) -> _Getter:
    root, rel = "record", e.src
    for prefix, name in _ROOTS:
        if e.src.startswith(prefix):
            root, rel = name, e.src[len(prefix) :]
            break
    get = _path_getter(rel)
    convert = e.convert
    if e.type in (SHARE, FLOAT):
        convert = _rounded if convert is None else (lambda v, c=convert: _rounded(c(v)))
    is_date = e.type == DATE

    def getter(ctx: dict[str, Any]) -> Any:
        v = get(ctx[root])
        if v is None:
            return None
        if convert is not None:
            v = convert(v)
        if is_date and v is not None:
            v = v.isoformat()
        return v

    return getter


def _compile_derived(e: Derived) -> _Getter:
    fn = e.fn
    if e.type in (SHARE, FLOAT):

        def rounded(ctx: dict[str, Any]) -> Any:
            v = fn(ctx)
            return None if v is None else _rounded(v)

        return rounded
    if e.type != DATE:
        return fn

    def getter(ctx: dict[str, Any]) -> Any:
        v = fn(ctx)
        return None if v is None else v.isoformat()

    return getter


def _compile(entries: Iterable[Entry]) -> tuple[tuple[str, _Getter], ...]:
    return tuple(
        (e.es, _compile_field(e) if isinstance(e, Field) else _compile_derived(e)) for e in entries if not isinstance(e, Stat)
    )


def _scope(e: Field | Derived) -> str:
    if isinstance(e, Derived):
        return e.scope
    for prefix, root in _ROOTS:
        if e.src.startswith(prefix):
            return {"record": "record", "node": "record"}.get(root, root)
    return "record"


def _by_scope(entries: list[Entry]) -> dict[str, tuple[tuple[str, _Getter], ...]]:
    """The entries compiled and split by scope, so shared parts are built once per scrape or pod."""
    return {
        scope: _compile(e for e in entries if not isinstance(e, Stat) and _scope(e) == scope) for scope in ("record", "pod", "self")
    }


_METRICSETS = {ms: _by_scope(entries) for ms, entries in METRICSET_FIELDS.items()}
_KINDS = {kind: _compile(entries) for kind, entries in KIND_FIELDS.items()}
_ROLLUP = _compile(ROLLUP_FIELDS)


def _build(compiled: tuple[tuple[str, _Getter], ...], ctx: dict[str, Any], doc: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = {} if doc is None else doc
    for es, get in compiled:
        v = get(ctx)
        if v is not None:
            doc[es] = v
    return doc


# --------------------------------------------------------------------------
# Per kind: identity of the document and the day of its index.
# --------------------------------------------------------------------------


def _metrics(s: NodeScrape) -> list[Document]:
    day = _day(s.timestamp)
    c = s.cluster
    ctx: dict[str, Any] = {"record": s, "node": s.node_stats, "pod": None, "self": s.node_stats}
    # Entity prefixes are the series id prefixes of models.series, so a
    # metrics document joins to its rollups and anomalies by prefix.
    entity = f"{c}/-/node:{s.node}/-/"
    ctx["entity"] = entity
    node_set = _METRICSETS["node"]
    node_doc = _build(node_set["self"], ctx, _build(node_set["pod"], ctx, _build(node_set["record"], ctx)))
    when = s.timestamp
    out = [Document("metrics", day, series_doc_id(entity, when), node_doc)]
    sets = {ms: _METRICSETS[ms] for ms in ("pod", "volume", "container")}
    # What every document of the scrape shares, built once per scrape.
    scrape_part = {ms: _build(parts["record"], ctx) for ms, parts in sets.items()}
    pod_parts = sets["pod"]
    for p in s.pods:
        pod_prefix = f"{c}/{p.namespace}/{p.name}/"
        ctx["pod"] = ctx["self"] = p
        ctx["entity"] = entity = pod_prefix + "-/"
        doc = _build(pod_parts["pod"], ctx, dict(scrape_part["pod"]))
        out.append(Document("metrics", day, series_doc_id(entity, when), _build(pod_parts["self"], ctx, doc)))
        # Its volumes, then its containers: one document each, on top of what they share of the pod.
        for ms, children, slot in (("volume", p.volumes, "volume:"), ("container", p.containers, "")):
            if children:
                parts = sets[ms]
                shared = _build(parts["pod"], ctx, dict(scrape_part[ms]))
                for child in children:
                    ctx["self"] = child
                    ctx["entity"] = entity = f"{pod_prefix}{slot}{child.name}/"
                    out.append(Document("metrics", day, series_doc_id(entity, when), _build(parts["self"], ctx, dict(shared))))
    return out


class _QuotaResource(NamedTuple):
    """One resource of a ResourceQuota, as the ``quotas`` field table reads it: ``hard`` and ``used`` are that resource's."""

    cluster: str
    namespace: str
    name: str
    timestamp: datetime
    source: str
    hard: float
    used: float | None


def _quotas(q: QuotaScrape) -> list[Document]:
    # One document per resource, the ones models.series makes series of (the
    # ``hard`` keys: Kubernetes only counts what a quota limits), so the
    # document's share and entity are the rule engine's.
    ts = q.timestamp.isoformat()
    day = _day(q.timestamp)
    compiled = _KINDS["quotas"]
    out = []
    for e in quota_entities(q):
        resource = e.labels["resource"]
        view = _QuotaResource(q.cluster, q.namespace, q.name, q.timestamp, q.source, q.hard[resource], q.used.get(resource))
        ctx = {"record": view, "resource": resource, "entity": e.prefix, "used_share": dict(e.metrics)["quota.used_share"]}
        out.append(Document("quotas", day, doc_id("quotas", q.cluster, q.namespace, q.name, resource, ts), _build(compiled, ctx)))
    return out


def _one(kind: str, record: Record, ts: datetime, *id_parts: object) -> list[Document]:
    body = _build(_KINDS[kind], {"record": record})
    body.setdefault("@timestamp", ts.isoformat())
    return [Document(kind, _day(ts), doc_id(kind, *id_parts), body)]


def _events(r: KubeEvent) -> list[Document]:
    # An Event with neither first nor last seen has no time of its own; the
    # indexing time stands in (its id is still stable, only its day may move).
    ts = r.last_seen or r.first_seen or datetime.now(UTC)
    return _one("events", r, ts, r.cluster, r.uid, r.resource_version, r.count, r.last_seen or r.first_seen)


def _stat_fields(metric: str) -> tuple[tuple[str, str], ...]:
    """(document field, MetricStats attribute) of each statistic of ``metric``."""
    root = rollup_field(metric)
    return tuple((f"{root}.{leaf}", attr) for leaf, attr in ROLLUP_STATS)


# Computed once for the metrics the mapping knows; a name it does not know is spelled out per record (and its
# document refused by the strict mapping, so dead-lettered with Elasticsearch's reason), never cached.
_STAT_FIELDS = {m: _stat_fields(m) for m in ROLLUP_METRICS}


def _rollups(r: EntityRollup, rollups: Mapping[str, Collection[str]]) -> list[Document]:
    if r.kind not in rollups.get(r.window, ()):
        return []
    body = _build(_ROLLUP, {"record": r})
    count = body["kubepulse.rollup.count"]
    for metric, stats in r.metrics.items():
        for es, attr in _STAT_FIELDS.get(metric) or _stat_fields(metric):
            body[es] = getattr(stats, attr)
        if stats.count != count:
            body[f"{rollup_field(metric)}.count"] = stats.count
    # One entity has a 1m and a 1h window starting at the same minute: the window is part of the identity.
    doc_id_ = series_doc_id(f"{r.entity_id}/{r.window}", r.window_start)
    return [Document(rollup_index_kind(r.window), _day(r.window_start), doc_id_, body)]


def _autoscalers(r: AutoscalerScrape) -> list[Document]:
    # One document per HPA and day: every pass overwrites it with the newest state (see the field table).
    return _one("autoscalers", r, r.timestamp, r.cluster, r.namespace, r.name, _day(r.timestamp))


def _capacity(r: CapacityForecast) -> list[Document]:
    # One per entity, resource and day: a rerun of the report the same day replaces its forecast.
    return _one("capacity", r, r.generated_at, r.entity_id, r.resource, _day(r.generated_at))


def _recommendations(r: Recommendation) -> list[Document]:
    return _one("recommendations", r, r.generated_at, r.key, _day(r.generated_at))


def _anomalies(r: Anomaly) -> list[Document]:
    return _one("anomalies", r, r.timestamp, r.series_id, r.detector, r.timestamp.isoformat())


def _alerts(r: AlertTransition) -> list[Document]:
    ts = r.ends_at if r.status == "resolved" and r.ends_at else r.starts_at
    return _one("alerts", r, ts, r.fingerprint, r.sequence, r.status)


def _notifications(r: Notification) -> list[Document]:
    return _one("notifications", r, r.at, r.notification_id, r.attempt, r.outcome)


def _incidents(r: Incident) -> list[Document]:
    return _one("incidents", r, r.start, r.incident_id)


def _deadletter(r: DeadLetter) -> list[Document]:
    # A dead letter's identity is where its message was and what failed; the
    # time only joins in when the source position is unknown.
    where = (r.partition, r.offset) if r.offset is not None else (r.occurred_at.isoformat(),)
    payload_hash = hashlib.blake2b(r.payload.encode(), digest_size=8).hexdigest()
    return _one("deadletter", r, r.occurred_at, r.source_topic, *where, r.key, r.stage, r.reason, payload_hash)


_BUILDERS: dict[type[Record], Callable[[Any], list[Document]]] = {
    NodeScrape: _metrics,
    KubeEvent: _events,
    QuotaScrape: _quotas,
    AutoscalerScrape: _autoscalers,
    CapacityForecast: _capacity,
    Recommendation: _recommendations,
    Anomaly: _anomalies,
    AlertTransition: _alerts,
    Notification: _notifications,
    Incident: _incidents,
    DeadLetter: _deadletter,
}


def documents_for(record: Record, *, rollups: Mapping[str, Collection[str]] | None = None) -> list[Document]:
    """The documents one record becomes (one per entity for a node scrape, one per resource for a quota, else one).

    ``rollups`` (``elasticsearch.rollups``: window to the entity kinds indexed) decides whether an
    :class:`~models.records.EntityRollup` becomes a document or none; the default is the settings' default.

    >>> from datetime import datetime, timezone
    >>> from models.records import NodeScrape, PodSample, ContainerSample
    >>> s = NodeScrape(cluster="c1", node="n1", timestamp=datetime(2026, 1, 31, 23, 59, tzinfo=timezone.utc),
    ...     pods=[PodSample(namespace="shop", name="cart-1", containers=[ContainerSample(name="cart", cpu_cores=0.25)])])
    >>> docs = documents_for(s)
    >>> [(d.kind, d.day, d.body["metricset.name"]) for d in docs]
    [('metrics', '2026.01.31', 'node'), ('metrics', '2026.01.31', 'pod'), ('metrics', '2026.01.31', 'container')]
    >>> docs[2].body["kubernetes.container.cpu.usage.nanocores"]
    250000000
    >>> documents_for(s)[2].id == docs[2].id
    True
    """
    if type(record) is EntityRollup:
        return _rollups(record, DEFAULT_ROLLUPS if rollups is None else rollups)
    try:
        build = _BUILDERS[type(record)]
    except KeyError:
        raise TypeError(f"{type(record).__name__} records are not indexed; indexed kinds: {', '.join(INDEXED_KINDS)}") from None
    return build(record)
