"""Helpers for the indexing tests: a real ``kubepulse es index`` process, Elasticsearch clean-up and waits, a cuttable TCP proxy."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from elasticsearch import ApiError, AsyncElasticsearch

from models.settings import Settings
from streams.index import INDEX_KINDS

ROOT = Path(__file__).resolve().parent.parent
KUBEPULSE = Path(sys.executable).parent / "kubepulse"


def indexer_env(settings: Settings, *, es_url: str | None = None) -> dict[str, str]:
    """The environment that gives ``kubepulse es index`` the test's settings (prefixes, group, Elasticsearch)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEPULSE_")}
    env.update(
        KUBEPULSE_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        KUBEPULSE_KAFKA__TOPIC_PREFIX=settings.kafka.topic_prefix,
        KUBEPULSE_KAFKA__CONSUMER_GROUP=settings.kafka.consumer_group,
        KUBEPULSE_KAFKA__TOPIC_PARTITIONS=str(settings.kafka.topic_partitions),
        KUBEPULSE_ELASTICSEARCH__URL=es_url or settings.elasticsearch.url,
        KUBEPULSE_ELASTICSEARCH__INDEX_PREFIX=settings.elasticsearch.index_prefix,
        KUBEPULSE_ELASTICSEARCH__BULK_MAX_DOCS=str(settings.elasticsearch.bulk_max_docs),
        KUBEPULSE_ELASTICSEARCH__BULK_MAX_SECONDS=str(settings.elasticsearch.bulk_max_seconds),
        KUBEPULSE_HTTP_PORT="0",
        KUBEPULSE_LOG_LEVEL="INFO",
    )
    return env


class IndexerProcess:
    """A ``kubepulse es index`` subprocess (the Faust indexing worker); its log is kept for failure messages."""

    def __init__(self, settings: Settings, log_path: Path, *, es_url: str | None = None, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [str(KUBEPULSE), "es", "index"],
            cwd=ROOT,
            env=indexer_env(settings, es_url=es_url) | (env or {}),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def terminate(self, *, timeout: float = 30) -> int | None:
        """SIGTERM, Faust's graceful stop (agents cancelled, offsets committed), and wait for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


async def cleanup_es(client: AsyncElasticsearch, settings: Settings) -> None:
    """Delete this test's indices (by name: wildcard deletes may be forbidden) and templates."""
    prefix = settings.elasticsearch.index_prefix
    resp = await client.indices.get(index=f"{prefix}-*", expand_wildcards="all", allow_no_indices=True, ignore_unavailable=True)
    names = list(resp.body)
    for i in range(0, len(names), 50):
        await client.indices.delete(index=",".join(names[i : i + 50]))
    for kind in INDEX_KINDS:
        await client.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-{kind}")
    await client.options(ignore_status=404).cluster.delete_component_template(name=f"{prefix}-settings")


async def count(client: AsyncElasticsearch, index: str, query: dict | None = None) -> int:
    await client.options(ignore_status=404).indices.refresh(index=index)
    resp = await client.options(ignore_status=404).count(index=index, query=query or {"match_all": {}})
    return int(resp.get("count", 0))


async def wait_for_count(
    client: AsyncElasticsearch, index: str, expected: int, *, timeout: float = 60, proc: IndexerProcess | None = None
) -> int:
    """Poll the document count of ``index`` until it reaches ``expected`` (or fail with the indexer's log)."""
    deadline = time.monotonic() + timeout
    n = -1
    while time.monotonic() < deadline:
        try:
            n = await count(client, index)
        except ApiError as exc:
            # A daily index the indexer has just created may not have its shard allocated yet
            # (503 NoShardAvailable): that is "not there yet", not a failure.
            if exc.meta.status != 503:
                raise
            n = 0
        if n >= expected:
            return n
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"indexer exited with {proc.proc.returncode}:\n{proc.log()}")
        await asyncio.sleep(0.25)
    log = proc.log() if proc is not None else ""
    raise AssertionError(f"{index} has {n} documents after {timeout} s, expected {expected}\n{log}")


async def committed(settings: Settings, group: str, topic: str) -> int:
    """Sum of the committed offsets of ``group`` on ``topic`` (how far it has safely consumed)."""
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0)


async def wait_for_committed(settings: Settings, group: str, topic: str, expected: int, *, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    n = -1
    while time.monotonic() < deadline:
        n = await committed(settings, group, topic)
        if n >= expected:
            return n
        await asyncio.sleep(0.5)
    raise AssertionError(f"group {group} committed {n} of {expected} on {topic} after {timeout} s")


class CuttableProxy:
    """A TCP proxy to ``host:port`` on a random local port that can be cut (connections refused) and restored.

    While cut, its listening socket is closed and every open connection
    aborted, so a client sees exactly what a stopped server gives it:
    connection refused.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port_to = host, port
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        self._server = None

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port_to)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}
