"""Reads kubepulse.alerts.v1, writes notifications: grouping, inhibition, silences, retries and the delivery log.

Also reads kubepulse.events.v1 (recent Kubernetes events per pod, shown in
notifications) and kubepulse.silences.v1, and writes kubepulse.notifications.v1
(every attempt and its outcome), kubepulse.deadletter.v1 (notifications that
ran out of retries, and undecodable alerts) and kubepulse.alertgroups.v1 (its
own state).

How a notification is never sent twice and never lost
-----------------------------------------------------

Grouping and inhibition need every alert in one place: the 20 pods of a
workload have 20 fingerprints, hence 20 partitions, and a node's critical
alert that inhibits its pods' warnings lives on yet another. So the dispatcher
is one active consumer per deployment (alerts are few; Alertmanager is one
process too): its consumer group uses an assignor that gives every partition
of kubepulse.alerts.v1 to the oldest member. The others stand by and take
over at the next rebalance when it dies.

Its state is one :class:`~models.records.AlertGroupState` per (receiver,
group): the group's alerts, and per integration what was delivered (the
transition ``sequence`` of each fingerprint sent as firing or resolved, when,
and Slack's message handle). It lives in the compacted topic
kubepulse.alertgroups.v1 and the protocol is:

1. Ingest a batch of transitions under the dispatcher's lock: drop any whose
   ``(fingerprint, sequence)`` is not newer than the one the group holds (a
   replay), write the changed group states, wait for Kafka's acknowledgement,
   and only then commit the alerts offsets. A crash before the commit replays
   the batch, which the sequence check makes harmless; a crash after it finds
   the transitions in the state topic. Nothing pending is lost.
2. A group's timer (``group_wait``, then every ``group_interval``) takes a
   snapshot under the same lock, so it only ever sees committed transitions,
   delivers outside the lock, then records what was delivered in the state
   topic. A restarted (or new) owner reads the state topic to its end before
   it consumes, and sends only what ``delivered`` lacks: what was delivered
   is not sent again.

Each integration's delivery is recorded in memory as soon as it is done,
whatever the group's other integrations do; a failed state write marks the
group unsaved and the next tick writes it again. So a Kafka error after one
integration's 2xx (another's dead letter, the state write) re-sends nothing
to it: a retry sends only what was not confirmed.

The one window left is a crash between a receiver's 2xx and the state write:
that notification is sent again (at-least-once). PagerDuty drops the repeat
by ``dedup_key``; Slack in token mode updates the same message only if the
handle was saved, so a repeat there is possible but rare (milliseconds).

Retries use exponential backoff with full jitter and honour ``Retry-After``;
after the receiver's retry budget the notification is written to the
dead-letter topic (``stage="notify:<receiver>"``, the Alertmanager-shaped
payload, never a secret), logged at ERROR, and counted as handled so the
group moves on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from models.codec import encode
from models.records import AlertGroupState, AlertTransition, DeadLetter, GroupDelivery, KubeEvent, Notification, Silence
from models.settings import Settings
from streams.alerting._delivery import Outcome, Redactor, TokenBucket, deliver
from streams.alerting._message import AlertMessage, pod_key
from streams.alerting._metrics import DispatcherHealth
from streams.alerting.config import AlertingConfig, Receiver
from streams.alerting.errors import StateTooLargeError
from streams.alerting.notifiers import Notifier, build_notifiers
from streams.alerting.notifiers.kafka import Send
from streams.alerting.router import Inhibitor, RouteMatch, Router
from streams.alerting.silences import SilenceStore
from streams.topics import ALERT_GROUPS, ALERTS

__all__ = ["Dispatcher", "Sink", "MemorySink", "state_key"]

log = logging.getLogger("kubepulse.alerting")

Clock = Callable[[], datetime]

MAX_STATE_BYTES = 900 * 1024
"""Largest group state record (DESIGN: no record over 900 KiB, on a broker with stock message.max.bytes 1 MiB).
A larger one would be refused by the broker at every retry: the alert that would make it is dead-lettered."""


def state_key(receiver: str, group_key: str) -> str:
    return f"{receiver}|{group_key}"


class Sink(Protocol):
    """Where the dispatcher's output goes (Kafka in production, memory in unit tests)."""

    async def notification(self, record: Notification) -> None: ...
    async def dead_letter(self, record: DeadLetter) -> None: ...
    async def group_state(self, key: str, state: AlertGroupState | None) -> None: ...
    async def flush(self) -> None: ...
    async def send(self, topic: str, key: bytes, value: bytes) -> None: ...


