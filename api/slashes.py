"""Where a request for an address that is not served should have gone: the same path with or
without its trailing slash.

Starlette redirects such requests itself, with an empty body that leaves a client that does not
follow redirects (curl, httpx by default) with nothing to read; `api.errors` answers them instead,
with the redirect and the contract's JSON body.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Match


def slash_twin(request: Request) -> str | None:
    """The path (with the query) of the served address that differs from the request's only by a
    trailing slash, or None. Relative, so it never echoes the request's Host header."""
    path: str = request.scope["path"]
    if path == "/":
        return None
    twin = path.removesuffix("/") if path.endswith("/") else f"{path}/"
    scope = {**request.scope, "path": twin}
    if not any(route.matches(scope)[0] is not Match.NONE for route in request.app.router.routes):
        return None
    query = request.url.query
    return f"{twin}?{query}" if query else twin
