"""What a notifier is given: one alert group's notification, and its Alertmanager webhook form."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote

from models.records import AlertTransition, KubeEvent

__all__ = ["AlertMessage", "rfc3339", "parse_retry_after", "pod_key"]

_ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager sends as endsAt of a firing alert


def rfc3339(ts: datetime | None) -> str:
    if ts is None:
        return _ZERO_TIME
    return ts.isoformat().replace("+00:00", "Z")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent or unreadable.

    >>> parse_retry_after("3"), parse_retry_after(None), parse_retry_after("soon")
    (3.0, None, None)
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if now is None:
        from datetime import UTC

        now = datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def pod_key(labels: dict[str, str]) -> str | None:
    """``cluster/namespace/pod`` of an alert or event, the key of the recent-events ring."""
    if labels.get("pod") and labels.get("namespace"):
        return f"{labels.get('cluster', '')}/{labels['namespace']}/{labels['pod']}"
    return None


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


@dataclass(slots=True)
class AlertMessage:
    """One notification of one alert group to one integration.

    ``firing`` holds every unmuted firing alert of the group (as Alertmanager
    sends the whole group); ``resolved`` the alerts resolved since the last
    notification; ``changed`` the fingerprints that are new (all of them on a
    repeat) — PagerDuty, which is per alert, sends only those.
    """

    receiver: str
    group_key: str
    group_labels: dict[str, str]
    firing: list[AlertTransition]
    resolved: list[AlertTransition]
    changed: set[str]
    external_url: str = "http://kubepulse"
    kibana_url: str | None = None
    dashboard_id: str = "kubepulse-overview"
    recent_events: dict[str, list[KubeEvent]] = field(default_factory=dict)
    previous_ref: str | None = None
    """The receiver's handle from the previous notification of this group (Slack ``channel:ts``)."""
    ref: str | None = None
    """Set by a notifier that wants the next notification to update its message."""
    late: set[str] = field(default_factory=set)
    """Fingerprints in ``resolved`` that fired and resolved before this integration was told they fired."""
    done: set[str] = field(default_factory=set)
    """Parts already delivered in this notification, so a retry does not repeat them."""

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "firing" if self.firing else "resolved"

    @property
    def alerts(self) -> list[AlertTransition]:
        return [*self.firing, *self.resolved]

    @property
    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    @property
    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])

    @property
    def fingerprints(self) -> list[str]:
        return sorted(self.changed) if self.changed else [a.fingerprint for a in self.alerts]

    def title(self) -> str:
        name = self.common_labels.get("alertname") or ", ".join(sorted({a.labels["alertname"] for a in self.alerts}))
        if self.firing:
            return f"[FIRING:{len(self.firing)}] {name}"
        return f"[RESOLVED] {name}"

    def links(self, alert: AlertTransition) -> list[dict[str, str]]:
        """Links for one alert: Kibana dashboard and Discover for its series, and the generator URL."""
        out: list[dict[str, str]] = []
        if self.kibana_url:
            base = self.kibana_url.rstrip("/")
            start = alert.starts_at - timedelta(minutes=30)
            end = alert.ends_at + timedelta(minutes=10) if alert.ends_at else None
            g = f"_g=(time:(from:'{rfc3339(start)}',to:'{rfc3339(end) if end else 'now'}'))"
            out.append({"href": f"{base}/app/dashboards#/view/{quote(self.dashboard_id)}?{g}", "text": "Kibana dashboard"})
            terms = []
            for label, fieldname in (
                ("cluster", "orchestrator.cluster.name"),
                ("namespace", "kubernetes.namespace"),
                ("pod", "kubernetes.pod.name"),
                ("node", "kubernetes.node.name"),
                ("container", "container.name"),
            ):
                if alert.labels.get(label):
                    terms.append(f'{fieldname}:"{alert.labels[label]}"')
            query = quote(" and ".join(terms), safe="")
            out.append(
                {"href": f"{base}/app/discover#/?{g}&_a=(query:(language:kuery,query:'{query}'))", "text": "Kibana Discover"}
            )
        if alert.generator_url:
            out.append({"href": alert.generator_url, "text": "Source"})
        return out

    def events_for(self, alert: AlertTransition) -> list[KubeEvent]:
        key = pod_key(alert.labels)
        return list(self.recent_events.get(key, [])) if key else []

    def webhook_body(self, *, max_alerts: int = 0) -> dict[str, Any]:
        """Alertmanager's webhook JSON (version 4), so receivers written for Alertmanager work unchanged."""
        alerts = self.alerts
        truncated = 0
        if max_alerts and len(alerts) > max_alerts:
            truncated = len(alerts) - max_alerts
            alerts = alerts[:max_alerts]
        return {
            "version": "4",
            "groupKey": self.group_key,
            "truncatedAlerts": truncated,
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": dict(self.group_labels),
            "commonLabels": self.common_labels,
            "commonAnnotations": self.common_annotations,
            "externalURL": self.external_url,
            "alerts": [
                {
                    "status": a.status,
                    "labels": dict(a.labels),
                    "annotations": dict(a.annotations),
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": rfc3339(a.ends_at if a.status == "resolved" else None),
                    "generatorURL": a.generator_url or "",
                    "fingerprint": a.fingerprint,
                }
                for a in alerts
            ],
        }
