"""The saved objects: self-contained, in Kibana's import format, and every field they use mapped and aggregatable."""

from __future__ import annotations

import json

import pytest

from kibana import DEFAULT_PREFIX, SavedObjectsError, build, check, packaged, parse_ndjson, to_ndjson
from kibana._specs import AtLeast, Exists, Is, Metric, Not, Panel, Terms, DateHistogram, kql
from kibana._translate import _evaluate, search_body
from kibana.catalog import DASHBOARDS, DATA_VIEW_KINDS, SEARCHES, STORAGE_FORECAST_RULES, all_panels
from models.settings import load_settings
from streams.index import INDEX_KINDS, alias_name, field_types

OBJECTS = build(DEFAULT_PREFIX)
BY_ID = {(o["type"], o["id"]): o for o in OBJECTS}
AGGREGATABLE = {"keyword", "long", "integer", "short", "float", "double", "date", "boolean"}


def _panels(dashboard_id: str) -> list[dict]:
    return json.loads(BY_ID[("dashboard", dashboard_id)]["attributes"]["panelsJSON"])


def _lens(dashboard_id: str, title: str) -> dict:
    """The by-value Lens attributes of the panel titled ``title`` on a dashboard."""
    (panel,) = [p for p in _panels(dashboard_id) if p.get("title") == title and p["type"] == "lens"]
    return panel["embeddableConfig"]["attributes"]


def test_packaged_ndjson_is_exactly_what_the_builder_emits() -> None:
    # Regenerate with `kubepulse kibana export kibana/saved_objects.ndjson` after changing kibana/catalog.py.
    assert packaged() == to_ndjson(OBJECTS)


def test_every_line_is_an_importable_saved_object_with_8x_migration_versions() -> None:
    lines = packaged().splitlines()
    assert len(lines) == len(OBJECTS) == len(BY_ID)
    for line in lines:
        o = json.loads(line)
        assert set(o) >= {"id", "type", "attributes", "references", "coreMigrationVersion", "typeMigrationVersion"}
        assert o["coreMigrationVersion"] == "8.8.0"
        assert o["typeMigrationVersion"].startswith(("8.", "7."))
        assert o["attributes"]["name" if o["type"] == "tag" else "title"]


def test_every_reference_resolves_to_an_object_in_the_file() -> None:
    check(OBJECTS)
    for o in OBJECTS:
        for r in o["references"]:
            assert (r["type"], r["id"]) in BY_ID, f"{o['id']} -> {r}"


def test_a_dangling_reference_is_reported_with_the_object_and_the_missing_id() -> None:
    dash = next(o for o in OBJECTS if o["type"] == "dashboard")
    with pytest.raises(SavedObjectsError, match=rf"dashboard {dash['id']}: reference 2:indexpattern-datasource-layer-\S+ -> index-pattern kubepulse-dataview-metrics is not in the file"):
        check([dash])


def test_a_by_value_panel_whose_dashboard_lacks_its_data_view_reference_is_reported() -> None:
    dash = json.loads(json.dumps(next(o for o in OBJECTS if o["type"] == "dashboard")))
    dash["references"] = [r for r in dash["references"] if not r["name"].startswith("2:")]
    with pytest.raises(SavedObjectsError, match=rf"panel 2 layer \S+: the dashboard has no reference 2:indexpattern-datasource-layer-"):
        check([o for o in OBJECTS if o["type"] != "dashboard"] + [dash])


def test_a_line_without_id_type_or_attributes_is_refused_with_its_line_number() -> None:
    with pytest.raises(SavedObjectsError, match="line 2: not a saved object"):
        parse_ndjson('{"id": "a", "type": "lens", "attributes": {}}\n{"id": "b"}\n')


def test_dashboards_follow_the_time_picker_carry_the_kubepulse_tag_and_filter_by_cluster_and_namespace() -> None:
    dashes = [o for o in OBJECTS if o["type"] == "dashboard"]
    assert {d["attributes"]["title"] for d in dashes} == {d.title for d in DASHBOARDS}
    (tag,) = [o for o in OBJECTS if o["type"] == "tag"]
    assert tag["attributes"]["name"] == "kubepulse"
    for d in dashes:
        a = d["attributes"]
        assert a["timeRestore"] is False
        assert not {"timeFrom", "timeTo", "refreshInterval"} & a.keys()
        controls = json.loads(a["controlGroupInput"]["panelsJSON"])
        fields = [c["explicitInput"]["fieldName"] for c in sorted(controls.values(), key=lambda c: c["order"])]
        assert fields == ["orchestrator.cluster.name", "kubernetes.namespace"]
        assert all(c["type"] == "optionsListControl" for c in controls.values())
        refs = {r["name"]: r for r in d["references"]}
        for cid in controls:
            assert refs[f"controlGroup_{cid}:optionsListDataView"]["type"] == "index-pattern"
        assert refs[f"tag-ref-{tag['id']}"] == {"type": "tag", "id": tag["id"], "name": f"tag-ref-{tag['id']}"}
    for s in (o for o in OBJECTS if o["type"] == "search"):
        assert {"type": "tag", "id": tag["id"], "name": f"tag-ref-{tag['id']}"} in s["references"]


