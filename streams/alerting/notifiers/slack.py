"""Slack through slack_sdk: a Block Kit message per group notification, updated in place on resolve.

Two modes. An incoming webhook (``AsyncWebhookClient``) can only post, so
every notification is a new message. A bot token (``AsyncWebClient``) posts
the first notification with ``chat.postMessage``, keeps its ``channel:ts``
in the group's state, updates that message with ``chat.update`` afterwards
and, when the group resolves, also replies in its thread so the channel sees it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from models.records import AlertTransition, KubeEvent
from streams.alerting._message import AlertMessage
from streams.alerting.config import SlackConfig
from streams.alerting.errors import NotifyError
from streams.alerting.notifiers._base import Notifier, http_error, quiet_logger

__all__ = ["SlackNotifier", "slack_blocks"]

_MAX_ALERTS_SHOWN = 10
_EMOJI = {"critical": ":red_circle:", "error": ":large_orange_circle:", "warning": ":large_yellow_circle:"}
_RETRYABLE_API_ERRORS = {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


def _ago(ts: datetime | None, now: datetime) -> str:
    if ts is None:
        return ""
    s = max(0, int((now - ts).total_seconds()))
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago" if s < 7200 else f"{s // 3600}h ago"


def _value_line(alert: AlertTransition) -> str:
    if alert.value is None:
        return ""
    if "score" in alert.rule.lower() or "anomaly" in alert.labels.get("alertname", "").lower():
        tail = f" (threshold {alert.threshold:g})" if alert.threshold is not None else ""
        return f"anomaly score *{alert.value:.3g}*{tail}"
    if alert.threshold is not None:
        return f"value *{alert.value:.4g}* vs threshold {alert.threshold:.4g}"
    return f"value *{alert.value:.4g}*"


def _where(labels: dict[str, str]) -> str:
    parts = []
    for name in ("cluster", "namespace", "workload", "pod", "container", "node"):
        if labels.get(name):
            parts.append(f"{name} `{labels[name]}`")
    return " · ".join(parts)


def _events_text(events: list[KubeEvent], now: datetime) -> str:
    return "\n".join(
        f"• *{e.reason}* ×{e.count} {_ago(e.timestamp, now)}: {e.message[:150]}" for e in events[-5:]
    )


def slack_blocks(message: AlertMessage, *, now: datetime | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The fallback text and the Block Kit blocks of a notification (at most 50 blocks, texts within limits)."""
    now = now or datetime.now(UTC)
    severity = message.common_labels.get("severity", "")
    icon = ":white_check_mark:" if message.status == "resolved" else _EMOJI.get(severity, ":warning:")
    title = message.title()
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{title}"[:150], "emoji": True}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": (f"{icon} *{message.status.upper()}*" + (f" · severity *{severity}*" if severity else "")
                         + (f"\n{_where(message.common_labels)}" if _where(message.common_labels) else ""))[:3000],
            },
        },
    ]
    shown = message.alerts[:_MAX_ALERTS_SHOWN]
    for alert in shown:
        lines = [f"*{alert.status.upper()}* {alert.labels['alertname']} — {_where(alert.labels)}"]
        summary = alert.annotations.get("summary") or alert.annotations.get("description")
        if summary:
            lines.append(summary)
        if _value_line(alert):
            lines.append(_value_line(alert))
        blocks.append({"type": "divider"})
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}})
        events = message.events_for(alert)
        if events:
            blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": ("Recent events:\n" + _events_text(events, now))[:3000]}]}
            )
        links = message.links(alert)
        if links:
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        {"type": "button", "text": {"type": "plain_text", "text": link["text"][:75]}, "url": link["href"][:3000]}
                        for link in links[:5]
                    ],
                }
            )
    if len(message.alerts) > len(shown):
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"…and {len(message.alerts) - len(shown)} more alerts"}]}
        )
    text = f"{title} ({_where(message.common_labels) or message.group_key})"
    return text, blocks


class SlackNotifier(Notifier):
    integration = "slack"

    def __init__(self, config: SlackConfig, *, receiver: str, integration_id: str, timeout: float) -> None:
        super().__init__(receiver=receiver, integration_id=integration_id, timeout=timeout)
        self._config = config
        self._webhook: AsyncWebhookClient | None = None
        self._web: AsyncWebClient | None = None
        log = quiet_logger("slack")
        if config.mode == "token":
            assert config.token is not None and config.channel
            self._web = AsyncWebClient(
                token=config.token.get_secret_value(), base_url=config.base_url, timeout=max(1, int(timeout)),
                logger=log, retry_handlers=[],
            )
        else:
            assert config.api_url is not None
            self._webhook = AsyncWebhookClient(
                config.api_url.get_secret_value(), timeout=max(1, int(timeout)), logger=log, retry_handlers=[]
            )

    async def notify(self, message: AlertMessage) -> None:
        if message.status == "resolved" and not self._config.send_resolved:
            return
        text, blocks = slack_blocks(message)
        try:
            if self._webhook is not None:
                await self._post_webhook(text, blocks)
            else:
                await self._post_token(message, text, blocks)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise NotifyError(f"Slack request failed ({type(exc).__name__})", retryable=True) from None

    async def _post_webhook(self, text: str, blocks: list[dict[str, Any]]) -> None:
        assert self._webhook is not None
        resp = await asyncio.wait_for(self._webhook.send(text=text, blocks=blocks), self.timeout)
        if resp.status_code != 200:
            raise http_error(resp.status_code, retry_after=(resp.headers or {}).get("Retry-After") or (resp.headers or {}).get("retry-after"), what="Slack webhook")

    async def _call(self, method: str, **kwargs: Any) -> Any:
        assert self._web is not None
        try:
            return await asyncio.wait_for(self._web.api_call(method, json=kwargs), self.timeout)
        except SlackApiError as exc:
            status = exc.response.status_code
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            if status != 200:
                raise http_error(status, retry_after=exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after"), what=f"Slack {method}") from None
            raise NotifyError(f"Slack {method} failed: {error}", retryable=error in _RETRYABLE_API_ERRORS) from None

    async def _post_token(self, message: AlertMessage, text: str, blocks: list[dict[str, Any]]) -> None:
        channel = self._config.channel
        if message.previous_ref:
            channel, _, ts = message.previous_ref.partition(":")
            if "update" not in message.done:
                await self._call("chat.update", channel=channel, ts=ts, text=text, blocks=blocks)
                message.done.add("update")
            if message.status == "resolved" and "thread" not in message.done:
                await self._call("chat.postMessage", channel=channel, thread_ts=ts, text=f":white_check_mark: {text}")
                message.done.add("thread")
            message.ref = message.previous_ref
            return
        resp = await self._call("chat.postMessage", channel=channel, text=text, blocks=blocks)
        message.ref = f"{resp['channel']}:{resp['ts']}"

    async def close(self) -> None:
        if self._web is not None and self._web.session is not None:
            await self._web.session.close()
        if self._webhook is not None and self._webhook.session is not None:
            await self._webhook.session.close()
