"""Days of hourly history for the report tests, made by the real pipeline faster than real time.

A simulated fleet (``collectors.simulator.Fleet``, with controlled scenarios) is stepped at a long scrape
interval (five minutes: twelve samples an hour instead of 240, so two weeks take seconds) and every node
scrape goes through the worker's own ``streams.pipeline.Pipeline`` (windows only: no detectors, no rules);
the per-node partials go through ``streams.aggregates.ClusterAggregator`` for the workload, namespace and
cluster sums. What comes out is exactly what the worker publishes on kubepulse.rollups.v2; the tests index
it with ``streams.index.documents_for`` and read it back through the report queries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from collectors.simulator import Autoscaled, Fleet, Growing, Scenario
from models.records import AutoscalerScrape, EntityRollup, NodeScrape, QuotaScrape, Record
from models.settings import load_settings
from streams.aggregates import ClusterAggregator
from streams.pipeline import Pipeline

__all__ = ["History", "simulate_history", "report_records"]


@dataclass(slots=True)
class History:
    fleet: Fleet
    rollups: list[EntityRollup] = field(default_factory=list)
    """The hourly rollups (1-minute ones are dropped here: the reports read hours)."""
    quotas: list[QuotaScrape] = field(default_factory=list)
    """The quotas as of the last step."""
    autoscalers: list[AutoscalerScrape] = field(default_factory=list)
    steps: int = 0


def simulate_history(
    *,
    end: datetime,
    days: float,
    scenarios: Sequence[Scenario],
    interval_s: float = 300.0,
    clusters: int = 1,
    nodes: int = 2,
    pods: int = 4,
    seed: int = 5,
    on_scrape: Callable[[NodeScrape], Any] | None = None,
    phase_s: float = 60.0,
) -> History:
    """``days`` of a small fleet with ``scenarios``, ending at ``end`` (every hour closed), through the real pipeline."""
    settings = load_settings()
    settings = settings.model_copy(update={"streams": settings.streams.model_copy(update={"scored_metrics": []})})
    fleet = Fleet(clusters=clusters, nodes_per_cluster=nodes, pods_per_node=pods, seed=seed, incidents="none", interval_s=interval_s,
                  scenarios=scenarios)
    pipeline = Pipeline(settings)
    states: dict[str, Any] = {}
    aggs: dict[str, ClusterAggregator] = {}
    out = History(fleet)

    def keep(cluster: str, o: Any) -> None:
        agg = aggs.setdefault(cluster, ClusterAggregator(cluster, grace_s=settings.streams.window_grace_s))
        for r in (*o.rollups, *(r for p in o.partials for r in agg.add(EntityRollup.model_validate_json(p)))):
            if r.window == "1h":
                out.rollups.append(r)

    steps = int(days * 86400 / interval_s)
    # Scrapes a minute past the hour, not on it: a node scraped every few minutes whose scrape closes an hour
    # *and* the next minute at once sends that minute's partial first, and the cluster sums would close the
    # hour without it (at the worker's real 15 s interval the two close scrapes apart).
    start = end - timedelta(seconds=steps * interval_s) + timedelta(seconds=phase_s)
    for i in range(steps):
        scrapes, _, _ = fleet.step(start + timedelta(seconds=i * interval_s))
        for s in scrapes:
            if on_scrape is not None:
                on_scrape(s)
            st = states.setdefault(s.key, pipeline.new_state(s.key))
            keep(s.cluster, pipeline.process(st, s))
    for key, st in states.items():
        keep(key.split("/", 1)[0], pipeline.flush(st))
    for agg in aggs.values():
        out.rollups += [r for r in agg.flush() if r.window == "1h"]
    out.quotas = fleet.quotas()
    out.autoscalers = fleet.autoscalers()
    out.steps = steps
    return out


def report_records(at: datetime, *, days: float = 3.0) -> list[Record]:
    """What ``kubepulse report run`` writes at ``at`` for a few days of a small fleet with a growing namespace and an HPA.

    For the Kibana panel tests: the capacity forecasts, recommendations and HPA as the reports make them from
    pipeline rollups (``kubepulse.report``'s pure analyses), all stamped ``at``.
    """
    from kubepulse.report import Quota, capacity, from_rollups, rightsize

    end = at.replace(minute=0, second=0, microsecond=0)
    h = simulate_history(end=end, days=days, scenarios=[Growing(full_after_days=20), Autoscaled()], nodes=2, pods=3, interval_s=240)
    hist = from_rollups(h.rollups)
    quotas: dict[tuple[str, str, str], Quota] = {}
    for q in h.quotas:
        for resource, hard in q.hard.items():
            quotas[(q.cluster, q.namespace, resource)] = Quota(hard, q.name)
    hpas = [a.model_copy(update={"timestamp": at}) for a in h.autoscalers]
    return [*capacity(hist, quotas, at=at), *rightsize(hist, hpas, at=at), *hpas]
