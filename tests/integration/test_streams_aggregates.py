"""Cluster-wide aggregates through Kafka and a real ``kubepulse worker``: two nodes' partials in, one summed rollup per window out."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from kubepulse._cli_streams import create_topics
from models.codec import decode
from models.records import NodeSample, NodeScrape, PodSample, Resources, Rollup
from models.settings import load_settings
from streams.topics import AGGREGATES_REPARTITION, METRICS, ROLLUPS
from tests.kafkautil import new_run_id, produce
from tests.streamsutil import Worker, committed_offsets, read_until, wait_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
N1_CPU = (1.0, 2.0)
"""Node n1's pod alternates between these (exact in binary, so the sums are exact)."""
N2_CPU = 3.0


def scrape(cluster: str, node: str, i: int) -> NodeScrape:
    cpu = N1_CPU[i % 2] if node == "n1" else N2_CPU
    alloc = 4.0 if node == "n1" else 8.0
    pod = PodSample(namespace="shop", name=f"web-{node}", workload_kind="Deployment", workload_name="web",
                    cpu_cores=cpu, memory_working_set_bytes=1000 if node == "n1" else 3000)
    return NodeScrape(cluster=cluster, node=node, timestamp=T0 + timedelta(seconds=15 * i), source="simulator",
                      node_stats=NodeSample(cpu_cores=cpu + 0.25, allocatable=Resources(cpu_cores=alloc, memory_bytes=10**6)),
                      pods=[pod])


async def test_two_nodes_give_one_cluster_wide_workload_namespace_and_cluster_rollup_per_window_summing_both(
        stack: dict[str, str], tmp_path) -> None:  # noqa: ANN001
    run = new_run_id()
    cluster = f"agg{run}"
    settings = load_settings(
        kafka={"topic_prefix": f"t{run}.", "consumer_group": f"kp-test-{run}", "topic_partitions": 2},
        streams={"window_grace_s": 0, "cluster_aggregates": True}, http_port=0,
    )
    await create_topics(settings)
    worker = Worker(settings, tmp_path / "worker.log")
    try:
        # Four minutes of scrapes every 15 s from both nodes, interleaved as collectors would send them.
        await produce(settings, METRICS.named(settings.kafka.topic_prefix),
                      [(f"{cluster}/{n}", scrape(cluster, n, i)) for i in range(17) for n in ("n1", "n2")])
        wide = f"{cluster}/-/-/-/cluster.pods_cpu_cores"
        expected_ids = {f"{cluster}/shop/workload:web/-/workload.cpu_cores", f"{cluster}/shop/-/-/namespace.cpu_cores",
                        wide, f"{cluster}/-/-/-/cluster.cpu_allocatable_share"}

        def rollups(msgs: list) -> list[Rollup]:
            return [decode(Rollup, v) for k, v in msgs if k and k.startswith(cluster + "/")]

        def done(msgs: list) -> bool:
            # Every first-minute rollup (they are spread over the topic's partitions), and the second minute's,
            # which closes later: a first-minute duplicate would have been published by then.
            wide_ones = {(r.series_id, r.window_start) for r in rollups(msgs) if r.node is None and r.window == "1m"}
            return {(sid, T0) for sid in expected_ids} | {(wide, T0 + timedelta(minutes=1))} <= wide_ones

        msgs = await read_until(settings, ROLLUPS.named(settings.kafka.topic_prefix), done, timeout=60)
        got = rollups(msgs)
        assert done(msgs), worker.log()
        first = {r.series_id: r for r in got if r.node is None and r.window == "1m" and r.window_start == T0}
        partials = [r for r in got if r.node is not None and r.window == "1m" and r.window_start == T0]
        assert expected_ids <= set(first), sorted(first)
        for sid, level in zip(sorted(expected_ids), ("cluster", "cluster", "namespace", "workload"), strict=True):
            r = first[sid]
            assert (r.level, r.node, r.window_end) == (level, None, T0 + timedelta(minutes=1)), r
        # Scrapes 0..3 are the first minute: n1 1,2,1,2 and n2 3,3,3,3.
        wl = first[f"{cluster}/shop/workload:web/-/workload.cpu_cores"]
        assert (wl.workload, wl.namespace, wl.mean, wl.sum, wl.last, wl.min, wl.max, wl.count) == \
            ("web", "shop", 4.5, 18.0, 5.0, 4.0, 5.0, 2)
        node_wl = [r for r in partials if r.metric == "workload.cpu_cores"]
        assert sorted(r.node for r in node_wl) == ["n1", "n2"]
        assert wl.sum == sum(r.sum for r in node_wl) and wl.mean == sum(r.mean for r in node_wl)
        ns = first[f"{cluster}/shop/-/-/namespace.cpu_cores"]
        assert (ns.mean, ns.sum, ns.count) == (4.5, 18.0, 2)
        assert (first[wide].mean, first[wide].sum, first[wide].last) == (4.5, 18.0, 5.0)
        mem = first[f"{cluster}/-/-/-/cluster.pods_memory_working_set_bytes"]
        assert (mem.mean, mem.sum) == (4000.0, 16000.0)
        # Allocatable 4 + 8 cores: the cluster's pods use 4.5 of 12 on average.
        assert first[f"{cluster}/-/-/-/cluster.cpu_allocatable_share"].mean == 4.5 / 12

        wide_keys = Counter((r.series_id, r.window, r.window_start) for r in got if r.node is None)
        assert wide_keys and max(wide_keys.values()) == 1, [k for k, n in wide_keys.items() if n > 1]
        assert any(w == "5m" for _, w, _ in wide_keys), sorted(wide_keys)
    finally:
        worker.stop()


