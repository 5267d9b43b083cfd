"""How the reports print: rich tables, JSON lines of the records, and ``kubectl set resources`` commands."""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable, Mapping

from rich.table import Table

from models.records import CapacityForecast, Recommendation

__all__ = ["capacity_table", "rightsize_table", "kubectl_commands", "cpu_quantity", "memory_quantity", "amount"]

_KUBECTL_KINDS = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemonset", "ReplicaSet": "replicaset",
                  "Job": "job", "CronJob": "cronjob"}


def cpu_quantity(cores: float) -> str:
    """Cores as Kubernetes writes them, rounded up to a millicore.

    >>> cpu_quantity(0.25), cpu_quantity(2.0), cpu_quantity(0.0101)
    ('250m', '2', '11m')
    """
    milli = math.ceil(cores * 1000 - 1e-6)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def memory_quantity(n: float) -> str:
    """Bytes in Mi (Gi when whole), rounded up.

    >>> memory_quantity(512 * 2**20), memory_quantity(2 * 2**30), memory_quantity(1)
    ('512Mi', '2Gi', '1Mi')
    """
    mi = math.ceil(n / 2**20 - 1e-9)
    return f"{mi // 1024}Gi" if mi % 1024 == 0 else f"{mi}Mi"


def amount(v: float | None, unit: str) -> str:
    """A cores or bytes amount for a table cell ("-" when unknown)."""
    if v is None:
        return "-"
    if unit == "cores":
        return f"{v:.2f}"
    sign = "-" if v < 0 else ""
    v = abs(v)
    for suffix, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20)):
        if v >= size:
            return f"{sign}{v / size:.1f}{suffix}"
    return f"{sign}{v / 2**20:.2f}Mi"


def _days(r: CapacityForecast) -> str:
    if r.limit is None:
        return "no limit"
    if r.days_to_full is None and r.days_to_full_low is None:
        return f"> {r.horizon_days:g} d"
    point = "?" if r.days_to_full is None else f"{r.days_to_full:.1f}"
    low = "-" if r.days_to_full_low is None else f"{r.days_to_full_low:.1f}"
    high = "never" if r.days_to_full_high is None else f"{r.days_to_full_high:.1f}"
    return f"{point} d ({low}–{high})"


def capacity_table(records: Iterable[CapacityForecast]) -> Table:
    """One row per entity and resource, soonest full first within each cluster."""
    rows = sorted(records, key=lambda r: (r.cluster, r.days_to_full if r.days_to_full is not None else math.inf, r.entity_id))
    table = Table(title="Capacity: days until the daily peak reaches the limit (80 % interval)", title_justify="left")
    for col in ("cluster", "entity", "resource", "current", "limit", "used", "p95", "idle", "growth/day", "trend", "full in"):
        table.add_column(col, justify="right" if col in ("current", "limit", "used", "p95", "idle", "growth/day") else "left")
    for r in rows:
        where = {"cluster": "cluster", "namespace": f"ns {r.namespace}", "node": f"node {r.node}",
                 "volume": f"pvc {r.namespace}/{r.persistentvolumeclaim or r.volume}"}[r.entity_kind]
        used = "-" if r.used_share is None else f"{100 * r.used_share:.0f}%"
        table.add_row(r.cluster, where, r.resource, amount(r.current, r.unit), amount(r.limit, r.unit), used, amount(r.p95, r.unit),
                      amount(r.idle, r.unit), amount(r.growth_per_day, r.unit), r.model, _days(r))
    return table


def rightsize_table(records: Iterable[Recommendation]) -> Table:
    """One row per workload and container, most CPU wasted (over all replicas) first."""
    rows = sorted(records, key=lambda r: -(r.waste_cpu_cores or 0.0) * r.replicas)
    table = Table(title="Right-sizing: recommended requests/limits from the hourly rollups", title_justify="left")
    for col in ("cluster", "namespace", "workload", "container", "cpu req now→rec", "cpu lim", "mem req now→rec", "mem lim",
                "waste cpu", "waste mem", "replicas", "confidence", "hpa"):
        table.add_column(col)
    for r in rows:
        held = f"{r.hpa} (holds {', '.join(r.held)})" if r.held else (r.hpa or "")
        table.add_row(
            r.cluster, r.namespace, f"{r.workload_kind or ''} {r.workload}".strip(), r.container,
            f"{amount(r.current_cpu_request, 'cores')}→{amount(r.cpu_request, 'cores')}", amount(r.cpu_limit, "cores"),
            f"{amount(r.current_memory_request, 'bytes')}→{amount(r.memory_request, 'bytes')}", amount(r.memory_limit, "bytes"),
            amount(None if r.waste_cpu_cores is None else r.waste_cpu_cores * r.replicas, "cores"),
            amount(None if r.waste_memory_bytes is None else r.waste_memory_bytes * r.replicas, "bytes"),
            f"{r.replicas:.1f}", f"{r.confidence:.2f}", held,
        )
    return table


def kubectl_commands(records: Iterable[Recommendation], *, contexts: Mapping[str, str] | None = None) -> list[str]:
    """``kubectl set resources`` per workload and container; a resource an HPA holds is left out (see ``Recommendation.held``).

    ``contexts`` maps a cluster's kubepulse name to its kubeconfig context (``clusters[].context``); the
    cluster name is used otherwise.
    """
    contexts = contexts or {}
    out = []
    for r in sorted(records, key=lambda r: (r.cluster, r.namespace, r.workload, r.container)):
        kind = _KUBECTL_KINDS.get(r.workload_kind or "")
        where = f"{r.cluster}/{r.namespace}/{r.workload}/{r.container}"
        if kind is None:
            out.append(f"# {where}: a {r.workload_kind or 'bare pod'} is not set through kubectl set resources; skipped")
            continue
        requests, limits = [], []
        if "cpu" not in r.held:
            requests.append(f"cpu={cpu_quantity(r.cpu_request)}")
            if r.cpu_limit is not None:
                limits.append(f"cpu={cpu_quantity(r.cpu_limit)}")
        if "memory" not in r.held:
            requests.append(f"memory={memory_quantity(r.memory_request)}")
            limits.append(f"memory={memory_quantity(r.memory_limit)}")
        if not requests:
            out.append(f"# {where}: every request is held by HPA {r.hpa}; nothing to set")
            continue
        cmd = ["kubectl", "--context", contexts.get(r.cluster, r.cluster), "-n", r.namespace, "set", "resources",
               f"{kind}/{r.workload}", "-c", r.container, f"--requests={','.join(requests)}"]
        if limits:
            cmd.append(f"--limits={','.join(limits)}")
        note = f"  # held by HPA {r.hpa}: {', '.join(r.held)}" if r.held else ""
        out.append(shlex.join(cmd) + note)
    return out
