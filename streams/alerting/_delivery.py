"""Delivery of one notification: rate limit, retries with backoff and jitter, Retry-After, secret redaction."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from streams.alerting._message import AlertMessage
from streams.alerting.config import RetryPolicy
from streams.alerting.errors import NotifyError
from streams.alerting.notifiers import Notifier

__all__ = ["TokenBucket", "Redactor", "Outcome", "deliver"]


class TokenBucket:
    """An async token bucket: ``acquire`` waits until a token is free (rate per second, burst tokens)."""

    def __init__(self, per_second: float, burst: int) -> None:
        self._rate = per_second
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: waiters are served in arrival order
            while True:
                now = time.monotonic()
                self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)


class Redactor:
    """Replaces every known secret value in a text by ``**********`` (defence in depth for error texts)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "**********")
        return text


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    attempts: int
    error: str | None = None
    http_status: int | None = None


Record = Callable[[int, str, str | None, int | None], Awaitable[None]]
"""``record(attempt, outcome, error, http_status)``: writes one Notification record."""


async def deliver(
    notifier: Notifier,
    message: AlertMessage,
    *,
    policy: RetryPolicy,
    record: Record,
    redact: Redactor,
    bucket: TokenBucket | None = None,
    time_scale: float = 1.0,
) -> Outcome:
    """Try until delivered, a final error, ``max_attempts`` or the time budget; never raises NotifyError.

    Backoff is exponential with full jitter (AWS's "full jitter": sleep a
    uniform share of the capped exponential), so many groups failing at once
    do not retry in lockstep. A server's ``Retry-After`` is a floor on the wait
    (it is the server's real clock, so it is not scaled).
    """
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        if bucket is not None:
            await bucket.acquire()
        try:
            await notifier.notify(message)
        except Exception as exc:
            # A NotifyError says whether to retry; anything else is a surprise
            # (a library raising an undocumented error) and is retried too:
            # a page must not be lost to a bug we could outwait.
            if not isinstance(exc, NotifyError):
                exc = NotifyError(f"{type(exc).__name__}: {exc}", retryable=True)
            error = redact(str(exc))
            delay = random.uniform(0, min(policy.max_backoff, policy.initial_backoff * 2 ** (attempt - 1))) * time_scale
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, policy.max_retry_after))
            out_of_budget = time.monotonic() - started + delay > policy.budget * time_scale
            if not exc.retryable or attempt >= policy.max_attempts or out_of_budget:
                await record(attempt, "failed", error, exc.http_status)
                return Outcome(False, attempt, error, exc.http_status)
            await record(attempt, "retry", error, exc.http_status)
            await asyncio.sleep(delay)
            continue
        await record(attempt, "sent", None, None)
        return Outcome(True, attempt)
