"""Benchmark of one real worker process on the local Kafka: windows + detectors + rules, against a bare consumer.

In one run, on a throwaway topic prefix:

1. produces simulated node scrapes (``collectors.simulator.Fleet``, 30 pods x 2
   containers per node, 15 s apart in simulated time) to kubepulse.metrics.v1;
2. times a bare aiokafka consumer reading that topic (bytes only, nothing decoded), and, as a
   second reference, the same consumer validating each scrape (``models.codec.decode``);
3. starts one ``kubepulse worker`` subprocess (the real Faust worker, default rule
   pack plus one marker rule) and times it from the first to the last sample
   processed, read from its own Prometheus counter (``/metrics``), with its RSS
   and CPU time from /proc;
4. once it is caught up, produces marker scrapes at a steady rate whose value
   crosses a threshold rule without ``for`` (firing, then resolved), and measures
   produce -> transition received from kubepulse.alerts.v1.

Last line: one JSON object. Run: ``.venv/bin/python bench/pipeline.py [--nodes 40 --steps 16]``.
The machine is shared: ``worker_cpu_s`` and ``samples_per_worker_cpu_s`` say how
much of the wall time the worker actually got a core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from collectors.simulator import Fleet  # noqa: E402
from kubepulse._cli_streams import create_topics  # noqa: E402
from models.codec import decode, encode  # noqa: E402
from models.records import AlertTransition, NodeSample, NodeScrape  # noqa: E402
from models.series import entities  # noqa: E402
from models.settings import Settings, load_settings  # noqa: E402
from streams.rules import default_rules_path  # noqa: E402
from streams.topics import ALERTS, METRICS  # noqa: E402

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MARKER_RULE = """groups:
  - name: bench-marker
    rules:
      - alert: BenchMarker
        metric: node.cpu_cores
        matchers: ['node=~"marker-.*"']
        op: ">"
        threshold: 1000
        severity: info
"""
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def proc_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def counters(port: int) -> tuple[float, float, float] | None:
    """(samples in, scrapes in, dead letters) from the worker's /metrics; None until it serves them."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    samples = records = dead = 0.0
    for line in body.splitlines():
        if line.startswith("kubepulse_stream_samples_in_total "):
            samples = float(line.split()[1])
        elif line.startswith("kubepulse_stream_records_in_total{") and ".metrics.v1" in line:
            records += float(line.split()[-1])
        elif line.startswith("kubepulse_stream_dead_letters_total{"):
            dead += float(line.split()[-1])
    return samples, records, dead


def make_scrapes(nodes: int, steps: int, *, pods: int = 30, containers: int = 2) -> tuple[list[tuple[bytes, bytes]], int, int]:
    fleet = Fleet(clusters=1, nodes_per_cluster=nodes, pods_per_node=pods, containers_per_pod=containers, seed=7,
                  incident_every_s=120)
    msgs: list[tuple[bytes, bytes]] = []
    samples = 0
    series: set[str] = set()
    for i in range(steps):
        scrapes, _, _ = fleet.step(T0 + timedelta(seconds=15 * i))
        for s in scrapes:
            for e in entities(s):
                for m, v in e.metrics:
                    if v is not None:
                        samples += 1
                        series.add(e.prefix + m)
            msgs.append((s.key.encode(), encode(s)))
    return msgs, samples, len(series)


