"""Commands of the dead-letter topic (registered by kubepulse.cli): ``kubepulse deadletter replay``."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["register"]

deadletter_app = typer.Typer(help="The dead-letter topic: send what was fixed back where it came from.", no_args_is_help=True)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (else $KUBEPULSE_CONFIG).")]

_AGO = re.compile(r"^(\d+)\s*([smhd])$")


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``--since``: an ISO 8601 time (UTC when it names no zone) or an age such as ``30m``, ``2h``, ``7d``.

    >>> parse_since("2h", now=datetime(2026, 3, 1, 12, tzinfo=UTC)).isoformat()
    '2026-03-01T10:00:00+00:00'
    >>> parse_since("2026-03-01T08:00").isoformat()
    '2026-03-01T08:00:00+00:00'
    """
    m = _AGO.match(text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: int(m.group(1))})
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is neither an ISO 8601 time nor an age like 30m, 2h, 7d") from exc
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


@deadletter_app.command("replay")
def replay(
    config: ConfigOption = None,
    topic: Annotated[Optional[str], typer.Option("--topic", help="Only dead letters of this source topic (with or without the prefix).")] = None,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Only those whose reason contains this (any case), or of this error type.")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="Only those that occurred since: an ISO 8601 time or an age (30m, 2h, 7d).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be sent; send nothing.")] = False,
) -> None:
    """Send dead-lettered messages back to their source topics (once their cause is fixed), each write confirmed by Kafka.

    The dead letter stays where it is; a replayed message that fails again is dead-lettered again.
    """
    from aiokafka.errors import KafkaError

    from kubepulse._settings import cli_settings
    from streams.deadletter import replay_dead_letters

    settings = cli_settings(config)
    after = parse_since(since) if since else None
    try:
        report = asyncio.run(replay_dead_letters(settings, topic=topic, reason=reason, since=after, dry_run=dry_run))
    except KafkaError as exc:
        typer.echo(f"Kafka at {settings.kafka.bootstrap_servers}: {exc}", err=True)
        raise typer.Exit(1) from exc
    verb = "would replay" if dry_run else "replayed"
    for name, n in sorted(report.by_topic.items()):
        typer.echo(f"{verb} {n} to {name}")
    typer.echo(
        f"read {report.read}, matched {report.matched}, {verb} {report.replayed}, not replayable {report.not_replayable} "
        f"(truncated or empty), duplicates {report.duplicates}, unreadable {report.unreadable}"
    )


def register(app: typer.Typer) -> None:
    """Add this part's commands to the kubepulse CLI."""
    app.add_typer(deadletter_app, name="deadletter")
