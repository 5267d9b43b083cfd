"""Imports kubepulse's saved objects into Kibana over its HTTP API (requests), idempotently.

Steps: wait until ``GET /api/status`` reports the overall level
``available`` (retrying with capped exponential backoff: Kibana answers 503
while it migrates its own indices); create the space if asked and missing
(``GET /api/spaces/space/<id>`` -> 404 -> ``POST /api/spaces/space``); then
``POST [/s/<space>]/api/saved_objects/_import?overwrite=true`` with the NDJSON
as the multipart file field ``file``. ``overwrite=true`` makes a re-run
replace the same ids, so provisioning is safe to repeat. Every request
carries ``kbn-xsrf: true`` (Kibana refuses writes without it) and the
credentials: ``Authorization: ApiKey <encoded key>`` or HTTP basic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from kibana.errors import KibanaAuthError, KibanaImportError, KibanaRequestError, KibanaUnavailable, ObjectError
from kibana.saved_objects import to_ndjson

__all__ = ["Provisioner", "ImportReport", "summary", "dashboard_urls"]


@dataclass
class ImportReport:
    """What an import did: Kibana's ``successCount`` and the dashboards it now serves."""

    success_count: int
    dashboards: list[tuple[str, str]] = field(default_factory=list)
    """(title, URL) per dashboard."""
    space_created: bool = False


