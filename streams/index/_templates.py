"""Installs kubepulse's index templates (idempotently) and creates the first index of every kind."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

from elasticsearch import ApiError, AsyncElasticsearch

from models.settings import Settings
from streams.index._documents import index_name
from streams.index._fields import INDEX_KINDS, alias_name, component_templates, index_templates, template_name

__all__ = ["ElasticsearchSetupError", "install_templates", "create_first_indices", "ilm_running"]

log = logging.getLogger(__name__)

_RETIRED_KINDS = ("rollups",)
"""Index kinds kubepulse no longer writes: ``rollups`` (kubepulse.rollups.v1, per series) became ``rollups-1m`` and
``rollups-1h``. Its template would match their indices at the same priority, which Elasticsearch refuses."""


class ElasticsearchSetupError(RuntimeError):
    """Elasticsearch cannot take kubepulse's templates as configured; the message says what to change."""


async def ilm_running(client: AsyncElasticsearch) -> bool:
    """Whether the cluster has ILM and it runs (a minimal server has no ``_ilm`` endpoints at all)."""
    try:
        resp = await client.ilm.get_status()
    except ApiError:
        return False
    return resp.get("operation_mode") == "RUNNING"


async def _check_ilm(client: AsyncElasticsearch, policy: str) -> None:
    if not await ilm_running(client):
        raise ElasticsearchSetupError(
            f"elasticsearch.ilm_policy is {policy!r} but this cluster has no running ILM (GET _ilm/status): "
            "unset KUBEPULSE_ELASTICSEARCH__ILM_POLICY and let `kubepulse es janitor` delete old indices"
        )
    try:
        await client.ilm.get_lifecycle(name=policy)
    except ApiError as exc:
        raise ElasticsearchSetupError(
            f"ILM policy {policy!r} does not exist (PUT _ilm/policy/{policy} first, or unset elasticsearch.ilm_policy)"
        ) from exc


async def _remove_retired(client: AsyncElasticsearch, settings: Settings) -> list[str]:
    """Delete the templates of retired kinds that kubepulse installed (``_meta.managed_by``); others are left alone."""
    removed = []
    for kind in _RETIRED_KINDS:
        name = template_name(settings, kind)
        found = await client.options(ignore_status=404).indices.get_index_template(name=name)
        for t in found.get("index_templates", []):
            if (t["index_template"].get("_meta") or {}).get("managed_by") == "kubepulse":
                await client.indices.delete_index_template(name=name)
                removed.append(name)
                log.warning("deleted the retired template %s (its indices are left to the janitor or to you)", name)
    return removed


async def install_templates(client: AsyncElasticsearch, settings: Settings) -> list[str]:
    """Put the component and index templates of every kind; safe to repeat. Returns the names put.

    With ``elasticsearch.ilm_policy`` set, ILM must run and the policy must
    exist, or this raises :class:`ElasticsearchSetupError` naming the fix:
    a template naming a missing policy would make every new daily index fail
    its lifecycle silently.
    """
    policy = settings.elasticsearch.ilm_policy
    if policy:
        await _check_ilm(client, policy)
    names = []
    try:
        await _remove_retired(client, settings)
        for name, body in component_templates(settings).items():
            await client.cluster.put_component_template(name=name, template=body["template"], meta=body["_meta"])
            names.append(name)
        for kind, body in index_templates(settings).items():
            name = template_name(settings, kind)
            await client.indices.put_index_template(
                name=name,
                index_patterns=body["index_patterns"],
                priority=body["priority"],
                composed_of=body["composed_of"],
                template=body["template"],
                meta=body["_meta"],
            )
            names.append(name)
    except ApiError as exc:
        raise ElasticsearchSetupError(f"Elasticsearch refused kubepulse's templates: {exc}") from exc
    log.info("installed %d Elasticsearch templates for prefix %s", len(names), settings.elasticsearch.index_prefix)
    return names


async def create_first_indices(client: AsyncElasticsearch, settings: Settings, *, today: date | None = None) -> list[str]:
    """Create today's daily index of every kind that has no index yet; returns the names created.

    A Kibana data view resolves its fields from the indices behind its alias, and an alias exists only
    once an index does: without this, a kind that has had no document yet (alerts on a quiet fleet,
    incidents with real clusters) shows "field not found" in every panel that reads it. The empty index
    is an ordinary daily index (the templates give it its mappings and aliases), so the janitor deletes it
    with its day. Call after :func:`install_templates`.
    """
    day = (today or datetime.now(UTC).date()).strftime("%Y.%m.%d")
    prefix = settings.elasticsearch.index_prefix
    created = []
    try:
        for kind in INDEX_KINDS:
            if await client.indices.exists_alias(name=alias_name(settings, kind)):
                continue
            name = index_name(prefix, kind, day)
            # 400 resource_already_exists: another setup (or the indexer) made it first, which is as good.
            resp = await client.options(ignore_status=400).indices.create(index=name)
            if resp.get("acknowledged"):
                created.append(name)
            elif (resp.get("error") or {}).get("type") != "resource_already_exists_exception":
                raise ElasticsearchSetupError(f"Elasticsearch refused to create {name}: {resp.get('error')}")
    except ApiError as exc:
        raise ElasticsearchSetupError(f"Elasticsearch refused to create kubepulse's first indices: {exc}") from exc
    return created
