"""A fake Slack: incoming webhooks and the Web API's chat.postMessage / chat.update, checking Block Kit strictly.

Incoming webhook (``POST /services/...``): JSON with ``text`` and/or
``blocks``; answers ``200 ok``, ``400 invalid_blocks``/``no_text``.
Web API: ``Authorization: Bearer <token>``; chat.postMessage needs
``channel`` and ``text`` or ``blocks`` and answers ``{"ok": true, "channel",
"ts", "message"}``; chat.update needs ``channel`` and the ``ts`` of a posted
message. Errors are ``{"ok": false, "error": ...}`` with HTTP 200, as Slack does.
Blocks: at most 50, of types header/section/context/divider/actions/image,
text objects ``{type: mrkdwn|plain_text, text}`` within Slack's length limits.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from tests.fakes._server import FakeServer, Received

__all__ = ["FakeSlack", "validate_blocks"]

_MESSAGE_KEYS = {
    "text", "blocks", "attachments", "thread_ts", "mrkdwn", "unfurl_links", "unfurl_media", "username",
    "icon_emoji", "icon_url", "channel", "response_type", "replace_original", "delete_original", "metadata",
    "reply_broadcast", "link_names", "parse", "ts", "as_user",
}


def _text_object(obj: Any, where: str, *, plain_only: bool = False, max_len: int = 3000) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where} must be a text object"]
    errors = []
    kind = obj.get("type")
    if kind not in ("plain_text", "mrkdwn") or (plain_only and kind != "plain_text"):
        errors.append(f"{where}.type must be {'plain_text' if plain_only else 'plain_text or mrkdwn'}")
    allowed = {"type", "text", "emoji"} if kind == "plain_text" else {"type", "text", "verbatim"}
    errors += [f"{where}: unknown field {k!r}" for k in obj if k not in allowed]
    text = obj.get("text")
    if not isinstance(text, str) or not text or len(text) > max_len:
        errors.append(f"{where}.text must be a string of 1..{max_len} characters")
    return errors


def validate_blocks(blocks: Any) -> list[str]:
    """Every problem with a Block Kit ``blocks`` array (empty when valid)."""
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return ["blocks must be a list of 1..50 blocks"]
    errors: list[str] = []
    for i, b in enumerate(blocks):
        w = f"blocks[{i}]"
        if not isinstance(b, dict):
            errors.append(f"{w} must be an object")
            continue
        t = b.get("type")
        extra = lambda allowed: [f"{w}: unknown field {k!r} for {t}" for k in b if k not in allowed | {"type", "block_id"}]  # noqa: E731
        if t == "header":
            errors += extra({"text"}) + _text_object(b.get("text"), f"{w}.text", plain_only=True, max_len=150)
        elif t == "section":
            errors += extra({"text", "fields", "accessory"})
            if "text" not in b and "fields" not in b:
                errors.append(f"{w}: a section needs text or fields")
            if "text" in b:
                errors += _text_object(b["text"], f"{w}.text")
            if "fields" in b:
                if not isinstance(b["fields"], list) or not 1 <= len(b["fields"]) <= 10:
                    errors.append(f"{w}.fields must hold 1..10 text objects")
                else:
                    for j, f in enumerate(b["fields"]):
                        errors += _text_object(f, f"{w}.fields[{j}]", max_len=2000)
        elif t == "context":
            errors += extra({"elements"})
            els = b.get("elements")
            if not isinstance(els, list) or not 1 <= len(els) <= 10:
                errors.append(f"{w}.elements must hold 1..10 elements")
            else:
                for j, e in enumerate(els):
                    if isinstance(e, dict) and e.get("type") == "image":
                        if not isinstance(e.get("image_url"), str) or not isinstance(e.get("alt_text"), str):
                            errors.append(f"{w}.elements[{j}]: image needs image_url and alt_text")
                    else:
                        errors += _text_object(e, f"{w}.elements[{j}]")
        elif t == "divider":
            errors += extra(set())
        elif t == "actions":
            errors += extra({"elements"})
            els = b.get("elements")
            if not isinstance(els, list) or not 1 <= len(els) <= 25:
                errors.append(f"{w}.elements must hold 1..25 elements")
            else:
                for j, e in enumerate(els):
                    ew = f"{w}.elements[{j}]"
                    if not isinstance(e, dict) or e.get("type") != "button":
                        errors.append(f"{ew} must be a button")
                        continue
                    errors += [f"{ew}: unknown field {k!r}" for k in e if k not in {"type", "text", "url", "value", "action_id", "style"}]
                    errors += _text_object(e.get("text"), f"{ew}.text", plain_only=True, max_len=75)
                    if "url" in e and (not isinstance(e["url"], str) or not e["url"].startswith(("http://", "https://")) or len(e["url"]) > 3000):
                        errors.append(f"{ew}.url must be an http(s) URL of at most 3000 characters")
                    if "style" in e and e["style"] not in ("primary", "danger"):
                        errors.append(f"{ew}.style must be primary or danger")
        elif t == "image":
            errors += extra({"image_url", "alt_text", "title"})
        else:
            errors.append(f"{w}.type {t!r} is not a block type this fake knows")
    return errors


def _message_errors(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    errors = [f"unknown field {k!r}" for k in body if k not in _MESSAGE_KEYS]
    if "text" not in body and "blocks" not in body:
        errors.append("no_text: text or blocks is required")
    if "text" in body and (not isinstance(body["text"], str) or len(body["text"]) > 40000):
        errors.append("text must be a string of at most 40000 characters")
    if "blocks" in body:
        errors += validate_blocks(body["blocks"])
    return errors


class FakeSlack(FakeServer):
    """``webhook_messages`` and ``messages`` (by ``channel:ts``) hold what was accepted."""

    def __init__(self, *, token: str = "xoxb-test-token", channel_id: str = "C0KUBEPULSE") -> None:
        super().__init__()
        self.token = token
        self.channel_id = channel_id
        self.webhook_messages: list[dict[str, Any]] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._ts = 1700000000_000100

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/services/T0KUBE/B0PULSE/abcdefghijklmnopqrstuvwx"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/services/{a}/{b}/{c}", self._webhook)
        app.router.add_post("/api/{method}", self._api)

    async def _json(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.read())
        except ValueError:
            return None

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        forced = await self.scripted(request.path, body, request)
        if forced is not None:
            return forced
        errors = _message_errors(body)
        if errors:
            self.rejected.append((request.path, errors))
            await self._note(Received(request.path, body, dict(request.headers), time.monotonic(), 400))
            return web.Response(status=400, text="invalid_blocks" if "blocks" in (body or {}) else "no_text")
        self.webhook_messages.append(body)
        await self._note(Received(request.path, body, dict(request.headers), time.monotonic(), 200))
        return web.Response(status=200, text="ok")

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        body = await self._json(request)
        forced = await self.scripted(request.path, body, request)
        if forced is not None:
            return forced

        def fail(error: str, detail: list[str] | None = None) -> web.StreamResponse:
            self.rejected.append((request.path, detail or [error]))
            return web.json_response({"ok": False, "error": error})

        if request.headers.get("Authorization") != f"Bearer {self.token}":
            resp = fail("invalid_auth")
        elif not request.content_type.startswith("application/json"):
            resp = fail("invalid_form_data")
        elif method not in ("chat.postMessage", "chat.update"):
            resp = fail("unknown_method")
        elif not isinstance(body, dict) or not body.get("channel"):
            resp = fail("channel_not_found")
        elif errors := _message_errors(body):
            resp = fail("invalid_blocks" if any("blocks" in e for e in errors) else "no_text", errors)
        elif method == "chat.postMessage":
            if body.get("thread_ts") and f"{self.channel_id}:{body['thread_ts']}" not in self.messages:
                resp = fail("thread_not_found")
            else:
                self._ts += 100
                ts = f"{self._ts // 1_000_000}.{self._ts % 1_000_000:06d}"
                self.messages[f"{self.channel_id}:{ts}"] = dict(body)
                self.calls.append((method, body))
                resp = web.json_response({"ok": True, "channel": self.channel_id, "ts": ts, "message": {"text": body.get("text", ""), "ts": ts}})
        else:
            key = f"{body['channel']}:{body.get('ts')}"
            if not body.get("ts"):
                resp = fail("invalid_arguments", ["ts is required"])
            elif key not in self.messages:
                resp = fail("message_not_found")
            else:
                self.messages[key] = {**self.messages[key], **body}
                self.calls.append((method, body))
                resp = web.json_response({"ok": True, "channel": body["channel"], "ts": body["ts"], "text": body.get("text", "")})
        await self._note(Received(request.path, body, dict(request.headers), time.monotonic(), 200))
        return resp
