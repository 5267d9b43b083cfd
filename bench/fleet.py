"""What kubepulse costs per node-hour: a simulated fleet through the real worker and indexer, on the local Kafka and Elasticsearch.

For each fleet size (``--sizes``, default ``40x30x2`` and ``4x250x3``: nodes x pods x containers):

1. simulates ``--hours`` of the fleet at a 15 s scrape (node scrapes, Kubernetes Events, ResourceQuotas,
   incidents), and produces it, compressed as the collector sends it, at ``--speedup`` times real time;
2. runs one real ``kubepulse worker`` (default rule pack, alert dispatch to the console receiver) with its
   checkpoint interval divided by the same speedup, so state is written as often per simulated hour as it
   would be at real time, and one ``kubepulse es index``;
3. once both are caught up, reads what each Kafka topic holds on disk (the broker's ``LogDirs``, i.e.
   compressed bytes), the Elasticsearch documents and bytes per kind after a force-merge
   (``streams.index.storage_report``), the worker's and indexer's CPU seconds, the worker's peak RSS and
   the largest record it wrote (``/metrics``).

Then, unless ``--skip-recovery``: ``--recovery-nodes`` nodes (default 500 x 10 pods x 2) are processed by a
worker that is SIGKILLed holding their state; input goes on at real time; a new worker is started, and
``recovery_s`` is the time from its start until it has processed everything produced (lag 0).

Everything is per node-hour of simulated time. ``write_amplification``: bytes the worker wrote to Kafka
(rollups, anomalies, alerts, dead letters, notifications, dispatcher state, the repartition topic and every
changelog) over the bytes of its input topics (metrics, events, quotas), both as the broker stores them;
``cpu_per_sample_ratio``: the worker's CPU per sample of the last size over the first (no growth with
node size is 1.0). The last line printed is one JSON object.

    .venv/bin/python bench/fleet.py [--sizes 40x30x2,4x250x3] [--hours 1] [--speedup 30] [--skip-recovery]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402

from bench.pipeline import counters, free_port, proc_cpu_s, proc_rss  # noqa: E402
from collectors.simulator import Fleet  # noqa: E402
from kubepulse._cli_streams import create_topics  # noqa: E402
from models.codec import encode  # noqa: E402
from models.series import entities  # noqa: E402
from models.settings import Settings, load_settings  # noqa: E402
from streams.topics import EVENTS, METRICS, QUOTAS  # noqa: E402

T0 = datetime(2026, 3, 2, tzinfo=UTC)
STEP_S = 15
KUBEPULSE = Path(sys.executable).parent / "kubepulse"
STACK = ROOT / "deploy" / "local" / "stack"


@dataclass
class Input:
    """One fleet's simulated hours: (topic kind, key, value) in time order, per 15 s step."""

    steps: list[list[tuple[str, bytes, bytes]]]
    samples: int
    nodes: int


