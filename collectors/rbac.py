"""Every Kubernetes API call the collector makes, and the ClusterRole rules they need.

The client code in :mod:`collectors._kube` only calls the API through the
:class:`ApiCall` constants below, so :data:`REQUIRED_RULES` is derived from
the code rather than written twice; ``deploy/kubernetes`` turns it into the
ClusterRole, and a test checks a full collector run's access log against it.
A 401/403 is turned into a message naming the exact rule to add (kopf's habit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ApiCall",
    "LIST_NODES",
    "NODE_SUMMARY",
    "LIST_PODS",
    "LIST_REPLICASETS",
    "LIST_JOBS",
    "LIST_EVENTS",
    "WATCH_EVENTS",
    "LIST_NODE_METRICS",
    "LIST_POD_METRICS",
    "LIST_RESOURCEQUOTAS",
    "LIST_AUTOSCALERS",
    "CALLS",
    "REQUIRED_RULES",
    "rule_yaml",
    "access_message",
    "covers",
]


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One kind of request: its RBAC verb, API group, resource and URL path template."""

    verb: str
    group: str
    resource: str
    path: str
    """Path template; ``{name}`` is the object name for ``get`` calls."""

    @property
    def rule(self) -> dict[str, list[str]]:
        return {"apiGroups": [self.group], "resources": [self.resource], "verbs": [self.verb]}

    def describe(self) -> str:
        group = f' in API group "{self.group}"' if self.group else ' in the core API group ("")'
        return f"{self.verb} {self.resource}{group}"


LIST_NODES = ApiCall("list", "", "nodes", "/api/v1/nodes")
NODE_SUMMARY = ApiCall("get", "", "nodes/proxy", "/api/v1/nodes/{name}/proxy/stats/summary")
LIST_PODS = ApiCall("list", "", "pods", "/api/v1/pods")
LIST_REPLICASETS = ApiCall("list", "apps", "replicasets", "/apis/apps/v1/replicasets")
LIST_JOBS = ApiCall("list", "batch", "jobs", "/apis/batch/v1/jobs")
LIST_EVENTS = ApiCall("list", "", "events", "/api/v1/events")
WATCH_EVENTS = ApiCall("watch", "", "events", "/api/v1/events")
LIST_NODE_METRICS = ApiCall("list", "metrics.k8s.io", "nodes", "/apis/metrics.k8s.io/v1beta1/nodes")
LIST_POD_METRICS = ApiCall("list", "metrics.k8s.io", "pods", "/apis/metrics.k8s.io/v1beta1/pods")
LIST_RESOURCEQUOTAS = ApiCall("list", "", "resourcequotas", "/api/v1/resourcequotas")
LIST_AUTOSCALERS = ApiCall("list", "autoscaling", "horizontalpodautoscalers", "/apis/autoscaling/v2/horizontalpodautoscalers")

CALLS: tuple[ApiCall, ...] = (
    LIST_NODES,
    NODE_SUMMARY,
    LIST_PODS,
    LIST_REPLICASETS,
    LIST_JOBS,
    LIST_EVENTS,
    WATCH_EVENTS,
    LIST_NODE_METRICS,
    LIST_POD_METRICS,
    LIST_RESOURCEQUOTAS,
    LIST_AUTOSCALERS,
)


def _rules(calls: tuple[ApiCall, ...]) -> list[dict[str, list[str]]]:
    # One rule per (group, resource) with its verbs merged, in first-use order:
    # the shape a reviewer expects in a ClusterRole.
    merged: dict[tuple[str, str], list[str]] = {}
    for c in calls:
        verbs = merged.setdefault((c.group, c.resource), [])
        if c.verb not in verbs:
            verbs.append(c.verb)
    return [{"apiGroups": [g], "resources": [r], "verbs": v} for (g, r), v in merged.items()]


REQUIRED_RULES: list[dict[str, list[str]]] = _rules(CALLS)
"""The collector's ClusterRole rules (``apiGroups``/``resources``/``verbs``), one per resource."""


def rule_yaml(call: ApiCall) -> str:
    """The rule ``call`` needs, as one YAML flow line to paste into a ClusterRole."""
    return f'{{apiGroups: ["{call.group}"], resources: ["{call.resource}"], verbs: ["{call.verb}"]}}'


def access_message(call: ApiCall, *, cluster: str, status: int, server_message: str = "") -> str:
    """An actionable message for a 401/403 on ``call``.

    >>> print(access_message(NODE_SUMMARY, cluster="prod", status=403))
    cluster prod: 403 Forbidden: the collector may not get nodes/proxy in the core API group (""). Add this rule to its ClusterRole: {apiGroups: [""], resources: ["nodes/proxy"], verbs: ["get"]}
    """
    said = f" (API server said: {server_message})" if server_message else ""
    if status == 401:
        return (
            f"cluster {cluster}: 401 Unauthorized on {call.describe()}: the API server rejected the credentials; "
            f"refresh the token or client certificate in the cluster's kubeconfig/context{said}"
        )
    return (
        f"cluster {cluster}: 403 Forbidden: the collector may not {call.describe()}. "
        f"Add this rule to its ClusterRole: {rule_yaml(call)}{said}"
    )


def covers(rules: list[dict[str, Any]], *, verb: str, group: str, resource: str) -> bool:
    """Whether ``rules`` allow ``verb`` on ``group``/``resource`` (``*`` wildcards honoured)."""
    for r in rules:
        if (
            (group in r["apiGroups"] or "*" in r["apiGroups"])
            and (resource in r["resources"] or "*" in r["resources"])
            and (verb in r["verbs"] or "*" in r["verbs"])
        ):
            return True
    return False
