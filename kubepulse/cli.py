"""The ``kubepulse`` command: the only place that wires the parts together.

Each part registers its commands from a ``_cli_<part>`` module, so the parts
stay independent and this file stays a table of contents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kubepulse import _cli_alerting, _cli_collect, _cli_demo, _cli_detect, _cli_es, _cli_kibana, _cli_streams
from kubepulse import _cli_deadletter, _cli_report, _cli_rules
from kubepulse import _cli_simulate

app = typer.Typer(
    name="kubepulse",
    help="Kubernetes resource monitoring for many clusters: collect, stream, detect, alert, index.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
schema_app = typer.Typer(help="The topic contract: JSON Schemas of every record.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")


@schema_app.command("export")
def schema_export(directory: Annotated[Path, typer.Argument(help="Where to write one <topic>.schema.json per topic.")]) -> None:
    """Write one JSON Schema per topic, generated from the pydantic records."""
    from streams.topics import TOPICS

    directory.mkdir(parents=True, exist_ok=True)
    for spec in TOPICS:
        schema = spec.value_type.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:kubepulse:{spec.name}"
        schema["description"] = (schema.get("description") or "").strip() + f"\n\nTopic {spec.name}, key: {spec.key}."
        path = directory / f"{spec.name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        typer.echo(f"wrote {path}")


for part in (_cli_collect, _cli_streams, _cli_es, _cli_alerting, _cli_kibana, _cli_detect, _cli_demo, _cli_rules, _cli_simulate, _cli_report, _cli_deadletter):
    part.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
