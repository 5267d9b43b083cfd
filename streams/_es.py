"""Elasticsearch clients from the settings, and the idempotent install of kubepulse's index templates."""

from __future__ import annotations

import logging
from typing import Any

from elasticsearch import ApiError, AsyncElasticsearch, Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from models.settings import Settings
from streams._mappings import component_templates, index_templates, template_name

__all__ = ["ElasticsearchSetupError", "async_client", "sync_client", "install_templates", "ilm_running"]

log = logging.getLogger(__name__)


class ElasticsearchSetupError(RuntimeError):
    """Elasticsearch cannot take kubepulse's templates as configured; the message says what to change."""


def _client_kwargs(settings: Settings, url: str | None, max_retries: int) -> dict[str, Any]:
    es = settings.elasticsearch
    kw: dict[str, Any] = {
        "hosts": [url or es.url],
        "request_timeout": es.request_timeout_s,
        # The indexer retries with its own backoff (and blocks while Elasticsearch
        # is down); transport-level retries would only hide the outage from it.
        "max_retries": max_retries,
        "retry_on_timeout": max_retries > 0,
        # orjson serialises a bulk body several times faster than the stdlib.
        "serializer": OrjsonSerializer(),
    }
    if es.api_key is not None:
        kw["api_key"] = es.api_key.get_secret_value()
    if es.username is not None and es.password is not None:
        kw["basic_auth"] = (es.username, es.password.get_secret_value())
    if es.ca_certs is not None:
        kw["ca_certs"] = str(es.ca_certs)
    if not es.verify_certs:
        kw["verify_certs"] = False
    return kw


def async_client(settings: Settings, *, url: str | None = None, max_retries: int = 0) -> AsyncElasticsearch:
    """An async client for ``settings.elasticsearch`` (``url`` overrides where it connects, e.g. a test proxy)."""
    return AsyncElasticsearch(**_client_kwargs(settings, url, max_retries))


def sync_client(settings: Settings, *, url: str | None = None, max_retries: int = 3) -> Elasticsearch:
    """A blocking client for the CLI, the janitor and the benchmark baseline."""
    return Elasticsearch(**_client_kwargs(settings, url, max_retries))


async def ilm_running(client: AsyncElasticsearch) -> bool:
    """Whether the cluster has ILM and it runs (a minimal server has no ``_ilm`` endpoints at all)."""
    try:
        resp = await client.ilm.get_status()
    except ApiError:
        return False
    return resp.get("operation_mode") == "RUNNING"


async def install_templates(client: AsyncElasticsearch, settings: Settings) -> list[str]:
    """Put the component and index templates of every kind; safe to repeat. Returns the names put.

    With ``elasticsearch.ilm_policy`` set, ILM must run and the policy must
    exist, or this raises :class:`ElasticsearchSetupError` naming the fix:
    a template naming a missing policy would make every new daily index fail
    its lifecycle silently.
    """
    policy = settings.elasticsearch.ilm_policy
    if policy:
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
    names = []
    try:
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
