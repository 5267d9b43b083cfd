"""The Elasticsearch field table: which record field becomes which document field, of which type, in which index.

This table is the one place where documents are described. The index
templates (:func:`index_templates`), the field types Kibana's saved objects
are checked against (:func:`field_types`) and the documents themselves
(``streams.index._documents``) are all generated from it, and a unit test walks the
pydantic records to prove every record field is either mapped here or listed
in :data:`EXCLUDED` with the reason.

Naming: the Elastic Common Schema where it has a name (``@timestamp``,
``orchestrator.cluster.name``, ``kubernetes.namespace``, ``container.name``,
``event.*``, ``error.*``, ``rule.name``, ``message``) and Metricbeat's
kubernetes module names for the measurements, *where the unit matches*:

* CPU: records carry cores; Metricbeat's ``cpu.usage.nanocores`` is the same
  quantity in nanocores, so it is stored as ``round(cores * 1e9)`` (a long) and
  Kibana's Metricbeat visualisations work unchanged.
* Shares: Metricbeat's ``*.pct`` fields are fractions (0.5 is half), exactly
  our ``*_share``; stored as ``float`` (Metricbeat's ``scaled_float`` lives
  in the mapper-extras module, which a minimal server such as the local
  stack's lacks). Unlike Metricbeat, a missing limit gives no ``limit.pct``
  (never a silent fallback to the node).
* Memory shares are of the working set (what eviction and the OOM killer
  judge), so they go to Metricbeat's ``memory.workingset.limit.pct``
  (``memory.working_set.*`` for pods: Metricbeat spells them differently).
* Network: Metricbeat's ``network.rx.bytes`` is the counter (our
  ``rx_bytes_total``); our rates have no Metricbeat name and get
  ``network.rx.bytes_per_s``. Interfaces are summed per pod and per node,
  as Metricbeat does.
* ResourceQuotas: Metricbeat's ``state_resourcequota`` writes one document
  per quota, resource and type (``kubernetes.resourcequota.quota`` with
  ``type: hard|used``); ours is one document per quota and resource holding
  both, laid out like a filesystem's (``used.value``, ``hard.value`` and
  ``used.pct`` = used / hard), so the share needs no scripting in Lens.
* Rollups (``kubepulse.rollups.v2``): one document per entity and window, the
  ECS identity of the entity plus, per metric, ``<root>.min|max|avg|last|sum``
  (:func:`rollup_field`: ``container.cpu_cores`` -> ``kubernetes.container.cpu_cores``)
  and one ``kubepulse.rollup.count`` (samples in the window; a metric with fewer
  also gets its own ``<root>.count``). The field list is derived from the metric
  names of ``models.series``, so a new metric needs no edit here.

Types are sized to the data: ``long`` for bytes and counters, ``integer``
for small counts, ``float`` for rates, shares and core amounts (7 significant
digits is plenty; documents carry them rounded to 6 decimals, so ``_source``
holds no digits the doc values drop), ``double`` for rollup and anomaly values
(any metric, any unit), ``keyword`` for every identity, ``date`` for every time.
In the time-series indices (metrics and rollups) the measurements are doc
values only (``index: false``): they are aggregated and sorted, rarely searched
by value, and a range query still works on doc values; identities stay indexed
for filters. Those indices are sorted by ``kubepulse.entity`` then
``@timestamp`` (:data:`SORTED_KINDS`), so one entity's documents sit together and
compress as a column. The root of every index is ``dynamic: strict``: a
document with a field this table does not know is rejected (and dead-lettered)
instead of growing the mapping.
Free-form label maps (pod labels, node conditions, alert labels and
annotations) are ``flattened``: one field each, however many keys, so a
cluster with thousands of distinct label keys cannot explode the mapping;
their keys are still filterable and aggregatable (``kubernetes.labels.app``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models.series import AGGREGATE_METRICS, METRICS
from models.settings import Settings

__all__ = [
    "Field",
    "Derived",
    "Stat",
    "INDEXED_KINDS",
    "INDEX_KINDS",
    "REPORT_KINDS",
    "ROLLUP_WINDOWS",
    "ROLLUP_STATS",
    "ROLLUP_METRICS",
    "SORTED_KINDS",
    "METRICSETS",
    "EXCLUDED",
    "rollup_index_kind",
    "rollup_field",
    "record_kind",
    "fields_of",
    "field_types",
    "mappings",
    "component_templates",
    "index_templates",
    "template_name",
    "alias_name",
]

INDEXED_KINDS: tuple[str, ...] = ("metrics", "events", "quotas", "autoscalers", "rollups", "anomalies", "alerts", "notifications", "incidents",
                                  "deadletter")
"""The record kinds (topic kinds) that are indexed."""

REPORT_KINDS: tuple[str, ...] = ("capacity", "recommendations")
"""Index kinds with no topic: ``kubepulse report run`` writes them (``models.records.REPORT_TYPES``)."""

ROLLUP_WINDOWS: tuple[str, ...] = ("1m", "1h")
"""The windows of ``kubepulse.rollups.v2``: each has its own daily indices, alias and retention."""


def rollup_index_kind(window: str) -> str:
    """The index kind of a rollup window: ``rollups-1m``, ``rollups-1h``."""
    return f"rollups-{window}"


INDEX_KINDS: tuple[str, ...] = (
    "metrics", "events", "quotas", "autoscalers", *(rollup_index_kind(w) for w in ROLLUP_WINDOWS), "anomalies", "alerts",
    "notifications", "incidents", "deadletter", *REPORT_KINDS,
)
"""The index kinds: one index template, alias and daily index series each (one per rollup window, since each
window is kept for its own number of days and the janitor deletes whole daily indices)."""

SORTED_KINDS: frozenset[str] = frozenset({"metrics", *(rollup_index_kind(w) for w in ROLLUP_WINDOWS)})
"""The time-series indices: sorted by entity and time, measurements as doc values only (see the module docstring)."""


def record_kind(index_kind: str) -> str:
    """The record kind an index kind holds (``rollups-1h`` -> ``rollups``).

    >>> record_kind("rollups-1h"), record_kind("metrics")
    ('rollups', 'metrics')
    """
    return "rollups" if index_kind.startswith("rollups-") else index_kind

METRICSETS: tuple[str, ...] = ("node", "pod", "container", "volume")
"""A node scrape becomes one metrics document per entity: ``metricset.name`` says which."""

# Elasticsearch field types, named once so the table reads as a table.
KEYWORD = "keyword"
LONG = "long"
INTEGER = "integer"
SHORT = "short"
FLOAT = "float"
DOUBLE = "double"
SHARE = "share"
"""A fraction (0.5 is half): ``float``."""
DATE = "date"
TEXT = "text"
FLATTENED = "flattened"
BOOLEAN = "boolean"
RAW = "raw"
"""Kept in ``_source`` only (not searchable): a keyword with ``index: false, doc_values: false``."""

_TYPE_BODY: dict[str, dict[str, Any]] = {
    KEYWORD: {"type": "keyword", "ignore_above": 1024},
    LONG: {"type": "long"},
    INTEGER: {"type": "integer"},
    SHORT: {"type": "short"},
    FLOAT: {"type": "float"},
    DOUBLE: {"type": "double"},
    SHARE: {"type": "float"},
    DATE: {"type": "date"},
    TEXT: {"type": "text"},
    FLATTENED: {"type": "flattened"},
    BOOLEAN: {"type": "boolean"},
    RAW: {"type": "keyword", "index": False, "doc_values": False},
}


def _nano(v: float) -> int:
    return round(v * 1e9)


def _none_if_empty(v: Any) -> Any:
    return v or None


@dataclass(frozen=True, slots=True)
class Field:
    """A document field fed by a record field.

    ``src`` is the record field's path from the record root, with ``[]``
    after a list (``pods[].containers[].cpu_cores``). In a metrics table the
    path may end in a list member (``pods[].network[].rx_bytes_per_s``): the
    values of that member are summed over the list.
    """

    es: str
    type: str
    src: str
    convert: Callable[[Any], Any] | None = None


@dataclass(frozen=True, slots=True)
class Derived:
    """A document field computed from the record (or a constant): ``fn`` gets the build context."""

    es: str
    type: str
    fn: Callable[[dict[str, Any]], Any]
    why: str = ""
    scope: str = "self"
    """What the value depends on in a node scrape: ``record`` (the scrape), ``pod`` or ``self`` (the entity).
    Values of a wider scope are computed once and shared by every document under it."""


@dataclass(frozen=True, slots=True)
class Stat:
    """One statistic of one metric in a rollup document (``kubernetes.container.cpu_cores.avg``).

    Built by ``streams.index._documents`` straight from the record's ``metrics`` map (one loop per document,
    not one getter per field), so the table lists them for the mappings only.
    """

    es: str
    type: str
    metric: str
    stat: str


Entry = Field | Derived | Stat


def _const(value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda ctx: value


def _fs(es: str, src: str, *, pct: bool = True) -> list[Entry]:
    """A filesystem's fields under ``es`` (``kubernetes.volume.fs``) from ``src`` (``pods[].volumes[]``)."""
    out: list[Entry] = [
        Field(f"{es}.used.bytes", LONG, f"{src}.used_bytes"),
        Field(f"{es}.capacity.bytes", LONG, f"{src}.capacity_bytes"),
        Field(f"{es}.available.bytes", LONG, f"{src}.available_bytes"),
        Field(f"{es}.inodes.used", LONG, f"{src}.inodes_used"),
        Field(f"{es}.inodes.count", LONG, f"{src}.inodes"),
        Field(f"{es}.inodes.free", LONG, f"{src}.inodes_free"),
    ]
    if pct:
        out.append(Derived(f"{es}.used.pct", SHARE, _fs_used_pct(src), "used/capacity, Metricbeat's volume fs.used.pct"))
    return out


