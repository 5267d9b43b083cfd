"""The saved objects: self-contained, in Kibana's import format, and every field they use mapped and aggregatable."""

from __future__ import annotations

import json

import pytest

from kibana import DEFAULT_PREFIX, SavedObjectsError, build, check, packaged, parse_ndjson, to_ndjson
from kibana._specs import AtLeast, Exists, Is, Metric, Not, Panel, Terms, DateHistogram, kql
from kibana._translate import _evaluate, search_body
from kibana.catalog import DASHBOARDS, DATA_VIEW_KINDS, SEARCHES, all_panels
from models.settings import load_settings
from streams._mappings import alias_name, field_types

OBJECTS = build(DEFAULT_PREFIX)
BY_ID = {(o["type"], o["id"]): o for o in OBJECTS}
AGGREGATABLE = {"keyword", "long", "integer", "short", "float", "double", "date", "boolean"}


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
        assert o["attributes"]["title"]


def test_every_reference_resolves_to_an_object_in_the_file() -> None:
    check(OBJECTS)
    for o in OBJECTS:
        for r in o["references"]:
            assert (r["type"], r["id"]) in BY_ID, f"{o['id']} -> {r}"


def test_a_dangling_reference_is_reported_with_the_object_and_the_missing_id() -> None:
    dash = next(o for o in OBJECTS if o["type"] == "dashboard")
    with pytest.raises(SavedObjectsError, match=rf"dashboard {dash['id']}: reference 1:panel_1 -> lens \S+ is not in the file"):
        check([dash])


def test_a_line_without_id_type_or_attributes_is_refused_with_its_line_number() -> None:
    with pytest.raises(SavedObjectsError, match="line 2: not a saved object"):
        parse_ndjson('{"id": "a", "type": "lens", "attributes": {}}\n{"id": "b"}\n')


def test_dashboards_restore_the_last_hour_refresh_every_30_s_and_filter_by_cluster_and_namespace() -> None:
    dashes = [o for o in OBJECTS if o["type"] == "dashboard"]
    assert {d["attributes"]["title"] for d in dashes} == {d.title for d in DASHBOARDS}
    for d in dashes:
        a = d["attributes"]
        assert (a["timeRestore"], a["timeFrom"], a["timeTo"]) == (True, "now-1h", "now")
        assert a["refreshInterval"] == {"pause": False, "value": 30000}
        controls = json.loads(a["controlGroupInput"]["panelsJSON"])
        fields = [c["explicitInput"]["fieldName"] for c in sorted(controls.values(), key=lambda c: c["order"])]
        assert fields == ["orchestrator.cluster.name", "kubernetes.namespace"]
        assert all(c["type"] == "optionsListControl" for c in controls.values())
        refs = {r["name"]: r for r in d["references"]}
        for cid in controls:
            assert refs[f"controlGroup_{cid}:optionsListDataView"]["type"] == "index-pattern"


def test_dashboard_panels_reference_their_objects_by_panel_n_and_do_not_overlap() -> None:
    for d in (o for o in OBJECTS if o["type"] == "dashboard"):
        panels = json.loads(d["attributes"]["panelsJSON"])
        refs = {r["name"]: r for r in d["references"]}
        cells = set()
        for n, p in enumerate(panels, start=1):
            assert p["panelRefName"] == f"panel_{n}" and p["panelIndex"] == str(n)
            ref = refs[f"{n}:panel_{n}"]
            assert ref["type"] == p["type"] and BY_ID[(ref["type"], ref["id"])]
            g = p["gridData"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 48
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{d['id']} panel {n} overlaps another"
            cells |= mine


def test_lens_objects_reference_their_layer_data_view_and_use_known_visualizations() -> None:
    for o in (o for o in OBJECTS if o["type"] == "lens"):
        a = o["attributes"]
        assert a["visualizationType"] in {"lnsXY", "lnsMetric", "lnsDatatable", "lnsPie"}
        layers = a["state"]["datasourceStates"]["formBased"]["layers"]
        assert len(layers) == 1
        (layer_id, layer), = layers.items()
        ref = next(r for r in o["references"] if r["name"] == f"indexpattern-datasource-layer-{layer_id}")
        assert ref["type"] == "index-pattern"
        assert sorted(layer["columnOrder"]) == sorted(layer["columns"])
        for cid, col in layer["columns"].items():
            for dep in col.get("references", []):
                assert dep in layer["columns"], f"{o['id']} column {cid} uses missing {dep}"


def test_formula_columns_carry_a_tinymath_ast_whose_locations_match_the_formula_text() -> None:
    lens = BY_ID[("lens", "kubepulse-lens-fleet-cpu-share")]
    (layer,) = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values()
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
    assert len(views) == len(DATA_VIEW_KINDS) == 9
    for v in views:
        kind = v["id"].removeprefix("acme-dataview-")
        assert v["attributes"]["title"] == alias_name(settings, kind)
        assert field_types(kind)[v["attributes"]["timeFieldName"]] == "date"
        formats = json.loads(v["attributes"]["fieldFormatMap"])
        assert all(field_types(kind)[f] in AGGREGATABLE for f in formats)
    assert json.loads(views[0]["attributes"]["fieldFormatMap"])["kubernetes.pod.cpu.usage.limit.pct"]["id"] == "percent"


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
    dash = BY_ID[("dashboard", "kubepulse-dashboard-quotas")]
    refs = {r["id"] for r in dash["references"]}
    assert "kubepulse-lens-quota-above-80" in refs and "kubepulse-lens-quota-top-namespaces" in refs
    table = BY_ID[("lens", "kubepulse-lens-quota-above-80")]["attributes"]
    assert table["state"]["query"]["query"] == "kubernetes.resourcequota.used.pct >= 0.8"
    (layer,) = table["state"]["datasourceStates"]["formBased"]["layers"].values()
    assert [c["sourceField"] for c in layer["columns"].values() if c["isBucketed"]] == [
        "orchestrator.cluster.name", "kubernetes.namespace", "kubernetes.resourcequota.name", "kubernetes.resourcequota.resource",
    ]
    view = BY_ID[("index-pattern", "kubepulse-dataview-quotas")]["attributes"]
    assert view["title"] == "kubepulse-quotas"
    assert json.loads(view["fieldFormatMap"])["kubernetes.resourcequota.used.pct"]["id"] == "percent"
