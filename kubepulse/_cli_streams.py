"""Commands of the streams part (registered by kubepulse.cli): ``kubepulse worker`` and ``kubepulse topics create``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from kubepulse._settings import cli_settings

if TYPE_CHECKING:
    from models.settings import Settings

__all__ = ["register", "create_topics"]

topics_app = typer.Typer(help="kubepulse's Kafka topics.", no_args_is_help=True)


async def create_topics(settings: Settings) -> list[str]:
    """Create every kubepulse topic under the settings' prefix (existing ones are kept); return the new names."""
    from streams.topics import create_topics as create  # imported when used: the CLI starts without pydantic models

    return await create(settings)


@topics_app.command("create")
def topics_create(
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (else $KUBEPULSE_CONFIG).")] = None,
) -> None:
    """Create all kubepulse topics with kafka.topic_partitions partitions (existing topics are left alone)."""
    settings = cli_settings(config)
    created = asyncio.run(create_topics(settings))
    for name in created:
        typer.echo(f"created {name}")
    if not created:
        typer.echo("all topics exist")


def worker(
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (else $KUBEPULSE_CONFIG).")] = None,
) -> None:
    """Run a stream worker: windows, anomaly scores, rules and alert dispatch (Faust), until SIGTERM."""
    import faust

    from streams.app import create_app

    from streams.alerting import AlertingConfigError

    settings = cli_settings(config)
    asyncio.run(create_topics(settings))
    try:
        app = create_app(settings)
    except AlertingConfigError as exc:  # the dispatcher runs in the worker: its config is checked at start
        typer.echo(f"alerting configuration: {exc}", err=True)
        raise typer.Exit(2) from exc
    from models.errors import ConfigError

    try:  # before anything is consumed: tables are only correct if their changelogs line up with the inputs
        asyncio.run(app.kubepulse_runtime.check_partitions())  # type: ignore[attr-defined]  # set by streams.app.create_app
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    level = settings.log_level.lower()
    from kubepulse._health import start_health_server

    # /healthz, /readyz, /metrics on settings.http_port (0: off); ready while the app runs, is not in the
    # middle of a consumer-group rebalance, and its writes are confirmed (streams._runtime.Runtime.ready).
    with start_health_server(settings, ready=app.kubepulse_runtime.ready):  # type: ignore[attr-defined]  # set by streams.app.create_app
        faust.Worker(app, loglevel=level, quiet=True, redirect_stdouts=False).execute_from_commandline()


def register(app: typer.Typer) -> None:
    """Add this part's commands to the kubepulse CLI."""
    app.command("worker")(worker)
    app.add_typer(topics_app, name="topics")
