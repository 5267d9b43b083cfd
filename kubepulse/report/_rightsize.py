"""Right-sizing: recommended CPU and memory requests and limits per workload and container, from its hourly rollups.

Pure: container histories (``kubepulse.report._history``, one per pod and container) and the
HorizontalPodAutoscalers in, :class:`~models.records.Recommendation` records out. Every replica of
a workload runs the same pod template, so the hours of all its pods (replicas come and go with
rollouts) are pooled: one container-hour is one sample of "what one replica needs in an hour".

* **CPU** is the rate that a request shares out under contention, so the request is a high
  percentile of use: the 95th percentile of the samples, estimated from each hour's mean, range and
  count (each hour a normal distribution whose spread the hour's range gives, the hours mixed by
  their sample counts; the 95th percentile of hourly *means* alone would hide every burst shorter
  than an hour). The limit, where the container has one, is 1.25 x the 99th percentile (a container
  without a CPU limit gets none: many teams leave it out on purpose, to avoid throttling).
* **Memory** is not compressible: a container above its limit is killed, one above its request is
  the first evicted. The request is the 99th percentile of the hourly peaks plus
  :data:`MEMORY_HEADROOM`, and never below the highest working set seen; the limit is that highest
  working set plus :data:`MEMORY_LIMIT_HEADROOM` (and never below the request).
* **Waste** is the current request minus the recommended one, per replica (cores, bytes).
* **Confidence** is the share of the history window the data covers: 14 days of hours is 1.0.
* **HorizontalPodAutoscalers.** An HPA with a ``Utilization`` target on CPU or memory compares the
  pods' use with their *requests*. Cut the request and the utilization it sees rises above its
  target, it adds replicas, each replica then uses less, and a right-sizer that ignores it cuts
  again: requests spiral down and replicas up. So the request (and limit) of a resource such an HPA
  targets is held at its current value (``held``); the other resource is right-sized as usual (a
  memory request does not move a CPU target). ``AverageValue`` targets, Pods, Object and External
  metrics do not involve the request and hold nothing. To save what a held request wastes, lower
  the HPA's replicas by raising its target utilization instead.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np
from scipy.special import ndtr
from scipy.stats import norm

from kubepulse.report._history import EntityHistory, Hourly
from models.records import AutoscalerScrape, Recommendation

__all__ = ["rightsize", "mixture_quantile", "MEMORY_HEADROOM", "MEMORY_LIMIT_HEADROOM", "CPU_LIMIT_FACTOR", "held_resources"]

MEMORY_HEADROOM = 0.15
"""Memory request = p99 of the hourly peaks x (1 + this), at least the highest working set seen."""
MEMORY_LIMIT_HEADROOM = 0.30
"""Memory limit = highest working set seen x (1 + this)."""
CPU_LIMIT_FACTOR = 1.25
"""CPU limit (where there is one) = this x the p99 of CPU use."""
MIN_CPU = 0.01
"""Requests are never below 10 millicores (what a container needs to be scheduled sensibly)."""
MIN_MEMORY = 16 * 2**20
_CPU_STEP = 0.005
_MEMORY_STEP = 2**20


def mixture_quantile(mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, count: np.ndarray, q: float) -> float:
    """The ``q`` quantile of the samples behind hourly statistics, each hour a normal of its mean and range.

    An hour of ``n`` samples from a normal spans about ``2 * norm.ppf((n - 0.375) / (n + 0.25))`` standard
    deviations (Blom's plotting position of its largest sample), so its range gives its spread; the
    hours are mixed by their counts and the quantile is found by bisection between the smallest and
    the largest sample seen.

    >>> round(mixture_quantile(np.array([1.0, 1.0]), np.array([1.0, 1.0]), np.array([1.0, 1.0]), np.array([4, 4]), 0.95), 6)
    1.0
    >>> x = np.random.default_rng(1).normal(10, 2, size=(200, 240))
    >>> est = mixture_quantile(x.mean(1), x.min(1), x.max(1), np.full(200, 240), 0.95)
    >>> abs(est - np.percentile(x, 95)) < 0.2
    True
    """
    n = np.maximum(count.astype(float), 1.0)
    span = 2.0 * norm.ppf((n - 0.375) / (n + 0.25))
    sigma = np.where(n >= 2, (hi - lo) / np.where(span > 0, span, 1.0), 0.0)
    w = n / n.sum()
    a, b = float(lo.min()), float(hi.max())
    if b - a <= 0:
        return a
    point = sigma <= 0
    for _ in range(60):
        x = 0.5 * (a + b)
        with np.errstate(divide="ignore", invalid="ignore"):
            cdf = np.where(point, (mean <= x).astype(float), ndtr((x - mean) / np.where(point, 1.0, sigma)))
        if float((w * cdf).sum()) < q:
            a = x
        else:
            b = x
    return 0.5 * (a + b)


def _up(x: float, step: float, floor: float) -> float:
    return max(floor, math.ceil(x / step - 1e-9) * step)


def held_resources(hpa: AutoscalerScrape | None, container: str) -> list[str]:
    """The resources whose request ``hpa`` compares utilization against, for ``container`` (see the module docstring)."""
    if hpa is None:
        return []
    held = set()
    for m in hpa.metrics:
        if m.target_type != "Utilization" or m.resource not in ("cpu", "memory"):
            continue
        if m.type == "Resource" or (m.type == "ContainerResource" and m.container == container):
            held.add(m.resource)
    return sorted(held)


def _current(hists: list[EntityHistory], amount: str) -> float | None:
    """A request or limit (``amount``, e.g. ``container.cpu_request_cores``) as the newest hour has it last.

    Requests and limits are windowed like use (constant within a window, they cost next to nothing), so
    the ``last`` of the newest hour of any of the workload's pods is what is configured now.
    """
    best: tuple[float, float] | None = None
    for h in hists:
        a = h.metrics.get(amount)
        if a is None or not len(a.start):
            continue
        k = int(np.argmax(a.start))
        if best is None or float(a.start[k]) > best[0]:
            best = (float(a.start[k]), float(a.last[k]))
    return None if best is None or best[1] <= 0 else best[1]


def _pooled(hists: list[EntityHistory], metric: str) -> Hourly | None:
    parts = [h.metrics[metric] for h in hists if metric in h.metrics and len(h.metrics[metric])]
    if not parts:
        return None
    return Hourly(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("start", "min", "max", "mean", "last", "count")))


def _replicas(hists: list[EntityHistory], newest: float) -> float:
    """Replicas on average over the newest day: container-hours in it over its hours."""
    hours = [s for h in hists for s in h.metrics.get("container.memory_working_set_bytes", Hourly.from_rows([])).start
             if s > newest - 86400.0]
    return len(hours) / max(1, len(set(hours)))


def _hpa_for(autoscalers: Iterable[AutoscalerScrape], cluster: str, namespace: str, kind: str | None, name: str) -> AutoscalerScrape | None:
    for a in autoscalers:
        if a.cluster == cluster and a.namespace == namespace and a.target_name == name and (kind is None or a.target_kind == kind):
            return a
    return None


def rightsize(
    histories: Iterable[EntityHistory],
    autoscalers: Iterable[AutoscalerScrape] = (),
    *,
    history_days: float = 14.0,
    at: datetime | None = None,
) -> list[Recommendation]:
    """One recommendation per workload and container, from the container histories of all its pods."""
    hpas = list(autoscalers)
    groups: dict[tuple[str, str, str, str], list[EntityHistory]] = defaultdict(list)
    kinds: dict[tuple[str, str, str, str], str | None] = {}
    for h in histories:
        if h.kind != "container" or not h.namespace or not h.container or not h.pod:
            continue
        # A bare pod is its own workload.
        key = (h.cluster, h.namespace, h.workload or h.pod, h.container)
        groups[key].append(h)
        kinds[key] = h.workload_kind if h.workload else "Pod"
    out = []
    for key, hists in groups.items():
        rec = _recommend(key, kinds[key], hists, hpas, history_days=history_days, at=at)
        if rec is not None:
            out.append(rec)
    out.sort(key=lambda r: (r.cluster, r.namespace, r.workload, r.container))
    return out


def _recommend(key: tuple[str, str, str, str], kind: str | None, hists: list[EntityHistory], hpas: list[AutoscalerScrape], *,
               history_days: float, at: datetime | None) -> Recommendation | None:
    cluster, namespace, workload, container = key
    cpu = _pooled(hists, "container.cpu_cores")
    mem = _pooled(hists, "container.memory_working_set_bytes")
    if cpu is None or mem is None:
        return None
    cpu_p95 = mixture_quantile(cpu.mean, cpu.min, cpu.max, cpu.count, 0.95)
    cpu_p99 = mixture_quantile(cpu.mean, cpu.min, cpu.max, cpu.count, 0.99)
    mem_p95, mem_p99 = (float(v) for v in np.percentile(mem.max, [95, 99]))
    mem_max = float(mem.max.max())
    cur_cpu_req = _current(hists, "container.cpu_request_cores")
    cur_cpu_lim = _current(hists, "container.cpu_limit_cores")
    cur_mem_req = _current(hists, "container.memory_request_bytes")
    cur_mem_lim = _current(hists, "container.memory_limit_bytes")
    cpu_request = _up(cpu_p95, _CPU_STEP, MIN_CPU)
    cpu_limit = None if cur_cpu_lim is None else _up(max(cpu_request, CPU_LIMIT_FACTOR * cpu_p99), _CPU_STEP, MIN_CPU)
    memory_request = _up(max(mem_max, mem_p99 * (1 + MEMORY_HEADROOM)), _MEMORY_STEP, MIN_MEMORY)
    memory_limit = _up(max(memory_request, mem_max * (1 + MEMORY_LIMIT_HEADROOM)), _MEMORY_STEP, MIN_MEMORY)
    hpa = _hpa_for(hpas, cluster, namespace, kind, workload)
    held = [r for r in held_resources(hpa, container)
            if (cur_cpu_req if r == "cpu" else cur_mem_req) is not None]
    if "cpu" in held:
        cpu_request, cpu_limit = cur_cpu_req, cur_cpu_lim  # type: ignore[assignment]
    if "memory" in held:
        memory_request = cur_mem_req  # type: ignore[assignment]
        memory_limit = cur_mem_lim if cur_mem_lim is not None else memory_limit
    starts = np.union1d(cpu.start, mem.start)
    newest = float(starts[-1])
    end = datetime.fromtimestamp(newest + 3600.0, UTC)
    return Recommendation(
        cluster=cluster,
        namespace=namespace,
        workload=workload,
        workload_kind=kind,
        container=container,
        pods=len({h.pod for h in hists}),
        cpu_p95=cpu_p95,
        cpu_p99=cpu_p99,
        cpu_max=float(cpu.max.max()),
        memory_p95=mem_p95,
        memory_p99=mem_p99,
        memory_max=mem_max,
        current_cpu_request=cur_cpu_req,
        current_cpu_limit=cur_cpu_lim,
        current_memory_request=cur_mem_req,
        current_memory_limit=cur_mem_lim,
        cpu_request=cpu_request,
        cpu_limit=cpu_limit,
        memory_request=memory_request,
        memory_limit=memory_limit,
        waste_cpu_cores=None if cur_cpu_req is None else cur_cpu_req - cpu_request,
        waste_memory_bytes=None if cur_mem_req is None else cur_mem_req - memory_request,
        replicas=_replicas(hists, newest),
        hpa=hpa.name if hpa else None,
        held=held,  # type: ignore[arg-type]
        confidence=min(1.0, len(starts) / (history_days * 24)),
        history_hours=len(starts),
        history_start=datetime.fromtimestamp(float(starts[0]), UTC),
        history_end=end,
        generated_at=at or end,
    )
