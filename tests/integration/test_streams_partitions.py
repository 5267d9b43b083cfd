"""A worker whose input or table topics do not have ``kafka.topic_partitions`` partitions refuses to start.

Faust keeps a key's table state on the changelog partition numbered like its input partition; with
other counts a SIGKILLed worker's successor restored the wrong state (quota rules lost, an alert left
firing). The check runs in ``kubepulse worker`` before Faust consumes anything. That a worker whose
topics all have the right count starts and works is what ``test_streams_pipeline`` shows.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubepulse._cli_streams import create_topics
from models.settings import Settings, load_settings
from streams.topics import EVENTS, METRICS, QUOTAS
from tests.kafkautil import create_topics as create_test_topics, new_run_id
from tests.streamsutil import Worker

INPUTS = (METRICS, EVENTS, QUOTAS)


def _settings() -> Settings:
    run = new_run_id()
    return load_settings(kafka={"topic_prefix": f"t{run}.", "consumer_group": f"kp-test-{run}", "topic_partitions": 2},
                         http_port=0)


def _refused(settings: Settings, log: Path) -> str:
    """Run a worker, expect it to exit 2 at start; its output."""
    w = Worker(settings, log)
    try:
        code = w.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        code = None  # still running 60 s later: it started consuming
    finally:
        w.stop()
    out = log.read_text(errors="replace")
    assert code == 2, f"worker exit code {code}\n{out[-4000:]}"
    return out


@pytest.mark.parametrize("which", ["input", "changelog"])
async def test_a_worker_refuses_to_start_when_a_topic_it_keys_state_by_has_another_partition_count(
    stack: dict[str, str], tmp_path: Path, which: str
) -> None:
    settings = _settings()
    topic = (QUOTAS.named(settings.kafka.topic_prefix) if which == "input"
             else f"{settings.kafka.consumer_group}-quota_key_to_rules-changelog")
    await create_test_topics(settings, [topic], partitions=3)  # before the worker creates it with 2
    await create_topics(settings)  # the rest with kafka.topic_partitions, as `kubepulse worker` does
    out = _refused(settings, tmp_path / "worker.log")
    assert f"topic {topic} has 3 partitions" in out
    assert "kafka.topic_partitions (env KUBEPULSE_KAFKA__TOPIC_PARTITIONS) is 2" in out
    assert f"recreate the topic {topic} with 2 partitions" in out
    assert "has 2 partitions" not in out  # only the wrong topic is named
    assert "Traceback" not in out


async def test_when_every_existing_topic_has_the_same_other_count_the_fix_offered_is_that_count(
    stack: dict[str, str], tmp_path: Path
) -> None:
    settings = _settings()
    # The inputs come from another team's cluster with 3 partitions each; no changelog exists yet.
    await create_test_topics(settings, [s.named(settings.kafka.topic_prefix) for s in INPUTS], partitions=3)
    settings3 = settings.model_copy(deep=True)
    settings3.kafka.topic_partitions = 3
    await create_topics(settings3)
    out = _refused(settings, tmp_path / "worker.log")
    assert "set kafka.topic_partitions to 3 (then every topic agrees)" in out
    for s in INPUTS:
        assert f"topic {s.named(settings.kafka.topic_prefix)} has 3 partitions" in out

