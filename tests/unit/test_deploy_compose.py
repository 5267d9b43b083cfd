"""docker-compose.yml: pinned images, a start order made of health checks and completed
one-shot jobs, and settings/alerting files that kubepulse really loads.

There is no Docker engine nor compose plugin here: deploy/compose/config.sh
loads the file with compose-go (what `docker compose config` runs), and the
tests check its structure and its kubepulse side. `docker compose up` itself
is for a user with Docker.
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
KUBEPULSE_IMAGE = "kubepulse:"
ONE_SHOTS = {"setup-elasticsearch", "setup-topics", "kibana-provision"}
LONG_RUNNING = {"kafka", "elasticsearch", "kibana", "mailpit", "collector", "collector-real", "worker", "indexer"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _pom_versions() -> dict[str, str]:
    # The versions deploy/local/stack runs and the integration tests pass against.
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = ET.parse(ROOT / "deploy" / "local" / "artifacts-pom.xml").getroot().find("m:properties", ns)
    assert props is not None
    return {child.tag.split("}")[1]: (child.text or "").strip() for child in props}


def test_the_stack_has_every_part_and_nothing_else(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == ONE_SHOTS | LONG_RUNNING


def test_every_image_is_pinned_to_a_version(services: dict[str, dict[str, Any]]) -> None:
    project_version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    for name, svc in services.items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned"
        if image.startswith(KUBEPULSE_IMAGE):
            assert tag == project_version, f"{name}: kubepulse image tag {tag} != project version {project_version}"
            assert svc["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}


def test_kafka_and_elasticsearch_are_the_versions_the_tests_run_against(services: dict[str, dict[str, Any]]) -> None:
    pom = _pom_versions()
    assert services["kafka"]["image"] == f"apache/kafka:{pom['kafka.version']}"
    assert services["elasticsearch"]["image"] == f"docker.elastic.co/elasticsearch/elasticsearch:{pom['es.version']}"
    assert services["kibana"]["image"] == f"docker.elastic.co/kibana/kibana:{pom['es.version']}"


def test_every_service_is_health_checked_or_a_one_shot_that_others_wait_for(services: dict[str, dict[str, Any]]) -> None:
    completed_by: dict[str, set[str]] = {name: set() for name in services}
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert isinstance(cond, dict) and "condition" in cond, f"{name} -> {dep}: no condition"
            if cond["condition"] == "service_healthy":
                hc = services[dep]["healthcheck"]
                assert hc.get("test") and not hc.get("disable"), f"{name} waits for {dep} to be healthy, which has no check"
            else:
                assert cond["condition"] == "service_completed_successfully", (name, dep, cond)
                assert dep in ONE_SHOTS, f"{name} waits for {dep} to complete, but it never ends"
                completed_by[dep].add(name)
    for name in LONG_RUNNING:
        hc = services[name]["healthcheck"]
        assert hc["test"][0] in ("CMD", "CMD-SHELL") and not hc.get("disable"), name
        assert {"interval", "timeout", "retries"} <= set(hc), name
    for name in ONE_SHOTS:
        assert services[name]["restart"] == "no", name
        assert services[name]["depends_on"], f"{name} starts before what it sets up"
    assert completed_by["setup-topics"] >= {"collector", "collector-real", "worker", "indexer"}
    assert completed_by["setup-elasticsearch"] >= {"worker", "indexer", "kibana-provision"}


def _start_order(services: dict[str, dict[str, Any]]) -> list[str]:
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        assert name not in visiting, f"dependency cycle through {name}"
        visiting.add(name)
        for dep in sorted(services[name].get("depends_on", {})):
            visit(dep)
        order.append(name)

    for name in sorted(services):
        visit(name)
    return order


def test_compose_comes_up_in_order(services: dict[str, dict[str, Any]]) -> None:
    order = _start_order(services)

    def before(a: str, b: str) -> bool:
        return order.index(a) < order.index(b)

    assert before("kafka", "setup-topics") and before("setup-topics", "collector") and before("setup-topics", "worker")
    assert before("elasticsearch", "setup-elasticsearch") and before("setup-elasticsearch", "worker")
    assert before("kibana", "kibana-provision") and before("elasticsearch", "kibana")
    assert before("mailpit", "worker")
    assert before("setup-topics", "indexer") and before("setup-elasticsearch", "indexer")


def test_kubepulse_services_share_the_hardening_of_the_kubernetes_manifests(services: dict[str, dict[str, Any]]) -> None:
    ours = {n: s for n, s in services.items() if s["image"].startswith(KUBEPULSE_IMAGE)}
    assert set(ours) == ONE_SHOTS | {"collector", "collector-real", "worker", "indexer"}
    for name, svc in ours.items():
        assert svc["user"] == "10001:10001" and svc["read_only"] is True, name
        assert svc["cap_drop"] == ["ALL"] and "no-new-privileges:true" in svc["security_opt"], name
        assert any(t.startswith("/tmp:") for t in svc["tmpfs"]), name
        for volume in svc["volumes"]:
            source, target, mode = volume.rsplit(":", 2)
            assert mode == "ro", f"{name}: {volume} is writable"
            if source.startswith("./") and "kubeconfig" not in target:
                assert (ROOT / source).is_file(), f"{name}: {source} does not exist"
    assert services["collector"]["command"] == ["simulate"]
    assert services["collector-real"]["command"] == ["collect"]
    assert services["collector-real"]["profiles"] == ["real-clusters"]
    assert services["worker"]["command"] == ["worker"] and services["worker"]["deploy"]["replicas"] == 2
    assert services["kibana-provision"]["command"] == ["kibana", "provision", "--url", "http://kibana:5601"]
    indexer = services["indexer"]
    assert indexer["command"] == ["es", "index"] and indexer["restart"] == "unless-stopped"
    # The same environment and health check as the workers (so the same Kafka, Elasticsearch and port).
    assert indexer["environment"] == services["worker"]["environment"]
    assert indexer["healthcheck"] == services["worker"]["healthcheck"]


def _compose_env_settings(svc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the container would build them: its environment, its mounted config file."""
    mounts = {v.rsplit(":", 2)[1]: ROOT / v.rsplit(":", 2)[0] for v in svc["volumes"]}
    for name, value in svc["environment"].items():
        assert name.startswith("KUBEPULSE_"), name
        value = str(value)
        monkeypatch.setenv(name, str(mounts.get(value, value)))
    settings = load_settings()
    # The alerting file is named by its path in the container; map it to the repo file.
    container_path = str(settings.alerting.config_file)
    return settings.model_copy(
        update={"alerting": settings.alerting.model_copy(update={"config_file": mounts[container_path]})}
    )