@dataclass
class MemorySink:
    """A :class:`Sink` that keeps everything in lists (unit tests, ``check-config`` dry runs)."""

    notifications: list[Notification] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    states: dict[str, AlertGroupState | None] = field(default_factory=dict)
    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    async def notification(self, record: Notification) -> None:
        self.notifications.append(record)

    async def dead_letter(self, record: DeadLetter) -> None:
        self.dead_letters.append(record)

    async def group_state(self, key: str, state: AlertGroupState | None) -> None:
        self.states[key] = state

    async def flush(self) -> None:
        return None

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))


@dataclass
class _Group:
    match: RouteMatch
    alerts: dict[str, AlertTransition]
    delivered: dict[str, GroupDelivery]
    task: asyncio.Task[None] | None = None
    removed: bool = False
    draining: bool = False
    """No route makes this group any more: it keeps the alerts its receiver was paged for, only to resolve them."""
    reported_muted: set[str] = field(default_factory=set)
    flushing: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One flush at a time per group: a second one would plan the same sends before the first records them."""

    @property
    def key(self) -> str:
        return state_key(self.match.receiver, self.match.group_key)


@dataclass
class _Job:
    iid: str
    notifier: Notifier
    message: AlertMessage
    firing: dict[str, int]
    resolved: dict[str, int]
    send: bool


def _unpaged(d: GroupDelivery, fp: str, a: AlertTransition) -> bool:
    """``a`` (resolved) was neither sent to this integration as firing nor as this resolve."""
    return fp not in d.firing and d.resolved.get(fp) != a.sequence


class Dispatcher:
    """The alert dispatcher's logic, independent of Kafka (``streams.alerting.run_dispatcher`` wires it).

    ``time_scale`` multiplies every configured duration (group_wait,
    intervals, backoff, budgets), so tests run Alertmanager's minutes in
    fractions of a second; ``clock`` gives "now" for silences and timestamps.
    """

    def __init__(
        self,
        config: AlertingConfig,
        *,
        settings: Settings,
        sink: Sink,
        time_scale: float = 1.0,
        clock: Clock | None = None,
        events_per_pod: int = 10,
        max_pods: int = 10_000,
        health: DispatcherHealth | None = None,
    ) -> None:
        self.config = config
        self._settings = settings
        self._sink = sink
        self._scale = time_scale
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._router = Router(config)
        self._inhibitor = Inhibitor(config.inhibit_rules)
        self.silences = SilenceStore()
        self._groups: dict[str, _Group] = {}
        self._lock = asyncio.Lock()
        self._events: OrderedDict[str, deque[KubeEvent]] = OrderedDict()
        self._events_per_pod = events_per_pod
        self._max_pods = max_pods
        self._alerts_topic = ALERTS.named(settings.kafka.topic_prefix)
        self._groups_topic = ALERT_GROUPS.named(settings.kafka.topic_prefix)
        self._draining: set[str] = set()
        self._unsaved: dict[str, _Group] = {}
        """Groups changed in memory whose state write has not been confirmed yet: the next write retries them."""
        self.health = health or DispatcherHealth()
        secrets = config.secrets()
        for s in (settings.alerting.pagerduty_routing_key, settings.alerting.slack_webhook_url,
                  settings.alerting.slack_token, settings.alerting.smtp_password):
            if s is not None:
                secrets.append(s.get_secret_value())
        self.redact = Redactor(secrets)
        send: Send = sink.send
        self._notifiers: dict[str, dict[str, Notifier]] = {
            r.name: build_notifiers(
                r, notifications_file=settings.alerting.notifications_file,
                topic_prefix=settings.kafka.topic_prefix, send=send,
            )
            for r in config.receivers
        }
        self._buckets = {
            r.name: TokenBucket(r.rate_limit.per_second / time_scale, r.rate_limit.burst)
            for r in config.receivers
            if r.rate_limit is not None
        }
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # ------------------------------------------------------------------ input

    def add_silence(self, silence: Silence) -> None:
        self.silences.put(silence)

    def add_event(self, event: KubeEvent) -> None:
        """Keep the last few events of each pod (bounded: least recently updated pods are dropped first)."""
        obj = event.involved_object
        if obj.kind != "Pod":
            return
        key = f"{event.cluster}/{obj.namespace or event.namespace}/{obj.name}"
        ring = self._events.get(key)
        if ring is None:
            ring = self._events[key] = deque(maxlen=self._events_per_pod)
            if len(self._events) > self._max_pods:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(key)
            # The same Event object comes back with a higher count: keep the latest.
            for i, old in enumerate(ring):
                if old.uid == event.uid:
                    del ring[i]
                    break
        ring.append(event)

    async def load(self, states: Iterable[AlertGroupState]) -> None:
        """Restore groups from the state topic (on start or when this worker takes over) and arm their timers.

        A stored group that no route makes any more (the route tree changed
        since it was written) is not forgotten, or its alerts' resolves would
        be ignored and the pages they made stay open: its alerts are re-routed
        (:meth:`_reroute`) and the old state is replaced by what they became.
        """
        orphans = []
        for st in states:
            key = state_key(st.receiver, st.group_key)
            if key in self._groups:
                continue  # already live here: memory is at least as new as the topic
            matches = self._router.match(st.alerts[0].labels) if st.alerts else []
            match = next((m for m in matches if m.receiver == st.receiver and m.group_key == st.group_key), None)
            if match is None:
                orphans.append(st)
                continue
            self._groups[key] = _Group(match=match, alerts={a.fingerprint: a for a in st.alerts}, delivered=dict(st.delivered))
        # After every state that still has its group is restored, so a re-routed alert merges into
        # its new group's stored state instead of shadowing it.
        changed: dict[str, _Group] = {}
        retired: list[str] = []
        for st in orphans:
            key = state_key(st.receiver, st.group_key)
            try:
                for g in await self._reroute(st):
                    changed[g.key] = g
            except Exception as exc:
                await self._reject_state(st, exc)
                continue
            if key not in self._groups:
                retired.append(key)
        if changed or retired:
            async with self._lock:
                for key in retired:
                    await self._sink.group_state(key, None)
                for g in changed.values():
                    await self._persist(g)
                await self._sink.flush()
        for g in self._groups.values():
            if g.task is None:
                last = max((d.at for d in g.delivered.values() if d.at), default=None)
                if last is None:
                    delay = g.match.group_wait * self._scale
                else:
                    delay = max(0.0, (last + timedelta(seconds=g.match.group_interval * self._scale) - self._clock()).total_seconds())
                self._arm(g, delay)

    async def _reroute(self, st: AlertGroupState) -> list[_Group]:
        """Put the alerts of a group no route makes any more into the groups they belong to now.

        Into a new group of the same receiver an alert takes what each
        integration was sent of it, so it is not paged again and its resolve is
        sent. Alerts whose routes no longer reach this receiver but that it was
        paged for stay in a draining group under the old key, which takes only
        their resolves (no repeats) and is removed when they are done; the new
        receiver is notified of them as of any alert new to it.
        """
        log.warning(
            "alert group %s of receiver %s: no route makes it any more (the routing changed); re-routing its %d alert(s)",
            st.group_key, st.receiver, len(st.alerts),
        )
        out: list[_Group] = []
        paged_here: dict[str, AlertTransition] = {}
        for a in st.alerts:
            sent = [iid for iid, d in st.delivered.items() if a.fingerprint in d.firing]
            stays = False
            for m in self._router.match(a.labels):
                key = state_key(m.receiver, m.group_key)
                g = self._groups.get(key)
                current = g.alerts.get(a.fingerprint) if g else None
                if current is not None and current.sequence >= a.sequence:
                    stays = stays or m.receiver == st.receiver
                    continue
                if current is None and a.status == "resolved" and not (m.receiver == st.receiver and sent):
                    continue  # resolved before this receiver heard of it: nothing to tell
                if g is None:
                    g = _Group(match=m, alerts={}, delivered={})
                    self._state(g)
                    self._groups[key] = g
                g.alerts[a.fingerprint] = a
                if m.receiver == st.receiver:
                    stays = True
                    for iid in sent:
                        old, new = st.delivered[iid], g.delivered.setdefault(iid, GroupDelivery())
                        new.firing.setdefault(a.fingerprint, old.firing[a.fingerprint])
                        if a.fingerprint in old.resolved:
                            new.resolved.setdefault(a.fingerprint, old.resolved[a.fingerprint])
                        new.at = max(filter(None, (new.at, old.at)), default=None)
                out.append(g)
            if sent and not stays:
                paged_here[a.fingerprint] = a
        if paged_here:
            try:
                self.config.receiver(st.receiver)
            except KeyError:
                await self._reject_state(st, f"receiver {st.receiver} was removed from the config: the alert(s) "
                                             f"{', '.join(sorted(paged_here))} it was paged for cannot be resolved there")
                return out
            match = self._router.former(receiver=st.receiver, group_key=st.group_key, group_labels=st.group_labels)
            delivered = {
                iid: GroupDelivery(
                    firing={fp: s for fp, s in d.firing.items() if fp in paged_here},
                    resolved={fp: s for fp, s in d.resolved.items() if fp in paged_here},
                    at=d.at, ref=d.ref,
                )
                for iid, d in st.delivered.items()
            }
            g = _Group(match=match, alerts=paged_here, delivered=delivered, draining=True)
            self._groups[g.key] = g
            self._draining.add(g.key)
            out.append(g)
        return out

    async def ingest(
        self, transitions: Iterable[AlertTransition], *, commit: Callable[[], Awaitable[None]] | None = None
    ) -> int:
        """Apply a batch of transitions, persist the changed groups, then ``commit``; returns how many were new."""
        async with self._lock:
            # Groups of an earlier batch whose state write failed are written with this one.
            changed: dict[str, _Group] = dict(self._unsaved)
            new = 0
            applied: list[tuple[AlertTransition, list[_Group], Callable[[], None]]] = []
            for t in transitions:
                try:
                    groups, undo = self._apply(t)
                except Exception as exc:
                    # One alert that cannot be grouped must not take the dispatcher, and with
                    # it every other alert, down: it is dead-lettered with the reason instead.
                    await self._reject(t, exc)
                    continue
                applied.append((t, groups, undo))
                for g in groups:
                    changed[g.key] = g
                    new += 1
            new -= await self._refuse_oversized(changed, applied)
            self._unsaved.update(changed)
            for g in changed.values():
                await self._persist(g)
            await self._sink.flush()
            for key in changed:
                self._unsaved.pop(key, None)
            if commit is not None:
                await commit()
        for g in changed.values():
            if g.task is None and not g.removed:
                self._arm(g, g.match.group_wait * self._scale)
        return new

    async def _refuse_oversized(
        self, changed: dict[str, _Group], applied: list[tuple[AlertTransition, list[_Group], Callable[[], None]]]
    ) -> int:
        """Undo and dead-letter this batch's newest transitions of any group whose state would pass the bound.

        Such a state could never be written (the broker refuses it at every
        retry, and the dispatcher would end), so the alert that makes it too
        large is the bad record. Returns how many group changes were undone.
        """
        undone = 0
        for key, g in list(changed.items()):
            while not g.removed and len(encode(self._state(g))) > MAX_STATE_BYTES:
                i = next((i for i in range(len(applied) - 1, -1, -1) if any(x is g for x in applied[i][1])), None)
                if i is None:
                    log.error("alert group %s is over %d bytes from earlier batches", key, MAX_STATE_BYTES)
                    break
                t, groups, undo = applied.pop(i)
                undo()
                undone += len(groups)
                await self._reject(t, StateTooLargeError(
                    f"adding alert {t.fingerprint} would make the state of alert group {g.match.group_key!r} "
                    f"larger than {MAX_STATE_BYTES} bytes; route its alerts with more group_by labels"))
            for other in [*changed]:
                if self._groups.get(other) is not changed[other] and not changed[other].removed:
                    del changed[other]  # created by an undone transition only: nothing to write
        return undone

    def _apply(self, t: AlertTransition) -> tuple[list[_Group], Callable[[], None]]:
        """Put ``t`` into each of its groups; all or nothing (a failure leaves the groups as they were).

        Returns the groups changed and a function that undoes the change.
        """
        out: list[_Group] = []
        undo: list[Callable[[], None]] = []
        try:
            for m in self._router.match(t.labels):
                key = state_key(m.receiver, m.group_key)
                g = self._groups.get(key)
                current = g.alerts.get(t.fingerprint) if g else None
                if current is not None and current.sequence >= t.sequence:
                    continue  # a replay or a reordering: this or a later state is known already
                if current is None and t.status == "resolved":
                    continue  # never seen firing here (or long finished): nothing to resolve
                if g is None:
                    g = _Group(match=m, alerts={}, delivered={})
                    self._state(g)  # a group whose state could not be written is refused before it exists
                    self._groups[key] = g
                    undo.append(lambda key=key: self._groups.pop(key, None))
                g.alerts[t.fingerprint] = t
                undo.append(lambda g=g, prev=current: self._restore(g, t.fingerprint, prev))
                out.append(g)
            if t.status == "resolved":
                for key in self._draining:
                    g = self._groups[key]
                    current = g.alerts.get(t.fingerprint)
                    if current is not None and current.sequence < t.sequence:
                        g.alerts[t.fingerprint] = t
                        undo.append(lambda g=g, prev=current: self._restore(g, t.fingerprint, prev))
                        out.append(g)
        except Exception:
            for step in reversed(undo):
                step()
            raise

        def undo_all() -> None:
            for step in reversed(undo):
                step()

        return out, undo_all

    @staticmethod
    def _restore(g: _Group, fingerprint: str, previous: AlertTransition | None) -> None:
        if previous is None:
            g.alerts.pop(fingerprint, None)
        else:
            g.alerts[fingerprint] = previous

    async def _reject(self, t: AlertTransition, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        log.error("alert %s (%s) dead-lettered, it cannot be dispatched: %s", t.fingerprint, t.labels.get("alertname"), reason)
        await self._dead_letter("dispatch", self._alerts_topic, t.fingerprint, reason, type(exc).__name__, t.model_dump_json())

    async def _reject_state(self, st: AlertGroupState, problem: Exception | str) -> None:
        reason = problem if isinstance(problem, str) else f"{type(problem).__name__}: {problem}"
        error_type = "RerouteError" if isinstance(problem, str) else type(problem).__name__
        log.error("stored alert group %s of receiver %s dead-lettered: %s", st.group_key, st.receiver, reason)
        await self._dead_letter("dispatch:reroute", self._groups_topic, st.key, reason, error_type, st.model_dump_json())

    async def _dead_letter(self, stage: str, topic: str, key: str, reason: str, error_type: str, payload: str) -> None:
        await self._sink.dead_letter(
            DeadLetter(
                source_topic=topic,
                key=key,
                stage=stage,
                reason=self.redact(reason)[:4000],
                error_type=error_type,
                payload=self.redact(payload),
                occurred_at=self._clock(),
            )
        )

    # ----------------------------------------------------------------- timers

    def _arm(self, g: _Group, delay: float) -> None:
        g.task = asyncio.get_running_loop().create_task(self._run_group(g, delay), name=f"alert-group {g.key}")

    async def _run_group(self, g: _Group, delay: float) -> None:
        await asyncio.sleep(delay)
        while not g.removed:
            try:
                # Shielded: a suspend (lost partitions, shutdown) cancels the timer, not a delivery
                # in flight, which finishes and records itself so the next owner does not resend it.
                await asyncio.shield(self.flush_group(g.key))
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never let a group's timer die: the next tick retries the flush.
                log.exception("flushing alert group %s failed; retrying at the next group_interval", g.key)
            if g.removed:
                return
            await asyncio.sleep(g.match.group_interval * self._scale)

    # ------------------------------------------------------------------ flush

    def _firing_label_sets(self) -> list[dict[str, str]]:
        seen: dict[str, dict[str, str]] = {}
        for g in self._groups.values():
            for fp, a in g.alerts.items():
                if a.status == "firing":
                    seen[fp] = a.labels
        return list(seen.values())

    def _muted(self, a: AlertTransition, firing: list[dict[str, str]], now: datetime) -> str | None:
        if self.silences.muted_by(a.labels, now):
            return "silenced"
        if self._inhibitor.inhibited(a.labels, firing):
            return "inhibited"
        return None

    async def flush_group(self, key: str) -> None:
        """Notify a group's changes to each integration of its receiver (what a timer tick does)."""
        g = self._groups.get(key)
        if g is None:
            return
        self._inflight += 1
        self._idle.clear()
        try:
            async with g.flushing:
                if not g.removed:
                    await self._flush(g)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def _flush(self, g: _Group) -> None:
        receiver = self.config.receiver(g.match.receiver)
        async with self._lock:
            now = self._clock()
            jobs, muted = self._plan(g, receiver, now)
        if muted:
            await self._record_suppressed(g, receiver, muted, now)

        async def run(job: _Job) -> None:
            outcome = await self._deliver(g, receiver, job, now) if job.send else None
            # Recorded as soon as this integration is done, whatever the others do: a Kafka
            # error writing another integration's dead letter, or the state write below,
            # must not make the next tick send again what this receiver confirmed.
            async with self._lock:
                self._delivered(g, job, outcome, now)

        results = await asyncio.gather(*(run(job) for job in jobs), return_exceptions=True)
        async with self._lock:
            collected = self._collect(g, receiver)
            if jobs or collected or g.key in self._unsaved:
                self._unsaved[g.key] = g
                await self._persist(g)
                await self._sink.flush()
                self._unsaved.pop(g.key, None)
        for r in results:
            if isinstance(r, BaseException):
                raise r  # the timer logs it and retries what was not recorded at the next tick

    @staticmethod
    def _delivered(g: _Group, job: _Job, outcome: Outcome | None, now: datetime) -> None:
        d = g.delivered.setdefault(job.iid, GroupDelivery())
        # A dead-lettered notification counts as handled too: the group moves on
        # (it is in the dead-letter topic, and the next change notifies again).
        for fp in job.resolved:
            d.firing.pop(fp, None)
        d.resolved.update(job.resolved)
        d.firing.update(job.firing)
        if outcome is not None:
            d.at = now
            d.ref = job.message.ref or d.ref

    def _plan(self, g: _Group, receiver: Receiver, now: datetime) -> tuple[list[_Job], list[str]]:
        firing_sets = self._firing_label_sets()
        firing: dict[str, AlertTransition] = {}
        muted: list[str] = []
        for fp, a in g.alerts.items():
            if a.status != "firing":
                continue
            if self._muted(a, firing_sets, now):
                if fp not in g.reported_muted:
                    muted.append(fp)
                    g.reported_muted.add(fp)
            else:
                firing[fp] = a
                g.reported_muted.discard(fp)
        late = self._late(g, receiver, firing_sets, muted, now)
        jobs = []
        repeat_after = timedelta(seconds=g.match.repeat_interval * self._scale)
        for iid, cfg in receiver.integrations():
            d = g.delivered.get(iid) or GroupDelivery()
            # A draining group only resolves: its receiver is no longer where these alerts are paged.
            new_firing = set() if g.draining else {fp for fp, a in firing.items() if d.firing.get(fp) != a.sequence}
            resolved = {
                fp: a for fp, a in g.alerts.items()
                if a.status == "resolved" and fp in d.firing and d.resolved.get(fp) != a.sequence
            }
            late_here = {fp: a for fp, a in late.items() if _unpaged(d, fp, a)}
            repeat = bool(firing) and d.at is not None and now - d.at >= repeat_after and not g.draining
            send_resolved = bool(resolved) and cfg.send_resolved
            if not (new_firing or repeat or resolved or late_here):
                continue
            send = bool(new_firing or repeat or send_resolved or late_here)
            told = (resolved if cfg.send_resolved else {}) | late_here
            message = AlertMessage(
                receiver=receiver.name,
                group_key=g.match.group_key,
                group_labels=g.match.group_labels,
                firing=sorted(firing.values(), key=lambda a: a.starts_at),
                resolved=sorted(told.values(), key=lambda a: a.starts_at),
                changed=(set(firing) if repeat else new_firing) | set(told),
                late=set(late_here),
                external_url=self.config.global_.external_url,
                kibana_url=self.config.global_.kibana_url,
                dashboard_id=self.config.global_.kibana_dashboard_id,
                recent_events=self._events_for([*firing.values(), *resolved.values()]),
                previous_ref=d.ref,
            )
            jobs.append(
                _Job(
                    iid=iid,
                    notifier=self._notifiers[receiver.name][iid],
                    message=message,
                    firing={fp: a.sequence for fp, a in firing.items()},
                    resolved={fp: a.sequence for fp, a in (resolved | late_here).items()},
                    send=send,
                )
            )
        return jobs, muted

    def _late(
        self, g: _Group, receiver: Receiver, firing_sets: list[dict[str, str]], muted: list[str], now: datetime
    ) -> dict[str, AlertTransition]:
        """Resolved alerts an integration was never told were firing: they are paged late, as fired and resolved.

        An alert can fire and resolve before its first notification gets through:
        within ``group_wait``, while the receiver is down, or while a worker
        catches up after a restart. Alertmanager then sends nothing; here the page
        is not lost: the receiver gets it among the resolved ones (PagerDuty: a
        trigger then a resolve, so the incident is recorded and closed). One muted
        now (silence, inhibition) is reported as suppressed instead.
        """
        if g.draining:
            return {}
        iids = [iid for iid, _ in receiver.integrations()]
        late: dict[str, AlertTransition] = {}
        for fp, a in g.alerts.items():
            if a.status != "resolved" or fp in g.reported_muted:
                continue
            if not any(_unpaged(g.delivered.get(iid) or GroupDelivery(), fp, a) for iid in iids):
                continue
            if self._muted(a, firing_sets, now):
                muted.append(fp)
                g.reported_muted.add(fp)
            else:
                late[fp] = a
        return late

    def _events_for(self, alerts: list[AlertTransition]) -> dict[str, list[KubeEvent]]:
        out = {}
        for a in alerts:
            key = pod_key(a.labels)
            if key and key in self._events:
                out[key] = list(self._events[key])
        return out

    def _collect(self, g: _Group, receiver: Receiver) -> bool:
        """Forget resolved alerts every integration is done with; a group with no alerts is removed."""
        before = len(g.alerts)
        iids = [iid for iid, _ in receiver.integrations()]
        for fp, a in list(g.alerts.items()):
            if a.status != "resolved":
                continue
            done = [g.delivered.get(iid) or GroupDelivery() for iid in iids]
            settled = g.draining or fp in g.reported_muted
            if all(fp not in d.firing and (settled or not _unpaged(d, fp, a)) for d in done):
                del g.alerts[fp]
                for d in g.delivered.values():
                    d.resolved.pop(fp, None)
                    d.firing.pop(fp, None)
        if not g.alerts:
            g.removed = True
            self._groups.pop(g.key, None)
            self._draining.discard(g.key)
        return len(g.alerts) != before

    async def _deliver(self, g: _Group, receiver: Receiver, job: _Job, now: datetime) -> Outcome:
        nid = hashlib.sha1(f"{g.key}|{job.iid}|{now.isoformat()}".encode()).hexdigest()[:20]
        message = job.message

        async def record(attempt: int, outcome: str, error: str | None, http_status: int | None) -> None:
            await self._sink.notification(
                Notification(
                    notification_id=nid,
                    receiver=receiver.name,
                    integration=job.notifier.integration,
                    group_key=g.match.group_key,
                    fingerprints=message.fingerprints,
                    status=message.status,
                    attempt=attempt,
                    outcome=outcome,  # type: ignore[arg-type]
                    error=error,
                    http_status=http_status,
                    at=self._clock(),
                )
            )
            if outcome == "retry":
                log.warning("notification %s to %s (%s) failed, will retry: %s", nid, receiver.name, job.iid, error)

        outcome = await deliver(
            job.notifier, message, policy=receiver.retry, record=record, redact=self.redact,
            bucket=self._buckets.get(receiver.name), time_scale=self._scale,
        )
        self.health.delivery(receiver.name, job.iid, delivered=outcome.delivered)
        if not outcome.delivered:
            log.error(
                "NOTIFICATION LOST TO RETRIES: %s to receiver %s (%s) for group %s failed after %d attempt(s): %s; "
                "writing it to the dead-letter topic",
                nid, receiver.name, job.iid, g.match.group_key, outcome.attempts, outcome.error,
            )
            await self._sink.dead_letter(
                DeadLetter(
                    source_topic=self._alerts_topic,
                    key=g.match.group_key,
                    stage=f"notify:{receiver.name}",
                    reason=outcome.error or "delivery failed",
                    error_type="NotifyError",
                    payload=self.redact(json.dumps({"integration": job.iid, **message.webhook_body()}, sort_keys=True)),
                    occurred_at=self._clock(),
                )
            )
        return outcome

    async def _record_suppressed(self, g: _Group, receiver: Receiver, fps: list[str], now: datetime) -> None:
        status = {fp: self._muted(g.alerts[fp], self._firing_label_sets(), now) for fp in fps if fp in g.alerts}
        for reason in ("silenced", "inhibited"):
            hit = sorted(fp for fp, r in status.items() if r == reason)
            if not hit:
                continue
            await self._sink.notification(
                Notification(
                    notification_id=hashlib.sha1(f"{g.key}|{reason}|{now.isoformat()}".encode()).hexdigest()[:20],
                    receiver=receiver.name,
                    integration=(receiver.integrations()[0][0].split("/")[0] if receiver.integrations() else "console"),  # type: ignore[arg-type]
                    group_key=g.match.group_key,
                    fingerprints=hit,
                    status="firing",
                    attempt=1,
                    outcome="suppressed",
                    error=reason,
                    at=now,
                )
            )

    async def _persist(self, g: _Group) -> None:
        if g.removed:
            await self._sink.group_state(g.key, None)
            return
        await self._sink.group_state(g.key, self._state(g))

    def _state(self, g: _Group) -> AlertGroupState:
        return AlertGroupState(
            group_key=g.match.group_key,
            receiver=g.match.receiver,
            group_labels=g.match.group_labels,
            alerts=list(g.alerts.values()),
            delivered=g.delivered,
            updated_at=self._clock(),
        )

    # --------------------------------------------------------------- control

    @property
    def groups(self) -> dict[str, Any]:
        """Group key to fingerprints (for tests and the CLI)."""
        return {g.match.group_key: sorted(g.alerts) for g in self._groups.values()}

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no delivery is in flight (tests)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def suspend(self, *, drain_timeout: float = 30.0) -> None:
        """Stop every group timer, let deliveries in flight finish, and forget the groups.

        Called when this worker loses the alerts partitions (or stops). Waiting
        for in-flight deliveries to record themselves narrows the at-least-once
        window to a crash; past ``drain_timeout`` the groups are dropped anyway
        (the new owner may then resend one notification).
        """
        tasks = [g.task for g in self._groups.values() if g.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.wait_idle(drain_timeout)
        except TimeoutError:
            log.warning("deliveries still in flight after %.0f s; the next owner may resend them", drain_timeout)
        self._groups.clear()
        self._draining.clear()
        self._unsaved.clear()

    async def close(self) -> None:
        await self.suspend()
        for notifiers in self._notifiers.values():
            for n in notifiers.values():
                try:
                    await n.close()
                except Exception:  # closing is best effort
                    log.debug("closing notifier %s failed", n.integration_id, exc_info=True)

