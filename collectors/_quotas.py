"""ResourceQuotas from the API server's list, as QuotaScrape records (what kubepulse.quotas.v1 carries).

One list of all namespaces per cluster per pass: a cluster has one or a few
quotas per namespace, so a single paged list costs the API server less than
a watch cache of its own would save us, and each pass publishes the state of
every quota at the pass time, which is what the quota alerts compare.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from collectors._inventory import quantity
from collectors.errors import MalformedPayload
from models.records import QuotaScrape


def _amounts(d: Any, *, what: str) -> dict[str, float]:
    if not isinstance(d, dict):
        raise MalformedPayload(f"{what} is not an object: {d!r:.80}")
    try:
        # Kubernetes writes every quantity as a string; the units follow from
        # the resource (cpu in cores, memory and storage in bytes, counts).
        return {str(k): quantity(str(v)) for k, v in d.items()}
    except ValueError as exc:
        raise MalformedPayload(f"{what}: not a quantity: {exc}") from exc


def parse_quota(obj: dict[str, Any], *, cluster: str, at: datetime) -> QuotaScrape:
    """One core/v1 ResourceQuota as a :class:`QuotaScrape` at time ``at``; raises :class:`MalformedPayload`.

    >>> from datetime import timezone
    >>> q = parse_quota(
    ...     {"metadata": {"namespace": "shop", "name": "compute"}, "spec": {"hard": {"requests.cpu": "2"}},
    ...      "status": {"hard": {"requests.cpu": "2"}, "used": {"requests.cpu": "1500m"}}},
    ...     cluster="prod", at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    >>> (q.key, q.hard, q.used)
    ('prod/shop/compute', {'requests.cpu': 2.0}, {'requests.cpu': 1.5})
    """
    try:
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
    except (KeyError, TypeError) as exc:
        raise MalformedPayload(f"cluster {cluster}: a ResourceQuota without metadata.namespace/name: {exc!r}") from exc
    what = f"cluster {cluster}: ResourceQuota {namespace}/{name}"
    status = obj.get("status") or {}
    if "hard" in status:
        # status.hard is what the API server enforces (the quota controller
        # copies spec.hard there when it recounts), status.used its count.
        hard = _amounts(status["hard"], what=f"{what}: status.hard")
        used = _amounts(status.get("used") or {}, what=f"{what}: status.used")
    else:
        # No status yet: the quota controller (kube-controller-manager) has
        # not counted this quota. Its limits are known from spec.hard; usage
        # is not, and an empty ``used`` says "not counted" rather than 0.
        hard = _amounts((obj.get("spec") or {}).get("hard") or {}, what=f"{what}: spec.hard")
        used = {}
    try:
        return QuotaScrape(cluster=cluster, namespace=namespace, name=name, timestamp=at, hard=hard, used=used)
    except ValidationError as exc:
        raise MalformedPayload(f"{what}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