def test_the_containers_settings_load_and_reach_the_compose_services(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _compose_env_settings(services["worker"], monkeypatch)
    host, _, port = settings.kafka.bootstrap_servers.rpartition(":")
    kafka_env = services["kafka"]["environment"]
    assert f"INTERNAL://{host}:{port}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert settings.elasticsearch.url == "http://elasticsearch:9200"
    assert settings.kafka.topic_partitions == kafka_env["KAFKA_NUM_PARTITIONS"]
    assert settings.kafka.topic_partitions >= services["worker"]["deploy"]["replicas"]
    assert settings.http_port == 8000


def test_alert_emails_go_to_mailpit(services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.alerting.config import load_config

    settings = _compose_env_settings(services["worker"], monkeypatch)
    config = load_config(settings, environ={})
    (email,) = [r for r in config.receivers if r.email_configs]
    (cfg,) = email.email_configs
    assert cfg.smarthost == "mailpit:1025"  # Mailpit's SMTP port
    assert not cfg.require_tls and not cfg.tls  # Mailpit speaks plain SMTP by default
    assert services["mailpit"]["ports"] == ["8025:8025"]  # its web UI, to read them


def test_the_real_clusters_profile_names_a_kubeconfig_it_mounts(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = services["collector-real"]
    mounted = {v.rsplit(":", 2)[1] for v in svc["volumes"]}
    for name, value in svc["environment"].items():
        if name != "KUBEPULSE_CONFIG":
            monkeypatch.setenv(name, str(value))
    settings = load_settings(http_port=0)
    assert settings.clusters, "KUBEPULSE_CLUSTERS names no cluster"
    for cluster in settings.clusters:
        assert str(cluster.kubeconfig) in mounted, cluster


CONFIG = ROOT / "deploy" / "compose" / "config.sh"


def _compose_config(path: Path, *profiles: str) -> subprocess.CompletedProcess[str]:
    """deploy/compose/config.sh: compose-go, the loader inside `docker compose config`, built with Go."""
    return subprocess.run(
        [str(CONFIG), str(path), *profiles], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )


def test_compose_go_loads_and_normalises_the_file_like_docker_compose_config() -> None:
    proc = _compose_config(ROOT / "docker-compose.yml")
    assert proc.returncode == 0, proc.stderr
    project = json.loads(proc.stdout)
    assert project["name"] == "kubepulse"
    # Without its profile the real-clusters collector is not part of `up`.
    assert set(project["services"]) == (ONE_SHOTS | LONG_RUNNING) - {"collector-real"}
    worker = project["services"]["worker"]
    assert worker["deploy"]["replicas"] == 2
    assert worker["depends_on"]["setup-topics"]["condition"] == "service_completed_successfully"
    assert worker["read_only"] is True and worker["user"] == "10001:10001"  # the merge keys were applied
    assert worker["healthcheck"]["start_period"] == "1m0s"
    indexer = project["services"]["indexer"]
    assert indexer["command"] == ["es", "index"] and indexer["read_only"] is True
    assert {d: c["condition"] for d, c in indexer["depends_on"].items()} == {
        "setup-topics": "service_completed_successfully", "setup-elasticsearch": "service_completed_successfully"}
    assert indexer["healthcheck"]["test"] == worker["healthcheck"]["test"]
    kibana_job = project["services"]["kibana-provision"]
    assert kibana_job["healthcheck"]["disable"] is True and kibana_job["restart"] == "no"


def test_compose_go_enables_the_real_clusters_profile_with_its_kubeconfig_mount() -> None:
    proc = _compose_config(ROOT / "docker-compose.yml", "real-clusters")
    assert proc.returncode == 0, proc.stderr
    real = json.loads(proc.stdout)["services"]["collector-real"]
    assert real["command"] == ["collect"]
    targets = {v["target"]: v for v in real["volumes"]}
    assert targets["/etc/kubepulse/kubeconfig"]["read_only"] is True
    assert targets["/etc/kubepulse/kubeconfig"]["source"].endswith("deploy/compose/kubeconfig")


def test_compose_go_rejects_a_misspelt_key(tmp_path: Path) -> None:
    # The checker is not a rubber stamp: one typo in a copy of the file fails, naming the key.
    bad = tmp_path / "docker-compose.yml"
    text = (ROOT / "docker-compose.yml").read_text()
    assert "    restart: unless-stopped\n" in text
    bad.write_text(text.replace("    restart: unless-stopped\n", "    restrat: unless-stopped\n", 1))
    proc = _compose_config(bad)
    assert proc.returncode == 1
    assert "restrat" in proc.stderr


def test_kafka_is_a_single_kraft_node_with_a_valid_cluster_id(services: dict[str, dict[str, Any]]) -> None:
    import base64

    env = services["kafka"]["environment"]
    assert base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==").__len__() == 16 and len(env["CLUSTER_ID"]) == 22
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == str(env["KAFKA_NODE_ID"]) and voter.endswith(listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols) == set(listeners)
    # One broker: every internal topic must make do with one replica, or the group coordinator never starts.
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1
