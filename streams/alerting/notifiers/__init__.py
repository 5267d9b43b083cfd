"""Notifiers: PagerDuty, Slack, email, webhook, console and Kafka, behind one interface."""

from __future__ import annotations

from pathlib import Path

from streams.alerting.config import (
    ConsoleConfig,
    EmailConfig,
    KafkaConfig,
    PagerDutyConfig,
    Receiver,
    SlackConfig,
    WebhookConfig,
)
from streams.alerting.notifiers._base import Notifier
from streams.alerting.notifiers.console import ConsoleNotifier
from streams.alerting.notifiers.email import EmailNotifier
from streams.alerting.notifiers.kafka import KafkaNotifier, Send
from streams.alerting.notifiers.pagerduty import PagerDutyNotifier
from streams.alerting.notifiers.slack import SlackNotifier
from streams.alerting.notifiers.webhook import WebhookNotifier

__all__ = [
    "Notifier",
    "PagerDutyNotifier",
    "SlackNotifier",
    "EmailNotifier",
    "WebhookNotifier",
    "ConsoleNotifier",
    "KafkaNotifier",
    "build_notifiers",
]


def build_notifiers(
    receiver: Receiver, *, notifications_file: Path | None, topic_prefix: str, send: Send | None
) -> dict[str, Notifier]:
    """One notifier per integration of ``receiver``, keyed by integration id (``slack/0``...)."""
    out: dict[str, Notifier] = {}
    timeout = receiver.retry.timeout
    for iid, cfg in receiver.integrations():
        kw = {"receiver": receiver.name, "integration_id": iid, "timeout": timeout}
        if isinstance(cfg, PagerDutyConfig):
            out[iid] = PagerDutyNotifier(cfg, **kw)
        elif isinstance(cfg, SlackConfig):
            out[iid] = SlackNotifier(cfg, **kw)
        elif isinstance(cfg, EmailConfig):
            out[iid] = EmailNotifier(cfg, **kw)
        elif isinstance(cfg, WebhookConfig):
            out[iid] = WebhookNotifier(cfg, **kw)
        elif isinstance(cfg, ConsoleConfig):
            out[iid] = ConsoleNotifier(cfg, default_file=notifications_file, **kw)
        elif isinstance(cfg, KafkaConfig):
            if send is None:
                raise ValueError("a kafka receiver needs the dispatcher's producer")
            out[iid] = KafkaNotifier(cfg, topic=topic_prefix + cfg.topic, send=send, **kw)
    return out
