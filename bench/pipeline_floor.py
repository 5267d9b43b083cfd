"""What a Python worker cannot go below: decoding the scrapes and publishing their rollups, against a bare consumer.

``bench/pipeline.py`` compares one worker with a bare aiokafka consumer that
reads the same topic (the budget asks for >= 50 %). This benchmark measures
the two costs every Python worker pays whatever its windows, detectors and
rules do, on the same scrapes, in one run:

- ``decode``: strict validation of each scrape (``models.codec.decode``, what
  the worker does; pydantic-core, compiled), in process, no Kafka;
- ``publish``: sending the rollups those scrapes close (computed beforehand by
  ``streams.pipeline.Pipeline``) through ``streams._publish.BatchPublisher`` and
  an aiokafka producer to the real Kafka, flushed;
- ``bare``: the bare consumer of ``bench/pipeline.py``.

``floor_ratio`` is the best ratio a worker could reach if windows, detectors,
rules and Faust cost nothing: ``1 / (1/decode + 1/publish)`` over ``bare``.

Last line: one JSON object. Run: ``.venv/bin/python bench/pipeline_floor.py [--nodes 40 --steps 16]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from aiokafka import AIOKafkaProducer  # noqa: E402

from kubepulse._cli_streams import create_topics  # noqa: E402
from models.codec import decode  # noqa: E402
from models.records import NodeScrape  # noqa: E402
from models.settings import load_settings  # noqa: E402
from pipeline import bare_consumer, delete_topics, make_scrapes, produce  # noqa: E402
from streams._publish import BatchPublisher  # noqa: E402
from streams.pipeline import Pipeline  # noqa: E402
from streams.topics import METRICS, ROLLUPS  # noqa: E402


def best_of(runs: int, fn) -> float:  # noqa: ANN001 - a no-argument callable
    """The fastest of ``runs`` timings of ``fn()`` (the machine is shared: the minimum is the cost)."""
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=40)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    run = uuid.uuid4().hex[:8]
    settings = load_settings(kafka={"topic_prefix": f"benchfloor{run}.", "consumer_group": f"kp-benchfloor-{run}"})
    await create_topics(settings)
    try:
        msgs, samples, _series = make_scrapes(args.nodes, args.steps)
        await produce(settings, METRICS.named(settings.kafka.topic_prefix), msgs)
        bare_s = min([await bare_consumer(settings, METRICS.named(settings.kafka.topic_prefix), len(msgs))
                      for _ in range(args.runs)])

        values = [v for _, v in msgs]

        def decode_all() -> None:
            for v in values:
                decode(NodeScrape, v)  # dropped at once, as the worker does: keeping 640 scrapes alive costs GC time

        decode_s = best_of(args.runs, decode_all)

        # The rollups these scrapes close, as the worker computes them (windows only: no rules needed here).
        pipe = Pipeline(settings)
        states: dict[str, object] = {}
        rollups: list[list[tuple[str, bytes]]] = []
        for v in values:
            s = decode(NodeScrape, v)
            st = states.get(s.key) or states.setdefault(s.key, pipe.new_state(s.key))
            rollups.append(pipe.process(st, s).rollup_records)  # type: ignore[arg-type]
        n_rollups = sum(len(r) for r in rollups)

        topic = ROLLUPS.named(settings.kafka.topic_prefix)
        producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), linger_ms=5, max_batch_size=512 * 1024,
                                    max_request_size=4 * 1024 * 1024, acks="all")
        await producer.start()
        try:
            pub = BatchPublisher(producer)
            await pub.partitions(topic)
            publish_s = float("inf")
            for _ in range(args.runs):
                t = time.perf_counter()
                for recs in rollups:
                    await pub.publish(topic, recs)
                await producer.flush()
                publish_s = min(publish_s, time.perf_counter() - t)
        finally:
            await producer.stop()
    finally:
        await delete_topics(settings)

    bare, dec, pub_rate = samples / bare_s, samples / decode_s, samples / publish_s
    floor = 1 / (1 / dec + 1 / pub_rate)
    print(json.dumps({
        "bare_consumer_per_s": round(bare),
        "decode_per_s": round(dec),
        "publish_rollups_per_s": round(pub_rate),
        "floor_per_s": round(floor),
        "floor_ratio": round(floor / bare, 3),
        "decode_ms_per_scrape": round(decode_s / len(msgs) * 1000, 3),
        "publish_ms_per_scrape": round(publish_s / len(msgs) * 1000, 3),
        "bare_ms_per_scrape": round(bare_s / len(msgs) * 1000, 3),
        "rollups_per_scrape": round(n_rollups / len(msgs), 1),
        "samples": samples,
        "scrapes": len(msgs),
        "mode": "in-process decode; BatchPublisher + aiokafka to real Kafka; bare aiokafka consumer (best of runs)",
    }))


if __name__ == "__main__":
    asyncio.run(main())
