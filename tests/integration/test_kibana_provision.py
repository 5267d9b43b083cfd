"""``kubepulse kibana provision`` against a fake Kibana that follows the status, spaces and import APIs strictly."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from kibana import DEFAULT_PREFIX, KibanaImportError, KibanaUnavailable, build
from kibana.provision import Provisioner
from kubepulse.cli import app
from tests.fakes.kibana import FakeKibana

OBJECTS = build(DEFAULT_PREFIX)
DASHBOARD_IDS = [o["id"] for o in OBJECTS if o["type"] == "dashboard"]


@pytest.fixture
def kibana(request: pytest.FixtureRequest) -> Iterator[FakeKibana]:
    fake = FakeKibana(**getattr(request, "param", {}))
    fake.start()
    yield fake
    fake.stop()


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["kibana", "provision", *args])
    return result.exit_code, result.output


def _imports(fake: FakeKibana) -> list:
    return [r for r in fake.requests if r.path.endswith("/api/saved_objects/_import")]


@pytest.mark.parametrize("kibana", [{"api_key": "a2V5aWQ6c2VjcmV0", "unavailable_polls": 2}], indirect=True)
def test_provision_waits_for_available_then_imports_every_object_with_xsrf_and_api_key(kibana: FakeKibana) -> None:
    code, out = _cli("--url", kibana.url, "--api-key", "a2V5aWQ6c2VjcmV0", "--timeout", "30")
    assert code == 0, out
    statuses = [r.status for r in kibana.requests if r.path == "/api/status"]
    assert statuses == [503, 503, 200]
    (imp,) = _imports(kibana)
    assert imp.headers["kbn-xsrf"] == "true"
    assert imp.headers["Authorization"] == "ApiKey a2V5aWQ6c2VjcmV0"
    assert imp.query == {"overwrite": "true"}
    assert imp.body["filename"].endswith(".ndjson")
    assert len(imp.body["ndjson"].splitlines()) == len(OBJECTS)
    assert set(kibana.objects["default"]) == {(o["type"], o["id"]) for o in OBJECTS}
    assert kibana.problems == []
    assert f"imported {len(OBJECTS)} saved objects" in out
    for dash in DASHBOARD_IDS:
        assert f"{kibana.url}/app/dashboards#/view/{dash}" in out


def test_provisioning_twice_overwrites_the_same_objects(kibana: FakeKibana) -> None:
    assert _cli("--url", kibana.url)[0] == 0
    code, out = _cli("--url", kibana.url)
    assert code == 0, out
    assert len(_imports(kibana)) == 2
    assert len(kibana.objects["default"]) == len(OBJECTS)
    assert f"imported {len(OBJECTS)} saved objects" in out


@pytest.mark.parametrize("kibana", [{"basic": ("elastic", "changeme")}], indirect=True)
def test_a_missing_space_is_created_once_and_the_urls_name_it(kibana: FakeKibana) -> None:
    args = ("--url", kibana.url, "--space", "ops", "--user", "elastic", "--password", "changeme")
    code, out = _cli(*args)
    assert code == 0, out
    creates = [r for r in kibana.requests if r.method == "POST" and r.path == "/api/spaces/space"]
    assert [c.body["id"] for c in creates] == ["ops"]
    assert creates[0].headers["Authorization"].startswith("Basic ")
    assert _imports(kibana)[0].path == "/s/ops/api/saved_objects/_import"
    assert len(kibana.objects["ops"]) == len(OBJECTS) and "default" not in kibana.objects
    assert f"{kibana.url}/s/ops/app/dashboards#/view/{DASHBOARD_IDS[0]}" in out
    assert _cli(*args)[0] == 0
    assert len([r for r in kibana.requests if r.method == "POST" and r.path == "/api/spaces/space"]) == 1


@pytest.mark.parametrize("kibana", [{"api_key": "right"}], indirect=True)
def test_wrong_credentials_exit_non_zero_with_a_credentials_message(kibana: FakeKibana) -> None:
    code, out = _cli("--url", kibana.url, "--api-key", "wrong", "--timeout", "5")
    assert code == 1
    assert "refused the credentials (401" in out and "--api-key" in out
    assert _imports(kibana) == []


def test_rejected_objects_are_listed_by_id_and_exit_non_zero(kibana: FakeKibana) -> None:
    kibana.fail = {DASHBOARD_IDS[0]: "dashboard migration failed"}
    code, out = _cli("--url", kibana.url)
    assert code == 1
    assert f"dashboard {DASHBOARD_IDS[0]} ([kubepulse] Fleet overview): unknown: dashboard migration failed" in out
    assert f"({len(OBJECTS) - 1} imported)" in out


def test_missing_references_reported_by_kibana_name_the_missing_objects(kibana: FakeKibana) -> None:
    search = next(o for o in OBJECTS if o["type"] == "search")
    prov = Provisioner(kibana.url)
    with pytest.raises(KibanaImportError) as err:
        prov.import_objects([search])
    (e,) = err.value.errors
    assert (e.type, e.id, e.kind) == ("search", search["id"], "missing_references")
    assert e.missing == tuple(f"{r['type']} {r['id']}" for r in search["references"])


@pytest.mark.parametrize("kibana", [{"unavailable_polls": 10**6}], indirect=True)
def test_kibana_that_stays_unavailable_times_out_after_backing_off(kibana: FakeKibana) -> None:
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        time.sleep(s)

    prov = Provisioner(kibana.url, sleep=sleep)
    with pytest.raises(KibanaUnavailable, match=r"not available after 2 s .*'unavailable'"):
        prov.wait_until_available(timeout=2)
    assert waits[:2] == [0.5, 1.0]
    assert sum(waits) == pytest.approx(2.0, abs=0.3)


def test_unreachable_kibana_is_a_clear_error() -> None:
    prov = Provisioner("http://127.0.0.1:9", sleep=lambda s: None)
    with pytest.raises(KibanaUnavailable, match="cannot reach Kibana at http://127.0.0.1:9"):
        prov.wait_until_available(timeout=0)


def test_dry_run_lists_types_ids_and_titles_and_sends_nothing(kibana: FakeKibana) -> None:
    code, out = _cli("--url", kibana.url, "--space", "ops", "--dry-run")
    assert code == 0, out
    assert kibana.requests == []
    assert f"would import {len(OBJECTS)} saved objects" in out
    assert "index-pattern  kubepulse-dataview-metrics" in out
    assert "[kubepulse] Fleet overview" in out
    assert f"{kibana.url}/s/ops/app/dashboards#/view/kubepulse-dashboard-fleet-overview" in out


def test_a_file_with_a_dangling_reference_is_refused_before_anything_is_sent(kibana: FakeKibana, tmp_path) -> None:
    from kibana import to_ndjson

    dash = next(o for o in OBJECTS if o["type"] == "dashboard")
    path = tmp_path / "broken.ndjson"
    path.write_text(to_ndjson([dash]))
    code, out = _cli("--url", kibana.url, "--file", str(path))
    assert code == 2
    assert f"dashboard {dash['id']}: reference 2:indexpattern-datasource-layer-" in out and "-> index-pattern kubepulse-dataview-metrics" in out
    assert kibana.requests == []


@pytest.mark.parametrize("kibana", [{"forbid_space_create": True}], indirect=True)
def test_a_403_names_the_privileges_needed(kibana: FakeKibana) -> None:
    code, out = _cli("--url", kibana.url, "--space", "ops")
    assert code == 1
    assert "lacks a privilege for POST" in out and "Spaces manage privilege" in out
    assert _imports(kibana) == []
