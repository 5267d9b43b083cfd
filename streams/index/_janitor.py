"""Retention: deletes daily indices older than ``retention.<kind>_days``, reading the day from the index name.

Each rollup window is its own index kind with its own retention
(``retention.rollups_1m_days``, ``retention.rollups_1h_days``).

ILM is not assumed (a minimal Elasticsearch, like the local stack's, has
none). Where a cluster has it and ``elasticsearch.ilm_policy`` is set, the
templates attach the policy and every index that carries
``index.lifecycle.name`` is left to ILM: the janitor never deletes what a
lifecycle policy manages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from elasticsearch import Elasticsearch

from models.settings import Settings
from streams.index._documents import parse_index_name
from streams.index._fields import INDEX_KINDS

__all__ = ["JanitorReport", "retention_plan", "run_janitor", "retention_days"]


@dataclass(slots=True)
class JanitorReport:
    """What the janitor deleted (or would delete, on a dry run), kept, and left to ILM."""

    delete: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    managed: list[str] = field(default_factory=list)
    dry_run: bool = False


def retention_days(settings: Settings, kind: str) -> int:
    """Days an index kind is kept: ``retention.<kind>_days`` (``rollups-1h`` reads ``rollups_1h_days``).

    >>> from models.settings import load_settings
    >>> retention_days(load_settings(), "rollups-1m"), retention_days(load_settings(), "rollups-1h")
    (14, 400)
    """
    return getattr(settings.retention, f"{kind.replace('-', '_')}_days")


def _cutoffs(settings: Settings, today: date) -> dict[str, date]:
    """Per kind, the oldest day kept: ``metrics_days=7`` keeps today and the 6 days before."""
    return {kind: today - timedelta(days=retention_days(settings, kind) - 1) for kind in INDEX_KINDS}


def retention_plan(indices: dict[str, str | None], settings: Settings, *, today: date) -> JanitorReport:
    """Sort ``indices`` (name to its ``index.lifecycle.name`` or None) into delete, keep and managed.

    Names that are not ``<prefix>-<kind>-YYYY.MM.DD`` are not kubepulse's daily
    indices and are not touched (nor reported).

    >>> from models.settings import load_settings
    >>> s = load_settings(elasticsearch={"index_prefix": "kp"}, retention={"metrics_days": 2})
    >>> r = retention_plan({"kp-metrics-2026.03.08": None, "kp-metrics-2026.03.09": None, "kp-metrics-2026.03.10": None,
    ...           "kp-other-2026.01.01": None}, s, today=date(2026, 3, 10))
    >>> r.delete, r.keep
    (['kp-metrics-2026.03.08'], ['kp-metrics-2026.03.09', 'kp-metrics-2026.03.10'])
    """
    prefix = settings.elasticsearch.index_prefix
    cutoffs = _cutoffs(settings, today)
    report = JanitorReport()
    for name in sorted(indices):
        parsed = parse_index_name(prefix, name)
        if parsed is None:
            continue
        kind, day = parsed
        if indices[name]:
            report.managed.append(name)
        elif day < cutoffs[kind]:
            report.delete.append(name)
        else:
            report.keep.append(name)
    return report


def run_janitor(client: Elasticsearch, settings: Settings, *, dry_run: bool = False, today: date | None = None) -> JanitorReport:
    """Delete the daily indices past their kind's retention (none on a ``dry_run``); return the report."""
    prefix = settings.elasticsearch.index_prefix
    pattern = f"{prefix}-*"
    names = [row["index"] for row in client.cat.indices(index=pattern, h="index", format="json", expand_wildcards="open,closed")]
    # Only indices that carry the setting come back: the rest have no lifecycle.
    managed = client.indices.get_settings(
        index=pattern, name="index.lifecycle.name", expand_wildcards="open,closed", allow_no_indices=True
    )
    indices = {name: None for name in names}
    for name, body in managed.items():
        indices[name] = body.get("settings", {}).get("index", {}).get("lifecycle", {}).get("name")
    report = retention_plan(indices, settings, today=today or datetime.now(UTC).date())
    report.dry_run = dry_run
    if not dry_run:
        # In groups, so a long list never exceeds the URL length limit.
        for i in range(0, len(report.delete), 50):
            client.indices.delete(index=",".join(report.delete[i : i + 50]), expand_wildcards="none")
    return report
