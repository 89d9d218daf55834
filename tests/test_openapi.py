"""`GET /openapi.json`: a valid OpenAPI 3.1 document that describes exactly the routes the app serves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from api.app import create_app
from shared.config import Settings
from shared.errors import RecogError, error_classes
from shared.testing.stack import db_url, private_db

_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with private_db(redis_url, 15) as db:
        settings = Settings.from_env({"REDIS_URL": db_url(db), "RECOG_DATA_DIR": str(tmp_path)})
        with TestClient(create_app(settings)) as client:
            yield client


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    return dict(response.json())


def test_the_served_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_every_route_is_described_and_every_described_path_is_served(
    client: TestClient, document: dict[str, Any]
) -> None:
    """A route meant for people rather than API clients (a console page) says include_in_schema=False."""
    served = {
        (route.path, method.lower())
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.include_in_schema
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {(path, method) for path, item in document["paths"].items() for method in item if method in _METHODS}
    assert served - described == set(), "routes missing from the schema"
    assert described - served == set(), "schema paths with no route"


def test_every_error_code_is_described_under_its_status(document: dict[str, Any]) -> None:
    responses = document["components"]["responses"]
    for cls in error_classes():
        if cls is RecogError:
            continue
        schema = responses[f"Error{cls.status}"]["content"]["application/json"]["schema"]
        assert cls.code in schema["properties"]["error"]["allOf"][1]["properties"]["code"]["enum"]
    assert set(responses["Error503"]["headers"]) == {"Retry-After"}
    assert set(responses["Error429"]["headers"]) == {"Retry-After"}


def test_limits_are_this_servers(redis_url: str, tmp_path: Path) -> None:
    with private_db(redis_url, 15) as db:
        env = {"REDIS_URL": db_url(db), "RECOG_DATA_DIR": str(tmp_path), "RECOG_MIN_SIDE": "240"}
        with TestClient(create_app(Settings.from_env(env))) as client:
            assert "at least 240 px" in client.get("/openapi.json").json()["info"]["description"]
