"""Commands of the report part (registered by kubepulse.cli): ``kubepulse report capacity|rightsize|run``."""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from kubepulse._settings import cli_settings

__all__ = ["register"]

report_app = typer.Typer(help="Capacity planning and right-sizing from the hourly rollups in Elasticsearch.", no_args_is_help=True)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (else $KUBEPULSE_CONFIG).")]
ClusterOption = Annotated[Optional[str], typer.Option("--cluster", help="Only this cluster (its kubepulse name).")]
AtOption = Annotated[Optional[datetime], typer.Option("--at", help="Report as of this time (default: the end of the newest hourly rollup).")]


class Format(str, Enum):
    table = "table"
    json = "json"
    kubectl = "kubectl"


def _run(settings: Any, fn: Any, **kw: Any) -> Any:
    """Call a report function with a client, turning the expected failures into a message and an exit code."""
    from elastic_transport import TransportError

    from kubepulse._cli_es import _unreachable
    from kubepulse.report import NoHistory, ReportWriteError
    from streams.index import sync_client

    client = sync_client(settings, max_retries=5)
    try:
        return fn(client, settings, **kw)
    except TransportError as exc:
        raise _unreachable(settings, exc) from exc
    except (NoHistory, ReportWriteError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    finally:
        client.close()


def _utc(at: datetime | None) -> datetime | None:
    from datetime import UTC

    return None if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC))


def _print(table: Any) -> None:
    from rich.console import Console

    Console(width=200).print(table)


@report_app.command("capacity")
def capacity(
    config: ConfigOption = None,
    cluster: ClusterOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON record per line (models.records.CapacityForecast).")] = False,
    history_days: Annotated[float, typer.Option("--history-days", min=2, help="Days of hourly rollups to fit.")] = 28.0,
    horizon_days: Annotated[float, typer.Option("--horizon-days", min=1, help="How far ahead to look for the limit.")] = 365.0,
    at: AtOption = None,
) -> None:
    """Days until CPU and memory requests, memory working set and filesystems reach allocatable, quota or capacity; idle capacity."""
    from kubepulse.report import capacity_report, capacity_table

    settings = cli_settings(config)
    records = _run(settings, capacity_report, cluster=cluster, history_days=history_days, horizon_days=horizon_days, at=_utc(at))
    if as_json:
        for r in records:
            typer.echo(r.model_dump_json())
        return
    _print(capacity_table(records))


@report_app.command("rightsize")
def rightsize(
    config: ConfigOption = None,
    cluster: ClusterOption = None,
    namespace: Annotated[Optional[str], typer.Option("--namespace", "-n", help="Only this namespace.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    fmt: Annotated[Format, typer.Option("--format", help="table, json (one record per line) or kubectl (set resources commands).")] = Format.table,
    history_days: Annotated[float, typer.Option("--history-days", min=1, help="Days of hourly rollups to read.")] = 14.0,
    at: AtOption = None,
) -> None:
    """Recommended CPU and memory requests and limits per workload and container, the waste against today's requests."""
    from kubepulse.report import kubectl_commands, rightsize_report, rightsize_table

    settings = cli_settings(config)
    records = _run(settings, rightsize_report, cluster=cluster, namespace=namespace, history_days=history_days, at=_utc(at))
    if as_json or fmt is Format.json:
        for r in records:
            typer.echo(r.model_dump_json())
    elif fmt is Format.kubectl:
        contexts = {c.name: c.context for c in settings.clusters if c.context}
        for line in kubectl_commands(records, contexts=contexts):
            typer.echo(line)
    else:
        _print(rightsize_table(records))


@report_app.command("run")
def run(
    config: ConfigOption = None,
    cluster: ClusterOption = None,
    at: AtOption = None,
) -> None:
    """Write both reports to Elasticsearch (<prefix>-capacity, <prefix>-recommendations): the periodic job (CronJob)."""
    from kubepulse.report import install, run_reports
    from streams.index import ElasticsearchSetupError

    settings = cli_settings(config)
    try:
        install(settings)
    except ElasticsearchSetupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    except Exception as exc:  # noqa: BLE001 - the transport's errors, reported like every other command's
        from elastic_transport import TransportError

        if isinstance(exc, TransportError):
            from kubepulse._cli_es import _unreachable

            raise _unreachable(settings, exc) from exc
        raise
    summary = _run(settings, run_reports, cluster=cluster, at=_utc(at))
    typer.echo(json.dumps({"at": summary.at.isoformat(), "capacity": summary.capacity, "recommendations": summary.recommendations}))


def register(app: typer.Typer) -> None:
    """Add this part's commands to the kubepulse CLI."""
    app.add_typer(report_app, name="report")
