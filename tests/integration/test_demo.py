"""`kubepulse demo` unattended against the real Kafka and Elasticsearch: every stage produces, and the run cleans up after itself."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from elasticsearch import AsyncElasticsearch

from collectors.simulator.labels import read_labels
from kubepulse._demo import SUMMARY_KEYS
from models.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    """The user's environment without kubepulse settings (the demo chooses its own prefixes), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEPULSE_") and k != "DEMO_DURATION"}
    env.update(extra)
    return env


def _run_demo(args: list[str], env: dict[str, str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubepulse.cli", "demo", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.timeout(420)
async def test_unattended_demo_for_60_seconds_detects_an_incident_fires_and_resolves_an_alert_and_indexes_every_kind(
    stack: dict[str, str], run_id: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "demo"
    proc = await asyncio.to_thread(
        _run_demo, ["--workdir", str(workdir), "--run-id", run_id], _env(DEMO_DURATION="60"), timeout=400
    )
    out = proc.stdout
    context = f"exit {proc.returncode}\n--- stdout\n{out[-8000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, context
    summary = json.loads(out.strip().splitlines()[-1])
    assert tuple(summary) == SUMMARY_KEYS, context

    assert summary["samples"] > 10_000, context
    docs = summary["documents"]
    for kind in ("metrics", "events", "rollups", "anomalies", "alerts", "notifications", "incidents"):
        assert docs[kind] > 0, f"no {kind} documents\n{context}"
    assert summary["anomalies"] > 0, context
    assert summary["alerts_fired"] >= 1 and summary["alerts_resolved"] >= 1, context
    assert summary["incidents_injected"] >= 2, context
    assert 1 <= summary["incidents_detected"] <= summary["incidents_injected"], context
    # The injected storm (at 465 s of simulated time) is found by the worker's anomalies on its own pod:
    # only if the worker keeps the simulated time the accelerated run stamps (it used to restamp it to
    # "received + 2 min", and the summary counted a single incident, found by a node alert).
    assert "network_storm 1/1" in out and "node_memory_pressure 1/1" in out, context
    assert summary["dead_letters"] == 0, context

    # The counts come from the real sources the run left behind: its labels and notifications files.
    assert summary["incidents_injected"] == len(read_labels(workdir / "incidents.jsonl"))
    notified = [json.loads(line) for line in (workdir / "notifications.jsonl").read_text().splitlines() if line.strip()]
    assert summary["notifications"] == len(notified) >= 2
    assert {"firing", "resolved"} <= {n["status"] for n in notified}, "a resolved alert was not notified"
    # The readable part says where things are, and the stack is left running.
    assert "incidents detected" in out and "deploy/local/stack down" in out

    # Its own topics and indices are gone afterwards (the default without --keep), nobody else's.
    settings = load_settings()
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        left = [t for t in await admin.list_topics() if t.startswith((f"demo.{run_id}.", f"kpdemo-{run_id}"))]
    finally:
        await admin.close()
    assert left == []
    es = AsyncElasticsearch(settings.elasticsearch.url)
    try:
        resp = await es.indices.get(index=f"kpdemo-{run_id}-*", allow_no_indices=True, expand_wildcards="all")
        assert list(resp.body) == []
    finally:
        await es.close()


async def test_demo_without_kafka_exits_non_zero_and_says_to_start_the_stack(stack: dict[str, str], tmp_path: Path) -> None:
    proc = await asyncio.to_thread(
        _run_demo,
        ["--workdir", str(tmp_path / "demo")],
        _env(DEMO_DURATION="5", KUBEPULSE_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1"),
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Kafka is not reachable at 127.0.0.1:1" in proc.stderr and "deploy/local/stack up" in proc.stderr
    # Nothing was started, so nothing was left running or logged.
    assert not list((tmp_path / "demo").glob("*.log"))
