"""The alert dispatcher through the real Kafka: alerts topic in, notifiers and the notifications topic out."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from models.codec import decode
from models.records import DeadLetter, Notification
from models.settings import Settings
from streams.alerting import config_from_dict, list_silences, run_dispatcher
from streams.topics import ALERTS, DEADLETTER, NOTIFICATIONS
from tests.fakes import Scripted
from tests.fakes.alerts import alert, resolved
from tests.fakes.fixtures import ROUTING_KEY, hook, pd, tls_ca  # noqa: F401 - fixtures
from tests.fakes.pagerduty import FakePagerDuty
from tests.kafkautil import consume, create_topics, produce

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _config(pd: FakePagerDuty, **extra: Any) -> dict[str, Any]:
    return {
        "route": {
            "receiver": "pager", "group_by": ["..."], "group_wait": 0, "group_interval": 0.2, "repeat_interval": "4h",
            **extra,
        },
        "receivers": [
            {"name": "pager", "retry": {"initial_backoff": 0.01, "timeout": 15},  # generous: the machine is shared
             "pagerduty_configs": [{"routing_key": ROUTING_KEY, "url": pd.url, "ca_file": str(pd.ca_file)}]},
        ],
    }


@pytest.fixture
async def dispatchers(stack: dict[str, str], settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    """``start(config_dict)`` runs a dispatcher on the test's topics; returns its stop function."""
    await create_topics(settings, [ALERTS.named(settings.kafka.topic_prefix)])
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(config: dict[str, Any], **kw: Any) -> Callable[[], Any]:
        stop, ready = asyncio.Event(), asyncio.Event()
        cfg = config_from_dict(config, settings=settings, environ={})
        task = asyncio.create_task(run_dispatcher(settings, config=cfg, stop=stop, ready=ready, **kw))
        running.append((stop, task))
        done, _ = await asyncio.wait([task, asyncio.create_task(ready.wait())], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raise what made it stop
        assert ready.is_set(), "dispatcher did not join its group in 30 s"

        async def stop_it() -> None:
            stop.set()
            await asyncio.wait_for(task, 30)

        stop_it.task = task  # type: ignore[attr-defined]  # a test can check the dispatcher still runs
        return stop_it

    yield start
    for stop, task in running:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)


async def test_alert_on_the_topic_reaches_pagerduty_and_every_attempt_is_in_the_notifications_topic(settings, pd, dispatchers):
    prefix = settings.kafka.topic_prefix
    await dispatchers(_config(pd))
    a = alert(severity="critical")
    await produce(settings, ALERTS.named(prefix), [(a.key, a), ("garbage", b'{"not": "an alert"}')])
    await pd.wait_for(lambda: len(pd.events) == 1, timeout=20)
    await produce(settings, ALERTS.named(prefix), [(a.key, resolved(a))])
    await pd.wait_for(lambda: len(pd.events) == 2, timeout=20)

    assert [(e["event_action"], e["dedup_key"]) for e in pd.events] == [("trigger", a.fingerprint), ("resolve", a.fingerprint)]
    logged = [decode(Notification, v) for _, v in await consume(settings, NOTIFICATIONS.named(prefix), count=2, timeout=20)]
    assert [(n.status, n.outcome, n.integration, n.fingerprints) for n in logged] == [
        ("firing", "sent", "pagerduty", [a.fingerprint]),
        ("resolved", "sent", "pagerduty", [a.fingerprint]),
    ]
    dead = [decode(DeadLetter, v) for _, v in await consume(settings, DEADLETTER.named(prefix), count=1, timeout=20)]
    assert len(dead) == 1 and dead[0].stage == "decode" and dead[0].key == "garbage"
    assert "fingerprint" in dead[0].reason


async def test_a_restarted_dispatcher_sends_what_was_pending_and_never_resends_what_was_delivered(settings, pd, dispatchers):
    prefix = settings.kafka.topic_prefix
    # Info alerts wait 4 s before their first notification: long enough to stop the first dispatcher meanwhile.
    config = _config(pd, routes=[{"matchers": ['severity="info"'], "group_wait": 4}])
    stop_first = await dispatchers(config)
    delivered, pending = alert("Delivered", severity="critical"), alert("Pending", severity="info")
    await produce(settings, ALERTS.named(prefix), [(delivered.key, delivered), (pending.key, pending)])
    await pd.wait_for(lambda: len(pd.events) == 1, timeout=20)
    await stop_first()
    assert [e["dedup_key"] for e in pd.events] == [delivered.fingerprint]

    await dispatchers(config)
    await pd.wait_for(lambda: len(pd.events) == 2, timeout=20)
    await produce(settings, ALERTS.named(prefix), [(delivered.key, resolved(delivered))])
    await pd.wait_for(lambda: len(pd.events) == 3, timeout=20)
    assert [(e["event_action"], e["dedup_key"]) for e in pd.events] == [
        ("trigger", delivered.fingerprint),
        ("trigger", pending.fingerprint),
        ("resolve", delivered.fingerprint),
    ]
    assert pd.rejected == []


