"""Elasticsearch bytes per sample: a simulated fleet's raw metrics and rollups, indexed, force-merged, measured.

Simulates ``--nodes`` nodes (``--pods`` pods of ``--containers`` containers
each) scraped every 15 s for ``--hours`` hours, turns every scrape into its
metrics documents and, through the worker's own windows (``streams.pipeline``,
no rules or detectors: they do not change what is stored) and cluster sums
(``streams.aggregates.ClusterAggregator``), into the ``kubepulse.rollups.v2``
records the worker publishes for them, 1m and 1h, and indexes the documents
the indexer would write (the default ``elasticsearch.rollups``: which windows
and entity kinds are indexed) into throwaway indices under their own prefix,
with kubepulse's templates. Then ``streams.index.storage_report``: every index
force-merged into one segment, documents and primary bytes per kind, and per
sample.

A sample is what the worker counts: every non-null metric of every entity of
every scrape. Budgets (DESIGN.md): raw + rollups <= 40 bytes per sample;
rollup documents <= 0.25x raw documents, rollup bytes <= 0.25x raw bytes.
The last line is one JSON object. Indexing is the only heavy part; the
measured bytes do not depend on the machine's load.

    .venv/bin/python bench/es_storage.py --nodes 4 --pods 30 --containers 2 --hours 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from elasticsearch import helpers  # noqa: E402

from collectors.simulator import Fleet  # noqa: E402
from models.series import entities  # noqa: E402
from models.settings import Settings, load_settings  # noqa: E402
from models.records import EntityRollup  # noqa: E402
from streams.aggregates import ClusterAggregator  # noqa: E402
from streams.pipeline import Pipeline  # noqa: E402
from streams.index import (  # noqa: E402
    INDEX_KINDS,
    async_client,
    documents_for,
    index_name,
    install_templates,
    storage_report,
    sync_client,
)

T0 = datetime(2026, 3, 2, tzinfo=UTC)
INTERVAL_S = 15


def _install(settings: Settings) -> None:
    async def run() -> None:
        client = async_client(settings)
        try:
            await install_templates(client, settings)
        finally:
            await client.close()

    asyncio.run(run())


def _cleanup(client: object, prefix: str) -> None:
    es = client.options(ignore_status=404)  # type: ignore[attr-defined]
    names = list(es.indices.get(index=f"{prefix}-*", allow_no_indices=True, ignore_unavailable=True).body)
    for i in range(0, len(names), 50):
        es.indices.delete(index=",".join(names[i : i + 50]))
    for kind in INDEX_KINDS:
        es.indices.delete_index_template(name=f"{prefix}-{kind}")
    es.cluster.delete_component_template(name=f"{prefix}-settings")


def run(args: argparse.Namespace) -> dict[str, object]:
    prefix = args.prefix or f"kpbench-storage-{uuid.uuid4().hex[:8]}"
    settings = load_settings(elasticsearch={"index_prefix": prefix})
    client = sync_client(settings, max_retries=3)
    client = client.options(request_timeout=600)
    fleet = Fleet(clusters=args.clusters, nodes_per_cluster=args.nodes, pods_per_node=args.pods, containers_per_pod=args.containers,
                  seed=args.seed, incidents="none")
    rollups_config = settings.elasticsearch.rollups
    # Windows only: detectors and rules add CPU, not documents (anomalies and alerts are a few per day).
    pipeline = Pipeline(settings.model_copy(update={"streams": settings.streams.model_copy(update={"scored_metrics": []})}))
    states: dict[str, object] = {}
    clusters: dict[str, ClusterAggregator] = {}
    samples = scrapes = 0
    cpu0 = time.process_time()
    started = time.perf_counter()
    _install(settings)
    try:
        steps_per_hour = 3600 // INTERVAL_S

        def rollups_of(cluster: str, o: object) -> list[EntityRollup]:
            agg = clusters.setdefault(cluster, ClusterAggregator(cluster, grace_s=settings.streams.window_grace_s))
            sums = [r for p in o.partials for r in agg.add(EntityRollup.model_validate_json(p))]  # type: ignore[attr-defined]
            return [*o.rollups, *sums]  # type: ignore[attr-defined]

        def hour_of(hour: int):  # noqa: ANN202 - a generator of records
            nonlocal samples, scrapes
            for step in range(steps_per_hour):
                out, _, _ = fleet.step(T0 + timedelta(seconds=(hour * steps_per_hour + step) * INTERVAL_S))
                scrapes += len(out)
                for s in out:
                    samples += sum(1 for e in entities(s) for _, v in e.metrics if v is not None)
                    st = states.setdefault(s.key, pipeline.new_state(s.key))
                    yield s
                    yield from rollups_of(s.cluster, pipeline.process(st, s))
            if hour == args.hours - 1:
                # The end of the run: the last hour's open windows close as a forgotten node's do.
                for key, st in states.items():
                    yield from rollups_of(key.split("/", 1)[0], pipeline.flush(st))
                for agg in clusters.values():
                    yield from agg.flush()

        for hour in range(args.hours):
            actions = (
                {"_op_type": "index", "_index": index_name(prefix, d.kind, d.day), "_id": d.id, "_source": d.body}
                for r in hour_of(hour)
                for d in documents_for(r, rollups=rollups_config)
            )
            for ok, item in helpers.streaming_bulk(client, actions, chunk_size=2000, raise_on_error=False):
                if not ok:
                    raise SystemExit(f"Elasticsearch rejected a document: {item}")
            print(f"hour {hour + 1}/{args.hours}: {scrapes} scrapes indexed so far", file=sys.stderr, flush=True)
        report = storage_report(client, prefix, samples=samples)
    finally:
        if not args.keep:
            _cleanup(client, prefix)
        client.close()
    node_hours = args.clusters * args.nodes * args.hours
    return {
        "node_hours": node_hours,
        "nodes": args.clusters * args.nodes,
        "pods_per_node": args.pods,
        "containers_per_pod": args.containers,
        "scrapes": scrapes,
        "samples": samples,
        "samples_per_node_hour": round(samples / node_hours),
        **{k: report[k] for k in ("es_bytes_per_sample", "raw_bytes_per_sample", "rollup_bytes_per_sample", "rollup_doc_ratio", "rollup_byte_ratio")},
        "es_bytes_per_node_hour": round(report["bytes"] / node_hours),
        "kinds": report["kinds"],
        "bench_cpu_s": round(time.process_time() - cpu0, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "prefix": prefix if args.keep else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clusters", type=int, default=1)
    p.add_argument("--nodes", type=int, default=4, help="nodes per cluster")
    p.add_argument("--pods", type=int, default=30, help="pods per node")
    p.add_argument("--containers", type=int, default=2, help="containers per pod")
    p.add_argument("--hours", type=int, default=2, help="simulated hours (each one indexed, then the next generated)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--prefix", help="index prefix (default: a fresh kpbench-storage-<id>)")
    p.add_argument("--keep", action="store_true", help="keep the indices afterwards (to look at them)")
    print(json.dumps(run(p.parse_args())))


if __name__ == "__main__":
    main()
