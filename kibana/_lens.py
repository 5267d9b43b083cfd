"""Panel specs to Kibana 8.x saved objects: Lens visualizations, data views, saved searches and dashboards.

The shapes follow what Kibana 8.x exports (``GET /api/saved_objects/_export``):
Lens by reference with the ``formBased`` datasource and one layer referencing
its data view as ``indexpattern-datasource-layer-<layerId>``; dashboards with
``panelsJSON`` panels named ``panel_<n>`` whose references are
``<n>:panel_<n>`` (Kibana's per-panel prefix), and controls in
``controlGroupInput`` whose data views are referenced as
``controlGroup_<controlId>:optionsListDataView``.

Ids are stable (uuid5 of the index prefix and the spec's key), so a re-import
overwrites the same objects and a diff of the NDJSON shows what changed.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from kibana._specs import (
    Agg,
    Bin,
    DashboardSpec,
    DateHistogram,
    Expr,
    Formula,
    Metric,
    Panel,
    SearchSpec,
    Terms,
    kql,
)

__all__ = [
    "CORE_MIGRATION_VERSION",
    "TYPE_MIGRATION_VERSIONS",
    "object_id",
    "data_view",
    "lens",
    "search",
    "dashboard",
    "formula_text",
]

CORE_MIGRATION_VERSION = "8.8.0"
"""``coreMigrationVersion`` of every object: the format Kibana 8.8+ writes (and 9.x still reads)."""

TYPE_MIGRATION_VERSIONS = {"index-pattern": "8.0.0", "search": "8.0.0", "lens": "8.9.0", "dashboard": "8.9.0"}
"""The 8.x migration each object's shape is written at; Kibana 8.9+ and 9.x migrate forward from here on import."""

PANEL_VERSION = "8.9.0"
_NS = uuid.UUID("6f1f4a8e-2b7c-4c35-9a0e-6b1f0d3c7a52")

_FORMATS: dict[str, dict[str, Any]] = {
    "percent": {"id": "percent", "params": {"decimals": 1}},
    "bytes": {"id": "bytes", "params": {"decimals": 1}},
    "number": {"id": "number", "params": {"decimals": 2}},
    "duration": {"id": "number", "params": {"decimals": 0, "suffix": " s"}},
}

def object_id(prefix: str, kind: str, key: str) -> str:
    """A readable, stable id: ``<prefix>-<kind>-<key>`` (e.g. ``kubepulse-dashboard-fleet-overview``)."""
    return f"{prefix}-{kind}-{key}"


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


def _envelope(type_: str, id_: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "id": id_,
        "type": type_,
        "attributes": attributes,
        "references": references,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": TYPE_MIGRATION_VERSIONS[type_],
        "managed": False,
    }


# ----------------------------------------------------------------- data views


def data_view(id_: str, *, title: str, name: str, time_field: str, formats: dict[str, str]) -> dict[str, Any]:
    """An ``index-pattern`` saved object on ``title`` (an alias or pattern), with field formats."""
    fmt = {f: _FORMATS[k] for f, k in sorted(formats.items())}
    return _envelope(
        "index-pattern",
        id_,
        {
            "title": title,
            "name": name,
            "timeFieldName": time_field,
            # Empty: Kibana reads the fields from the mappings (field_caps) when the view is used.
            "fields": "[]",
            "fieldFormatMap": json.dumps(fmt, sort_keys=True),
            "fieldAttrs": "{}",
            "runtimeFieldMap": "{}",
            "sourceFilters": "[]",
            "typeMeta": "{}",
        },
        [],
    )


# ----------------------------------------------------------------- formulas


def formula_text(e: Expr) -> str:
    """The formula as Lens shows it in the editor.

    >>> formula_text(Bin("divide", Bin("divide", Agg("sum", "a"), 1e9), Agg("sum", "b")))
    '(sum(a) / 1000000000) / sum(b)'
    """
    return _render(e, [], 0)[0]


_SYMBOL = {"divide": "/", "multiply": "*", "add": "+", "subtract": "-"}


