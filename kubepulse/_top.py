"""``kubepulse top``: a live terminal view of what Elasticsearch holds (usage per namespace, top pods, alerts, anomalies, events).

Reads the aliases ``<prefix>-metrics``, ``-rollups-1m``, ``-alerts``,
``-anomalies`` and ``-events`` (``streams.index``) and nothing else, so it
works against any kubepulse deployment, and renders with rich: plain tables
and unicode block sparklines, no mouse and no full-screen tricks, so it works
over ssh and in a CI log (``--once``).

The namespaces' CPU and memory history (the sparklines) comes from the
namespace 1-minute rollups (kubepulse.rollups.v2: the stream worker's sums of a
namespace's pods over the cluster, one document per namespace and minute), so
it costs a few documents per namespace instead of every pod document of the
window. Where there are none (the first minutes of a deployment, or
``elasticsearch.rollups`` without namespaces at 1m) it is computed from the raw
pod documents as below.

Time is *data* time: the frame ends at the newest metrics sample that
matches the filters, not at the wall clock. A live cluster's newest sample is
seconds old, so nothing changes there; the demo's simulated fleet runs
accelerated (its samples may be stamped ahead of the wall clock) and is shown
as it is.

Usage per namespace is reconstructed from per-pod documents without knowing
the scrape interval: over a window, ``avg(value per pod-sample) x distinct
pods`` is the namespace total whatever the interval, and shares are ratios of
sums over the same documents (usage / requests of the pods that have
requests), never averages of per-pod shares.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

__all__ = ["TopOptions", "Frame", "fetch_frame", "render_frame", "sparkline", "run_top"]

BLOCKS = "▁▂▃▄▅▆▇█"

_POD_DOCS = {"term": {"metricset.name": "pod"}}
_NODE_DOCS = {"term": {"metricset.name": "node"}}
_VOLUME_DOCS = {"term": {"metricset.name": "volume"}}

_NAMESPACE_ROLLUPS = {"term": {"metricset.name": "namespace"}}
_NS_CPU = "kubernetes.namespace_totals.cpu_cores.avg"
_NS_MEM = "kubernetes.namespace_totals.memory_working_set_bytes.avg"

_CPU = "kubernetes.pod.cpu.usage.nanocores"
_MEM = "kubernetes.pod.memory.working_set.bytes"
_RX = "kubernetes.pod.network.rx.bytes_per_s"
_TX = "kubernetes.pod.network.tx.bytes_per_s"


@dataclass(frozen=True, slots=True)
class TopOptions:
    """What one frame shows."""

    cluster: str | None = None
    namespace: str | None = None
    window_s: float = 900.0
    """Data time the sparklines cover (15 minutes)."""
    current_s: float = 60.0
    """Data time averaged into the "now" columns: a few scrapes, so one missed scrape does not zero a namespace."""
    since: datetime | None = None
    """Ignore documents before this (the demo passes its run's start, so an earlier run does not show)."""
    buckets: int = 24
    """Sparkline width in characters."""
    rows: int = 10
    """Rows of the pods, alerts, anomalies and events tables."""


@dataclass(slots=True)
class NamespaceRow:
    cluster: str
    namespace: str
    pods: int
    cpu_cores: float
    memory_bytes: float
    rx_bytes_per_s: float
    tx_bytes_per_s: float
    cpu_request_share: float | None
    cpu_limit_share: float | None
    memory_request_share: float | None
    memory_limit_share: float | None
    cpu_allocatable_share: float | None
    memory_allocatable_share: float | None
    storage_used_bytes: float | None
    storage_share: float | None
    cpu_history: list[float | None] = field(default_factory=list)
    memory_history: list[float | None] = field(default_factory=list)


@dataclass(slots=True)
class Frame:
    """Everything one refresh shows; built by :func:`fetch_frame`, drawn by :func:`render_frame`."""

    index_prefix: str
    es_url: str
    options: TopOptions
    data_time: datetime | None
    fetched_at: datetime
    history_source: str = "metrics"
    """Where the sparklines come from: ``rollups-1m`` (namespace rollups) or ``metrics`` (raw pod documents)."""
    clusters: dict[str, dict[str, float]] = field(default_factory=dict)
    """Cluster -> nodes, cpu/memory allocatable (from node documents in the current window)."""
    namespaces: list[NamespaceRow] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------- formatting


def sparkline(values: Iterable[float | None], *, low: float | None = None, high: float | None = None) -> str:
    """Unicode block sparkline; a missing value is a space, a flat series sits on the lowest block.

    >>> sparkline([0, 1, 2, 3, 4, 5, 6, 7])
    '▁▂▃▄▅▆▇█'
    >>> sparkline([None, 5, 5])
    ' ▁▁'
    """
    vals = list(values)
    present = [v for v in vals if v is not None]
    if not present:
        return " " * len(vals)
    lo = min(present) if low is None else low
    hi = max(present) if high is None else high
    span = hi - lo
    if low is None and high is None and span <= 0.01 * max(abs(hi), abs(lo)):
        span = 0  # a change of under 1% is noise: drawn flat rather than magnified
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(BLOCKS[0])
        else:
            i = int((v - lo) / span * (len(BLOCKS) - 1) + 0.5)
            out.append(BLOCKS[max(0, min(len(BLOCKS) - 1, i))])
    return "".join(out)


def _bytes(v: float | None) -> str:
    if v is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f}{unit}" if unit == "B" else f"{v:.1f}{unit}"
        v /= 1024
    return f"{v:.1f}TiB"  # pragma: no cover - the loop returns


