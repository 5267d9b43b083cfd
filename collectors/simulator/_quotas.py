"""The simulated fleet's ResourceQuotas: one ``compute`` quota per cluster and namespace, used = what its pods request.

What the API server's quota controller counts, computed from the same pods
the node scrapes show: ``requests.*`` and ``limits.*`` are the pods'
requests and limits summed (a container without a limit adds nothing, as if
a LimitRange had admitted it), ``pods`` is the number of pods. The hard
limits are set once, when the fleet is laid out, with room to spare, except
for one namespace that runs close to its ``requests.memory`` quota (about
93-96 % of it), so a demo shows ``KubeQuotaAlmostFull`` without an incident.
"""

from __future__ import annotations

import math
import random
from datetime import datetime

from models.records import QuotaScrape

from collectors.simulator._layout import GiB, MiB, ClusterState

__all__ = ["QUOTA_NAME", "QUOTA_RESOURCES", "TIGHT_NAMESPACE", "TIGHT_RESOURCE", "namespace_usage", "quota_hard", "quota_records"]

QUOTA_NAME = "compute"
QUOTA_RESOURCES: tuple[str, ...] = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "pods")
"""What the quota limits, in the order the records list them."""
TIGHT_NAMESPACE = "shop"
"""The namespace of the first cluster that runs close to its quota (else the one requesting the most memory)."""
TIGHT_RESOURCE = "requests.memory"
_TIGHT_SHARE = (0.93, 0.96)
_HEADROOM_SHARE = (0.35, 0.75)
"""Where used / hard lands for every other quota: well under the 80 % a dashboard highlights."""

# People write quotas in round numbers: half cores, whole GiB, pods by fives.
_STEP = {"requests.cpu": 0.5, "limits.cpu": 0.5, "requests.memory": GiB, "limits.memory": GiB, "pods": 5}
_MINIMUM = {"requests.cpu": 1.0, "limits.cpu": 1.0, "requests.memory": GiB, "limits.memory": GiB, "pods": 10}


def namespace_usage(cluster: ClusterState) -> dict[str, dict[str, float]]:
    """Per namespace of ``cluster`` (every namespace that has a workload), its pods' requests and limits summed and its pod count.

    The pod-level requests are the ones the scrapes carry (``PodSample.requests``),
    so the quota's ``used`` is the sum of what the node scrapes of the same step show.
    """
    out: dict[str, dict[str, float]] = {}
    for wl in cluster.workloads:
        used = out.setdefault(wl.namespace, dict.fromkeys(QUOTA_RESOURCES, 0.0))
        n = len(wl.pods)
        if not n:
            continue
        used["requests.cpu"] += (wl.pod_requests.cpu_cores or 0.0) * n
        used["requests.memory"] += (wl.pod_requests.memory_bytes or 0) * n
        used["limits.cpu"] += sum(r[4] for r in wl.container_requests if r[4] is not None) * n
        used["limits.memory"] += sum(r[5] for r in wl.container_requests if r[5] is not None) * n
        used["pods"] += n
    for used in out.values():
        # Kubernetes reports CPU in millicores: no float dust in the records.
        used["requests.cpu"] = round(used["requests.cpu"], 3)
        used["limits.cpu"] = round(used["limits.cpu"], 3)
    return out


def _round_up(resource: str, value: float) -> float:
    step = _STEP[resource]
    return float(max(_MINIMUM[resource], math.ceil(value / step - 1e-9) * step))


def _tight_namespace(usage: dict[str, dict[str, float]]) -> str | None:
    if usage.get(TIGHT_NAMESPACE, {}).get(TIGHT_RESOURCE):
        return TIGHT_NAMESPACE
    busiest = max(sorted(usage), key=lambda ns: usage[ns][TIGHT_RESOURCE], default=None)
    return busiest if busiest is not None and usage[busiest][TIGHT_RESOURCE] else None


def quota_hard(rng: random.Random, clusters: list[ClusterState]) -> dict[tuple[str, str], dict[str, float]]:
    """Each (cluster, namespace) quota's hard limits, from the usage of the fleet as laid out.

    Every quota draws the same numbers whatever its usage, so which
    namespace is the tight one changes no other quota.
    """
    out: dict[tuple[str, str], dict[str, float]] = {}
    for ci, cl in enumerate(clusters):
        usage = namespace_usage(cl)
        tight = _tight_namespace(usage) if ci == 0 else None
        for ns in sorted(usage):
            used = usage[ns]
            hard = {r: _round_up(r, used[r] / rng.uniform(*_HEADROOM_SHARE)) for r in QUOTA_RESOURCES}
            close = rng.uniform(*_TIGHT_SHARE)
            if ns == tight:
                # Whole MiB, the way a quota close to its limit is written (``7680Mi``).
                hard[TIGHT_RESOURCE] = float(math.ceil(used[TIGHT_RESOURCE] / close / MiB) * MiB)
            out[(cl.name, ns)] = hard
    return out


def quota_records(clusters: list[ClusterState], hard: dict[tuple[str, str], dict[str, float]], ts: datetime) -> list[QuotaScrape]:
    """The quotas of every cluster and namespace at ``ts``: ``hard`` as set at layout, ``used`` as the pods are now."""
    out = []
    for cl in clusters:
        usage = namespace_usage(cl)
        for ns in sorted(usage):
            limits = hard.get((cl.name, ns))
            if limits is None:
                continue  # a namespace that appeared after the layout has no quota (none does today)
            out.append(
                QuotaScrape(
                    cluster=cl.name,
                    namespace=ns,
                    name=QUOTA_NAME,
                    timestamp=ts,
                    source="simulator",
                    hard=dict(limits),
                    used={r: float(usage[ns][r]) for r in QUOTA_RESOURCES},
                )
            )
    return out
