"""Every Elasticsearch query and write of the reports, in one place (the analyses themselves never see a client).

Reads: hourly rollups (``<prefix>-rollups-1h``, fields by ``streams.index.rollup_field``), the newest
``hard`` of every ResourceQuota (``<prefix>-quotas``) and the newest state of every HPA
(``<prefix>-autoscalers``). Writes: the report documents (``<prefix>-capacity``,
``<prefix>-recommendations``) with the index contract's own document builder and ids, so a rerun the
same day replaces its documents instead of adding to them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch, helpers

from kubepulse.report._capacity import RESOURCES, Quota
from kubepulse.report._history import EntityHistory, Hourly
from models.records import AutoscalerMetric, AutoscalerScrape, Record
from models.settings import Settings
from streams.index import alias_name, documents_for, index_name, rollup_field

__all__ = ["newest_hour", "histories", "quotas", "autoscalers", "write", "CAPACITY_METRICS", "CONTAINER_METRICS", "ReportWriteError"]

CAPACITY_METRICS: dict[str, tuple[str, ...]] = {
    kind: tuple(dict.fromkeys(m for s in specs for m in (s.metric, s.limit_metric) if m)) for kind, specs in RESOURCES.items()
}
"""Per entity kind, the metrics capacity planning reads."""
CONTAINER_METRICS = ("container.cpu_cores", "container.memory_working_set_bytes", "container.cpu_request_cores",
                     "container.cpu_limit_cores", "container.memory_request_bytes", "container.memory_limit_bytes")
"""What right-sizing reads of each container: use, and its requests and limits."""

_IDENTITY = {
    "metricset.name": "kind",
    "kubepulse.entity": "entity_id",
    "orchestrator.cluster.name": "cluster",
    "kubernetes.node.name": "node",
    "kubernetes.namespace": "namespace",
    "kubernetes.workload.name": "workload",
    "kubernetes.workload.kind": "workload_kind",
    "kubernetes.pod.name": "pod",
    "kubernetes.container.name": "container",
    "kubernetes.volume.name": "volume",
    "kubernetes.persistentvolumeclaim.name": "persistentvolumeclaim",
}


class ReportWriteError(RuntimeError):
    """Elasticsearch refused report documents; the message lists them with its reasons."""


def _filters(cluster: str | None, namespace: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if cluster:
        out.append({"term": {"orchestrator.cluster.name": cluster}})
    if namespace:
        out.append({"term": {"kubernetes.namespace": namespace}})
    return out


def newest_hour(client: Elasticsearch, settings: Settings, *, cluster: str | None = None) -> datetime | None:
    """The end of the newest hourly rollup (data time: what a report is as of), None when there is none."""
    resp = client.options(ignore_status=404).search(
        index=alias_name(settings, "rollups-1h"), size=0, query={"bool": {"filter": _filters(cluster, None)}},
        aggs={"newest": {"max": {"field": "@timestamp"}}},
    )
    value = ((resp.get("aggregations") or {}).get("newest") or {}).get("value")
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC) + timedelta(hours=1)


def _source_value(src: dict[str, Any], key: str) -> Any:
    # Documents are written with dotted keys; a document written by another client may nest them.
    if key in src:
        return src[key]
    node: Any = src
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def histories(
    client: Elasticsearch,
    settings: Settings,
    *,
    kinds: dict[str, Sequence[str]],
    start: datetime,
    end: datetime,
    cluster: str | None = None,
    namespace: str | None = None,
) -> list[EntityHistory]:
    """The hourly rollups of the entity kinds in ``kinds`` (kind to the metrics wanted) from ``start`` to ``end``."""
    wanted = {m for ms in kinds.values() for m in ms}
    roots = {m: rollup_field(m) for m in wanted}
    fields = [*_IDENTITY, "@timestamp", "kubepulse.rollup.count",
              *(f"{root}.{leaf}" for root in roots.values() for leaf in ("min", "max", "avg", "last", "count"))]
    query = {"bool": {"filter": [
        {"terms": {"metricset.name": sorted(kinds)}},
        {"range": {"@timestamp": {"gte": start.isoformat(), "lt": end.isoformat()}}},
        *_filters(cluster, namespace),
    ]}}
    by_entity: dict[str, tuple[dict[str, Any], dict[str, list[tuple[float, ...]]]]] = {}
    for hit in helpers.scan(client, index=alias_name(settings, "rollups-1h"), query={"query": query, "_source": fields}, size=2000,
                            preserve_order=False):
        src = hit["_source"]
        ident = {attr: _source_value(src, f) for f, attr in _IDENTITY.items()}
        entity = str(ident["entity_id"]).removesuffix("/")
        _, per_metric = by_entity.setdefault(entity, (ident, {}))
        ts = datetime.fromisoformat(str(_source_value(src, "@timestamp"))).timestamp()
        doc_count = _source_value(src, "kubepulse.rollup.count")
        for m in kinds.get(str(ident["kind"]), ()):
            root = roots[m]
            mean = _source_value(src, f"{root}.avg")
            if mean is None:
                continue
            count = _source_value(src, f"{root}.count") or doc_count or 1
            per_metric.setdefault(m, []).append(
                (ts, _source_value(src, f"{root}.min"), _source_value(src, f"{root}.max"), mean, _source_value(src, f"{root}.last"), float(count))
            )
    out = []
    for entity, (ident, per_metric) in by_entity.items():
        ident = {**ident, "entity_id": entity}
        out.append(EntityHistory(**ident, metrics={m: Hourly.from_rows(rows) for m, rows in per_metric.items()}))  # type: ignore[arg-type]
    return out


def quotas(client: Elasticsearch, settings: Settings, *, end: datetime, cluster: str | None = None,
           lookback: timedelta = timedelta(days=1)) -> dict[tuple[str, str, str], Quota]:
    """The binding ``hard`` per (cluster, namespace, quota resource): the smallest of the namespace's quotas, each as last seen."""
    query = {"bool": {"filter": [{"range": {"@timestamp": {"gte": (end - lookback).isoformat(), "lte": end.isoformat()}}},
                                 *_filters(cluster, None)]}}
    aggs = {"quotas": {
        "composite": {"size": 1000, "sources": [
            {"c": {"terms": {"field": "orchestrator.cluster.name"}}},
            {"ns": {"terms": {"field": "kubernetes.namespace"}}},
            {"q": {"terms": {"field": "kubernetes.resourcequota.name"}}},
            {"r": {"terms": {"field": "kubernetes.resourcequota.resource"}}},
        ]},
        "aggs": {"newest": {"top_hits": {"size": 1, "sort": [{"@timestamp": "desc"}],
                                         "_source": ["kubernetes.resourcequota.hard.value"]}}},
    }}
    out: dict[tuple[str, str, str], Quota] = {}
    after = None
    while True:
        if after:
            aggs["quotas"]["composite"]["after"] = after
        resp = client.options(ignore_status=404).search(index=alias_name(settings, "quotas"), size=0, query=query, aggs=aggs)
        agg = (resp.get("aggregations") or {}).get("quotas")
        if not agg:
            return out
        for b in agg["buckets"]:
            (hit,) = b["newest"]["hits"]["hits"]
            hard = _source_value(hit["_source"], "kubernetes.resourcequota.hard.value")
            k = (b["key"]["c"], b["key"]["ns"], b["key"]["r"])
            if hard is not None and (k not in out or hard < out[k].hard):
                out[k] = Quota(float(hard), b["key"]["q"])
        after = agg.get("after_key")
        if not after or not agg["buckets"]:
            return out


