"""Every error the domain raises reaches the client as the contract's JSON body and status."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from api.errors import EXCEPTION_HANDLERS
from shared.errors import RecogError, ServerBusy, by_code, error_classes


def app_raising(exc: Exception) -> TestClient:
    async def endpoint(request: Request) -> None:
        raise exc

    app = Starlette(routes=[Route("/", endpoint)], exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_is_mapped(cls: type[RecogError]) -> None:
    response = app_raising(cls()).get("/")
    assert response.status_code == cls.status
    assert response.json()["error"]["code"] == cls.code
    assert response.json()["error"]["message"]


def test_codes_are_unique_so_worker_replies_map_back() -> None:
    concrete = [cls for cls in error_classes() if cls is not RecogError]
    codes = [cls.code for cls in concrete]
    assert len(codes) == len(set(codes))
    assert all(by_code(cls.code) is cls for cls in concrete)


def test_unexpected_errors_are_500_without_internals() -> None:
    response = app_raising(KeyError("secret-internal-name")).get("/")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "SERVER_ERROR"
    assert "secret" not in response.text


def test_retry_after_header() -> None:
    response = app_raising(ServerBusy(retry_after=2)).get("/")
    assert response.headers["Retry-After"] == "2"


def test_unknown_route_is_a_json_404() -> None:
    response = app_raising(RecogError()).get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
