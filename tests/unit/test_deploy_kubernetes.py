"""deploy/kubernetes: rendered by a real kustomize, parsed into the kubernetes client's typed
models, and checked for least privilege, hardening, probes and settings that load."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from collectors.rbac import CALLS, REQUIRED_RULES, covers
from models.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kustomize.sh"
TARGETS = {
    "base": "deploy/kubernetes",
    "remote-clusters": "deploy/kubernetes/overlays/remote-clusters",
    "cluster-access": "deploy/kubernetes/cluster-access",
    "kibana": "deploy/kubernetes/overlays/kibana",
}
READ_VERBS = {"get", "list", "watch"}
WORKLOADS = {"Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob"}

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    """Every target built by deploy/kustomize.sh (which builds kustomize from the Go module proxy on first use)."""
    out: dict[str, list[Obj]] = {}
    for name, path in TARGETS.items():
        proc = subprocess.run(
            [str(KUSTOMIZE), "build", path], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
        )
        assert proc.returncode == 0, f"kustomize build {path} failed:\n{proc.stderr}"
        out[name] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return out


def _one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod_spec(obj: Obj) -> Obj:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return spec["template"]["spec"]


def _containers(obj: Obj) -> list[Obj]:
    spec = _pod_spec(obj)
    return spec.get("initContainers", []) + spec["containers"]


def _env(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def _settings_field_exists(env_name: str) -> bool:
    """Whether KUBEPULSE_<GROUP>__<FIELD> (or KUBEPULSE_<FIELD>) names a real Settings field."""
    if env_name == "KUBEPULSE_CONFIG":
        return True  # read by load_settings itself
    parts = env_name.removeprefix("KUBEPULSE_").lower().split("__")
    model: Any = Settings
    for part in parts:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_rendered_object_parses_into_the_typed_client_models_with_no_unknown_field(
    rendered: dict[str, list[Obj]], target: str
) -> None:
    api = ApiClient()
    kinds = set()
    for obj in rendered[target]:
        group_version = obj["apiVersion"]
        assert group_version.endswith("/v1") or group_version == "v1", f"{obj['kind']} uses {group_version}"
        model = api._ApiClient__deserialize(obj, f"V1{obj['kind']}")  # noqa: SLF001 - the client's own decoder
        # The typed model keeps only fields the API knows: a typo (e.g. "securityContex") is lost and differs.
        assert api.sanitize_for_serialization(model) == obj, f"{obj['kind']}/{obj['metadata']['name']}"
        kinds.add(obj["kind"])
    expected = {
        "base": {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service",
                 "Deployment", "PodDisruptionBudget", "Job", "CronJob"},
        "remote-clusters": {"Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment",
                            "PodDisruptionBudget", "Job", "CronJob"},
        "cluster-access": {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret"},
        # The base plus one Job and its ConfigMap: no new kind.
        "kibana": {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service",
                   "Deployment", "PodDisruptionBudget", "Job", "CronJob"},
    }[target]
    assert kinds == expected


def test_the_cluster_role_grants_exactly_the_rules_the_collector_code_needs(rendered: dict[str, list[Obj]]) -> None:
    role = _one(rendered["base"], "ClusterRole", "kubepulse-collector")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    required = {(g, r, v) for rule in REQUIRED_RULES for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == required, f"missing: {sorted(required - granted)}; not needed: {sorted(granted - required)}"
    for call in CALLS:  # and through the collectors' own matcher, as a 403 would be explained
        assert covers(role["rules"], verb=call.verb, group=call.group, resource=call.resource), call
    # The same ClusterRole goes to clusters watched from outside.
    assert _one(rendered["cluster-access"], "ClusterRole", "kubepulse-collector")["rules"] == role["rules"]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_no_rbac_rule_anywhere_grants_a_write_verb_a_wildcard_or_secrets(rendered: dict[str, list[Obj]], target: str) -> None:
    roles = [o for o in rendered[target] if o["kind"] in ("Role", "ClusterRole")]
    for role in roles:
        for rule in role["rules"]:
            assert set(rule["verbs"]) <= READ_VERBS, f"{role['metadata']['name']}: {rule}"
            assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
            assert "secrets" not in rule["resources"], rule
            assert "resourceNames" not in rule or rule["resourceNames"], rule
    # Single replica + Recreate instead of leader election: no Lease, so no namespaced Role at all.
    assert not [o for o in rendered[target] if o["kind"] in ("Role", "RoleBinding")]


@pytest.mark.parametrize("target", ["base", "kibana"])
def test_only_the_collector_gets_a_token_and_a_binding(rendered: dict[str, list[Obj]], target: str) -> None:
    objs = rendered[target]
    binding = _one(objs, "ClusterRoleBinding", "kubepulse-collector")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubepulse-collector"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kubepulse-collector", "namespace": "kubepulse"}]
    for obj in objs:
        if obj["kind"] not in WORKLOADS:
            continue
        spec = _pod_spec(obj)
        if obj["metadata"]["name"] == "kubepulse-collector":
            assert spec["serviceAccountName"] == "kubepulse-collector"
            assert spec["automountServiceAccountToken"] is True  # the in-cluster client needs it
        else:
            assert spec["automountServiceAccountToken"] is False, obj["metadata"]["name"]
            assert spec.get("serviceAccountName") != "kubepulse-collector"


BASE_WORKLOADS = {"kubepulse-collector", "kubepulse-worker", "kubepulse-indexer", "kubepulse-setup", "kubepulse-report"}


@pytest.mark.parametrize("target", ["base", "remote-clusters", "kibana"])
def test_every_container_runs_non_root_read_only_without_capabilities_and_with_limits(
    rendered: dict[str, list[Obj]], target: str
) -> None:
    workloads = [o for o in rendered[target] if o["kind"] in WORKLOADS]
    extra = {"kibana": {"kubepulse-kibana-provision"}}.get(target, set())
    assert {o["metadata"]["name"] for o in workloads} == BASE_WORKLOADS | extra
    for obj in workloads:
        spec = _pod_spec(obj)
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] >= 1000
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
        tmp_volume = {v["name"]: v for v in spec["volumes"]}["tmp"]
        assert "sizeLimit" in tmp_volume["emptyDir"]
        for c in _containers(obj):
            where = f"{obj['metadata']['name']}/{c['name']}"
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(c["resources"]["limits"]), where
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            assert mounts["/tmp"]["name"] == "tmp", where  # the only writable path
            assert all(m.get("readOnly") for p, m in mounts.items() if p != "/tmp"), where
            assert c["image"] == "kubepulse:0.1.0", where


def test_long_running_containers_probe_healthz_and_readyz_on_the_settings_port(rendered: dict[str, list[Obj]]) -> None:
    port = Settings.model_fields["http_port"].default
    for name in ("kubepulse-collector", "kubepulse-worker", "kubepulse-indexer"):
        (c,) = _containers(_one(rendered["base"], "Deployment", name))
        assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    service = _one(rendered["base"], "Service", "kubepulse-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    # The setup Job serves nothing: it turns the server off and is not behind the metrics Service.
    job = _one(rendered["base"], "Job", "kubepulse-setup")
    assert all(_env(c)["KUBEPULSE_HTTP_PORT"]["value"] == "0" for c in _containers(job))
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not all(job_labels.get(k) == v for k, v in service["spec"]["selector"].items())


def test_collector_is_one_replica_recreated_and_workers_fit_the_partitions(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["base"]
    collector = _one(objs, "Deployment", "kubepulse-collector")
    assert collector["spec"]["replicas"] == 1
    assert collector["spec"]["strategy"] == {"type": "Recreate"}  # never two scraping during a rollout
    worker = _one(objs, "Deployment", "kubepulse-worker")
    config = yaml.safe_load(_one_config_map(objs)["data"]["config.yaml"])
    partitions = config["kafka"]["topic_partitions"]
    surge = worker["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    assert 2 <= worker["spec"]["replicas"] and worker["spec"]["replicas"] + surge <= partitions
    # The indexer is a consumer group of its own on the same partitions: the same ceiling, apart.
    indexer = _one(objs, "Deployment", "kubepulse-indexer")
    surge = indexer["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    assert 1 <= indexer["spec"]["replicas"] <= 2 and indexer["spec"]["replicas"] + surge <= partitions
    assert indexer["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    for deployment in (worker, indexer):
        name = deployment["metadata"]["name"]
        pdb = _one(objs, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"], name
        assert pdb["spec"]["maxUnavailable"] < deployment["spec"]["replicas"], name
    # Neither selector picks up the other's pods (a PDB or rollout over both would be wrong).
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    indexer_labels = indexer["spec"]["template"]["metadata"]["labels"]
    assert not all(worker_labels.get(k) == v for k, v in indexer["spec"]["selector"]["matchLabels"].items())
    assert not all(indexer_labels.get(k) == v for k, v in worker["spec"]["selector"]["matchLabels"].items())


def test_the_indexer_gets_the_kafka_and_elasticsearch_secrets_and_no_notifier_keys(rendered: dict[str, list[Obj]]) -> None:
    indexer = _one(rendered["base"], "Deployment", "kubepulse-indexer")
    (c,) = _containers(indexer)
    assert c["args"] == ["es", "index"]
    env = _env(c)
    assert {"KUBEPULSE_KAFKA__SASL_USERNAME", "KUBEPULSE_KAFKA__SASL_PASSWORD", "KUBEPULSE_ELASTICSEARCH__API_KEY",
            "KUBEPULSE_ELASTICSEARCH__USERNAME", "KUBEPULSE_ELASTICSEARCH__PASSWORD"} <= set(env)
    assert not [name for name in env if name.startswith("KUBEPULSE_ALERTING__")]  # it sends no page
    spec = _pod_spec(indexer)
    assert spec["serviceAccountName"] == "kubepulse-indexer"
    assert _one(rendered["base"], "ServiceAccount", "kubepulse-indexer")["automountServiceAccountToken"] is False
    # Behind the metrics Service, like the workers: its /metrics has the kubepulse_indexing_* counters.
    service = _one(rendered["base"], "Service", "kubepulse-metrics")
    labels = indexer["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())


def _one_config_map(objs: list[Obj]) -> Obj:
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"]
    return cm


def test_the_config_map_holds_settings_and_alerting_that_load(rendered: dict[str, list[Obj]], tmp_path: Path) -> None:
    from streams.alerting.config import load_config

    objs = rendered["base"]
    cm = _one_config_map(objs)
    assert cm["metadata"]["name"].startswith("kubepulse-config-")  # content hash: edits roll the pods
    for name, text in cm["data"].items():
        (tmp_path / name).write_text(text)
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["alerting"]["config_file"] == "/etc/kubepulse/alerting.yaml"
    settings = load_settings(tmp_path / "config.yaml", alerting={"config_file": tmp_path / "alerting.yaml"})
    assert [(c.name, c.in_cluster) for c in settings.clusters] == [("in-cluster", True)]
    assert settings.http_port == 8000 and settings.kafka.topic_replication == 3
    # With no Secret at all the routing still loads (every route ends at the console receiver).
    alerting = load_config(settings, environ={})
    assert [r.name for r in alerting.receivers] == ["console"]
    for obj in objs:
        if obj["kind"] not in WORKLOADS:
            continue
        volumes = {v["name"]: v for v in _pod_spec(obj)["volumes"]}
        assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
        for c in _containers(obj):
            assert _env(c)["KUBEPULSE_CONFIG"]["value"] == "/etc/kubepulse/config.yaml"
            assert {m["mountPath"]: m["name"] for m in c["volumeMounts"]}["/etc/kubepulse"] == "config"


def _cli_envvars(argv: list[str]) -> set[str]:
    """The environment variables the options of the kubepulse command ``argv`` read (click's ``envvar``)."""
    import typer

    from kubepulse.cli import app

    # Duck-typed: typer's groups are not instances of the installed click's Group.
    command: Any = typer.main.get_command(app)
    for word in argv:
        subcommands = getattr(command, "commands", {})
        if word not in subcommands:
            break
        command = subcommands[word]
    return {p.envvar for p in command.params if isinstance(p.envvar, str)}


@pytest.mark.parametrize("target", ["base", "remote-clusters", "kibana"])
def test_every_variable_names_a_settings_field_and_every_secret_is_optional(
    rendered: dict[str, list[Obj]], target: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_keys: dict[str, str] = {}
    for obj in rendered[target]:
        if obj["kind"] not in WORKLOADS:
            continue
        for c in _containers(obj):
            options = _cli_envvars(c["args"])
            for name, e in _env(c).items():
                assert _settings_field_exists(name) or name in options, (
                    f"{obj['metadata']['name']}/{c['name']}: {name} is no Settings field nor an option of `{' '.join(c['args'])}`"
                )
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "kubepulse-secrets" and ref["optional"] is True, (name, ref)
                    assert secret_keys.setdefault(name, ref["key"]) == ref["key"], f"{name} read from two keys"
    assert {"KUBEPULSE_ALERTING__PAGERDUTY_ROUTING_KEY", "KUBEPULSE_ALERTING__SLACK_WEBHOOK_URL",
            "KUBEPULSE_ALERTING__SMTP_PASSWORD", "KUBEPULSE_ELASTICSEARCH__PASSWORD"} <= set(secret_keys)
    # Every secret given at once (but the API key: it excludes basic auth) makes valid settings,
    # and each lands in its field.
    for name, key in secret_keys.items():
        if name != "KUBEPULSE_ELASTICSEARCH__API_KEY":
            monkeypatch.setenv(name, f"s3cret-{key}")
    settings = load_settings(http_port=0)
    assert settings.alerting.pagerduty_routing_key.get_secret_value() == "s3cret-pagerduty-routing-key"
    assert settings.elasticsearch.password.get_secret_value() == "s3cret-elasticsearch-password"


def test_remote_clusters_overlay_mounts_the_kubeconfigs_and_needs_no_local_api_access(
    rendered: dict[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered["remote-clusters"]
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    collector = _one(objs, "Deployment", "kubepulse-collector")
    spec = _pod_spec(collector)
    assert spec["automountServiceAccountToken"] is False
    assert collector["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["kubeconfigs"]["secret"]["secretName"] == "kubepulse-kubeconfigs"
    assert "optional" not in volumes["kubeconfigs"]["secret"]  # a missing Secret must stop the pod, not start it blind
    (c,) = spec["containers"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    mount = mounts["kubeconfigs"]["mountPath"]
    assert mounts["kubeconfigs"]["readOnly"] is True
    assert not mount.startswith(mounts["config"]["mountPath"] + "/")  # never nested in the read-only ConfigMap volume
    clusters = json.loads(_env(c)["KUBEPULSE_CLUSTERS"]["value"])
    monkeypatch.setenv("KUBEPULSE_CLUSTERS", json.dumps(clusters))
    settings = load_settings(http_port=0)
    assert [cl.name for cl in settings.clusters] == ["prod-eu", "prod-us"]
    for cl in settings.clusters:
        # The Secret's keys are the cluster names, mounted one file per key.
        assert str(cl.kubeconfig) == f"{mount}/{cl.name}" and not cl.in_cluster


def test_cluster_access_token_belongs_to_the_bound_service_account(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["cluster-access"]
    secret = _one(objs, "Secret", "kubepulse-collector-token")
    assert secret["type"] == "kubernetes.io/service-account-token"
    account = secret["metadata"]["annotations"]["kubernetes.io/service-account.name"]
    binding = _one(objs, "ClusterRoleBinding", "kubepulse-collector")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": secret["metadata"]["namespace"]}]
    _one(objs, "ServiceAccount", account)


def test_the_namespace_enforces_the_restricted_pod_security_standard(rendered: dict[str, list[Obj]]) -> None:
    ns = _one(rendered["base"], "Namespace", "kubepulse")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(o["metadata"].get("namespace", "kubepulse") == "kubepulse" for o in rendered["base"])


def test_base_needs_no_kibana_and_the_kibana_overlay_adds_only_the_provision_job(rendered: dict[str, list[Obj]]) -> None:
    def ids(objs: list[Obj]) -> set[tuple[str, str]]:
        # ConfigMap names carry a content hash; compare them without it.
        return {(o["kind"], o["metadata"]["name"].rsplit("-", 1)[0] if o["kind"] == "ConfigMap" else o["metadata"]["name"])
                for o in objs}

    assert not [o for o in rendered["base"] if "kibana" in o["metadata"]["name"]]
    assert ids(rendered["kibana"]) - ids(rendered["base"]) == {("Job", "kubepulse-kibana-provision"), ("ConfigMap", "kubepulse-kibana")}
    # The component sets its own namespace: the base's reaches only the base's objects.
    for o in rendered["kibana"]:
        if "kibana" in o["metadata"]["name"]:
            assert o["metadata"]["namespace"] == "kubepulse", o["metadata"]["name"]


def test_the_kibana_provision_job_passes_the_overlays_url_and_optional_credentials(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["kibana"]
    job = _one(objs, "Job", "kubepulse-kibana-provision")
    (c,) = _containers(job)
    assert c["args"][:3] == ["kibana", "provision", "--url"]
    env = _env(c)
    # Kubernetes expands $(NAME) in args only for a variable of the container itself.
    var = c["args"][3]
    assert var.startswith("$(") and var.endswith(")") and var[2:-1] in env
    ref = env[var[2:-1]]["valueFrom"]["configMapKeyRef"]
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == ref["name"]]
    assert cm["metadata"]["name"].startswith("kubepulse-kibana-")  # the generated, hashed name
    overlay = yaml.safe_load((ROOT / TARGETS["kibana"] / "kustomization.yaml").read_text())
    (patch,) = [yaml.safe_load(p["patch"]) for p in overlay["patches"] if "kubepulse-kibana" in p["patch"]]
    assert cm["data"][ref["key"]] == patch["data"]["url"]  # the overlay's patch won over the component's default
    assert "optional" not in ref  # no URL, no provisioning: the pod must not start with a blank --url
    # Credentials: exactly the variables the command's options read, each an optional Secret key.
    options = _cli_envvars(c["args"])
    secrets = {n: e["valueFrom"]["secretKeyRef"] for n, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})}
    assert set(secrets) == options == {"KUBEPULSE_KIBANA_API_KEY", "KUBEPULSE_KIBANA_USER", "KUBEPULSE_KIBANA_PASSWORD"}
    assert all(r["name"] == "kubepulse-secrets" and r["optional"] is True for r in secrets.values())
    # A one-shot like the setup Job: no server, no token, not behind the metrics Service.
    assert env["KUBEPULSE_HTTP_PORT"]["value"] == "0"
    spec = _pod_spec(job)
    assert spec["automountServiceAccountToken"] is False and spec["restartPolicy"] == "OnFailure"
    service = _one(objs, "Service", "kubepulse-metrics")
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in service["spec"]["selector"].items())


def test_the_report_cron_job_runs_the_reports_daily_one_at_a_time_with_only_elasticsearch_credentials(rendered: dict[str, list[Obj]]) -> None:
    job = _one(rendered["base"], "CronJob", "kubepulse-report")
    assert job["spec"]["concurrencyPolicy"] == "Forbid" and job["spec"]["schedule"] == "15 0 * * *"
    assert job["spec"]["jobTemplate"]["spec"]["backoffLimit"] >= 1  # a failed run (Elasticsearch down) is retried
    (c,) = _containers(job)
    assert c["args"] == ["report", "run"]
    env = _env(c)
    assert env["KUBEPULSE_HTTP_PORT"]["value"] == "0"
    secrets = {e["valueFrom"]["secretKeyRef"]["key"] for e in env.values() if "valueFrom" in e}
    assert secrets == {"elasticsearch-api-key", "elasticsearch-username", "elasticsearch-password"}
    assert all(e["valueFrom"]["secretKeyRef"]["optional"] for e in env.values() if "valueFrom" in e)
    # The command it runs exists, and it reads the ConfigMap's settings like every other role.
    from typer.testing import CliRunner

    from kubepulse.cli import app

    assert CliRunner().invoke(app, [*c["args"], "--help"]).exit_code == 0
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/etc/kubepulse", "/tmp"}
    labels = _pod_spec(job) and job["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    service = _one(rendered["base"], "Service", "kubepulse-metrics")
    assert not all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
