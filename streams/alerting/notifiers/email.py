"""Email through aiosmtplib: one message per group notification, with an HTML and a plain-text part."""

from __future__ import annotations

import html
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from streams.alerting._message import AlertMessage
from streams.alerting.config import EmailConfig
from streams.alerting.errors import NotifyError
from streams.alerting.notifiers._base import Notifier

__all__ = ["EmailNotifier", "build_email"]


def _alert_lines(message: AlertMessage) -> list[tuple[str, list[tuple[str, str]]]]:
    rows = []
    for a in message.alerts:
        fields = [("status", a.status)] + [(k, a.labels[k]) for k in sorted(a.labels)]
        if a.value is not None:
            fields.append(("value", f"{a.value:g}" + (f" (threshold {a.threshold:g})" if a.threshold is not None else "")))
        for k in sorted(a.annotations):
            fields.append((k, a.annotations[k]))
        for link in message.links(a):
            fields.append((link["text"], link["href"]))
        for e in message.events_for(a)[-5:]:
            fields.append(("event", f"{e.reason} x{e.count}: {e.message}"))
        rows.append((a.labels["alertname"], fields))
    return rows


def build_email(message: AlertMessage, *, sender: str, to: list[str]) -> EmailMessage:
    """The MIME message: ``multipart/alternative`` with text/plain first and text/html second."""
    msg = EmailMessage()
    msg["Subject"] = message.title()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Message-ID"] = make_msgid(domain="kubepulse")
    msg["X-Kubepulse-Group-Key"] = message.group_key
    rows = _alert_lines(message)
    plain = [message.title(), f"group: {message.group_key}", ""]
    for name, fields in rows:
        plain.append(f"== {name}")
        plain.extend(f"  {k}: {v}" for k, v in fields)
        plain.append("")
    msg.set_content("\n".join(plain))
    parts = [f"<h2>{html.escape(message.title())}</h2>", f"<p>group: <code>{html.escape(message.group_key)}</code></p>"]
    for name, fields in rows:
        parts.append(f"<h3>{html.escape(name)}</h3><table>")
        for k, v in fields:
            cell = f'<a href="{html.escape(v)}">{html.escape(v)}</a>' if v.startswith(("http://", "https://")) else html.escape(v)
            parts.append(f"<tr><th align=left>{html.escape(k)}</th><td>{cell}</td></tr>")
        parts.append("</table>")
    msg.add_alternative("<html><body>" + "".join(parts) + "</body></html>", subtype="html")
    return msg


class EmailNotifier(Notifier):
    integration = "email"

    def __init__(self, config: EmailConfig, *, receiver: str, integration_id: str, timeout: float) -> None:
        super().__init__(receiver=receiver, integration_id=integration_id, timeout=timeout)
        self._config = config

    async def notify(self, message: AlertMessage) -> None:
        if message.status == "resolved" and not self._config.send_resolved:
            return
        cfg = self._config
        host, _, port = cfg.smarthost.rpartition(":")
        msg = build_email(message, sender=cfg.from_, to=cfg.to)
        try:
            await aiosmtplib.send(
                msg,
                hostname=host,
                port=int(port),
                username=cfg.auth_username,
                password=cfg.auth_password.get_secret_value() if cfg.auth_password else None,
                use_tls=cfg.tls,
                start_tls=cfg.require_tls,
                validate_certs=cfg.validate_certs,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({e.code for e in exc.recipients})
            raise NotifyError(f"SMTP server refused the recipients ({', '.join(map(str, codes))})",
                              retryable=all(400 <= c < 500 for c in codes)) from None
        except aiosmtplib.SMTPResponseException as exc:
            # 4xx is "try again later", 5xx is final (bad recipient, auth refused).
            raise NotifyError(f"SMTP server answered {exc.code}", retryable=400 <= exc.code < 500) from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            raise NotifyError(f"SMTP delivery failed ({type(exc).__name__})", retryable=True) from None
