"""Every Kibana panel and saved search, run as the query Lens/Discover would send, against real Elasticsearch.

The data is real pipeline output, not hand-made documents: a simulated fleet
(collectors.simulator, its node scrapes and ResourceQuotas) goes through the worker's own Pipeline (windows,
detectors, the default rule pack with the predictive rules' timing shortened
so a 10-minute run can fire them), its events through the rule engine, and
every record through the index contract's document builder into this
test's indices (templates installed by ``streams.index.install_templates``).
The kubepulse.rollups.v2 records are the Pipeline's too (each node's windows,
closed at the end as a forgotten node's are), and the cluster-wide workload,
namespace and cluster sums come from its partials through the worker's own
``streams.aggregates.ClusterAggregator``.
Notifications are built the way the dispatcher reports deliveries (one per
firing alert), and one dead letter comes from a real decode failure.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch.helpers import async_bulk

from collectors.simulator import Fleet, IncidentPlan
from kibana import build
from kibana._specs import Panel
from kibana._translate import rows, saved_search_body, search_body
from kibana.catalog import DASHBOARDS, DATA_VIEW_KINDS, SEARCHES, all_panels
from kibana.saved_objects import data_view_title
from models.codec import decode
from models.errors import RecordError
from models.records import AlertTransition, EntityRollup, NodeScrape, Notification, QuotaScrape, Record
from models.settings import Settings, load_settings
from streams.aggregates import ClusterAggregator
from streams.deadletter import dead_letter
from streams.index import async_client, documents_for, index_name, install_templates
from streams.pipeline import Pipeline
from streams.rules import RuleEngine, default_rules_path
from tests.indexingutil import cleanup_es
from tests.reportutil import report_records

pytestmark = pytest.mark.asyncio(loop_scope="session")

STEPS = 40
INTERVAL_S = 15.0


def _fast_rules(directory: Path) -> Path:
    """The default rule pack with the predictive rules' window and ``for`` shortened (same rule ids)."""
    doc = yaml.safe_load(default_rules_path().read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("kind") == "predict":
                rule.update({"for": "0s", "window": "5m", "min_points": 4})
                rule.pop("and", None)
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def fleet_records(settings: Settings, start: datetime) -> list[Record]:
    """Ten minutes of a 2-cluster fleet through the real pipeline: scrapes, events, quotas, incidents, rollups, anomalies, alerts."""
    fleet = Fleet(
        clusters=2,
        nodes_per_cluster=2,
        pods_per_node=5,
        seed=11,
        incidents="cycle",
        incident_every_s=90,
        interval_s=INTERVAL_S,
        inject=[IncidentPlan("disk_fill", 0, 600), IncidentPlan("crash_loop", 30)],
    )
    engine = RuleEngine.from_settings(settings)
    pipeline = Pipeline(settings, engine=engine)
    states: dict[str, Any] = {}
    clusters: dict[str, ClusterAggregator] = {}
    out: list[Record] = []

    def rollups_of(cluster: str, o: Any) -> list[EntityRollup]:
        agg = clusters.setdefault(cluster, ClusterAggregator(cluster, grace_s=settings.streams.window_grace_s))
        return [*o.rollups, *(r for p in o.partials for r in agg.add(EntityRollup.model_validate_json(p)))]

    for i in range(STEPS):
        scrapes, events, incidents = fleet.step(start + timedelta(seconds=i * INTERVAL_S))
        out += [*scrapes, *events, *incidents, *fleet.quotas()]
        for s in scrapes:
            st = states.setdefault(s.key, pipeline.new_state(s.key))
            o = pipeline.process(st, s)
            out += [*o.anomalies, *o.transitions, *rollups_of(s.cluster, o)]
        for e in events:
            out += engine.observe_event(e)
    # The end of the run: every node's open windows (its open hour too) close, then the clusters' sums.
    for key, st in states.items():
        out += rollups_of(key.split("/", 1)[0], pipeline.flush(st))
    for agg in clusters.values():
        out += agg.flush()
    firing = [r for r in out if isinstance(r, AlertTransition) and r.status == "firing"]
    for n, a in enumerate(firing):
        receiver = "oncall-pagerduty" if a.labels.get("severity") == "critical" else "team-slack"
        out.append(
            Notification(
                notification_id=f"n{n}",
                receiver=receiver,
                integration="pagerduty" if receiver == "oncall-pagerduty" else "slack",
                group_key=f"{{}}:{{alertname=\"{a.labels.get('alertname')}\"}}",
                fingerprints=[a.fingerprint],
                status="firing",
                attempt=1,
                outcome="sent" if n % 3 else "retry",
                http_status=202 if n % 3 else 503,
                error=None if n % 3 else "HTTP 503",
                at=a.starts_at + timedelta(seconds=1),
            )
        )
    try:
        decode(NodeScrape, b'{"cluster": "prod", "node": 7')
    except RecordError as exc:
        dl = dead_letter(exc, source_topic="kubepulse.metrics.v1", stage="decode", partition=0, offset=41, key=b"prod/n1", payload=b"{")
        out.append(dl.model_copy(update={"occurred_at": start + timedelta(minutes=5)}))
    return out


async def index_records(client: AsyncElasticsearch, settings: Settings, records: list[Record]) -> int:
    prefix = settings.elasticsearch.index_prefix
    actions = [
        {"_op_type": "index", "_index": index_name(prefix, d.kind, d.day), "_id": d.id, "_source": d.body}
        for r in records
        for d in documents_for(r)
    ]
    ok, errors = await async_bulk(client, actions, chunk_size=2000, raise_on_error=False)
    assert not errors, errors[:3]
    await client.indices.refresh(index=f"{prefix}-*")
    return ok


@pytest.fixture(scope="module")
def window() -> tuple[datetime, str, str]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=STEPS * INTERVAL_S)
    # From the start of the hour: the 1-hour rollups are stamped with their window's start.
    since = start.replace(minute=0, second=0) - timedelta(minutes=1)
    return start, since.isoformat(), (datetime.now(UTC) + timedelta(minutes=1)).isoformat()


