"""Errors raised by collectors/ (the real-cluster half)::

    CollectorError
    ├── ClusterConfigError   a cluster entry that cannot be turned into a client (bad kubeconfig, context)
    ├── PublishFailed        Kafka did not confirm a record within ``kubernetes.publish_timeout_s``
    └── ApiError             the API server answered, but not with what was asked for
        ├── ClusterUnavailable   unreachable, timed out, or 429/5xx still failing after the retries
        ├── AccessDenied         401/403: ``str(exc)`` names the missing ClusterRole rule
        ├── ResourceExpired      410 Gone: the resourceVersion is too old, relist
        ├── NotFound             404 (e.g. a node deleted between the list and its scrape)
        └── MalformedPayload     a 2xx body that is not the JSON shape expected
"""

from __future__ import annotations

__all__ = [
    "CollectorError",
    "ClusterConfigError",
    "PublishFailed",
    "ApiError",
    "ClusterUnavailable",
    "AccessDenied",
    "ResourceExpired",
    "NotFound",
    "MalformedPayload",
]


class CollectorError(Exception):
    """Root of the errors raised by collectors/."""


class ClusterConfigError(CollectorError):
    """A configured cluster cannot be turned into an API client."""


class PublishFailed(CollectorError):
    """A record was not confirmed by Kafka: sent again with backoff until the timeout, or refused for good.

    ``reason`` is the metrics label: the Kafka error's class name, or ``buffer_full`` when the record
    waited the whole timeout for room in the publish buffer.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ApiError(CollectorError):
    """A Kubernetes API call failed; ``reason`` is the short label used in metrics."""

    reason = "api_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClusterUnavailable(ApiError):
    reason = "unavailable"
    retry_after: float | None = None
    """Seconds the API server asked to wait (``Retry-After``), when it said."""


class AccessDenied(ApiError):
    reason = "forbidden"


class ResourceExpired(ApiError):
    reason = "expired"


class NotFound(ApiError):
    reason = "not_found"


class MalformedPayload(ApiError):
    reason = "malformed"
