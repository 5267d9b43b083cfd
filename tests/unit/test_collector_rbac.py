"""REQUIRED_RULES is derived from the API calls, and access errors name the rule to add."""

from __future__ import annotations

from collectors.rbac import CALLS, NODE_SUMMARY, REQUIRED_RULES, WATCH_EVENTS, access_message, covers


def test_required_rules_cover_every_declared_call_with_one_rule_per_resource() -> None:
    for call in CALLS:
        assert covers(REQUIRED_RULES, verb=call.verb, group=call.group, resource=call.resource), call
    keys = [(r["apiGroups"][0], r["resources"][0]) for r in REQUIRED_RULES]
    assert len(keys) == len(set(keys))
    assert {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]} in REQUIRED_RULES
    assert {"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]} in REQUIRED_RULES


def test_required_rules_grant_nothing_that_writes() -> None:
    assert {v for r in REQUIRED_RULES for v in r["verbs"]} <= {"get", "list", "watch"}


def test_forbidden_message_names_verb_resource_group_and_the_rule_to_paste() -> None:
    msg = access_message(WATCH_EVENTS, cluster="prod", status=403, server_message="events is forbidden")
    assert msg.startswith("cluster prod: 403 Forbidden: the collector may not watch events in the core API group")
    assert '{apiGroups: [""], resources: ["events"], verbs: ["watch"]}' in msg
    assert msg.endswith("(API server said: events is forbidden)")


def test_unauthorized_message_points_at_the_credentials_not_at_rbac() -> None:
    msg = access_message(NODE_SUMMARY, cluster="prod", status=401)
    assert "401 Unauthorized" in msg and "kubeconfig" in msg and "ClusterRole" not in msg


def test_covers_honours_wildcards_and_rejects_other_groups() -> None:
    assert covers([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}], verb="get", group="apps", resource="x")
    assert not covers(REQUIRED_RULES, verb="list", group="apps", resource="deployments")
    assert not covers(REQUIRED_RULES, verb="get", group="metrics.k8s.io", resource="nodes")
