"""Commands of the simulator part (registered by kubepulse.cli): ``kubepulse simulate``."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from collectors.simulator import Fleet
    from models.records import Incident
    from models.settings import Settings

__all__ = ["register"]


def simulate(
    clusters: Annotated[Optional[int], typer.Option("--clusters", min=1, help="Clusters (default simulator.clusters).")] = None,
    nodes: Annotated[Optional[int], typer.Option("--nodes", min=1, help="Nodes per cluster.")] = None,
    pods: Annotated[Optional[int], typer.Option("--pods", min=1, help="Pods per node.")] = None,
    containers: Annotated[
        Optional[int], typer.Option("--containers", min=1, max=10, help="Exactly this many containers per pod (default: 1-3 by workload).")
    ] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed: same seed and start, same records.")] = None,
    interval: Annotated[Optional[float], typer.Option("--interval", help="Simulated seconds between scrapes.")] = None,
    incident_every: Annotated[Optional[float], typer.Option("--incident-every", help="Simulated seconds between injected incidents.")] = None,
    incidents: Annotated[str, typer.Option("--incidents", help="Schedule: cycle (kinds in turn), random (with the seed) or none.")] = "cycle",
    inject: Annotated[
        Optional[list[str]], typer.Option("--inject", help="Also inject KIND@SECONDS[:DURATION] (simulated seconds after start); repeatable.")
    ] = None,
    incident_duration: Annotated[Optional[float], typer.Option("--incident-duration", help="Simulated seconds every incident lasts (default per kind).")] = None,
    diurnal_period: Annotated[Optional[float], typer.Option("--diurnal-period", help="Simulated seconds of one daily load cycle.")] = None,
    speed: Annotated[float, typer.Option("--speed", min=0.001, help="Simulated seconds per wall second: 10 makes a 15 s interval pass in 1.5 s.")] = 1.0,
    duration: Annotated[Optional[float], typer.Option("--duration", help="Stop after this many wall-clock seconds.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Publish one interval and exit.")] = False,
    fast: Annotated[bool, typer.Option("--fast", "--no-sleep", help="Generate --intervals N as fast as Kafka takes them (benchmarks).")] = False,
    intervals: Annotated[Optional[int], typer.Option("--intervals", min=1, help="Stop after N intervals.")] = None,
    start: Annotated[Optional[datetime], typer.Option("--start", help="Simulated start time, UTC (default: now; with --fast, now minus the run).")] = None,
    labels_file: Annotated[Optional[Path], typer.Option("--labels-file", help="Append each injected incident (JSON line) here.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (else $KUBEPULSE_CONFIG).")] = None,
) -> None:
    """Publish a simulated fleet's node scrapes and events, with labelled incidents, to Kafka.

    Writes kubepulse.metrics.v1, kubepulse.events.v1, kubepulse.quotas.v1 and kubepulse.incidents.v1
    (under kafka.topic_prefix); flags override the simulator settings.
    """
    from datetime import timezone

    from collectors.simulator import SimulatorError, run
    from kubepulse._settings import cli_settings

    flags = {"clusters": clusters, "nodes_per_cluster": nodes, "pods_per_node": pods, "seed": seed, "interval_s": interval,
             "incident_every_s": incident_every, "labels_file": labels_file, "diurnal_period_s": diurnal_period}
    overrides = {k: v for k, v in flags.items() if v is not None}
    settings = cli_settings(config, **({"simulator": overrides} if overrides else {}))
    if fast and intervals is None:
        typer.echo("--fast needs --intervals N (how many intervals to generate)", err=True)
        raise typer.Exit(2)
    iterations = 1 if once else intervals
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)

    fleet = _fleet(settings, incidents=incidents, inject=inject or [], incident_duration=incident_duration, containers=containers)
    # A continuous run (compose's collector) serves /healthz, /readyz, /metrics on
    # settings.http_port (0: off); one-off runs (--once, --fast) serve nothing.
    served = settings if not (once or fast) else settings.model_copy(update={"http_port": 0})

    async def main() -> dict[str, object]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        from kubepulse._health import start_health_server

        with start_health_server(served, ready=lambda: not stop.is_set()):
            stats = await run(
                settings, iterations=iterations, stop=stop, speed=speed, start=start, fleet=fleet, no_sleep=fast, duration_s=duration, on_incident=_announce
            )
        return stats.as_dict()

    try:
        summary = asyncio.run(main())
    except SimulatorError as exc:
        typer.echo(f"simulate: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(summary))


def _announce(i: Incident) -> None:
    where = "/".join(x or "-" for x in (i.cluster, i.namespace, i.pod or f"node:{i.node}", i.container))
    typer.echo(f"incident {i.incident_id} {i.kind} {where} {i.start.isoformat()} .. {i.end.isoformat()}")


def _fleet(settings: Settings, *, incidents: str, inject: list[str], incident_duration: float | None, containers: int | None) -> Fleet:
    """The fleet the flags ask for; a bad --incidents or --inject exits 2 with the reason."""
    from collectors.simulator import Fleet, IncidentPlan, SimulatorError

    try:
        return Fleet(
            settings.simulator,
            incidents=incidents,  # type: ignore[arg-type]  # the flag's text; Fleet rejects anything but the three
            inject=[IncidentPlan.parse(x) for x in inject],
            incident_duration_s=incident_duration,
            containers_per_pod=containers,
        )
    except SimulatorError as exc:
        typer.echo(f"simulate: {exc}", err=True)
        raise typer.Exit(2) from exc


def register(app: typer.Typer) -> None:
    """Add this part's commands to the kubepulse CLI."""
    app.command("simulate")(simulate)
