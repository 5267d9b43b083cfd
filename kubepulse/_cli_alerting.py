"""Commands of the alerting part (registered by kubepulse.cli): ``kubepulse silence ...`` and ``kubepulse alerting ...``."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from kubepulse._settings import cli_settings

__all__ = ["register"]

silence_app = typer.Typer(help="Silences: mute matching alerts for a while (seen by every worker).", no_args_is_help=True)
alerting_app = typer.Typer(help="Alert dispatch: check the routing config, run the dispatcher.", no_args_is_help=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (else $KUBEPULSE_CONFIG).")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@silence_app.command("add")
def silence_add(
    matchers: Annotated[list[str], typer.Argument(help='Label matchers, e.g. \'namespace="shop"\' \'alertname=~"Pod.*"\'.')],
    duration: Annotated[str, typer.Option("--duration", "-d", help="How long: 30m, 2h, 1d...")] = "1h",
    author: Annotated[str, typer.Option("--author", "-a", help="Who silences (shown in the list).")] = "kubepulse-cli",
    comment: Annotated[str, typer.Option("--comment", "-c", help="Why.")] = "",
    config: ConfigOpt = None,
) -> None:
    """Add a silence; prints its id."""
    from streams.alerting.config import parse_duration
    from streams.alerting.errors import SilenceError
    from streams.alerting.silences import add_silence, new_silence

    settings = cli_settings(config)
    try:
        seconds = parse_duration(duration)
        silence = new_silence(matchers, duration_s=seconds, created_by=author, comment=comment)
    except (ValueError, SilenceError) as exc:
        raise _fail(str(exc)) from exc
    asyncio.run(add_silence(settings, silence))
    typer.echo(silence.silence_id)


@silence_app.command("list")
def silence_list(
    show_all: Annotated[bool, typer.Option("--all", help="Include expired silences.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOpt = None,
) -> None:
    """List active (and with --all, expired) silences."""
    from datetime import UTC, datetime

    from streams.alerting.silences import list_silences

    settings = cli_settings(config)
    now = datetime.now(UTC)
    silences = [s for s in asyncio.run(list_silences(settings)) if show_all or s.ends_at > now]
    for s in silences:
        if as_json:
            typer.echo(s.model_dump_json())
        else:
            state = "active" if s.starts_at <= now < s.ends_at else "pending" if now < s.starts_at else "expired"
            typer.echo(f"{s.silence_id}  {state:8}  until {s.ends_at:%Y-%m-%d %H:%M:%S}Z  by {s.created_by}  {' '.join(s.matchers)}"
                       + (f"  # {s.comment}" if s.comment else ""))
    if not silences and not as_json:
        typer.echo("no silences")


@silence_app.command("expire")
def silence_expire(
    silence_id: Annotated[str, typer.Argument(help="The id (or a unique prefix of 6+ characters).")],
    config: ConfigOpt = None,
) -> None:
    """End a silence now."""
    from streams.alerting.errors import SilenceError
    from streams.alerting.silences import expire_silence

    settings = cli_settings(config)
    try:
        s = asyncio.run(expire_silence(settings, silence_id))
    except SilenceError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"expired {s.silence_id}")


@alerting_app.command("check-config")
def check_config(
    file: Annotated[Optional[Path], typer.Argument(help="Alerting YAML (else settings' alerting.config_file).")] = None,
    labels: Annotated[Optional[str], typer.Option("--labels", help='Route a sample label set, e.g. \'{"alertname":"X","severity":"critical"}\'.')] = None,
    config: ConfigOpt = None,
) -> None:
    """Validate an alerting config (routes, receivers, secrets resolvable); optionally show where labels go."""
    from streams.alerting.config import load_config
    from streams.alerting.errors import AlertingConfigError
    from streams.alerting.router import Router

    settings = cli_settings(config)
    try:
        cfg = load_config(settings, path=file)
    except AlertingConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    kinds = {r.name: [iid for iid, _ in r.integrations()] for r in cfg.receivers}
    typer.echo(f"ok: {len(cfg.receivers)} receiver(s), {len(cfg.inhibit_rules)} inhibit rule(s)")
    for name, iids in kinds.items():
        typer.echo(f"  receiver {name}: {', '.join(iids) or '(no integrations: alerts are dropped)'}")
    if labels:
        try:
            label_set = json.loads(labels)
        except ValueError as exc:
            raise _fail(f"--labels is not JSON: {exc}") from exc
        for m in Router(cfg).match(label_set):
            typer.echo(f"  -> {m.receiver} group {m.group_key} (wait {m.group_wait:g}s, interval {m.group_interval:g}s, repeat {m.repeat_interval:g}s)")


@alerting_app.command("run")
def run(config: ConfigOpt = None) -> None:
    """Run the alert dispatcher alone (it also runs inside `kubepulse worker`), until SIGTERM or Ctrl-C."""
    import logging

    from streams.alerting.config import load_config
    from streams.alerting.errors import AlertingConfigError
    from streams.alerting.service import run_dispatcher

    settings = cli_settings(config)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(settings)
    except AlertingConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc

    from kubepulse._health import start_health_server
    from streams.alerting import DispatcherHealth

    health = DispatcherHealth()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_dispatcher(settings, config=cfg, stop=stop, health=health)

    # /readyz is false while Kafka writes fail or a receiver's last notification ran out of retries;
    # /metrics has the kubepulse_alerting_* counters. A write failure that lasts past
    # streams.write_failure_timeout_s ends the process non-zero (the orchestrator restarts it).
    with start_health_server(settings, ready=health.ready):
        asyncio.run(main())


def register(app: typer.Typer) -> None:
    """Add this part's commands to the kubepulse CLI."""
    app.add_typer(silence_app, name="silence")
    app.add_typer(alerting_app, name="alerting")