def _rate(v: float | None) -> str:
    return "-" if v is None else _bytes(v) + "/s"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


def _cores(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f}m" if v < 1 else f"{v:.2f}"


def _age(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _get(doc: Any, path: str, default: Any = None) -> Any:
    """A field of a ``_source``, whether stored with dotted keys (kubepulse's documents) or as nested objects.

    >>> _get({"kubernetes.pod.name": "a"}, "kubernetes.pod.name"), _get({"kubernetes": {"pod": {"name": "b"}}}, "kubernetes.pod.name")
    ('a', 'b')
    """
    if not isinstance(doc, dict):
        return default
    if path in doc:
        return doc[path]
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        if head in doc:
            found = _get(doc[head], ".".join(parts[i:]), None)
            if found is not None:
                return found
    return default


def _ts(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ----------------------------------------------------------------------------- queries


def _filters(opts: TopOptions, *, namespace: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if opts.cluster:
        out.append({"term": {"orchestrator.cluster.name": opts.cluster}})
    if opts.namespace and namespace:
        out.append({"term": {"kubernetes.namespace": opts.namespace}})
    if opts.since is not None:
        out.append({"range": {"@timestamp": {"gte": opts.since.isoformat()}}})
    return out


def _range(start: datetime, end: datetime) -> dict[str, Any]:
    return {"range": {"@timestamp": {"gte": start.isoformat(), "lte": end.isoformat()}}}


def _val(aggs: dict[str, Any], name: str) -> float | None:
    v = aggs.get(name, {}).get("value")
    return None if v is None else float(v)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fetch_frame(client: Any, settings: Any, opts: TopOptions) -> Frame:
    """Query Elasticsearch (a sync ``elasticsearch.Elasticsearch``) for one frame."""
    prefix = settings.elasticsearch.index_prefix
    metrics, rollups, alerts, anomalies, events = (f"{prefix}-{k}" for k in ("metrics", "rollups-1m", "alerts", "anomalies", "events"))
    frame = Frame(index_prefix=prefix, es_url=settings.elasticsearch.url, options=opts, data_time=None, fetched_at=datetime.now(UTC))
    es = client.options(ignore_status=404)

    latest = es.search(
        index=metrics, size=0, query={"bool": {"filter": [*_filters(opts, namespace=False)]}},
        aggs={"t": {"max": {"field": "@timestamp"}}},
    )
    t_ms = (latest.get("aggregations") or {}).get("t", {}).get("value")
    if t_ms is not None:
        frame.data_time = datetime.fromtimestamp(t_ms / 1000, UTC)
        _usage(es, metrics, rollups, opts, frame, frame.data_time)
    frame.alerts = _alerts(es, alerts, opts, frame.data_time)
    frame.anomalies = _recent(es, anomalies, opts, [])
    frame.events = _recent(es, events, opts, [{"term": {"kubernetes.event.type": "Warning"}}])
    return frame


def _rollup_history(
    es: Any, index: str, opts: TopOptions, start: datetime, end: datetime
) -> dict[tuple[str, str], tuple[list[float | None], list[float | None]]]:
    """(cluster, namespace) -> (CPU cores, memory bytes) per step, from the namespace 1-minute rollups; {} if none."""
    step_s = max(60, int(opts.window_s / opts.buckets) // 60 * 60)
    resp = es.search(
        index=index, size=0,
        query={"bool": {"filter": [_NAMESPACE_ROLLUPS, _range(start, end), *_filters(opts)]}},
        aggs={"c": {"terms": {"field": "orchestrator.cluster.name", "size": 100}, "aggs": {
            "ns": {"terms": {"field": "kubernetes.namespace", "size": 200}, "aggs": {
                "h": {
                    "date_histogram": {
                        "field": "@timestamp", "fixed_interval": f"{step_s}s",
                        "extended_bounds": {"min": int(start.timestamp() * 1000), "max": int(end.timestamp() * 1000)},
                        "min_doc_count": 0,
                    },
                    # A window's average of the namespace's summed pods; a step of several minutes averages them.
                    "aggs": {"cpu": {"avg": {"field": _NS_CPU}}, "mem": {"avg": {"field": _NS_MEM}}},
                },
            }},
        }}},
    )
    out = {}
    steps = max(1, int(opts.window_s // step_s))
    for cb in (resp.get("aggregations") or {}).get("c", {}).get("buckets", []):
        for nb in cb["ns"]["buckets"]:
            hist = nb["h"]["buckets"][-steps:]
            out[(cb["key"], nb["key"])] = ([_val(h, "cpu") for h in hist], [_val(h, "mem") for h in hist])
    return out


def _usage(es: Any, index: str, rollups: str, opts: TopOptions, frame: Frame, end: datetime) -> None:
    now_start = end - timedelta(seconds=opts.current_s)
    hist_start = end - timedelta(seconds=opts.window_s)
    history = _rollup_history(es, rollups, opts, hist_start, end)
    if history:
        frame.history_source = "rollups-1m"
    _cluster_capacity(es, index, opts, frame, now_start, end)
    resp = _namespace_usage(es, index, opts, now_start, hist_start, end, with_history=not history)
    storage = _storage(es, index, opts, now_start, end)
    rows = []
    for cb in (resp.get("aggregations") or {}).get("c", {}).get("buckets", []):
        cluster = cb["key"]
        cap = frame.clusters.get(cluster, {})
        for nb in cb["ns"]["buckets"]:
            rows.append(_namespace_row(cluster, nb, cap, history, storage, opts))
    rows.sort(key=lambda r: (r.cluster, -r.cpu_cores))
    frame.namespaces = rows
    _top_pods(es, index, opts, frame, now_start, end)


def _cluster_capacity(es: Any, index: str, opts: TopOptions, frame: Frame, now_start: datetime, end: datetime) -> None:
    """Cluster capacity: node documents of the current window (never namespace-filtered)."""
    resp = es.search(
        index=index, size=0,
        query={"bool": {"filter": [_NODE_DOCS, _range(now_start, end), *_filters(opts, namespace=False)]}},
        aggs={"c": {"terms": {"field": "orchestrator.cluster.name", "size": 100}, "aggs": {
            "nodes": {"cardinality": {"field": "kubernetes.node.name"}},
            "cpu": {"avg": {"field": "kubernetes.node.cpu.allocatable.cores"}},
            "mem": {"avg": {"field": "kubernetes.node.memory.allocatable.bytes"}},
        }}},
    )
    for b in (resp.get("aggregations") or {}).get("c", {}).get("buckets", []):
        n = b["nodes"]["value"] or 0
        frame.clusters[b["key"]] = {
            "nodes": n,
            "cpu_allocatable": (_val(b, "cpu") or 0.0) * n,
            "memory_allocatable": (_val(b, "mem") or 0.0) * n,
        }


def _namespace_usage(es: Any, index: str, opts: TopOptions, now_start: datetime, hist_start: datetime, end: datetime,
                     *, with_history: bool) -> Any:
    """Per cluster and namespace: the current window's use and shares, and (``with_history``, no rollups) its history."""
    step_ms = max(1000, int(opts.window_s * 1000 / opts.buckets))

    def share(usage: str, amount: str) -> dict[str, Any]:
        return {"filter": {"exists": {"field": amount}}, "aggs": {"u": {"sum": {"field": usage}}, "a": {"sum": {"field": amount}}}}

    per_ns = {
        "pods": {"cardinality": {"field": "kubernetes.pod.name"}},
        "cpu": {"avg": {"field": _CPU}},
        "mem": {"avg": {"field": _MEM}},
        "rx": {"avg": {"field": _RX}},
        "tx": {"avg": {"field": _TX}},
        "cpu_req": share(_CPU, "kubernetes.pod.cpu.request.cores"),
        "cpu_lim": share(_CPU, "kubernetes.pod.cpu.limit.cores"),
        "mem_req": share(_MEM, "kubernetes.pod.memory.request.bytes"),
        "mem_lim": share(_MEM, "kubernetes.pod.memory.limit.bytes"),
    }
    per_ns_aggs: dict[str, Any] = {"now": {"filter": _range(now_start, end), "aggs": per_ns}}
    if with_history:
        per_ns_aggs["h"] = {
            "date_histogram": {
                "field": "@timestamp", "fixed_interval": f"{step_ms}ms",
                "extended_bounds": {"min": int(hist_start.timestamp() * 1000), "max": int(end.timestamp() * 1000)},
                "min_doc_count": 0,
            },
            "aggs": {
                "pods": {"cardinality": {"field": "kubernetes.pod.name"}},
                "cpu": {"avg": {"field": _CPU}},
                "mem": {"avg": {"field": _MEM}},
            },
        }
    return es.search(
        index=index, size=0,
        # With rollup history only the current window of pod documents is read.
        query={"bool": {"filter": [_POD_DOCS, _range(hist_start if with_history else now_start, end), *_filters(opts)]}},
        aggs={"c": {"terms": {"field": "orchestrator.cluster.name", "size": 100}, "aggs": {
            "ns": {"terms": {"field": "kubernetes.namespace", "size": 200}, "aggs": per_ns_aggs},
        }}},
    )


def _namespace_row(cluster: str, nb: Any, cap: dict[str, Any], history: dict[tuple[str, str], tuple[list[float | None], list[float | None]]],
                   storage: dict[tuple[str, str], tuple[float, float]], opts: TopOptions) -> NamespaceRow:
    """One namespace's row: current use and shares, history from the rollups or else from the raw documents."""
    now = nb["now"]
    pods = int(now["pods"]["value"] or 0)
    cpu = (_val(now, "cpu") or 0.0) * pods / 1e9
    mem = (_val(now, "mem") or 0.0) * pods
    hist_cpu, hist_mem = history.get((cluster, nb["key"]), ([], []))
    for hb in nb["h"]["buckets"][-opts.buckets:] if not history else ():
        p = hb["pods"]["value"] or 0
        c, m = _val(hb, "cpu"), _val(hb, "mem")
        hist_cpu.append(None if c is None or not p else c * p / 1e9)
        hist_mem.append(None if m is None or not p else m * p)
    used, capacity = storage.get((cluster, nb["key"]), (None, None))
    return NamespaceRow(
        cluster=cluster,
        namespace=nb["key"],
        pods=pods,
        cpu_cores=cpu,
        memory_bytes=mem,
        rx_bytes_per_s=(_val(now, "rx") or 0.0) * pods,
        tx_bytes_per_s=(_val(now, "tx") or 0.0) * pods,
        cpu_request_share=_ratio(_val(now["cpu_req"], "u"), (_val(now["cpu_req"], "a") or 0) * 1e9),
        cpu_limit_share=_ratio(_val(now["cpu_lim"], "u"), (_val(now["cpu_lim"], "a") or 0) * 1e9),
        memory_request_share=_ratio(_val(now["mem_req"], "u"), _val(now["mem_req"], "a")),
        memory_limit_share=_ratio(_val(now["mem_lim"], "u"), _val(now["mem_lim"], "a")),
        cpu_allocatable_share=_ratio(cpu, cap.get("cpu_allocatable")),
        memory_allocatable_share=_ratio(mem, cap.get("memory_allocatable")),
        storage_used_bytes=used,
        storage_share=_ratio(used, capacity),
        cpu_history=hist_cpu,
        memory_history=hist_mem,
    )


def _top_pods(es: Any, index: str, opts: TopOptions, frame: Frame, now_start: datetime, end: datetime) -> None:
    """The top pods by CPU in the current window."""
    resp = es.search(
        index=index, size=0,
        query={"bool": {"filter": [_POD_DOCS, _range(now_start, end), *_filters(opts)]}},
        aggs={"p": {
            # kubepulse.entity is the pod's series prefix (cluster/namespace/pod/): one bucket per pod.
            "terms": {"field": "kubepulse.entity", "size": opts.rows, "order": {"cpu": "desc"}},
            "aggs": {
                "cpu": {"avg": {"field": _CPU}},
                "mem": {"avg": {"field": _MEM}},
                "cpu_lim": {"max": {"field": "kubernetes.pod.cpu.usage.limit.pct"}},
                "mem_lim": {"max": {"field": "kubernetes.pod.memory.working_set.limit.pct"}},
                "rx": {"avg": {"field": _RX}},
                "who": {"top_hits": {"size": 1, "sort": [{"@timestamp": "desc"}], "_source": {"includes": [
                    "orchestrator.cluster.name", "kubernetes.namespace", "kubernetes.pod.name", "kubernetes.node.name",
                ]}}},
            },
        }},
    )
    for b in (resp.get("aggregations") or {}).get("p", {}).get("buckets", []):
        hits = b["who"]["hits"]["hits"]
        src = hits[0]["_source"] if hits else {}
        frame.pods.append({
            "cluster": _get(src, "orchestrator.cluster.name", ""),
            "namespace": _get(src, "kubernetes.namespace", ""),
            "pod": _get(src, "kubernetes.pod.name", b["key"]),
            "node": _get(src, "kubernetes.node.name", ""),
            "cpu_cores": (_val(b, "cpu") or 0.0) / 1e9, "memory_bytes": _val(b, "mem") or 0.0,
            "cpu_limit_share": _val(b, "cpu_lim"), "memory_limit_share": _val(b, "mem_lim"), "rx_bytes_per_s": _val(b, "rx"),
        })


def _storage(es: Any, index: str, opts: TopOptions, start: datetime, end: datetime) -> dict[tuple[str, str], tuple[float, float]]:
    """(cluster, namespace) -> (used bytes, capacity bytes) of pod volumes, from volume documents."""
    resp = es.search(
        index=index, size=0,
        query={"bool": {"filter": [_VOLUME_DOCS, _range(start, end), *_filters(opts)]}},
        aggs={"c": {"terms": {"field": "orchestrator.cluster.name", "size": 100}, "aggs": {
            "ns": {"terms": {"field": "kubernetes.namespace", "size": 200}, "aggs": {
                "n": {"cardinality": {"field": "kubepulse.entity"}},
                "used": {"avg": {"field": "kubernetes.volume.fs.used.bytes"}},
                "cap": {"avg": {"field": "kubernetes.volume.fs.capacity.bytes"}},
            }},
        }}},
    )
    out = {}
    for cb in (resp.get("aggregations") or {}).get("c", {}).get("buckets", []):
        for nb in cb["ns"]["buckets"]:
            n = nb["n"]["value"] or 0
            out[(cb["key"], nb["key"])] = ((_val(nb, "used") or 0.0) * n, (_val(nb, "cap") or 0.0) * n)
    return out


def _alerts(es: Any, index: str, opts: TopOptions, data_time: datetime | None) -> list[dict[str, Any]]:
    """Active alerts: the latest transition of each fingerprint (highest sequence) is ``firing``."""
    resp = es.search(
        index=index, size=500,
        query={"bool": {"filter": _filters(opts)}},
        collapse={"field": "kubepulse.alert.fingerprint"},
        sort=[{"kubepulse.alert.sequence": "desc"}],
        source_includes=["kubepulse.alert.*", "rule.name", "@timestamp"],
    )
    now = data_time or datetime.now(UTC)
    out = []
    for hit in (resp.get("hits") or {}).get("hits", []):
        src = hit["_source"]
        if _get(src, "kubepulse.alert.status") != "firing":
            continue
        labels = _get(src, "kubepulse.alert.labels") or {}
        starts = _ts(_get(src, "kubepulse.alert.starts_at"))
        out.append({
            "alertname": labels.get("alertname") or _get(src, "rule.name", "?"),
            "severity": labels.get("severity", ""),
            "cluster": labels.get("cluster", ""),
            "where": "/".join(x for x in (labels.get("namespace"), labels.get("pod") or (f"node:{labels['node']}" if labels.get("node") else None), labels.get("container")) if x),
            "summary": (_get(src, "kubepulse.alert.annotations") or {}).get("summary", ""),
            "value": _get(src, "kubepulse.alert.value"),
            "age_s": (now - starts).total_seconds() if starts else 0.0,
            "starts_at": starts,
        })
    rank = {"critical": 0, "warning": 1, "info": 2}
    out.sort(key=lambda r: (rank.get(r["severity"], 3), -r["age_s"]))
    return out


def _recent(es: Any, index: str, opts: TopOptions, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    resp = es.search(
        index=index, size=opts.rows,
        query={"bool": {"filter": [*_filters(opts), *extra]}},
        sort=[{"@timestamp": "desc"}],
    )
    return [h["_source"] for h in (resp.get("hits") or {}).get("hits", [])]


# ----------------------------------------------------------------------------- rendering

_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


_NAMESPACE_COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("cluster", "left"), ("namespace", "left"), ("pods", "right"), ("CPU", "right"), ("req", "right"), ("lim", "right"),
    ("alloc", "right"), ("CPU history", "left"), ("memory", "right"), ("req", "right"), ("lim", "right"), ("alloc", "right"),
    ("memory history", "left"), ("rx", "right"), ("tx", "right"), ("storage", "right"), ("used", "right"),
)
"""The namespaces table's columns and how each is justified."""


def render_frame(frame: Frame, *, height: int | None = None) -> RenderableType:
    """The frame as rich renderables: header, namespaces, top pods, alerts, anomalies, events.

    With ``height`` (a live terminal's lines) the four lower tables share what the
    namespaces leave, so the whole frame fits and nothing is cropped away.
    """
    o = frame.options
    rows = o.rows
    if height is not None:
        # header panel 4 lines, each table 4 lines of title and borders, one line per row.
        rows = max(1, min(o.rows, (height - 4 - (len(frame.namespaces) + 4) - 4 * 4) // 4))
    where = " ".join(x for x in (f"cluster={o.cluster}" if o.cluster else "", f"namespace={o.namespace}" if o.namespace else "") if x)
    if frame.data_time is None:
        when = "no metrics yet"
    else:
        lag = (frame.fetched_at - frame.data_time).total_seconds()
        rel = f"{_age(lag)} ago" if lag >= 0 else f"{_age(-lag)} ahead of the wall clock: accelerated simulation"
        when = f"data at {frame.data_time:%Y-%m-%d %H:%M:%S}Z ({rel})"
    nodes = sum(int(c["nodes"]) for c in frame.clusters.values())
    header = Text.assemble(
        ("kubepulse top", "bold"),
        f"  {frame.es_url} {frame.index_prefix}-*  {where + '  ' if where else ''}{when}\n",
        f"{len(frame.clusters)} clusters, {nodes} nodes, {sum(r.pods for r in frame.namespaces)} pods; "
        f"{len(frame.alerts)} active alerts; sparklines: last {_age(o.window_s)} of CPU and memory"
        f"{' (1-minute rollups)' if frame.history_source == 'rollups-1m' else ''}, each scaled to its own range",
    )

    ns = Table(title="Namespaces", title_justify="left", expand=True, pad_edge=False)
    for col, just in _NAMESPACE_COLUMNS:
        ns.add_column(col, justify=just, no_wrap=True)
    for r in frame.namespaces:
        ns.add_row(
            r.cluster, r.namespace, str(r.pods),
            _cores(r.cpu_cores), _pct(r.cpu_request_share), _pct(r.cpu_limit_share), _pct(r.cpu_allocatable_share),
            Text(sparkline(r.cpu_history), style="green"),
            _bytes(r.memory_bytes), _pct(r.memory_request_share), _pct(r.memory_limit_share), _pct(r.memory_allocatable_share),
            Text(sparkline(r.memory_history), style="magenta"),
            _rate(r.rx_bytes_per_s), _rate(r.tx_bytes_per_s), _bytes(r.storage_used_bytes), _pct(r.storage_share),
        )

    pods = Table(title="Top pods by CPU", title_justify="left", expand=True, pad_edge=False)
    for col in ("cluster", "namespace/pod", "node", "CPU", "of limit", "memory", "of limit", "rx"):
        pods.add_column(col, no_wrap=True, justify="right" if col in ("CPU", "of limit", "memory", "rx") else "left")
    for p in frame.pods[:rows]:
        pods.add_row(p["cluster"], f"{p['namespace']}/{p['pod']}", p["node"], _cores(p["cpu_cores"]), _pct(p["cpu_limit_share"]),
                     _bytes(p["memory_bytes"]), _pct(p["memory_limit_share"]), _rate(p["rx_bytes_per_s"]))

    alerts = Table(title=f"Active alerts ({len(frame.alerts)})", title_justify="left", expand=True, pad_edge=False)
    for col in ("severity", "alert", "cluster", "where", "age", "summary"):
        alerts.add_column(col, no_wrap=col != "where", overflow="fold" if col == "where" else "ellipsis")
    for a in frame.alerts[:rows]:
        alerts.add_row(Text(a["severity"], style=_SEVERITY_STYLE.get(a["severity"], "")), a["alertname"], a["cluster"], a["where"],
                       _age(a["age_s"]), a["summary"])
    if not frame.alerts:
        alerts.add_row("", "none firing", "", "", "", "")

    anomalies = Table(title="Recent anomalies", title_justify="left", expand=True, pad_edge=False)
    for col in ("time", "cluster", "series", "metric", "value", "baseline", "score"):
        anomalies.add_column(col, no_wrap=True, overflow="ellipsis")
    for d in frame.anomalies[:rows]:
        where = "/".join(x for x in (_get(d, "kubernetes.namespace"), _get(d, "kubernetes.pod.name"), _get(d, "container.name")) if x)
        where = where or f"node:{_get(d, 'kubernetes.node.name', '')}"
        anomalies.add_row(_clock(_get(d, "@timestamp")), _get(d, "orchestrator.cluster.name", ""), where, _get(d, "kubepulse.metric", ""),
                          _num(_get(d, "kubepulse.anomaly.value")), _num(_get(d, "kubepulse.anomaly.baseline")),
                          f"{_get(d, 'kubepulse.anomaly.score', 0):.1f}")

    events = Table(title="Recent warning events", title_justify="left", expand=True, pad_edge=False)
    for col in ("time", "cluster", "object", "reason", "count", "message"):
        events.add_column(col, no_wrap=True, overflow="ellipsis")
    for d in frame.events[:rows]:
        obj = "kubernetes.event.involved_object."
        name = "/".join(x for x in (_get(d, obj + "namespace"), _get(d, obj + "name")) if x)
        events.add_row(_clock(_get(d, "@timestamp")), _get(d, "orchestrator.cluster.name", ""), f"{_get(d, obj + 'kind', '')} {name}",
                       _get(d, "kubernetes.event.reason", ""), str(_get(d, "kubernetes.event.count", "")), (_get(d, "message") or "")[:160])

    return Group(Panel(header, border_style="blue"), ns, pods, alerts, anomalies, events)


def _clock(value: str | None) -> str:
    t = _ts(value)
    return f"{t:%H:%M:%S}" if t else ""


def _num(v: Any) -> str:
    if v is None:
        return "-"
    v = float(v)
    if abs(v) >= 1e6:
        return f"{v:.3g}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:,.0f}"


# ----------------------------------------------------------------------------- the loop


def run_top(
    settings: Any,
    opts: TopOptions,
    *,
    once: bool = False,
    interval_s: float = 3.0,
    console: Console | None = None,
    stop: Callable[[], bool] | None = None,
    client: Any = None,
) -> None:
    """Draw frames every ``interval_s`` until Ctrl-C (or ``stop()`` is true); ``once`` prints one frame and returns.

    Errors talking to Elasticsearch are shown in the view and retried on the next
    refresh (an outage is something to watch, not a reason to quit).
    """
    from rich.live import Live

    from streams.index import sync_client

    console = console or Console()
    own = client is None
    client = client or sync_client(settings, max_retries=0)
    try:
        if once:
            console.print(render_frame(fetch_frame(client, settings, opts)))
            return

        def frame() -> RenderableType:
            try:
                return render_frame(fetch_frame(client, settings, opts), height=console.size.height)
            except Exception as exc:  # noqa: BLE001 - shown, then retried on the next refresh
                return Panel(f"cannot read {settings.elasticsearch.url}: {exc}\nretrying every {interval_s:g} s", border_style="red")

        # Not full screen and no mouse: redrawn in place, so it works in any terminal and over ssh.
        with Live(frame(), console=console, auto_refresh=False, vertical_overflow="crop") as live:
            while stop is None or not stop():
                deadline = time.monotonic() + interval_s
                while time.monotonic() < deadline:
                    if stop is not None and stop():
                        return
                    time.sleep(0.1)
                live.update(frame(), refresh=True)
    finally:
        if own:
            client.close()
