"""A synthetic fleet for the benchmark: N nodes x P pods with Summaries whose counters follow the clock."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson

from collectors.testing import payloads as k
from collectors.testing.fake_apiserver import FakeApiServer


class Fleet:
    """Nodes ``node-0000``..., pods of Deployments (via ReplicaSets), two containers each, one with no limit.

    Each namespace ``team-N`` has a ResourceQuota ``compute`` counting its pods' requests and limits.
    """

    def __init__(self, *, nodes: int, pods_per_node: int, refresh_s: float = 5.0) -> None:
        self.refresh_s = refresh_s
        """Like the kubelet's own stats cache: a Summary is re-rendered at most this often per node."""
        self._cache: dict[str, tuple[float, bytes]] = {}
        self.nodes = [f"node-{i:04d}" for i in range(nodes)]
        self.pods: dict[str, list[tuple[str, str, str]]] = {}  # node -> [(namespace, name, uid)]
        self.started = time.time() - 3600
        self.objects: dict[str, list[dict[str, Any]]] = {"Node": [], "Pod": [], "ReplicaSet": [], "ResourceQuota": []}
        for i, n in enumerate(self.nodes):
            self.objects["Node"].append(k.node(n, cpu="16", memory="64Gi"))
            self.pods[n] = []
            for j in range(pods_per_node):
                ns, dep = f"team-{j % 10}", f"svc-{j}"
                rs = f"{dep}-5d9c7"
                name = f"{rs}-{i:04d}"
                p = k.pod(
                    ns,
                    name,
                    node_name=n,
                    owner=("ReplicaSet", rs),
                    labels={"app": dep},
                    containers=[
                        k.container("app", requests={"cpu": "250m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "512Mi"}),
                        k.container("sidecar", requests={"cpu": "50m", "memory": "64Mi"}),
                    ],
                )
                self.objects["Pod"].append(p)
                self.pods[n].append((ns, name, p["metadata"]["uid"]))
                if i == 0:
                    self.objects["ReplicaSet"].append(k.replicaset(ns, rs, deployment=dep))
        per_namespace = Counter(ns for pods in self.pods.values() for ns, _, _ in pods)
        for ns, n in sorted(per_namespace.items()):
            used = {"pods": str(n), "requests.cpu": f"{300 * n}m", "requests.memory": f"{320 * n}Mi", "limits.cpu": str(n)}
            hard = {"pods": str(2 * n), "requests.cpu": f"{400 * n}m", "requests.memory": f"{512 * n}Mi", "limits.cpu": str(2 * n)}
            self.objects["ResourceQuota"].append(k.resourcequota(ns, "compute", hard=hard, used=used))

    def install(self, server: FakeApiServer) -> None:
        for kind, objs in self.objects.items():
            server.add(kind, *objs)
        server.summary_fallback = self.summary

    def summary(self, node: str) -> bytes:
        """The node's Summary now: counters grow with the clock, so rates are steady."""
        now = time.time()
        cached = self._cache.get(node)
        if cached and now - cached[0] < self.refresh_s:
            return cached[1]
        body = self._render(node, now)
        self._cache[node] = (now, body)
        return body

    def _render(self, node: str, now: float) -> bytes:
        up = now - self.started
        pods = []
        for idx, (ns, name, uid) in enumerate(self.pods[node]):
            base = int(up * 1e9 * (0.1 + idx % 5 * 0.05))
            pods.append(
                k.pod_stats(
                    ns,
                    name,
                    uid=uid,
                    time=now,
                    start=self.started,
                    cpu_ns=base + base // 10,
                    working_set=200 * 2**20 + idx * 2**20,
                    interfaces=[k.interface("eth0", rx=int(up * 10_000), tx=int(up * 5_000))],
                    containers=[
                        k.container_stats("app", time=now, start=self.started, cpu_ns=base, working_set=180 * 2**20),
                        k.container_stats("sidecar", time=now, start=self.started, cpu_ns=base // 10, working_set=20 * 2**20),
                    ],
                )
            )
        total = sum(int(up * 1e9 * (0.1 + i % 5 * 0.05)) for i in range(len(pods)))
        return orjson.dumps(k.summary(node, time=now, start=self.started, cpu_ns=total, working_set=8 * 2**30, pods=pods))
