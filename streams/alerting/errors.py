"""Errors raised by streams.alerting::

    AlertingError
    ├── AlertingConfigError   the alerting YAML cannot work; the message names the place and the fix
    ├── MatcherError          a matcher string that is not ``name="v"`` / ``!=`` / ``=~`` / ``!~``
    ├── SilenceError          a silence that cannot be added or expired (unknown id, bad time range)
    ├── NotifyError           one delivery attempt failed; ``retryable`` and ``retry_after`` drive the retry loop
    └── StateTooLargeError    an alert would make its group's state record larger than a Kafka record may be
"""

from __future__ import annotations

__all__ = ["AlertingError", "AlertingConfigError", "MatcherError", "SilenceError", "NotifyError", "StateTooLargeError"]


class AlertingError(Exception):
    """Root of the errors raised by streams.alerting."""


class AlertingConfigError(AlertingError):
    """The alerting configuration is invalid; ``str(exc)`` says where and how to fix it."""


class MatcherError(AlertingConfigError):
    """A label matcher cannot be parsed."""


class SilenceError(AlertingError):
    """A silence operation cannot be done."""


class NotifyError(AlertingError):
    """A delivery attempt failed.

    The message must never contain a secret: notifiers build it from the HTTP
    status and the exception type, not from URLs or request bodies.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.http_status = http_status
        self.retry_after = retry_after


class StateTooLargeError(AlertingError):
    """Adding an alert would make its group's state record exceed the dispatcher's bound (the alert is dead-lettered)."""