def _fs_used_pct(src: str) -> Callable[[dict[str, Any]], Any]:
    last = src.rsplit(".", 1)[-1].removesuffix("[]")

    def fn(ctx: dict[str, Any]) -> Any:
        fs = ctx["self"] if src.endswith("[]") else getattr(ctx["self"], last, None)
        return None if fs is None else fs.used_share

    return fn


def _usage(es: str, src: str, *, pod_spelling: bool = False) -> list[Entry]:
    """CPU and memory usage (records' ``_Usage``) in Metricbeat's names."""
    ws = "working_set" if pod_spelling else "workingset"
    pf, mpf = ("page_faults", "major_page_faults") if pod_spelling else ("pagefaults", "majorpagefaults")
    return [
        Field(f"{es}.cpu.usage.nanocores", LONG, f"{src}.cpu_cores", _nano),
        Field(f"{es}.cpu.usage.core.ns", LONG, f"{src}.cpu_usage_seconds_total", _nano),
        Field(f"{es}.memory.{ws}.bytes", LONG, f"{src}.memory_working_set_bytes"),
        Field(f"{es}.memory.rss.bytes", LONG, f"{src}.memory_rss_bytes"),
        Field(f"{es}.memory.usage.bytes", LONG, f"{src}.memory_usage_bytes"),
        Field(f"{es}.memory.available.bytes", LONG, f"{src}.memory_available_bytes"),
        Field(f"{es}.memory.{pf}", LONG, f"{src}.memory_page_faults_total"),
        Field(f"{es}.memory.{mpf}", LONG, f"{src}.memory_major_page_faults_total"),
    ]


def _shares(es: str, src: str, *, pod_spelling: bool = False) -> list[Entry]:
    ws = "working_set" if pod_spelling else "workingset"
    return [
        Field(f"{es}.cpu.usage.request.pct", SHARE, f"{src}.cpu_request_share"),
        Field(f"{es}.cpu.usage.limit.pct", SHARE, f"{src}.cpu_limit_share"),
        Field(f"{es}.cpu.usage.node.pct", SHARE, f"{src}.cpu_node_share"),
        Field(f"{es}.memory.{ws}.request.pct", SHARE, f"{src}.memory_request_share"),
        Field(f"{es}.memory.{ws}.limit.pct", SHARE, f"{src}.memory_limit_share"),
        Field(f"{es}.memory.{ws}.node.pct", SHARE, f"{src}.memory_node_share"),
    ]


def _resources(es: str, src: str, which: str) -> list[Entry]:
    """Requests, limits, allocatable or capacity: ``kubernetes.container.cpu.limit.cores`` (kube-state-metrics names)."""
    return [
        Field(f"{es}.cpu.{which}.cores", FLOAT, f"{src}.cpu_cores"),
        Field(f"{es}.memory.{which}.bytes", LONG, f"{src}.memory_bytes"),
    ]


