"""A fake Kibana that follows the status, spaces and saved-objects import APIs strictly (aiohttp, in its own thread).

It runs in a thread with its own event loop because the provisioner uses
blocking ``requests``. What it checks, as Kibana does:

* ``GET /api/status``: answers 503 with ``overall.level: unavailable`` for the
  first ``unavailable_polls`` polls, then 200 ``available``.
* credentials: with ``api_key`` set, ``Authorization: ApiKey <key>``; with
  ``basic`` set, HTTP basic; anything else is 401 with Kibana's body.
* writes need ``kbn-xsrf`` (400 otherwise, Kibana's message).
* ``POST [/s/<space>]/api/saved_objects/_import``: multipart with exactly one
  part named ``file`` whose filename ends in ``.ndjson``; every line a JSON
  object with string ``id``/``type``, object ``attributes``, list
  ``references`` of ``{type, id, name}``; unknown types -> ``unsupported_type``,
  an existing id without ``overwrite=true`` -> ``conflict``, a reference to an
  object neither in the file nor in the space -> ``missing_references``;
  ``fail`` lists ids to reject with ``unknown``. Answers
  ``{success, successCount, successResults, errors}``.
* ``GET /api/spaces/space/<id>`` 200/404, ``POST /api/spaces/space`` (id pattern, name required).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeKibana", "Request"]

TYPES = {"index-pattern", "lens", "visualization", "search", "dashboard", "tag", "map"}
_SPACE_ID = re.compile(r"^[a-z0-9_-]+$")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None
    status: int = 0


@dataclass
class FakeKibana:
    api_key: str | None = None
    basic: tuple[str, str] | None = None
    unavailable_polls: int = 0
    version: str = "8.19.21"
    fail: dict[str, str] = field(default_factory=dict)
    """Object id -> error message: the import rejects these with error type ``unknown``."""
    forbid_space_create: bool = False
    """Answer ``POST /api/spaces/space`` with 403, as for a user without the Spaces manage privilege."""
    spaces: set[str] = field(default_factory=lambda: {"default"})
    objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    """Space -> (type, id) -> object, what Kibana would now hold."""
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Payload problems found (each is also answered with a 4xx)."""
    url: str = ""

    def __post_init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._polls = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> str:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_get("/api/status", self._status)
            app.router.add_get("/api/spaces/space/{id}", self._get_space)
            app.router.add_post("/api/spaces/space", self._post_space)
            app.router.add_post("/api/saved_objects/_import", self._import)
            app.router.add_post("/s/{space}/api/saved_objects/_import", self._import)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-kibana", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake Kibana did not start")
        return self.url

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # -- helpers -----------------------------------------------------------------

    def _record(self, request: web.Request, body: Any = None) -> Request:
        r = Request(request.method, request.path, dict(request.query), dict(request.headers), body)
        self.requests.append(r)
        return r

    def _answer(self, r: Request, status: int, body: Any) -> web.Response:
        r.status = status
        return web.json_response(body, status=status)

    def _authorized(self, request: web.Request) -> bool:
        got = request.headers.get("Authorization", "")
        if self.api_key is not None:
            return got == f"ApiKey {self.api_key}"
        if self.basic is not None:
            return got == "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
        return True

    def _guard(self, request: web.Request, r: Request, *, write: bool) -> web.Response | None:
        if not self._authorized(request):
            return self._answer(
                r,
                401,
                {"statusCode": 401, "error": "Unauthorized", "message": "[security_exception]: unable to authenticate user"},
            )
        if write and "kbn-xsrf" not in request.headers:
            self.problems.append(f"{request.method} {request.path} without kbn-xsrf")
            return self._answer(r, 400, {"statusCode": 400, "error": "Bad Request", "message": "Request must contain a kbn-xsrf header."})
        return None

    # -- routes ------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.Response:
        r = self._record(request)
        if (denied := self._guard(request, r, write=False)) is not None:
            return denied
        self._polls += 1
        if self._polls <= self.unavailable_polls:
            overall = {"level": "unavailable", "summary": "Waiting for Elasticsearch"}
            return self._answer(r, 503, {"name": "kibana", "version": {"number": self.version}, "status": {"overall": overall}})
        overall = {"level": "available", "summary": "All services and plugins are available"}
        return self._answer(r, 200, {"name": "kibana", "version": {"number": self.version}, "status": {"overall": overall}})

    async def _get_space(self, request: web.Request) -> web.Response:
        r = self._record(request)
        if (denied := self._guard(request, r, write=False)) is not None:
            return denied
        sid = request.match_info["id"]
        if sid not in self.spaces:
            return self._answer(r, 404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})
        return self._answer(r, 200, {"id": sid, "name": sid, "disabledFeatures": []})

    async def _post_space(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        r = self._record(request, body)
        if (denied := self._guard(request, r, write=True)) is not None:
            return denied
        if self.forbid_space_create:
            return self._answer(r, 403, {"statusCode": 403, "error": "Forbidden", "message": "Unable to create Space"})
        bad = []
        if not isinstance(body, dict):
            bad.append("body is not a JSON object")
        else:
            if not isinstance(body.get("id"), str) or not _SPACE_ID.match(body["id"]):
                bad.append(f"[id]: must be lower case a-z, 0-9, '_', and '-' (got {body.get('id')!r})")
            if not isinstance(body.get("name"), str) or not body["name"]:
                bad.append("[name]: expected value of type [string]")
            extra = set(body) - {"id", "name", "description", "disabledFeatures", "initials", "color", "imageUrl", "solution"}
            if extra:
                bad.append(f"definition for these keys is missing: {sorted(extra)}")
        if bad:
            self.problems += bad
            return self._answer(r, 400, {"statusCode": 400, "error": "Bad Request", "message": "; ".join(bad)})
        if body["id"] in self.spaces:
            return self._answer(r, 409, {"statusCode": 409, "error": "Conflict", "message": f"A space with the identifier {body['id']} already exists."})
        self.spaces.add(body["id"])
        return self._answer(r, 200, body)

    async def _import(self, request: web.Request) -> web.Response:
        r = self._record(request)
        if (denied := self._guard(request, r, write=True)) is not None:
            return denied
        space = request.match_info.get("space", "default")
        if space not in self.spaces:
            return self._answer(r, 404, {"statusCode": 404, "error": "Not Found", "message": f"Saved object [space/{space}] not found"})
        parts = []
        if not request.content_type.startswith("multipart/form-data"):
            return self._bad(r, f"content type {request.content_type} is not multipart/form-data")
        reader = await request.multipart()
        async for part in reader:
            parts.append((part.name, part.filename, await part.read()))  # type: ignore[union-attr]
        if [p[0] for p in parts] != ["file"]:
            return self._bad(r, f"expected exactly one multipart field 'file', got {[p[0] for p in parts]}")
        _, filename, data = parts[0]
        r.body = {"filename": filename, "ndjson": bytes(data).decode()}
        if not filename or not filename.endswith(".ndjson"):
            return self._answer(r, 415, {"statusCode": 415, "error": "Unsupported Media Type", "message": f"Invalid file extension {filename}"})
        objects = []
        for n, line in enumerate(bytes(data).decode().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                return self._bad(r, f"line {n}: not JSON: {exc}")
            shape = _shape_problem(obj)
            if shape:
                return self._bad(r, f"line {n}: {shape}")
            objects.append(obj)
        overwrite = request.query.get("overwrite") == "true"
        held = self.objects.setdefault(space, {})
        in_file = {(o["type"], o["id"]) for o in objects}
        errors, results = [], []
        for o in objects:
            key = (o["type"], o["id"])
            meta = {"title": o["attributes"].get("title", "")}
            base = {"id": o["id"], "type": o["type"], "title": meta["title"], "meta": meta}
            if o["type"] not in TYPES:
                errors.append({**base, "error": {"type": "unsupported_type"}})
            elif o["id"] in self.fail:
                errors.append({**base, "error": {"type": "unknown", "message": self.fail[o["id"]], "statusCode": 500}})
            elif key in held and not overwrite:
                errors.append({**base, "error": {"type": "conflict"}})
            elif missing := [x for x in o["references"] if (x["type"], x["id"]) not in in_file and (x["type"], x["id"]) not in held]:
                errors.append({**base, "error": {"type": "missing_references", "references": [{"type": x["type"], "id": x["id"]} for x in missing]}})
            else:
                held[key] = o
                results.append({"id": o["id"], "type": o["type"], "meta": meta, **({"overwrite": True} if overwrite else {})})
        body = {"success": not errors, "successCount": len(results), "successResults": results}
        if errors:
            body["errors"] = errors
        return self._answer(r, 200, body)

    def _bad(self, r: Request, message: str) -> web.Response:
        self.problems.append(message)
        return self._answer(r, 400, {"statusCode": 400, "error": "Bad Request", "message": message})


def _shape_problem(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return "not a JSON object"
    for k in ("id", "type"):
        if not isinstance(obj.get(k), str) or not obj[k]:
            return f"missing or empty {k}"
    if not isinstance(obj.get("attributes"), dict):
        return "attributes is not an object"
    refs = obj.get("references")
    if not isinstance(refs, list):
        return "references is not a list"
    for x in refs:
        if not isinstance(x, dict) or not all(isinstance(x.get(k), str) and x[k] for k in ("type", "id", "name")):
            return f"reference {x!r} needs type, id and name"
    if "migrationVersion" not in obj and not isinstance(obj.get("typeMigrationVersion"), str):
        return "neither migrationVersion nor typeMigrationVersion"
    return None
