"""The shipped ClusterRole (deploy/kubernetes/base/access) on a real kube-apiserver with RBAC: enough for the collector, nothing more."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collectors import Collector, PassReport
from collectors.rbac import REQUIRED_RULES
from collectors.testing import payloads as k
from models.settings import ClusterSettings, Settings
from tests.integration.k8s_fixtures import (  # noqa: F401 - fixtures are used by name
    K8S_TEST_TIMEOUT_S,
    ControlPlane,
    Kube,
    apply,
    collector_access_objects,
    control_plane,
    k8s_namespace,
    k8s_nodes,
    kube,
    kubelet_factory,
    service_account_kubeconfig,
)

pytestmark = pytest.mark.timeout(K8S_TEST_TIMEOUT_S)

T0 = 1_767_268_800.0
MiB = 2**20

def triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule.get("apiGroups", []) for r in rule.get("resources", []) for v in rule["verbs"]}


def granted(cp: ControlPlane, token: str, ns: str) -> set[tuple[str, str, str]]:
    """(group, resource, verb) the real authorizer grants ``token``'s identity, as SelfSubjectRulesReview tells."""
    k8s = Kube(cp, token=token)
    try:
        review = k8s.post(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": ns}},
        )
    finally:
        k8s.close()
    assert review["status"].get("incomplete") is not True, review["status"]
    return triples(review["status"]["resourceRules"])


async def until(predicate: Callable[[], bool], *, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not met within {timeout}s")
        await asyncio.sleep(0.05)


def owned_pods(kube: Kube, ns: str, node: str) -> list[dict[str, Any]]:
    """A ReplicaSet's pod and a Job's pod on ``node``, so a pass also lists replicasets and jobs."""
    rs = kube.post(
        f"/apis/apps/v1/namespaces/{ns}/replicasets",
        {
            "metadata": {"name": "api-7f"},
            "spec": {
                "selector": {"matchLabels": {"app": "api"}},
                "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "example/api:1"}]}},
            },
        },
    )
    job = kube.post(
        f"/apis/batch/v1/namespaces/{ns}/jobs",
        {"metadata": {"name": "migrate"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "example/m:1"}]}}}},
    )
    pods = []
    for owner, kind, api in ((rs, "ReplicaSet", "apps/v1"), (job, "Job", "batch/v1")):
        ref = {"apiVersion": api, "kind": kind, "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"], "controller": True}
        pods.append(
            kube.post(
                f"/api/v1/namespaces/{ns}/pods",
                {"metadata": {"name": f"{owner['metadata']['name']}-p", "ownerReferences": [ref]}, "spec": {"nodeName": node, "containers": [k.container("c", requests={"cpu": "100m"})]}},
            )
        )
    return pods


def node_summary(node: str, pods: list[dict[str, Any]]) -> dict[str, Any]:
    return k.summary(
        node,
        time=T0,
        cpu_ns=10**12,
        working_set=2**30,
        pods=[
            k.pod_stats(
                p["metadata"]["namespace"],
                p["metadata"]["name"],
                uid=p["metadata"]["uid"],
                time=T0,
                cpu_ns=10**9,
                working_set=64 * MiB,
                containers=[k.container_stats("c", time=T0, cpu_ns=10**9, working_set=64 * MiB)],
            )
            for p in pods
        ],
    )


