"""`kubepulse top --once` over documents indexed into the real Elasticsearch with the indexer's own API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from collectors.simulator import Fleet
from kubepulse.cli import app
from models import fingerprint
from models.codec import encode
from models.records import AlertTransition, Anomaly, EntityRollup, KubeEvent, ObjectRef, Record
from models.settings import Settings
from streams._samples import entity_rollups
from streams.index import async_client
from streams.indexing import Indexer, SourceMessage
from streams.topics import spec_for
from tests.indexingutil import cleanup_es

NOW = datetime.now(UTC).replace(microsecond=0)
STEPS = 8


def _alert(name: str, labels: dict[str, str], *, status: str, seq: int, at: datetime) -> AlertTransition:
    lb = {"alertname": name, **labels}
    return AlertTransition(
        fingerprint=fingerprint(lb), status=status, labels=lb, annotations={"summary": f"{name} summary text"},
        starts_at=at if status == "firing" else at - timedelta(minutes=2), ends_at=at if status == "resolved" else None,
        rule=name, sequence=seq,
    )


@pytest.fixture
async def indexed(stack: dict[str, str], settings: Settings) -> AsyncIterator[dict[str, object]]:
    """Two clusters' scrapes over two minutes and their rollups, one active and one resolved alert, an anomaly, a warning event."""
    fleet = Fleet(clusters=2, nodes_per_cluster=2, pods_per_node=3, seed=5, incidents="none", restart_every_s=None, rollout_every_s=None)
    records: list[Record] = []
    for k in range(STEPS):
        scrapes, _, _ = fleet.step(NOW - timedelta(seconds=15 * (STEPS - 1 - k)))
        records += scrapes
    rollups = entity_rollups([r for r in records if not isinstance(r, EntityRollup)])
    records += rollups
    clusters = [c.name for c in fleet.cluster_states]
    node = fleet.cluster_states[0].nodes[0].name
    pod = fleet.cluster_states[1].nodes[0].pods[0]
    records += [
        _alert("NodeMemoryHot", {"cluster": clusters[0], "node": node, "severity": "critical"}, status="firing", seq=1, at=NOW - timedelta(seconds=90)),
        _alert("PodWasEvicted", {"cluster": clusters[1], "namespace": "shop", "pod": "p-1", "severity": "warning"}, status="firing", seq=1, at=NOW - timedelta(minutes=3)),
        _alert("PodWasEvicted", {"cluster": clusters[1], "namespace": "shop", "pod": "p-1", "severity": "warning"}, status="resolved", seq=2, at=NOW - timedelta(minutes=1)),
        Anomaly(series_id=f"{clusters[1]}/{pod.workload.namespace}/{pod.name}/-/pod.cpu_cores", cluster=clusters[1], node=fleet.cluster_states[1].nodes[0].name,
                namespace=pod.workload.namespace, pod=pod.name, metric="pod.cpu_cores", timestamp=NOW, value=3.5, baseline=0.25,
                score=9.5, threshold=6.0, detector="seasonal_z"),
        KubeEvent(cluster=clusters[1], uid="ev-1", namespace="shop", name="p-2.1", reason="BackOffQuirk", type="Warning",
                  message="Back-off restarting failed container", count=4, last_seen=NOW,
                  involved_object=ObjectRef(kind="Pod", name="p-2", namespace="shop")),
    ]
    prefix = settings.kafka.topic_prefix
    letters: list[object] = []

    async def dead_letter(batch: object) -> None:
        letters.extend(batch)  # type: ignore[arg-type]

    client = async_client(settings)
    indexer = Indexer(settings, dead_letter=dead_letter, client=client)
    try:
        await indexer.setup()
        kinds = {"NodeScrape": "metrics", "AlertTransition": "alerts", "Anomaly": "anomalies", "KubeEvent": "events", "EntityRollup": "rollups"}
        msgs = [
            SourceMessage(spec_for(kinds[type(r).__name__]).named(prefix), 0, i, r.key.encode(), encode(r))
            for i, r in enumerate(records)
        ]
        report = await indexer.process(msgs)
        assert letters == [] and report.indexed == report.documents > 0
        await client.indices.refresh(index=f"{settings.elasticsearch.index_prefix}-*")
        pods = sum(len(n.pods) for c in fleet.cluster_states for n in c.nodes)
        yield {"clusters": clusters, "node": node, "pods": pods, "rollups": rollups}
    finally:
        await cleanup_es(client, settings)
        await client.close()


