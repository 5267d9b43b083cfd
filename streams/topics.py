"""The topics: kubepulse's contract between processes, declared once.

Collectors import this module for topic names and keys (it does not import
Faust); ``streams.app`` turns the same specs into Faust topics.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models.records import (
    AlertTransition,
    Anomaly,
    AutoscalerScrape,
    DeadLetter,
    EntityRollup,
    Incident,
    KubeEvent,
    NodeScrape,
    QuotaScrape,
    Notification,
    AlertGroupState,
    Record,
    Silence,
)

if TYPE_CHECKING:
    from models.settings import Settings

__all__ = [
    "TopicSpec",
    "TOPICS",
    "METRICS",
    "EVENTS",
    "QUOTAS",
    "AUTOSCALERS",
    "ROLLUPS",
    "ANOMALIES",
    "ALERTS",
    "DEADLETTER",
    "INCIDENTS",
    "NOTIFICATIONS",
    "SILENCES",
    "ALERT_GROUPS",
    "AGGREGATES_REPARTITION",
    "spec_for",
    "create_topics",
]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    kind: str
    """The record kind: also the Elasticsearch index kind."""
    value_type: type[Record]
    key: str
    """What the key is; keys decide partitions, so one series stays on one worker."""
    compacted: bool = False

    def named(self, prefix: str = "") -> str:
        """The topic's name under a prefix (``KafkaSettings.topic_prefix``).

        >>> ALERTS.named("t1.")
        't1.kubepulse.alerts.v1'
        """
        return prefix + self.name


METRICS = TopicSpec("kubepulse.metrics.v1", "metrics", NodeScrape, "cluster/node")
EVENTS = TopicSpec("kubepulse.events.v1", "events", KubeEvent, "cluster/namespace/object")
QUOTAS = TopicSpec("kubepulse.quotas.v1", "quotas", QuotaScrape, "cluster/namespace/name")
AUTOSCALERS = TopicSpec("kubepulse.autoscalers.v1", "autoscalers", AutoscalerScrape, "cluster/namespace/name")
ROLLUPS = TopicSpec("kubepulse.rollups.v2", "rollups", EntityRollup, "entity id")
ANOMALIES = TopicSpec("kubepulse.anomalies.v1", "anomalies", Anomaly, "series id")
ALERTS = TopicSpec("kubepulse.alerts.v1", "alerts", AlertTransition, "alert fingerprint")
DEADLETTER = TopicSpec("kubepulse.deadletter.v1", "deadletter", DeadLetter, "source topic")
INCIDENTS = TopicSpec("kubepulse.incidents.v1", "incidents", Incident, "cluster")
NOTIFICATIONS = TopicSpec("kubepulse.notifications.v1", "notifications", Notification, "alert group key")
SILENCES = TopicSpec("kubepulse.silences.v1", "silences", Silence, "silence id", compacted=True)
# Internal state of the alert dispatcher (what each group was sent): not for indexing.
ALERT_GROUPS = TopicSpec("kubepulse.alertgroups.v1", "alertgroups", AlertGroupState, "receiver|group key", compacted=True)
# Internal to the worker (streams.aggregates): per-node partial rollups re-keyed by cluster. Not in TOPICS
# (nothing indexes it); the worker declares it.
AGGREGATES_REPARTITION = TopicSpec("kubepulse.aggregates-repartition.v1", "aggregates-repartition", EntityRollup,
                                   "cluster")

TOPICS: tuple[TopicSpec, ...] = (
    METRICS, EVENTS, QUOTAS, AUTOSCALERS, ROLLUPS, ANOMALIES, ALERTS, DEADLETTER, INCIDENTS, NOTIFICATIONS, SILENCES, ALERT_GROUPS,
)


def spec_for(name_or_kind: str) -> TopicSpec:
    """The spec of a topic by its name or its kind.

    >>> spec_for("alerts").name
    'kubepulse.alerts.v1'
    """
    for t in TOPICS:
        if name_or_kind in (t.name, t.kind):
            return t
    raise KeyError(f"no kubepulse topic {name_or_kind!r}; known: {', '.join(t.name for t in TOPICS)}")


async def create_topics(settings: Settings, specs: Iterable[TopicSpec] = TOPICS) -> list[str]:
    """Create the topics of ``specs`` (all of kubepulse's by default) under the settings' prefix, compacted
    ones with ``cleanup.policy=compact``; existing ones are kept. Returns the names created."""
    from models.kafka import create_topics as create  # aiokafka only when topics are created

    prefix = settings.kafka.topic_prefix
    specs = list(specs)
    return await create(settings, [s.named(prefix) for s in specs], compacted={s.named(prefix) for s in specs if s.compacted})
