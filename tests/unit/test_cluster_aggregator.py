"""The pure aggregation of streams.aggregates: when a cluster window closes, and what it sums."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.records import EntityRollup, MetricStats
from streams.aggregates import ClusterAggregator

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def stats(v: float) -> MetricStats:
    return MetricStats(min=v, max=2 * v, mean=1.5 * v, last=v, sum=4 * v, count=4)


def node(name: str, minute: int, v: float, *, alloc: float = 4.0, window: str = "1m") -> EntityRollup:
    s = T0 + timedelta(minutes=minute)
    length = timedelta(minutes=1) if window == "1m" else timedelta(hours=1)
    return EntityRollup(entity_id=f"c/-/node:{name}/-", kind="node", cluster="c", node=name, window=window,
                        window_start=s, window_end=s + length,
                        metrics={"node.pods_cpu_cores": stats(v), "node.cpu_allocatable_cores": MetricStats(
                            min=alloc, max=alloc, mean=alloc, last=alloc, sum=4 * alloc, count=4),
                            "node.cpu_cores": stats(100.0)})


def workload(name: str, minute: int, v: float) -> EntityRollup:
    s = T0 + timedelta(minutes=minute)
    return EntityRollup(entity_id=f"c/shop/workload:cart/node:{name}", kind="workload", cluster="c", node=name,
                        namespace="shop", workload="cart", window="1m", window_start=s,
                        window_end=s + timedelta(minutes=1), metrics={"workload.cpu_cores": stats(v)})


def test_a_window_waits_for_the_slowest_node_before_closing() -> None:
    agg = ClusterAggregator("c", grace_s=0)
    assert agg.add(node("b", 0, 2.0)) == []
    assert agg.add(node("a", 0, 1.0)) == []
    assert agg.add(node("a", 1, 1.0)) == []
    assert agg.add(node("a", 2, 1.0)) == []  # a is past minute 0, b is not
    [r] = agg.add(node("b", 1, 2.0))
    assert (r.entity_id, r.kind, r.node, r.window_start) == ("c/-/-/-", "cluster", None, T0)
    cpu = r.metrics["cluster.cpu_cores"]
    assert (cpu.min, cpu.max, cpu.mean, cpu.last, cpu.sum, cpu.count) == (3.0, 6.0, 4.5, 3.0, 12.0, 2)
    assert r.metrics["cluster.nodes"].last == 2.0
    assert "cluster.node.cpu_cores" not in r.metrics and "node.cpu_cores" not in r.metrics, "only the pods' sums add up"


def test_cluster_share_divides_the_pods_use_by_the_nodes_allocatable() -> None:
    agg = ClusterAggregator("c", grace_s=0)
    agg.add(node("a", 0, 1.0, alloc=4.0))  # mean use 1.5
    agg.add(node("b", 0, 2.0, alloc=8.0))  # mean use 3.0
    agg.add(node("a", 1, 1.0))
    [r] = agg.add(node("b", 1, 2.0))
    assert r.metrics["cluster.cpu_allocatable_share"].mean == 4.5 / 12
    assert r.metrics["cluster.cpu_allocatable_cores"].mean == 12.0
    assert "cluster.memory_allocatable_share" not in r.metrics  # no memory in the partials at all


def test_workload_partials_of_every_node_add_up_to_the_workload() -> None:
    agg = ClusterAggregator("c", grace_s=0)
    agg.add(workload("a", 0, 1.0))
    agg.add(workload("b", 0, 3.0))
    agg.add(node("a", 1, 1.0))
    out = {r.entity_id: r for r in agg.add(node("b", 1, 1.0))}
    wl = out["c/shop/workload:cart/-"]
    assert (wl.kind, wl.namespace, wl.workload, wl.node, wl.metrics["workload.cpu_cores"].sum) == (
        "workload", "shop", "cart", None, 16.0)


def test_a_partial_after_its_window_closed_is_dropped_and_counted_not_published_again() -> None:
    agg = ClusterAggregator("c", grace_s=0)
    agg.add(node("a", 0, 1.0))
    assert len(agg.add(node("a", 1, 1.0))) == 1
    assert agg.add(node("b", 0, 5.0)) == []
    assert agg.late == 1


def test_a_node_that_stopped_sending_holds_the_cluster_windows_only_five_minutes() -> None:
    agg = ClusterAggregator("c", grace_s=0)
    agg.add(node("a", 0, 1.0))  # a never delivers again
    outs = [agg.add(node("b", m, 2.0)) for m in range(0, 8)]
    closed_at = next(m for m, out in enumerate(outs) if out)
    assert closed_at == 6 and outs[closed_at][0].metrics["cluster.cpu_cores"].mean == 1.5 + 3.0


def test_an_hour_closes_once_every_node_delivered_a_minute_of_the_next_hour() -> None:
    agg = ClusterAggregator("c", grace_s=0)
    agg.add(node("a", 0, 1.0, window="1h"))
    agg.add(node("b", 0, 2.0, window="1h"))
    assert [r.window for r in agg.add(node("a", 60, 1.0))] == []
    [r] = agg.add(node("b", 60, 1.0))
    assert (r.window, r.window_end, r.metrics["cluster.cpu_cores"].sum) == ("1h", T0 + timedelta(hours=1), 12.0)


def test_a_nodes_replayed_partial_is_counted_once_and_the_state_survives_a_round_trip() -> None:
    agg = ClusterAggregator("c", grace_s=0)
    agg.add(node("a", 0, 1.0))
    agg.add(workload("a", 0, 1.0))
    agg.add(node("b", 0, 2.0))
    entries = dict(agg.chunks())
    agg = ClusterAggregator.loads(entries.pop(b"c"), [v for v in entries.values() if v is not None])  # a restart
    agg.add(node("a", 0, 1.0))  # a's scrapes were replayed after a crash: the same partial again
    agg.add(node("a", 1, 1.0))
    out = {r.entity_id: r for r in agg.add(node("b", 1, 2.0))}
    assert (out["c/-/-/-"].metrics["cluster.cpu_cores"].sum, out["c/-/-/-"].metrics["cluster.cpu_cores"].count) == (
        12.0, 2)
    assert out["c/shop/workload:cart/-"].metrics["workload.cpu_cores"].sum == 4.0


def test_flush_closes_every_open_window_of_a_silent_cluster_once() -> None:
    agg = ClusterAggregator("c", grace_s=0)
    closed = [r.window_start for m in range(3) for r in agg.add(node("a", m, 1.0))]
    assert closed == [T0, T0 + timedelta(minutes=1)], "each minute closes when the next one arrives"
    out = agg.flush()
    assert [r.window_start for r in out] == [T0 + timedelta(minutes=2)]
    assert agg.flush() == [] and agg.add(node("a", 1, 1.0)) == [] and agg.late == 1
