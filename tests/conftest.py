"""Shared fixtures: per-test settings that keep runs apart on the shared real servers.

Integration tests (tests/integration/) use the real Kafka and Elasticsearch that
``deploy/local/stack up`` starts (``make test`` starts them). If they are not
reachable the tests fail with that instruction: they are never skipped.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.settings import Settings, load_settings
from tests.kafkautil import SESSION, new_run_id

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    """The real servers; fails (never skips) when the local stack is not up."""
    base = load_settings()
    host, _, port = base.kafka.bootstrap_servers.split(",")[0].rpartition(":")
    if not _reachable(host, int(port)):
        pytest.fail(f"Kafka is not reachable at {base.kafka.bootstrap_servers}: run `deploy/local/stack up` (make test does)")
    es_hostport = base.elasticsearch.url.split("://", 1)[1]
    es_host, _, es_port = es_hostport.rpartition(":")
    if not _reachable(es_host, int(es_port or 9200)):
        pytest.fail(f"Elasticsearch is not reachable at {base.elasticsearch.url}: run `deploy/local/stack up` (make test does)")
    return {"kafka": base.kafka.bootstrap_servers, "elasticsearch": base.elasticsearch.url}


_TEST_TOPIC = re.compile(r"^(t[0-9a-f]{6,}\.|kp-test-[0-9a-f]{6,}-)")
"""Topics tests create: their per-test prefix, and Faust's internal topics of a per-test app id."""


async def _test_topics(bootstrap: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t for t in await admin.list_topics() if _TEST_TOPIC.match(t)}
    finally:
        await admin.close()


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60000)
    await admin.start()
    try:
        for i in range(0, len(names), 100):
            await admin.delete_topics(names[i : i + 100], timeout_ms=60000)
    finally:
        await admin.close()


@pytest.fixture(scope="session", autouse=True)
def _delete_this_sessions_topics() -> Iterator[None]:
    """Delete the topics this session created, so the shared broker does not pile up thousands of them.

    Thousands of leftover topics make every later broker start slow (each
    partition's log is loaded), which is how a CI run would creep past the
    stack's start timeout. Only topics named after this session's id
    (``tests.kafkautil.SESSION``) are deleted, so a concurrent session's
    topics survive it (deleting every test topic created meanwhile removed
    another session's topics in the middle of its tests).
    """
    bootstrap = load_settings().kafka.bootstrap_servers
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    before = asyncio.run(_test_topics(bootstrap)) if _reachable(host, int(port)) else None
    yield
    if before is None or not _reachable(host, int(port)):
        return
    mine = (f"t{SESSION}", f"kp-test-{SESSION}")
    created = sorted(t for t in asyncio.run(_test_topics(bootstrap)) - before if t.startswith(mine))
    if created:
        asyncio.run(_delete_topics(bootstrap, created))


@pytest.fixture
def run_id() -> str:
    """A short id unique to this test: topic prefix, consumer group and index prefix hang on it."""
    return new_run_id()


@pytest.fixture
def settings(run_id: str, tmp_path: Path) -> Settings:
    """Settings of an isolated run: its own topics, consumer group, indices and notification file."""
    return load_settings(
        kafka={"topic_prefix": f"t{run_id}.", "consumer_group": f"kp-test-{run_id}"},
        elasticsearch={"index_prefix": f"kp-test-{run_id}"},
        alerting={"notifications_file": tmp_path / "notifications.jsonl"},
        http_port=0,
    )
