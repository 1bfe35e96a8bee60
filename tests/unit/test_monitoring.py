"""The dashboard, the alert rules and the operations doc agree with the metrics the program
exports: every metric they use exists, every metric exported is documented, the dashboard is
well-formed, and (with promtool installed) the rules and every dashboard query parse and the
alert rules' own tests pass."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from schemas.ledger import ScanReport
from tests.helpers import REPO
from tests.unit.test_metrics import snapshot
from worker.exporter import status_metrics
from worker.metrics import WorkerMetrics

DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboard.json"
OPERATIONS = DEPLOY / "OPERATIONS.md"
NAME = re.compile(r"\bmedline_[a-z0-9_]+\b")


@cache
def worker_families() -> dict[str, str]:
    """Worker metric names as documented (counters with ``_total``) → type."""
    registry = WorkerMetrics(CollectorRegistry()).registry
    return {f.name + ("_total" if f.type == "counter" else ""): f.type for f in registry.collect()}


@cache
def exporter_families() -> set[str]:
    # A snapshot with every part, the last inbox scan included (absent until a scan runs).
    inbox = ScanReport(finished_at=datetime(2026, 12, 7, tzinfo=UTC), blocked="a.xml.gz")
    every_part = snapshot().model_copy(update={"inbox": inbox})
    return {f.name for f in status_metrics(every_part)} | {
        "medline_exporter_scrape_duration_seconds"
    }


@cache
def sample_names() -> set[str]:
    """Every series name a query may use."""
    names = set(exporter_families())
    for name, kind in worker_families().items():
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def test_every_metric_the_alerts_and_dashboard_use_is_exported() -> None:
    used = {n for e in dashboard_exprs() for n in NAME.findall(e)}
    used |= {n for r in alert_rules() for n in NAME.findall(r["expr"])}
    assert used - sample_names() == set()
    # And they use both sources.
    assert used & set(worker_families()) and used & exporter_families()


def test_every_exported_metric_is_documented() -> None:
    text = OPERATIONS.read_text()
    documented = set(re.findall(r"^\| `(medline_[a-z0-9_]+)` \|", text, re.MULTILINE))
    exported = set(worker_families()) | exporter_families()
    assert exported - documented == set(), "exported but not in deploy/OPERATIONS.md"
    assert documented - exported == set(), "in deploy/OPERATIONS.md but not exported"


def test_every_alert_is_documented_and_has_severity_and_words() -> None:
    text = OPERATIONS.read_text()
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in text
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_issue_s_alerts_are_all_there() -> None:
    names = {r["alert"] for r in alert_rules()}
    assert {
        "MedlineDeadLetterQueueGrowing",  # a dead-letter queue growing
        "MedlineIngestStalled",  # throughput zero while the ingest queue is not empty
        "MedlineNoWorkerHeartbeat",  # no worker heartbeat
        "MedlineElasticsearchYellow",  # Elasticsearch not green
        "MedlineElasticsearchRed",
        "MedlineJobFarBeyondEta",  # a job running far beyond its ETA
    } <= names


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] == "medline-ingest"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    (variable,) = board["templating"]["list"]
    assert (variable["name"], variable["type"]) == ("datasource", "datasource")
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


# --- with promtool -------------------------------------------------------------------------------

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool not installed (Debian package prometheus)"
)


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert promtool is not None
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@needs_promtool
def test_the_alert_rules_parse_and_their_tests_pass() -> None:
    checked = run_promtool("check", "rules", str(ALERTS), cwd=REPO)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run_promtool("test", "rules", str(ALERT_TESTS.name), cwd=ALERT_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    rules = [
        {"record": f"medline:dashboard_query_{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run_promtool("check", "rules", str(path), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
