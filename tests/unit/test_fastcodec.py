"""models._fastcodec: the compiled decoder accepts exactly what the pydantic contract accepts, with the same values."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
import pytest
from pydantic import ValidationError

from collectors.simulator import Fleet
from models._fastcodec import _slash_check, fast_decoder, struct_for
from models.records import AlertTransition, NodeScrape
from streams._samples import node_scrape

DECODE = fast_decoder(NodeScrape)
FAST = msgspec.json.Decoder(struct_for(NodeScrape))
HOLDS_SLASH = _slash_check(NodeScrape)


def pydantic_result(data: bytes) -> dict[str, Any] | None:
    try:
        return NodeScrape.model_validate_json(data).model_dump(mode="json")
    except (ValidationError, UnicodeDecodeError):  # pydantic lets invalid UTF-8 through as UnicodeDecodeError
        return None


def fast_result(data: bytes) -> dict[str, Any] | None:
    try:
        s = FAST.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if HOLDS_SLASH(s):
        return None
    return NodeScrape.model_validate_json(msgspec.json.encode(s)).model_dump(mode="json")


def scrapes() -> list[bytes]:
    fleet = Fleet(clusters=1, nodes_per_cluster=2, pods_per_node=5, containers_per_pod=2, seed=9, incident_every_s=60)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = [node_scrape(pods=3).model_dump_json().encode()]
    for i in range(6):
        out += [s.model_dump_json().encode() for s in fleet.step(t0 + timedelta(seconds=15 * i))[0]]
    return out


def test_every_simulated_scrape_decodes_to_the_same_values_and_keeps_the_models_properties() -> None:
    for data in scrapes():
        assert fast_result(data) == pydantic_result(data) is not None
    s = DECODE(scrapes()[0])
    assert s.key == "c1/n1" and s.pods[0].volumes[0].used_share == pytest.approx(2**30 / (100 * 2**30))


LEAVES = [-1, 0, 1, 1.5, -0.0, 1e308, 2**63 - 1, -(2**63), "x", "a/b", "/", "", "é" * 254, None, True, [], {}, "2026-01-01T00:00:00Z"]


def _paths(obj: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*path, i))
    return out


def _set(obj: Any, path: tuple, value: Any) -> None:
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def test_thousands_of_mutated_scrapes_are_accepted_or_rejected_by_both_alike() -> None:
    rnd = random.Random(11)
    base = orjson.loads(scrapes()[-1])
    paths = [p for p in _paths(base) if p]
    fast_only = 0
    for _ in range(3000):
        doc = copy.deepcopy(base)
        for _ in range(rnd.choice((1, 1, 2))):
            path = rnd.choice(paths)
            try:
                kind = rnd.random()
                if kind < 0.75:
                    _set(doc, path, rnd.choice(LEAVES))
                elif kind < 0.9 and isinstance(path[-1], str):
                    parent = doc
                    for p in path[:-1]:
                        parent = parent[p]
                    parent.pop(path[-1], None)
                else:
                    parent = doc
                    for p in path[:-1]:
                        parent = parent[p]
                    if isinstance(parent, dict):
                        parent["unknown_field"] = 1
            except (KeyError, IndexError, TypeError, AttributeError):
                continue
        data = orjson.dumps(doc)
        slow, fast = pydantic_result(data), fast_result(data)
        assert fast is None or fast == slow, f"the fast decoder accepted what the model rejects or changed it: {data[:300]!r}"
        fast_only += fast is None and slow is not None
    assert fast_only == 0, f"{fast_only} inputs only pydantic accepted (the fallback keeps them, but say why)"


@pytest.mark.parametrize("raw", [
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01T00:00:00Z","node_stats":{"cpu_cores":NaN}}',
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01T00:00:00Z","node_stats":{"cpu_cores":Infinity}}',
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01T00:00:00Z","node_stats":{"cpu_cores":1e999}}',
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01T00:00:00"}',
    b'{"cluster":"c1","node":"n1","timestamp":1767225600}',
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01"}',
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01T00:00:00+02:00"}',
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01 00:00:00Z"}',
    b'{"cluster":"\xff\xfe","node":"n1","timestamp":"2026-01-01T00:00:00Z"}',
    b'{"cluster":"c1","cluster":"c2","node":"n1","timestamp":"2026-01-01T00:00:00Z"}',
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01T00:00:00Z","pods":[{"namespace":"a","name":"b","labels":{"k":7}}]}',
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01T00:00:00Z","source":"kubelet"}',
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01T00:00:00Z","schema_version":2}',
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01T00:00:00Z","node_stats":{"fs":{"inodes_free":18446744073709551615}}}',
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01T00:00:00Z","node_stats":{"fs":{"inodes_free":1180591620717411303424}}}',
    b'{"cluster":"c1","node":"n1","timestamp":"2026-01-01T00:00:00Z","node_stats":{"fs":{"inodes_free":-1}}}',
    b"", b"[]", b"null", b'{"cluster":"c1"',
])
def test_hostile_inputs_get_the_same_verdict(raw: bytes) -> None:
    slow, fast = pydantic_result(raw), fast_result(raw)
    assert fast == slow or (fast is None and slow is not None), raw
    if slow is None:
        with pytest.raises((ValidationError, UnicodeDecodeError)):
            DECODE(raw)  # the reason is the model's own
    else:
        assert DECODE(raw) is not None


def test_a_model_with_validators_of_its_own_is_not_compiled() -> None:
    with pytest.raises(TypeError, match="validators"):
        struct_for(AlertTransition)