async def test_service_account_bound_to_the_shipped_cluster_role_does_all_the_collector_does_and_nothing_more(
    stack, settings: Settings, control_plane: ControlPlane, kube: Kube, k8s_namespace: str, kubelet_factory, k8s_nodes, tmp_path: Path
) -> None:
    ns = k8s_namespace
    objs = collector_access_objects()
    (role,) = [o for o in objs if o["kind"] == "ClusterRole"]
    (sa,) = [o for o in objs if o["kind"] == "ServiceAccount"]
    for o in objs:
        apply(kube, o)
    kc, token = service_account_kubeconfig(kube, sa["metadata"]["namespace"], sa["metadata"]["name"], tmp_path / "sa.kubeconfig")

    kubelet = kubelet_factory()
    node = f"{ns}-n"
    k8s_nodes(k.node(node), kubelet)
    pods = owned_pods(kube, ns, node)
    kubelet.summary = node_summary(node, pods)
    ev = k.event(ns, reason="BackOff", involved=("Pod", pods[0]["metadata"]["name"]))
    del ev["metadata"]["uid"]
    ev = kube.post(f"/api/v1/namespaces/{ns}/events", ev)

    name = f"sa-{ns}"
    reports: list[PassReport] = []
    s = settings.model_copy(update={"clusters": [ClusterSettings(name=name, kubeconfig=kc)]})
    async with Collector(s, watch_timeout_s=30, on_pass=reports.append) as c:
        await c.run(iterations=1)
        w = c.watchers[name]
        await until(lambda: ev["metadata"]["uid"] in w.seen, what="event listed with the service account's token")
        # A watch is open too (list + watch events are both in the role): a new event arrives through it.
        ev2 = k.event(ns, reason="Pulled", involved=("Pod", pods[1]["metadata"]["name"]), type="Normal")
        del ev2["metadata"]["uid"]
        ev2 = kube.post(f"/api/v1/namespaces/{ns}/events", ev2)
        await until(lambda: ev2["metadata"]["uid"] in w.seen, what="watched event with the service account's token")
    (report,) = reports
    assert (report.error, report.source) == (None, "summary")
    assert node not in report.node_errors, report.node_errors
    assert [q.client_cn for q in kubelet.requests] == [control_plane.kubelet_client_cn]

    # Nothing more: beyond what any service account may do (self reviews, trust bundles...),
    # the real authorizer grants this identity exactly the collector's rules.
    kube.post(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "nobody"}})
    _, nobody = service_account_kubeconfig(kube, ns, "nobody", tmp_path / "nobody.kubeconfig")
    baseline = granted(control_plane, nobody, ns)
    assert granted(control_plane, token, ns) - baseline == triples(REQUIRED_RULES) == triples(role["rules"])
    sa_kube = Kube(control_plane, token=token)
    try:
        # And writes are denied by the real authorizer.
        pod_body = {"metadata": {"name": "intruder"}, "spec": {"containers": [{"name": "c", "image": "example/c:1"}]}}
        denied = {
            "create pod": sa_kube.status_of("POST", f"/api/v1/namespaces/{ns}/pods", pod_body),
            "delete node": sa_kube.status_of("DELETE", f"/api/v1/nodes/{node}"),
            "patch node": sa_kube.status_of("PATCH", f"/api/v1/nodes/{node}", {"metadata": {"labels": {"x": "y"}}}),
            "create event": sa_kube.status_of("POST", f"/api/v1/namespaces/{ns}/events", {"metadata": {"name": "x"}}),
            "delete pods": sa_kube.status_of("DELETE", f"/api/v1/namespaces/{ns}/pods"),
            "post to a kubelet": sa_kube.status_of("POST", f"/api/v1/nodes/{node}/proxy/run/{ns}/x/c"),
            "read secrets": sa_kube.status_of("GET", f"/api/v1/namespaces/{ns}/secrets"),
        }
        assert denied == dict.fromkeys(denied, 403)
        # While the reads it needs are allowed for the same token.
        assert sa_kube.status_of("GET", f"/api/v1/nodes/{node}/proxy/stats/summary") == 200
    finally:
        sa_kube.close()


async def test_without_nodes_proxy_the_collector_falls_back_and_names_the_missing_rule(
    stack, settings: Settings, control_plane: ControlPlane, kube: Kube, k8s_namespace: str, kubelet_factory, k8s_nodes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ns = k8s_namespace
    (shipped,) = [o for o in collector_access_objects() if o["kind"] == "ClusterRole"]
    role = copy.deepcopy(shipped)
    role["metadata"] = {"name": f"kubepulse-collector-noproxy-{ns}"}
    role["rules"] = [r for r in role["rules"] if "nodes/proxy" not in r["resources"]]
    assert len(role["rules"]) == len(shipped["rules"]) - 1
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": role["metadata"]["name"]},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": "collector", "namespace": ns}],
    }
    kube.post(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "collector"}})
    apply(kube, role)
    apply(kube, binding)
    try:
        kc, _ = service_account_kubeconfig(kube, ns, "collector", tmp_path / "noproxy.kubeconfig")
        kubelet = kubelet_factory()
        node = f"{ns}-n"
        k8s_nodes(k.node(node), kubelet)
        kubelet.summary = node_summary(node, [])
        name = f"noproxy-{ns}"
        s = settings.model_copy(update={"clusters": [ClusterSettings(name=name, kubeconfig=kc)]})
        with caplog.at_level(logging.WARNING, logger="kubepulse.collectors"):
            async with Collector(s, events=False) as c:
                (report,) = await c.scrape_once()
    finally:
        kube.call("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{binding['metadata']['name']}")
        kube.call("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role['metadata']['name']}")

    assert report.source == "metrics.k8s.io"
    # A bare API server serves no metrics.k8s.io: the fallback fails too, and says so.
    assert report.error is not None and "404" in report.error, report.error
    assert kubelet.requests == []  # the real authorizer stopped it before the node proxy
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "nodes/proxy" in r.getMessage()]
    assert len(warnings) == 1, warnings
    msg = warnings[0]
    assert f"cluster {name}: 403 Forbidden: the collector may not get nodes/proxy" in msg
    assert 'Add this rule to its ClusterRole: {apiGroups: [""], resources: ["nodes/proxy"], verbs: ["get"]}' in msg
    # The real API server's own words are quoted: who was refused what.
    assert f'User \\"system:serviceaccount:{ns}:collector\\" cannot get resource \\"nodes/proxy\\"' in msg or (
        f'User "system:serviceaccount:{ns}:collector" cannot get resource "nodes/proxy"' in msg
    ), msg
    assert "Falling back to metrics.k8s.io" in msg
