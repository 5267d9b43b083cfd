"""Kafka receiver: Alertmanager's webhook JSON written to a topic, for teams that consume Kafka rather than HTTP."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from streams.alerting._message import AlertMessage
from streams.alerting.config import KafkaConfig
from streams.alerting.errors import NotifyError
from streams.alerting.notifiers._base import Notifier

__all__ = ["KafkaNotifier", "Send"]

Send = Callable[[str, bytes, bytes], Awaitable[None]]
"""``send(topic, key, value)``: produce and wait for the acknowledgement (the dispatcher's producer)."""


class KafkaNotifier(Notifier):
    integration = "kafka"

    def __init__(self, config: KafkaConfig, *, receiver: str, integration_id: str, timeout: float, topic: str, send: Send) -> None:
        super().__init__(receiver=receiver, integration_id=integration_id, timeout=timeout)
        self._config = config
        self._topic = topic
        self._send = send

    async def notify(self, message: AlertMessage) -> None:
        if message.status == "resolved" and not self._config.send_resolved:
            return
        value = json.dumps(message.webhook_body(), sort_keys=True).encode()
        try:
            await self._send(self._topic, message.group_key.encode(), value)
        except Exception as exc:  # aiokafka's errors: all retryable from here
            raise NotifyError(f"Kafka produce to {self._topic} failed ({type(exc).__name__})", retryable=True) from None
