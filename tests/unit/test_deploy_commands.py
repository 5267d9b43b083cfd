"""Every kubepulse command that docker-compose.yml and the Kubernetes manifests run
exists in the CLI and accepts the options they pass (parsed, not run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from typer.testing import CliRunner

from kubepulse.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _deploy_commands() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, svc in compose["services"].items():
        if svc["image"].startswith("kubepulse:"):
            found[f"compose {name}"] = list(svc["command"])
    for target in ("deploy/kubernetes", "deploy/kubernetes/overlays/remote-clusters", "deploy/kubernetes/overlays/kibana"):
        out = subprocess.run(
            [str(ROOT / "deploy" / "kustomize.sh"), "build", target], cwd=ROOT, capture_output=True, text=True, check=True, timeout=900
        ).stdout
        for obj in yaml.safe_load_all(out):
            if obj and obj["kind"] in ("Deployment", "Job"):
                spec = obj["spec"]["template"]["spec"]
                for c in spec.get("initContainers", []) + spec["containers"]:
                    assert "command" not in c, "the image's ENTRYPOINT is kubepulse; pass args only"
                    found[f"{target} {obj['metadata']['name']}/{c['name']}"] = list(c["args"])
    return found


def _problem(argv: list[str]) -> str | None:
    # `--help` last: click parses the options before it (an unknown one fails with exit 2),
    # then prints the command's help instead of running it.
    result = CliRunner().invoke(app, [*argv, "--help"])
    if result.exit_code != 0 or "Usage:" not in result.output:
        return f"`kubepulse {' '.join(argv)}` fails (exit {result.exit_code}): {result.output.strip()[-300:]}"
    return None


def test_every_command_the_deploy_files_run_exists_and_accepts_its_options() -> None:
    commands = _deploy_commands()
    runs = {" ".join(argv) for argv in commands.values()}
    assert {"simulate", "collect", "worker", "es index", "es setup", "topics create",
            "kibana provision --url http://kibana:5601"} <= runs
    assert commands["compose indexer"] == ["es", "index"]
    assert commands["deploy/kubernetes kubepulse-indexer/indexer"] == ["es", "index"]
    assert [argv for where, argv in commands.items() if where.endswith("kubepulse-kibana-provision/kibana-provision")][0][:2] == [
        "kibana", "provision"]
    problems = {where: p for where, argv in commands.items() if (p := _problem(argv))}
    assert not problems, "\n".join(f"{where}: {p}" for where, p in sorted(problems.items()))
