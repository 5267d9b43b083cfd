"""PagerDuty Events API v2 through the ``pagerduty`` package: trigger on firing, resolve on resolved.

PagerDuty deduplicates by ``dedup_key``, so each alert of a group is its own
event with ``dedup_key`` = the alert's fingerprint: a group of 20 pods makes
20 PagerDuty alerts that PagerDuty itself may group into one incident, and a
resolve closes exactly the alert it belongs to. Only the changed alerts of a
group are sent (all of them on a repeat), so an unchanged alert is not
re-triggered at every group flush. An alert that fired and resolved before it
could be paged (``AlertMessage.late``) gets a trigger and then its resolve.

The client is synchronous (httpx), so each request runs in a thread. Its
own retry loop (which sleeps inside the thread, forever on 429) is turned off:
the dispatcher retries with backoff and ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx2
import pagerduty

from models.records import AlertTransition
from streams.alerting._message import AlertMessage, rfc3339
from streams.alerting.config import PagerDutyConfig
from streams.alerting.errors import NotifyError
from streams.alerting.notifiers._base import Notifier, http_error

__all__ = ["PagerDutyNotifier", "pd_severity"]

_SEVERITY = {
    "critical": "critical",
    "page": "critical",
    "error": "error",
    "high": "error",
    "major": "error",
    "warning": "warning",
    "warn": "warning",
    "medium": "warning",
    "info": "info",
    "low": "info",
    "none": "info",
}
_SUMMARY_MAX = 1024


def pd_severity(labels: dict[str, str]) -> str:
    """PagerDuty's severity for an alert's ``severity`` label (unknown or missing: ``warning``).

    >>> pd_severity({"severity": "Critical"}), pd_severity({})
    ('critical', 'warning')
    """
    return _SEVERITY.get(labels.get("severity", "").lower(), "warning")


class PagerDutyNotifier(Notifier):
    integration = "pagerduty"

    def __init__(self, config: PagerDutyConfig, *, receiver: str, integration_id: str, timeout: float) -> None:
        super().__init__(receiver=receiver, integration_id=integration_id, timeout=timeout)
        assert config.routing_key is not None  # load_config guarantees it
        self._config = config
        kw = {"verify": ssl.create_default_context(cafile=str(config.ca_file))} if config.ca_file else {}
        self._client = pagerduty.EventsApiV2Client(
            config.routing_key.get_secret_value(), base_url=config.url.rstrip("/"), **kw
        )
        # One attempt per call: a status listed with a count is returned at once
        # when max_http_attempts is negative, and network errors raise at once.
        self._client.retry = {status: 1 for status in (408, 429, 500, 502, 503, 504)}
        self._client.max_http_attempts = -1
        self._client.max_network_attempts = 0
        self._client.timeout = timeout

    def _event(self, alert: AlertTransition, message: AlertMessage) -> dict[str, Any]:
        labels = alert.labels
        summary = alert.annotations.get("summary") or alert.annotations.get("description") or (
            f"{labels['alertname']}: " + ", ".join(f"{k}={labels[k]}" for k in sorted(labels) if k != "alertname")
        )
        if len(summary) > _SUMMARY_MAX:
            summary = summary[: _SUMMARY_MAX - 1] + "…"
        details: dict[str, Any] = {
            "labels": dict(labels),
            "annotations": dict(alert.annotations),
            "rule": alert.rule,
            "starts_at": rfc3339(alert.starts_at),
            "group_key": message.group_key,
            "firing_in_group": len(message.firing),
        }
        if alert.value is not None:
            details["value"] = alert.value
        if alert.threshold is not None:
            details["threshold"] = alert.threshold
        events = message.events_for(alert)
        if events:
            details["recent_events"] = [f"{e.reason} x{e.count}: {e.message}"[:200] for e in events[-5:]]
        payload = {
            "summary": summary,
            "source": self._config.source or labels.get("pod") or labels.get("node") or labels.get("cluster") or "kubepulse",
            "severity": pd_severity(labels),
            "timestamp": rfc3339(alert.starts_at),
            "component": labels.get("container") or labels.get("workload") or labels.get("metric") or labels["alertname"],
            "group": "/".join(v for v in (labels.get("cluster"), labels.get("namespace")) if v) or "kubepulse",
            "class": labels["alertname"],
            "custom_details": details,
        }
        return {"payload": payload, "links": message.links(alert), "client": self._config.client}

    def _send(self, action: str, dedup_key: str, properties: dict[str, Any]) -> None:
        try:
            self._client.send_event(action, dedup_key=dedup_key, **properties)
        except pagerduty.HttpError as exc:
            # Not str(exc): the library's message may quote part of the routing key.
            status = exc.response.status_code
            raise http_error(status, retry_after=exc.response.headers.get("Retry-After"), what="PagerDuty") from None
        except pagerduty.Error as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else type(exc).__name__
            raise NotifyError(f"PagerDuty unreachable ({cause})", retryable=True) from None
        except httpx2.HTTPError as exc:
            raise NotifyError(f"PagerDuty request failed ({type(exc).__name__})", retryable=True) from None

    async def notify(self, message: AlertMessage) -> None:
        for alert in message.firing:
            if alert.fingerprint in message.changed and alert.fingerprint not in message.done:
                await asyncio.to_thread(self._send, "trigger", alert.fingerprint, self._event(alert, message))
                message.done.add(alert.fingerprint)
        for alert in message.resolved:
            fp = alert.fingerprint
            if fp in message.late and f"{fp}:trigger" not in message.done:
                # Fired and resolved before it could be paged: paged now, then closed below.
                await asyncio.to_thread(self._send, "trigger", fp, self._event(alert, message))
                message.done.add(f"{fp}:trigger")
            if self._config.send_resolved and fp not in message.done:
                await asyncio.to_thread(self._send, "resolve", fp, {})
                message.done.add(fp)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)