def _network(es: str, src: str) -> list[Entry]:
    """Interfaces summed: counters under Metricbeat's names, rates as ``*.bytes_per_s``."""
    return [
        Field(f"{es}.network.rx.bytes", LONG, f"{src}.network[].rx_bytes_total"),
        Field(f"{es}.network.tx.bytes", LONG, f"{src}.network[].tx_bytes_total"),
        Field(f"{es}.network.rx.errors", LONG, f"{src}.network[].rx_errors_total"),
        Field(f"{es}.network.tx.errors", LONG, f"{src}.network[].tx_errors_total"),
        Field(f"{es}.network.rx.bytes_per_s", FLOAT, f"{src}.network[].rx_bytes_per_s"),
        Field(f"{es}.network.tx.bytes_per_s", FLOAT, f"{src}.network[].tx_bytes_per_s"),
        Field(f"{es}.network.rx.errors_per_s", FLOAT, f"{src}.network[].rx_errors_per_s"),
        Field(f"{es}.network.tx.errors_per_s", FLOAT, f"{src}.network[].tx_errors_per_s"),
    ]


def _workload(kind: str) -> Callable[[dict[str, Any]], Any]:
    def fn(ctx: dict[str, Any]) -> Any:
        pod = ctx["pod"]
        return pod.workload_name if pod.workload_kind == kind else None

    return fn


def _metricset_common(metricset: str) -> list[Entry]:
    return [
        Field("@timestamp", DATE, "timestamp"),
        Field("orchestrator.cluster.name", KEYWORD, "cluster"),
        Field("kubernetes.node.name", KEYWORD, "node"),
        Field("kubepulse.source", KEYWORD, "source"),
        Derived("metricset.name", KEYWORD, _const(metricset), "node, pod, container or volume: which entity this is", "record"),
        Derived("event.kind", KEYWORD, _const("metric"), scope="record"),
        Derived("event.module", KEYWORD, _const("kubernetes"), scope="record"),
        Derived("event.dataset", KEYWORD, _const(f"kubernetes.{metricset}"), "Metricbeat's dataset names", "record"),
        Derived("kubepulse.entity", KEYWORD, lambda ctx: ctx["entity"], "the series id prefix: joins to rollups and anomalies"),
    ]


_POD = "pods[]"
_CONTAINER = "pods[].containers[]"
_VOLUME = "pods[].volumes[]"


def _pod_identity(*, labels: bool = True) -> list[Entry]:
    out: list[Entry] = [
        Field("kubernetes.namespace", KEYWORD, f"{_POD}.namespace"),
        Field("kubernetes.pod.name", KEYWORD, f"{_POD}.name"),
        Field("kubernetes.pod.uid", KEYWORD, f"{_POD}.uid", _none_if_empty),
        Field("kubernetes.workload.kind", KEYWORD, f"{_POD}.workload_kind"),
        Field("kubernetes.workload.name", KEYWORD, f"{_POD}.workload_name"),
    ]
    for kind, field in (
        ("Deployment", "deployment"),
        ("StatefulSet", "statefulset"),
        ("DaemonSet", "daemonset"),
        ("Job", "job"),
        ("CronJob", "cronjob"),
    ):
        out.append(Derived(f"kubernetes.{field}.name", KEYWORD, _workload(kind), "Metricbeat's per-kind owner fields", "pod"))
    if labels:
        out.append(Field("kubernetes.labels", FLATTENED, f"{_POD}.labels", _none_if_empty))
    return out


METRICSET_FIELDS: dict[str, list[Entry]] = {
    "node": [
        *_metricset_common("node"),
        *_usage("kubernetes.node", "node_stats"),
        Field("kubernetes.node.cpu.usage.allocatable.pct", SHARE, "node_stats.cpu_node_share"),
        Field("kubernetes.node.memory.workingset.allocatable.pct", SHARE, "node_stats.memory_node_share"),
        *_resources("kubernetes.node", "node_stats.allocatable", "allocatable"),
        *_resources("kubernetes.node", "node_stats.capacity", "capacity"),
        *_network("kubernetes.node", "node_stats"),
        *_fs("kubernetes.node.fs", "node_stats.fs"),
        *_fs("kubernetes.node.runtime.imagefs", "node_stats.imagefs"),
        Field("kubernetes.node.conditions", FLATTENED, "node_stats.conditions", _none_if_empty),
    ],
    "pod": [
        *_metricset_common("pod"),
        *_pod_identity(),
        Field("kubernetes.pod.status.phase", KEYWORD, f"{_POD}.phase"),
        *_usage("kubernetes.pod", _POD, pod_spelling=True),
        *_shares("kubernetes.pod", _POD, pod_spelling=True),
        *_resources("kubernetes.pod", f"{_POD}.requests", "request"),
        *_resources("kubernetes.pod", f"{_POD}.limits", "limit"),
        *_network("kubernetes.pod", _POD),
        *_fs("kubernetes.pod.ephemeral_storage", f"{_POD}.ephemeral_storage"),
    ],
    "container": [
        *_metricset_common("container"),
        *_pod_identity(),
        Field("kubernetes.container.name", KEYWORD, f"{_CONTAINER}.name"),
        Field("container.name", KEYWORD, f"{_CONTAINER}.name"),
        *_usage("kubernetes.container", _CONTAINER),
        *_shares("kubernetes.container", _CONTAINER),
        *_resources("kubernetes.container", f"{_CONTAINER}.requests", "request"),
        *_resources("kubernetes.container", f"{_CONTAINER}.limits", "limit"),
        *_fs("kubernetes.container.rootfs", f"{_CONTAINER}.rootfs"),
        *_fs("kubernetes.container.logs", f"{_CONTAINER}.logs"),
        Field("kubernetes.container.status.restarts", INTEGER, f"{_CONTAINER}.restart_count"),
        Field("kubernetes.container.status.last_terminated_reason", KEYWORD, f"{_CONTAINER}.last_terminated_reason"),
    ],
    "volume": [
        *_metricset_common("volume"),
        *_pod_identity(),
        Field("kubernetes.volume.name", KEYWORD, f"{_VOLUME}.name"),
        Field("kubernetes.persistentvolumeclaim.name", KEYWORD, f"{_VOLUME}.pvc_name"),
        *_fs("kubernetes.volume.fs", _VOLUME),
        Derived(
            "kubernetes.volume.fs.inodes.pct",
            SHARE,
            lambda ctx: ctx["self"].inodes_used / ctx["self"].inodes if ctx["self"].inodes and ctx["self"].inodes_used is not None else None,
            "inodes used / inodes, Metricbeat's volume fs.inodes.pct",
        ),
    ],
}
"""Metrics documents, per metricset. Paths are from the :class:`~models.records.NodeScrape` root."""


