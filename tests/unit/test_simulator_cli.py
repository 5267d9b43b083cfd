"""``kubepulse simulate`` argument errors: clear messages, exit status 2, nothing published."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from kubepulse.cli import app


def test_cli_simulate_rejects_fast_without_intervals_and_bad_injections() -> None:
    r = CliRunner().invoke(app, ["simulate", "--fast"])
    assert r.exit_code == 2 and "--fast needs --intervals N" in r.output
    r = CliRunner().invoke(app, ["simulate", "--once", "--inject", "meltdown@3"])
    assert r.exit_code == 2 and "unknown incident kind 'meltdown'" in r.output
    r = CliRunner().invoke(app, ["simulate", "--once", "--incidents", "sometimes"])
    assert r.exit_code == 2 and "incidents must be cycle, random or none" in r.output
    r = CliRunner().invoke(app, ["simulate", "--once", "--interval", "0"])
    assert r.exit_code == 2 and "simulator.interval_s" in r.output


def test_cli_simulate_says_which_kafka_it_could_not_reach(tmp_path: Path) -> None:
    config = tmp_path / "kubepulse.yaml"
    config.write_text("kafka:\n  bootstrap_servers: 127.0.0.1:9\n")
    labels = tmp_path / "labels.jsonl"
    r = CliRunner().invoke(app, ["simulate", "--once", "--nodes", "1", "--config", str(config), "--labels-file", str(labels)])
    assert r.exit_code == 2 and "cannot publish to Kafka at 127.0.0.1:9" in r.output
    assert not labels.exists()