def _top(settings: Settings, *args: str) -> str:
    env = {
        "KUBEPULSE_ELASTICSEARCH__URL": settings.elasticsearch.url,
        "KUBEPULSE_ELASTICSEARCH__INDEX_PREFIX": settings.elasticsearch.index_prefix,
    }
    result = CliRunner().invoke(app, ["top", "--once", "--width", "240", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


async def test_top_once_shows_every_cluster_its_namespaces_and_only_the_alert_still_firing(settings: Settings, indexed: dict) -> None:
    out = _top(settings)
    c0, c1 = indexed["clusters"]
    assert f"2 clusters, 4 nodes, {indexed['pods']} pods; 1 active alerts" in out
    for cluster in (c0, c1):
        assert sum(1 for line in out.splitlines() if cluster in line) >= 2, out
    assert "Active alerts (1)" in out and "NodeMemoryHot" in out and f"node:{indexed['node']}" in out
    assert "PodWasEvicted" not in out  # its latest transition is `resolved`
    alert_line = next(line for line in out.splitlines() if "NodeMemoryHot" in line)
    assert "critical" in alert_line and "1m30s" in alert_line  # age in data time: 90 s before the newest sample
    # A CPU sparkline of eight scrapes over the window, drawn in blocks.
    assert any(ch in out for ch in "▂▃▄▅▆▇█")
    assert "pod.cpu_cores" in out and "9.5" in out  # the anomaly and its score
    assert "BackOffQuirk" in out and "Pod shop/p-2" in out  # the warning event
    assert "Top pods by CPU" in out


async def test_top_once_with_a_cluster_filter_shows_nothing_of_the_other_cluster(settings: Settings, indexed: dict) -> None:
    c0, c1 = indexed["clusters"]
    out = _top(settings, "--cluster", c1)
    assert "1 clusters, 2 nodes" in out and c1 in out
    assert c0 not in out
    assert "Active alerts (0)" in out and "NodeMemoryHot" not in out and "none firing" in out
    assert "BackOffQuirk" in out


async def test_top_once_against_an_empty_prefix_says_there_are_no_metrics_yet(stack: dict[str, str], settings: Settings) -> None:
    out = _top(settings)
    assert "no metrics yet" in out and "Active alerts (0)" in out


async def test_live_view_redraws_until_stopped_and_fits_a_40_line_terminal(settings: Settings, indexed: dict) -> None:
    import asyncio
    import io

    from rich.console import Console

    from kubepulse._top import TopOptions, render_frame, fetch_frame, run_top
    from streams.index import sync_client

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200, height=40)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 12  # about two refreshes at 0.5 s (stop is polled every 0.1 s)

    await asyncio.to_thread(run_top, settings, TopOptions(), interval_s=0.5, console=console, stop=stop)
    assert buf.getvalue().count("kubepulse top") >= 2  # the first frame and at least one redraw

    client = sync_client(settings)
    try:
        frame = await asyncio.to_thread(fetch_frame, client, settings, TopOptions())
    finally:
        client.close()
    lines = Console(file=io.StringIO(), width=200).render_lines(render_frame(frame, height=40), pad=False)
    assert len(lines) <= 40


async def test_namespace_sparklines_come_from_the_namespace_minute_rollups(settings: Settings, indexed: dict) -> None:
    import asyncio

    from kubepulse._top import TopOptions, fetch_frame
    from streams.index import sync_client

    client = sync_client(settings)
    try:
        frame = await asyncio.to_thread(fetch_frame, client, settings, TopOptions())
    finally:
        client.close()
    assert frame.history_source == "rollups-1m"
    sums = {(r.cluster, r.namespace, r.window_start): r for r in indexed["rollups"] if r.kind == "namespace" and r.window == "1m"}
    assert frame.namespaces
    for row in frame.namespaces:
        mine = sorted((k[2], r) for k, r in sums.items() if k[:2] == (row.cluster, row.namespace))
        # One value per minute with a rollup, in time order: the window's mean of the namespace's summed pods.
        got = [v for v in row.cpu_history if v is not None]
        assert got == pytest.approx([r.metrics["namespace.cpu_cores"].mean for _, r in mine if "namespace.cpu_cores" in r.metrics])
        assert [v for v in row.memory_history if v is not None] == pytest.approx(
            [r.metrics["namespace.memory_working_set_bytes"].mean for _, r in mine]
        )
    assert "(1-minute rollups)" in _top(settings)