def test_every_dashboard_starts_with_a_navigation_panel_linking_every_other_dashboard() -> None:
    ids = {d.key: f"kubepulse-dashboard-{d.key}" for d in DASHBOARDS}
    for key, did in ids.items():
        first = _panels(did)[0]
        assert first["type"] == "visualization" and first["gridData"] == {"x": 0, "y": 0, "w": 48, "h": 3, "i": "1"}
        vis = first["embeddableConfig"]["savedVis"]
        assert vis["type"] == "markdown"
        text = vis["params"]["markdown"]
        # Relative links (#/view/<id>) work in every space; the dashboard itself is named, not linked.
        assert sorted(text.count(f"(#/view/{other})") for other in ids.values()) == [0] + [1] * (len(ids) - 1)
        assert f"(#/view/{did})" not in text


def test_lens_panels_are_embedded_by_value_with_their_data_view_referenced_through_the_dashboard() -> None:
    lens = [(d, p) for d in OBJECTS if d["type"] == "dashboard" for p in json.loads(d["attributes"]["panelsJSON"]) if p["type"] == "lens"]
    assert not [o for o in OBJECTS if o["type"] == "lens"]  # no by-reference visualizations left
    assert len(lens) == sum(1 for d in DASHBOARDS for p in d.panels if isinstance(p, Panel))
    for d, p in lens:
        attrs = p["embeddableConfig"]["attributes"]
        assert "panelRefName" not in p and attrs["type"] == "lens"
        (layer,) = attrs["state"]["datasourceStates"]["formBased"]["layers"]
        (inner,) = attrs["references"]
        assert inner["name"] == f"indexpattern-datasource-layer-{layer}" and inner["type"] == "index-pattern"
        outer = {r["name"]: r for r in d["references"]}[f"{p['panelIndex']}:{inner['name']}"]
        assert outer["id"] == inner["id"] and ("index-pattern", inner["id"]) in BY_ID


