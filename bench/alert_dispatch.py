"""Benchmark: alerts topic -> notifier request received, through the real Kafka and the real dispatcher.

Produces N firing alerts (one group each, ``group_wait: 0``, the setting the
"sample produced -> notifier request <= 1 s" budget assumes) at a steady rate
to a fresh topic prefix, with a webhook receiver on localhost; the latency of
each is the receiver's arrival time minus the time the alert was handed to
the producer. Prints one JSON line last.

    .venv/bin/python bench/alert_dispatch.py --alerts 300 --rate 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

from aiohttp import web
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models._fingerprint import fingerprint  # noqa: E402
from models.codec import encode  # noqa: E402
from models.records import AlertTransition  # noqa: E402
from models.settings import load_settings  # noqa: E402
from streams.alerting import config_from_dict, run_dispatcher  # noqa: E402
from streams.topics import ALERTS  # noqa: E402


async def main(n: int, rate: float) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    settings = load_settings(kafka={"topic_prefix": f"bench{run}.", "consumer_group": f"bench-{run}"}, http_port=0)
    arrivals: dict[str, float] = {}
    done = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        now = time.time()
        body = await request.json()
        for a in body["alerts"]:
            arrivals.setdefault(a["fingerprint"], now)
        if len(arrivals) >= n:
            done.set()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    config = config_from_dict(
        {
            "route": {"receiver": "hook", "group_by": ["..."], "group_wait": 0, "group_interval": "5m"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": f"http://127.0.0.1:{port}/hook"}]}],
        },
        settings=settings,
        environ={},
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_dispatcher(settings, config=config, stop=stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 60)

    producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    sent: dict[str, float] = {}
    from datetime import UTC, datetime

    start = time.time()
    for i in range(n):
        labels = {"alertname": "BenchAlert", "severity": "warning", "cluster": "bench", "namespace": "ns", "pod": f"pod-{i:05d}"}
        t = AlertTransition(
            fingerprint=fingerprint(labels), status="firing", labels=labels, starts_at=datetime.now(UTC), rule="bench"
        )
        sent[t.fingerprint] = time.time()
        await producer.send(ALERTS.named(settings.kafka.topic_prefix), encode(t), key=t.key.encode())
        delay = start + (i + 1) / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
    await producer.flush()
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
        await runner.cleanup()
    lat = sorted(arrivals[fp] - sent[fp] for fp in sent if fp in arrivals)
    q = statistics.quantiles(lat, n=100)
    return {
        "alerts": n,
        "delivered": len(lat),
        "rate_per_s": rate,
        "dispatch_latency_p50_s": round(q[49], 4),
        "dispatch_latency_p99_s": round(q[98], 4),
        "dispatch_latency_max_s": round(lat[-1], 4),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0, help="alerts per second")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.alerts, args.rate))))
