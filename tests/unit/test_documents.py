"""The field table, the index templates and the documents agree with the records and with each other."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from models.records import ENTITY_KINDS, RECORD_TYPES, REPORT_TYPES, ContainerSample, NodeScrape, PodSample, QuotaScrape
from models.series import entities, quota_entities
from models.settings import load_settings
from streams._samples import full_capacity, full_records, full_rollups, node_scrape
from streams.index import EXCLUDED, INDEX_KINDS, INDEXED_KINDS, REPORT_KINDS, documents_for, field_types, fields_of, index_name, index_templates, mappings
from streams.index._fields import Field


def _leaf_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every leaf field of a pydantic model, ``[]`` after lists of models (``pods[].containers[].name``)."""
    out: set[str] = set()
    for name, info in model.model_fields.items():
        ann = info.annotation
        args = [a for a in typing.get_args(ann) if a is not type(None)] if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union else [ann]
        target = args[0] if len(args) == 1 else None
        if isinstance(target, type) and issubclass(target, BaseModel):
            out |= _leaf_paths(target, f"{prefix}{name}.")
        elif typing.get_origin(target) is list and isinstance(typing.get_args(target)[0], type) and issubclass(typing.get_args(target)[0], BaseModel):
            out |= _leaf_paths(typing.get_args(target)[0], f"{prefix}{name}[].")
        else:
            out.add(prefix + name)
    return out


