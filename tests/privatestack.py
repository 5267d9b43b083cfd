"""A Kafka broker of a test's own, for faults that must not touch the shared stack (stopping the broker).

``deploy/local/stack`` runs it from its own cache directory and ports; the
downloads (``m2``, ``dist``) are the shared stack's, symlinked, so nothing is
fetched again and a start takes seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "deploy" / "local" / "stack"

__all__ = ["PrivateKafka", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _main_cache() -> Path:
    return Path(os.environ.get("KUBEPULSE_CACHE") or Path.home() / ".cache" / "kubepulse").resolve()


class PrivateKafka:
    """A single-broker Kafka on free ports under ``root``; ``stop()`` keeps its data, so ``start()`` resumes it."""

    def __init__(self, root: Path) -> None:
        self.cache = root / "cache"
        self.cache.mkdir(parents=True, exist_ok=True)
        main = _main_cache()
        for shared in ("m2", "dist"):  # downloads only; data, logs and pid files are this broker's own
            link = self.cache / shared
            if not link.exists():
                link.symlink_to(main / shared)
        self.port = free_port()
        self.env = {**os.environ, "KUBEPULSE_CACHE": str(self.cache), "KUBEPULSE_KAFKA_PORT": str(self.port),
                    "KUBEPULSE_KAFKA_CONTROLLER_PORT": str(free_port()), "KUBEPULSE_KAFKA_HEAP": "256m"}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        done = subprocess.run([str(STACK), *args, "kafka"], env=self.env, capture_output=True, text=True, timeout=240)
        if done.returncode != 0:
            raise RuntimeError(f"stack {' '.join(args)} kafka failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        self._run("up")

    def stop(self) -> None:
        self._run("down")

    def purge(self) -> None:
        subprocess.run([str(STACK), "down", "kafka", "--purge"], env=self.env, capture_output=True, timeout=240)
