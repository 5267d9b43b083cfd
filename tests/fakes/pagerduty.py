"""A fake PagerDuty Events API v2 (``POST /v2/enqueue``) that checks every field like the real one.

Schema (developer.pagerduty.com, Events API v2, "Send an Alert Event"):
``routing_key`` (32 characters), ``event_action`` (trigger|acknowledge|resolve),
``dedup_key`` (<= 255, required unless trigger), ``payload`` for trigger with
``summary`` (<= 1024), ``source``, ``severity`` (critical|error|warning|info)
required and ``timestamp`` (ISO 8601), ``component``, ``group``, ``class``,
``custom_details`` optional; ``links[] {href, text}``, ``images[] {src, href, alt}``,
``client``, ``client_url``. Answers: 202 ``{"status": "success", "message":
"Event processed", "dedup_key": ...}``, 400 ``{"status": "invalid event",
"message": "Event object is invalid", "errors": [...]}``, 429 when throttled.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.fakes._server import FakeServer, Received

__all__ = ["FakePagerDuty", "validate_event"]

_TOP = {"routing_key", "event_action", "dedup_key", "payload", "links", "images", "client", "client_url"}
_PAYLOAD = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}
_SEVERITIES = {"critical", "error", "warning", "info"}


def validate_event(body: Any) -> list[str]:
    """Every problem with an Events API v2 body (empty when valid)."""
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    errors = [f"unknown field {k!r}" for k in body if k not in _TOP]
    rk = body.get("routing_key")
    if not isinstance(rk, str) or len(rk) != 32:
        errors.append("routing_key must be a 32-character string")
    action = body.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errors.append("event_action must be trigger, acknowledge or resolve")
    dk = body.get("dedup_key")
    if dk is not None and (not isinstance(dk, str) or not dk or len(dk) > 255):
        errors.append("dedup_key must be a non-empty string of at most 255 characters")
    if action in ("acknowledge", "resolve") and dk is None:
        errors.append(f"dedup_key is required for {action}")
    if action == "trigger":
        p = body.get("payload")
        if not isinstance(p, dict):
            errors.append("payload is required for trigger")
        else:
            errors += [f"unknown payload field {k!r}" for k in p if k not in _PAYLOAD]
            s = p.get("summary")
            if not isinstance(s, str) or not s or len(s) > 1024:
                errors.append("payload.summary must be a string of 1..1024 characters")
            if not isinstance(p.get("source"), str) or not p["source"]:
                errors.append("payload.source is required")
            if p.get("severity") not in _SEVERITIES:
                errors.append("payload.severity must be critical, error, warning or info")
            if "timestamp" in p:
                try:
                    datetime.fromisoformat(str(p["timestamp"]).replace("Z", "+00:00"))
                except ValueError:
                    errors.append("payload.timestamp must be ISO 8601")
            for k in ("component", "group", "class"):
                if k in p and not isinstance(p[k], str):
                    errors.append(f"payload.{k} must be a string")
            if "custom_details" in p and not isinstance(p["custom_details"], dict):
                errors.append("payload.custom_details must be an object")
    elif "payload" in body and action != "trigger" and not isinstance(body["payload"], dict):
        errors.append("payload must be an object")
    for i, link in enumerate(body.get("links", []) if isinstance(body.get("links", []), list) else [None]):
        if not isinstance(link, dict) or not isinstance(link.get("href"), str) or set(link) - {"href", "text"}:
            errors.append(f"links[{i}] must be {{href, text}}")
        elif "text" in link and not isinstance(link["text"], str):
            errors.append(f"links[{i}].text must be a string")
        elif not link["href"].startswith(("http://", "https://")):
            errors.append(f"links[{i}].href must be a URL")
    for i, img in enumerate(body.get("images", []) if isinstance(body.get("images", []), list) else [None]):
        if not isinstance(img, dict) or not isinstance(img.get("src"), str) or set(img) - {"src", "href", "alt"}:
            errors.append(f"images[{i}] must be {{src, href, alt}}")
    return errors


class FakePagerDuty(FakeServer):
    """``events`` holds the accepted events, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self._enqueue)

    async def _enqueue(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        forced = await self.scripted(request.path, body, request)
        if forced is not None:
            return forced
        errors = [] if request.content_type == "application/json" else ["Content-Type must be application/json"]
        errors += validate_event(body)
        if errors:
            self.rejected.append((request.path, errors))
            await self._note(Received(request.path, body, dict(request.headers), time.monotonic(), 400))
            return web.json_response(
                {"status": "invalid event", "message": "Event object is invalid", "errors": errors}, status=400
            )
        dedup = body.get("dedup_key") or uuid.uuid4().hex
        self.events.append(body)
        await self._note(Received(request.path, body, dict(request.headers), time.monotonic(), 202))
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": dedup}, status=202)
