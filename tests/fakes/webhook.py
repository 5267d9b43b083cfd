"""A fake Alertmanager-webhook receiver that checks the version 4 body field by field."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.fakes._server import FakeServer, Received

__all__ = ["FakeWebhook", "validate_webhook_body"]

_TOP = {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
        "commonAnnotations", "externalURL", "alerts"}
_ALERT = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}


def _strmap(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())


def validate_webhook_body(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["body must be an object"]
    errors = [f"missing {k}" for k in _TOP - set(body)] + [f"unknown {k}" for k in set(body) - _TOP]
    if body.get("version") != "4":
        errors.append('version must be "4"')
    if body.get("status") not in ("firing", "resolved"):
        errors.append("status must be firing or resolved")
    for k in ("groupLabels", "commonLabels", "commonAnnotations"):
        if not _strmap(body.get(k)):
            errors.append(f"{k} must map strings to strings")
    if not isinstance(body.get("truncatedAlerts"), int):
        errors.append("truncatedAlerts must be an integer")
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        return errors + ["alerts must be a non-empty list"]
    for i, a in enumerate(alerts):
        if not isinstance(a, dict) or set(a) != _ALERT:
            errors.append(f"alerts[{i}] must have exactly {sorted(_ALERT)}")
            continue
        if a["status"] not in ("firing", "resolved") or not _strmap(a["labels"]) or not _strmap(a["annotations"]):
            errors.append(f"alerts[{i}]: bad status, labels or annotations")
        for k in ("startsAt", "endsAt"):
            try:
                datetime.fromisoformat(a[k].replace("Z", "+00:00"))
            except (ValueError, AttributeError):
                errors.append(f"alerts[{i}].{k} must be RFC 3339")
        if not (isinstance(a["fingerprint"], str) and len(a["fingerprint"]) == 16):
            errors.append(f"alerts[{i}].fingerprint must be 16 hex digits")
    return errors


class FakeWebhook(FakeServer):
    """``bodies`` holds the accepted bodies; the path must be ``/hook/<token>`` with the configured token."""

    def __init__(self, *, token: str = "hook-token-0123456789") -> None:
        super().__init__()
        self.token = token
        self.bodies: list[dict[str, Any]] = []

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hook/{self.token}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook/{token}", self._hook)

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        forced = await self.scripted(request.path, body, request)
        if forced is not None:
            return forced
        errors = validate_webhook_body(body)
        if request.match_info["token"] != self.token:
            errors.append("wrong token")
        if errors:
            self.rejected.append((request.path, errors))
            await self._note(Received(request.path, body, dict(request.headers), time.monotonic(), 400))
            return web.json_response({"errors": errors}, status=400)
        self.bodies.append(body)
        await self._note(Received(request.path, body, dict(request.headers), time.monotonic(), 200))
        return web.Response(status=200)
