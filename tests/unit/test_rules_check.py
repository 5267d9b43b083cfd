"""`kubepulse rules check` and the rule file parser: errors at FILE:LINE:COLUMN, a summary on success."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubepulse.cli import app
from streams.rules import RulesError, default_rules_path, parse_rules

BROKEN = """\
groups:
  - name: g
    rules:
      - alert: UnknownKind
        kind: thresholdz
        metric: container.cpu_cores
        threshold: 1
      - alert: BadThreshold
        metric: container.memory_limit_share
        threshold: high
      - alert: NoMetric
        threshold: 0.5
      - alert: Fine
        metric: container.cpu_cores
        threshold: 2
"""


def _check(tmp_path: Path, text: str) -> tuple[int, str, str]:
    f = tmp_path / "rules.yaml"
    f.write_text(text)
    result = CliRunner().invoke(app, ["rules", "check", str(f)])
    return result.exit_code, result.stdout, result.stderr


def test_rules_check_reports_unknown_kind_bad_threshold_and_missing_metric_at_their_lines(tmp_path: Path) -> None:
    code, out, err = _check(tmp_path, BROKEN)
    assert code == 1 and "OK" not in out
    f = tmp_path / "rules.yaml"
    lines = err.splitlines()
    assert lines[0] == f"{f}:5:15: groups[0].rules[0]: unknown kind 'thresholdz' (expected one of: threshold, rate, predict, event, anomaly)"
    assert lines[1] == f"{f}:10:20: groups[0].rules[1].threshold: Input should be a valid number (got 'high')"
    assert lines[2] == f"{f}:11:9: groups[0].rules[2]: missing required key 'metric'"
    assert lines[3] == f"{f}: 3 error(s)"


def test_rules_check_accepts_the_default_pack_and_summarises_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["rules", "check", str(default_rules_path())])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"{default_rules_path()}: OK, 23 rules in 5 groups (")
    assert "5 predict" in result.stdout and "6 event" in result.stdout


def test_rules_list_shows_the_default_pack() -> None:
    result = CliRunner().invoke(app, ["rules", "list"])
    assert result.exit_code == 0
    assert "kubernetes-storage/KubePersistentVolumeFillingUp [critical] threshold: volume.used_share > 0.97 for 60s" in result.stdout


@pytest.mark.parametrize(
    ("snippet", "line", "message"),
    [
        ("        metric: container.memroy_limit_share\n        threshold: 0.5\n", 5, "unknown metric 'container.memroy_limit_share' (did you mean container.memory_limit_share"),
        ("        metric: container.cpu_cores\n        threshold: 1\n        matchers: ['namespace=~\"prod-(.*\"']\n", 7, "invalid regex"),
        ("        metric: container.cpu_cores\n        threshold: 1\n        annotations:\n          summary: \"{{ $labels.pod | bogus }}\"\n", 8, "template: unknown template function 'bogus'"),
        ("        metric: container.cpu_cores\n        threshold: 1\n        thresold: 2\n", 7, "unknown key 'thresold'"),
        ("        metric: container.cpu_cores\n        threshold: 1\n        for: 5 minutes\n", 7, "'5 minutes' is not a duration"),
        # Prometheus rule files have no decimal seconds (the alerting config, Alertmanager's, has).
        ("        metric: container.cpu_cores\n        threshold: 1\n        for: 0.5s\n", 7, "'0.5s' is not a duration"),
        ("        metric: container.cpu_cores\n        threshold: 0.9\n        resolve_threshold: 0.95\n", 4, "resolve_threshold 0.95 must be <= threshold 0.9"),
        ("        kind: predict\n        metric: volume.used_bytes\n        limit_metric: container.memory_limit_bytes\n        within: 4h\n", 7, "is a container metric, not of the volume"),
        ("        metric: container.cpu_cores\n        threshold: 1\n        threshold: 2\n", 7, "duplicate key 'threshold'"),
    ],
)
def test_rule_file_problems_name_their_line(snippet: str, line: int, message: str) -> None:
    text = "groups:\n  - name: g\n    rules:\n      - alert: A\n" + snippet
    with pytest.raises(RulesError) as err:
        parse_rules(text, file="r.yaml")
    first = err.value.problems[0]
    assert (first.file, first.line) == ("r.yaml", line), str(err.value)
    assert message in first.message, str(err.value)


def test_a_file_that_is_not_yaml_reports_where_it_breaks() -> None:
    with pytest.raises(RulesError) as err:
        parse_rules("groups:\n  - name: g\n    rules: [\n", file="x.yaml")
    assert str(err.value).startswith("x.yaml:4:1: not YAML")