async def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    """Run the real ``kubepulse`` command (a subprocess: the CLI calls asyncio.run) on the test's topics."""
    env = {**os.environ, "KUBEPULSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepulse.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_a_silence_added_with_the_cli_mutes_its_alerts_until_expired_with_the_cli(settings, pd, dispatchers):
    prefix = settings.kafka.topic_prefix
    code, out = await _cli(settings, "silence", "add", 'namespace="shop"', "--duration", "2h", "--comment", "deploy")
    assert code == 0, out
    silence_id = out.strip().splitlines()[-1]
    code, listed = await _cli(settings, "silence", "list")
    assert silence_id in listed and 'namespace="shop"' in listed and "# deploy" in listed

    await dispatchers(_config(pd))
    muted, other = alert(namespace="shop", severity="critical"), alert(namespace="search", severity="critical")
    await produce(settings, ALERTS.named(prefix), [(muted.key, muted), (other.key, other)])
    await pd.wait_for(lambda: len(pd.events) == 1, timeout=20)
    logged = [decode(Notification, v) for _, v in await consume(settings, NOTIFICATIONS.named(prefix), count=2, timeout=20)]
    assert {(n.outcome, tuple(n.fingerprints)) for n in logged} == {("sent", (other.fingerprint,)), ("suppressed", (muted.fingerprint,))}

    code, out = await _cli(settings, "silence", "expire", silence_id[:8])
    assert code == 0 and out.strip() == f"expired {silence_id}", out
    await pd.wait_for(lambda: len(pd.events) == 2, timeout=20)
    assert pd.events[1]["dedup_key"] == muted.fingerprint
    (s,) = await list_silences(settings)
    assert s.ends_at <= datetime.now(UTC)
    assert json.dumps(pd.events).count(muted.fingerprint) == 1


async def test_an_alert_whose_labels_make_a_group_key_longer_than_a_name_is_paged_and_the_dispatcher_keeps_running(
    settings, pd, dispatchers
):
    """The default route groups by every label: a container alert's label set passes 253 characters."""
    prefix = settings.kafka.topic_prefix
    task = (await dispatchers(_config(pd))).task
    long_labels = {f"label_{i:03d}": f"value-{i:03d}-" + "x" * 40 for i in range(200)}
    wide, short = alert("ContainerMemoryHigh", severity="critical", **long_labels), alert("After", severity="critical")
    await produce(settings, ALERTS.named(prefix), [(wide.key, wide)])
    await produce(settings, ALERTS.named(prefix), [(short.key, short)])
    await pd.wait_for(lambda: len(pd.events) == 2, timeout=20)
    # the two alerts sit on different partitions: their pages may arrive in either order
    assert sorted(e["dedup_key"] for e in pd.events) == sorted([wide.fingerprint, short.fingerprint])
    assert pd.rejected == []
    (wide_page,) = [e for e in pd.events if e["dedup_key"] == wide.fingerprint]
    details = wide_page["payload"]["custom_details"]
    assert details["labels"] == wide.labels
    assert len(details["group_key"]) == 253 and details["group_key"].startswith('{}:{alertname="ContainerMemoryHigh"')
    assert not task.done(), "the dispatcher stopped"

    await produce(settings, ALERTS.named(prefix), [(wide.key, resolved(wide))])
    await pd.wait_for(lambda: len(pd.events) == 3, timeout=20)
    assert (pd.events[2]["event_action"], pd.events[2]["dedup_key"]) == ("resolve", wide.fingerprint)
    assert not task.done(), "the dispatcher stopped"


def _commit_failures() -> float:
    return _metric("kubepulse_alerting_commit_failures_total", error="CommitFailedError")


async def _kick_out_of_group(settings: Settings, group: str) -> int:
    """Make the broker forget every member of ``group`` (a LeaveGroup on their behalf), as a session timeout would.

    The members are still running and learn it at their next heartbeat or commit: the
    generation they hold is gone, so a commit in between fails with CommitFailedError.
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.group import LeaveGroupRequest

    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        node = await admin.find_coordinator(group)
        (described,) = await admin.describe_consumer_groups([group], group_coordinator_id=node)
        members = [m[0] for g in described.groups for m in g[5]]
        for member_id in members:
            await admin._send_request_to_node(node, LeaveGroupRequest(group, member_id))  # noqa: SLF001 - no public call
        return len(members)
    finally:
        await admin.close()


async def test_a_commit_that_fails_after_a_rebalance_is_survived_and_nothing_is_paged_twice_or_lost(settings, pd, dispatchers):
    prefix = settings.kafka.topic_prefix
    task = (await dispatchers(_config(pd))).task
    before = _commit_failures()
    sent = []
    for attempt in range(5):  # the owner's heartbeat (every 3 s) may notice the kick before a commit does
        assert await _kick_out_of_group(settings, f"{settings.kafka.consumer_group}.alerting") == 1
        a = alert(f"AfterKick{attempt}", severity="critical")
        sent.append(a)
        await produce(settings, ALERTS.named(prefix), [(a.key, a)])
        await pd.wait_for(lambda: len(pd.events) == len(sent), timeout=30)
        if _commit_failures() > before:
            break
    assert _commit_failures() > before, "no commit failed: the test did not provoke what it is about"
    assert not task.done(), "the dispatcher stopped"
    # The owner rejoins, reloads its groups and replays the uncommitted batch: nothing is paged again.
    last = alert("AfterRejoin", severity="critical")
    await produce(settings, ALERTS.named(prefix), [(last.key, last)])
    await pd.wait_for(lambda: any(e["dedup_key"] == last.fingerprint for e in pd.events), timeout=30)
    await produce(settings, ALERTS.named(prefix), [(sent[-1].key, resolved(sent[-1]))])
    await pd.wait_for(lambda: any(e["event_action"] == "resolve" for e in pd.events), timeout=30)
    assert [(e["event_action"], e["dedup_key"]) for e in pd.events] == [
        *(("trigger", a.fingerprint) for a in [*sent, last]), ("resolve", sent[-1].fingerprint)
    ]
    assert pd.rejected == []
    assert not task.done(), "the dispatcher stopped"


OTHER_KEY = "kpfedcba9876543210fedcba98765432"


async def test_after_a_routing_change_a_paged_alert_is_resolved_in_its_new_group_and_not_paged_again(settings, pd, dispatchers):
    prefix = settings.kafka.topic_prefix
    stop = await dispatchers(_config(pd, group_by=["alertname"]))
    a = alert("PodMemoryHigh", severity="critical")
    await produce(settings, ALERTS.named(prefix), [(a.key, a)])
    await pd.wait_for(lambda: len(pd.events) == 1, timeout=20)
    await stop()

    # Restarted with another grouping: the stored group {alertname=...} is made by no route any more.
    await dispatchers(_config(pd, group_by=["cluster", "namespace"]))
    other = alert("Other", severity="critical")
    await produce(settings, ALERTS.named(prefix), [(other.key, other), (a.key, resolved(a))])
    await pd.wait_for(lambda: len(pd.events) == 3, timeout=20)
    await asyncio.sleep(0.5)  # several group_intervals: a wrong re-page would have come
    assert sorted((e["event_action"], e["dedup_key"]) for e in pd.events) == sorted([
        ("trigger", a.fingerprint), ("trigger", other.fingerprint), ("resolve", a.fingerprint),
    ])
    assert pd.rejected == []


async def test_after_a_routing_change_to_another_receiver_the_paged_one_still_gets_the_resolve(settings, pd, dispatchers):
    prefix = settings.kafka.topic_prefix
    stop = await dispatchers(_config(pd))
    a = alert("PodMemoryHigh", severity="critical")
    await produce(settings, ALERTS.named(prefix), [(a.key, a)])
    await pd.wait_for(lambda: len(pd.events) == 1, timeout=20)
    await stop()

    config = _config(pd, receiver="oncall")
    config["receivers"].append({**config["receivers"][0], "name": "oncall", "pagerduty_configs": [
        {"routing_key": OTHER_KEY, "url": pd.url, "ca_file": str(pd.ca_file)}]})
    await dispatchers(config)
    # The new receiver hears of the firing alert once; the resolve then reaches both.
    await pd.wait_for(lambda: len(pd.events) == 2, timeout=20)
    await produce(settings, ALERTS.named(prefix), [(a.key, resolved(a))])
    await pd.wait_for(lambda: len(pd.events) == 4, timeout=20)
    await asyncio.sleep(0.5)
    seen = [(e["routing_key"], e["event_action"], e["dedup_key"]) for e in pd.events]
    assert seen[:2] == [(ROUTING_KEY, "trigger", a.fingerprint), (OTHER_KEY, "trigger", a.fingerprint)]
    assert sorted(seen[2:]) == sorted([(ROUTING_KEY, "resolve", a.fingerprint), (OTHER_KEY, "resolve", a.fingerprint)])
    assert pd.rejected == []


async def test_a_silence_with_a_bad_matcher_is_dead_lettered_with_the_reason_whether_read_at_start_or_followed(
    settings, pd, dispatchers
):
    from streams.alerting import new_silence
    from streams.topics import SILENCES

    prefix = settings.kafka.topic_prefix
    await create_topics(settings, [SILENCES.named(prefix)])

    def bad(matcher: str):
        good = new_silence(['namespace="shop"'], duration_s=3600, created_by="ops")
        return good.model_copy(update={"matchers": [matcher]})  # as a tool other than our CLI might write it

    at_start, followed = bad('namespace~"shop"'), bad("severity")
    await produce(settings, SILENCES.named(prefix), [(at_start.key, at_start)])
    task = (await dispatchers(_config(pd))).task
    await produce(settings, SILENCES.named(prefix), [(followed.key, followed)])
    dead = [decode(DeadLetter, v) for _, v in await consume(settings, DEADLETTER.named(prefix), count=2, timeout=20)]
    assert sorted((d.stage, d.key) for d in dead) == sorted([("silence", at_start.silence_id), ("silence", followed.silence_id)])
    by_key = {d.key: d for d in dead}
    assert "'namespace~\"shop\"' is not a matcher" in by_key[at_start.silence_id].reason
    assert "'severity' is not a matcher" in by_key[followed.silence_id].reason
    assert by_key[followed.silence_id].offset is not None
    assert json.loads(by_key[at_start.silence_id].payload)["matchers"] == ['namespace~"shop"']
    # It mutes nothing, and the dispatcher goes on.
    a = alert(namespace="shop", severity="critical")
    await produce(settings, ALERTS.named(prefix), [(a.key, a)])
    await pd.wait_for(lambda: len(pd.events) == 1, timeout=20)
    assert not task.done()


async def _topic_refusing_records_over(settings: Settings, name: str, max_bytes: int, **configs: str) -> None:
    """Create ``name`` with a tiny ``max.message.bytes``: the broker refuses bigger records (a real write error)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs={"max.message.bytes": str(max_bytes), **configs})])
    finally:
        await admin.close()