def _identity(*, pod: bool = True, workload: bool = True) -> list[Entry]:
    """Identity of a result record (rollup, anomaly, incident): the series' cluster, node, namespace..."""
    out: list[Entry] = [
        Field("orchestrator.cluster.name", KEYWORD, "cluster"),
        Field("kubernetes.node.name", KEYWORD, "node"),
        Field("kubernetes.namespace", KEYWORD, "namespace"),
    ]
    if workload:
        out.append(Field("kubernetes.workload.name", KEYWORD, "workload"))
    if pod:
        out += [
            Field("kubernetes.pod.name", KEYWORD, "pod"),
            Field("kubernetes.container.name", KEYWORD, "container"),
            Field("container.name", KEYWORD, "container"),
        ]
    return out


def _event_time(ctx: dict[str, Any]) -> Any:
    rec = ctx["record"]
    return rec.last_seen or rec.first_seen


def _involved(kind: str) -> Callable[[dict[str, Any]], Any]:
    def fn(ctx: dict[str, Any]) -> Any:
        obj = ctx["record"].involved_object
        return obj.name if obj.kind == kind else None

    return fn


def _label(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda ctx: ctx["record"].labels.get(name)


def _hpa_metrics_json(ctx: dict[str, Any]) -> str | None:
    metrics = ctx["record"].metrics
    return json.dumps([m.model_dump(exclude_none=True) for m in metrics], separators=(",", ":")) if metrics else None


def _hpa_utilization_resources(r: Any) -> list[str]:
    return sorted({m.resource for m in r.metrics if m.resource and m.target_type == "Utilization"})


def _hpa_utilization(r: Any, resource: str) -> int | None:
    targets = [m.target_average_utilization for m in r.metrics
               if m.resource == resource and m.target_type == "Utilization" and m.target_average_utilization]
    return min(targets) if targets else None


def _in_unit(name: str, unit: str) -> Callable[[dict[str, Any]], Any]:
    def fn(ctx: dict[str, Any]) -> Any:
        r = ctx["record"]
        return getattr(r, name) if r.unit == unit else None

    return fn


def _workload_waste(attr: str) -> Callable[[dict[str, Any]], Any]:
    def fn(ctx: dict[str, Any]) -> Any:
        v = getattr(ctx["record"], attr)
        return None if v is None else v * ctx["record"].replicas

    return fn


def _add_slash(v: str) -> str:
    return v + "/"


def _report(root: str) -> list[Entry]:
    """What every report document has: its time (the report's data time), dataset and the history it read."""
    return [
        Field("@timestamp", DATE, "generated_at"),
        Derived("event.kind", KEYWORD, _const("metric")),
        Derived("event.dataset", KEYWORD, _const(root)),
        Field(f"{root}.history.hours", INTEGER, "history_hours"),
        Field(f"{root}.history.start", DATE, "history_start"),
        Field(f"{root}.history.end", DATE, "history_end"),
    ]


KIND_FIELDS: dict[str, list[Entry]] = {
    "events": [
        # The event's time is when it was last seen; an Event with neither
        # time gets the indexing time (see streams.index._documents).
        Derived("@timestamp", DATE, _event_time, "last_seen, else first_seen"),
        Field("orchestrator.cluster.name", KEYWORD, "cluster"),
        Derived("event.kind", KEYWORD, _const("event")),
        Derived("event.module", KEYWORD, _const("kubernetes")),
        Derived("event.dataset", KEYWORD, _const("kubernetes.event")),
        Field("kubernetes.event.metadata.uid", KEYWORD, "uid"),
        Field("kubernetes.event.metadata.namespace", KEYWORD, "namespace"),
        Field("kubernetes.event.metadata.name", KEYWORD, "name"),
        Field("kubernetes.event.metadata.resource_version", KEYWORD, "resource_version", _none_if_empty),
        Field("kubernetes.event.reason", KEYWORD, "reason"),
        Field("kubernetes.event.type", KEYWORD, "type"),
        Field("message", TEXT, "message", _none_if_empty),
        Field("kubernetes.event.count", LONG, "count"),
        Field("kubernetes.event.timestamp.first_occurrence", DATE, "first_seen"),
        Field("kubernetes.event.timestamp.last_occurrence", DATE, "last_seen"),
        Field("kubernetes.event.involved_object.kind", KEYWORD, "involved_object.kind"),
        Field("kubernetes.event.involved_object.name", KEYWORD, "involved_object.name"),
        Field("kubernetes.event.involved_object.namespace", KEYWORD, "involved_object.namespace"),
        Field("kubernetes.event.involved_object.uid", KEYWORD, "involved_object.uid"),
        Field("kubernetes.event.involved_object.field_path", KEYWORD, "involved_object.field_path"),
        Field("kubernetes.event.source.component", KEYWORD, "source_component"),
        Field("kubernetes.event.source.host", KEYWORD, "source_host"),
        Derived(
            "kubernetes.namespace",
            KEYWORD,
            lambda ctx: ctx["record"].involved_object.namespace or ctx["record"].namespace or None,
            "the involved object's namespace: filters events like metrics",
        ),
        Derived("kubernetes.pod.name", KEYWORD, _involved("Pod"), "when the involved object is a Pod"),
        Derived(
            "kubernetes.node.name",
            KEYWORD,
            lambda ctx: _involved("Node")(ctx) or ctx["record"].source_host,
            "the involved Node, else the reporting host (kubelet events come from their node)",
        ),
    ],
    "quotas": [
        # One document per resource of the quota: the paths are from that
        # resource's view of the record, where ``hard`` and ``used`` are the
        # resource's numbers (``streams.index._documents`` builds the views).
        Field("@timestamp", DATE, "timestamp"),
        Field("orchestrator.cluster.name", KEYWORD, "cluster"),
        Field("kubernetes.namespace", KEYWORD, "namespace"),
        Field("kubernetes.resourcequota.name", KEYWORD, "name"),
        Field("kubepulse.source", KEYWORD, "source"),
        Derived("event.kind", KEYWORD, _const("metric")),
        Derived("event.module", KEYWORD, _const("kubernetes")),
        Derived("event.dataset", KEYWORD, _const("kubernetes.resourcequota")),
        Derived("kubernetes.resourcequota.resource", KEYWORD, lambda ctx: ctx["resource"], "the resource this document is about"),
        Field("kubernetes.resourcequota.hard.value", DOUBLE, "hard"),
        Field("kubernetes.resourcequota.used.value", DOUBLE, "used"),
        # double, not a float share: quota rules and panels compare it with exact thresholds (1.0 is "fully used").
        Derived(
            "kubernetes.resourcequota.used.pct",
            DOUBLE,
            lambda ctx: ctx["used_share"],
            "used / hard as models.series computes quota.used_share: absent while not counted or for a hard limit of 0",
        ),
        Derived("kubepulse.entity", KEYWORD, lambda ctx: ctx["entity"], "the series id prefix: joins to rollups and anomalies"),
    ],
    "autoscalers": [
        # One document per HorizontalPodAutoscaler and day, overwritten by every pass with its newest state
        # (an HPA changes rarely; one per pass would be thousands a day for the same facts).
        Field("@timestamp", DATE, "timestamp"),
        Field("orchestrator.cluster.name", KEYWORD, "cluster"),
        Field("kubernetes.namespace", KEYWORD, "namespace"),
        Field("kubernetes.hpa.name", KEYWORD, "name"),
        Field("kubepulse.source", KEYWORD, "source"),
        Derived("event.kind", KEYWORD, _const("state")),
        Derived("event.module", KEYWORD, _const("kubernetes")),
        Derived("event.dataset", KEYWORD, _const("kubernetes.hpa")),
        Field("kubernetes.hpa.target.kind", KEYWORD, "target_kind"),
        Field("kubernetes.hpa.target.name", KEYWORD, "target_name"),
        # The target is the workload kubepulse's rollups name: filters and joins like them.
        Field("kubernetes.workload.kind", KEYWORD, "target_kind"),
        Field("kubernetes.workload.name", KEYWORD, "target_name"),
        Field("kubernetes.hpa.replicas.min", INTEGER, "min_replicas"),
        Field("kubernetes.hpa.replicas.max", INTEGER, "max_replicas"),
        Field("kubernetes.hpa.replicas.current", INTEGER, "current_replicas"),
        Field("kubernetes.hpa.replicas.desired", INTEGER, "desired_replicas"),
        Derived("kubernetes.hpa.metric.types", KEYWORD, lambda ctx: sorted({m.type for m in ctx["record"].metrics}) or None,
                "the kinds of metric it scales on"),
        Derived("kubernetes.hpa.utilization.resources", KEYWORD, lambda ctx: _hpa_utilization_resources(ctx["record"]) or None,
                "resources whose target is a utilization of the request: what right-sizing must not move"),
        Derived("kubernetes.hpa.cpu.target.utilization", INTEGER, lambda ctx: _hpa_utilization(ctx["record"], "cpu"),
                "target average CPU utilization, percent of the request"),
        Derived("kubernetes.hpa.memory.target.utilization", INTEGER, lambda ctx: _hpa_utilization(ctx["record"], "memory"),
                "target average memory utilization, percent of the request"),
        Derived("kubepulse.entity", KEYWORD, lambda ctx: f"{ctx['record'].cluster}/{ctx['record'].namespace}/workload:{ctx['record'].target_name}/-/",
                "the target workload's rollup entity"),
        Derived("kubernetes.hpa.metrics", RAW, _hpa_metrics_json, "spec.metrics as the record has it, so a reader gets the record back"),
    ],
    "capacity": [
        *_report("kubepulse.capacity"),
        Field("orchestrator.cluster.name", KEYWORD, "cluster"),
        Field("kubepulse.capacity.entity_kind", KEYWORD, "entity_kind"),
        Field("kubepulse.entity", KEYWORD, "entity_id", _add_slash),
        Field("kubernetes.node.name", KEYWORD, "node"),
        Field("kubernetes.namespace", KEYWORD, "namespace"),
        Field("kubernetes.volume.name", KEYWORD, "volume"),
        Field("kubernetes.persistentvolumeclaim.name", KEYWORD, "persistentvolumeclaim"),
        Field("kubepulse.capacity.resource", KEYWORD, "resource"),
        Field("kubepulse.capacity.unit", KEYWORD, "unit"),
        Field("kubepulse.capacity.limit_kind", KEYWORD, "limit_kind"),
        Field("kubepulse.capacity.limit_name", KEYWORD, "limit_name"),
        # Amounts by unit, so a data view formats bytes as bytes and a Lens sum never adds cores to bytes.
        *(
            Derived(f"kubepulse.capacity.{name}.{unit}", DOUBLE, _in_unit(name, unit), f"{name} when the unit is {unit}")
            for unit in ("cores", "bytes")
            for name in ("limit", "current", "p95", "peak", "idle", "growth_per_day")
        ),
        Field("kubepulse.capacity.used.pct", DOUBLE, "used_share"),
        Field("kubepulse.capacity.model", KEYWORD, "model"),
        Field("kubepulse.capacity.days_to_full", DOUBLE, "days_to_full"),
        Field("kubepulse.capacity.days_to_full_low", DOUBLE, "days_to_full_low"),
        Field("kubepulse.capacity.days_to_full_high", DOUBLE, "days_to_full_high"),
        Field("kubepulse.capacity.full_at", DATE, "full_at"),
        Field("kubepulse.capacity.interval", FLOAT, "interval"),
        Field("kubepulse.capacity.horizon_days", FLOAT, "horizon_days"),
    ],
    "recommendations": [
        *_report("kubepulse.recommendation"),
        Field("orchestrator.cluster.name", KEYWORD, "cluster"),
        Field("kubernetes.namespace", KEYWORD, "namespace"),
        Field("kubernetes.workload.name", KEYWORD, "workload"),
        Field("kubernetes.workload.kind", KEYWORD, "workload_kind"),
        Field("kubernetes.container.name", KEYWORD, "container"),
        Field("container.name", KEYWORD, "container"),
        Derived("kubepulse.entity", KEYWORD, lambda ctx: f"{ctx['record'].key}/", "workload and container, as a series prefix"),
        Field("kubepulse.recommendation.pods", INTEGER, "pods"),
        Field("kubepulse.recommendation.replicas", FLOAT, "replicas"),
        Field("kubepulse.recommendation.cpu.p95.cores", DOUBLE, "cpu_p95"),
        Field("kubepulse.recommendation.cpu.p99.cores", DOUBLE, "cpu_p99"),
        Field("kubepulse.recommendation.cpu.max.cores", DOUBLE, "cpu_max"),
        Field("kubepulse.recommendation.memory.p95.bytes", DOUBLE, "memory_p95"),
        Field("kubepulse.recommendation.memory.p99.bytes", DOUBLE, "memory_p99"),
        Field("kubepulse.recommendation.memory.max.bytes", DOUBLE, "memory_max"),
        Field("kubepulse.recommendation.cpu.request.current.cores", DOUBLE, "current_cpu_request"),
        Field("kubepulse.recommendation.cpu.limit.current.cores", DOUBLE, "current_cpu_limit"),
        Field("kubepulse.recommendation.memory.request.current.bytes", DOUBLE, "current_memory_request"),
        Field("kubepulse.recommendation.memory.limit.current.bytes", DOUBLE, "current_memory_limit"),
        Field("kubepulse.recommendation.cpu.request.recommended.cores", DOUBLE, "cpu_request"),
        Field("kubepulse.recommendation.cpu.limit.recommended.cores", DOUBLE, "cpu_limit"),
        Field("kubepulse.recommendation.memory.request.recommended.bytes", DOUBLE, "memory_request"),
        Field("kubepulse.recommendation.memory.limit.recommended.bytes", DOUBLE, "memory_limit"),
        Field("kubepulse.recommendation.cpu.waste.cores", DOUBLE, "waste_cpu_cores"),
        Field("kubepulse.recommendation.memory.waste.bytes", DOUBLE, "waste_memory_bytes"),
        Derived("kubepulse.recommendation.cpu.waste.total_cores", DOUBLE, _workload_waste("waste_cpu_cores"),
                "per-replica waste times the replicas: what the workload as a whole holds idle"),
        Derived("kubepulse.recommendation.memory.waste.total_bytes", DOUBLE, _workload_waste("waste_memory_bytes"),
                "per-replica waste times the replicas"),
        Field("kubernetes.hpa.name", KEYWORD, "hpa"),
        Field("kubepulse.recommendation.held", KEYWORD, "held", _none_if_empty),
        Field("kubepulse.recommendation.confidence", FLOAT, "confidence"),
    ],
    "anomalies": [
        Field("@timestamp", DATE, "timestamp"),
        Derived("event.kind", KEYWORD, _const("signal")),
        Derived("event.dataset", KEYWORD, _const("kubepulse.anomaly")),
        Field("kubepulse.series_id", KEYWORD, "series_id"),
        Field("kubepulse.metric", KEYWORD, "metric"),
        *_identity(),
        Field("kubepulse.anomaly.value", DOUBLE, "value"),
        Field("kubepulse.anomaly.baseline", DOUBLE, "baseline"),
        Field("kubepulse.anomaly.score", DOUBLE, "score"),
        Field("kubepulse.anomaly.threshold", DOUBLE, "threshold"),
        Field("kubepulse.anomaly.detector", KEYWORD, "detector"),
    ],
    "alerts": [
        Derived(
            "@timestamp",
            DATE,
            lambda ctx: ctx["record"].ends_at if ctx["record"].status == "resolved" else ctx["record"].starts_at,
            "the transition's time: starts_at when firing, ends_at when resolved",
        ),
        Derived("event.kind", KEYWORD, _const("alert")),
        Derived("event.dataset", KEYWORD, _const("kubepulse.alert")),
        Field("kubepulse.alert.fingerprint", KEYWORD, "fingerprint"),
        Field("kubepulse.alert.status", KEYWORD, "status"),
        Field("kubepulse.alert.labels", FLATTENED, "labels"),
        Field("kubepulse.alert.annotations", FLATTENED, "annotations", _none_if_empty),
        Field("kubepulse.alert.starts_at", DATE, "starts_at"),
        Field("kubepulse.alert.ends_at", DATE, "ends_at"),
        Field("rule.name", KEYWORD, "rule"),
        Field("kubepulse.alert.value", DOUBLE, "value"),
        Field("kubepulse.alert.threshold", DOUBLE, "threshold"),
        Field("kubepulse.alert.sequence", LONG, "sequence"),
        Field("kubepulse.alert.generator_url", RAW, "generator_url"),
        Derived("kubepulse.alert.name", KEYWORD, _label("alertname"), "labels.alertname"),
        Derived("kubepulse.alert.severity", KEYWORD, _label("severity"), "labels.severity"),
        Derived("orchestrator.cluster.name", KEYWORD, _label("cluster"), "labels.cluster: filter alerts like metrics"),
        Derived("kubernetes.namespace", KEYWORD, _label("namespace"), "labels.namespace"),
        Derived("kubernetes.node.name", KEYWORD, _label("node"), "labels.node"),
        Derived("kubernetes.pod.name", KEYWORD, _label("pod"), "labels.pod"),
        Derived("container.name", KEYWORD, _label("container"), "labels.container"),
    ],
    "notifications": [
        Field("@timestamp", DATE, "at"),
        Derived("event.kind", KEYWORD, _const("event")),
        Derived("event.dataset", KEYWORD, _const("kubepulse.notification")),
        Field("kubepulse.notification.id", KEYWORD, "notification_id"),
        Field("kubepulse.notification.receiver", KEYWORD, "receiver"),
        Field("kubepulse.notification.integration", KEYWORD, "integration"),
        Field("kubepulse.notification.group_key", KEYWORD, "group_key"),
        Field("kubepulse.alert.fingerprint", KEYWORD, "fingerprints"),
        Field("kubepulse.alert.status", KEYWORD, "status"),
        Field("kubepulse.notification.attempt", INTEGER, "attempt"),
        Field("event.outcome", KEYWORD, "outcome"),
        Field("error.message", TEXT, "error"),
        Field("http.response.status_code", SHORT, "http_status"),
    ],
    "incidents": [
        Field("@timestamp", DATE, "start"),
        Field("kubepulse.incident.end", DATE, "end"),
        Derived("event.kind", KEYWORD, _const("state")),
        Derived("event.dataset", KEYWORD, _const("kubepulse.incident")),
        Field("kubepulse.incident.id", KEYWORD, "incident_id"),
        Field("kubepulse.incident.kind", KEYWORD, "kind"),
        *_identity(workload=False),
        Field("kubepulse.incident.metrics", KEYWORD, "metrics", _none_if_empty),
        Field("kubepulse.incident.seed", LONG, "seed"),
    ],
    "deadletter": [
        Field("@timestamp", DATE, "occurred_at"),
        Derived("event.kind", KEYWORD, _const("pipeline_error")),
        Derived("event.dataset", KEYWORD, _const("kubepulse.deadletter")),
        Field("kubepulse.deadletter.source_topic", KEYWORD, "source_topic"),
        # Kafka partitions are int32, offsets int64: sized to what Kafka allows.
        Field("kubepulse.deadletter.partition", INTEGER, "partition"),
        Field("kubepulse.deadletter.offset", LONG, "offset"),
        Field("kubepulse.deadletter.key", KEYWORD, "key"),
        Field("kubepulse.deadletter.stage", KEYWORD, "stage"),
        Field("error.message", TEXT, "reason"),
        Field("error.type", KEYWORD, "error_type", _none_if_empty),
        Field("event.original", RAW, "payload", _none_if_empty),
        # How to read event.original back into the message's bytes, and whether it is all of them.
        Field("kubepulse.deadletter.payload_encoding", KEYWORD, "payload_encoding"),
        Field("kubepulse.deadletter.payload_bytes", LONG, "payload_bytes"),
        Field("kubepulse.deadletter.payload_sha256", KEYWORD, "payload_sha256"),
        Field("kubepulse.deadletter.truncated", BOOLEAN, "truncated"),
    ],
}
"""Documents of the other kinds: one per record (one per resource for a quota, one per HPA and day). Paths are from the
record root."""


# --------------------------------------------------------------------------
# Rollups (kubepulse.rollups.v2): one document per entity and window.
# --------------------------------------------------------------------------

ROLLUP_STATS: tuple[tuple[str, str], ...] = (("min", "min"), ("max", "max"), ("avg", "mean"), ("last", "last"), ("sum", "sum"))
"""(document leaf, ``MetricStats`` field) of each statistic kept per metric; ``count`` is kept once per document."""

ROLLUP_METRICS: tuple[str, ...] = tuple(
    dict.fromkeys(m for table in (METRICS, AGGREGATE_METRICS) for kind, names in table.items() if kind != "quota" for m in names)
)
"""Every metric a rollup may carry: the entity metrics of ``models.series`` (quotas have no rollups) and the
cluster-wide sums."""

_ROLLUP_ROOTS = {"namespace": "kubernetes.namespace_totals"}
"""Entity kinds whose ``kubernetes.<kind>`` is already a keyword in ECS and every Elastic Kubernetes integration
(``kubernetes.namespace`` is the namespace's name): their metrics get a root of their own."""


def rollup_field(metric: str) -> str:
    """The document root of a metric's statistics: ``kubernetes.`` and the metric name, Metricbeat's layout.

    >>> rollup_field("container.cpu_cores"), rollup_field("pod.network.rx_bytes_per_s")
    ('kubernetes.container.cpu_cores', 'kubernetes.pod.network.rx_bytes_per_s')
    >>> rollup_field("namespace.memory_request_bytes")
    'kubernetes.namespace_totals.memory_request_bytes'
    """
    entity, _, rest = metric.partition(".")
    return f"{_ROLLUP_ROOTS.get(entity, 'kubernetes.' + entity)}.{rest}"


def _largest_count(ctx: dict[str, Any]) -> int:
    return max(s.count for s in ctx["record"].metrics.values())


ROLLUP_FIELDS: list[Entry] = [
    Field("@timestamp", DATE, "window_start"),
    Field("kubepulse.window.end", DATE, "window_end"),
    Field("kubepulse.window.size", KEYWORD, "window"),
    Derived("event.kind", KEYWORD, _const("metric")),
    Derived("event.module", KEYWORD, _const("kubernetes")),
    Derived("event.dataset", KEYWORD, _const("kubepulse.rollup")),
    # The raw documents' and the anomalies' series prefix (with its trailing "/"), so the three join.
    Field("kubepulse.entity", KEYWORD, "entity_id", _add_slash),
    Field("metricset.name", KEYWORD, "kind"),
    Field("orchestrator.cluster.name", KEYWORD, "cluster"),
    Field("kubernetes.node.name", KEYWORD, "node"),
    Field("kubernetes.namespace", KEYWORD, "namespace"),
    Field("kubernetes.workload.name", KEYWORD, "workload"),
    Field("kubernetes.workload.kind", KEYWORD, "workload_kind"),
    Field("kubernetes.pod.name", KEYWORD, "pod"),
    Field("kubernetes.container.name", KEYWORD, "container"),
    Field("container.name", KEYWORD, "container"),
    Field("kubernetes.volume.name", KEYWORD, "volume"),
    Field("kubernetes.persistentvolumeclaim.name", KEYWORD, "persistentvolumeclaim"),
    # ECS's interface field set (observer.ingress.interface.* reuses it): the interface's name.
    Field("interface.name", KEYWORD, "interface"),
    Derived("kubepulse.rollup.count", INTEGER, _largest_count, "samples in the window: the largest count of its metrics"),
    *(
        Stat(f"{rollup_field(m)}.{leaf}", DOUBLE, m, attr)
        for m in ROLLUP_METRICS
        for leaf, attr in (*ROLLUP_STATS, ("count", "count"))
    ),
]
"""Rollup documents (both windows). Paths are from the :class:`~models.records.EntityRollup` root; the
``Stat`` entries come from ``metrics`` (``<root>.count`` only where a metric has fewer samples than the
document's count, and typed ``integer``)."""

EXCLUDED: dict[str, dict[str, str]] = {
    "metrics": {
        "schema_version": "the envelope's version, not data",
        "node_stats.network[].name": "interfaces are summed per node, as Metricbeat does",
        "pods[].network[].name": "interfaces are summed per pod, as Metricbeat does",
    },
    "events": {"schema_version": "the envelope's version, not data"},
    "quotas": {"schema_version": "the envelope's version, not data"},
    "autoscalers": {
        "schema_version": "the envelope's version, not data",
        **{f"metrics[].{f}": "kept whole as JSON in kubernetes.hpa.metrics, summed up as kubernetes.hpa.metric.types, "
                             ".utilization.resources and .<resource>.target.utilization"
           for f in ("type", "resource", "container", "target_type", "target_average_utilization", "target_average_value",
                     "metric_name")},
    },
    "capacity": {
        "schema_version": "the envelope's version, not data",
        **{f: "split by unit into kubepulse.capacity.<amount>.cores and .bytes"
           for f in ("limit", "current", "p95", "peak", "idle", "growth_per_day")},
    },
    "recommendations": {"schema_version": "the envelope's version, not data"},
    "rollups": {
        "schema_version": "the envelope's version, not data",
        "metrics": "one field per metric and statistic (rollup_field, ROLLUP_STATS) and kubepulse.rollup.count",
    },
    "anomalies": {"schema_version": "the envelope's version, not data"},
    "alerts": {"schema_version": "the envelope's version, not data"},
    "notifications": {"schema_version": "the envelope's version, not data"},
    "incidents": {"schema_version": "the envelope's version, not data"},
    "deadletter": {"schema_version": "the envelope's version, not data"},
}
"""Record fields deliberately not indexed, with the reason (checked by the unit tests)."""


def fields_of(kind: str) -> list[Entry]:
    """Every table entry of ``kind``: an index kind or a record kind (all metricsets for ``metrics``)."""
    if kind == "metrics":
        return [e for ms in METRICSETS for e in METRICSET_FIELDS[ms]]
    if record_kind(kind) == "rollups" and (kind == "rollups" or kind in INDEX_KINDS):
        return ROLLUP_FIELDS
    try:
        return KIND_FIELDS[kind]
    except KeyError:
        raise KeyError(f"no index kind {kind!r}; known: {', '.join(INDEX_KINDS)}") from None


def _es_type(e: Entry) -> str:
    return _body(e)["type"]


def field_types(kind: str) -> dict[str, str]:
    """Document field path to its Elasticsearch type, for ``kind``.

    >>> field_types("metrics")["kubernetes.container.cpu.usage.nanocores"]
    'long'
    >>> field_types("alerts")["kubepulse.alert.labels"]
    'flattened'
    >>> field_types("rollups-1h")["kubernetes.workload.memory_request_bytes.max"]
    'double'
    """
    out: dict[str, str] = {}
    for e in fields_of(kind):
        es_type = _es_type(e)
        if out.setdefault(e.es, es_type) != es_type:
            raise AssertionError(f"{kind}: {e.es} is declared as {out[e.es]} and {es_type}")
    return out


_NUMERIC = frozenset({"long", "integer", "short", "float", "double"})


def _body(e: Entry) -> dict[str, Any]:
    if isinstance(e, Stat) and e.stat == "count":
        return dict(_TYPE_BODY[INTEGER])
    return dict(_TYPE_BODY[e.type])


def mappings(kind: str) -> dict[str, Any]:
    """The ``mappings`` body of index kind ``kind``'s template: nested objects, ``dynamic: strict``.

    In the :data:`SORTED_KINDS` numbers are doc values only (``index: false``).
    """
    props: dict[str, Any] = {}
    seen: set[str] = set()
    doc_values_only = kind in SORTED_KINDS
    for e in fields_of(kind):
        if e.es in seen:
            continue
        seen.add(e.es)
        node = props
        *parents, leaf = e.es.split(".")
        for p in parents:
            child = node.setdefault(p, {"properties": {}})
            if "properties" not in child:
                raise AssertionError(f"{kind}: {e.es} needs {p} to be an object, but it is a {child['type']} field")
            node = child["properties"]
        if leaf in node:
            raise AssertionError(f"{kind}: {e.es} is an object of other fields and cannot be a field itself")
        body = _body(e)
        if doc_values_only and body["type"] in _NUMERIC:
            body["index"] = False
        node[leaf] = body
    return {"dynamic": "strict", "_source": {"enabled": True}, "properties": props}


def template_name(settings: Settings, kind: str) -> str:
    return f"{settings.elasticsearch.index_prefix}-{kind}"


def alias_name(settings: Settings, kind: str) -> str:
    """The alias every daily index of ``kind`` joins: what queries and Kibana data views use.

    ``rollups`` (both windows together) is an alias too; each window's indices also join their own.
    """
    return f"{settings.elasticsearch.index_prefix}-{kind}"


def component_templates(settings: Settings) -> dict[str, dict[str, Any]]:
    """Component templates shared by every kind: index settings (shards, replicas, codec, ILM)."""
    es = settings.elasticsearch
    index_settings: dict[str, Any] = {
        "number_of_shards": es.number_of_shards,
        "number_of_replicas": es.number_of_replicas,
        "codec": es.codec,
    }
    if es.ilm_policy:
        index_settings["lifecycle"] = {"name": es.ilm_policy}
    return {
        f"{es.index_prefix}-settings": {
            "template": {"settings": {"index": index_settings}},
            "_meta": {"managed_by": "kubepulse", "description": "kubepulse index settings"},
        }
    }


def _kind_settings(kind: str) -> dict[str, Any]:
    if kind not in SORTED_KINDS:
        return {}
    # One entity's documents together, oldest first: its values sit side by side and compress as a column.
    out: dict[str, Any] = {"sort": {"field": ["kubepulse.entity", "@timestamp"], "order": ["asc", "asc"]}}
    if record_kind(kind) == "rollups":
        # Six fields per metric of every entity kind (~570 today): above Elasticsearch's default of 1,000
        # fields and objects once a few dozen metrics are added, which would reject every document.
        out["mapping"] = {"total_fields": {"limit": 3000}}
    return {"index": out}


def index_templates(settings: Settings) -> dict[str, dict[str, Any]]:
    """Index kind to the body of its composable index template (``PUT _index_template/<prefix>-<kind>``).

    >>> from models.settings import load_settings
    >>> t = index_templates(load_settings(elasticsearch={"index_prefix": "kp"}))["rollups-1h"]
    >>> t["index_patterns"], sorted(t["template"]["aliases"])
    (['kp-rollups-1h-*'], ['kp-rollups', 'kp-rollups-1h'])
    """
    prefix = settings.elasticsearch.index_prefix
    out: dict[str, dict[str, Any]] = {}
    for kind in INDEX_KINDS:
        aliases = {alias_name(settings, kind): {}}
        if record_kind(kind) != kind:
            aliases[alias_name(settings, record_kind(kind))] = {}
        template: dict[str, Any] = {"mappings": mappings(kind), "aliases": aliases}
        if kind in SORTED_KINDS:
            template["settings"] = _kind_settings(kind)
        out[kind] = {
            "index_patterns": [f"{prefix}-{kind}-*"],
            # Above the built-in templates (priority 100 for logs-*-*, metrics-*-*) so ours always wins.
            "priority": 200,
            "composed_of": list(component_templates(settings)),
            "template": template,
            "_meta": {"managed_by": "kubepulse", "kind": kind},
        }
    return out
