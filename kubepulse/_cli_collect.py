"""Commands of the collect part (registered by kubepulse.cli): ``kubepulse collect``."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer


def _table(reports: list) -> object:
    from rich.table import Table

    table = Table(title="kubepulse collect --once")
    numbers = ("nodes", "pods", "samples", "quotas", "errors", "seconds")
    for col in ("cluster", "source", *numbers, "problem"):
        table.add_column(col, justify="right" if col in numbers else "left")
    for r in reports:
        # A quota problem (e.g. the missing resourcequotas rule) is shown even
        # though the pass ran: it is why the quotas column says 0.
        problem = r.error or "; ".join(
            [f"{n}: {e}" for n, e in list(r.node_errors.items())[:3]] + ([f"quotas: {r.quota_error}"] if r.quota_error else [])
            + ([f"events: {r.events_error}"] if r.events_error else [])
        )
        table.add_row(
            r.cluster, r.source, str(r.nodes), str(r.pods), str(r.samples), str(r.quotas), str(r.errors), f"{r.duration_s:.2f}", problem or ""
        )
    return table


def register(app: typer.Typer) -> None:
    """Add this part's commands to the kubepulse CLI."""

    @app.command("collect")
    def collect(
        once: Annotated[bool, typer.Option("--once", help="Scrape every cluster once, print a table, exit (non-zero if a cluster failed).")] = False,
        iterations: Annotated[int | None, typer.Option(help="Stop after this many passes per cluster (default: run until SIGINT/SIGTERM).")] = None,
        events: Annotated[bool, typer.Option(help="Also list+watch Events (not with --once).")] = True,
        config: Annotated[Path | None, typer.Option("--config", help="YAML settings file (default: $KUBEPULSE_CONFIG).")] = None,
    ) -> None:
        """Scrape the configured clusters (kubelet Summary API, pod specs, ResourceQuotas, Events) into Kafka."""
        from rich.console import Console

        from collectors import Collector
        from collectors.errors import CollectorError
        from kubepulse._settings import cli_settings

        settings = cli_settings(config)
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

        async def main() -> int:
            async with Collector(settings, events=events and not once) as collector:
                if once:
                    reports = await collector.scrape_once()
                    Console().print(_table(reports))
                    return 1 if any(r.error for r in reports) else 0
                from kubepulse._health import start_health_server

                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                # /healthz, /readyz, /metrics on settings.http_port (0: off); ready from here until
                # SIGTERM while Kafka confirms what the collector publishes (not while records are resent).
                with start_health_server(settings, ready=lambda: not stop.is_set() and collector.ready()):
                    await collector.run(iterations=iterations, stop=stop)
                return 0

        try:
            code = asyncio.run(main())
        except CollectorError as exc:
            typer.echo(f"kubepulse collect: {exc}", err=True)
            raise typer.Exit(2) from exc
        raise typer.Exit(code)
