"""Indexing throughput: the indexer's path against a bare ``helpers.bulk`` loop, same documents, same run.

Three sides index the same node scrapes, each into its own throwaway indices
with the same mappings and chunk size:

* ``indexer``: the records the agent would get, through ``Indexer.index_records``
  (build the documents, bulk them pipelined, retries, dead-lettering);
* ``from_bytes``: the same from the records' Kafka bytes (``Indexer.process``:
  strict decode included), reported beside it;
* ``bare``: the finished documents, built before the clock starts, through the
  blocking client's ``helpers.bulk``.

The sides rotate over ``--rounds`` so a busy neighbour on the machine hurts
each alike. Budget (DESIGN.md): the indexer at >= 80% of the baseline. The
last line printed is one JSON object: indexer_docs_per_s,
bare_bulk_docs_per_s, ratio, docs (and the from-bytes figures).

    .venv/bin/python bench/indexing.py --docs 40000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from elasticsearch import helpers  # noqa: E402

from models.codec import encode  # noqa: E402
from models.records import NodeScrape  # noqa: E402
from models.settings import Settings, load_settings  # noqa: E402
from streams.index import INDEX_KINDS, async_client, documents_for, index_name, install_templates, sync_client  # noqa: E402
from streams._samples import node_scrape  # noqa: E402
from streams.indexing import Indexer, Origin, SourceMessage  # noqa: E402
from streams.topics import METRICS  # noqa: E402


async def _indexer_round(settings: Settings, records: list[NodeScrape], *, from_bytes: bool) -> tuple[int, float]:
    async def no_dead_letters(letters: object) -> None:
        raise AssertionError(f"unexpected dead letters: {letters}")

    indexer = Indexer(settings, dead_letter=no_dead_letters)
    topic = METRICS.named(settings.kafka.topic_prefix)
    try:
        await indexer.setup(wait=False)
        batch = settings.elasticsearch.bulk_max_docs
        if from_bytes:
            msgs = [SourceMessage(topic, 0, i, r.key.encode(), encode(r)) for i, r in enumerate(records)]
        else:
            pairs = [(r, Origin(topic, 0, i, r.key)) for i, r in enumerate(records)]
        started = time.perf_counter()
        indexed = 0
        # Batches of records as the agent takes them (bulk_max_docs messages at most).
        for i in range(0, len(records), batch):
            if from_bytes:
                indexed += (await indexer.process(msgs[i : i + batch])).indexed
            else:
                indexed += (await indexer.index_records(pairs[i : i + batch])).indexed
        return indexed, time.perf_counter() - started
    finally:
        await indexer.close()


def _bare_round(settings: Settings, actions: list[dict]) -> tuple[int, float]:
    client = sync_client(settings)
    try:
        started = time.perf_counter()
        ok, errors = helpers.bulk(client, actions, chunk_size=settings.elasticsearch.bulk_max_docs, max_chunk_bytes=100 * 2**20)
        elapsed = time.perf_counter() - started
        assert not errors, errors
        return ok, elapsed
    finally:
        client.close()


async def _install(settings: Settings) -> None:
    client = async_client(settings)
    try:
        await install_templates(client, settings)
    finally:
        await client.close()


async def _cleanup(settings: Settings) -> None:
    client = async_client(settings)
    prefix = settings.elasticsearch.index_prefix
    try:
        names = list((await client.indices.get(index=f"{prefix}-*", allow_no_indices=True, ignore_unavailable=True)).body)
        for i in range(0, len(names), 50):
            await client.indices.delete(index=",".join(names[i : i + 50]))
        for kind in INDEX_KINDS:
            await client.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-{kind}")
        await client.options(ignore_status=404).cluster.delete_component_template(name=f"{prefix}-settings")
    finally:
        await client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=40_000, help="documents per side (rounded up to whole node scrapes)")
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds; each side indexes docs/rounds per round")
    args = ap.parse_args()

    run = uuid.uuid4().hex[:8]
    prefixes = {side: load_settings(elasticsearch={"index_prefix": f"kp-bench-{run}-{side}"}, http_port=0) for side in SIDES}
    per_scrape = len(documents_for(node_scrape(pods=30, containers=2)))
    scrapes_per_round = max(1, -(-args.docs // (per_scrape * args.rounds)))

    totals = {side: [0, 0.0] for side in SIDES}
    for settings in prefixes.values():
        asyncio.run(_install(settings))
    try:
        # Warm-up, not timed: every side creates its daily index and opens its connections.
        warm = [node_scrape(node="warm-up", pods=2, containers=1)]
        for side in SIDES:
            _run_side(side, prefixes[side], warm)
        for r in range(args.rounds):
            # Fresh records per round (new node names): every round writes new documents, never overwrites.
            records = [node_scrape(node=f"r{r}-n{i}", pods=30, containers=2, seq=i) for i in range(scrapes_per_round)]
            # Rotate who goes first, so a busy neighbour on the machine hurts every side alike.
            order = SIDES[r % len(SIDES) :] + SIDES[: r % len(SIDES)]
            for side in order:
                cpu = time.process_time()
                n, secs = _run_side(side, prefixes[side], records)
                cpu = time.process_time() - cpu
                totals[side][0] += n
                totals[side][1] += secs
                print(f"round {r} {side:10} {n:7d} docs {secs:6.2f} s {n / secs:9.0f} docs/s  client cpu {cpu:5.2f} s", file=sys.stderr)
    finally:
        for settings in prefixes.values():
            asyncio.run(_cleanup(settings))

    rate = {side: totals[side][0] / totals[side][1] for side in SIDES}
    print(
        json.dumps(
            {
                "indexer_docs_per_s": round(rate["indexer"]),
                "bare_bulk_docs_per_s": round(rate["bare"]),
                "ratio": round(rate["indexer"] / rate["bare"], 3),
                "docs": totals["indexer"][0],
                # The same path from the records' bytes (decode included), as the agent reads Kafka.
                "indexer_from_bytes_docs_per_s": round(rate["from_bytes"]),
                "from_bytes_ratio": round(rate["from_bytes"] / rate["bare"], 3),
            }
        )
    )


SIDES = ["bare", "indexer", "from_bytes"]


def _run_side(side: str, settings: Settings, records: list[NodeScrape]) -> tuple[int, float]:
    if side == "bare":
        prefix = settings.elasticsearch.index_prefix
        # The baseline gets finished documents: building them is not timed.
        actions = [
            {"_op_type": "index", "_index": index_name(prefix, d.kind, d.day), "_id": d.id, "_source": d.body}
            for s in records
            for d in documents_for(s)
        ]
        return _bare_round(settings, actions)
    return asyncio.run(_indexer_round(settings, records, from_bytes=side == "from_bytes"))


if __name__ == "__main__":
    main()