async def _set_topic_configs(settings: Settings, name: str, **configs: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)])
    finally:
        await admin.close()


async def _committed(settings: Settings, group: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(o.offset for o in offsets.values() if o.offset > 0)
    finally:
        await admin.close()


async def _until(predicate: Callable[[], bool], *, timeout: float) -> None:
    """Poll ``predicate`` (state of this process, which no fake server request announces)."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


def _metric(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def test_a_kafka_error_after_one_integrations_2xx_does_not_resend_to_it_what_it_confirmed(settings, hook, dispatchers):
    prefix = settings.kafka.topic_prefix
    # The second integration is refused (400: wrong token), so its notification is dead-lettered,
    # and the dead-letter topic refuses the record: a Kafka error after the first one's 200.
    await _topic_refusing_records_over(settings, DEADLETTER.named(prefix), 200)
    await dispatchers({
        "route": {"receiver": "team", "group_by": ["..."], "group_wait": 0, "group_interval": 0.2, "repeat_interval": "4h"},
        "receivers": [{"name": "team", "retry": {"initial_backoff": 0.01, "timeout": 15},
                       "webhook_configs": [{"url": hook.hook_url}, {"url": f"{hook.url}/hook/wrong-token"}]}],
    })
    a = alert(severity="critical")
    await produce(settings, ALERTS.named(prefix), [(a.key, a)])
    # The failing integration is tried again at every tick (its dead letter was never written) ...
    await hook.wait_for(lambda: len(hook.rejected) >= 4, timeout=30)
    # ... and the one that answered 200 got the notification once.
    assert [b["alerts"][0]["fingerprint"] for b in hook.bodies] == [a.fingerprint]


async def test_while_the_state_topic_refuses_writes_the_dispatcher_is_not_ready_commits_nothing_and_recovers(
    settings, pd, dispatchers
):
    from streams.alerting._metrics import DispatcherHealth
    from streams.topics import ALERT_GROUPS

    prefix = settings.kafka.topic_prefix
    groups_topic, group = ALERT_GROUPS.named(prefix), f"{settings.kafka.consumer_group}.alerting"
    await _topic_refusing_records_over(settings, groups_topic, 200, **{"cleanup.policy": "compact"})
    health = DispatcherHealth()
    task = (await dispatchers(_config(pd), health=health)).task
    assert health.ready()
    before = _metric("kubepulse_alerting_write_failures_total", error="MessageSizeTooLargeError")
    a = alert(severity="critical")
    await produce(settings, ALERTS.named(prefix), [(a.key, a)])
    await _until(lambda: health.writes_failing_since is not None, timeout=20)
    assert not health.ready() and "Kafka writes failing" in (health.reason() or "")
    assert _metric("kubepulse_alerting_writes_failing") == 1
    assert _metric("kubepulse_alerting_write_failures_total", error="MessageSizeTooLargeError") > before
    assert await _committed(settings, group) == 0  # the alert is not acked before its state is written
    assert pd.events == [] and not task.done()

    await _set_topic_configs(settings, groups_topic, **{"cleanup.policy": "compact", "max.message.bytes": "1048588"})
    await pd.wait_for(lambda: len(pd.events) == 1, timeout=30)
    assert pd.events[0]["dedup_key"] == a.fingerprint
    await _until(health.ready, timeout=20)
    assert _metric("kubepulse_alerting_writes_failing") == 0
    assert await _committed(settings, group) == 1


async def test_a_receiver_that_keeps_failing_makes_the_dispatcher_not_ready_until_it_delivers_again(settings, pd, dispatchers):
    from streams.alerting._metrics import DispatcherHealth

    prefix = settings.kafka.topic_prefix
    health = DispatcherHealth()
    config = _config(pd)
    config["receivers"][0]["retry"] = {"initial_backoff": 0.01, "max_attempts": 2, "timeout": 15}
    await dispatchers(config, health=health)
    labels = {"receiver": "pager", "integration": "pagerduty/0"}
    lost_before = _metric("kubepulse_alerting_deliveries_total", **labels, outcome="dead_lettered")
    pd.fail_next(Scripted(500), Scripted(500))
    first = alert("First", severity="critical")
    await produce(settings, ALERTS.named(prefix), [(first.key, first)])
    await _until(lambda: not health.ready(), timeout=20)
    assert health.reason() == "receiver pager (pagerduty/0) is failing"
    assert _metric("kubepulse_alerting_receiver_failing", **labels) == 1
    assert _metric("kubepulse_alerting_deliveries_total", **labels, outcome="dead_lettered") == lost_before + 1
    assert pd.events == []

    second = alert("Second", severity="critical")
    await produce(settings, ALERTS.named(prefix), [(second.key, second)])
    await pd.wait_for(lambda: len(pd.events) == 1, timeout=20)
    await _until(health.ready, timeout=20)
    assert pd.events[0]["dedup_key"] == second.fingerprint
    assert _metric("kubepulse_alerting_receiver_failing", **labels) == 0


async def test_an_alert_that_would_make_its_group_state_too_large_for_kafka_is_dead_lettered_and_the_rest_paged(
    settings, pd, dispatchers
):
    prefix = settings.kafka.topic_prefix
    task = (await dispatchers(_config(pd, group_by=["alertname"]))).task
    big = "x" * 120_000  # 7 such alerts fit in one group state of 900 KiB, 8 do not
    wide = [alert("Verbose", severity="critical", pod=f"p-{i}") for i in range(9)]
    for a in wide:
        a.annotations["description"] = big
    await produce(settings, ALERTS.named(prefix), [(a.key, a) for a in wide])
    dead = [decode(DeadLetter, v) for _, v in await consume(settings, DEADLETTER.named(prefix), count=2, timeout=30)]
    assert [(d.stage, d.error_type) for d in dead] == [("dispatch", "StateTooLargeError")] * 2
    assert "larger than 921600 bytes" in dead[0].reason and json.loads(dead[0].payload)["annotations"]["description"] == big
    await pd.wait_for(lambda: len(pd.events) == 7, timeout=30)
    # Which two are refused depends on the partitions' order; each alert is either paged or dead-lettered.
    paged = {e["dedup_key"] for e in pd.events}
    assert len(paged) == 7 and paged | {d.key for d in dead} == {a.fingerprint for a in wide}
    other = alert("Other", severity="critical")
    await produce(settings, ALERTS.named(prefix), [(other.key, other)])
    await pd.wait_for(lambda: len(pd.events) == 8, timeout=30)
    assert pd.events[-1]["dedup_key"] == other.fingerprint and not task.done()
