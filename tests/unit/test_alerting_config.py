"""The alerting config: Alertmanager's route tree, matchers, durations, receivers and secret references."""

from __future__ import annotations

import pytest

from models.settings import load_settings
from streams.alerting import AlertingConfigError, Router, config_from_dict, load_config
from streams.alerting._matchers import parse_matcher
from streams.alerting.config import parse_duration

TREE = {
    "route": {
        "receiver": "slack",
        "group_by": ["alertname", "namespace"],
        "group_wait": "30s",
        "routes": [
            {"matchers": ['severity="critical"'], "receiver": "pager", "group_wait": "10s", "continue": True},
            {"matchers": ['namespace=~"prod-.*"'], "receiver": "prod", "group_by": ["..."],
             "routes": [{"matchers": ['team="db"'], "receiver": "db"}]},
        ],
    },
    "receivers": [
        {"name": "slack", "console_configs": [{}]},
        {"name": "pager", "console_configs": [{}]},
        {"name": "prod", "console_configs": [{}]},
        {"name": "db", "console_configs": [{}]},
    ],
}


def test_matchers_follow_alertmanager_semantics():
    assert parse_matcher('namespace=~"prod-.*"').matches({"namespace": "prod-eu"})
    assert not parse_matcher('namespace=~"prod"').matches({"namespace": "prod-eu"})  # anchored
    assert parse_matcher('team!~"db|web"').matches({})  # a missing label is ""
    assert parse_matcher('msg="say \\"hi\\""').value == 'say "hi"'
    with pytest.raises(AlertingConfigError, match="invalid regex"):
        parse_matcher('x=~"("')


def test_durations_take_alertmanager_forms_and_plain_seconds():
    assert [parse_duration(v) for v in ("30s", "5m", "4h", "1h30m", "1d", "250ms", 0.2, "1m1.5s")] == [30, 300, 14400, 5400, 86400, 0.25, 0.2, 61.5]
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_route_tree_continues_after_critical_and_descends_into_nested_routes():
    router = Router(config_from_dict(TREE, settings=load_settings(), environ={}))
    critical_prod_db = router.match({"alertname": "X", "severity": "critical", "namespace": "prod-eu", "team": "db"})
    assert [(m.receiver, m.group_wait) for m in critical_prod_db] == [("pager", 10.0), ("db", 30.0)]
    assert critical_prod_db[1].group_labels == {"alertname": "X", "severity": "critical", "namespace": "prod-eu", "team": "db"}
    (plain,) = router.match({"alertname": "X", "namespace": "dev", "pod": "p"})
    assert (plain.receiver, plain.group_key) == ("slack", '{}:{alertname="X", namespace="dev"}')
    assert plain.group_interval == 300 and plain.repeat_interval == 4 * 3600  # Alertmanager's defaults


def test_a_route_to_an_unknown_receiver_is_rejected_with_its_path():
    bad = {**TREE, "receivers": TREE["receivers"][:3]}
    with pytest.raises(AlertingConfigError, match=r"route.routes\[1\].routes\[0\]: receiver 'db' is not defined"):
        config_from_dict(bad, settings=load_settings(), environ={})


def test_secrets_come_from_env_references_files_or_settings_and_never_print(tmp_path):
    (tmp_path / "hook").write_text("https://hooks.example/T/B/secret-from-file\n")
    settings = load_settings(alerting={"pagerduty_routing_key": "k" * 32, "slack_token": "xoxb-from-settings", "slack_channel": "#ops"})
    cfg = config_from_dict(
        {
            "route": {"receiver": "r"},
            "receivers": [{"name": "r", "pagerduty_configs": [{}], "slack_configs": [{}],
                           "webhook_configs": [{"url_env": "HOOK_URL"}, {"url_file": str(tmp_path / "hook")}]}],
        },
        settings=settings,
        environ={"HOOK_URL": "https://hooks.example/secret-from-env"},
    )
    r = cfg.receiver("r")
    assert r.pagerduty_configs[0].routing_key.get_secret_value() == "k" * 32
    assert (r.slack_configs[0].mode, r.slack_configs[0].channel) == ("token", "#ops")
    assert [w.url.get_secret_value() for w in r.webhook_configs] == [
        "https://hooks.example/secret-from-env", "https://hooks.example/T/B/secret-from-file"]
    assert "secret-from" not in repr(cfg) and "xoxb" not in repr(cfg)
    assert set(cfg.secrets()) >= {"k" * 32, "xoxb-from-settings", "https://hooks.example/secret-from-env"}
    with pytest.raises(AlertingConfigError, match="environment variable HOOK_URL is not set"):
        config_from_dict({"route": {"receiver": "r"}, "receivers": [{"name": "r", "webhook_configs": [{"url_env": "HOOK_URL"}]}]},
                         settings=settings, environ={})


def test_pagerduty_without_any_routing_key_names_the_setting_to_use():
    with pytest.raises(AlertingConfigError, match="KUBEPULSE_ALERTING__PAGERDUTY_ROUTING_KEY"):
        config_from_dict({"route": {"receiver": "r"}, "receivers": [{"name": "r", "pagerduty_configs": [{}]}]},
                         settings=load_settings(), environ={})


def test_yaml_file_is_loaded_and_a_broken_one_names_the_field(tmp_path):
    good = tmp_path / "alerting.yaml"
    good.write_text("route: {receiver: c, group_wait: 1s}\nreceivers: [{name: c, console_configs: [{}]}]\n")
    assert load_config(load_settings(alerting={"config_file": good}), environ={}).route.group_wait == 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("route: {receiver: c, group_wait: soon}\nreceivers: [{name: c}]\n")
    with pytest.raises(AlertingConfigError, match="route.group_wait"):
        load_config(load_settings(), path=bad, environ={})
