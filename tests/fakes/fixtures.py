"""Pytest fixtures for the alerting tests: running fakes and dispatchers that are closed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import ssl
from pathlib import Path

import pytest
import trustme

from models.settings import Settings
from streams.alerting import Dispatcher, MemorySink, config_from_dict
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import FakeWebhook

__all__ = ["tls_ca", "pd", "slack", "hook", "make_dispatcher", "ROUTING_KEY"]

ROUTING_KEY = "kp0123456789abcdef0123456789abcd"
assert len(ROUTING_KEY) == 32


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A throwaway CA (trustme) and a server context for 127.0.0.1: the PagerDuty client only speaks https."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return server, path


@pytest.fixture
async def pd(tls_ca: tuple[ssl.SSLContext, Path]) -> AsyncIterator[FakePagerDuty]:
    """The fake PagerDuty over https; ``pd.ca_file`` is the CA to trust (``ca_file`` in the config)."""
    fake = FakePagerDuty()
    await fake.start(ssl_context=tls_ca[0])
    fake.ca_file = tls_ca[1]  # type: ignore[attr-defined]
    yield fake
    await fake.stop()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def hook() -> AsyncIterator[FakeWebhook]:
    fake = FakeWebhook()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def make_dispatcher(settings: Settings) -> AsyncIterator[Callable[..., Dispatcher]]:
    """``make_dispatcher(config_dict, **kw)``: a Dispatcher writing to a MemorySink (``d.sink``), closed at teardown."""
    made: list[Dispatcher] = []

    def make(config: dict[str, Any], **kw: Any) -> Dispatcher:
        sink = kw.pop("sink", None) or MemorySink()
        d = Dispatcher(config_from_dict(config, settings=kw.pop("settings", settings), environ={}), settings=settings, sink=sink, **kw)
        d.sink = sink  # type: ignore[attr-defined]
        made.append(d)
        return d

    yield make
    for d in made:
        await d.close()
