"""The alert dispatcher against fake PagerDuty/Slack/webhook receivers, with durations in fractions of a second."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import pytest

from streams.alerting import new_silence
from tests.fakes import Scripted
from tests.fakes.alerts import T0, alert, pod_event, resolved
from tests.fakes.fixtures import ROUTING_KEY, hook, make_dispatcher, pd, slack, tls_ca  # noqa: F401 - fixtures

# The fakes are fixtures on the session loop: the tests must run on it too.
pytestmark = pytest.mark.asyncio(loop_scope="session")

FAST = {"group_wait": 0.05, "group_interval": 0.05, "repeat_interval": "4h"}
FAST_RETRY = {"initial_backoff": 0.01, "max_backoff": 0.05, "timeout": 0.5}


def pd_config(pd, **route) -> dict:
    return {
        "global": {"kibana_url": "http://kibana.example:5601"},
        "route": {"receiver": "pager", "group_by": ["..."], **FAST, **route},
        "receivers": [
            {"name": "pager", "retry": FAST_RETRY, "pagerduty_configs": [{"routing_key": ROUTING_KEY, "url": pd.url, "ca_file": str(pd.ca_file)}]}
        ],
    }


def slack_config(slack, **route) -> dict:
    return {
        "route": {"receiver": "chat", **FAST, **route},
        "receivers": [{"name": "chat", "retry": FAST_RETRY, "slack_configs": [{"api_url": slack.webhook_url}]}],
    }


async def test_firing_then_resolved_sends_pagerduty_trigger_then_resolve_with_same_dedup_key(pd, make_dispatcher):
    d = make_dispatcher(pd_config(pd))
    a = alert("PodMemoryHigh", severity="critical", container="app")
    await d.ingest([a])
    await pd.wait_for(lambda: len(pd.events) == 1)
    await d.ingest([resolved(a)])
    await pd.wait_for(lambda: len(pd.events) == 2)

    assert pd.rejected == []
    trigger, resolve = pd.events
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == a.fingerprint
    assert trigger["routing_key"] == ROUTING_KEY
    p = trigger["payload"]
    assert p["severity"] == "critical"
    assert p["summary"] == "PodMemoryHigh on cart-7d9f-abcde"
    assert (p["source"], p["component"], p["group"], p["class"]) == ("cart-7d9f-abcde", "app", "eu-1/shop", "PodMemoryHigh")
    assert p["custom_details"]["value"] == 0.93 and p["custom_details"]["threshold"] == 0.9
    assert p["custom_details"]["labels"]["workload"] == "cart"
    hrefs = [link["href"] for link in trigger["links"]]
    assert hrefs[0].startswith("http://kibana.example:5601/app/dashboards#/view/kubepulse-overview")
    assert "kubernetes.pod.name" in hrefs[1] and "cart-7d9f-abcde" in hrefs[1]
    assert set(resolve) == {"routing_key", "event_action", "dedup_key"}
    await d.wait_idle()
    sent = [n for n in d.sink.notifications if n.outcome == "sent"]
    assert [(n.status, n.fingerprints) for n in sent] == [("firing", [a.fingerprint]), ("resolved", [a.fingerprint])]
    assert d.groups == {}  # a finished group is forgotten


async def test_an_alert_that_fires_and_resolves_before_its_first_page_is_still_paged_then_closed(pd, make_dispatcher):
    """Within group_wait (or a receiver outage, or a worker's catch-up) Alertmanager would page nothing."""
    d = make_dispatcher(pd_config(pd, group_wait=0.3))
    a = alert("PodMemoryHigh", severity="critical", container="app")
    await d.ingest([a])
    await d.ingest([resolved(a)])
    await pd.wait_for(lambda: len(pd.events) == 2)
    await d.wait_idle()

    assert pd.rejected == []
    trigger, resolve = pd.events
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == a.fingerprint
    assert trigger["payload"]["summary"] == "PodMemoryHigh on cart-7d9f-abcde"
    sent = [n for n in d.sink.notifications if n.outcome == "sent"]
    assert [(n.status, n.fingerprints) for n in sent] == [("resolved", [a.fingerprint])]
    assert d.groups == {}  # delivered, then forgotten: it is not paged twice
    assert len(pd.events) == 2


async def test_an_alert_that_fires_and_resolves_under_a_silence_is_reported_suppressed_not_paged(hook, make_dispatcher):
    d = make_dispatcher(
        {
            "route": {"receiver": "hook", "group_by": ["..."], **FAST, "group_wait": 0.3},
            "receivers": [{"name": "hook", "retry": FAST_RETRY, "webhook_configs": [{"url": hook.hook_url}]}],
        },
        clock=lambda: T0,
    )
    d.add_silence(new_silence(['alertname="PodMemoryHigh"'], duration_s=3600, created_by="ops", now=T0))
    muted, other = alert("PodMemoryHigh", namespace="shop"), alert("PodCPUHigh", namespace="shop")
    await d.ingest([muted, other])
    await d.ingest([resolved(muted), resolved(other)])
    await hook.wait_for(lambda: len(hook.bodies) == 1)
    await d.wait_idle()
    assert [[x["fingerprint"] for x in b["alerts"]] for b in hook.bodies] == [[other.fingerprint]]
    assert hook.bodies[0]["status"] == "resolved"
    assert [n.fingerprints for n in d.sink.notifications if n.outcome == "suppressed"] == [[muted.fingerprint]]
    assert d.groups == {}


async def test_twenty_pods_of_one_workload_make_one_slack_notification(slack, make_dispatcher):
    d = make_dispatcher(slack_config(slack, group_by=["alertname", "cluster", "namespace", "workload"], group_wait=0.2))
    pods = [alert(pod=f"cart-7d9f-{i:05d}") for i in range(20)]
    await d.ingest(pods[:10])
    await d.ingest(pods[10:])
    await slack.wait_for(lambda: len(slack.webhook_messages) >= 1)
    (key,) = d.groups
    await d.flush_group(f"chat|{key}")  # nothing changed since: must not notify again
    assert slack.rejected == []
    assert len(slack.webhook_messages) == 1
    msg = slack.webhook_messages[0]
    assert msg["blocks"][0]["text"]["text"] == "[FIRING:20] PodMemoryHigh"
    assert "workload `cart`" in msg["blocks"][1]["text"]["text"]
    assert "…and 10 more alerts" in json.dumps(msg["blocks"], ensure_ascii=False)


async def test_inhibition_mutes_pod_warnings_on_the_critical_node_and_nothing_else(hook, make_dispatcher):
    d = make_dispatcher(
        {
            "route": {"receiver": "hook", "group_by": ["..."], **FAST},
            "receivers": [{"name": "hook", "retry": FAST_RETRY, "webhook_configs": [{"url": hook.hook_url}]}],
            "inhibit_rules": [
                {"source_matchers": ['severity="critical"', 'alertname="NodeMemoryPressure"'],
                 "target_matchers": ['severity="warning"'], "equal": ["cluster", "node"]}
            ],
        }
    )
    node = alert("NodeMemoryPressure", severity="critical", pod=None, workload=None, node="n1")
    on_n1 = [alert(pod=f"a-{i}", node="n1") for i in range(2)]
    on_n2 = alert(pod="b-0", node="n2")
    critical_on_n1 = alert("PodOOMSoon", severity="critical", pod="c-0", node="n1")
    await d.ingest([node, *on_n1, on_n2, critical_on_n1])
    await hook.wait_for(lambda: len(hook.bodies) == 3)
    for key in list(d.groups):
        await d.flush_group(f"hook|{key}")

    notified = {b["alerts"][0]["fingerprint"] for b in hook.bodies}
    assert notified == {node.fingerprint, on_n2.fingerprint, critical_on_n1.fingerprint}
    suppressed = [n for n in d.sink.notifications if n.outcome == "suppressed"]
    assert sorted(fp for n in suppressed for fp in n.fingerprints) == sorted(a.fingerprint for a in on_n1)
    assert {n.error for n in suppressed} == {"inhibited"}

    # The node recovers: its pods' warnings are no longer inhibited and are notified.
    await d.ingest([resolved(node)])
    await hook.wait_for(lambda: len(hook.bodies) == 6)
    late = {b["alerts"][0]["fingerprint"] for b in hook.bodies[3:] if b["status"] == "firing"}
    assert late == {a.fingerprint for a in on_n1}
    assert hook.rejected == []


async def test_silence_mutes_matching_alerts_only_and_only_until_it_expires(hook, make_dispatcher):
    now = [T0]
    d = make_dispatcher(
        {
            "route": {"receiver": "hook", "group_by": ["..."], **FAST},
            "receivers": [{"name": "hook", "retry": FAST_RETRY, "webhook_configs": [{"url": hook.hook_url}]}],
        },
        clock=lambda: now[0],
    )
    d.add_silence(new_silence(['namespace="shop"', 'alertname=~"PodMemory.*"'], duration_s=3600, created_by="ops", now=T0))
    silenced = alert("PodMemoryHigh", namespace="shop")
    other_alert = alert("PodCPUHigh", namespace="shop")
    other_ns = alert("PodMemoryHigh", namespace="search")
    await d.ingest([silenced, other_alert, other_ns])
    await hook.wait_for(lambda: len(hook.bodies) == 2)
    for key in list(d.groups):
        await d.flush_group(f"hook|{key}")
    assert {b["alerts"][0]["fingerprint"] for b in hook.bodies} == {other_alert.fingerprint, other_ns.fingerprint}
    assert [n.fingerprints for n in d.sink.notifications if n.outcome == "suppressed"] == [[silenced.fingerprint]]

    now[0] = T0 + timedelta(hours=1, seconds=1)  # the silence has ended
    await hook.wait_for(lambda: len(hook.bodies) == 3)
    assert hook.bodies[2]["alerts"][0]["fingerprint"] == silenced.fingerprint


async def test_repeat_interval_renotifies_a_group_that_is_still_firing(pd, make_dispatcher):
    now = [T0]
    d = make_dispatcher(pd_config(pd, repeat_interval="1h"), clock=lambda: now[0])
    a = alert(severity="critical")
    await d.ingest([a])
    await pd.wait_for(lambda: len(pd.events) == 1)
    now[0] = T0 + timedelta(minutes=59)
    await d.flush_group(f"pager|{next(iter(d.groups))}")
    assert len(pd.events) == 1  # not yet
    now[0] = T0 + timedelta(hours=1, seconds=1)
    await pd.wait_for(lambda: len(pd.events) == 2)
    assert [e["event_action"] for e in pd.events] == ["trigger", "trigger"]
    assert pd.events[1]["dedup_key"] == a.fingerprint


async def test_receiver_failing_with_500_and_timeouts_then_recovering_gets_each_notification_once(pd, make_dispatcher):
    d = make_dispatcher(pd_config(pd))
    pd.fail_next(Scripted(500), Scripted(delay=1.5), Scripted(503))
    a = alert(severity="error")
    await d.ingest([a])
    await pd.wait_for(lambda: len(pd.events) == 1, timeout=15)
    await d.ingest([resolved(a)])
    await pd.wait_for(lambda: len(pd.events) == 2)
    await d.wait_idle()
    assert [e["event_action"] for e in pd.events] == ["trigger", "resolve"]
    assert pd.rejected == []
    attempts = [(n.attempt, n.outcome, n.http_status) for n in d.sink.notifications if n.status == "firing"]
    assert attempts == [(1, "retry", 500), (2, "retry", None), (3, "retry", 503), (4, "sent", None)]
    assert d.sink.dead_letters == []


async def test_a_receiver_down_for_a_while_answering_500_429_and_hangs_in_turn_gets_the_page_once_it_is_back(pd, make_dispatcher):
    config = pd_config(pd)
    config["receivers"][0]["retry"] = {**FAST_RETRY, "max_attempts": 100}  # attempts outlast the outage
    d = make_dispatcher(config)
    pd.fail_for(1.5, Scripted(500), Scripted(429, headers={"Retry-After": "0.1"}), Scripted(202, delay=0.6))
    await d.ingest([alert(severity="error")])
    await pd.wait_for(lambda: len(pd.events) == 1, timeout=15)
    await d.wait_idle()
    assert [e["event_action"] for e in pd.events] == ["trigger"]
    statuses = [r.status for r in pd.received]
    # The outage's answers came in turn (a hang is recorded as 0), then one accepted event.
    assert statuses[-1] == 202 and set(statuses[:-1]) <= {500, 429, 0} and {500, 429} <= set(statuses[:-1]), statuses
    assert d.sink.dead_letters == []


async def test_with_the_default_retry_policy_a_page_outlasts_a_minute_of_pagerduty_answering_500(pd, make_dispatcher):
    # The receiver's retry policy is the default (what a user gets); time runs 100x faster, the outage too.
    scale = 0.01
    config = pd_config(pd)
    del config["receivers"][0]["retry"]
    d = make_dispatcher(config, time_scale=scale)
    pd.fail_for(60 * scale, Scripted(500))
    await d.ingest([alert(severity="critical")])
    await pd.wait_for(lambda: len(pd.events) == 1, timeout=15)
    await d.wait_idle()
    assert [e["event_action"] for e in pd.events] == ["trigger"]
    assert d.sink.dead_letters == []
    assert [n.outcome for n in d.sink.notifications][-1] == "sent"


async def test_429_with_retry_after_is_honoured_before_retrying(slack, make_dispatcher):
    d = make_dispatcher(slack_config(slack))
    slack.fail_next(Scripted(429, headers={"Retry-After": "1"}))
    await d.ingest([alert()])
    await slack.wait_for(lambda: len(slack.webhook_messages) == 1, timeout=10)
    first, second = slack.received[0], slack.received[1]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.95
    await d.wait_idle()
    assert [(n.attempt, n.outcome, n.http_status) for n in d.sink.notifications] == [(1, "retry", 429), (2, "sent", None)]


async def test_notification_out_of_retries_is_dead_lettered_and_no_secret_reaches_logs_or_dead_letters(
    pd, slack, hook, make_dispatcher, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    for fake in (pd, slack, hook):
        fake.fail_next(*[Scripted(500)] * 3)
    d = make_dispatcher(
        {
            "route": {"receiver": "all", "group_by": ["..."], **FAST},
            "receivers": [
                {
                    "name": "all",
                    "retry": {**FAST_RETRY, "max_attempts": 3},
                    "pagerduty_configs": [{"routing_key": ROUTING_KEY, "url": pd.url, "ca_file": str(pd.ca_file)}],
                    "slack_configs": [{"api_url": slack.webhook_url}],
                    "webhook_configs": [{"url": hook.hook_url}],
                }
            ],
        }
    )
    a = alert(severity="critical")
    await d.ingest([a])
    await pd.wait_for(lambda: len(pd.received) == 3)
    await d.wait_idle()
    while len(d.sink.dead_letters) < 3:
        await d.wait_idle()

    dead = d.sink.dead_letters
    assert sorted(json.loads(x.payload)["integration"] for x in dead) == ["pagerduty/0", "slack/0", "webhook/0"]
    assert {x.stage for x in dead} == {"notify:all"}
    assert all(a.fingerprint in x.payload for x in dead)
    assert "NOTIFICATION LOST TO RETRIES" in caplog.text
    out, err = capsys.readouterr()
    secrets = [ROUTING_KEY, slack.webhook_url, "abcdefghijklmnopqrstuvwx", hook.hook_url, hook.token]
    for text in [caplog.text, out, err, *(x.model_dump_json() for x in dead), *(n.model_dump_json() for n in d.sink.notifications)]:
        for secret in secrets:
            assert secret not in text
    # Handled: the group does not retry forever after the dead letter.
    assert len(pd.received) == 3


async def test_slack_token_mode_updates_the_original_message_on_resolve_and_replies_in_its_thread(slack, make_dispatcher):
    d = make_dispatcher(
        {
            "route": {"receiver": "chat", "group_by": ["..."], **FAST},
            "receivers": [{"name": "chat", "retry": FAST_RETRY, "slack_configs": [
                {"token": slack.token, "channel": "#alerts", "base_url": slack.api_base}]}],
        }
    )
    a = alert(severity="critical")
    await d.ingest([a])
    await slack.wait_for(lambda: len(slack.calls) == 1)
    await d.ingest([resolved(a)])
    await slack.wait_for(lambda: len(slack.calls) == 3)
    assert slack.rejected == []
    (m1, b1), (m2, b2), (m3, b3) = slack.calls
    assert (m1, m2, m3) == ("chat.postMessage", "chat.update", "chat.postMessage")
    assert b1["channel"] == "#alerts" and "[FIRING:1] PodMemoryHigh" in b1["text"]
    original = next(iter(slack.messages))  # the first message posted: "C0KUBEPULSE:<ts>"
    assert f'{b2["channel"]}:{b2["ts"]}' == original
    assert "[RESOLVED] PodMemoryHigh" in b2["text"]
    assert b3["thread_ts"] == b2["ts"]


async def test_recent_kubernetes_events_of_the_pod_appear_in_the_slack_message(slack, make_dispatcher):
    d = make_dispatcher(slack_config(slack))
    d.add_event(pod_event("OOMKilled", count=3))
    d.add_event(pod_event("BackOff", count=7))
    d.add_event(pod_event("Evicted", pod="someone-else"))
    await d.ingest([alert()])
    await slack.wait_for(lambda: len(slack.webhook_messages) == 1)
    contexts = [b for b in slack.webhook_messages[0]["blocks"] if b["type"] == "context"]
    text = contexts[0]["elements"][0]["text"]
    assert "*OOMKilled* ×3" in text and "*BackOff* ×7" in text
    assert "Evicted" not in text


async def test_a_replayed_transition_is_not_notified_again(pd, make_dispatcher):
    d = make_dispatcher(pd_config(pd))
    a = alert(severity="critical")
    assert await d.ingest([a]) == 1
    await pd.wait_for(lambda: len(pd.events) == 1)
    assert await d.ingest([a]) == 0
    await d.flush_group(f"pager|{next(iter(d.groups))}")
    assert len(pd.events) == 1


async def test_rate_limit_spaces_the_notifications_of_a_receiver(hook, make_dispatcher):
    d = make_dispatcher(
        {
            "route": {"receiver": "hook", "group_by": ["..."], **FAST},
            "receivers": [{"name": "hook", "retry": FAST_RETRY, "rate_limit": {"per_second": 5, "burst": 1},
                           "webhook_configs": [{"url": hook.hook_url}]}],
        }
    )
    # Timed where the limiter releases a send, not where the fake receives it: the first
    # request also opens the connection, so receipt gaps shrink on a busy machine.
    bucket, released = d._buckets["hook"], []  # noqa: SLF001 - the limiter under test
    acquire = bucket.acquire

    async def timed_acquire() -> None:
        await acquire()
        released.append(time.monotonic())

    bucket.acquire = timed_acquire
    await d.ingest([alert(pod=f"p-{i}") for i in range(3)])
    await hook.wait_for(lambda: len(hook.bodies) == 3)
    assert len(released) == 3 and len({b["groupKey"] for b in hook.bodies}) == 3
    gaps = [b - a for a, b in zip(released, released[1:])]
    assert min(gaps) >= 0.18  # 5 per second, burst 1: one send every 0.2 s


@pytest.mark.parametrize("max_alerts, expected", [(0, 3), (2, 2)])
async def test_webhook_body_is_alertmanager_version_4(hook, make_dispatcher, max_alerts, expected):
    d = make_dispatcher(
        {
            "global": {"external_url": "http://kubepulse.example"},
            "route": {"receiver": "hook", "group_by": ["alertname", "namespace"], **FAST},
            "receivers": [{"name": "hook", "retry": FAST_RETRY, "webhook_configs": [{"url": hook.hook_url, "max_alerts": max_alerts}]}],
        }
    )
    await d.ingest([alert(pod=f"p-{i}") for i in range(3)])
    await hook.wait_for(lambda: len(hook.bodies) == 1)
    body = hook.bodies[0]
    assert hook.rejected == []
    assert body["groupKey"] == '{}:{alertname="PodMemoryHigh", namespace="shop"}'
    assert body["groupLabels"] == {"alertname": "PodMemoryHigh", "namespace": "shop"}
    assert body["commonLabels"]["workload"] == "cart" and "pod" not in body["commonLabels"]
    assert body["externalURL"] == "http://kubepulse.example"
    assert len(body["alerts"]) == expected and body["truncatedAlerts"] == 3 - expected
    assert body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"


_WIDE = {f"label_{i:03d}": f"value-{i:03d}-" + "x" * 40 for i in range(200)}


async def test_a_group_of_every_label_of_a_wide_alert_reaches_slack_and_the_webhook_with_a_bounded_group_key(
    slack, hook, make_dispatcher
):
    d = make_dispatcher({
        "route": {"receiver": "both", "group_by": ["..."], **FAST},
        "receivers": [{"name": "both", "retry": FAST_RETRY, "slack_configs": [{"api_url": slack.webhook_url}],
                       "webhook_configs": [{"url": hook.hook_url}]}],
    })
    wide = alert("ContainerMemoryHigh", container="app", **_WIDE)
    await d.ingest([wide])
    await slack.wait_for(lambda: len(slack.webhook_messages) == 1)
    await hook.wait_for(lambda: len(hook.bodies) == 1)
    assert slack.rejected == [] and hook.rejected == []
    body = hook.bodies[0]
    assert body["groupLabels"] == wide.labels  # the full label set is kept, only the key is bounded
    assert len(body["groupKey"]) == 253 and body["groupKey"].startswith('{}:{alertname="ContainerMemoryHigh", cluster="eu-1"')
    (state,) = [s for s in d.sink.states.values() if s is not None]
    assert state.group_key == body["groupKey"] and state.group_labels == wide.labels


async def test_an_alert_that_cannot_be_grouped_is_dead_lettered_and_the_rest_of_its_batch_is_dispatched(
    pd, make_dispatcher, monkeypatch
):
    d = make_dispatcher(pd_config(pd))
    match = d._router.match

    def broken_for_one(labels):
        if labels["alertname"] == "Broken":
            raise RuntimeError("a route that cannot take this label set")
        return match(labels)

    monkeypatch.setattr(d._router, "match", broken_for_one)
    bad, good = alert("Broken", severity="critical"), alert("Fine", severity="critical")
    assert await d.ingest([bad, good]) == 1
    await pd.wait_for(lambda: len(pd.events) == 1)
    assert pd.events[0]["dedup_key"] == good.fingerprint
    (dead,) = d.sink.dead_letters
    assert (dead.stage, dead.key, dead.error_type) == ("dispatch", bad.fingerprint, "RuntimeError")
    assert "a route that cannot take this label set" in dead.reason
    assert json.loads(dead.payload)["fingerprint"] == bad.fingerprint
    assert sorted(d.groups) == [m.group_key for m in match(good.labels)]


async def test_a_draining_group_of_a_former_route_is_removed_from_the_state_once_its_resolves_are_sent(pd, make_dispatcher):
    first = make_dispatcher(pd_config(pd))
    a = alert("PodMemoryHigh", severity="critical")
    await first.ingest([a])
    await pd.wait_for(lambda: len(pd.events) == 1)
    await first.wait_idle()
    (old_key,) = [k for k, v in first.sink.states.items() if v is not None]
    stored = [v for v in first.sink.states.values() if v is not None]

    config = pd_config(pd, receiver="oncall")
    config["receivers"].append({**config["receivers"][0], "name": "oncall"})
    second = make_dispatcher(config)
    await second.load(stored)
    assert second.sink.states[old_key] is not None  # kept, to resolve what "pager" was paged for
    await pd.wait_for(lambda: len(pd.events) == 2)  # "oncall" hears of the alert
    await second.ingest([resolved(a)])
    await pd.wait_for(lambda: len(pd.events) == 4)
    await second.wait_idle()
    assert [e["event_action"] for e in pd.events] == ["trigger", "trigger", "resolve", "resolve"]
    assert second.sink.states[old_key] is None
    assert second.groups == {}