def autoscalers(client: Elasticsearch, settings: Settings, *, end: datetime, cluster: str | None = None,
                namespace: str | None = None, lookback: timedelta = timedelta(days=2)) -> list[AutoscalerScrape]:
    """Every HPA seen in the ``lookback`` before ``end``, as it was last seen."""
    query = {"bool": {"filter": [{"range": {"@timestamp": {"gte": (end - lookback).isoformat(), "lte": end.isoformat()}}},
                                 *_filters(cluster, namespace)]}}
    newest: dict[tuple[str, str, str], AutoscalerScrape] = {}
    if not client.indices.exists_alias(name=alias_name(settings, "autoscalers")):
        return []
    for hit in helpers.scan(client, index=alias_name(settings, "autoscalers"), query={"query": query}, size=1000):
        s = hit["_source"]
        g = lambda k: _source_value(s, k)  # noqa: E731
        metrics = [AutoscalerMetric(**m) for m in json.loads(g("kubernetes.hpa.metrics") or "[]")]
        a = AutoscalerScrape(
            cluster=g("orchestrator.cluster.name"), namespace=g("kubernetes.namespace"), name=g("kubernetes.hpa.name"),
            timestamp=datetime.fromisoformat(g("@timestamp")), source=g("kubepulse.source") or "kubernetes",
            target_kind=g("kubernetes.hpa.target.kind"), target_name=g("kubernetes.hpa.target.name"),
            min_replicas=g("kubernetes.hpa.replicas.min") or 1, max_replicas=g("kubernetes.hpa.replicas.max"),
            current_replicas=g("kubernetes.hpa.replicas.current"), desired_replicas=g("kubernetes.hpa.replicas.desired"),
            metrics=metrics,
        )
        k = (a.cluster, a.namespace, a.name)
        if k not in newest or newest[k].timestamp < a.timestamp:
            newest[k] = a
    return sorted(newest.values(), key=lambda a: a.key)


def write(client: Elasticsearch, settings: Settings, records: Iterable[Record]) -> int:
    """Index report records (ids from the index contract: a rerun the same day overwrites); returns documents written.

    The client retries 429s, 5xx and timeouts; what Elasticsearch still refuses raises
    :class:`ReportWriteError` with every reason, so the job exits non-zero and its CronJob retries it.
    """
    prefix = settings.elasticsearch.index_prefix
    actions = ({"_op_type": "index", "_index": index_name(prefix, d.kind, d.day), "_id": d.id, "_source": d.body}
               for r in records for d in documents_for(r))
    ok, errors = helpers.bulk(client, actions, chunk_size=1000, raise_on_error=False, max_retries=5, initial_backoff=1)
    if errors:
        reasons = "; ".join(json.dumps(e, default=str)[:300] for e in errors[:5])
        raise ReportWriteError(f"Elasticsearch refused {len(errors)} report document(s): {reasons}")
    return ok
