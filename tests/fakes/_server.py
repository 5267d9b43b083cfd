"""A small aiohttp server base with scripted failures, for the fakes."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from collections.abc import Iterator
from typing import Any

from aiohttp import web

__all__ = ["Scripted", "FakeServer", "Received"]


@dataclass(frozen=True)
class Scripted:
    """A forced answer for the next request: an HTTP status (with headers/body), or a hang of ``delay`` seconds."""

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0


@dataclass
class Received:
    path: str
    body: Any
    headers: dict[str, str]
    at: float
    status: int


class FakeServer:
    def __init__(self) -> None:
        self.script: deque[Scripted] = deque()
        self.received: list[Received] = []
        self.rejected: list[tuple[str, list[str]]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._changed = asyncio.Condition()
        self._outage: tuple[float, Iterator[Scripted]] | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self, *, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail_next(self, *answers: Scripted) -> None:
        self.script.extend(answers)

    def fail_for(self, seconds: float, *answers: Scripted) -> None:
        """An outage: for ``seconds`` every request gets the next of ``answers`` (in turn, cycling), then normal service."""
        self._outage = (time.monotonic() + seconds, itertools.cycle(answers or (Scripted(),)))

    async def scripted(self, path: str, body: Any, request: web.Request) -> web.StreamResponse | None:
        """Apply the outage's or the next scripted answer, if any (recorded as received with its status)."""
        if self._outage is not None and time.monotonic() < self._outage[0]:
            s = next(self._outage[1])
        elif not self.script:
            return None
        else:
            s = self.script.popleft()
        await self._note(Received(path, body, dict(request.headers), time.monotonic(), s.status if not s.delay else 0))
        if s.delay:
            await asyncio.sleep(s.delay)
        if s.body is None:
            return web.Response(status=s.status, headers=s.headers, text="")
        return web.json_response(s.body, status=s.status, headers=s.headers)

    async def _note(self, r: Received) -> None:
        async with self._changed:
            self.received.append(r)
            self._changed.notify_all()

    async def wait_for(self, predicate: Any, *, timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds (checked whenever a request arrives)."""

        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(_wait(), timeout)
