"""Panel specs to Kibana 8.x saved objects: data views, a tag, saved searches and dashboards with Lens by value.

The shapes follow what Kibana 8.x exports (``GET /api/saved_objects/_export``)
and Elastic's own integration packages: Lens panels *by value* (the
visualization's attributes inside the dashboard panel's ``embeddableConfig``,
the ``formBased`` datasource with one layer whose data view reference is
``indexpattern-datasource-layer-<layerId>`` inside the attributes and
``<panelIndex>:indexpattern-datasource-layer-<layerId>`` on the dashboard);
a markdown navigation panel first (a legacy ``visualization`` by value, as the
Kubernetes integration's dashboards have); saved searches by reference
(``<n>:panel_<n>``); controls in ``controlGroupInput`` whose data views are
referenced as ``controlGroup_<controlId>:optionsListDataView``; the tag as
``tag-ref-<tagId>``. Dashboards do not restore a time range
(``timeRestore: false``): they follow the global time picker.

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
    "tag",
    "lens_attributes",
    "search",
    "dashboard",
    "formula_text",
]

CORE_MIGRATION_VERSION = "8.8.0"
"""``coreMigrationVersion`` of every object: the format Kibana 8.8+ writes (and 9.x still reads)."""

TYPE_MIGRATION_VERSIONS = {"index-pattern": "8.0.0", "search": "8.0.0", "lens": "8.9.0", "dashboard": "8.9.0", "tag": "8.0.0"}
"""The 8.x migration each object's shape is written at; Kibana 8.9+ and 9.x migrate forward from here on import."""

PANEL_VERSION = "8.9.0"
_NS = uuid.UUID("6f1f4a8e-2b7c-4c35-9a0e-6b1f0d3c7a52")

_FORMATS: dict[str, dict[str, Any]] = {
    "percent": {"id": "percent", "params": {"decimals": 1}},
    "bytes": {"id": "bytes", "params": {"decimals": 1}},
    "number": {"id": "number", "params": {"decimals": 2}},
    "duration": {"id": "number", "params": {"decimals": 0, "suffix": " s"}},
}
"""Lens column formats: Lens reads ``decimals`` (and ``suffix``)."""

_FIELD_FORMATS: dict[str, dict[str, Any]] = {
    "percent": {"id": "percent", "params": {"pattern": "0,0.[0]%"}},
    "bytes": {"id": "bytes", "params": {"pattern": "0,0.[0]b"}},
    "number": {"id": "number", "params": {"pattern": "0,0.[000]"}},
}
"""Data view field formats: Kibana's field formatters read a numeral.js ``pattern`` (``decimals`` is ignored there)."""

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
    fmt = {f: _FIELD_FORMATS[k] for f, k in sorted(formats.items())}
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
    # Lens falls back to alphabetical order when the first metric is a formula: A to Z, as a reader expects.
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
            "orderDirection": "desc" if order_by else "asc",
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


def lens_attributes(id_: str, p: Panel, *, data_view_id: str) -> dict[str, Any]:
    """The Lens attributes of panel ``p`` on the data view ``data_view_id``: what a by-value panel embeds.

    ``id_`` only seeds the stable layer and column ids. The data view is referenced from ``references``
    as ``indexpattern-datasource-layer-<layerId>``; the dashboard repeats it with the panel's prefix.
    """
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
    refs = [{"type": "index-pattern", "id": data_view_id, "name": f"indexpattern-datasource-layer-{layer}"}]
    return {"title": p.title, "description": p.description, "visualizationType": vis_type, "type": "lens", "state": state, "references": refs}


def tag(id_: str, *, name: str, description: str, color: str) -> dict[str, Any]:
    """A saved-objects tag: dashboards and searches that carry it are found together (Stack Management, search bar)."""
    return _envelope("tag", id_, {"name": name, "description": description, "color": color}, [])


# ----------------------------------------------------------------- searches


def search(id_: str, s: SearchSpec, *, data_view_id: str, tag_id: str) -> dict[str, Any]:
    """A saved Discover search (newest first), tagged ``tag_id``."""
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
    refs = [
        {"type": "index-pattern", "id": data_view_id, "name": "kibanaSavedObjectMeta.searchSourceJSON.index"},
        {"type": "tag", "id": tag_id, "name": f"tag-ref-{tag_id}"},
    ]
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


NAV_HEIGHT = 3


def _markdown_panel(index: str, markdown: str) -> dict[str, Any]:
    return {
        "type": "visualization",
        "panelIndex": index,
        "embeddableConfig": {
            "savedVis": {
                "title": "",
                "description": "",
                "type": "markdown",
                "params": {"fontSize": 12, "openLinksInNewTab": False, "markdown": markdown},
                "uiState": {},
                "data": {"aggs": [], "searchSource": {"query": {"query": "", "language": "kuery"}, "filter": []}},
            },
            "hidePanelTitles": True,
            "enhancements": {},
        },
        "title": "kubepulse dashboards",
    }


def dashboard(
    id_: str,
    d: DashboardSpec,
    *,
    navigation: str,
    data_view_ids: dict[str, str],
    search_ids: dict[str, str],
    control_data_view_id: str,
    tag_id: str,
) -> dict[str, Any]:
    """A dashboard: the ``navigation`` markdown first, then Lens panels by value and saved searches by reference.

    ``data_view_ids`` maps an index kind to its data view's id, ``search_ids`` a search key to its saved
    search's id; the controls (cluster, namespace) read the data view ``control_data_view_id``.
    """
    sizes = [(48, NAV_HEIGHT)] + [(p.w, p.h) if isinstance(p, Panel) else (48, 15) for p in d.panels]
    panels: list[dict[str, Any]] = []
    refs: list[dict[str, str]] = [{"type": "tag", "id": tag_id, "name": f"tag-ref-{tag_id}"}]
    for n, (spec, (x, y), (w, h)) in enumerate(zip((None, *d.panels), _layout(sizes), sizes), start=1):
        index = str(n)
        if spec is None:
            panel = _markdown_panel(index, navigation)
        elif isinstance(spec, Panel):
            attributes = lens_attributes(f"{id_}/{spec.key}", spec, data_view_id=data_view_ids[spec.kind])
            panel = {"type": "lens", "panelIndex": index, "embeddableConfig": {"attributes": attributes, "enhancements": {}}, "title": spec.title}
            refs += [{**r, "name": f"{index}:{r['name']}"} for r in attributes["references"]]
        else:
            panel = {"type": "search", "panelIndex": index, "embeddableConfig": {"enhancements": {}}, "panelRefName": f"panel_{index}"}
            refs.append({"type": "search", "id": search_ids[spec.key], "name": f"{index}:panel_{index}"})
        panel["version"] = PANEL_VERSION
        panel["gridData"] = {"x": x, "y": y, "w": w, "h": h, "i": index}
        panels.append(panel)
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
        # No time range or refresh of its own: the dashboard shows what the global time picker says.
        "timeRestore": False,
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
