"""Benchmark of the stream hot path on the local Kafka: decode + windows + detectors + rules per node scrape.

Produces simulated node scrapes (~1,000 samples each) to a fresh topic, then in the same run times
(1) a bare aiokafka consumer reading the topic and (2) the same consumer feeding every message through
``decode`` and ``streams.pipeline.Pipeline.process`` (the code the Faust agent runs per message).
Last line: one JSON object. NOTE: (2) is not yet the full Faust worker (see the README's known gaps).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from models.codec import decode, encode  # noqa: E402
from models.records import ContainerSample, Interface, NodeSample, NodeScrape, PodSample, Resources, Volume  # noqa: E402
from models.series import entities  # noqa: E402
from models.settings import load_settings  # noqa: E402
from streams.pipeline import Pipeline  # noqa: E402
from streams.rules import RuleEngine  # noqa: E402

NODES, SCRAPES_PER_NODE, PODS = 40, 12, 30
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def make_scrape(n: int, i: int) -> NodeScrape:
    f = 1.0 + 0.05 * ((i * 7 + n) % 5)
    pods = [
        PodSample(namespace=f"ns{p % 5}", name=f"pod-{n}-{p}", workload_name=f"wl{p % 7}", workload_kind="Deployment",
                  cpu_cores=0.1 * f, memory_working_set_bytes=int(1e8 * f), cpu_request_share=0.5 * f, memory_request_share=0.4,
                  network=[Interface(name="eth0", rx_bytes_per_s=1e5 * f, tx_bytes_per_s=5e4 * f, rx_errors_per_s=0.0, tx_errors_per_s=0.0)],
                  volumes=[Volume(name="data", pvc_name=f"pvc-{p}", used_bytes=int(5e8 + i * 1e5), capacity_bytes=int(1e9),
                                  available_bytes=int(5e8), inodes_used=1000, inodes=100000, inodes_free=99000)],
                  containers=[ContainerSample(name=f"c{c}", cpu_cores=0.05 * f, memory_working_set_bytes=int(5e7 * f),
                                              memory_rss_bytes=int(4e7), memory_usage_bytes=int(6e7), cpu_limit_share=0.3 * f,
                                              memory_limit_share=0.4, cpu_request_share=0.5, memory_request_share=0.5,
                                              limits=Resources(cpu_cores=1.0, memory_bytes=int(5e8)), restart_count=0)
                              for c in range(2)])
        for p in range(PODS)
    ]
    return NodeScrape(cluster="bench", node=f"n{n}", timestamp=T0 + timedelta(seconds=15 * i), source="simulator",
                      node_stats=NodeSample(cpu_cores=4 * f, memory_working_set_bytes=int(8e9),
                                            allocatable=Resources(cpu_cores=16.0, memory_bytes=int(64e9))),
                      pods=pods)


async def main() -> None:
    settings = load_settings(kafka={"topic_prefix": f"bench{uuid.uuid4().hex[:8]}."})
    topic = settings.kafka.topic_prefix + "kubepulse.metrics.v1"
    kw = settings.kafka.aiokafka_kwargs()
    producer = AIOKafkaProducer(**kw, max_request_size=8 << 20, linger_ms=5)
    await producer.start()
    samples = 0
    for i in range(SCRAPES_PER_NODE):
        for n in range(NODES):
            s = make_scrape(n, i)
            samples += sum(1 for e in entities(s) for _, v in e.metrics if v is not None)
            await producer.send(topic, encode(s), key=s.key.encode())
    await producer.flush()
    await producer.stop()
    total = NODES * SCRAPES_PER_NODE

    async def run(handle) -> float:
        c = AIOKafkaConsumer(topic, **kw, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
                             max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
        await c.start()
        got = 0
        t0 = time.perf_counter()
        while got < total:
            for msgs in (await c.getmany(timeout_ms=500)).values():
                for m in msgs:
                    handle(m)
                    got += 1
        dt = time.perf_counter() - t0
        await c.stop()
        return dt

    bare = await run(lambda m: None)
    pipe = Pipeline(settings, engine=RuleEngine.from_settings(settings))
    states: dict = {}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def handle(m) -> None:
        s = decode(NodeScrape, m.value)
        st = states.get(m.key) or states.setdefault(m.key, pipe.new_state(m.key.decode()))
        pipe.process(st, s, offset=m.offset)

    full = await run(handle)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    series = sum(len(st.detectors) for st in states.values())
    sid_count = len({sid for st in states.values() for p in st.windows.open.values() for sid in p}) or 1
    print(json.dumps({
        "samples_per_s": round(samples / full),
        "bare_consumer_per_s": round(samples / bare),
        "ratio": round(bare / full, 3),
        "alert_latency_p50_s": None,
        "alert_latency_p99_s": None,
        "series": sid_count,
        "scored_series": series,
        "rss_bytes_per_series": round(max(0, rss1 - rss0) / sid_count),
        "state_bytes_per_node": round(sum(len(st.dumps()) for st in states.values()) / len(states)),
        "scrapes": total,
        "samples": samples,
        "mode": "in-process pipeline over aiokafka (not the Faust worker)",
    }))


if __name__ == "__main__":
    asyncio.run(main())
