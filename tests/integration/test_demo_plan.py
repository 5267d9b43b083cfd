"""How `kubepulse demo` isolates a run and configures its parts (no servers needed)."""

from __future__ import annotations

import json
from pathlib import Path

from kubepulse._demo import DEMO_INJECT, DEMO_RULES, Children, plan_demo
from models.settings import load_settings
from streams.alerting.config import load_config
from streams.rules import RuleEngine


def test_live_demo_keeps_the_configured_index_prefix_for_kibana_but_its_own_topics_and_group(tmp_path: Path) -> None:
    plan = plan_demo(load_settings(), duration_s=None, run_id="r1", workdir=tmp_path)
    s = plan.settings
    assert s.elasticsearch.index_prefix == "kubepulse"
    assert (s.kafka.topic_prefix, s.kafka.consumer_group) == ("demo.r1.", "kpdemo-r1")
    assert plan.env_overrides["KUBEPULSE_ELASTICSEARCH__INDEX_PREFIX"] == "kubepulse"


def test_unattended_demo_uses_a_per_run_index_prefix_outside_kibanas_patterns(tmp_path: Path) -> None:
    plan = plan_demo(load_settings(), duration_s=60, run_id="r2", workdir=tmp_path)
    assert plan.settings.elasticsearch.index_prefix == "kpdemo-r2"
    assert not plan.settings.elasticsearch.index_prefix.startswith("kubepulse")


def test_subprocess_environment_carries_the_runs_settings_and_the_users_secrets(tmp_path: Path) -> None:
    plan = plan_demo(load_settings(), duration_s=60, run_id="r3", workdir=tmp_path)
    user = {"PATH": "/bin", "KUBEPULSE_KAFKA__TOPIC_PREFIX": "mine.", "KUBEPULSE_ALERTING__SLACK_CHANNEL": "#ops"}
    env = Children(plan, environ=user).env
    assert env["KUBEPULSE_KAFKA__TOPIC_PREFIX"] == "demo.r3."  # the run's, not the user's
    assert env["KUBEPULSE_ALERTING__SLACK_CHANNEL"] == "#ops" and env["PATH"] == "/bin"
    assert env["KUBEPULSE_HTTP_PORT"] == "0"
    assert env["KUBEPULSE_ALERTING__NOTIFICATIONS_FILE"] == str(tmp_path.resolve() / "notifications.jsonl")
    # The variables parse back into the same settings the demo itself uses.
    child = load_settings(
        kafka={"topic_prefix": env["KUBEPULSE_KAFKA__TOPIC_PREFIX"]},
        streams={"rules_files": json.loads(env["KUBEPULSE_STREAMS__RULES_FILES"])},
    )
    assert child.streams.rules_files == plan.settings.streams.rules_files


def test_worker_rules_are_the_default_pack_plus_the_short_for_demo_rules(tmp_path: Path) -> None:
    plan = plan_demo(load_settings(), duration_s=None, run_id="r4", workdir=tmp_path)
    assert plan.settings.streams.rules_files[-1] == DEMO_RULES
    names = {r.name for r in RuleEngine.from_settings(plan.settings).rules}
    assert {"DemoNodeMemoryPressure", "DemoPodNetworkStorm", "KubePodCrashLooping", "KubeContainerOOMKilled"} <= names


def test_simulator_gets_the_runs_schedule_and_real_clusters_get_collect_instead(tmp_path: Path) -> None:
    sim = Children(plan_demo(load_settings(), duration_s=60, run_id="r5", workdir=tmp_path, nodes=4, pods=6), environ={})
    commands = dict(sim.commands())
    assert list(commands) == ["worker", "indexer", "alerting", "simulator"]
    args = commands["simulator"]
    assert args[args.index("--nodes") + 1] == "4" and args[args.index("--speed") + 1] == "15"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--inject"] == list(DEMO_INJECT)

    real = load_settings(clusters=[{"name": "prod", "context": "prod"}])
    cmds = dict(Children(plan_demo(real, duration_s=None, run_id="r6", workdir=tmp_path), environ={}).commands())
    assert list(cmds) == ["worker", "indexer", "alerting", "collector"] and cmds["collector"] == ["collect"]


def test_console_only_by_default_and_pagerduty_and_slack_too_when_their_secrets_are_set(tmp_path: Path) -> None:
    plain = plan_demo(load_settings(), duration_s=None, run_id="r7", workdir=tmp_path / "a")
    assert plain.settings.alerting.config_file is None  # the dispatcher's default: the console receiver

    base = load_settings(alerting={"pagerduty_routing_key": "R0UTINGKEY000000000000000000000a", "slack_webhook_url": "https://hooks.slack.example/T/B/x"})
    plan = plan_demo(base, duration_s=None, run_id="r8", workdir=tmp_path / "b")
    cfg = load_config(plan.settings, environ={})
    (receiver,) = cfg.receivers
    assert [iid for iid, _ in receiver.integrations()] == ["pagerduty/0", "slack/0", "console/0"]
    assert cfg.route.receiver == receiver.name
    # The secrets stay in the settings (the environment), never in the generated file.
    text = plan.settings.alerting.config_file.read_text()
    assert "R0UTINGKEY" not in text and "hooks.slack" not in text


def test_an_accelerated_demos_worker_keeps_the_simulated_time_of_the_runs_last_scrape(tmp_path: Path) -> None:
    # At 15x the simulated clock is 14 x the elapsed wall time ahead; with the default skew bound (2 min)
    # the worker restamped the scrapes to "received + 2 min", and no anomaly matched an incident's window.
    from datetime import timedelta

    from streams._state import bounded_time

    plan = plan_demo(load_settings(), duration_s=300, run_id="r7", workdir=tmp_path, speed=15.0)
    skew = plan.settings.streams.max_clock_skew_s
    env = Children(plan, environ={}).env
    assert load_settings(streams={"max_clock_skew_s": env["KUBEPULSE_STREAMS__MAX_CLOCK_SKEW_S"]}).streams.max_clock_skew_s == skew
    start = plan.wall_start
    last = start + timedelta(seconds=300 * 15.0)  # the last scrape's own (simulated) time
    received = (start + timedelta(seconds=300)).timestamp()  # when Kafka got it
    assert bounded_time(last, received=received, max_skew_s=skew) == last
    # A scrape from a node whose clock is off by more than the user's bound is still restamped:
    # the allowance is the simulation's lead, not "anything goes".
    assert bounded_time(last + timedelta(hours=1), received=received, max_skew_s=skew) < last + timedelta(hours=1)
    real = plan_demo(load_settings(clusters=[{"name": "prod", "context": "prod"}]), duration_s=300, run_id="r8",
                     workdir=tmp_path)
    assert real.settings.streams.max_clock_skew_s == load_settings().streams.max_clock_skew_s
