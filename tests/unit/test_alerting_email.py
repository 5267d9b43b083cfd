"""Email notifications through a real SMTP server (aiosmtpd): MIME parts, auth, and failures."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from email.message import Message

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.fakes.alerts import alert, pod_event, resolved
from tests.fakes.fixtures import make_dispatcher  # noqa: F401 - fixture

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "smtp-pa55word-never-logged"


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()

    def authenticator(server, session, envelope, mechanism, auth_data):
        inbox.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=auth_data.password.decode() == PASSWORD)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False)
    controller.start()
    yield inbox, port
    controller.stop()


def _config(port: int, **email_cfg) -> dict:
    return {
        "global": {"kibana_url": "http://kibana.example:5601"},
        "route": {"receiver": "mail", "group_by": ["alertname"], "group_wait": 0.05, "group_interval": 0.05},
        "receivers": [{"name": "mail", "retry": {"initial_backoff": 0.01, "max_attempts": 2, "timeout": 2},
                       "email_configs": [{"to": ["oncall@example.org"], "from": "kubepulse@example.org",
                                          "smarthost": f"127.0.0.1:{port}", **email_cfg}]}],
    }


async def _wait(inbox: _Inbox, n: int, d) -> None:
    while len(inbox.messages) < n:
        await d.wait_idle()
        if len(inbox.messages) < n:
            await __import__("asyncio").sleep(0.02)


async def test_email_has_a_plain_text_and_an_html_part_and_logs_in_with_the_password(smtp, make_dispatcher, caplog):
    inbox, port = smtp
    d = make_dispatcher(_config(port, auth_username="kubepulse", auth_password=PASSWORD))
    d.add_event(pod_event("OOMKilled", count=2))
    a = alert(severity="critical")
    await d.ingest([a])
    await _wait(inbox, 1, d)
    await d.ingest([resolved(a)])
    await _wait(inbox, 2, d)

    assert inbox.logins == [("kubepulse", PASSWORD), ("kubepulse", PASSWORD)]
    sender, rcpts, msg = inbox.messages[0]
    assert (sender, rcpts) == ("kubepulse@example.org", ["oncall@example.org"])
    assert msg["Subject"] == "[FIRING:1] PodMemoryHigh"
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.get_payload()
    assert plain.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    text, markup = plain.get_payload(decode=True).decode(), html.get_payload(decode=True).decode()
    for needle in ("cart-7d9f-abcde", "0.93 (threshold 0.9)", "OOMKilled x2", "http://kibana.example:5601/app/dashboards"):
        assert needle in text
    assert "<table>" in markup and "cart-7d9f-abcde" in markup and 'href="http://kibana.example:5601/app/dashboards' in markup
    assert inbox.messages[1][2]["Subject"] == "[RESOLVED] PodMemoryHigh"
    assert PASSWORD not in caplog.text


async def test_a_refused_recipient_is_final_and_dead_lettered_without_the_password(smtp, make_dispatcher, caplog):
    inbox, port = smtp
    d = make_dispatcher(_config(port, to=["nobody@example.org"], auth_username="kubepulse", auth_password=PASSWORD))
    await d.ingest([alert()])
    while not d.sink.dead_letters:
        await d.wait_idle()
        await __import__("asyncio").sleep(0.02)
    (dead,) = d.sink.dead_letters
    assert dead.stage == "notify:mail" and "550" in dead.reason
    assert [n.outcome for n in d.sink.notifications] == ["failed"]  # 5xx is not retried
    assert inbox.messages == []
    assert PASSWORD not in caplog.text + dead.model_dump_json()
