"""``kubepulse rules``: check rule files and list the rules they define."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

rules_app = typer.Typer(help="Alert rules: validate rule files, list rules.", no_args_is_help=True)


def _describe(rule: object) -> str:
    from streams.rules import Rule

    assert isinstance(rule, Rule)
    sp = rule.spec
    if sp.kind in ("threshold", "rate"):
        what = f"{sp.metric} {sp.op} {sp.threshold:g}"
        if sp.kind == "rate":
            what = f"rate({sp.metric}[{sp.window:g}s]) {sp.op} {sp.threshold:g}"
    elif sp.kind == "predict":
        limit = sp.limit_metric or f"{sp.limit:g}"
        what = f"{sp.metric} reaches {limit} within {sp.within:g}s"
    elif sp.kind == "event":
        what = f"{'|'.join(sp.reasons)} x{sp.count} in {sp.window:g}s"
    else:
        what = f"anomalies x{sp.count} in {sp.window:g}s"  # type: ignore[union-attr]
    hold = f" for {sp.for_:g}s" if sp.for_ else ""
    return f"{rule.group}/{sp.alert} [{sp.severity}] {sp.kind}: {what}{hold}"


@rules_app.command("check")
def check(files: Annotated[list[Path], typer.Argument(help="Rule files to validate.")]) -> None:
    """Validate rule files: every problem as FILE:LINE:COLUMN, exit 1 on any; a summary on success."""
    from streams.rules import RulesError, load_rules

    failed = False
    for f in files:
        try:
            rules = load_rules(f)
        except RulesError as exc:
            failed = True
            for problem in exc.problems:
                typer.echo(str(problem), err=True)
            typer.echo(f"{f}: {len(exc.problems)} error(s)", err=True)
            continue
        kinds: dict[str, int] = {}
        for r in rules:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        groups = len({r.group for r in rules})
        typer.echo(f"{f}: OK, {len(rules)} rules in {groups} groups ({summary})")
    if failed:
        raise typer.Exit(1)


@rules_app.command("list")
def list_rules(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Rule files (default: the default rule pack).")] = None,
) -> None:
    """List the rules of rule files, or of the default pack shipped with kubepulse."""
    from streams.rules import RulesError, load_default_rules, load_rules

    try:
        rules = [r for f in files for r in load_rules(f)] if files else load_default_rules()
    except RulesError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    for r in rules:
        typer.echo(_describe(r))


def register(app: typer.Typer) -> None:
    """Add ``kubepulse rules`` to the CLI."""
    app.add_typer(rules_app, name="rules")
