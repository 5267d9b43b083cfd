"""The field table, the index templates and the documents agree with the records and with each other."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from models.records import RECORD_TYPES, ContainerSample, NodeScrape, PodSample, QuotaScrape
from models.series import entities, quota_entities
from models.settings import load_settings
from streams._documents import documents_for, index_name
from streams._mappings import EXCLUDED, KINDS, Field, field_types, fields_of, index_templates, mappings
from streams._samples import full_records, node_scrape


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


@pytest.mark.parametrize("kind", KINDS)
def test_every_record_field_is_mapped_or_excluded_with_a_reason(kind: str) -> None:
    leaves = _leaf_paths(RECORD_TYPES[kind])
    mapped = {e.src for e in fields_of(kind) if isinstance(e, Field)}
    assert leaves - mapped - set(EXCLUDED[kind]) == set()
    # ...and the table names no field the record does not have.
    assert mapped - leaves == set()
    assert set(EXCLUDED[kind]) <= leaves


@pytest.mark.parametrize("kind", KINDS)
def test_every_mapped_field_appears_in_a_document_of_a_full_record(kind: str) -> None:
    docs = documents_for(full_records()[kind])
    seen = set().union(*(d.body for d in docs))
    assert set(field_types(kind)) - seen == set()
    # and no document carries a field the mapping does not know (dynamic: strict would reject it)
    assert seen - set(field_types(kind)) == set()


@pytest.mark.parametrize("kind", KINDS)
def test_template_mapping_is_strict_and_lists_exactly_the_table_fields(kind: str) -> None:
    m = mappings(kind)
    assert m["dynamic"] == "strict"
    assert _flat_keys(m["properties"]) == set(field_types(kind))


def test_field_types_are_sized_to_the_data() -> None:
    t = field_types("metrics")
    assert t["@timestamp"] == "date"
    assert t["kubernetes.container.memory.workingset.bytes"] == "long"
    assert t["kubernetes.container.cpu.usage.limit.pct"] == "double"
    assert t["kubernetes.pod.network.rx.bytes_per_s"] == "float"
    assert t["kubernetes.labels"] == "flattened"
    assert t["orchestrator.cluster.name"] == "keyword"
    assert field_types("rollups")["kubepulse.rollup.mean"] == "double"
    assert field_types("deadletter")["kubepulse.deadletter.partition"] == "integer"


def test_index_templates_put_every_daily_index_in_its_kind_alias() -> None:
    s = load_settings(elasticsearch={"index_prefix": "kpx", "number_of_replicas": 0})
    t = index_templates(s)
    assert set(t) == set(KINDS)
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
    assert index_name("kp", doc.kind, doc.day) == "kp-rollups-2026.02.01"


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