def _num(v: float | int) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _render(e: Expr, leaves: list[Agg], start: int) -> tuple[str, Any]:
    """(text, tinymath AST) of ``e`` written from offset ``start``; leaves are collected in order."""
    if isinstance(e, Agg):
        leaves.append(e)
        return f"{e.op}({e.field or ''})", len(leaves) - 1
    if isinstance(e, (int, float)):
        return _num(e), float(e) if not float(e).is_integer() else int(e)
    parts = []
    pos = start
    asts = []
    for i, side in enumerate((e.left, e.right)):
        if i == 1:
            sep = f" {_SYMBOL[e.op]} "
            parts.append(sep)
            pos += len(sep)
        nested = isinstance(side, Bin)
        if nested:
            parts.append("(")
            pos += 1
        text, ast = _render(side, leaves, pos)
        parts.append(text)
        pos += len(text)
        if nested:
            parts.append(")")
            pos += 1
        asts.append(ast)
    text = "".join(parts)
    return text, {"type": "function", "name": e.op, "args": asts, "location": {"min": start, "max": start + len(text)}, "text": text}


def _formula_columns(col: str, f: Formula) -> tuple[dict[str, dict[str, Any]], list[str]]:
    leaves: list[Agg] = []
    text, ast = _render(f.expr, leaves, 0)
    ids = [f"{col}X{i}" for i in range(len(leaves))]
    math_id = f"{col}X{len(leaves)}"
    ast = _swap_leaves(f.expr, ast, ids)
    part = f"Part of {f.label}"
    cols: dict[str, dict[str, Any]] = {}
    for cid, leaf in zip(ids, leaves):
        cols[cid] = {
            "label": part,
            "dataType": "number",
            "operationType": leaf.op,
            "sourceField": leaf.field or "___records___",
            "isBucketed": False,
            "scale": "ratio",
            "params": {"emptyAsNull": False},
            "customLabel": True,
        }
    if isinstance(ast, dict):
        cols[math_id] = {
            "label": part,
            "dataType": "number",
            "operationType": "math",
            "isBucketed": False,
            "scale": "ratio",
            "params": {"tinymathAst": ast},
            "references": ids,
            "customLabel": True,
        }
        ref = math_id
    else:
        ref = ids[0]
    params: dict[str, Any] = {"formula": text, "isFormulaBroken": False}
    if f.fmt:
        params["format"] = _FORMATS[f.fmt]
    cols[col] = {
        "label": f.label,
        "dataType": "number",
        "operationType": "formula",
        "isBucketed": False,
        "scale": "ratio",
        "params": params,
        "references": [ref],
        "customLabel": True,
    }
    return cols, [col, *ids, *([math_id] if isinstance(ast, dict) else [])]


def _swap_leaves(expr: Expr, ast: Any, ids: list[str]) -> Any:
    """Replace leaf positions in the AST by column ids, walking the expression alongside."""
    it = iter(ids)

    def walk(e: Expr, node: Any) -> Any:
        if isinstance(e, Agg):
            return next(it)
        if isinstance(e, Bin):
            return {**node, "args": [walk(e.left, node["args"][0]), walk(e.right, node["args"][1])]}
        return node

    return walk(expr, ast)


# ----------------------------------------------------------------- lens


def _metric_column(m: Metric) -> dict[str, Any]:
    params: dict[str, Any] = {"emptyAsNull": True}
    if m.fmt:
        params["format"] = _FORMATS[m.fmt]
    col: dict[str, Any] = {
        "label": m.label,
        "dataType": "number",
        "operationType": m.op,
        "sourceField": m.field or "___records___",
        "isBucketed": False,
        "scale": "ratio",
        "params": params,
        "customLabel": True,
    }
    if m.where:
        col["filter"] = {"language": "kuery", "query": kql(m.where)}
    return col