def simulate(nodes: int, pods: int, containers: int, hours: float, *, seed: int = 7) -> Input:
    clusters = -(-nodes // 40)  # clusters of at most 40 nodes
    fleet = Fleet(clusters=clusters, nodes_per_cluster=-(-nodes // clusters), pods_per_node=pods,
                  containers_per_pod=containers, seed=seed, incident_every_s=1800)
    steps, samples = [], 0
    for i in range(int(hours * 3600 / STEP_S)):
        scrapes, events, _ = fleet.step(T0 + timedelta(seconds=STEP_S * i))
        out = [("metrics", s.key.encode(), encode(s)) for s in scrapes]
        out += [("events", e.key.encode(), encode(e)) for e in events]
        if i % 4 == 0:  # ResourceQuotas once a minute, as the collector's quota pass does
            out += [("quotas", q.key.encode(), encode(q)) for q in fleet.quotas()]
        for s in scrapes:
            samples += sum(1 for e in entities(s) for _, v in e.metrics if v is not None)
        steps.append(out)
    return Input(steps, samples, nodes=len({k for st in steps for kind, k, _ in st if kind == "metrics"}))


def env_for(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEPULSE_")}
    env.update(KUBEPULSE_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
               KUBEPULSE_KAFKA__TOPIC_PREFIX=settings.kafka.topic_prefix,
               KUBEPULSE_KAFKA__CONSUMER_GROUP=settings.kafka.consumer_group,
               # The workers' changelog topics get this many partitions: as many as the input topics have.
               KUBEPULSE_KAFKA__TOPIC_PARTITIONS=str(settings.kafka.topic_partitions),
               KUBEPULSE_ELASTICSEARCH__INDEX_PREFIX=settings.elasticsearch.index_prefix,
               KUBEPULSE_HTTP_PORT=str(port), KUBEPULSE_LOG_LEVEL="WARNING", **extra)
    return env


def metric(port: int, name: str, *, labels: str = "") -> list[float]:
    """Every value of the Prometheus metric ``name`` the process on ``port`` serves (lines holding ``labels``)."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return []
    return [float(line.split()[-1]) for line in body.splitlines()
            if line.startswith(name) and labels in line and not line.startswith("#")]


async def produce_paced(settings: Settings, inp: Input, *, speedup: float) -> None:
    names = {"metrics": METRICS, "events": EVENTS, "quotas": QUOTAS}
    producer = AIOKafkaProducer(**settings.kafka.producer_kwargs(max_request_size=8 << 20, linger_ms=20))
    await producer.start()
    try:
        t0 = time.monotonic()
        for i, step in enumerate(inp.steps):
            futs = [await producer.send(names[kind].named(settings.kafka.topic_prefix), v, key=k)
                    for kind, k, v in step]
            await asyncio.gather(*futs)
            delay = t0 + (i + 1) * STEP_S / speedup - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    finally:
        await producer.stop()


def log_dir_bytes(prefixes: tuple[str, ...]) -> dict[str, int]:
    """Bytes each topic starting with one of ``prefixes`` holds on the broker (Kafka's LogDirs, all partitions)."""
    out = subprocess.run([str(STACK), "kafka-class", "org.apache.kafka.tools.LogDirsCommand", "--describe",
                          "--bootstrap-server", load_settings().kafka.bootstrap_servers],
                         capture_output=True, text=True, timeout=180, check=True).stdout
    data = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    sizes: dict[str, int] = {}
    for broker in data["brokers"]:
        for d in broker["logDirs"]:
            for p in d["partitions"]:
                topic = p["partition"].rsplit("-", 1)[0]
                if topic.startswith(prefixes):
                    sizes[topic] = sizes.get(topic, 0) + int(p["size"])
    return sizes


async def wait_caught_up(port: int, *, records: int, proc: subprocess.Popen, what: str, timeout: float = 1800) -> None:
    """Until the worker on ``port`` has read ``records`` records of its input topics (metrics, events, quotas)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        got = sum(sum(metric(port, "kubepulse_stream_records_in_total{", labels=f'.{kind}.v1"'))
                  for kind in ("metrics", "events", "quotas"))
        if got >= records:
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"{what} did not catch up in {timeout} s")


async def run_size(nodes: int, pods: int, containers: int, *, hours: float, speedup: float, tmp: Path) -> dict:
    from elasticsearch import Elasticsearch

    from streams.index import storage_report

    run = uuid.uuid4().hex[:8]
    settings = load_settings(kafka={"topic_prefix": f"fleet{run}.", "consumer_group": f"kp-fleet-{run}"},
                             elasticsearch={"index_prefix": f"kp-fleet-{run}"}, http_port=0)
    t = time.perf_counter()
    inp = simulate(nodes, pods, containers, hours)
    print(f"{nodes}x{pods}x{containers}: simulated {hours} h ({sum(len(s) for s in inp.steps)} records, "
          f"{inp.samples} samples) in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    await create_topics(settings)
    subprocess.run([str(KUBEPULSE), "es", "setup"], env=env_for(settings, 0), check=True, capture_output=True)
    wport, iport = free_port(), free_port()
    checkpoint = f"{60.0 / speedup:g}"  # 60 s of real time between a key's checkpoints
    worker = subprocess.Popen([str(KUBEPULSE), "worker"], env=env_for(
        settings, wport, KUBEPULSE_STREAMS__CHECKPOINT_INTERVAL_S=checkpoint,
        KUBEPULSE_ALERTING__NOTIFICATIONS_FILE=str(tmp / f"notifications-{run}.jsonl")),
        stdout=open(tmp / f"worker-{run}.log", "wb"), stderr=subprocess.STDOUT)
    indexer = subprocess.Popen([str(KUBEPULSE), "es", "index"], env=env_for(settings, iport),
                               stdout=open(tmp / f"indexer-{run}.log", "wb"), stderr=subprocess.STDOUT)
    try:
        while counters(wport) is None and worker.poll() is None:  # its /metrics answers: it is up
            await asyncio.sleep(0.2)
        rss_peak = 0
        # CPU from here on: start-up (imports, joining the group) is not what a node-hour costs.
        worker_cpu0, indexer_cpu0 = proc_cpu_s(worker.pid), proc_cpu_s(indexer.pid)
        producing = asyncio.create_task(produce_paced(settings, inp, speedup=speedup))
        while not producing.done():
            rss_peak = max(rss_peak, proc_rss(worker.pid))
            await asyncio.sleep(1.0)
        await producing
        records_in = sum(len(s) for s in inp.steps)
        await wait_caught_up(wport, records=records_in, proc=worker, what="the worker")
        rss_peak = max(rss_peak, proc_rss(worker.pid))
        largest = max(metric(wport, "kubepulse_stream_largest_record_bytes{") or [0])
        worker_cpu = proc_cpu_s(worker.pid) - worker_cpu0
        worker.terminate()  # its shutdown checkpoint is part of what it writes
        worker.wait(timeout=120)
        # The indexer has read everything once its committed offsets reach the topics' ends.
        await _indexer_idle(iport, indexer)
        indexer_cpu = proc_cpu_s(indexer.pid) - indexer_cpu0
    finally:
        for p in (worker, indexer):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
    sizes = log_dir_bytes((settings.kafka.topic_prefix, settings.kafka.consumer_group + "-"))
    inputs = {t: n for t, n in sizes.items() if t.endswith(("metrics.v1", "events.v1", "quotas.v1"))
              and t.startswith(settings.kafka.topic_prefix)}
    written = {t: n for t, n in sizes.items() if t not in inputs and "incidents" not in t}
    with Elasticsearch(settings.elasticsearch.url, request_timeout=1800) as es:
        storage = storage_report(es, settings.elasticsearch.index_prefix, samples=inp.samples)
    node_hours = inp.nodes * hours
    short = {t.removeprefix(settings.kafka.topic_prefix).removeprefix(settings.kafka.consumer_group + "-"): n
             for t, n in sizes.items()}
    return {
        "size": f"{nodes}x{pods}x{containers}",
        "nodes": inp.nodes,
        "hours": hours,
        "samples": inp.samples,
        "samples_per_node_hour": round(inp.samples / node_hours),
        "worker_cpu_s_per_node_hour": round(worker_cpu / node_hours, 3),
        "indexer_cpu_s_per_node_hour": round(indexer_cpu / node_hours, 3),
        "worker_cpu_us_per_sample": round(worker_cpu / inp.samples * 1e6, 3),
        "kafka_bytes_per_node_hour": {t: round(n / node_hours) for t, n in sorted(short.items())},
        "kafka_read_bytes": sum(inputs.values()),
        "kafka_written_bytes": sum(written.values()),
        "write_amplification": round(sum(written.values()) / max(1, sum(inputs.values())), 3),
        "es_docs_per_node_hour": {k: round(v["docs"] / node_hours) for k, v in storage["kinds"].items()},
        "es_bytes_per_node_hour": {k: round(v["bytes"] / node_hours) for k, v in storage["kinds"].items()},
        "es_bytes_per_sample": storage.get("es_bytes_per_sample"),
        "rollup_doc_ratio": storage.get("rollup_doc_ratio"),
        "rollup_byte_ratio": storage.get("rollup_byte_ratio"),
        "worker_rss_peak_bytes": rss_peak,
        "worker_rss_per_node_bytes": round(rss_peak / inp.nodes),
        "largest_record_bytes": int(largest),
        "checkpoint_interval_s": float(checkpoint),
        "speedup": speedup,
    }


async def _indexer_idle(port: int, proc: subprocess.Popen, *, quiet_s: float = 10.0, timeout: float = 1800) -> None:
    """Until the indexer has indexed nothing new for ``quiet_s`` (it has drained every topic)."""
    last, since = -1.0, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the indexer exited with {proc.returncode}")
        n = sum(metric(port, "kubepulse_indexing_docs_indexed_total{"))
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet_s and n > 0:
            return
        await asyncio.sleep(1.0)
    raise SystemExit("the indexer did not finish")


async def recovery(nodes: int, pods: int, containers: int, *, tmp: Path) -> dict:
    """A worker holding ``nodes`` nodes of state is SIGKILLed; seconds from its successor's start to lag 0.

    Input runs at real time throughout (a scrape of each node every 15 s): two minutes before the kill,
    so the state is in the table as a checkpoint interval leaves it, and a minute after.
    """
    run = uuid.uuid4().hex[:8]
    settings = load_settings(kafka={"topic_prefix": f"fleet{run}.", "consumer_group": f"kp-fleet-{run}"},
                             http_port=0)
    inp = simulate(nodes, pods, containers, hours=12 * STEP_S / 3600)
    await create_topics(settings)
    before, after = Input(inp.steps[:8], 0, inp.nodes), Input(inp.steps[8:], 0, inp.nodes)
    port = free_port()
    w1 = subprocess.Popen([str(KUBEPULSE), "worker"], env=env_for(settings, port, KUBEPULSE_STREAMS__DISPATCH_ALERTS="false"),
                          stdout=open(tmp / f"rec1-{run}.log", "wb"), stderr=subprocess.STDOUT)
    try:
        while counters(port) is None and w1.poll() is None:
            await asyncio.sleep(0.2)
        await produce_paced(settings, before, speedup=1.0)
        await wait_caught_up(port, records=sum(len(s) for s in before.steps), proc=w1, what="the first worker")
        held = proc_rss(w1.pid)
    finally:
        w1.kill()
        w1.wait()
    producing = asyncio.create_task(produce_paced(settings, after, speedup=1.0))
    port2 = free_port()
    t0 = time.monotonic()
    w2 = subprocess.Popen([str(KUBEPULSE), "worker"], env=env_for(settings, port2, KUBEPULSE_STREAMS__DISPATCH_ALERTS="false"),
                          stdout=open(tmp / f"rec2-{run}.log", "wb"), stderr=subprocess.STDOUT)
    try:
        caught = None
        while caught is None:
            if w2.poll() is not None:
                raise SystemExit(f"the recovering worker exited with {w2.returncode}")
            lags = metric(port2, "kubepulse_stream_consumer_lag{", labels='.metrics.v1"')
            # Caught up: every metrics partition reported, and none has a record waiting.
            if len(lags) >= settings.kafka.topic_partitions and sum(lags) == 0:
                caught = time.monotonic() - t0
            await asyncio.sleep(0.25)
            if time.monotonic() - t0 > 600:
                raise SystemExit("the recovering worker did not catch up in 600 s")
    finally:
        producing.cancel()
        w2.terminate()
        try:
            w2.wait(timeout=60)
        except subprocess.TimeoutExpired:
            w2.kill()
    return {"recovery_nodes": inp.nodes, "recovery_size": f"{inp.nodes}x{pods}x{containers}",
            "recovery_s": round(caught, 1), "recovery_worker_rss_bytes": held}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="40x30x2,4x250x3", help="comma-separated nodes x pods x containers")
    ap.add_argument("--hours", type=float, default=1.1, help="simulated hours per size (past 1: an hour closes)")
    ap.add_argument("--speedup", type=float, default=30.0, help="input produced at this many times real time")
    ap.add_argument("--recovery-nodes", type=int, default=500)
    ap.add_argument("--recovery-pods", type=int, default=10)
    ap.add_argument("--skip-recovery", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kp-fleet-"))
    results = []
    for size in args.sizes.split(","):
        n, p, c = (int(x) for x in size.split("x"))
        results.append(await run_size(n, p, c, hours=args.hours, speedup=args.speedup, tmp=tmp))
        print(json.dumps(results[-1]), file=sys.stderr)
    out: dict = {"sizes": results, "logs": str(tmp)}
    if len(results) >= 2:
        out["cpu_per_sample_ratio"] = round(results[-1]["worker_cpu_us_per_sample"]
                                            / results[0]["worker_cpu_us_per_sample"], 3)
    out["write_amplification"] = max(r["write_amplification"] for r in results)
    out["es_bytes_per_sample"] = max((r["es_bytes_per_sample"] or 0) for r in results)
    out["rollup_doc_ratio"] = max((r["rollup_doc_ratio"] or 0) for r in results)
    out["largest_record_bytes"] = max(r["largest_record_bytes"] for r in results)
    if not args.skip_recovery:
        out.update(await recovery(args.recovery_nodes, args.recovery_pods, 2, tmp=tmp))
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
