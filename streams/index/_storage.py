"""What kubepulse's indices cost on disk: documents and bytes per kind, after a force-merge, and per sample."""

from __future__ import annotations

from typing import Any

from elasticsearch import Elasticsearch

from streams.index._documents import parse_index_name
from streams.index._fields import INDEX_KINDS, record_kind

__all__ = ["storage_report"]


def storage_report(
    client: Elasticsearch, prefix: str, *, samples: int | None = None, force_merge: bool = True, timeout_s: float = 1800.0
) -> dict[str, Any]:
    """Documents and primary bytes per index kind under ``prefix``; with ``samples``, bytes per sample.

    With ``force_merge`` (the default) every index is first merged into one segment
    (``_forcemerge?max_num_segments=1``), which is what a day's index becomes once it is no longer
    written: the numbers are then reproducible and free of not-yet-merged segments and deleted
    documents. A force-merge is heavy: run this on a benchmark's own prefix, never on indices still
    being written. Bytes are of primaries (``store.size_in_bytes``): replicas multiply them.

    ``samples`` is the number of raw samples the metrics documents hold (every non-null metric of every
    entity of every scrape, as the worker counts them). The result (a JSON-ready dict):

    ``kinds``: ``{kind: {"indices", "docs", "bytes"}}`` for every index kind found; ``docs`` and
    ``bytes``: their totals; ``rollup_doc_ratio`` and ``rollup_byte_ratio``: rollup documents (both
    windows) over raw metrics documents, and likewise bytes; with ``samples`` also
    ``raw_bytes_per_sample``, ``rollup_bytes_per_sample`` and ``es_bytes_per_sample`` (raw + rollups).
    """
    pattern = f"{prefix}-*"
    es = client.options(request_timeout=timeout_s)
    es.indices.refresh(index=pattern, allow_no_indices=True)
    if force_merge:
        es.indices.forcemerge(index=pattern, max_num_segments=1, allow_no_indices=True)
    stats = es.indices.stats(index=pattern, metric="docs,store", expand_wildcards="open")
    kinds: dict[str, dict[str, int]] = {}
    for name, st in (stats.get("indices") or {}).items():
        parsed = parse_index_name(prefix, name)
        if parsed is None:
            continue
        row = kinds.setdefault(parsed[0], {"indices": 0, "docs": 0, "bytes": 0})
        row["indices"] += 1
        row["docs"] += st["primaries"]["docs"]["count"]
        row["bytes"] += st["primaries"]["store"]["size_in_bytes"]
    ordered = {k: kinds[k] for k in INDEX_KINDS if k in kinds}
    raw = ordered.get("metrics", {"docs": 0, "bytes": 0})
    rollup_docs = sum(v["docs"] for k, v in ordered.items() if record_kind(k) == "rollups")
    rollup_bytes = sum(v["bytes"] for k, v in ordered.items() if record_kind(k) == "rollups")
    out: dict[str, Any] = {
        "prefix": prefix,
        "kinds": ordered,
        "docs": sum(v["docs"] for v in ordered.values()),
        "bytes": sum(v["bytes"] for v in ordered.values()),
        "rollup_doc_ratio": round(rollup_docs / raw["docs"], 4) if raw["docs"] else None,
        "rollup_byte_ratio": round(rollup_bytes / raw["bytes"], 4) if raw["bytes"] else None,
    }
    if samples:
        out["samples"] = samples
        out["raw_bytes_per_sample"] = round(raw["bytes"] / samples, 2)
        out["rollup_bytes_per_sample"] = round(rollup_bytes / samples, 2)
        out["es_bytes_per_sample"] = round((raw["bytes"] + rollup_bytes) / samples, 2)
    return out
