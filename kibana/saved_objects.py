"""The saved objects kubepulse imports into Kibana: built from ``kibana.catalog``, written as NDJSON, checked.

:func:`build` makes the list of objects for an index prefix (data views,
Lens visualizations, saved searches, dashboards, in dependency order);
:func:`to_ndjson` writes them in the format ``POST /api/saved_objects/_import``
accepts; :func:`check` proves the file is self-contained (every reference
resolves to an object in it, every dashboard panel has its reference).
``kibana/saved_objects.ndjson`` is the packaged output for the default
prefix ``kubepulse``, regenerated with ``kubepulse kibana export``.

Target: Kibana 8.11 and later, including 9.x. The objects are written in the
8.x format (``coreMigrationVersion`` 8.8.0, Lens and dashboards at migration
8.9.0, by-reference panels and the 8.x control group); Kibana migrates them
forward on import, which is the path Kibana itself guarantees for 8.x
exports imported into 9.x.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from kibana import _lens
from kibana._specs import DashboardSpec, Panel, SearchSpec
from kibana.catalog import DASHBOARDS, DATA_VIEW_KINDS, SEARCHES, TIME_FIELD, all_panels
from kibana.errors import SavedObjectsError
from streams._mappings import field_types

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
    "panel_id",
    "search_id",
    "dashboard_id",
    "data_view_title",
]

DEFAULT_PREFIX = "kubepulse"
PACKAGED_FILE = "saved_objects.ndjson"


def data_view_id(prefix: str, kind: str) -> str:
    return _lens.object_id(prefix, "dataview", kind)


def data_view_title(prefix: str, kind: str) -> str:
    """The data view's index pattern: the kind's alias ``<prefix>-<kind>`` (every daily index joins it)."""
    return f"{prefix}-{kind}"


def panel_id(prefix: str, key: str) -> str:
    return _lens.object_id(prefix, "lens", key)


def search_id(prefix: str, key: str) -> str:
    return _lens.object_id(prefix, "search", key)


def dashboard_id(prefix: str, key: str) -> str:
    return _lens.object_id(prefix, "dashboard", key)


def _formats(kind: str) -> dict[str, str]:
    """Field formats from the mappings' naming: ``*.pct`` as percent, byte counts and rates as bytes."""
    out = {}
    for f, t in field_types(kind).items():
        if t in ("keyword", "text", "flattened", "date"):
            continue
        if f.endswith(".pct"):
            out[f] = "percent"
        elif f.endswith((".bytes", ".bytes_per_s")):
            out[f] = "bytes"
    return out


def build(prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]]:
    """Every saved object for indices under ``prefix``, referenced objects before the objects using them."""
    objects: list[dict[str, Any]] = []
    for kind in DATA_VIEW_KINDS:
        objects.append(
            _lens.data_view(
                data_view_id(prefix, kind),
                title=data_view_title(prefix, kind),
                name=f"[kubepulse] {kind}" if prefix == DEFAULT_PREFIX else f"[{prefix}] {kind}",
                time_field=TIME_FIELD,
                formats=_formats(kind),
            )
        )
    for s in SEARCHES:
        objects.append(_lens.search(search_id(prefix, s.key), s, data_view_id=data_view_id(prefix, s.kind)))
    for p in all_panels():
        objects.append(_lens.lens(panel_id(prefix, p.key), p, data_view_id=data_view_id(prefix, p.kind)))
    for d in DASHBOARDS:
        objects.append(_dashboard(prefix, d))
    return objects


def _dashboard(prefix: str, d: DashboardSpec) -> dict[str, Any]:
    refs: list[tuple[str, str]] = []
    for p in d.panels:
        if isinstance(p, Panel):
            refs.append(("lens", panel_id(prefix, p.key)))
        elif isinstance(p, SearchSpec):
            refs.append(("search", search_id(prefix, p.key)))
        else:  # pragma: no cover - the spec types are closed
            raise TypeError(f"unknown panel spec {p!r}")
    return _lens.dashboard(dashboard_id(prefix, d.key), d, panel_refs=refs, control_data_view_id=data_view_id(prefix, d.control_kind))


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
    in the list; every dashboard panel's ``panelRefName`` has its
    ``<panelIndex>:panel_<n>`` reference; every Lens layer has its
    ``indexpattern-datasource-layer-<layerId>`` reference; JSON-string
    attributes parse.
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
                    want = f"{p['panelIndex']}:{p['panelRefName']}"
                    if want not in names:
                        problems.append(f"{where}: panel {p['panelIndex']} has no reference {want}")
                    elif names[want]["type"] != p["type"]:
                        problems.append(f"{where}: panel {p['panelIndex']} is a {p['type']} but its reference is a {names[want]['type']}")
                for cid, c in json.loads(attrs["controlGroupInput"]["panelsJSON"]).items():
                    if f"controlGroup_{cid}:optionsListDataView" not in names:
                        problems.append(f"{where}: control {c['explicitInput']['title']} has no data view reference")
                json.loads(attrs["optionsJSON"])
                json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
            elif o["type"] == "lens":
                for layer in attrs["state"]["datasourceStates"]["formBased"]["layers"]:
                    if f"indexpattern-datasource-layer-{layer}" not in names:
                        problems.append(f"{where}: layer {layer} has no data view reference")
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
