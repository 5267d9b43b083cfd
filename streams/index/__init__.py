"""The index contract: what kubepulse stores in Elasticsearch, under which names, and how to set it up.

This package is what the rest of kubepulse (and anyone querying the indices)
uses: the indexer, the CLI (``kubepulse es``, ``kubepulse top``), Kibana's
saved objects. Everything else in it is private.

* Names: :data:`INDEX_KINDS` (one template, alias and daily index series each),
  :data:`INDEXED_KINDS` (the record kinds they hold), :data:`REPORT_KINDS` (the
  report kinds, written by ``kubepulse report run``), :func:`alias_name`,
  :func:`index_name`, :func:`template_name`.
* Fields: :func:`field_types` (every field of a kind and its type),
  :func:`rollup_field` (a metric's root in a rollup document), :func:`mappings`,
  :func:`index_templates`.
* Documents: :func:`documents_for` (what a record becomes), :class:`Document`.
* Setup and upkeep: :func:`install_templates`, :func:`create_first_indices`,
  :func:`run_janitor`, :func:`storage_report`, and the clients
  :func:`async_client` / :func:`sync_client`.
"""

from streams._es import async_client, sync_client
from streams.index._documents import (
    DEFAULT_ROLLUPS,
    Document,
    doc_id,
    documents_for,
    index_name,
    kind_of,
    parse_index_name,
    series_doc_id,
)
from streams.index._fields import (
    EXCLUDED,
    INDEX_KINDS,
    INDEXED_KINDS,
    REPORT_KINDS,
    ROLLUP_METRICS,
    ROLLUP_STATS,
    ROLLUP_WINDOWS,
    SORTED_KINDS,
    alias_name,
    component_templates,
    field_types,
    fields_of,
    index_templates,
    mappings,
    record_kind,
    rollup_field,
    rollup_index_kind,
    template_name,
)
from streams.index._janitor import JanitorReport, retention_days, retention_plan, run_janitor
from streams.index._storage import storage_report
from streams.index._templates import ElasticsearchSetupError, create_first_indices, ilm_running, install_templates

__all__ = [
    "INDEX_KINDS",
    "INDEXED_KINDS",
    "REPORT_KINDS",
    "ROLLUP_WINDOWS",
    "ROLLUP_STATS",
    "ROLLUP_METRICS",
    "SORTED_KINDS",
    "DEFAULT_ROLLUPS",
    "EXCLUDED",
    "Document",
    "documents_for",
    "doc_id",
    "series_doc_id",
    "kind_of",
    "index_name",
    "parse_index_name",
    "alias_name",
    "template_name",
    "record_kind",
    "rollup_index_kind",
    "rollup_field",
    "fields_of",
    "field_types",
    "mappings",
    "component_templates",
    "index_templates",
    "ElasticsearchSetupError",
    "install_templates",
    "create_first_indices",
    "ilm_running",
    "JanitorReport",
    "retention_plan",
    "retention_days",
    "run_janitor",
    "storage_report",
    "async_client",
    "sync_client",
]
