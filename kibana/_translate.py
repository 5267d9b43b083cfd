"""Panel specs to Elasticsearch search bodies: the aggregations Lens sends for a panel, so they can be run without Kibana.

The translation follows what Lens' ``esaggs`` does for each column type:
terms -> ``terms`` (ordered by the first metric, like Lens), date
histogram -> ``date_histogram``, average/sum/max/min -> the same metric,
unique count -> ``cardinality``, count -> the bucket's ``doc_count``, a
formula -> its leaves (Kibana does the arithmetic, so does :func:`rows`), a column filter -> a
``filter`` aggregation. Panels without buckets are wrapped in one
``filters`` bucket, so every result reads the same way: :func:`rows` flattens the
response into one dict per innermost bucket.
"""

from __future__ import annotations

from typing import Any

from kibana._specs import Agg, Bin, DateHistogram, Expr, Formula, Metric, Panel, SearchSpec, Terms, dsl

__all__ = ["search_body", "saved_search_body", "rows"]

_ES_OP = {"average": "avg", "sum": "sum", "max": "max", "min": "min", "unique_count": "cardinality"}


def _time_range(field: str, start: str, end: str) -> dict[str, Any]:
    return {"range": {field: {"gte": start, "lte": end}}}


def _leaf_agg(a: Agg) -> dict[str, Any] | None:
    if a.op == "count":
        return None
    return {_ES_OP[a.op]: {"field": a.field}}


def _formula_leaves(name: str, e: Expr) -> list[tuple[str, Agg]]:
    """The formula's aggregation leaves in order, named ``<name>_v<i>``."""
    out: list[tuple[str, Agg]] = []

    def walk(x: Expr) -> None:
        if isinstance(x, Agg):
            out.append((f"{name}_v{len(out)}", x))
        elif isinstance(x, Bin):
            walk(x.left)
            walk(x.right)

    walk(e)
    return out


def _evaluate(e: Expr, values: list[float | None]) -> float | None:
    """Lens' math column, computed in Kibana (not Elasticsearch) from the leaves' values; None on a gap or 0 divisor."""
    it = iter(values)

    def walk(x: Expr) -> float | None:
        if isinstance(x, Agg):
            return next(it)
        if isinstance(x, Bin):
            a, b = walk(x.left), walk(x.right)
            if a is None or b is None:
                return None
            if x.op == "divide":
                return None if b == 0 else a / b
            return a * b if x.op == "multiply" else a + b if x.op == "add" else a - b
        return float(x)

    return walk(e)


def _metric_aggs(panel: Panel) -> dict[str, Any]:
    aggs: dict[str, Any] = {}
    for i, m in enumerate(panel.metrics):
        name = f"m{i}"
        if isinstance(m, Formula):
            # Lens fetches a formula's leaves and does the arithmetic itself (tinymath in Kibana).
            for leaf_name, leaf in _formula_leaves(name, m.expr):
                body = _leaf_agg(leaf)
                if body is not None:
                    aggs[leaf_name] = body
        elif m.where:
            inner = {} if m.op == "count" else {"value": {_ES_OP[m.op]: {"field": m.field}}}
            aggs[name] = {"filter": {"bool": {"filter": dsl(m.where)}}, **({"aggs": inner} if inner else {})}
        elif m.op != "count":
            aggs[name] = {_ES_OP[m.op]: {"field": m.field}}
    return aggs


def _bucket_agg(b: DateHistogram | Terms, order_metric: str | None) -> dict[str, Any]:
    if isinstance(b, DateHistogram):
        # Lens' "auto" interval depends on the screen; a fixed one keeps the check deterministic.
        interval = "1m" if b.interval == "auto" else b.interval
        return {"date_histogram": {"field": b.field, "fixed_interval": interval, "min_doc_count": 1}}
    body: dict[str, Any] = {"field": b.field, "size": b.size}
    # Like Lens: by the first metric, else (a formula first) alphabetically.
    body["order"] = {order_metric: "desc"} if order_metric else {"_key": "asc"}
    return {"terms": body}


def search_body(panel: Panel, *, start: str = "now-1h", end: str = "now") -> dict[str, Any]:
    """The search body (``size: 0``) Lens would send for ``panel`` over ``[start, end]``."""
    filters = [_time_range("@timestamp", start, end), *dsl(panel.where)]
    first = panel.metrics[0]
    order = None
    if isinstance(first, Metric):
        if first.where:
            order = "m0" if first.op == "count" else "m0>value"
        else:
            order = "_count" if first.op == "count" else "m0"
    aggs: dict[str, Any] = _metric_aggs(panel)
    buckets = panel.buckets()
    if not buckets:
        aggs = {"all": {"filters": {"filters": {"all": {"match_all": {}}}}, "aggs": aggs}}
    else:
        metric_aggs = aggs
        for depth in range(len(buckets) - 1, -1, -1):
            body = _bucket_agg(buckets[depth], order)
            if aggs:
                body["aggs"] = aggs
            # Every level carries the metrics too, as Lens does: an outer terms is ordered by them.
            aggs = {f"b{depth}": body, **(metric_aggs if depth else {})}
    return {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": filters}}, "aggs": aggs}


def saved_search_body(s: SearchSpec, *, start: str = "now-1h", end: str = "now", size: int = 20) -> dict[str, Any]:
    """The Discover query of a saved search: its filter, newest first, its columns as fields."""
    return {
        "size": size,
        "query": {"bool": {"filter": [_time_range("@timestamp", start, end), *dsl(s.where)]}},
        "sort": [{"@timestamp": "desc"}],
        "fields": list(s.columns),
        "_source": False,
    }


def _value(agg: dict[str, Any] | None) -> Any:
    """A metric's value: ``{"value": x}``, a filtered metric ``{"doc_count": n, "value": {"value": x}}``, a filtered count."""
    if agg is None:
        return None
    if "value" in agg:
        v = agg["value"]
        return v["value"] if isinstance(v, dict) else v
    return agg.get("doc_count")


def rows(panel: Panel, response: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per innermost bucket: the bucket keys (by field) and each metric's value (by label)."""
    out: list[dict[str, Any]] = []
    buckets = panel.buckets()

    def metrics_of(bucket: dict[str, Any]) -> dict[str, Any]:
        vals: dict[str, Any] = {}
        for i, m in enumerate(panel.metrics):
            if isinstance(m, Formula):
                leaves = _formula_leaves(f"m{i}", m.expr)
                got = [bucket["doc_count"] if a.op == "count" else _value(bucket.get(n)) for n, a in leaves]
                vals[m.label] = _evaluate(m.expr, got)
            elif isinstance(m, Metric) and m.op == "count" and not m.where:
                vals[m.label] = bucket["doc_count"]
            else:
                vals[m.label] = _value(bucket.get(f"m{i}"))
        return vals

    def walk(node: dict[str, Any], depth: int, keys: dict[str, Any]) -> None:
        if depth == len(buckets):
            out.append({**keys, **metrics_of(node)})
            return
        for b in node[f"b{depth}"]["buckets"]:
            walk(b, depth + 1, {**keys, buckets[depth].field: b.get("key_as_string", b["key"])})

    aggs = response["aggregations"]
    if not buckets:
        out.append(metrics_of(aggs["all"]["buckets"]["all"]))
    else:
        walk(aggs, 0, {})
    return out