def _bucket_column(b: DateHistogram | Terms, order_by: str | None) -> dict[str, Any]:
    if isinstance(b, DateHistogram):
        return {
            "label": b.field,
            "dataType": "date",
            "operationType": "date_histogram",
            "sourceField": b.field,
            "isBucketed": True,
            "scale": "interval",
            "params": {"interval": b.interval, "includeEmptyRows": True, "dropPartials": False},
        }
    order = {"type": "column", "columnId": order_by} if order_by else {"type": "alphabetical", "fallback": True}
    return {
        "label": b.label or f"Top {b.size} values of {b.field}",
        "dataType": "string",
        "operationType": "terms",
        "sourceField": b.field,
        "isBucketed": True,
        "scale": "ordinal",
        "params": {
            "size": b.size,
            "orderBy": order,
            "orderDirection": "desc",
            "otherBucket": True,
            "missingBucket": False,
            "parentFormat": {"id": "terms"},
            "include": [],
            "exclude": [],
            "includeIsRegex": False,
            "excludeIsRegex": False,
        },
        "customLabel": b.label is not None,
    }


def _visualization(p: Panel, layer: str, buckets: list[str], metrics: list[str]) -> tuple[str, dict[str, Any]]:
    if p.chart == "metric":
        vis: dict[str, Any] = {"layerId": layer, "layerType": "data", "metricAccessor": metrics[0]}
        if buckets:
            vis["breakdownByAccessor"] = buckets[0]
        return "lnsMetric", vis
    if p.chart == "table":
        cols = [{"columnId": c, "isTransposed": False} for c in buckets + metrics]
        return "lnsDatatable", {"layerId": layer, "layerType": "data", "columns": cols}
    if p.chart == "pie":
        return "lnsPie", {
            "shape": "donut",
            "layers": [
                {
                    "layerId": layer,
                    "layerType": "data",
                    "primaryGroups": buckets,
                    "metrics": metrics,
                    "numberDisplay": "percent",
                    "categoryDisplay": "default",
                    "legendDisplay": "default",
                    "nestedLegend": False,
                }
            ],
        }
    series = p.chart
    x_col = buckets[-1] if p.x is not None else None
    split_col = buckets[0] if p.split is not None else None
    data_layer: dict[str, Any] = {
        "layerId": layer,
        "layerType": "data",
        "seriesType": series,
        "accessors": metrics,
        "position": "top",
        "showGridlines": False,
    }
    if x_col:
        data_layer["xAccessor"] = x_col
    if split_col:
        data_layer["splitAccessor"] = split_col
        data_layer["palette"] = {"type": "palette", "name": "default"}
    return "lnsXY", {
        "legend": {"isVisible": True, "position": "right"},
        "valueLabels": "hide",
        "fittingFunction": "None",
        "preferredSeriesType": series,
        "axisTitlesVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
        "layers": [data_layer],
    }


def lens(id_: str, p: Panel, *, data_view_id: str) -> dict[str, Any]:
    """A Lens saved object (by reference) for panel ``p`` on the data view ``data_view_id``."""
    layer = _uid(id_, "layer")
    columns: dict[str, dict[str, Any]] = {}
    metric_ids: list[str] = []
    order: list[str] = []
    for i, m in enumerate(p.metrics):
        cid = _uid(id_, "metric", str(i))
        if isinstance(m, Formula):
            cols, ids = _formula_columns(cid, m)
            columns.update(cols)
            order += ids
        else:
            columns[cid] = _metric_column(m)
            order.append(cid)
        metric_ids.append(cid)
    # Terms are ordered by the first metric unless that is a formula (Lens cannot sort by one).
    order_by = metric_ids[0] if isinstance(p.metrics[0], Metric) else None
    bucket_ids: list[str] = []
    for j, b in enumerate(p.buckets()):
        cid = _uid(id_, "bucket", str(j))
        columns[cid] = _bucket_column(b, order_by)
        bucket_ids.append(cid)
    vis_type, vis = _visualization(p, layer, bucket_ids, metric_ids)
    state = {
        "datasourceStates": {
            "formBased": {"layers": {layer: {"columns": columns, "columnOrder": bucket_ids + order, "incompleteColumns": {}, "sampling": 1}}},
        },
        "visualization": vis,
        "query": {"language": "kuery", "query": kql(p.where)},
        "filters": [],
        "internalReferences": [],
        "adHocDataViews": {},
    }
    attributes = {"title": p.title, "description": p.description, "visualizationType": vis_type, "state": state}
    refs = [{"type": "index-pattern", "id": data_view_id, "name": f"indexpattern-datasource-layer-{layer}"}]
    return _envelope("lens", id_, attributes, refs)


