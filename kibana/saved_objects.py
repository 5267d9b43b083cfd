"""The saved objects kubepulse imports into Kibana: built from ``kibana.catalog``, written as NDJSON, checked.

:func:`build` makes the list of objects for an index prefix (data views,
the kubepulse tag, saved searches, dashboards with their Lens panels by
value, in dependency order);
:func:`to_ndjson` writes them in the format ``POST /api/saved_objects/_import``
accepts; :func:`check` proves the file is self-contained (every reference
resolves to an object in it, every dashboard panel has its reference).
``kibana/saved_objects.ndjson`` is the packaged output for the default
prefix ``kubepulse``, regenerated with ``kubepulse kibana export``.

Target: Kibana 8.11 and later, including 9.x. The objects are written in the
8.x format (``coreMigrationVersion`` 8.8.0, dashboards at migration 8.9.0,
Lens by value and the 8.x control group); Kibana migrates them forward on
import, which is the path Kibana itself guarantees for 8.x exports imported
into 9.x.

Only the index contract (``streams.index``) is read from the rest of
kubepulse: the field types the formats and the checks use.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from kibana import _lens
from kibana._specs import DashboardSpec
from kibana.catalog import DASHBOARDS, DATA_VIEW_KINDS, SEARCHES, TIME_FIELD
from kibana.errors import SavedObjectsError
from streams.index import ROLLUP_STATS, field_types, record_kind

__all__ = [
    "DEFAULT_PREFIX",
    "PACKAGED_FILE",
    "build",
    "to_ndjson",
    "parse_ndjson",
    "packaged",
    "objects_for",
    "check",
    "data_view_id",
    "tag_id",
    "search_id",
    "dashboard_id",
    "data_view_title",
    "navigation_markdown",
]

DEFAULT_PREFIX = "kubepulse"
PACKAGED_FILE = "saved_objects.ndjson"


def data_view_id(prefix: str, kind: str) -> str:
    return _lens.object_id(prefix, "dataview", kind)


def data_view_title(prefix: str, kind: str) -> str:
    """The data view's index pattern: the kind's alias ``<prefix>-<kind>`` (every daily index joins it)."""
    return f"{prefix}-{kind}"


def tag_id(prefix: str) -> str:
    return _lens.object_id(prefix, "tag", "kubepulse")


def search_id(prefix: str, key: str) -> str:
    return _lens.object_id(prefix, "search", key)


def dashboard_id(prefix: str, key: str) -> str:
    return _lens.object_id(prefix, "dashboard", key)


_STAT_LEAVES = frozenset(leaf for leaf, _ in ROLLUP_STATS)


def _formats(kind: str) -> dict[str, str]:
    """Field formats from the mappings' naming: shares (``*.pct``, ``*_share``) as percent, byte counts and rates as bytes.

    A rollup statistic (``kubernetes.pod.memory_working_set_bytes.max``) is formatted as its metric; its
    ``count`` is a plain number.
    """
    out = {}
    for f, t in field_types(kind).items():
        if t in ("keyword", "text", "flattened", "date"):
            continue
        name = f
        if record_kind(kind) == "rollups":
            name, _, leaf = f.rpartition(".")
            if leaf not in _STAT_LEAVES:
                continue
        if name.endswith((".pct", "_share")):
            out[f] = "percent"
        elif name.endswith((".bytes", ".bytes_per_s", "_bytes", "_bytes_per_s")):
            out[f] = "bytes"
    return out


def navigation_markdown(prefix: str, current: str) -> str:
    """The navigation panel of dashboard ``current``: a link to every other kubepulse dashboard, itself in bold.

    Links are relative to the dashboards app (``#/view/<id>``), so they work in any Kibana space.
    """
    parts = []
    for d in DASHBOARDS:
        name = d.nav_title or d.title.removeprefix("[kubepulse] ")
        parts.append(f"**{name}**" if d.key == current else f"[{name}](#/view/{dashboard_id(prefix, d.key)})")
    return " · ".join(parts)


def build(prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]]:
    """Every saved object for indices under ``prefix``, referenced objects before the objects using them."""
    objects: list[dict[str, Any]] = []
    views = {kind: data_view_id(prefix, kind) for kind in DATA_VIEW_KINDS}
    for kind in DATA_VIEW_KINDS:
        objects.append(
            _lens.data_view(
                views[kind],
                title=data_view_title(prefix, kind),
                name=f"[kubepulse] {kind}" if prefix == DEFAULT_PREFIX else f"[{prefix}] {kind}",
                time_field=TIME_FIELD,
                formats=_formats(kind),
            )
        )
    tag = tag_id(prefix)
    objects.append(_lens.tag(tag, name="kubepulse", description="Dashboards and searches provisioned by kubepulse", color="#0B64DD"))
    searches = {s.key: search_id(prefix, s.key) for s in SEARCHES}
    for s in SEARCHES:
        objects.append(_lens.search(searches[s.key], s, data_view_id=views[s.kind], tag_id=tag))
    for d in DASHBOARDS:
        objects.append(_dashboard(prefix, d, views, searches, tag))
    return objects


def _dashboard(prefix: str, d: DashboardSpec, views: dict[str, str], searches: dict[str, str], tag: str) -> dict[str, Any]:
    return _lens.dashboard(
        dashboard_id(prefix, d.key),
        d,
        navigation=navigation_markdown(prefix, d.key),
        data_view_ids=views,
        search_ids=searches,
        control_data_view_id=views[d.control_kind],
        tag_id=tag,
    )


def to_ndjson(objects: Iterable[dict[str, Any]]) -> str:
    """One JSON object per line, keys sorted (so the packaged file diffs cleanly), newline-terminated."""
    return "".join(json.dumps(o, sort_keys=True, separators=(",", ":")) + "\n" for o in objects)


def parse_ndjson(text: str) -> list[dict[str, Any]]:
    """Objects of an NDJSON file; a line that is not a JSON object with id/type/attributes is an error."""
    out, problems = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: not JSON ({exc})")
            continue
        if not isinstance(obj, dict) or not {"id", "type", "attributes"} <= obj.keys():
            problems.append(f"line {n}: not a saved object (needs id, type and attributes)")
            continue
        out.append(obj)
    if problems:
        raise SavedObjectsError(problems)
    return out


def packaged() -> str:
    """The NDJSON shipped inside the package (for the default prefix)."""
    return resources.files("kibana").joinpath(PACKAGED_FILE).read_text(encoding="utf-8")


def objects_for(prefix: str, *, file: Path | None = None) -> list[dict[str, Any]]:
    """What to import: ``file`` if given, the packaged NDJSON for the default prefix, else built for ``prefix``."""
    if file is not None:
        objects = parse_ndjson(file.read_text(encoding="utf-8"))
    elif prefix == DEFAULT_PREFIX:
        objects = parse_ndjson(packaged())
    else:
        objects = build(prefix)
    check(objects)
    return objects


def check(objects: list[dict[str, Any]]) -> None:
    """Raise :class:`SavedObjectsError` unless the objects are self-contained and well formed.

    Checks: ids unique per type; every reference names an object of that type
    in the list; every by-reference dashboard panel's ``panelRefName`` has its
    ``<panelIndex>:panel_<n>`` reference; every by-value Lens panel's layer has its
    ``indexpattern-datasource-layer-<layerId>`` reference in the panel and, prefixed
    with the panel index, on the dashboard (Kibana resolves it from there);
    JSON-string attributes parse.
    """
    problems: list[str] = []
    have: set[tuple[str, str]] = set()
    for o in objects:
        key = (o["type"], o["id"])
        if key in have:
            problems.append(f"{o['type']} {o['id']}: defined twice")
        have.add(key)
    for o in objects:
        where = f"{o['type']} {o['id']}"
        names = {}
        for r in o.get("references", []):
            if (r["type"], r["id"]) not in have:
                problems.append(f"{where}: reference {r['name']} -> {r['type']} {r['id']} is not in the file")
            if r["name"] in names:
                problems.append(f"{where}: reference name {r['name']} used twice")
            names[r["name"]] = r
        attrs = o["attributes"]
        try:
            if o["type"] == "dashboard":
                for p in json.loads(attrs["panelsJSON"]):
                    problems += _panel_problems(where, p, names)
                for cid, c in json.loads(attrs["controlGroupInput"]["panelsJSON"]).items():
                    if f"controlGroup_{cid}:optionsListDataView" not in names:
                        problems.append(f"{where}: control {c['explicitInput']['title']} has no data view reference")
                json.loads(attrs["optionsJSON"])
                json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
            elif o["type"] == "search":
                src = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
                if src.get("indexRefName") not in names:
                    problems.append(f"{where}: its data view reference {src.get('indexRefName')} is missing")
            elif o["type"] == "index-pattern":
                for k in ("fieldFormatMap", "fields", "runtimeFieldMap", "fieldAttrs", "sourceFilters"):
                    json.loads(attrs[k])
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            problems.append(f"{where}: malformed ({type(exc).__name__}: {exc})")
    if problems:
        raise SavedObjectsError(problems)


def _panel_problems(where: str, p: dict[str, Any], names: dict[str, dict[str, str]]) -> list[str]:
    """What is wrong with one dashboard panel's references (by reference: ``panelRefName``; by value: its layers)."""
    out = []
    index = p["panelIndex"]
    if "panelRefName" in p:
        want = f"{index}:{p['panelRefName']}"
        if want not in names:
            out.append(f"{where}: panel {index} has no reference {want}")
        elif names[want]["type"] != p["type"]:
            out.append(f"{where}: panel {index} is a {p['type']} but its reference is a {names[want]['type']}")
    elif p["type"] == "lens":
        attrs = p["embeddableConfig"]["attributes"]
        inner = {r["name"]: r for r in attrs["references"]}
        for layer in attrs["state"]["datasourceStates"]["formBased"]["layers"]:
            ref = f"indexpattern-datasource-layer-{layer}"
            if ref not in inner:
                out.append(f"{where}: panel {index} layer {layer} has no data view reference")
            elif names.get(f"{index}:{ref}", {}).get("id") != inner[ref]["id"]:
                out.append(f"{where}: panel {index} layer {layer}: the dashboard has no reference {index}:{ref} to {inner[ref]['id']}")
    elif p["type"] != "visualization" or "savedVis" not in p["embeddableConfig"]:
        out.append(f"{where}: panel {index} is neither by reference nor a known by-value panel")
    return out