async def all_committed(settings, topic: str) -> bool:  # noqa: ANN001
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
    committed = await committed_offsets(settings, topic)
    return bool(ends) and any(ends.values()) and all(committed.get(tp.partition, 0) >= end for tp, end in ends.items())


async def test_a_worker_killed_mid_stream_leaves_every_cluster_window_exact(stack: dict[str, str], tmp_path) -> None:  # noqa: ANN001
    run = new_run_id()
    cluster = f"agk{run}"
    settings = load_settings(
        kafka={"topic_prefix": f"t{run}.", "consumer_group": f"kp-test-{run}", "topic_partitions": 2},
        streams={"window_grace_s": 0, "cluster_aggregates": True, "checkpoint_interval_s": 1.0}, http_port=0,
    )
    await create_topics(settings)
    metrics, rollups_topic = METRICS.named(settings.kafka.topic_prefix), ROLLUPS.named(settings.kafka.topic_prefix)
    wl = f"{cluster}/shop/workload:web/-/workload.cpu_cores"

    def wide(msgs: list) -> list[tuple[bytes, Rollup]]:
        return [(v, decode(Rollup, v)) for k, v in msgs if k == wl]

    def minutes(msgs: list) -> set:
        return {r.window_start for _, r in wide(msgs) if r.window == "1m"}

    w1 = Worker(settings, tmp_path / "w1.log")
    try:
        await produce(settings, metrics, [(f"{cluster}/{n}", scrape(cluster, n, i)) for i in range(20) for n in ("n1", "n2")])
        await read_until(settings, rollups_topic, lambda m: T0 + timedelta(minutes=1) in minutes(m), timeout=60)
        # Every partial read so far is committed: the windows still open (minutes 2-4) exist only in the
        # table, so a successor without that state would publish them short of these partials.
        repartition = AGGREGATES_REPARTITION.named(settings.kafka.topic_prefix)
        await wait_for(lambda: all_committed(settings, repartition), timeout=30, what="partials committed")
    finally:
        w1.kill()  # mid-stream: no checkpoint on the way out
    await produce(settings, metrics, [(f"{cluster}/{n}", scrape(cluster, n, i)) for i in range(20, 40) for n in ("n1", "n2")])
    w2 = Worker(settings, tmp_path / "w2.log")
    try:
        # Scrapes run to minute 9; a cluster minute closes once every node is past the minute after it.
        want = {T0 + timedelta(minutes=m) for m in range(7)}
        msgs = await read_until(settings, rollups_topic, lambda m: want <= minutes(m), timeout=90)
        assert want <= minutes(msgs), w2.log()
        copies: dict = {}
        for raw, r in wide(msgs):
            copies.setdefault((r.window, r.window_start), set()).add(raw)
        for (window, start), raws in sorted(copies.items()):
            assert len(raws) == 1, f"{window}@{start}: published twice with different values: {raws}"
            r = decode(Rollup, next(iter(raws)))
            # Every minute: n1 1,2,1,2 and n2 3,3,3,3 (both nodes' partials, none missing, none twice).
            covered = (r.window_end - max(start, T0)) // timedelta(minutes=1)  # a 5m window of the first minutes holds fewer
            assert (r.mean, r.sum, r.count) == (4.5, 18.0 * covered, 2), (window, start, r)
    finally:
        w2.stop()
