"""Requests for hosts the service does not answer for are refused (`RECOG_ALLOWED_HOSTS`).

Links in responses (thumbnails, files, pagination) follow the request's `Host` header when
`RECOG_PUBLIC_URL` is unset; a forged Host would make the service hand out links to another site.
Starlette's TrustedHostMiddleware answers in plain text; this answers with the contract's JSON error.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_body


class AllowedHosts:
    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(host.lower() for host in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            host = header.rsplit(":", 1)[0] if not header.endswith("]") else header
            if host not in self.hosts:
                message = f"This service does not answer for host {header!r}."
                await JSONResponse(error_body("BAD_REQUEST", message), status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)
