"""Elasticsearch clients from the settings (the index templates and the index contract are in ``streams.index``)."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch, Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from models.settings import Settings

__all__ = ["async_client", "sync_client"]


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
