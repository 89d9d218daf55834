"""docker-compose.yml and the Dockerfile: valid for Compose, and wired as the service needs.

The schema is the Compose Specification's, as vendored by check-jsonschema; the reads below check
what the schema cannot: that the commands are ones `recog` accepts, that workers can be scaled,
and that the image contains every package the project installs.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from shared.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
# Compose stops with this message when .env does not set the password.
REDIS_PASSWORD = "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load(COMPOSE)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def test_valid_against_the_compose_specification() -> None:
    check = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)]
    result = subprocess.run(check, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose
    assert set(compose["services"]) == {"redis", "api", "worker", "prometheus", "grafana"}


def test_redis_persists_to_a_named_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["image"] == "redis:7"
    assert "--appendonly yes --appendfsync everysec" in " ".join(redis["command"])
    assert "redis-data:/data" in redis["volumes"]


def test_redis_requires_the_password_the_others_use(services: dict[str, Any]) -> None:
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1] == REDIS_PASSWORD
    # The healthcheck authenticates (redis-cli reads REDISCLI_AUTH) and wants PONG: redis-cli exits 0
    # on a NOAUTH error too, so its exit code alone would call a Redis that refuses everyone healthy.
    assert redis["environment"]["REDISCLI_AUTH"] == REDIS_PASSWORD
    assert redis["healthcheck"]["test"] == ["CMD-SHELL", "redis-cli ping | grep -q PONG"]
    for name in ("api", "worker"):
        assert services[name]["environment"]["REDIS_URL"] == f"redis://:{REDIS_PASSWORD}@redis:6379/0"


def test_api_and_worker_share_the_redis_and_the_shard_count(services: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        service = services[name]
        assert service["environment"]["REDIS_URL"].endswith("@redis:6379/0")
        assert "RECOG_SHARDS" in service["environment"]
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"}}
        assert service["build"] == "."
        assert "healthcheck" in service


def test_api_keeps_uploads_on_its_volume_and_checks_healthz(services: dict[str, Any]) -> None:
    api = services["api"]
    assert api["environment"]["RECOG_DATA_DIR"] == "/data"
    assert "blobs:/data" in api["volumes"]
    assert api["ports"] == ["8080:8080"]
    assert "http://127.0.0.1:8080/healthz" in " ".join(api["healthcheck"]["test"])


def test_workers_keep_their_saved_indexes_on_a_volume_they_share(
    services: dict[str, Any], compose: dict[str, Any]
) -> None:
    worker = services["worker"]
    data_dir = worker["environment"]["RECOG_DATA_DIR"]
    assert f"indexes:{data_dir}/indexes" in worker["volumes"]
    assert "indexes" in compose["volumes"]


def test_api_and_workers_share_the_blob_store(services: dict[str, Any]) -> None:
    """Workers prepare uploads from the originals the API stores and index features from the same store."""
    for name in ("api", "worker"):
        service = services[name]
        assert f"blobs:{service['environment']['RECOG_DATA_DIR']}" in service["volumes"], name


def test_image_build_reuses_the_dependency_layer_and_leaves_the_checkout_out() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    install_deps = next(i for i, line in enumerate(lines) if "pip install -r" in line)
    first_code = next(i for i, line in enumerate(lines) if re.match(r"COPY (api|shared|workers) ", line))
    assert install_deps < first_code, "dependencies must install before the code is copied"
    assert "mkdir -p /data/blobs /data/indexes" in " ".join(lines)  # volume mount points owned by the user
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".venv", ".git"} <= set(ignored)


def test_monitoring_listens_on_loopback_and_grafana_shows_the_dashboard(services: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        assert all(str(port).startswith("127.0.0.1:") for port in services[name]["ports"]), name
    mounts = {m.split(":")[0]: m.split(":")[1] for m in services["grafana"]["volumes"]}
    assert mounts["./deploy/grafana/recog-dashboard.json"].startswith("/etc/grafana/dashboards/")
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    source = YAML(typ="safe").load(provisioning / "datasources" / "prometheus.yml")["datasources"][0]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    provider = YAML(typ="safe").load(provisioning / "dashboards" / "recog.yml")["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"


def test_worker_can_be_scaled(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["healthcheck"]["start_period"] == "60s"
    assert worker["stop_grace_period"] == "30s"


def test_every_named_volume_is_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith((".", "/"))}
    assert used == set(compose["volumes"])


@pytest.mark.parametrize("name", ["api", "worker"])
def test_commands_are_ones_recog_accepts(services: dict[str, Any], name: str) -> None:
    args = build_parser().parse_args(services[name]["command"])
    assert args.command == {"api": "serve", "worker": "worker"}[name]


def test_dockerfile_installs_every_package_and_runs_recog_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r"^USER (?!root)\w+$", dockerfile, re.M)
    assert 'ENTRYPOINT ["recog"]' in dockerfile
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    for package in packages:
        assert re.search(rf"^COPY {package} ", dockerfile, re.M), f"the image lacks the {package} package"
