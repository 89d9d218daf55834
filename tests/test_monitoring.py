"""deploy/: Prometheus scrapes the API, and its alerts and the Grafana dashboard query only metrics
and labels that api/metrics.py defines, so renaming a metric fails here rather than silently
emptying a panel or disarming an alert. promtool, when installed, also parses and exercises them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase
from ruamel.yaml import YAML

from api import metrics
from tests.test_compose import COMPOSE
from tests.test_compose import test_valid_against_the_compose_specification as check_compose_schema

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "recog-dashboard.json"

# Series names prometheus-client derives from a metric family, by its type.
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
# Series Prometheus itself records for every target, with the labels it attaches to them.
_BUILTIN = {"up": frozenset({"job", "instance"})}
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{([^}]*)\})?")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def families() -> dict[str, tuple[str, frozenset[str]]]:
    """Family name -> (type, label names), for every metric object in api/metrics.py."""
    return {
        family.name: (family.type, frozenset(metric._labelnames))
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
        for family in metric.describe()
    }


def exported() -> dict[str, frozenset[str]]:
    """Series name -> label names, as Prometheus stores what the API exports."""
    return {
        name + suffix: (labels | {"le"}) if suffix == "_bucket" else labels
        for name, (kind, labels) in families().items()
        for suffix in _SUFFIXES[kind]
    }


def undefined_references(expr: str) -> list[str]:
    """What `expr` names that the API does not export: series, label matchers, grouping labels."""
    known = exported() | _BUILTIN
    selectors = [(name, m) for name, m in _SELECTOR.findall(expr) if name.startswith("recog_") or name in _BUILTIN]
    problems = [] if selectors else ["no series at all"]
    used_labels: set[str] = set()
    for name, matchers in selectors:
        if name not in known:
            problems.append(f"series {name}")
            continue
        used_labels |= known[name]
        problems += [f"label {label} of {name}" for label in _MATCHER.findall(matchers) if label not in known[name]]
    for grouping in _GROUPING.findall(expr):
        problems += [f"grouping label {g}" for g in map(str.strip, grouping.split(",")) if g and g not in used_labels]
    return problems


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path)


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel.get("targets", [])]


def test_the_reference_check_catches_renames() -> None:
    assert undefined_references('sum by (shard) (recog_queue_depth{shard="0"})') == []
    assert undefined_references("recog_queue_depths") == ["series recog_queue_depths"]
    assert undefined_references("vector(1)") == ["no series at all"]
    assert undefined_references('rate(recog_requests_total{path="/"}[5m])') == ["label path of recog_requests_total"]
    assert undefined_references("max by (worker) (recog_live_workers)") == ["grouping label worker"]


def test_prometheus_scrapes_the_api_and_every_worker_and_loads_the_alerts() -> None:
    config = load_yaml(PROMETHEUS)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"recog-api", "recog-workers"}  # the alerts' up{job=...}
    assert [t for static in jobs["recog-api"]["static_configs"] for t in static["targets"]] == ["api:8080"]
    # Scaled workers have no fixed address: found through the compose service's DNS name, on the
    # port the compose file gives them.
    discovery = jobs["recog-workers"]["dns_sd_configs"][0]
    worker_env = load_yaml(COMPOSE)["services"]["worker"]["environment"]
    assert discovery["names"] == ["worker"]
    assert discovery["port"] == int(worker_env["RECOG_WORKER_METRICS_PORT"])
    assert [PROMETHEUS.parent / path for path in config["rule_files"]] == [ALERTS]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_is_complete_and_queries_exported_metrics(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert undefined_references(rule["expr"]) == []


def test_the_alerts_cover_workers_queues_latency_and_errors() -> None:
    exprs = " ".join(rule["expr"] for rule in alert_rules())
    for series in ("recog_live_workers", "recog_queue_depth", "recog_queue_oldest_job_age_seconds"):
        assert series in exprs
    assert 'recog_request_seconds_bucket{route=~"/v1/search|/v2/search"}' in exprs
    assert 'status=~"5.."' in exprs
    shard_down = next(rule for rule in alert_rules() if "recog_live_workers" in rule["expr"])
    assert shard_down["for"] == "30s" and shard_down["expr"].rstrip().endswith("== 0")


@pytest.mark.parametrize(("title", "expr"), dashboard_targets(), ids=[title for title, _ in dashboard_targets()])
def test_every_dashboard_query_uses_exported_metrics(title: str, expr: str) -> None:
    assert undefined_references(expr) == []


def test_the_dashboard_shows_every_metric_the_api_exports() -> None:
    queried = " ".join(expr for _, expr in dashboard_targets())
    assert sorted(family for family in families() if family not in queried) == []


def test_compose_runs_prometheus_with_both_files_read_only() -> None:
    compose = load_yaml(COMPOSE)
    prometheus = compose["services"]["prometheus"]
    mounts = {
        target: (source, mode)
        for source, target, mode in (v.split(":") for v in prometheus["volumes"] if v.count(":") == 2)
    }
    config_dir = "/etc/prometheus"
    assert mounts[f"{config_dir}/prometheus.yml"] == (f"./{PROMETHEUS.relative_to(ROOT)}", "ro")
    # Prometheus resolves rule_files against the config's folder: the alerts must land beside it.
    assert mounts[f"{config_dir}/alerts.yml"] == (f"./{ALERTS.relative_to(ROOT)}", "ro")
    assert "prometheus-data:/prometheus" in prometheus["volumes"] and "prometheus-data" in compose["volumes"]
    assert prometheus["image"].startswith("prom/prometheus:v")
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"] and prometheus["depends_on"] == ["api"]
    check_compose_schema()


promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)


def run_promtool(*args: str) -> None:
    assert promtool is not None
    result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_config_and_rules() -> None:
    run_promtool("check", "config", str(PROMETHEUS))


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    # Grafana's $__rate_interval is not PromQL; any range stands in for it.
    rules = [
        {"record": f"dashboard:query{n}", "expr": expr.replace("$__rate_interval", "1m")}
        for n, (_, expr) in enumerate(dashboard_targets())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    run_promtool("check", "rules", str(path))


@needs_promtool
def test_a_shard_without_a_worker_alerts_after_30_seconds(tmp_path: Path) -> None:
    summary = next(r for r in alert_rules() if r["alert"] == "RecogShardWithoutWorker")["annotations"]
    down = {
        "exp_labels": {"severity": "critical", "shard": "1"},
        "exp_annotations": {
            "summary": summary["summary"].replace("{{ $labels.shard }}", "1"),
            "description": summary["description"],
        },
    }
    unit = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "10s",
        "tests": [
            {
                "interval": "10s",
                # Shard 1's only worker stops at 20 s; shard 0 keeps two.
                "input_series": [
                    {"series": 'recog_live_workers{job="recog-api",instance="api:8080",shard="0"}', "values": "2x12"},
                    {
                        "series": 'recog_live_workers{job="recog-api",instance="api:8080",shard="1"}',
                        "values": "1 1 1 0x10",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "40s", "alertname": "RecogShardWithoutWorker", "exp_alerts": []},  # pending
                    {"eval_time": "70s", "alertname": "RecogShardWithoutWorker", "exp_alerts": [down]},
                ],
            }
        ],
    }
    path = tmp_path / "unit.yml"
    path.write_text(json.dumps(unit))
    run_promtool("test", "rules", str(path))
