"""A ResourceQuota list item becomes a QuotaScrape: status over spec, plain numbers, clear errors."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from collectors._quotas import parse_quota
from collectors.errors import MalformedPayload
from collectors.testing import payloads as k

AT = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def test_status_hard_and_used_become_cores_bytes_and_counts() -> None:
    obj = k.resourcequota(
        "shop",
        "compute",
        hard={"requests.cpu": "1500m", "limits.memory": "8Gi", "pods": "10", "count/deployments.apps": "5", "services.loadbalancers": "0"},
        used={"requests.cpu": "250m", "limits.memory": "1.5Gi", "pods": "3", "count/deployments.apps": "1", "services.loadbalancers": "0"},
    )
    q = parse_quota(obj, cluster="prod", at=AT)
    assert (q.key, q.timestamp, q.source) == ("prod/shop/compute", AT, "kubernetes")
    assert q.hard == {"requests.cpu": 1.5, "limits.memory": 8589934592.0, "pods": 10.0, "count/deployments.apps": 5.0, "services.loadbalancers": 0.0}
    assert q.used == {"requests.cpu": 0.25, "limits.memory": 1610612736.0, "pods": 3.0, "count/deployments.apps": 1.0, "services.loadbalancers": 0.0}


def test_status_hard_wins_over_a_spec_the_controller_has_not_caught_up_with() -> None:
    obj = k.resourcequota("shop", "compute", hard={"pods": "10"}, used={"pods": "4"})
    obj["spec"]["hard"] = {"pods": "2", "secrets": "5"}  # just edited; status still holds what is enforced
    q = parse_quota(obj, cluster="prod", at=AT)
    assert (q.hard, q.used) == ({"pods": 10.0}, {"pods": 4.0})


@pytest.mark.parametrize("status", [None, {}], ids=["no status field", "empty status"])
def test_a_quota_not_counted_yet_is_published_from_spec_hard_with_nothing_used(status: dict | None) -> None:
    obj = k.resourcequota("batch", "fresh", hard={"requests.memory": "512Mi", "pods": "4"})
    if status is None:
        del obj["status"]
    q = parse_quota(obj, cluster="prod", at=AT)
    assert (q.hard, q.used) == ({"requests.memory": 536870912.0, "pods": 4.0}, {})


def test_a_quantity_that_is_not_one_is_a_malformed_payload_naming_the_quota() -> None:
    obj = k.resourcequota("shop", "compute", hard={"pods": "10"}, used={"pods": "lots"})
    with pytest.raises(MalformedPayload, match=r"ResourceQuota shop/compute: status.used: not a quantity"):
        parse_quota(obj, cluster="prod", at=AT)


def test_a_quota_without_namespace_is_a_malformed_payload() -> None:
    with pytest.raises(MalformedPayload, match="without metadata.namespace/name"):
        parse_quota({"metadata": {"name": "x"}, "spec": {"hard": {"pods": "1"}}}, cluster="prod", at=AT)