# ----------------------------------------------------------------- searches


def search(id_: str, s: SearchSpec, *, data_view_id: str) -> dict[str, Any]:
    """A saved Discover search (newest first)."""
    source = {
        "query": {"language": "kuery", "query": kql(s.where)},
        "filter": [],
        "highlightAll": True,
        "version": True,
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
    }
    attributes = {
        "title": s.title,
        "description": s.description,
        "columns": list(s.columns),
        "sort": [["@timestamp", "desc"]],
        "grid": {},
        "hideChart": False,
        "isTextBasedQuery": False,
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source)},
    }
    refs = [{"type": "index-pattern", "id": data_view_id, "name": "kibanaSavedObjectMeta.searchSourceJSON.index"}]
    return _envelope("search", id_, attributes, refs)


# ----------------------------------------------------------------- dashboards


def _layout(items: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Flow panels of (w, h) left to right on Kibana's 48-column grid; returns (x, y) per panel."""
    out, x, y, row_h = [], 0, 0, 0
    for w, h in items:
        if x + w > 48:
            x, y, row_h = 0, y + row_h, 0
        out.append((x, y))
        x += w
        row_h = max(row_h, h)
    return out


def dashboard(
    id_: str,
    d: DashboardSpec,
    *,
    panel_refs: list[tuple[str, str]],
    control_data_view_id: str,
) -> dict[str, Any]:
    """A dashboard of by-reference panels (``panel_refs``: (type, id) per spec panel) with cluster/namespace controls."""
    sizes = [(p.w, p.h) if isinstance(p, Panel) else (48, 15) for p in d.panels]
    panels, refs = [], []
    for n, ((type_, ref_id), (x, y), (w, h)) in enumerate(zip(panel_refs, _layout(sizes), sizes), start=1):
        index = str(n)
        panels.append(
            {
                "version": PANEL_VERSION,
                "type": type_,
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": index},
                "panelIndex": index,
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{index}",
            }
        )
        refs.append({"type": type_, "id": ref_id, "name": f"{index}:panel_{index}"})
    controls = {}
    for order, (field, title) in enumerate(d.controls):
        cid = _uid(id_, "control", field)
        controls[cid] = {
            "order": order,
            "width": "medium",
            "grow": True,
            "type": "optionsListControl",
            "explicitInput": {
                "id": cid,
                "fieldName": field,
                "title": title,
                "selectedOptions": [],
                "searchTechnique": "prefix",
                "sort": {"by": "_count", "direction": "desc"},
                "enhancements": {},
            },
        }
        refs.append({"type": "index-pattern", "id": control_data_view_id, "name": f"controlGroup_{cid}:optionsListDataView"})
    attributes = {
        "title": d.title,
        "description": d.description,
        "version": 1,
        "timeRestore": True,
        "timeFrom": d.time_from,
        "timeTo": "now",
        "refreshInterval": {"pause": False, "value": d.refresh_ms},
        "panelsJSON": json.dumps(panels),
        "optionsJSON": json.dumps({"useMargins": True, "syncColors": False, "syncCursor": True, "syncTooltips": False, "hidePanelTitles": False}),
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"}, "filter": []})},
        "controlGroupInput": {
            "controlStyle": "oneLine",
            # Hierarchical: the namespace list only offers namespaces of the chosen cluster.
            "chainingSystem": "HIERARCHICAL",
            "panelsJSON": json.dumps(controls),
            "ignoreParentSettingsJSON": json.dumps(
                {"ignoreFilters": False, "ignoreQuery": False, "ignoreTimerange": False, "ignoreValidations": False}
            ),
        },
    }
    return _envelope("dashboard", id_, attributes, refs)

