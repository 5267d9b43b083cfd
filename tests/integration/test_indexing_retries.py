"""The bulk indexer retries what Elasticsearch asks it to (429, 503, per-item 429) and indexes each document once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from models.codec import encode
from models.records import DeadLetter
from models.settings import Settings
from streams._samples import node_scrape
from streams.index import alias_name, async_client, documents_for
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
