"""The notifier interface, and how an HTTP status becomes a retryable or final error."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import ClassVar, Literal

from streams.alerting._message import AlertMessage, parse_retry_after
from streams.alerting.errors import NotifyError

__all__ = ["Notifier", "http_error", "quiet_logger"]


def quiet_logger(name: str) -> logging.Logger:
    """A logger for a client library that would otherwise log URLs or headers carrying secrets at DEBUG.

    slack_sdk logs the full webhook URL and the Authorization header when its
    logger's level is DEBUG or unset; a level of WARNING turns that off.
    """
    log = logging.getLogger(f"kubepulse.alerting.client.{name}")
    log.setLevel(logging.WARNING)
    return log


def http_error(status: int, *, retry_after: str | None = None, what: str = "receiver") -> NotifyError:
    """The error for a non-2xx answer: 408, 429 and 5xx are retried (429 after ``Retry-After``); other 4xx are final."""
    retryable = status in (408, 429) or status >= 500
    return NotifyError(
        f"{what} answered HTTP {status}",
        retryable=retryable,
        http_status=status,
        retry_after=parse_retry_after(retry_after) if status in (429, 503) else None,
    )


class Notifier(ABC):
    """Delivers :class:`AlertMessage` objects through one integration of one receiver.

    ``notify`` either returns (delivered) or raises :class:`NotifyError`; the
    dispatcher owns retries, so notifiers make exactly one attempt per call
    and disable their client library's own retry loops.
    """

    integration: ClassVar[Literal["pagerduty", "slack", "email", "webhook", "console", "kafka"]]
    """The integration's name in a ``Notification`` (its ``integration`` field)."""

    def __init__(self, *, receiver: str, integration_id: str, timeout: float) -> None:
        self.receiver = receiver
        self.integration_id = integration_id
        self.timeout = timeout

    @abstractmethod
    async def notify(self, message: AlertMessage) -> None: ...

    async def close(self) -> None:
        """Release connections (called once when the dispatcher stops)."""