@pytest.fixture(scope="module")
async def fleet_es(stack: dict[str, str], window: tuple[datetime, str, str], tmp_path_factory: pytest.TempPathFactory):
    """(client, settings, records): the fleet's documents indexed under a prefix of this module's own."""
    run = f"kp-test-{int(time.time() * 1000) % 10**10:010d}-kibana"
    settings = load_settings(elasticsearch={"index_prefix": run}, streams={"rules_files": [_fast_rules(tmp_path_factory.mktemp("rules"))]})
    client = async_client(settings)
    try:
        await install_templates(client, settings)
        # The report indices (capacity, recommendations) and the HPAs, as `kubepulse report run` writes them.
        records = [*fleet_records(settings, window[0]), *report_records(window[0] + timedelta(minutes=1))]
        await index_records(client, settings, records)
        yield client, settings, records
    finally:
        await cleanup_es(client, settings)
        await client.close()


async def _run(client: AsyncElasticsearch, settings: Settings, panel: Panel, start: str, end: str) -> list[dict[str, Any]]:
    index = data_view_title(settings.elasticsearch.index_prefix, panel.kind)
    body = search_body(panel, start=start, end=end)
    try:
        resp = await client.search(index=index, body=body)
    except ApiError as exc:
        raise AssertionError(f"panel {panel.key}: Elasticsearch refused {body}: {exc.body}") from exc
    return rows(panel, resp.body)


def _metric_labels(panel: Panel) -> list[str]:
    return [m.label for m in panel.metrics]


