"""Shared fixtures: per-test settings that keep runs apart on the shared real servers.

Integration tests (tests/integration/) use the real Kafka and Elasticsearch that
``deploy/local/stack up`` starts (``make test`` starts them). If they are not
reachable the tests fail with that instruction: they are never skipped.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from models.settings import Settings, load_settings

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


@pytest.fixture
def run_id() -> str:
    """A short id unique to this test: topic prefix, consumer group and index prefix hang on it."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(run_id: str, tmp_path: Path) -> Settings:
    """Settings of an isolated run: its own topics, consumer group, indices and notification file."""
    return load_settings(
        kafka={"topic_prefix": f"t{run_id}.", "consumer_group": f"kp-test-{run_id}"},
        elasticsearch={"index_prefix": f"kp-test-{run_id}"},
        alerting={"notifications_file": tmp_path / "notifications.jsonl"},
        http_port=0,
    )