def summary(objects: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(type, id, title) per object, as ``--dry-run`` prints them."""
    return [(o["type"], o["id"], o["attributes"].get("title", "")) for o in objects]


def dashboard_urls(url: str, objects: list[dict[str, Any]], *, space: str | None = None) -> list[tuple[str, str]]:
    """(title, URL) of every dashboard: ``<url>[/s/<space>]/app/dashboards#/view/<id>``."""
    base = url.rstrip("/") + (f"/s/{space}" if space else "")
    return [(o["attributes"]["title"], f"{base}/app/dashboards#/view/{o['id']}") for o in objects if o["type"] == "dashboard"]


class Provisioner:
    """One Kibana (optionally one space), with credentials; each method is one step of provisioning."""

    def __init__(
        self,
        url: str,
        *,
        space: str | None = None,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        request_timeout: float = 30.0,
        verify: bool | str = True,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Kibana URL must start with http:// or https:// (got {url!r})")
        if api_key and (username or password):
            raise ValueError("choose an API key or a user and password, not both")
        if (username is None) != (password is None):
            raise ValueError("basic auth needs both --user and --password")
        self.url = url.rstrip("/")
        self.space = space or None
        self.request_timeout = request_timeout
        self._sleep = sleep
        self.session = session or requests.Session()
        self.session.verify = verify
        # kbn-xsrf: Kibana's CSRF guard rejects any write without it (the value is not checked).
        self.session.headers.update({"kbn-xsrf": "true"})
        if api_key:
            self.session.headers["Authorization"] = f"ApiKey {api_key}"
        elif username is not None and password is not None:
            self.session.auth = (username, password)

    # -- plumbing -----------------------------------------------------------

    def _space_url(self, path: str) -> str:
        return f"{self.url}{f'/s/{self.space}' if self.space else ''}{path}"

    def _request(self, method: str, url: str, **kw: Any) -> requests.Response:
        try:
            resp = self.session.request(method, url, timeout=self.request_timeout, **kw)
        except requests.RequestException as exc:
            raise KibanaUnavailable(f"cannot reach Kibana at {self.url}: {exc}") from exc
        if resp.status_code == 401:
            raise KibanaAuthError(
                f"Kibana at {self.url} refused the credentials (401 on {method} {url}): pass --api-key "
                "(the base64 'encoded' value of a Kibana/Elasticsearch API key) or --user/--password of a user that exists"
            )
        if resp.status_code == 403:
            raise KibanaAuthError(
                f"the Kibana user lacks a privilege for {method} {url} (403): it needs 'All' on Saved Objects Management, "
                f"Dashboard, Discover and Visualize{' and the Spaces manage privilege' if 'spaces' in url else ''}; {resp.text[:300]}"
            )
        return resp

    # -- steps ----------------------------------------------------------------

    def wait_until_available(self, *, timeout: float = 120.0) -> str:
        """Poll ``GET /api/status`` until its overall level is ``available``; returns Kibana's version.

        Connection errors, 5xx and levels other than ``available`` are retried
        with backoff (0.5 s doubling to 5 s) until ``timeout`` seconds have passed.
        """
        deadline = time.monotonic() + timeout
        delay = 0.5
        last = "no answer"
        while True:
            try:
                resp = self._request("GET", f"{self.url}/api/status")
            except KibanaUnavailable as exc:
                last = str(exc)
            else:
                try:
                    body = resp.json()
                except ValueError:
                    body = {}
                overall = (body.get("status") or {}).get("overall") or {}
                level = overall.get("level") or overall.get("state")
                version = (body.get("version") or {}).get("number", "unknown")
                if resp.status_code == 200 and level in ("available", "green"):
                    return version
                if resp.status_code < 500 and resp.status_code != 200:
                    raise KibanaRequestError("unexpected answer to GET /api/status", status=resp.status_code, body=resp.text)
                last = f"HTTP {resp.status_code}, overall level {level!r}: {overall.get('summary', '')}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KibanaUnavailable(f"Kibana at {self.url} was not available after {timeout:g} s (last: {last})")
            self._sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)

    def ensure_space(self, *, name: str | None = None) -> bool:
        """Create ``self.space`` unless it exists; True if it was created."""
        if not self.space:
            return False
        url = f"{self.url}/api/spaces/space/{self.space}"
        resp = self._request("GET", url)
        if resp.status_code == 200:
            return False
        if resp.status_code != 404:
            raise KibanaRequestError(f"cannot read space {self.space}", status=resp.status_code, body=resp.text)
        body = {"id": self.space, "name": name or self.space, "description": "kubepulse dashboards", "disabledFeatures": []}
        resp = self._request("POST", f"{self.url}/api/spaces/space", json=body)
        if resp.status_code not in (200, 201):
            raise KibanaRequestError(f"cannot create space {self.space}", status=resp.status_code, body=resp.text)
        return True

    def import_objects(self, objects: list[dict[str, Any]]) -> int:
        """Import with overwrite; returns ``successCount``, raises :class:`KibanaImportError` listing each failed object."""
        data = to_ndjson(objects).encode()
        resp = self._request(
            "POST",
            self._space_url("/api/saved_objects/_import"),
            params={"overwrite": "true"},
            files={"file": ("kubepulse.ndjson", data, "application/ndjson")},
        )
        if resp.status_code == 404 and self.space:
            raise KibanaRequestError(f"space {self.space!r} does not exist (pass --create-space)", status=404, body=resp.text)
        if resp.status_code != 200:
            raise KibanaRequestError("the saved objects import failed", status=resp.status_code, body=resp.text)
        body = resp.json()
        titles = {(o["type"], o["id"]): o["attributes"].get("title", "") for o in objects}
        errors = [_object_error(e, titles) for e in body.get("errors") or []]
        if errors or not body.get("success", False):
            raise KibanaImportError(errors, success_count=int(body.get("successCount", 0)))
        return int(body.get("successCount", 0))

    def provision(self, objects: list[dict[str, Any]], *, timeout: float = 120.0, create_space: bool = True) -> ImportReport:
        """All steps: wait, space, import; returns the import report with the dashboard URLs."""
        self.wait_until_available(timeout=timeout)
        created = self.ensure_space() if create_space else False
        count = self.import_objects(objects)
        return ImportReport(count, dashboard_urls(self.url, objects, space=self.space), created)


def _object_error(e: dict[str, Any], titles: dict[tuple[str, str], str]) -> ObjectError:
    err = e.get("error") or {}
    title = e.get("title") or (e.get("meta") or {}).get("title") or titles.get((e.get("type", ""), e.get("id", "")), "")
    missing = tuple(f"{r.get('type')} {r.get('id')}" for r in err.get("references") or [])
    detail = err.get("message") or err.get("reason") or ""
    return ObjectError(type=e.get("type", "?"), id=e.get("id", "?"), title=title, kind=err.get("type", "unknown"), detail=detail, missing=missing)
