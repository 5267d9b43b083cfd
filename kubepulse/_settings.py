"""The commands' one settings loader: a bad setting is its message and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from models.settings import Settings

__all__ = ["cli_settings"]


def cli_settings(config: Path | None, **overrides: Any) -> Settings:
    """``load_settings(config, **overrides)``, or the error naming each bad field and ``typer.Exit(2)``."""
    from models.errors import ConfigError
    from models.settings import load_settings

    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
