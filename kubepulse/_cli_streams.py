"""Commands of the streams part (registered by kubepulse.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to the kubepulse CLI."""
