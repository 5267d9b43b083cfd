"""Commands of the demo part (registered by kubepulse.cli): ``kubepulse demo`` and ``kubepulse top``."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from kubepulse._settings import cli_settings

__all__ = ["register"]

ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (else $KUBEPULSE_CONFIG).")]


def top(
    cluster: Annotated[Optional[str], typer.Option("--cluster", "-c", help="Only this cluster.")] = None,
    namespace: Annotated[Optional[str], typer.Option("--namespace", "-n", help="Only this namespace.")] = None,
    interval: Annotated[float, typer.Option("--interval", "-i", min=0.5, help="Seconds between refreshes.")] = 3.0,
    window: Annotated[float, typer.Option("--window", min=60, help="Seconds of data time the sparklines cover.")] = 900.0,
    rows: Annotated[int, typer.Option("--rows", min=1, help="Rows of the pods, alerts, anomalies and events tables.")] = 10,
    since: Annotated[Optional[datetime], typer.Option("--since", help="Ignore documents before this time (UTC).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit (scripts, CI logs, tests).")] = False,
    width: Annotated[Optional[int], typer.Option("--width", min=60, help="Columns (default: the terminal's; 180 when not a terminal).")] = None,
    es_url: Annotated[Optional[str], typer.Option("--es-url", help="Elasticsearch URL (default: elasticsearch.url from the settings).")] = None,
    config: ConfigOption = None,
) -> None:
    """A live terminal view of Elasticsearch: usage per cluster and namespace, top pods, active alerts, anomalies, warning events."""
    from elastic_transport import TransportError
    from rich.console import Console

    from kubepulse._top import TopOptions, run_top

    settings = cli_settings(config, **({"elasticsearch": {"url": es_url}} if es_url else {}))
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    console = Console(width=width) if width else Console()
    if width is None and not console.is_terminal:
        console = Console(width=180)
    opts = TopOptions(cluster=cluster, namespace=namespace, window_s=window, since=since, rows=rows)
    try:
        run_top(settings, opts, once=once, interval_s=interval, console=console)
    except TransportError as exc:
        typer.echo(f"Elasticsearch is not reachable at {settings.elasticsearch.url} ({exc}); start it (`deploy/local/stack up`) "
                   "or set KUBEPULSE_ELASTICSEARCH__URL / --es-url", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass


def demo(
    duration: Annotated[
        Optional[float],
        typer.Option("--duration", envvar="DEMO_DURATION", min=1, help="Run unattended for this many seconds, then print a summary (env DEMO_DURATION)."),
    ] = None,
    speed: Annotated[float, typer.Option("--speed", min=0.1, help="Simulated seconds per wall second.")] = 15.0,
    clusters: Annotated[int, typer.Option("--clusters", min=1, help="Simulated clusters.")] = 3,
    nodes: Annotated[Optional[int], typer.Option("--nodes", min=1, help="Simulated nodes per cluster [default: 8; unattended 4].")] = None,
    pods: Annotated[Optional[int], typer.Option("--pods", min=2, help="Simulated pods per node [default: 10; unattended 6].")] = None,
    incident_every: Annotated[float, typer.Option("--incident-every", min=60, help="Simulated seconds between injected incidents.")] = 600.0,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the run's topics (and, unattended, its indices) instead of deleting them.")] = False,
    workdir: Annotated[Optional[Path], typer.Option("--workdir", help="Where logs, the labels and notifications files go (default: a temp dir).")] = None,
    run_id: Annotated[Optional[str], typer.Option("--run-id", help="Name of the run (default: random); prefixes hang on it.")] = None,
    drain_timeout: Annotated[float, typer.Option("--drain-timeout", min=0, help="Unattended: longest wait for the pipeline to catch up.")] = 60.0,
    config: ConfigOption = None,
) -> None:
    """Run the whole pipeline here: a simulated fleet (or real clusters), worker, indexer, alerting; show `top` until Ctrl-C.

    With --duration (or DEMO_DURATION) it runs unattended and ends with a
    summary whose last line is JSON. Ctrl-C stops what the demo started and
    leaves Kafka and Elasticsearch running (`deploy/local/stack down` stops them).
    """
    from kubepulse import _demo as D

    base = cli_settings(config)
    if run_id is not None and not run_id.replace("-", "").isalnum():
        typer.echo("--run-id takes letters, digits and dashes", err=True)
        raise typer.Exit(2)
    plan = D.plan_demo(
        base, duration_s=duration, workdir=workdir, run_id=run_id, speed=speed, incident_every_s=incident_every,
        clusters=clusters, keep=keep,
        # Unattended runs (CI, smoke tests) get a lighter fleet: every incident kind still fits, and the
        # pipeline drains in seconds on a busy machine. The live view gets "a few dozen nodes".
        nodes=nodes or (4 if duration is not None else 8), pods=pods or (6 if duration is not None else 10),
    )
    say = typer.echo
    _prepare(plan, base)
    children = D.Children(plan, environ=dict(os.environ))
    exit_code = 0
    summary: dict[str, Any] | None = None
    try:
        children.start_all()
        if plan.unattended:
            assert duration is not None
            _run_unattended(plan, children, duration=duration, drain_timeout=drain_timeout)
        else:
            _run_live(plan, children)
        children.stop()
        summary = asyncio.run(D.summarize(plan))
    except D.DemoError as exc:
        say(f"demo: {exc}", err=True)
        exit_code = 1
    except KeyboardInterrupt:
        say("\nCtrl-C: stopping what the demo started")
        exit_code = 130
    finally:
        _stop_and_clean_up(plan, children, summary)
    if summary is not None:
        bad = D.problems(summary)
        if bad:
            say("demo: the pipeline processed nothing: " + "; ".join(bad), err=True)
            exit_code = exit_code or 1
        say(D.format_summary(plan, summary).splitlines()[-1])
    raise typer.Exit(exit_code)


def _prepare(plan: Any, base: Any) -> None:
    """Check the servers, create the run's topics and templates, and say what the run is."""
    from kubepulse import _demo as D

    say = typer.echo
    say(f"kubepulse demo {plan.run_id}: logs in {plan.workdir}")
    try:
        for line in asyncio.run(D.prepare(plan)):
            say(f"  {line}")
    except D.DemoError as exc:
        say(f"demo: {exc}", err=True)
        raise typer.Exit(1) from exc
    s = plan.settings
    if plan.real_clusters:
        say(f"  source: kubepulse collect, clusters {', '.join(c.name for c in base.clusters)}")
    else:
        say(f"  source: kubepulse simulate, {plan.clusters} clusters x {plan.nodes} nodes x {plan.pods} pods, "
            f"{plan.speed:g}x accelerated from {plan.sim_start:%Y-%m-%d %H:%M:%S}Z, an incident every {plan.incident_every_s:g} simulated s")
    say(f"  kafka topics {s.kafka.topic_prefix}kubepulse.*, elasticsearch {s.elasticsearch.index_prefix}-*, "
        f"notifications to {plan.notifications_file}" + (" and PagerDuty/Slack" if "KUBEPULSE_ALERTING__CONFIG_FILE" in plan.env_overrides else ""))


