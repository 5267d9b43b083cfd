"""``kubepulse collect --once`` against two test API servers, one of them refusing the credentials."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from collectors.testing import FakeApiServer
from collectors.testing import payloads as k
from kubepulse.cli import app
from models.codec import decode
from models.records import NodeScrape, QuotaScrape
from models.settings import Settings
from streams.topics import METRICS, QUOTAS
from tests.kafkautil import consume


async def test_collect_once_prints_a_row_per_cluster_and_exits_non_zero_when_one_failed(
    stack, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeApiServer() as good, FakeApiServer(token="other") as bad:
        good.add("Node", k.node("n1"), k.node("n2"))
        good.add("Pod", k.pod("shop", "web-1", node_name="n1"), k.pod("shop", "web-2", node_name="n2"))
        for n, pod in (("n1", "web-1"), ("n2", "web-2")):
            uid = good.store.pods[("shop", pod)]["metadata"]["uid"]
            st = k.pod_stats("shop", pod, uid=uid, time=0, cpu_ns=1, working_set=1, containers=[k.container_stats("app", time=0, cpu_ns=1, working_set=1)])
            good.set_summary(n, k.summary(n, time=0, cpu_ns=1, working_set=1, pods=[st]))
        good.add(
            "ResourceQuota",
            k.resourcequota("shop", "compute", hard={"requests.cpu": "2", "pods": "10"}, used={"requests.cpu": "600m", "pods": "2"}),
            k.resourcequota("batch", "jobs", hard={"count/jobs.batch": "20"}, used={"count/jobs.batch": "0"}),
        )
        bad.add("Node", k.node("n1"))
        clusters = [
            {"name": "good", "kubeconfig": str(good.write_kubeconfig(tmp_path / "good.yaml"))},
            {"name": "bad", "kubeconfig": str(bad.write_kubeconfig(tmp_path / "bad.yaml", token="wrong"))},
        ]
        monkeypatch.setenv("KUBEPULSE_CLUSTERS", orjson.dumps(clusters).decode())
        monkeypatch.setenv("KUBEPULSE_KAFKA__TOPIC_PREFIX", settings.kafka.topic_prefix)
        monkeypatch.setenv("COLUMNS", "200")
        # In a thread: the command runs its own event loop, as it does from a shell.
        result = await asyncio.to_thread(CliRunner().invoke, app, ["collect", "--once"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if "cluster" in line and "quotas" in line)
    assert [c.strip() for c in header.split("┃")[1:-1]] == ["cluster", "source", "nodes", "pods", "samples", "quotas", "errors", "seconds", "problem"]
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]] for line in lines if line.count("│") > 5}
    assert rows["good"][:7] == ["good", "summary", "2", "2", "6", "2", "0"]
    # Three calls refused: a node or pod list (the pass) and the ResourceQuota and HPA lists beside it.
    assert rows["bad"][2:7] == ["0", "0", "0", "0", "3"] and "401 Unauthorized on list" in rows["bad"][8]
    msgs = await consume(settings, METRICS.named(settings.kafka.topic_prefix), count=2, timeout=15)
    assert sorted(key for key, _ in msgs) == ["good/n1", "good/n2"]
    assert {decode(NodeScrape, v).pods[0].name for _, v in msgs} == {"web-1", "web-2"}
    quotas = await consume(settings, QUOTAS.named(settings.kafka.topic_prefix), count=2, timeout=15)
    got = {key: decode(QuotaScrape, v) for key, v in quotas}
    assert sorted(got) == ["good/batch/jobs", "good/shop/compute"]
    assert got["good/shop/compute"].used == {"requests.cpu": 0.6, "pods": 2.0}
