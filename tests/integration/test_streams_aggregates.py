"""Cluster-wide aggregates through Kafka and a real ``kubepulse worker``: two nodes' partials in, one summed rollup per window out."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from kubepulse._cli_streams import create_topics
from models.codec import decode
from models.codec import decode_list
from models.records import EntityRollup, NodeSample, NodeScrape, PodSample, Resources
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
        wide, wl_id, ns_id = f"{cluster}/-/-/-", f"{cluster}/shop/workload:web/-", f"{cluster}/shop/-/-"

        def rollups(msgs: list) -> list[EntityRollup]:
            return [decode(EntityRollup, v) for k, v in msgs if k and k.startswith(cluster + "/")]

        def done(msgs: list) -> bool:
            # Every first-minute rollup (they are spread over the topic's partitions), and the second minute's,
            # which closes later: a first-minute duplicate would have been published by then.
            got = {(r.entity_id, r.window_start) for r in rollups(msgs) if r.window == "1m"}
            return {(e, T0) for e in (wide, wl_id, ns_id)} | {(wide, T0 + timedelta(minutes=1))} <= got

        msgs = await read_until(settings, ROLLUPS.named(settings.kafka.topic_prefix), done, timeout=60)
        got = rollups(msgs)
        assert done(msgs), worker.log()
        first = {r.entity_id: r for r in got if r.window == "1m" and r.window_start == T0}
        for eid, kind in ((wide, "cluster"), (wl_id, "workload"), (ns_id, "namespace")):
            assert (first[eid].kind, first[eid].node, first[eid].window_end) == (kind, None, T0 + timedelta(minutes=1))
        # Scrapes 0..3 are the first minute: n1 1,2,1,2 and n2 3,3,3,3.
        wl = first[wl_id]
        cpu = wl.metrics["workload.cpu_cores"]
        assert (wl.workload, wl.namespace, cpu.mean, cpu.sum, cpu.last, cpu.min, cpu.max, cpu.count) == \
            ("web", "shop", 4.5, 18.0, 5.0, 4.0, 5.0, 2)
        assert wl.metrics["workload.pods"].last == 2.0
        # The per-node partials travel on the internal topic only, and add up to the cluster-wide window.
        repartition = await read_until(settings, AGGREGATES_REPARTITION.named(settings.kafka.topic_prefix),
                                       lambda m: len(m) >= 2, timeout=30)
        partials = [r for _, v in repartition for r in decode_list(EntityRollup, v)
                    if r.entity_id.startswith(f"{cluster}/shop/workload:web/node:") and r.window_start == T0]
        assert sorted(r.node for r in partials) == ["n1", "n2"]
        assert cpu.sum == sum(r.metrics["workload.cpu_cores"].sum for r in partials)
        assert not any("/node:" in r.entity_id and r.kind == "workload" for r in got), "no partial on rollups.v2"
        ns = first[ns_id].metrics["namespace.cpu_cores"]
        assert (ns.mean, ns.sum, ns.count) == (4.5, 18.0, 2)
        c = first[wide].metrics
        assert (c["cluster.cpu_cores"].mean, c["cluster.cpu_cores"].sum, c["cluster.cpu_cores"].last) == (4.5, 18.0, 5.0)
        assert (c["cluster.memory_working_set_bytes"].mean, c["cluster.memory_working_set_bytes"].sum) == (4000.0, 16000.0)
        # Allocatable 4 + 8 cores: the cluster's pods use 4.5 of 12 on average.
        assert c["cluster.cpu_allocatable_share"].mean == 4.5 / 12 and c["cluster.nodes"].last == 2.0

        keys = Counter((r.entity_id, r.window, r.window_start) for r in got if r.node is None)
        assert keys and max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
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
    wl = f"{cluster}/shop/workload:web/-"

    def wide(msgs: list) -> list[tuple[bytes, EntityRollup]]:
        return [(v, decode(EntityRollup, v)) for k, v in msgs if k == wl]

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
            cpu = decode(EntityRollup, next(iter(raws))).metrics["workload.cpu_cores"]
            # Every minute: n1 1,2,1,2 and n2 3,3,3,3 (both nodes' partials, none missing, none twice).
            assert (cpu.mean, cpu.sum, cpu.count) == (4.5, 18.0, 2), (window, start, cpu)
    finally:
        w2.stop()
