"""``kubepulse detect``: replay labelled series through a detector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

detect_app = typer.Typer(help="Anomaly detectors: replay series offline.", no_args_is_help=True)


@detect_app.command("replay")
def replay(
    data_dir: Annotated[Path, typer.Option(help="DIR/<category>/<name>.csv files with columns timestamp,value.")],
    out_dir: Annotated[Path, typer.Option(help="Where OUT/<category>/<name>.csv with anomaly_score go.")],
    detector: Annotated[Optional[str], typer.Option(help="Detector name (default: kubepulse's default).")] = None,
    summary_json: Annotated[Optional[Path], typer.Option(help="Write the run summary here as JSON.")] = None,
) -> None:
    """Stream every series through a fresh detector, score before learn, no look-ahead."""
    from models.errors import ReplayError
    from models.replay import replay as run_replay

    kwargs = {"summary_json": summary_json}
    if detector:
        kwargs["detector"] = detector
    try:
        summary = run_replay(data_dir, out_dir, **kwargs)
    except ReplayError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(summary, sort_keys=True))


def register(app: typer.Typer) -> None:
    app.add_typer(detect_app, name="detect")
