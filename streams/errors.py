"""Errors raised by the stream worker's runtime (``streams._runtime``)::

    StreamsError
    └── WriteFailed     a write (output, changelog) was not confirmed by the broker in time: the input
                        it came from stays unacked, and the worker exits non-zero so its orchestrator
                        restarts it and the input is processed again

Record-level problems are not exceptions here: they become dead letters (``streams.deadletter``).
The rule engine's errors are in ``streams._rules.errors``, the dispatcher's in ``streams.alerting.errors``.
"""

from __future__ import annotations

__all__ = ["StreamsError", "WriteFailed"]


class StreamsError(Exception):
    """Root of the stream worker's runtime errors."""


class WriteFailed(StreamsError):
    """Records could not be written; ``str(exc)`` names the topic, the broker's error and what to check."""
