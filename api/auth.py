"""Management API keys: `?api_key=KEY` or `Authorization: Bearer KEY`, else AUTHENTICATION_FAILED."""

from __future__ import annotations

from starlette.requests import Request

from api.services import services
from shared import apikeys
from shared.errors import AuthenticationFailed


def presented_key(request: Request) -> str:
    """The key the request carries, or "" (the header wins over the query string)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.query_params.get("api_key", "")


async def require_api_key(request: Request) -> None:
    if not await apikeys.check(services(request).redis, presented_key(request)):
        raise AuthenticationFailed()
