"""The pure aggregation of streams.aggregates: when a cluster window closes, and what it sums."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.records import Rollup
from streams.aggregates import ClusterAggregator, partial_cluster

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def part(node: str, minute: int, v: float, *, metric: str = "node.pods_cpu_cores") -> Rollup:
    s = T0 + timedelta(minutes=minute)
    return Rollup(series_id=f"c/-/node:{node}/-/{metric}", level="node", cluster="c", node=node, metric=metric,
                  window="1m", window_start=s, window_end=s + timedelta(minutes=1),
                  min=v, max=2 * v, mean=1.5 * v, last=v, sum=4 * v, count=4)


def test_a_window_waits_for_the_slowest_source_before_closing() -> None:
    agg = ClusterAggregator(grace_s=0)
    assert agg.add(part("b", 0, 2.0), source=1) == []
    assert agg.add(part("a", 0, 1.0), source=0) == []
    assert agg.add(part("a", 1, 1.0), source=0) == []
    assert agg.add(part("a", 2, 1.0), source=0) == []  # partition 0 is past minute 0, partition 1 is not
    out = agg.add(part("b", 2, 2.0), source=1)
    assert [(r.series_id, r.window_start, r.level, r.node) for r in out] == [("c/-/-/-/cluster.pods_cpu_cores", T0, "cluster", None)]
    r = out[0]
    assert (r.min, r.max, r.mean, r.last, r.sum, r.count) == (3.0, 6.0, 4.5, 3.0, 12.0, 2)


def test_a_partial_after_its_window_closed_is_dropped_and_counted_not_published_again() -> None:
    agg = ClusterAggregator(grace_s=0)
    agg.add(part("a", 0, 1.0))
    assert len(agg.add(part("a", 2, 1.0))) == 1
    assert agg.add(part("b", 0, 5.0)) == []
    assert agg.late == 1


def test_a_partition_that_stopped_carrying_the_cluster_holds_its_windows_only_five_windows() -> None:
    agg = ClusterAggregator(grace_s=0)
    agg.add(part("a", 0, 1.0), source=1)  # partition 1 never delivers again
    outs = [agg.add(part("b", m, 2.0), source=0) for m in range(0, 8)]
    closed_at = next(m for m, out in enumerate(outs) if out)
    assert closed_at == 7 and outs[closed_at][0].mean == 1.5 + 3.0


def test_cluster_share_divides_by_the_allocatable_recovered_from_each_nodes_share() -> None:
    agg = ClusterAggregator(grace_s=0)
    agg.add(part("a", 0, 1.0))  # mean usage 1.5
    agg.add(part("a", 0, 0.25, metric="node.pods_cpu_allocatable_share"))  # mean share 0.375 → 4 cores
    agg.add(part("b", 0, 2.0))  # mean usage 3.0
    agg.add(part("b", 0, 0.25, metric="node.pods_cpu_allocatable_share"))  # mean share 0.375 → 8 cores
    agg.add(part("a", 2, 1.0))
    out = {r.metric: r for r in agg.add(part("b", 2, 2.0))}
    assert out["cluster.cpu_allocatable_share"].mean == 4.5 / 12
    assert "cluster.memory_allocatable_share" not in out  # no memory partials at all


def test_only_per_node_partials_are_routed_by_cluster() -> None:
    assert partial_cluster(b"c1/-/node:n1/-/node.pods_memory_working_set_bytes") == "c1"
    assert partial_cluster(b"c1/shop/-/node:n1/namespace.cpu_cores") == "c1"
    assert partial_cluster(b"c1/shop/-/-/namespace.cpu_cores") is None  # our own output: no loop
    assert partial_cluster(b"c1/shop/workload:web/-/workload.cpu_cores") is None
    assert partial_cluster(b"c1/-/node:n1/-/node.cpu_cores") is None


def test_a_nodes_replayed_partial_is_counted_once_and_the_state_survives_a_round_trip() -> None:
    agg = ClusterAggregator(grace_s=0)
    agg.add(part("a", 0, 1.0))
    agg.add(part("b", 0, 2.0))
    agg = ClusterAggregator.loads(agg.dumps())  # a restart between the partials
    agg.add(part("a", 0, 1.0))  # a's scrapes were replayed after a crash: the same partial again
    agg.add(part("a", 2, 1.0))
    [r] = agg.add(part("b", 2, 2.0))
    assert (r.sum, r.count) == (12.0, 2)


def test_flush_closes_every_open_window_of_a_silent_cluster_once() -> None:
    agg = ClusterAggregator(grace_s=0)
    closed = [r.window_start for m in range(3) for r in agg.add(part("a", m, 1.0))]
    assert closed == [T0], "minute 2 closed minute 0; minutes 1 and 2 wait for a later partial"
    out = agg.flush()
    assert [r.window_start for r in out] == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert agg.flush() == [] and agg.add(part("a", 1, 1.0)) == [] and agg.late == 1
