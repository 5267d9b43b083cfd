"""Console receiver: one line per notification on stdout, and a JSON line per notification in a file."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from streams.alerting._message import AlertMessage
from streams.alerting.config import ConsoleConfig
from streams.alerting.errors import NotifyError
from streams.alerting.notifiers._base import Notifier

__all__ = ["ConsoleNotifier"]


class ConsoleNotifier(Notifier):
    integration = "console"

    def __init__(
        self, config: ConsoleConfig, *, receiver: str, integration_id: str, timeout: float, default_file: Path | None = None
    ) -> None:
        super().__init__(receiver=receiver, integration_id=integration_id, timeout=timeout)
        self._config = config
        self._file = config.file or default_file

    async def notify(self, message: AlertMessage) -> None:
        if message.status == "resolved" and not self._config.send_resolved:
            return
        names = ", ".join(f"{a.labels.get('pod') or a.labels.get('node') or a.fingerprint}" for a in message.alerts[:5])
        more = f" +{len(message.alerts) - 5}" if len(message.alerts) > 5 else ""
        print(f"[kubepulse] {self.receiver}: {message.title()} {names}{more}", file=sys.stdout, flush=True)
        if self._file is None:
            return
        line = json.dumps(
            {"at": datetime.now(UTC).isoformat(), "integration": self.integration_id, **message.webhook_body()},
            sort_keys=True,
        )
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as exc:
            raise NotifyError(f"cannot append to {self._file}: {exc.strerror}", retryable=True) from None

    def _append(self, line: str) -> None:
        assert self._file is not None
        self._file.parent.mkdir(parents=True, exist_ok=True)
        with self._file.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
