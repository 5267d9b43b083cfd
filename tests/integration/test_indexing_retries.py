"""The bulk indexer retries what Elasticsearch asks it to (429, 503, per-item 429) and indexes each document once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from models.codec import encode
from prometheus_client import REGISTRY

from models.codec import decode
from models.records import DeadLetter, NodeScrape
from models.settings import Settings
from streams._metrics_indexing import HEALTH
from streams._samples import node_scrape
from streams.deadletter import original_payload
from streams.index import alias_name, async_client, documents_for, index_name
from streams.indexing import Indexer, SourceMessage
from streams.topics import METRICS
from tests.indexingutil import cleanup_es, count

pytestmark = pytest.mark.asyncio(loop_scope="session")


class FaultInjector:
    """An HTTP proxy in front of the real Elasticsearch that answers chosen ``_bulk`` requests itself.

    Everything else, and every bulk request not picked, reaches the real
    server: the injector only plays the overloaded node (``429`` with ES's
    own error body, a ``503``) or rewrites one item of a real response to
    ``429``, the way a full write queue rejects single documents.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.whole: list[int] = []
        """Statuses to answer the next bulk requests with, instead of forwarding them."""
        self.item_429: int = 0
        """How many of the next forwarded bulk responses get their first item turned into a 429."""
        self.garbage: bytes | None = None
        """Bulk requests whose body contains this are answered ``200`` with a body that is not JSON (b"" for all)."""
        self.garbage_replies = 0
        self.bulk_requests = 0
        self.url = ""

    async def start(self) -> None:
        app = web.Application(client_max_size=200 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def close(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        bulk = request.path.endswith("/_bulk")
        if bulk:
            self.bulk_requests += 1
            if self.garbage is not None and self.garbage in body:
                # What a proxy's error page or a truncated reply looks like to the client: a 200 that does not parse.
                self.garbage_replies += 1
                return web.Response(body=b"<html><body>502 Bad Gateway</body></html>", status=200,
                                    headers={"X-Elastic-Product": "Elasticsearch", "Content-Type": "application/json"})
            if self.whole:
                status = self.whole.pop(0)
                error = {
                    "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"},
                    "status": status,
                }
                return web.json_response(error, status=status, headers={"X-Elastic-Product": "Elasticsearch"})
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(request.method, self.upstream + request.path_qs, data=body, headers=headers) as up:
            data = await up.read()
            out_headers = {k: v for k, v in up.headers.items() if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")}
            if bulk and self.item_429 and up.status == 200:
                self.item_429 -= 1
                doc = orjson.loads(data)
                first = next(iter(doc["items"][0].values()))
                first.update(status=429, error={"type": "es_rejected_execution_exception", "reason": "queue full"})
                doc["errors"] = True
                data = orjson.dumps(doc)
            return web.Response(body=data, status=up.status, headers=out_headers)


@pytest.fixture
async def injector(settings: Settings, stack: dict[str, str]) -> AsyncIterator[FaultInjector]:
    inj = FaultInjector(settings.elasticsearch.url)
    await inj.start()
    direct = async_client(settings, max_retries=2)
    try:
        yield inj
    finally:
        await inj.close()
        await cleanup_es(direct, settings)
        await direct.close()


async def test_429_and_503_answers_and_a_rejected_item_are_retried_until_every_document_is_indexed_once(
    settings: Settings, injector: FaultInjector
) -> None:
    letters: list[DeadLetter] = []

    async def sink(batch: object) -> None:
        letters.extend(batch)  # type: ignore[arg-type]

    indexer = Indexer(settings, dead_letter=sink, url=injector.url, backoff_initial=0.05, backoff_max=0.2)
    topic = METRICS.named(settings.kafka.topic_prefix)
    scrapes = [node_scrape(node=f"n{i}", pods=3, containers=2) for i in range(4)]
    msgs = [SourceMessage(topic, 0, i, s.key.encode(), encode(s)) for i, s in enumerate(scrapes)]
    expected = sum(len(documents_for(s)) for s in scrapes)
    try:
        await indexer.setup(wait=False)
        injector.bulk_requests = 0
        injector.whole = [429, 503]
        injector.item_429 = 1
        report = await indexer.process(msgs)
    finally:
        await indexer.close()
    # 429, then 503, then a real bulk with one item turned into a 429, then that one item again.
    assert injector.bulk_requests == 4
    assert report.retries == 3
    assert (report.documents, report.indexed, report.dead_letters) == (expected, expected, 0)
    assert letters == []
    direct = async_client(settings)
    try:
        assert await count(direct, alias_name(settings, "metrics")) == expected
    finally:
        await direct.close()


def _sink(letters: list[DeadLetter]):  # noqa: ANN202 - a DeadLetterSink
    async def sink(batch: object) -> None:
        letters.extend(batch)  # type: ignore[arg-type]

    return sink


def _messages(settings: Settings, scrapes: list) -> list[SourceMessage]:
    topic = METRICS.named(settings.kafka.topic_prefix)
    return [SourceMessage(topic, 0, i, s.key.encode(), encode(s)) for i, s in enumerate(scrapes)]


async def test_a_document_the_client_cannot_serialise_is_dead_lettered_with_its_message_and_the_rest_indexed(
    settings: Settings, injector: FaultInjector
) -> None:
    """An integer beyond 64 bits is a valid record (a non-negative int) that no JSON encoder of the client writes:
    the bulk request cannot even be built. It used to be taken for an unreachable Elasticsearch and retried forever."""
    scrapes = [node_scrape(node=f"n{i}", pods=2, containers=1) for i in range(3)]
    scrapes[1].pods[1].volumes[0].inodes_free = 2**70
    letters: list[DeadLetter] = []
    indexer = Indexer(settings, dead_letter=_sink(letters), url=injector.url, backoff_initial=0.05, backoff_max=0.2)
    expected = sum(len(documents_for(s)) for s in scrapes)
    try:
        await indexer.setup(wait=False)
        # A safety net against the old endless retry, not a speed check.
        report = await asyncio.wait_for(indexer.process(_messages(settings, scrapes)), 120)
    finally:
        await indexer.close()
    assert (report.documents, report.indexed, report.dead_letters) == (expected, expected - 1, 1)
    (dl,) = letters
    assert (dl.stage, dl.offset, dl.key, dl.error_type) == ("indexing", 1, scrapes[1].key, "serialization")
    assert "metrics document could not be indexed" in dl.reason and "64-bit" in dl.reason, dl.reason
    assert decode(NodeScrape, original_payload(dl)) == scrapes[1]
    assert await _metrics_docs(settings) == expected - 1


async def test_a_document_that_always_gets_a_non_json_reply_is_found_by_halving_and_dead_lettered_alone(
    settings: Settings, injector: FaultInjector
) -> None:
    scrapes = [node_scrape(node=f"n{i}", pods=3, containers=2) for i in range(4)]
    scrapes[2].pods[0].containers[1].name = "poison"
    letters: list[DeadLetter] = []
    indexer = Indexer(settings, dead_letter=_sink(letters), url=injector.url, backoff_initial=0.02, backoff_max=0.05)
    expected = sum(len(documents_for(s)) for s in scrapes)
    failed_before = _sample("kubepulse_indexing_bulk_failed_total")
    try:
        await indexer.setup(wait=False)
        injector.garbage = b'"poison"'
        report = await asyncio.wait_for(indexer.process(_messages(settings, scrapes)), 120)
    finally:
        await indexer.close()
    # Three tries of the whole request, then halves down to the one document, which gets three tries alone.
    assert injector.garbage_replies >= 6
    assert _sample("kubepulse_indexing_bulk_failed_total") == failed_before + 1
    assert (report.indexed, report.dead_letters) == (expected - 1, 1)
    (dl,) = letters
    assert (dl.offset, dl.error_type) == (2, "bad_reply") and "not JSON" in dl.reason, dl
    assert decode(NodeScrape, original_payload(dl)) == scrapes[2]
    assert HEALTH.ready()
    assert await _metrics_docs(settings) == expected - 1


async def test_non_json_replies_to_every_request_hold_the_batch_not_ready_and_lose_nothing(
    settings: Settings, injector: FaultInjector
) -> None:
    """A proxy answering every bulk request with its own page is the cluster's state: nothing is the documents' fault."""
    scrapes = [node_scrape(node=f"n{i}", pods=2, containers=1) for i in range(3)]
    letters: list[DeadLetter] = []
    indexer = Indexer(settings, dead_letter=_sink(letters), url=injector.url, backoff_initial=0.02, backoff_max=0.05)
    expected = sum(len(documents_for(s)) for s in scrapes)
    try:
        await indexer.setup(wait=False)
        injector.garbage = b""
        task = asyncio.ensure_future(indexer.process(_messages(settings, scrapes)))
        while injector.garbage_replies < 20:
            await asyncio.sleep(0.05)
        assert not task.done(), "a batch that got no JSON reply was given up"
        assert not HEALTH.ready() and "bad_reply" in (HEALTH.problem or "")
        assert _sample("kubepulse_indexing_docs_held") >= 1
        injector.garbage = None
        report = await asyncio.wait_for(task, 120)
    finally:
        await indexer.close()
    assert (report.indexed, report.dead_letters, letters) == (expected, 0, [])
    assert HEALTH.ready()


async def _wait_requests(injector: FaultInjector, n: int) -> None:
    while injector.bulk_requests < n:
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("fault", ["write_block", "closed_index"])
async def test_a_write_block_or_a_closed_index_holds_the_documents_until_it_is_lifted_and_dead_letters_none(
    settings: Settings, injector: FaultInjector, fault: str
) -> None:
    """Flood-stage disk puts a write block on indices (403 cluster_block_exception per item); a closed index answers
    400 index_closed_exception. Both are the cluster's state: the documents wait, they are not the documents' fault."""
    scrapes = [node_scrape(node=f"n{i}", pods=2, containers=1) for i in range(3)]
    letters: list[DeadLetter] = []
    indexer = Indexer(settings, dead_letter=_sink(letters), url=injector.url, backoff_initial=0.02, backoff_max=0.05)
    expected = sum(len(documents_for(s)) for s in scrapes)
    (index,) = {index_name(settings.elasticsearch.index_prefix, d.kind, d.day) for s in scrapes for d in documents_for(s)}
    direct = async_client(settings, max_retries=2)
    reason = "blocked" if fault == "write_block" else "index_missing"
    held_before = _sample("kubepulse_indexing_docs_retried_total", reason=reason)
    try:
        await indexer.setup(wait=False)
        await direct.indices.create(index=index)
        if fault == "write_block":
            await direct.indices.put_settings(index=index, settings={"index.blocks.write": True})
        else:
            await direct.indices.close(index=index)
        injector.bulk_requests = 0
        task = asyncio.ensure_future(indexer.process(_messages(settings, scrapes)))
        await _wait_requests(injector, 5)
        assert not task.done(), f"documents refused because of a {fault} were given up"
        assert not HEALTH.ready() and reason in (HEALTH.problem or "")
        assert _sample("kubepulse_indexing_docs_retried_total", reason=reason) >= held_before + 4 * expected
        assert letters == []
        if fault == "write_block":
            await direct.indices.put_settings(index=index, settings={"index.blocks.write": None})
        else:
            await direct.indices.open(index=index, wait_for_active_shards=1)
        report = await asyncio.wait_for(task, 120)
        assert (report.indexed, report.dead_letters, letters) == (expected, 0, [])
        assert await count(direct, alias_name(settings, "metrics")) == expected
        assert HEALTH.ready()
    finally:
        await indexer.close()
        await direct.close()


async def _metrics_docs(settings: Settings) -> int:
    direct = async_client(settings)
    try:
        return await count(direct, alias_name(settings, "metrics"))
    finally:
        await direct.close()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
