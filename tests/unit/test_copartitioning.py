"""The worker's start-up partition check: which topics it covers, and what its message says."""

from __future__ import annotations

from models.settings import load_settings
from streams._runtime import partition_mismatch
from streams.app import create_app


def test_the_check_covers_every_input_and_every_table_changelog_of_the_worker() -> None:
    settings = load_settings(kafka={"topic_prefix": "p.", "consumer_group": "g"}, streams={"cluster_aggregates": True})
    rt = create_app(settings).kubepulse_runtime  # type: ignore[attr-defined]
    assert rt.copartitioned() == [
        "g-cluster_to_aggregates-changelog", "g-event_key_to_rules-changelog", "g-node_to_state-changelog",
        "g-quota_key_to_rules-changelog", "p.kubepulse.aggregates-repartition.v1", "p.kubepulse.events.v1",
        "p.kubepulse.metrics.v1", "p.kubepulse.quotas.v1",
    ]


def test_matching_counts_and_missing_topics_are_no_problem() -> None:
    assert partition_mismatch({"a": 4, "b": 4}, 4) is None
    assert partition_mismatch({}, 4) is None


def test_mixed_counts_offer_only_recreating_the_wrong_topics() -> None:
    msg = partition_mismatch({"in.metrics": 8, "in.quotas": 3, "g-x-changelog": 1}, 8)
    assert msg is not None
    assert "is 8" in msg and "KUBEPULSE_KAFKA__TOPIC_PARTITIONS" in msg
    assert "topic g-x-changelog has 1 partition; topic in.quotas has 3 partitions." in msg
    assert msg.endswith("Fix: recreate the topics g-x-changelog, in.quotas with 8 partitions.")
    assert "in.metrics" not in msg and "set kafka.topic_partitions to" not in msg
