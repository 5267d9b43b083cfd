"""models.kafka.start_producer: a producer that cannot start is stopped before the error reaches the caller."""

from __future__ import annotations

import gc
import socket
import warnings

import pytest
from aiokafka.errors import KafkaConnectionError

from models.kafka import start_producer


def _closed_port() -> int:
    # A port nothing listens on: bind, read the number, close (connect is then refused).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_producer_whose_start_fails_is_stopped_and_the_error_propagates() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
            await start_producer(bootstrap_servers=f"127.0.0.1:{_closed_port()}", request_timeout_ms=2000)
        gc.collect()  # aiokafka warns "Unclosed AIOKafkaProducer" from __del__ when it was never stopped
    unclosed = [str(w.message) for w in caught if "Unclosed AIOKafkaProducer" in str(w.message)]
    assert unclosed == []