async def test_every_panel_query_returns_buckets_with_values_from_the_simulated_fleet(fleet_es, window) -> None:
    client, settings, _ = fleet_es
    _, start, end = window
    empty = []
    for panel in all_panels():
        got = await _run(client, settings, panel, start, end)
        # Non-empty, and some bucket where every metric has a value (a column of nulls is a wrong field).
        full = [r for r in got if all(r[label] is not None for label in _metric_labels(panel))]
        if not full:
            empty.append(f"{panel.key} ({panel.kind}): {len(got)} buckets, first {got[:1]}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


async def test_fleet_overview_counts_match_the_simulated_fleet(fleet_es, window) -> None:
    client, settings, _ = fleet_es
    _, start, end = window
    panels = {p.key: p for p in all_panels()}
    assert (await _run(client, settings, panels["fleet-clusters"], start, end))[0]["Clusters"] == 2
    assert (await _run(client, settings, panels["fleet-nodes"], start, end))[0]["Nodes"] == 4
    assert (await _run(client, settings, panels["fleet-pods"], start, end))[0]["Pods"] == 20
    cpu = (await _run(client, settings, panels["fleet-cpu-share"], start, end))[0]["CPU of allocatable"]
    assert 0.0 < cpu < 1.0
    # The fleet total per cluster and minute is about the per-node average times the 2 nodes, not times the scrapes.
    totals = await _run(client, settings, panels["fleet-cpu-total"], start, end)
    shares = await _run(client, settings, panels["fleet-cpu-share-time"], start, end)
    assert {r["orchestrator.cluster.name"] for r in totals} == {r["orchestrator.cluster.name"] for r in shares}
    # A bucket holding only a node's first scrape has no CPU rate yet (None), never a 0 that drags the line down.
    cores = [r["CPU used (cores)"] for r in totals if r["CPU used (cores)"] is not None]
    assert len(cores) >= len(totals) - 2
    assert all(0 < c < 2 * 64 for c in cores)


async def test_forecast_panel_shows_predicted_seconds_until_full_of_the_filling_volume(fleet_es, window) -> None:
    client, settings, records = fleet_es
    _, start, end = window
    panel = next(p for p in all_panels() if p.key == "storage-forecast")
    got = await _run(client, settings, panel, start, end)
    names = {r["kubepulse.alert.name"] for r in got}
    assert "KubePersistentVolumeFullSoon" in names
    soonest = min(r["Full in (s, soonest)"] for r in got)
    predicted = [r.value for r in records if isinstance(r, AlertTransition) and r.rule.endswith("FullSoon") and r.status == "firing"]
    assert soonest == pytest.approx(min(predicted))


async def test_every_saved_search_finds_documents_and_its_columns_exist(fleet_es, window) -> None:
    client, settings, _ = fleet_es
    _, start, end = window
    for s in SEARCHES:
        index = data_view_title(settings.elasticsearch.index_prefix, s.kind)
        resp = await client.search(index=index, body=saved_search_body(s, start=start, end=end))
        hits = resp["hits"]["hits"]
        assert hits, f"saved search {s.key} finds nothing in {index}"
        shown = set().union(*(h.get("fields", {}).keys() for h in hits))
        assert shown, f"saved search {s.key}: none of its columns has a value"


async def test_every_field_a_panel_or_control_uses_is_aggregatable_in_the_real_indices(fleet_es) -> None:
    client, settings, _ = fleet_es
    prefix = settings.elasticsearch.index_prefix
    used: dict[str, set[str]] = {}
    for p in all_panels():
        used.setdefault(p.kind, set()).update(p.fields())
    for d in DASHBOARDS:
        used.setdefault(d.control_kind, set()).update(f for f, _ in d.controls)
    problems = []
    for kind, fields in used.items():
        caps = (await client.field_caps(index=data_view_title(prefix, kind), fields=sorted(fields))).body["fields"]
        for f in sorted(fields):
            types = caps.get(f)
            if not types:
                problems.append(f"{kind}: {f} is not in the index")
            elif not all(t["aggregatable"] for t in types.values()):
                problems.append(f"{kind}: {f} is not aggregatable ({list(types)})")
    assert not problems, "\n".join(problems)


async def test_data_view_titles_resolve_to_the_indexed_aliases(fleet_es) -> None:
    client, settings, _ = fleet_es
    prefix = settings.elasticsearch.index_prefix
    views = [o for o in build(prefix) if o["type"] == "index-pattern"]
    for v in views:
        resp = await client.indices.resolve_index(name=v["attributes"]["title"])
        assert resp["aliases"], f"data view {v['id']} title {v['attributes']['title']} is no alias"
        count = (await client.count(index=v["attributes"]["title"]))["count"]
        assert count > 0, f"data view {v['id']} has no documents"


async def test_quota_panels_show_the_namespace_the_simulator_runs_close_to_its_quota(fleet_es, window) -> None:
    client, settings, records = fleet_es
    _, start, end = window
    panels = {p.key: p for p in all_panels()}
    quotas = [r for r in records if isinstance(r, QuotaScrape)]
    assert len({q.key for q in quotas}) == 8 and len(quotas) == 8 * STEPS  # 2 clusters x 4 namespaces, every step
    shares = {(q.cluster, q.namespace, r): q.used[r] / q.hard[r] for q in quotas for r in q.hard}
    above = {k: v for k, v in shares.items() if v >= 0.8}
    assert list(above) == [("prod-eu-west", "shop", "requests.memory")]
    got = await _run(client, settings, panels["quota-above-80"], start, end)
    keys = ("orchestrator.cluster.name", "kubernetes.namespace", "kubernetes.resourcequota.name", "kubernetes.resourcequota.resource")
    assert [tuple(r[k] for k in keys) for r in got] == [("prod-eu-west", "shop", "compute", "requests.memory")]
    assert got[0]["Used of hard"] == pytest.approx(above[("prod-eu-west", "shop", "requests.memory")])
    (count,) = await _run(client, settings, panels["quota-resources-above-90"], start, end)
    assert count["Resources above 90 %"] == 1
    top = await _run(client, settings, panels["quota-top-namespaces"], start, end)
    best = max(top, key=lambda r: r["Used of hard (max)"])
    assert (best["kubernetes.namespace"], best["kubernetes.resourcequota.resource"]) == ("shop", "requests.memory")


async def test_rollup_panels_show_the_rollup_statistics_of_the_indexed_v2_documents(fleet_es, window) -> None:
    client, settings, records = fleet_es
    _, start, end = window
    panels = {p.key: p for p in all_panels()}
    sums = {(r.entity_id + "/", r.window_start): r for r in records if isinstance(r, EntityRollup) and r.kind == "namespace" and r.window == "1m"}
    got = await _run(client, settings, panels["namespace-cpu"], start, end)
    assert got
    for row in got:
        if row["kubepulse.entity"] == "__other__":
            continue
        at = datetime.fromisoformat(row["@timestamp"].replace("Z", "+00:00"))
        # One document per cluster, namespace and minute: the minute bucket is that document's mean (none in a
        # minute of first scrapes, which have no CPU rate yet).
        stats = sums[(row["kubepulse.entity"], at)].metrics.get("namespace.cpu_cores")
        assert row["CPU used (cores)"] == (None if stats is None else pytest.approx(stats.mean))
    hourly = await _run(client, settings, panels["namespace-hourly"], start, end)
    hours = [r for r in records if isinstance(r, EntityRollup) and r.kind == "namespace" and r.window == "1h"]
    assert len(hourly) == len({(r.cluster, r.namespace) for r in hours})
    peak = {(r.cluster, r.namespace): max(h.metrics["namespace.cpu_cores"].max for h in hours
                                          if (h.cluster, h.namespace) == (r.cluster, r.namespace) and "namespace.cpu_cores" in h.metrics)
            for r in hours}
    for row in hourly:
        assert row["CPU used (peak scrape)"] == pytest.approx(peak[(row["orchestrator.cluster.name"], row["kubernetes.namespace"])])


async def test_on_a_fresh_install_every_data_view_resolves_every_field_its_panels_use(stack: dict[str, str]) -> None:
    """`kubepulse es setup` with no document anywhere: Kibana's field list (field_caps) must already hold every field."""
    from streams.index import create_first_indices

    run = f"kp-test-{int(time.time() * 1000) % 10**10:010d}-fresh"
    settings = load_settings(elasticsearch={"index_prefix": run})
    client = async_client(settings)
    try:
        await install_templates(client, settings)
        created = await create_first_indices(client, settings)
        assert len(created) == len(DATA_VIEW_KINDS)
        assert await create_first_indices(client, settings) == []  # once per kind
        used: dict[str, set[str]] = {}
        for p in all_panels():
            used.setdefault(p.kind, set()).update(p.fields())
        for s in SEARCHES:
            used.setdefault(s.kind, set()).update(s.fields())
        for d in DASHBOARDS:
            used.setdefault(d.control_kind, set()).update(f for f, _ in d.controls)
        problems = []
        for kind in DATA_VIEW_KINDS:
            title = data_view_title(run, kind)
            assert (await client.count(index=title))["count"] == 0
            caps = (await client.field_caps(index=title, fields="*")).body["fields"]
            problems += [f"{kind}: {f}" for f in sorted(used.get(kind, set()) | {"@timestamp"}) if f not in caps]
        assert not problems, "fields Kibana would not find:\n" + "\n".join(problems)
    finally:
        await cleanup_es(client, settings)
        await client.close()


async def test_capacity_and_rightsizing_panels_show_what_the_report_documents_say(fleet_es, window) -> None:
    from models.records import CapacityForecast, Recommendation

    client, settings, records = fleet_es
    _, start, end = window
    panels = {p.key: p for p in all_panels()}
    forecasts = [r for r in records if isinstance(r, CapacityForecast)]
    recs = [r for r in records if isinstance(r, Recommendation)]
    (soonest,) = await _run(client, settings, panels["capacity-soonest"], start, end)
    assert soonest["Soonest full (days)"] == pytest.approx(min(f.days_to_full for f in forecasts if f.days_to_full is not None))
    (within,) = await _run(client, settings, panels["capacity-full-30d"], start, end)
    assert within["Entities full within 30 days"] == len({f.entity_id for f in forecasts if f.days_to_full is not None and f.days_to_full < 30})
    # The growing namespace (its quota reached 20 days after the history began, 3 days ago) is among them.
    rows = await _run(client, settings, panels["capacity-namespaces"], start, end)
    analytics = {r["kubepulse.capacity.resource"]: r for r in rows if r["kubernetes.namespace"] == "analytics"}
    assert 14 < analytics["cpu_requests"]["Full in (days)"] < 20
    (waste,) = await _run(client, settings, panels["rightsize-cpu-waste"], start, end)
    truth = sum(r.waste_cpu_cores * r.replicas for r in recs if r.waste_cpu_cores is not None)
    assert waste["CPU waste (cores)"] == pytest.approx(truth, rel=1e-3)
    (held,) = await _run(client, settings, panels["rightsize-held"], start, end)
    assert held["Containers with a held request"] == 1
    hpa_rows = await _run(client, settings, panels["rightsize-hpa"], start, end)
    assert [(r["kubernetes.workload.name"], r["kubernetes.hpa.name"]) for r in hpa_rows] == [("web-api", "web-api")]