def test_dashboard_panels_reference_their_objects_by_panel_n_and_do_not_overlap() -> None:
    for d in (o for o in OBJECTS if o["type"] == "dashboard"):
        panels = json.loads(d["attributes"]["panelsJSON"])
        refs = {r["name"]: r for r in d["references"]}
        cells = set()
        for n, p in enumerate(panels, start=1):
            assert p["panelIndex"] == str(n)
            if "panelRefName" in p:
                assert p["panelRefName"] == f"panel_{n}"
                ref = refs[f"{n}:panel_{n}"]
                assert ref["type"] == p["type"] and BY_ID[(ref["type"], ref["id"])]
            g = p["gridData"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 48
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{d['id']} panel {n} overlaps another"
            cells |= mine


def test_lens_objects_use_known_visualizations_and_their_columns_reference_existing_columns() -> None:
    for d in (o for o in OBJECTS if o["type"] == "dashboard"):
        for p in json.loads(d["attributes"]["panelsJSON"]):
            if p["type"] != "lens":
                continue
            a = p["embeddableConfig"]["attributes"]
            assert a["visualizationType"] in {"lnsXY", "lnsMetric", "lnsDatatable", "lnsPie"}
            (layer,) = a["state"]["datasourceStates"]["formBased"]["layers"].values()
            assert sorted(layer["columnOrder"]) == sorted(layer["columns"])
            for cid, col in layer["columns"].items():
                for dep in col.get("references", []):
                    assert dep in layer["columns"], f"{d['id']} {p['title']} column {cid} uses missing {dep}"


def test_terms_ordered_alphabetically_go_from_a_to_z_and_terms_ordered_by_a_metric_from_the_largest() -> None:
    seen = set()
    for d in (o for o in OBJECTS if o["type"] == "dashboard"):
        for p in json.loads(d["attributes"]["panelsJSON"]):
            if p["type"] != "lens":
                continue
            (layer,) = p["embeddableConfig"]["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values()
            for col in layer["columns"].values():
                if col["operationType"] == "terms":
                    kind = col["params"]["orderBy"]["type"]
                    assert col["params"]["orderDirection"] == {"alphabetical": "asc", "column": "desc"}[kind]
                    seen.add(kind)
    assert seen == {"alphabetical", "column"}


def test_formula_columns_carry_a_tinymath_ast_whose_locations_match_the_formula_text() -> None:
    lens = _lens("kubepulse-dashboard-fleet-overview", "CPU used / allocatable")
    (layer,) = lens["state"]["datasourceStates"]["formBased"]["layers"].values()
    formula = next(c for c in layer["columns"].values() if c["operationType"] == "formula")
    text = formula["params"]["formula"]
    assert text == "(sum(kubernetes.node.cpu.usage.nanocores) / 1000000000) / sum(kubernetes.node.cpu.allocatable.cores)"
    math = layer["columns"][formula["references"][0]]
    ast = math["params"]["tinymathAst"]

    def walk(node):  # every function node's text is the formula text at its location
        if isinstance(node, dict):
            assert text[node["location"]["min"] : node["location"]["max"]] == node["text"]
            for a in node["args"]:
                walk(a)

    walk(ast)
    assert ast["name"] == "divide" and ast["args"][0]["name"] == "divide"
    leaves = [layer["columns"][c] for c in math["references"]]
    assert [(c["operationType"], c["sourceField"]) for c in leaves] == [
        ("sum", "kubernetes.node.cpu.usage.nanocores"),
        ("sum", "kubernetes.node.cpu.allocatable.cores"),
    ]


def test_every_field_a_panel_or_control_aggregates_is_mapped_with_an_aggregatable_type() -> None:
    problems = []
    for p in all_panels():
        types = field_types(p.kind)
        for f in p.fields():
            if types.get(f) not in AGGREGATABLE:
                problems.append(f"panel {p.key} ({p.kind}): {f} is {types.get(f, 'not mapped')}")
    for d in DASHBOARDS:
        types = field_types(d.control_kind)
        for f, _ in d.controls:
            if types.get(f) != "keyword":
                problems.append(f"dashboard {d.key} control {f} is {types.get(f, 'not mapped')} on {d.control_kind}")
    assert not problems, "\n".join(problems)


def test_saved_search_filters_are_aggregatable_and_their_columns_are_mapped() -> None:
    for s in SEARCHES:
        types = field_types(s.kind)
        for c in s.where:
            field = (c.cond if isinstance(c, Not) else c).field
            assert types.get(field) in AGGREGATABLE, (s.key, field)
        for col in s.columns:
            assert col in types, (s.key, col)


def test_data_views_are_the_index_aliases_with_the_mapped_time_field() -> None:
    settings = load_settings(elasticsearch={"index_prefix": "acme"})
    views = [o for o in build("acme") if o["type"] == "index-pattern"]
    assert sorted(DATA_VIEW_KINDS) == sorted(INDEX_KINDS) and len(views) == len(INDEX_KINDS) == 13
    for v in views:
        kind = v["id"].removeprefix("acme-dataview-")
        assert v["attributes"]["title"] == alias_name(settings, kind)
        assert field_types(kind)[v["attributes"]["timeFieldName"]] == "date"
        formats = json.loads(v["attributes"]["fieldFormatMap"])
        assert all(field_types(kind)[f] in AGGREGATABLE for f in formats)


def test_data_view_field_formats_use_kibanas_pattern_parameter_not_lens_decimals() -> None:
    views = {o["id"].removeprefix("kubepulse-dataview-"): json.loads(o["attributes"]["fieldFormatMap"]) for o in OBJECTS if o["type"] == "index-pattern"}
    assert views["metrics"]["kubernetes.pod.cpu.usage.limit.pct"] == {"id": "percent", "params": {"pattern": "0,0.[0]%"}}
    assert views["metrics"]["kubernetes.container.memory.workingset.bytes"] == {"id": "bytes", "params": {"pattern": "0,0.[0]b"}}
    # Rollup statistics take their metric's format; the sample count stays a number.
    rollups = views["rollups-1h"]
    assert rollups["kubernetes.container.memory_limit_share.max"]["id"] == "percent"
    assert rollups["kubernetes.pod.network.rx_bytes_per_s.avg"]["id"] == "bytes"
    assert "kubernetes.container.cpu_cores.avg" not in rollups and "kubernetes.container.memory_working_set_bytes.count" not in rollups
    assert all("decimals" not in f["params"] for view in views.values() for f in view.values())


def test_another_index_prefix_gets_its_own_ids_and_titles() -> None:
    objs = build("acme")
    check(objs)
    assert all(o["id"].startswith("acme-") for o in objs)
    assert not any("kubepulse-" in json.dumps(o["references"]) for o in objs)


def test_kql_and_query_dsl_render_the_same_conditions() -> None:
    where = (Is("kubernetes.event.type", "Warning"), Not(Is("kubernetes.event.reason", "A", "B")), Exists("message"))
    assert kql(where) == 'kubernetes.event.type : "Warning" and not kubernetes.event.reason : ("A" or "B") and message : *'
    p = Panel("k", "t", "events", "table", (Metric("count", None, "n"),), rows=(Terms("kubernetes.event.reason"),), where=where)
    filters = search_body(p)["query"]["bool"]["filter"]
    assert filters[1:] == [
        {"term": {"kubernetes.event.type": "Warning"}},
        {"bool": {"must_not": [{"terms": {"kubernetes.event.reason": ["A", "B"]}}]}},
        {"exists": {"field": "message"}},
    ]


def test_translator_nests_the_breakdown_outside_the_time_axis_like_lens() -> None:
    p = Panel("k", "t", "metrics", "line", (Metric("max", "kubernetes.node.fs.used.pct", "Used"),), x=DateHistogram(), split=Terms("kubernetes.node.name", 5))
    aggs = search_body(p)["aggs"]
    assert aggs["b0"]["terms"] == {"field": "kubernetes.node.name", "size": 5, "order": {"m0": "desc"}}
    assert "date_histogram" in aggs["b0"]["aggs"]["b1"]
    assert aggs["b0"]["aggs"]["b1"]["aggs"]["m0"] == {"max": {"field": "kubernetes.node.fs.used.pct"}}


def test_formula_arithmetic_gives_none_on_a_gap_or_a_zero_divisor() -> None:
    from kibana._specs import Agg, Bin

    e = Bin("divide", Bin("divide", Agg("sum", "a"), 1e9), Agg("sum", "b"))
    assert _evaluate(e, [2e9, 4.0]) == 0.5
    assert _evaluate(e, [2e9, 0.0]) is None
    assert _evaluate(e, [None, 4.0]) is None


def test_a_numeric_threshold_renders_as_kql_comparison_and_dsl_range() -> None:
    where = (AtLeast("kubernetes.resourcequota.used.pct", 0.8), Not(AtLeast("kubernetes.resourcequota.used.pct", 1)))
    assert kql(where) == "kubernetes.resourcequota.used.pct >= 0.8 and not kubernetes.resourcequota.used.pct >= 1"
    p = Panel("k", "t", "quotas", "table", (Metric("count", None, "n"),), rows=(Terms("kubernetes.namespace"),), where=where)
    assert search_body(p)["query"]["bool"]["filter"][1:] == [
        {"range": {"kubernetes.resourcequota.used.pct": {"gte": 0.8}}},
        {"bool": {"must_not": [{"range": {"kubernetes.resourcequota.used.pct": {"gte": 1}}}]}},
    ]


def test_quotas_dashboard_lists_quotas_above_80_percent_on_the_quotas_data_view() -> None:
    table = _lens("kubepulse-dashboard-quotas", "Quotas above 80 %")
    assert table["references"][0]["id"] == "kubepulse-dataview-quotas"
    assert table["state"]["query"]["query"] == "kubernetes.resourcequota.used.pct >= 0.8"
    (layer,) = table["state"]["datasourceStates"]["formBased"]["layers"].values()
    assert [c["sourceField"] for c in layer["columns"].values() if c["isBucketed"]] == [
        "orchestrator.cluster.name", "kubernetes.namespace", "kubernetes.resourcequota.name", "kubernetes.resourcequota.resource",
    ]
    view = BY_ID[("index-pattern", "kubepulse-dataview-quotas")]["attributes"]
    assert view["title"] == "kubepulse-quotas"
    assert json.loads(view["fieldFormatMap"])["kubernetes.resourcequota.used.pct"]["id"] == "percent"


def test_the_forecast_panel_lists_exactly_the_default_packs_predictive_storage_rules() -> None:
    # kibana/ does not import the rule engine; this test holds the two together.
    from streams.rules import RuleEngine, load_default_rules

    engine = RuleEngine(load_default_rules())
    predictive = sorted(
        c.rid for c in engine.compiled
        if c.rule.spec.kind == "predict" and str(getattr(c.rule.spec, "metric", "")).startswith(("volume.", "node.fs.", "node.imagefs."))
    )
    assert list(STORAGE_FORECAST_RULES) == predictive


def test_panels_on_rollups_read_the_v2_documents_of_the_window_they_name() -> None:
    rollup_panels = [p for p in all_panels() if p.kind.startswith("rollups")]
    assert {p.kind for p in rollup_panels} == {"rollups-1m", "rollups-1h"}
    for p in rollup_panels:
        assert ("1-minute" in p.title) == (p.kind == "rollups-1m") and ("1-hour" in p.title) == (p.kind == "rollups-1h")
        # Every panel picks one entity kind: statistics of different kinds never share a field, but a count would mix them.
        assert [c.field for c in p.where][:1] == ["metricset.name"]


def test_the_kibana_package_imports_nothing_of_streams_but_the_index_contract() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "kibana"
    imported = set()
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
    assert {m for m in imported if m.split(".")[0] in ("streams", "models", "collectors", "kubepulse")} == {"streams.index"}