def _flat_keys(props: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in props.items():
        if "properties" in v:
            out |= _flat_keys(v["properties"], f"{prefix}{k}.")
        else:
            out.add(prefix + k)
    return out


@pytest.mark.parametrize("kind", [*INDEXED_KINDS, *REPORT_KINDS])
def test_every_record_field_is_mapped_or_excluded_with_a_reason(kind: str) -> None:
    leaves = _leaf_paths({**RECORD_TYPES, **REPORT_TYPES}[kind])
    mapped = {e.src for e in fields_of(kind) if isinstance(e, Field)}
    assert leaves - mapped - set(EXCLUDED[kind]) == set()
    # ...and the table names no field the record does not have.
    assert mapped - leaves == set()
    assert set(EXCLUDED[kind]) <= leaves


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_every_mapped_field_appears_in_a_document_of_a_full_record(kind: str) -> None:
    if kind.startswith("rollups-"):
        docs = [d for r in full_rollups(window=kind.removeprefix("rollups-")) for d in documents_for(r, rollups={"1m": ENTITY_KINDS, "1h": ENTITY_KINDS})]
    elif kind == "capacity":
        # Amounts are split by unit: one forecast in cores and one in bytes carry every field between them.
        docs = [d for r in full_capacity() for d in documents_for(r)]
    else:
        docs = documents_for(full_records()[kind])
    assert docs and {d.kind for d in docs} == {kind}
    seen = set().union(*(d.body for d in docs))
    assert set(field_types(kind)) - seen == set()
    # and no document carries a field the mapping does not know (dynamic: strict would reject it)
    assert seen - set(field_types(kind)) == set()


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_template_mapping_is_strict_and_lists_exactly_the_table_fields(kind: str) -> None:
    m = mappings(kind)
    assert m["dynamic"] == "strict"
    assert _flat_keys(m["properties"]) == set(field_types(kind))


def test_field_types_are_sized_to_the_data() -> None:
    t = field_types("metrics")
    assert t["@timestamp"] == "date"
    assert t["kubernetes.container.memory.workingset.bytes"] == "long"
    assert t["kubernetes.container.cpu.usage.limit.pct"] == "float"
    assert t["kubernetes.pod.network.rx.bytes_per_s"] == "float"
    assert t["kubernetes.labels"] == "flattened"
    assert t["orchestrator.cluster.name"] == "keyword"
    assert field_types("rollups-1m")["kubernetes.container.cpu_cores.avg"] == "double"
    assert field_types("rollups-1h")["kubernetes.container.cpu_cores.count"] == "integer"
    assert field_types("deadletter")["kubepulse.deadletter.partition"] == "integer"


def test_index_templates_put_every_daily_index_in_its_kind_alias() -> None:
    s = load_settings(elasticsearch={"index_prefix": "kpx", "number_of_replicas": 0})
    t = index_templates(s)
    assert set(t) == set(INDEX_KINDS)
    assert t["metrics"]["index_patterns"] == ["kpx-metrics-*"]
    assert t["metrics"]["template"]["aliases"] == {"kpx-metrics": {}}
    assert t["alerts"]["composed_of"] == ["kpx-settings"]


def test_a_node_scrape_becomes_one_document_per_node_pod_container_and_volume() -> None:
    s = node_scrape(pods=3, containers=2)
    docs = documents_for(s)
    by_set: dict[str, int] = {}
    for d in docs:
        by_set[d.body["metricset.name"]] = by_set.get(d.body["metricset.name"], 0) + 1
    assert by_set == {"node": 1, "pod": 3, "container": 6, "volume": 3}
    assert len({d.id for d in docs}) == len(docs)


def test_metricbeat_units_cores_become_nanocores_and_interfaces_are_summed() -> None:
    s = node_scrape(pods=1, containers=1)
    pod = next(d.body for d in documents_for(s) if d.body["metricset.name"] == "pod")
    assert pod["kubernetes.pod.cpu.usage.nanocores"] == round(s.pods[0].cpu_cores * 1e9)
    assert pod["kubernetes.pod.network.rx.bytes"] == sum(i.rx_bytes_total for i in s.pods[0].network)
    assert pod["kubernetes.pod.network.rx.bytes_per_s"] == pytest.approx(sum(i.rx_bytes_per_s for i in s.pods[0].network))
    assert pod["kubernetes.deployment.name"] == "wl0"
    assert "kubernetes.statefulset.name" not in pod


def test_a_missing_limit_gives_no_limit_share_rather_than_a_fallback() -> None:
    s = NodeScrape(
        cluster="c1",
        node="n1",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        pods=[PodSample(namespace="a", name="p", containers=[ContainerSample(name="c", cpu_cores=0.5, cpu_node_share=0.1)])],
    )
    ct = documents_for(s)[-1].body
    assert ct["kubernetes.container.cpu.usage.node.pct"] == 0.1
    assert "kubernetes.container.cpu.usage.limit.pct" not in ct
    assert "kubernetes.labels" not in ct  # empty maps are left out, not indexed as {}


def test_entity_ids_are_the_series_prefixes_so_documents_join_rollups() -> None:
    s = node_scrape(pods=2, containers=2)
    docs = {d.body["kubepulse.entity"] for d in documents_for(s)}
    prefixes = {e.prefix for e in entities(s) if not e.kind.endswith("interface")}
    assert docs == prefixes


def test_the_same_record_gets_the_same_ids_and_a_later_scrape_new_ones() -> None:
    a = [d.id for d in documents_for(node_scrape(seq=1))]
    assert a == [d.id for d in documents_for(node_scrape(seq=1))]
    later = node_scrape(seq=1, timestamp=node_scrape().timestamp + timedelta(seconds=15))
    assert set(a).isdisjoint(d.id for d in documents_for(later))


def test_daily_index_is_the_utc_day_of_the_event_time() -> None:
    from datetime import timezone

    # 23:30 at UTC-2 is 01:30 the next day in UTC.
    ts = datetime(2026, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    doc = documents_for(full_records(timestamp=ts)["rollups"])[0]
    assert index_name("kp", doc.kind, doc.day) == "kp-rollups-1h-2026.02.01"


def test_a_resolved_alert_is_timed_at_its_end_and_carries_label_identity() -> None:
    alert = full_records()["alerts"]
    body = documents_for(alert)[0].body
    assert body["@timestamp"] == alert.ends_at.isoformat()
    assert body["kubepulse.alert.labels"]["alertname"] == "PodMemoryHigh"
    assert body["orchestrator.cluster.name"] == "c1"
    assert body["rule.name"] == "PodMemoryHigh"


def test_records_of_kinds_that_are_not_indexed_are_refused_with_a_clear_error() -> None:
    from models.records import Resources

    with pytest.raises(TypeError, match="not indexed"):
        documents_for(Resources())  # type: ignore[arg-type]


def test_a_resource_quota_becomes_one_document_per_resource_with_hard_used_and_their_share() -> None:
    q = full_records()["quotas"]
    assert isinstance(q, QuotaScrape)
    docs = {d.body["kubernetes.resourcequota.resource"]: d for d in documents_for(q)}
    assert sorted(docs) == sorted(q.hard)
    cpu = docs["requests.cpu"].body
    assert (cpu["orchestrator.cluster.name"], cpu["kubernetes.namespace"], cpu["kubernetes.resourcequota.name"]) == ("c1", "ns0", "compute")
    assert (cpu["kubernetes.resourcequota.hard.value"], cpu["kubernetes.resourcequota.used.value"]) == (4.0, 3.7)
    assert cpu["kubernetes.resourcequota.used.pct"] == pytest.approx(0.925)
    assert cpu["@timestamp"] == q.timestamp.isoformat() and cpu["event.dataset"] == "kubernetes.resourcequota"
    # The "/" of a count/ resource stays in the document (the entity escapes it, as the series id does).
    assert docs["count/deployments.apps"].body["kubernetes.resourcequota.used.pct"] == 1.0
    assert docs["count/deployments.apps"].body["kubepulse.entity"] == "c1/ns0/quota:compute/resource:count%2Fdeployments.apps/"
    # Not counted yet: no used, no share. A hard limit of 0: used 0, no share (never a division by zero).
    assert "kubernetes.resourcequota.used.value" not in docs["limits.cpu"].body and "kubernetes.resourcequota.used.pct" not in docs["limits.cpu"].body
    assert docs["requests.storage"].body["kubernetes.resourcequota.used.value"] == 0.0
    assert "kubernetes.resourcequota.used.pct" not in docs["requests.storage"].body
    # The entities are the series prefixes of models.series, so quota documents join the quota rules' series.
    assert {d.body["kubepulse.entity"] for d in docs.values()} == {e.prefix for e in quota_entities(q)}


def test_quota_document_ids_are_stable_per_resource_and_new_for_a_later_scrape_or_another_namespace() -> None:
    q = full_records()["quotas"]
    ids = [d.id for d in documents_for(q)]
    assert len(set(ids)) == len(q.hard)
    assert ids == [d.id for d in documents_for(q.model_copy(deep=True))]
    # A new used value is the same document (an overwrite); another time or namespace is another one.
    assert ids == [d.id for d in documents_for(q.model_copy(update={"used": {"requests.cpu": 1.0}}))]
    later = q.model_copy(update={"timestamp": q.timestamp + timedelta(seconds=15)})
    assert set(ids).isdisjoint(d.id for d in documents_for(later))
    assert set(ids).isdisjoint(d.id for d in documents_for(q.model_copy(update={"namespace": "ns1"})))


def test_an_entity_rollup_becomes_one_document_with_its_identity_and_five_statistics_per_metric() -> None:
    r = full_records()["rollups"]
    (doc,) = documents_for(r)
    assert (doc.kind, doc.day) == ("rollups-1h", "2026.03.01")
    assert doc.body == {
        "@timestamp": "2026-03-01T12:00:00+00:00",
        "kubepulse.window.end": "2026-03-01T13:00:00+00:00",
        "kubepulse.window.size": "1h",
        "event.kind": "metric",
        "event.module": "kubernetes",
        "event.dataset": "kubepulse.rollup",
        "kubepulse.entity": "c1/ns0/p1/ct0/",
        "metricset.name": "container",
        "orchestrator.cluster.name": "c1",
        "kubernetes.node.name": "n1",
        "kubernetes.namespace": "ns0",
        "kubernetes.workload.name": "wl0",
        "kubernetes.workload.kind": "Deployment",
        "kubernetes.pod.name": "p1",
        "kubernetes.container.name": "ct0",
        "container.name": "ct0",
        "kubepulse.rollup.count": 4,
        "kubernetes.container.memory_working_set_bytes.min": 1.0,
        "kubernetes.container.memory_working_set_bytes.max": 3.0,
        "kubernetes.container.memory_working_set_bytes.avg": 2.0,
        "kubernetes.container.memory_working_set_bytes.last": 2.5,
        "kubernetes.container.memory_working_set_bytes.sum": 8.0,
        # Three samples where the document has four (no rate on a first scrape): its own count.
        "kubernetes.container.cpu_cores.min": 0.25,
        "kubernetes.container.cpu_cores.max": 0.5,
        "kubernetes.container.cpu_cores.avg": 0.375,
        "kubernetes.container.cpu_cores.last": 0.5,
        "kubernetes.container.cpu_cores.sum": 1.125,
        "kubernetes.container.cpu_cores.count": 3,
    }


def test_rollup_ids_differ_by_entity_window_and_start_and_repeat_for_the_same_record() -> None:
    r = full_records()["rollups"]
    every = {"1m": ENTITY_KINDS, "1h": ENTITY_KINDS}
    (doc,) = documents_for(r, rollups=every)
    assert documents_for(r.model_copy(deep=True), rollups=every)[0].id == doc.id
    minute = r.model_copy(update={"window": "1m", "window_end": r.window_start + timedelta(minutes=1)})
    later = r.model_copy(update={"window_start": r.window_end, "window_end": r.window_end + timedelta(hours=1)})
    other = r.model_copy(update={"entity_id": "c1/ns0/p1/ct1"})
    ids = {doc.id} | {documents_for(x, rollups=every)[0].id for x in (minute, later, other)}
    assert len(ids) == 4


def test_only_the_configured_windows_and_entity_kinds_of_rollups_are_indexed() -> None:
    rollups = full_rollups(window="1m") + full_rollups(window="1h")
    default = {(d.kind, d.body["metricset.name"]) for r in rollups for d in documents_for(r)}
    assert default == {("rollups-1m", k) for k in ("node", "node_interface", "namespace", "cluster")} | {
        ("rollups-1h", k) for k in ENTITY_KINDS
    }
    only = {(d.kind, d.body["metricset.name"]) for r in rollups for d in documents_for(r, rollups={"1h": ["workload"]})}
    assert only == {("rollups-1h", "workload")}


def test_rollup_fields_follow_the_metric_names_so_a_new_metric_needs_no_table_edit() -> None:
    from models.series import AGGREGATE_METRICS, METRICS
    from streams.index import rollup_field

    types = field_types("rollups-1h")
    for kind, names in (*METRICS.items(), *AGGREGATE_METRICS.items()):
        if kind == "quota":
            continue
        for m in names:
            root = rollup_field(m)
            assert {f"{root}.{s}" for s in ("min", "max", "avg", "last", "sum")} <= types.keys(), m
            assert types[f"{root}.count"] == "integer"
    # The namespace's own name is kubernetes.namespace (a keyword), so its sums live beside it.
    assert rollup_field("namespace.cpu_cores") == "kubernetes.namespace_totals.cpu_cores"
    assert types["kubernetes.namespace"] == "keyword"


def test_time_series_indices_are_sorted_by_entity_and_time_and_keep_numbers_as_doc_values_only() -> None:
    s = load_settings(elasticsearch={"index_prefix": "kpx"})
    t = index_templates(s)
    for kind in ("metrics", "rollups-1m", "rollups-1h"):
        index = t[kind]["template"]["settings"]["index"]
        assert index["sort"] == {"field": ["kubepulse.entity", "@timestamp"], "order": ["asc", "asc"]}
    assert "settings" not in t["alerts"]["template"]
    props = mappings("metrics")["properties"]
    cpu = props["kubernetes"]["properties"]["container"]["properties"]["cpu"]["properties"]["usage"]["properties"]["nanocores"]
    assert cpu == {"type": "long", "index": False}
    assert props["kubernetes"]["properties"]["namespace"] == {"type": "keyword", "ignore_above": 1024}  # filters stay indexed
    assert mappings("alerts")["properties"]["kubepulse"]["properties"]["alert"]["properties"]["value"] == {"type": "double"}
    # Each window's indices join their own alias and the shared rollups alias.
    assert t["rollups-1m"]["template"]["aliases"] == {"kpx-rollups-1m": {}, "kpx-rollups": {}}
    from streams.index import component_templates

    assert component_templates(s)["kpx-settings"]["template"]["settings"]["index"]["codec"] == "best_compression"


def test_metrics_documents_carry_shares_and_rates_to_a_millionth() -> None:
    s = node_scrape(pods=1, containers=1)
    s.pods[0].containers[0].cpu_limit_share = 0.123456789123
    s.pods[0].network[0].rx_bytes_per_s = 1534.266666666667
    ct = next(d.body for d in documents_for(s) if d.body["metricset.name"] == "container")
    pod = next(d.body for d in documents_for(s) if d.body["metricset.name"] == "pod")
    assert ct["kubernetes.container.cpu.usage.limit.pct"] == 0.123457
    assert pod["kubernetes.pod.network.rx.bytes_per_s"] == round(1534.266666666667 + s.pods[0].network[1].rx_bytes_per_s, 6)
    assert ct["kubernetes.container.memory.workingset.bytes"] == s.pods[0].containers[0].memory_working_set_bytes  # integers as they are


def test_time_series_ids_share_the_entity_prefix_and_stay_distinct_over_time() -> None:
    a = documents_for(node_scrape(seq=1))
    b = documents_for(node_scrape(seq=1, timestamp=node_scrape().timestamp + timedelta(seconds=15)))
    assert all(len(d.id) == 20 for d in a)
    assert [x.id[:12] for x in a] == [y.id[:12] for y in b]
    assert {x.id for x in a}.isdisjoint(y.id for y in b)


def test_the_janitor_keeps_each_rollup_window_for_its_own_number_of_days() -> None:
    from datetime import date

    from streams.index import retention_plan

    s = load_settings(elasticsearch={"index_prefix": "kp"})
    today = date(2026, 3, 31)
    names = {f"kp-rollups-{w}-{d:%Y.%m.%d}": None for w in ("1m", "1h") for d in (date(2026, 3, 17), date(2026, 3, 18), date(2025, 2, 24), date(2025, 2, 25))}
    r = retention_plan(names, s, today=today)
    # 14 days of 1m (March 18 is the 14th day back), 400 days of 1h (2025-02-25 is the 400th).
    assert r.delete == ["kp-rollups-1h-2025.02.24", "kp-rollups-1m-2025.02.24", "kp-rollups-1m-2025.02.25", "kp-rollups-1m-2026.03.17"]
    assert r.keep == ["kp-rollups-1h-2025.02.25", "kp-rollups-1h-2026.03.17", "kp-rollups-1h-2026.03.18", "kp-rollups-1m-2026.03.18"]


def test_a_rollup_window_left_out_of_the_settings_keeps_its_default_and_an_unknown_kind_is_refused() -> None:
    from models.errors import ConfigError

    s = load_settings(elasticsearch={"rollups": {"1m": []}})
    assert s.elasticsearch.rollups == {"1m": [], "1h": list(ENTITY_KINDS)}
    assert [d for r in full_rollups(window="1m") for d in documents_for(r, rollups=s.elasticsearch.rollups)] == []
    with pytest.raises(ConfigError, match="no entity kind pods"):
        load_settings(elasticsearch={"rollups": {"1h": ["pods"]}})
