"""The reports end to end: read the history from Elasticsearch, analyse it, and (``kubepulse report run``) write the documents."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from elasticsearch import Elasticsearch

from kubepulse.report import _queries as q
from kubepulse.report._capacity import capacity
from kubepulse.report._rightsize import rightsize
from models.records import CapacityForecast, Recommendation
from models.settings import Settings
from streams.index import async_client, install_templates

__all__ = ["capacity_report", "rightsize_report", "run_reports", "RunSummary", "NoHistory", "install"]


class NoHistory(LookupError):
    """There is no hourly rollup to report on (none indexed yet, or none for the cluster asked)."""


def install(settings: Settings) -> None:
    """Install every index template (the report kinds' too); idempotent, what ``kubepulse report run`` does first."""

    async def run() -> None:
        client = async_client(settings)
        try:
            await install_templates(client, settings)
        finally:
            await client.close()

    asyncio.run(run())


def _as_of(client: Elasticsearch, settings: Settings, cluster: str | None, at: datetime | None) -> datetime:
    if at is not None:
        return at
    newest = q.newest_hour(client, settings, cluster=cluster)
    if newest is None:
        where = f" of cluster {cluster}" if cluster else ""
        raise NoHistory(f"no hourly rollups{where} in {settings.elasticsearch.index_prefix}-rollups-1h yet: the worker "
                        "publishes one per entity when each hour closes, and the indexer indexes them")
    return newest


def capacity_report(client: Elasticsearch, settings: Settings, *, cluster: str | None = None, history_days: float = 28.0,
                    horizon_days: float = 365.0, interval: float = 0.8, at: datetime | None = None) -> list[CapacityForecast]:
    """Forecasts for every node, namespace, cluster and volume with hourly rollups in the ``history_days`` before ``at``."""
    end = _as_of(client, settings, cluster, at)
    hist = q.histories(client, settings, kinds=dict(q.CAPACITY_METRICS), start=end - timedelta(days=history_days), end=end,
                       cluster=cluster)
    return capacity(hist, q.quotas(client, settings, end=end, cluster=cluster), at=end, interval=interval,
                    horizon_days=horizon_days)


def rightsize_report(client: Elasticsearch, settings: Settings, *, cluster: str | None = None, namespace: str | None = None,
                     history_days: float = 14.0, at: datetime | None = None) -> list[Recommendation]:
    """Recommendations for every workload and container with hourly container rollups in the ``history_days`` before ``at``."""
    end = _as_of(client, settings, cluster, at)
    hist = q.histories(client, settings, kinds={"container": q.CONTAINER_METRICS}, start=end - timedelta(days=history_days),
                       end=end, cluster=cluster, namespace=namespace)
    hpas = q.autoscalers(client, settings, end=end, cluster=cluster, namespace=namespace)
    return rightsize(hist, hpas, history_days=history_days, at=end)


@dataclass(slots=True)
class RunSummary:
    """What ``kubepulse report run`` wrote."""

    at: datetime
    capacity: int
    recommendations: int


def run_reports(client: Elasticsearch, settings: Settings, *, cluster: str | None = None, capacity_days: float = 28.0,
                rightsize_days: float = 14.0, at: datetime | None = None) -> RunSummary:
    """Both reports, written to ``<prefix>-capacity`` and ``<prefix>-recommendations`` (templates must be installed)."""
    end = _as_of(client, settings, cluster, at)
    forecasts = capacity_report(client, settings, cluster=cluster, history_days=capacity_days, at=end)
    recs = rightsize_report(client, settings, cluster=cluster, history_days=rightsize_days, at=end)
    q.write(client, settings, [*forecasts, *recs])
    return RunSummary(end, len(forecasts), len(recs))