def _died(children: Any) -> str | None:
    """What went wrong if one of the demo's processes exited, with the end of its log."""
    dead = children.failed()
    if dead is None:
        return None
    return f"{dead.name} exited with {dead.proc.returncode}; last lines of {dead.log_path}:\n{dead.tail()}"


def _run_unattended(plan: Any, children: Any, *, duration: float, drain_timeout: float) -> None:
    """Run for ``duration`` s with a status line every 15 s, stop the source, drain, print one frame."""
    from kubepulse import _demo as D

    say = typer.echo

    def check() -> None:
        reason = _died(children)
        if reason is not None:
            raise D.DemoError(reason)

    began = time.monotonic()
    next_line = began + 15
    while (left := began + duration - time.monotonic()) > 0:
        check()
        time.sleep(min(1.0, left))
        if time.monotonic() >= next_line:
            say(D.status_line(plan, time.monotonic() - began, asyncio.run(D.es_counts(plan))))
            next_line += 15
    say(f"  stopping the {children.source} after {duration:g} s; waiting for the pipeline to catch up")
    children.stop([children.source])
    lags = asyncio.run(D.drain(plan, timeout=drain_timeout, alive=check))
    if any(lags.values()):
        say(f"  still behind after {drain_timeout:g} s: {lags} (counted as is)")
    _print_frame(plan)


def _run_live(plan: Any, children: Any) -> None:
    """The live `top` view until Ctrl-C or until one of the demo's processes exits."""
    from rich.console import Console

    from kubepulse import _demo as D
    from kubepulse._top import TopOptions, run_top

    say = typer.echo
    say("  starting; the view fills in as data arrives. Ctrl-C stops the demo (Kafka and Elasticsearch keep running).")
    time.sleep(2)
    stop_reason: list[str] = []

    def stop() -> bool:
        reason = _died(children)
        if reason is not None:
            stop_reason.append(reason)
        return reason is not None

    try:
        run_top(plan.settings, TopOptions(since=plan.since), interval_s=3.0, console=Console(), stop=stop)
    except KeyboardInterrupt:
        say("\nCtrl-C: stopping what the demo started")
    if stop_reason:
        raise D.DemoError(stop_reason[0])


def _stop_and_clean_up(plan: Any, children: Any, summary: dict[str, Any] | None) -> None:
    """Stop every child, print the readable summary, delete the run's topics (and, unattended, indices) unless --keep."""
    from kubepulse import _demo as D

    say = typer.echo
    codes = children.stop()
    if codes:
        say("  stopped " + ", ".join(f"{k} ({v})" for k, v in codes.items()))
    if summary is not None:
        # The readable part now, the JSON line last (after the clean-up notes).
        say("\n".join(D.format_summary(plan, summary).splitlines()[:-1]))
    if not plan.keep:
        try:
            for line in asyncio.run(D.cleanup(plan, indices=plan.unattended)):
                say(f"  {line}")
        except Exception as exc:  # noqa: BLE001 - clean-up is best effort; the data is the run's own
            say(f"  clean-up failed: {exc!r}", err=True)
    say("  Kafka and Elasticsearch are still running: `deploy/local/stack down` stops them.")


def _print_frame(plan: Any) -> None:
    """One frame of `top` over the run's data, printed into the log (unattended runs have no live view)."""
    from rich.console import Console

    from kubepulse._top import TopOptions, run_top

    console = Console(width=180) if not Console().is_terminal else Console()
    try:
        run_top(plan.settings, TopOptions(since=plan.since, rows=5), once=True, console=console)
    except Exception as exc:  # noqa: BLE001 - the frame is a courtesy; the summary is what counts
        typer.echo(f"  (no frame: {exc!r})")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the kubepulse CLI."""
    app.command("demo")(demo)
    app.command("top")(top)
