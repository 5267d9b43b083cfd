"""Commands of the kibana part (registered by kubepulse.cli): ``kubepulse kibana provision|export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from kubepulse._settings import cli_settings

__all__ = ["register"]

kibana_app = typer.Typer(help="Kibana: dashboards, data views and saved searches.", no_args_is_help=True)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (else $KUBEPULSE_CONFIG).")]
PrefixOption = Annotated[
    Optional[str], typer.Option("--index-prefix", help="Index prefix the data views point at (default: elasticsearch.index_prefix).")
]
FileOption = Annotated[Optional[Path], typer.Option("--file", help="Import this NDJSON instead of the packaged saved objects.")]


def _objects(prefix: str, file: Path | None) -> list[dict[str, Any]]:
    from kibana.errors import SavedObjectsError
    from kibana.saved_objects import objects_for

    try:
        return objects_for(prefix, file=file)
    except SavedObjectsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


@kibana_app.command("provision")
def provision(
    url: Annotated[Optional[str], typer.Option("--url", help="Kibana base URL (default: alerting.kibana_url).")] = None,
    space: Annotated[Optional[str], typer.Option("--space", help="Kibana space id to import into (created if missing).")] = None,
    api_key: Annotated[
        Optional[str], typer.Option("--api-key", envvar="KUBEPULSE_KIBANA_API_KEY", help="Encoded API key (Authorization: ApiKey).")
    ] = None,
    user: Annotated[Optional[str], typer.Option("--user", envvar="KUBEPULSE_KIBANA_USER", help="Basic auth user.")] = None,
    password: Annotated[
        Optional[str], typer.Option("--password", envvar="KUBEPULSE_KIBANA_PASSWORD", help="Basic auth password.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be imported; send nothing.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for Kibana to become available.")] = 120.0,
    insecure: Annotated[bool, typer.Option("--insecure", help="Do not verify Kibana's TLS certificate.")] = False,
    index_prefix: PrefixOption = None,
    file: FileOption = None,
    config: ConfigOption = None,
) -> None:
    """Import the data views, dashboards and saved searches into Kibana (idempotent: overwrite=true)."""
    from kibana.errors import KibanaError
    from kibana.provision import Provisioner, dashboard_urls, summary

    settings = cli_settings(config)
    prefix = index_prefix or settings.elasticsearch.index_prefix
    objects = _objects(prefix, file)
    url = url or settings.alerting.kibana_url
    if dry_run:
        typer.echo(f"would import {len(objects)} saved objects (index prefix {prefix}) into {url or '<--url>'}{f' space {space}' if space else ''}:")
        for type_, id_, title in summary(objects):
            typer.echo(f"  {type_:<14} {id_:<55} {title}")
        for title, link in dashboard_urls(url or "<url>", objects, space=space):
            typer.echo(f"  dashboard URL: {link}  ({title})")
        return
    if not url:
        typer.echo("no Kibana URL: pass --url or set alerting.kibana_url (KUBEPULSE_ALERTING__KIBANA_URL)", err=True)
        raise typer.Exit(2)
    try:
        prov = Provisioner(url, space=space, api_key=api_key, username=user, password=password, verify=not insecure)
        report = prov.provision(objects, timeout=timeout)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    except KibanaError as exc:
        typer.echo(f"kibana provision failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    if report.space_created:
        typer.echo(f"created space {space}")
    typer.echo(f"imported {report.success_count} saved objects into {url}{f' space {space}' if space else ''}")
    for title, link in report.dashboards:
        typer.echo(f"  {title}: {link}")


@kibana_app.command("export")
def export(
    file: Annotated[Path, typer.Argument(help="Where to write the NDJSON (for Kibana's Saved Objects import).")],
    index_prefix: PrefixOption = None,
    config: ConfigOption = None,
) -> None:
    """Write the saved objects as NDJSON (``kibana/saved_objects.ndjson`` is this for the default prefix)."""
    from kibana.saved_objects import build, check, to_ndjson

    prefix = index_prefix or cli_settings(config).elasticsearch.index_prefix
    objects = build(prefix)
    check(objects)
    file.write_text(to_ndjson(objects), encoding="utf-8")
    typer.echo(f"wrote {len(objects)} saved objects for index prefix {prefix} to {file}")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the kubepulse CLI."""
    app.add_typer(kibana_app, name="kibana")
