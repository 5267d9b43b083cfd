"""A long Elasticsearch outage with big messages waiting: the indexer holds at most its byte budget, then stops fetching."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from models.records import KubeEvent, ObjectRef
from models.settings import Settings
from streams.index import alias_name, async_client
from streams.topics import EVENTS
from tests.indexingutil import CuttableProxy, IndexerProcess, cleanup_es, count, wait_for_count
from tests.kafkautil import create_topics, produce
from tests.privatestack import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")

BUDGET = 4 * 2**20
MESSAGE = 200 * 1024
FIRST, THEN = 150, 200
"""Events of 200 KiB: 30 MiB wait in Kafka to fill the gate (seven times the budget), then 40 MiB more come once it is full."""
BACKLOG = FIRST + THEN


def _event(i: int) -> tuple[str, KubeEvent]:
    t = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=i)
    text = " ".join(f"w{i}x{j}" for j in range(MESSAGE // 8))[:MESSAGE]
    e = KubeEvent(cluster="c1", uid=f"ev-{i}", namespace="ns", name=f"p{i}.1", reason="BackOff", message=text, last_seen=t,
                  involved_object=ObjectRef(kind="Pod", name=f"p{i}", namespace="ns"))
    return e.key, e


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        out = {}
        for line in resp.read().decode().splitlines():
            if line.startswith("kubepulse_indexing_") and " " in line:
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _until(check, what, proc: IndexerProcess, timeout: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.proc.poll() is not None:
            raise AssertionError(f"indexer exited:\n{proc.log()}")
        await asyncio.sleep(0.5)
    log = "\n".join(line for line in proc.log_path.read_text(errors="replace").splitlines() if "Node <" not in line and "Resurrected" not in line)
    raise AssertionError(f"{what()} after {timeout} s\n{log}")


async def test_a_long_outage_with_a_backlog_holds_at_most_the_byte_budget_and_indexes_everything_after(
    settings: Settings, stack: dict[str, str], tmp_path: Path
) -> None:
    es_host, _, es_port = settings.elasticsearch.url.split("://", 1)[1].rpartition(":")
    proxy = CuttableProxy(es_host, int(es_port))
    await proxy.start()
    direct = async_client(settings, max_retries=2)
    topic = EVENTS.named(settings.kafka.topic_prefix)
    alias = alias_name(settings, "events")
    await create_topics(settings, [topic])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = IndexerProcess(settings, tmp_path / "indexer.log", es_url=proxy.url,
                          env={"KUBEPULSE_HTTP_PORT": str(port), "KUBEPULSE_ELASTICSEARCH__BUFFER_MAX_BYTES": str(BUDGET)})
    try:
        await produce(settings, topic, [_event(i) for i in range(5)])
        await wait_for_count(direct, alias, 5, proc=proc)
        await proxy.cut()
        await produce(settings, topic, [_event(i) for i in range(5, 5 + FIRST)])
        # The gate fills, the stream stops taking messages; /readyz says why nothing moves.
        await _until(lambda: _metrics(url).get("kubepulse_indexing_fetch_paused") == 1.0,
                     lambda: f"the indexer never stopped taking: {_metrics(url)}", proc)
        await asyncio.sleep(5)
        full = _rss(proc.proc.pid)
        # More while it is full: none of it may be taken in.
        for start in range(5 + FIRST, 5 + BACKLOG, 50):
            await produce(settings, topic, [_event(i) for i in range(start, start + 50)])
        await asyncio.sleep(10)
        m = _metrics(url)
        later = _rss(proc.proc.pid)
        with pytest.raises(urllib.error.HTTPError) as ready:
            urllib.request.urlopen(url + "/readyz", timeout=10)
        assert ready.value.code == 503
        # One message past the budget at most (the one that found the gate full is admitted after a release).
        assert m["kubepulse_indexing_buffer_bytes_peak"] <= BUDGET + MESSAGE * 1.1, m
        assert m["kubepulse_indexing_buffer_bytes"] >= BUDGET - MESSAGE * 1.1, m
        assert m["kubepulse_indexing_fetch_paused"] == 1.0, m
        # The process as a whole did not take in the 40 MiB that came meanwhile: what it grew by is Faust's queue
        # (64 messages, 12.5 MiB here) filling up, and the allocator's noise.
        assert later - full < 20 * 2**20, (full, later, m)

        await proxy.restore()
        await wait_for_count(direct, alias, 5 + BACKLOG, proc=proc, timeout=300)
        assert await count(direct, alias) == 5 + BACKLOG
    finally:
        proc.terminate()
        await proxy.close()
        await cleanup_es(direct, settings)
        await direct.close()
