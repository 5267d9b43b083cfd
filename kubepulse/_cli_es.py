"""Commands of the es part (registered by kubepulse.cli): ``kubepulse es setup|index|janitor|status``."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from kubepulse._settings import cli_settings

__all__ = ["register"]

es_app = typer.Typer(help="Elasticsearch: templates, the indexer, retention.", no_args_is_help=True)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (else $KUBEPULSE_CONFIG).")]


def _unreachable(settings: Any, exc: Exception) -> typer.Exit:
    typer.echo(
        f"Elasticsearch is not reachable at {settings.elasticsearch.url} ({exc}); "
        "start it (`deploy/local/stack up`) or set KUBEPULSE_ELASTICSEARCH__URL",
        err=True,
    )
    return typer.Exit(1)


@es_app.command("setup")
def setup(config: ConfigOption = None) -> None:
    """Install the component and index templates of every kind, and create each kind's first index (idempotent).

    The first indices give every Kibana data view its fields before any document of its kind arrives.
    """
    from elastic_transport import TransportError

    from streams.index import ElasticsearchSetupError, async_client, create_first_indices, install_templates

    settings = cli_settings(config)

    async def run() -> tuple[list[str], list[str]]:
        client = async_client(settings)
        try:
            return await install_templates(client, settings), await create_first_indices(client, settings)
        finally:
            await client.close()

    try:
        names, created = asyncio.run(run())
    except TransportError as exc:
        raise _unreachable(settings, exc) from exc
    except ElasticsearchSetupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    for name in names:
        typer.echo(f"template {name}")
    for name in created:
        typer.echo(f"index {name}")


@es_app.command("index")
def index(config: ConfigOption = None) -> None:
    """Run the indexer (a Faust worker of its own consumer group) until SIGTERM."""
    import faust

    from kubepulse._cli_streams import create_topics
    from streams.indexing import create_indexing_app

    settings = cli_settings(config)
    if settings.log_level != "DEBUG":
        # One INFO line per bulk request is noise; failures still log as warnings.
        logging.getLogger("elastic_transport.transport").setLevel(logging.WARNING)
    asyncio.run(create_topics(settings))
    app = create_indexing_app(settings)
    from kubepulse._health import start_health_server

    # /healthz, /readyz and /metrics (the kubepulse_indexing_* counters) on settings.http_port (0: off).
    from streams.indexing import HEALTH

    # Not ready while a bulk request is held (Elasticsearch down, a write block, a missing index, bad replies).
    with start_health_server(settings, ready=lambda: bool(app.started) and not app.rebalancing and HEALTH.ready()):
        faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False).execute_from_commandline()


@es_app.command("janitor")
def janitor(
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted.")] = False,
) -> None:
    """Delete daily indices older than their kind's retention (retention.<kind>_days)."""
    from elastic_transport import TransportError

    from streams.index import run_janitor, sync_client

    settings = cli_settings(config)
    client = sync_client(settings)
    try:
        report = run_janitor(client, settings, dry_run=dry_run)
    except TransportError as exc:
        raise _unreachable(settings, exc) from exc
    finally:
        client.close()
    verb = "would delete" if dry_run else "deleted"
    for name in report.delete:
        typer.echo(f"{verb} {name}")
    for name in report.managed:
        typer.echo(f"left to ILM {name}")
    typer.echo(f"{verb} {len(report.delete)}, kept {len(report.keep)}, left to ILM {len(report.managed)}")


@es_app.command("status")
def status(config: ConfigOption = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Templates installed, and per kind: daily indices, documents and the alias."""
    from elastic_transport import TransportError

    from streams.index import INDEX_KINDS, alias_name, parse_index_name, sync_client, template_name

    settings = cli_settings(config)
    client = sync_client(settings)
    prefix = settings.elasticsearch.index_prefix
    try:
        rows = client.cat.indices(index=f"{prefix}-*", format="json", h="index,docs.count", expand_wildcards="open")
        # 404 when no template matches yet: reported as missing, not as an error.
        found = client.options(ignore_status=404).indices.get_index_template(name=f"{prefix}-*")
    except TransportError as exc:
        raise _unreachable(settings, exc) from exc
    finally:
        client.close()
    templates = {t["name"] for t in found.get("index_templates", [])}
    out: dict[str, Any] = {}
    for kind in INDEX_KINDS:
        mine = [r for r in rows if (parse_index_name(prefix, r["index"]) or ("",))[0] == kind]
        out[kind] = {
            "template": template_name(settings, kind) in templates,
            "alias": alias_name(settings, kind),
            "indices": len(mine),
            "docs": sum(int(r.get("docs.count") or 0) for r in mine),
        }
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    for kind, row in out.items():
        mark = "ok " if row["template"] else "NO "
        typer.echo(f"{mark} {kind:<14} alias {row['alias']:<32} {row['indices']:>4} indices {row['docs']:>10} docs")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the kubepulse CLI."""
    app.add_typer(es_app, name="es")