async def produce(settings: Settings, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    # Compressed, as the collector sends them (kafka.compression_type).
    producer = AIOKafkaProducer(**settings.kafka.producer_kwargs(max_request_size=8 << 20, max_batch_size=1 << 20,
                                                                 linger_ms=20))
    await producer.start()
    try:
        futs = [await producer.send(topic, v, key=k) for k, v in msgs]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def bare_consumer(settings: Settings, topic: str, count: int, *, decode_values: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to read ``count`` records, strictly decoding each if asked."""
    c = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), group_id=None, enable_auto_commit=False,
                         max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await c._client._wait_on_metadata(topic))]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        got = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while got < count:
            for msgs in (await c.getmany(timeout_ms=1000)).values():
                got += len(msgs)
                if decode_values:
                    for m in msgs:
                        decode(NodeScrape, m.value)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        await c.stop()


async def watch_alerts(settings: Settings, found: dict[tuple[str, float], float], stop: asyncio.Event) -> None:
    """Record when each BenchMarker transition arrives: (status, its data time) -> wall time received."""
    topic = ALERTS.named(settings.kafka.topic_prefix)
    c = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), group_id=None, enable_auto_commit=False,
                         fetch_max_wait_ms=20, auto_offset_reset="earliest")
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await c._client._wait_on_metadata(topic))]
        c.assign(tps)
        await c.seek_to_end(*tps)
        while not stop.is_set():
            for msgs in (await c.getmany(timeout_ms=100)).values():
                now = time.time()
                for m in msgs:
                    t = decode(AlertTransition, m.value)
                    if t.labels.get("alertname") == "BenchMarker":
                        at = t.starts_at if t.status == "firing" else t.ends_at
                        found[(t.status, at.timestamp())] = now
    finally:
        await c.stop()


async def alert_latency(settings: Settings, *, markers: int, rate: float) -> list[float]:
    topic = METRICS.named(settings.kafka.topic_prefix)
    found: dict[tuple[str, float], float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_alerts(settings, found, stop))
    await asyncio.sleep(1.0)  # the watcher is at the end of the alerts topic
    producer = AIOKafkaProducer(**settings.kafka.producer_kwargs(linger_ms=0))
    await producer.start()
    sent: dict[tuple[str, float], float] = {}
    try:
        base = T0 + timedelta(days=1)
        for i in range(markers):
            # One marker node alternating above and below the threshold: a firing, then a resolved.
            ts = base + timedelta(seconds=15 * i)
            status = "firing" if i % 2 == 0 else "resolved"
            s = NodeScrape(cluster="bench", node="marker-0", timestamp=ts, source="simulator",
                           node_stats=NodeSample(cpu_cores=5000.0 if status == "firing" else 1.0))
            sent[(status, ts.timestamp())] = time.time()
            await (await producer.send(METRICS.named(settings.kafka.topic_prefix), encode(s), key=s.key.encode()))
            await asyncio.sleep(1.0 / rate)
        deadline = time.monotonic() + 15
        while len(found) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()
        stop.set()
        await watcher
    del topic
    missing = [k for k in sent if k not in found]
    if missing:
        print(f"warning: {len(missing)} of {len(sent)} marker transitions not seen", file=sys.stderr)
    in_order = [round(found[k] - sent[k], 3) for k in sent if k in found]
    print(f"alert latencies in send order (s): {in_order}", file=sys.stderr)
    return sorted(in_order)


async def delete_topics(settings: Settings) -> None:
    """Remove this run's topics (its prefix, and Faust's changelogs named after the consumer group)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics()
                if t.startswith((settings.kafka.topic_prefix, settings.kafka.consumer_group + "-"))]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def _gc_pauses(port: int) -> dict[str, float]:
    """The worker's full garbage collections so far: how many, and their total seconds (its /metrics)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    out = {"count": 0.0, "sum_s": 0.0}
    for line in body.splitlines():
        if line.startswith('kubepulse_stream_gc_pause_seconds_count{generation="2"}'):
            out["count"] = float(line.split()[-1])
        elif line.startswith('kubepulse_stream_gc_pause_seconds_sum{generation="2"}'):
            out["sum_s"] = round(float(line.split()[-1]), 3)
    return out


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=40)
    ap.add_argument("--steps", type=int, default=32, help="scrapes per node (15 s apart in simulated time)")
    ap.add_argument("--pods", type=int, default=30, help="pods per node")
    ap.add_argument("--containers", type=int, default=2, help="containers per pod")
    ap.add_argument("--markers", type=int, default=60)
    ap.add_argument("--marker-rate", type=float, default=4.0, help="marker scrapes per second")
    ap.add_argument("--cluster-aggregates", choices=("on", "off"), default=None,
                    help="streams.cluster_aggregates for the worker (default: the settings' default)")
    ap.add_argument("--py-spy", metavar="FILE", help="record the worker with py-spy (collapsed stacks) into FILE")
    ap.add_argument("--worker-root", metavar="DIR", type=Path,
                    help="run the worker from another checkout (e.g. `git archive` of an older commit) for a before/after")
    args = ap.parse_args()

    run = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="kp-bench-"))
    marker_rules = tmp / "marker_rules.yaml"
    marker_rules.write_text(MARKER_RULE)
    # An older checkout (--worker-root) gets its own default pack: newer rules may use metrics it does not know.
    default_pack = (args.worker_root / "streams/_rules/default_rules.yaml") if args.worker_root else default_rules_path()
    rules_files = [str(default_pack), str(marker_rules)]
    port = free_port()
    settings = load_settings(kafka={"topic_prefix": f"bench{run}.", "consumer_group": f"kp-bench-{run}"},
                             streams={"rules_files": rules_files}, http_port=port)
    await create_topics(settings)
    topic = METRICS.named(settings.kafka.topic_prefix)

    t = time.perf_counter()
    msgs, samples, series = make_scrapes(args.nodes, args.steps, pods=args.pods, containers=args.containers)
    print(f"generated {len(msgs)} scrapes, {samples} samples, {series} series in {time.perf_counter() - t:.1f} s",
          file=sys.stderr)
    await produce(settings, topic, msgs)
    bare_s, _ = await bare_consumer(settings, topic, len(msgs))
    # The budget's reference: the same consumer that also strictly validates each scrape (models.codec.decode,
    # the records' pydantic models), timed in CPU seconds like the worker.
    decoding_s, decoding_cpu_s = await bare_consumer(settings, topic, len(msgs), decode_values=True)
    print(f"bare consumer: {bare_s:.2f} s, decoding consumer: {decoding_s:.2f} s ({decoding_cpu_s:.2f} CPU-s)",
          file=sys.stderr)

    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEPULSE_")}
    env.update(
        KUBEPULSE_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        KUBEPULSE_KAFKA__TOPIC_PREFIX=settings.kafka.topic_prefix,
        KUBEPULSE_KAFKA__CONSUMER_GROUP=settings.kafka.consumer_group,
        KUBEPULSE_STREAMS__RULES_FILES=json.dumps(rules_files),
        KUBEPULSE_HTTP_PORT=str(port),
        KUBEPULSE_LOG_LEVEL="WARNING",
    )
    if args.cluster_aggregates:
        env["KUBEPULSE_STREAMS__CLUSTER_AGGREGATES"] = "true" if args.cluster_aggregates == "on" else "false"
    aggregates_on = (args.cluster_aggregates == "on") if args.cluster_aggregates else settings.streams.cluster_aggregates
    log = open(tmp / "worker.log", "wb")
    cmd, cwd = [str(Path(sys.executable).parent / "kubepulse"), "worker"], ROOT
    if args.worker_root:
        cmd, cwd = [sys.executable, "-m", "kubepulse.cli", "worker"], args.worker_root.resolve()
        env["PYTHONPATH"] = str(cwd)
    worker = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    spy: subprocess.Popen | None = None
    try:
        # Wait for the worker's /metrics (the counter exists, still 0: partitions not yet assigned).
        while counters(port) is None:
            if worker.poll() is not None:
                raise SystemExit(f"worker exited: {(tmp / 'worker.log').read_text()[-3000:]}")
            await asyncio.sleep(0.1)
        pid = worker.pid
        rss0 = proc_rss(pid)
        first: tuple[float, float, float] | None = None
        last = (0.0, 0.0, 0.0)
        deadline = time.monotonic() + 900
        dead = 0.0
        while time.monotonic() < deadline:
            n, records, dead = counters(port) or (0.0, 0.0, 0.0)
            now = time.perf_counter()
            if n > 0 and first is None:
                first = (now, n, proc_cpu_s(pid))
                rss0 = min(rss0, proc_rss(pid))
                if args.py_spy:  # profile the processing only, not start-up or the alert phase
                    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-r", "100", "-f",
                                            "raw", "-o", args.py_spy, "-p", str(pid)], stdout=subprocess.DEVNULL)
            # Done when every sample is in, or every scrape was read and some failed (dead letters:
            # reported, and the rate is then of the samples that went through).
            stalled = records >= len(msgs) and dead > 0 and n == last[1] and now - last[0] > 1.0
            if n >= samples or stalled:
                last = (last[0] if stalled else now, n, proc_cpu_s(pid))
                if spy is not None:
                    spy.send_signal(2)  # py-spy writes its file on SIGINT
                    spy.wait(timeout=60)
                break
            if n != last[1]:
                last = (now, n, 0.0)
            await asyncio.sleep(0.1)
        else:
            raise SystemExit(f"worker did not finish: {(tmp / 'worker.log').read_text()[-3000:]}")
        rss1 = proc_rss(pid)
        gc_full = _gc_pauses(port)
        assert first is not None
        wall = last[0] - first[0]
        done = last[1] - first[1]
        cpu = last[2] - first[2]
        lat = await alert_latency(settings, markers=args.markers, rate=args.marker_rate)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        await delete_topics(settings)
    samples_per_s = done / wall
    bare_per_s = samples / bare_s
    print(json.dumps({
        "samples_per_s": round(samples_per_s),
        "bare_consumer_per_s": round(bare_per_s),
        "bare_ratio": round(samples_per_s / bare_per_s, 3),
        "alert_latency_p50_s": None if not lat else round(statistics.median(lat), 4),
        "alert_latency_p99_s": None if not lat else round(pct(lat, 0.99), 4),
        "alert_latency_max_s": None if not lat else round(lat[-1], 4),
        "series": series,
        "rss_bytes_per_series": round(max(0, rss1 - rss0) / series),
        "decoding_consumer_per_s": round(samples / decoding_s),
        "decoding_consumer_per_cpu_s": round(samples / decoding_cpu_s),
        "decoding_ratio": round((done / cpu) / (samples / decoding_cpu_s), 3) if cpu else None,
        "pods_per_node": args.pods,
        "containers_per_pod": args.containers,
        "dead_letters": int(dead),
        "samples": samples,
        "scrapes": len(msgs),
        "worker_wall_s": round(wall, 2),
        "worker_cpu_s": round(cpu, 2),
        "samples_per_worker_cpu_s": round(done / cpu) if cpu else None,
        "alert_transitions_measured": len(lat),
        "full_gc_during_processing": gc_full,
        "cluster_aggregates": aggregates_on,
        "mode": "one `kubepulse worker` subprocess (Faust), default rule pack + marker rule, real Kafka",
        "worker_root": str(args.worker_root or ROOT),
    }))


if __name__ == "__main__":
    asyncio.run(main())
