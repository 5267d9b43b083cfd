"""Generic webhook: a POST of Alertmanager's webhook JSON (version 4), so existing receivers work."""

from __future__ import annotations

import asyncio

import aiohttp

from streams.alerting._message import AlertMessage
from streams.alerting.config import WebhookConfig
from streams.alerting.errors import NotifyError
from streams.alerting.notifiers._base import Notifier, http_error

__all__ = ["WebhookNotifier"]


class WebhookNotifier(Notifier):
    integration = "webhook"

    def __init__(self, config: WebhookConfig, *, receiver: str, integration_id: str, timeout: float) -> None:
        super().__init__(receiver=receiver, integration_id=integration_id, timeout=timeout)
        assert config.url is not None
        self._config = config
        self._session: aiohttp.ClientSession | None = None

    async def notify(self, message: AlertMessage) -> None:
        if message.status == "resolved" and not self._config.send_resolved:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        assert self._config.url is not None
        body = message.webhook_body(max_alerts=self._config.max_alerts)
        try:
            async with self._session.post(self._config.url.get_secret_value(), json=body) as resp:
                if resp.status // 100 != 2:
                    raise http_error(resp.status, retry_after=resp.headers.get("Retry-After"), what="webhook")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # Not str(exc): aiohttp's messages contain the URL, which may carry a token.
            raise NotifyError(f"webhook request failed ({type(exc).__name__})", retryable=True) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
